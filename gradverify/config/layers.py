"""The layers form: `inputs:` and a list of `layers:`, each validated by the reader of its `type:`.

Every layer may have `type:` (default affine), `activation:` and `alpha:`; the rest of its keys
belong to its type. A reader of LAYER_TYPES checks those keys and reads the layer's arrays,
matching them to the previous layer's output shape (or to the inputs', for the first layer) and
saying its own (`Layer.out_shape`). Which activations exist, and which take `alpha:`, is build's
business (build.ACTIVATIONS). The CNN types (conv, pooling, norms, dropout, flatten) are in
config/cnn_layers.py.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import KeyPath, did_you_mean
from .arrays import ArrayReader
from .checks import check_keys, is_custom, kind, mapping, number
from .model import Layer, Source

#: the keys of every layer, whatever its type
COMMON_KEYS = ("activation", "alpha", "type")
AFFINE_KEYS = ("weights", "bias", "op", "params", "attrs")


@dataclass
class LayersReader:
    """What a layer type's reader needs: the arrays, the place of each key, the inputs' shape."""

    src: Source
    arrays: ArrayReader
    inputs_shape: tuple[int, ...]
    seed: int = 0  # the config's seed: dropout's mask seed unless the layer gives one

    def check_keys(self, spec: dict[str, Any], i: int, type_keys: tuple[str, ...]) -> None:
        """Refuse any key that is neither the type's nor common to every layer."""
        check_keys(spec, type_keys + COMMON_KEYS, self.src, ("layers", i), f"layer {i + 1}")

    def require(self, spec: dict[str, Any], i: int, *keys: str) -> None:
        for key in keys:
            if key not in spec:
                raise self.src.error(f"missing `{key}:`", ("layers", i))


#: a layer type's reader: (reader, 0-based position, the layer's mapping, the previous layer or
#: None for the first) -> the Layer (its activation and alpha are filled in afterwards)
LayerType = Callable[[LayersReader, int, dict[str, Any], Layer | None], Layer]


def in_shape(r: LayersReader, prev: Layer | None) -> tuple[int, ...]:
    """What a layer receives: the inputs' shape for the first layer, else the previous output's."""
    return r.inputs_shape if prev is None else prev.out_shape


