"""The layers form's CNN types: conv, max_pool, avg_pool, batchnorm, layernorm, dropout, flatten.

Each reader checks its keys, reads its arrays (a generated array may leave out `shape:` when the
layer implies it: conv weights F×C×kh×kw from `filters`, `kernel` and the incoming channels C;
bias F; gamma and beta one per feature or channel), and says its output shape. A layer that
cannot take what it receives is refused at the layer, with both shapes.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import KeyPath
from .checks import is_custom, kind, number
from .layers import LayersReader, LayerType, dims, in_shape, read_custom_extras, source_name
from .model import Layer

CONV_KEYS = ("weights", "bias", "filters", "kernel", "stride", "pad", "op", "params", "attrs")
POOL_KEYS = ("size", "stride")
NORM_KEYS = ("gamma", "beta", "eps")
DROPOUT_KEYS = ("keep", "seed")


def _int(r: LayersReader, spec: dict[str, Any], path: KeyPath, key: str, default: int | None, low: int = 1) -> int:
    """An integer setting ≥ low, `default` when absent (None: required)."""
    if key not in spec:
        if default is None:
            raise r.src.error(f"missing `{key}:`", path)
        return default
    value = number(spec[key], r.src, path + (key,), integer=True)
    if value < low:
        raise r.src.error(f"expected an integer ≥ {low}, got {value}", path + (key,))
    return int(value)


def _images(r: LayersReader, i: int, prev: Layer | None, what: str) -> tuple[int, int, int, int]:
    """The N×C×H×W images a conv or pooling layer needs, or an error with what it got."""
    shape = in_shape(r, prev)
    if len(shape) != 4:
        raise r.src.error(f"a {what} layer takes images N×C×H×W, but {source_name(i, prev)} is "
                          f"{dims(shape)} ({len(shape)}-D)", ("layers", i))
    n, c, h, w = shape
    return n, c, h, w


def _implied(value: Any, shape: tuple[int, ...]) -> Any:
    """A generated array ({init:, std:}) without `shape:` gets the shape the layer implies."""
    if isinstance(value, dict) and "shape" not in value and "file" not in value:
        return {**value, "shape": list(shape)}
    return value


def _kernel(r: LayersReader, spec: dict[str, Any], path: KeyPath) -> tuple[int, int] | None:
    """`kernel: 3` or `kernel: [3, 5]` (kh, kw), or None when absent."""
    if "kernel" not in spec:
        return None
    k = spec["kernel"]
    sizes = k if isinstance(k, list) else [k]
    if len(sizes) not in (1, 2):
        raise r.src.error(f"expected `kernel:` as a size or [height, width], got {kind(k)}", path + ("kernel",))
    for s in sizes:
        if number(s, r.src, path + ("kernel",), integer=True) < 1:
            raise r.src.error(f"expected kernel sizes ≥ 1, got {s}", path + ("kernel",))
    return int(sizes[0]), int(sizes[-1])


def _conv_weights(r: LayersReader, i: int, spec: dict[str, Any], channels: int, src: str) -> np.ndarray:
    """Filters F×C×kh×kw: C must be the incoming channels; `filters:` and `kernel:` give the shape
    of a generated array, and must agree with given weights."""
    path: KeyPath = ("layers", i)
    kernel = _kernel(r, spec, path)
    filters = _int(r, spec, path, "filters", 0)
    value = spec["weights"]
    if isinstance(value, dict) and "shape" not in value and "file" not in value:
        if not filters or kernel is None:
            raise r.src.error("generated conv weights without `shape:` need `filters:` and `kernel:` on the "
                              "layer", path + ("weights",))
        value = _implied(value, (filters, channels) + kernel)
    w = r.arrays.read(value, path + ("weights",), ndim=4, what="the conv weights (F×C×kh×kw)")
    if w.shape[1] != channels:
        raise r.src.error(f"expected weights F×{channels}×kh×kw to match the {channels} channels of {src}, "
                          f"got {dims(w.shape)}", path + ("weights",))
    if filters and w.shape[0] != filters:
        raise r.src.error(f"`filters: {filters}` but the weights have {w.shape[0]}", path + ("filters",))
    if kernel is not None and w.shape[2:] != kernel:
        raise r.src.error(f"`kernel:` {dims(kernel)} but the weights' kernel is {dims(w.shape[2:])}",
                          path + ("kernel",))
    return w


def read_conv(r: LayersReader, i: int, spec: dict[str, Any], prev: Layer | None) -> Layer:
    """conv2d(x, w{i}, b{i}) with `stride:` (1) and `pad:` (0); `bias:` optional (a conv before a
    batchnorm needs none: the batchnorm cancels it); `op: file.py:name` for the user's own."""
    path: KeyPath = ("layers", i)
    r.check_keys(spec, i, CONV_KEYS)
    r.require(spec, i, "weights")
    n, c, h, wd = _images(r, i, prev, "conv")
    src = f"{source_name(i, prev)} {dims((n, c, h, wd))}"
    w = _conv_weights(r, i, spec, c, src)
    b = None
    if "bias" in spec:
        b = r.arrays.read(_implied(spec["bias"], w.shape[:1]), path + ("bias",), ndim=1, what="the conv bias")
        if b.shape[0] != w.shape[0]:
            raise r.src.error(f"expected {w.shape[0]} values, one per filter, got {b.shape[0]}", path + ("bias",))
    stride, pad = _int(r, spec, path, "stride", 1), _int(r, spec, path, "pad", 0, low=0)
    kh, kw = w.shape[2:]
    if h + 2 * pad < kh or wd + 2 * pad < kw:
        raise r.src.error(f"a {kh}×{kw} kernel does not fit {src} (padded to {h + 2 * pad}×{wd + 2 * pad})", path)
    op = spec.get("op")
    if op is not None and not is_custom(op):
        raise r.src.error(f"expected your conv as file.py:name (name_forward(x, w, b, stride=, pad=) and "
                          f"name_backward), got {kind(op)}", path + ("op",))
    params, attrs = read_custom_extras(r, spec, path, op)
    out = (n, w.shape[0], (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1)
    return Layer(index=i + 1, weights=w, bias=b, op=op, params=params,
                 attrs={**attrs, "stride": stride, "pad": pad}, in_shape=(n, c, h, wd), out_shape=out)


def read_pool(r: LayersReader, i: int, spec: dict[str, Any], prev: Layer | None) -> Layer:
    """max_pool / avg_pool over size×size windows (`size:` 2) at `stride:` (default: size)."""
    path: KeyPath = ("layers", i)
    r.check_keys(spec, i, POOL_KEYS)
    n, c, h, w = _images(r, i, prev, str(spec.get("type")))
    size = _int(r, spec, path, "size", 2)
    stride = _int(r, spec, path, "stride", size)
    if size > h or size > w:
        raise r.src.error(f"a {size}×{size} window does not fit {source_name(i, prev)} {dims((n, c, h, w))}",
                          path + (("size",) if "size" in spec else ()))
    out = (n, c, (h - size) // stride + 1, (w - size) // stride + 1)
    return Layer(index=i + 1, weights=None, bias=None, attrs={"size": size, "stride": stride},
                 in_shape=(n, c, h, w), out_shape=out)


def _norm(r: LayersReader, i: int, spec: dict[str, Any], shape: tuple[int, ...], features: int) -> Layer:
    """gamma{i} (ones) and beta{i} (zeros), one per feature or channel, and `eps:` (1e-5)."""
    path: KeyPath = ("layers", i)
    r.check_keys(spec, i, NORM_KEYS)
    params = []
    for name, init in (("gamma", "ones"), ("beta", "zeros")):
        value = _implied(spec.get(name, {"init": init}), (features,))
        arr = r.arrays.read(value, path + (name,), ndim=1, what=f"the {name}")
        if arr.shape[0] != features:
            raise r.src.error(f"expected {features} values, one per {'channel' if len(shape) == 4 else 'feature'} "
                              f"of {dims(shape)}, got {arr.shape[0]}", path + (name,))
        params.append((name, arr))
    eps = float(number(spec.get("eps", 1e-5), r.src, path + ("eps",), positive=True))
    return Layer(index=i + 1, weights=None, bias=None, params=tuple(params), attrs={"eps": eps},
                 in_shape=shape, out_shape=shape)


def read_batchnorm(r: LayersReader, i: int, spec: dict[str, Any], prev: Layer | None) -> Layer:
    """Train-mode batchnorm over N×D rows, or spatial (per channel over N, H, W) over images."""
    shape = in_shape(r, prev)
    return _norm(r, i, spec, shape, shape[1])


def read_layernorm(r: LayersReader, i: int, spec: dict[str, Any], prev: Layer | None) -> Layer:
    """Layernorm over each row's D features: N×D rows only."""
    shape = in_shape(r, prev)
    if len(shape) != 2:
        raise r.src.error(f"a layernorm layer takes rows N×D, but {source_name(i, prev)} is {dims(shape)} "
                          "(add a `type: flatten` layer before it)", ("layers", i))
    return _norm(r, i, spec, shape, shape[1])


def read_dropout(r: LayersReader, i: int, spec: dict[str, Any], prev: Layer | None) -> Layer:
    """Inverted dropout with `keep:` (0.5) and the mask's `seed:` (default: the config's seed)."""
    path: KeyPath = ("layers", i)
    r.check_keys(spec, i, DROPOUT_KEYS)
    keep = float(number(spec.get("keep", 0.5), r.src, path + ("keep",)))
    if not 0.0 < keep <= 1.0:
        raise r.src.error(f"expected a probability in (0, 1], got {keep}", path + ("keep",))
    seed = _int(r, spec, path, "seed", r.seed, low=0)
    shape = in_shape(r, prev)
    return Layer(index=i + 1, weights=None, bias=None, attrs={"keep": keep, "seed": seed},
                 in_shape=shape, out_shape=shape)


def read_flatten(r: LayersReader, i: int, spec: dict[str, Any], prev: Layer | None) -> Layer:
    """N×C×H×W -> N×(C·H·W) (inserted by itself where an affine layer follows images)."""
    r.check_keys(spec, i, ())
    shape = in_shape(r, prev)
    return Layer(index=i + 1, weights=None, bias=None, in_shape=shape,
                 out_shape=(shape[0], int(np.prod(shape[1:]))))


CNN_LAYER_TYPES: dict[str, LayerType] = {
    "conv": read_conv, "max_pool": read_pool, "avg_pool": read_pool, "batchnorm": read_batchnorm,
    "layernorm": read_layernorm, "dropout": read_dropout, "flatten": read_flatten,
}
#: every key a layer of each type may have (the schema's source)
TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "conv": CONV_KEYS, "max_pool": POOL_KEYS, "avg_pool": POOL_KEYS, "batchnorm": NORM_KEYS,
    "layernorm": NORM_KEYS, "dropout": DROPOUT_KEYS, "flatten": (),
}
