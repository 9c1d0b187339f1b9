"""A config file, bytes or text -> a validated Config: the top-level keys, then the layers form
or the graph form. Every problem is a ConfigError naming the key path and the place in the file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .arrays import DEFAULT_MAX_ELEMENTS, ArrayReader
from .checks import check_keys, is_custom, is_number, kind, mapping, number
from .graph_form import read_graph_form
from .labels import labels_targets
from .layers import LayersReader, last_width, read_inputs, read_layers
from .model import Config, Source
from .paths import NotRegularFile, code_folder, read_bounded, resolve_path
from .yaml_reader import read_yaml

MAX_FILE_BYTES = 256 * 2**20
DTYPES = ("float64", "float32")
TOP_KEYS = ("seed", "dtype", "tolerance", "inputs", "labels", "targets", "regularization",
            "layers", "loss", "graph", "values", "data", "model")
LOSS_KEYS = ("type", "stable")


def load(path: str | os.PathLike[str], max_elements: int = DEFAULT_MAX_ELEMENTS,
         confine: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate a config file (a regular file: a FIFO or device is refused, not waited
    on or read without end). Under `confine`, every file the config names must be inside it."""
    p = Path(path)
    try:
        raw = read_bounded(p, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise ConfigError("no such config file", file=str(path)) from None
    except NotRegularFile as e:
        raise ConfigError(f"is {e.what}, expected a YAML config file", file=str(path)) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", file=str(path)) from None
    except ValueError as e:
        raise ConfigError(str(e), file=str(path)) from None
    return parse_bytes(raw, file=str(path), base_dir=p.parent, max_elements=max_elements, confine=confine)


def parse_bytes(raw: bytes, file: str | None = None, base_dir: Path | str = ".",
                max_elements: int = DEFAULT_MAX_ELEMENTS,
                confine: str | os.PathLike[str] | None = None) -> Config:
    if b"\x00" in raw:
        raise ConfigError("is a binary file, not a YAML config", file=file)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"is not UTF-8 text (byte {e.start})", file=file) from None
    return parse(text, file=file, base_dir=base_dir, max_elements=max_elements, confine=confine)


def parse(text: str | dict[str, Any], file: str | None = None, base_dir: Path | str = ".",
          max_elements: int = DEFAULT_MAX_ELEMENTS, confine: str | os.PathLike[str] | None = None) -> Config:
    """Validate YAML text (or an already-read mapping) into a Config."""
    src = Source(file=file, base_dir=Path(base_dir), confine=None if confine is None else Path(confine))
    data = read_yaml(text, src, max_elements) if isinstance(text, str) else text
    return validate(data, src, max_elements)