def dims(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def source_name(i: int, prev: Layer | None) -> str:
    """Where layer i+1's input comes from, in words: "the inputs'" or "layer i's output"."""
    return "the inputs" if prev is None else f"layer {i}'s output"


def read_affine(r: LayersReader, i: int, spec: dict[str, Any], prev: Layer | None) -> Layer:
    """x·weights + bias, weights D×H matching the previous layer's H (or the inputs' D; images
    N×C×H×W are flattened first, D = C·H·W); with `op: file.py:name` the user's layer
    name(x, w, b, *params, **attrs) instead."""
    path: KeyPath = ("layers", i)
    r.check_keys(spec, i, AFFINE_KEYS)
    r.require(spec, i, "weights", "bias")
    w = r.arrays.read(spec["weights"], path + ("weights",), ndim=2, what="the weights")
    shape = in_shape(r, prev)
    rows, width = shape[0], int(np.prod(shape[1:]))
    if w.shape[0] != width:
        if len(shape) > 2:
            match = f"{source_name(i, prev)} {dims(shape)} flattened to {rows}×{width}"
        else:
            match = f"the inputs' {width} columns" if prev is None else f"layer {i}'s {width} outputs"
        if prev is None:
            theirs = f"the inputs' shape {dims(shape)}"
        elif prev.type == "affine" and prev.weights is not None:
            theirs = f"layer {i}'s weights {dims(prev.weights.shape)}"
        else:
            theirs = f"layer {i}'s output {dims(shape)}"
        raise r.src.error(f"expected {width} rows to match {match}, got {w.shape[0]} (these weights are "
                          f"{w.shape[0]}×{w.shape[1]}; {theirs})", path + ("weights",))
    b = r.arrays.read(spec["bias"], path + ("bias",), ndim=1, what="the bias")
    if b.shape[0] != w.shape[1]:
        raise r.src.error(f"expected {w.shape[1]} values to match the weights' {w.shape[1]} columns, "
                          f"got {b.shape[0]}", path + ("bias",))
    op = spec.get("op")
    if op is not None and not is_custom(op):
        raise r.src.error(f"expected a custom layer as file.py:name (with name_forward and "
                          f"name_backward in file.py), got {kind(op)}", path + ("op",))
    params, attrs = read_custom_extras(r, spec, path, op)
    return Layer(index=i + 1, weights=w, bias=b, op=op, params=params, attrs=attrs, in_shape=shape,
                 out_shape=(rows, w.shape[1]))


def read_custom_extras(r: LayersReader, spec: dict[str, Any], path: KeyPath, op: Any
                       ) -> tuple[tuple[tuple[str, Any], ...], dict[str, Any]]:
    """A custom layer's `params:` (extra differentiable inputs) and `attrs:` (keywords)."""
    params: tuple[tuple[str, Any], ...] = ()
    if "params" in spec:
        if op is None:
            raise r.src.error("`params:` applies only to a custom layer (op: file.py:name)", path + ("params",))
        pm = mapping(spec["params"], r.src, path + ("params",), "name: array")
        params = tuple((k, r.arrays.read(v, path + ("params", k), what=f"the parameter {k}"))
                       for k, v in pm.items())
    attrs: dict[str, Any] = {}
    if "attrs" in spec:
        if op is None:
            raise r.src.error("`attrs:` applies only to a custom layer (op: file.py:name)", path + ("attrs",))
        attrs = mapping(spec["attrs"], r.src, path + ("attrs",), "keyword arguments")
    return params, attrs


#: layer type -> its reader; build.LAYERS has the same names, each with the builder of its nodes
LAYER_TYPES: dict[str, LayerType] = {"affine": read_affine}


def read_inputs(value: Any, src: Source, arrays: ArrayReader) -> np.ndarray:
    """`inputs:` of the layers form: N×D rows, or N×C×H×W images (for a network that starts
    with a conv, pooling or flatten layer)."""
    x = arrays.read(value, ("inputs",), what="the inputs")
    if x.ndim not in (2, 4):
        raise src.error(f"expected the inputs as a list of rows (2-D, N×D) or images (4-D, "
                        f"N×C×H×W), got {x.ndim}-D with shape {list(x.shape)}", ("inputs",))
    return x


def last_width(layers: tuple[Layer, ...], src: Source) -> int:
    """The classes (or targets' columns) of the last layer's N×K output; a last layer that gives
    images cannot feed a loss."""
    out = layers[-1].out_shape
    if len(out) != 2:
        raise src.error(f"the last layer gives {dims(out)} ({len(out)}-D) but the loss needs N×classes "
                        "rows: end with an affine layer", ("layers", len(layers) - 1))
    return out[1]


def read_layers(value: Any, r: LayersReader) -> tuple[Layer, ...]:
    if not isinstance(value, list) or not value:
        raise r.src.error(f"expected a list of layers, got {kind(value)}", ("layers",))
    layers: list[Layer] = []
    for i, spec in enumerate(value):
        spec = mapping(spec, r.src, ("layers", i), "a layer with weights:, bias:, activation:")
        type_ = spec.get("type", "affine")
        if not isinstance(type_, str) or type_ not in LAYER_TYPES:
            raise r.src.error(f"unknown layer type {type_!r}{did_you_mean(type_, LAYER_TYPES)}; "
                              f"valid: {', '.join(LAYER_TYPES)}", ("layers", i, "type"))
        layer = LAYER_TYPES[type_](r, i, spec, layers[-1] if layers else None)
        layers.append(_with_activation(layer, type_, spec, r.src, ("layers", i)))
    return tuple(layers)


def _with_activation(layer: Layer, type_: str, spec: dict[str, Any], src: Source, path: KeyPath) -> Layer:
    """The keys common to every layer type: its type, `activation:` and the activation's `alpha:`."""
    act = spec.get("activation")
    if act is not None and not isinstance(act, str):
        raise src.error(f"expected an activation name, got {kind(act)}", path + ("activation",))
    alpha = None
    if "alpha" in spec:
        alpha = float(number(spec["alpha"], src, path + ("alpha",), nonneg=True))
    return dataclasses.replace(layer, type=type_, activation=act, alpha=alpha)


# the CNN types build on the helpers above
from .cnn_layers import CNN_LAYER_TYPES, TYPE_KEYS  # noqa: E402

LAYER_TYPES.update(CNN_LAYER_TYPES)
#: every key of each layer type, besides COMMON_KEYS (the schema reads it)
LAYER_KEYS: dict[str, tuple[str, ...]] = {"affine": AFFINE_KEYS, **TYPE_KEYS}