def validate(data: Any, src: Source, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Config:
    """Plain data -> Config, or a ConfigError naming the first problem."""
    if not isinstance(data, dict):
        raise src.error(f"the config must be a mapping of keys (layers:, loss:, …), got {kind(data)}")
    check_keys(data, TOP_KEYS, src, (), "the config")
    seed = int(number(data.get("seed", 0), src, ("seed",), integer=True, nonneg=True))
    rng = np.random.default_rng(seed)
    arrays = ArrayReader(src, rng, max_elements)
    dtype = data.get("dtype", "float64")
    if dtype not in DTYPES:
        raise src.error(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}", ("dtype",))
    rtol, atol = _tolerance(data, src)
    reg_strength, reg_include = _regularization(data.get("regularization"), src)
    loss, loss_spec = _loss(data, src)
    common: dict[str, Any] = dict(
        source=src, seed=seed, dtype=dtype, rtol=rtol, atol=atol, loss=loss, loss_spec=loss_spec,
        stable=loss_spec.get("stable", True), reg_strength=reg_strength, reg_include=reg_include)
    if "graph" in data or "model" in data:
        return _confined(Config(**{**common, **read_graph_form(data, src, arrays)}))
    if "layers" not in data:
        raise src.error("missing `layers:` (a list of layers) or `graph:` (a list of nodes)")
    if "values" in data:
        raise src.error("`values:` belongs to the graph form (with `graph:`)", ("values",))
    if "inputs" not in data:
        raise src.error("missing `inputs:` (the N×D input array)")
    inputs = read_inputs(data["inputs"], src, arrays)  # N×D rows, or N×C×H×W images for a CNN
    layers = read_layers(data["layers"], LayersReader(src, arrays, inputs.shape, seed))
    n_out = last_width(layers, src)  # the last layer's outputs: what labels index, targets match
    labels, targets = labels_targets(data, src, arrays, loss, inputs.shape[0], n_out)
    return _confined(Config(inputs=inputs, layers=layers, labels=labels, targets=targets, **common))


def _confined(cfg: Config) -> Config:
    """Under --confine, the file of every `file.py:name` op, loss, activation and model class
    must be inside the folder too (array files are checked as they are read)."""
    src = cfg.source
    if src.confine is None:
        return cfg
    refs: list[tuple[Any, tuple[str | int, ...]]] = [(cfg.loss, ("loss",))]
    for k, layer in enumerate(cfg.layers):
        refs += [(layer.activation, ("layers", k, "activation")), (layer.op, ("layers", k, "op"))]
    refs += [(node.op, tuple(node.path) + ("op",)) for node in cfg.graph]
    refs += [(fn, tuple(node.path) + ("op", key)) for node in cfg.graph if isinstance(node.op, dict)
             for key, fn in node.op.items()]
    if cfg.model is not None:
        refs.append((cfg.model.cls, tuple(cfg.model.path) + ("class",)))
    for ref, path in refs:
        if is_custom(ref):
            try:
                resolve_path(code_folder(src), ref.split(":", 1)[0], src.confine)
            except ConfigError as e:
                raise src.error(e.message, path) from None
    return cfg


def _tolerance(data: dict[str, Any], src: Source) -> tuple[float | None, float | None]:
    if "tolerance" not in data:
        return None, None
    tol = mapping(data["tolerance"], src, ("tolerance",), "rtol and atol")
    check_keys(tol, ("rtol", "atol"), src, ("tolerance",), "tolerance")
    rtol = float(number(tol["rtol"], src, ("tolerance", "rtol"), nonneg=True)) if "rtol" in tol else None
    atol = float(number(tol["atol"], src, ("tolerance", "atol"), nonneg=True)) if "atol" in tol else None
    return rtol, atol


def _regularization(value: Any, src: Source) -> tuple[float, tuple[str, ...] | None]:
    if value is None:
        return 0.0, None
    path = ("regularization",)
    if is_number(value):
        return float(number(value, src, path, nonneg=True)), None
    spec = mapping(value, src, path, "a number, or {strength: …, include: [w1, …]}")
    check_keys(spec, ("strength", "include"), src, path, "regularization")
    strength = float(number(spec.get("strength", 0.0), src, path + ("strength",), nonneg=True))
    include = spec.get("include")
    if include is None:
        return strength, None
    if not isinstance(include, list) or not all(isinstance(n, str) for n in include):
        raise src.error(f"expected a list of parameter names, got {kind(include)}", path + ("include",))
    if not include:
        raise src.error("an empty list: name the parameters to penalize, or leave out `include:` to "
                        "penalize every weight and bias", path + ("include",))
    for k, name in enumerate(include):
        if name in include[:k]:  # it would be penalized twice
            raise src.error(f"{name!r} is listed twice", path + ("include", k))
    return strength, tuple(include)


def _loss(data: dict[str, Any], src: Source) -> tuple[str | None, dict[str, Any]]:
    """The loss's name, and its mapping ({type: …, stable: …}) when given as one. Whether the name
    is a loss is checked by build (in the graph form it names the graph's scalar node); the name
    is None for a mapping without `type:`, which build reports."""
    value = data.get("loss", "softmax_cross_entropy")
    if isinstance(value, list):  # the graph form's nodes to project (graph_form reads them)
        return None, {}
    if not isinstance(value, dict):
        if not isinstance(value, str):
            raise src.error(f"expected a loss name, got {kind(value)}", ("loss",))
        return value, {}
    check_keys(value, LOSS_KEYS, src, ("loss",), "the loss")
    if "stable" in value and not isinstance(value["stable"], bool):
        raise src.error(f"expected true or false, got {kind(value['stable'])}", ("loss", "stable"))
    if "type" not in value:
        return None, value
    if not isinstance(value["type"], str):
        raise src.error(f"expected a loss name, got {kind(value['type'])}", ("loss", "type"))
    return value["type"], value

