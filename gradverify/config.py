"""YAML -> validated plain data. The only module that imports yaml.

The YAML is composed with PyYAML's safe loader into a node tree, then turned into Python data by
hand so that every value keeps its line and column, aliases are expanded under a budget ("billion
laughs" stops early), and no tag can construct anything but plain scalars, lists and mappings.
Every problem is a ConfigError naming the key path and the place in the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import ConfigError, GradverifyError, did_you_mean, key_str
from .ops import ACTIVATIONS, LOSSES, OPS

#: the most elements any one array, and all arrays together, may have (override: --max-elements)
DEFAULT_MAX_ELEMENTS = 10_000_000
MAX_DEPTH = 32
MAX_FILE_BYTES = 256 * 2**20
INITS = ("normal", "uniform", "zeros", "ones")
DTYPES = ("float64", "float32")

TOP_KEYS = ("seed", "dtype", "tolerance", "inputs", "labels", "targets", "regularization",
            "layers", "loss", "graph", "values")
LAYER_KEYS = ("weights", "bias", "activation", "alpha", "op", "params", "attrs")
LOSS_KEYS = ("type", "stable")
GRAPH_NODE_KEYS = ("name", "op", "inputs", "attrs")

Path_ = tuple  # a key path: ("layers", 1, "weights")


@dataclass
class Source:
    """Where the config came from, and the line/column of every key path in it."""

    file: str | None = None
    base_dir: Path = Path(".")
    positions: dict = field(default_factory=dict)

    def locate(self, path: Path_) -> tuple[int | None, int | None]:
        """The line and column of `path`, or of its nearest enclosing key that the file has; a
        top-level key the file does not have (a default) has no place: (None, None)."""
        path = tuple(path)
        if not path:
            return self.positions.get((), (None, None))
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return None, None

    def error(self, message: str, path: Path_ = ()) -> ConfigError:
        line, col = self.locate(path)
        return ConfigError(message, key_str(path) or None, file=self.file, line=line, col=col)

    def place(self, err: GradverifyError) -> GradverifyError:
        """Fill in the file, line and column of an error raised with a key path but no place."""
        if err.file is None and isinstance(err.key, tuple):
            err.file = self.file
            err.line, err.col = self.locate(err.key)
        return err


@dataclass(frozen=True)
class Layer:
    """One layer of the layers form. `index` is 1-based (w1, b1, l1_… belong to layer 1)."""

    index: int
    weights: np.ndarray
    bias: np.ndarray
    activation: str | None = None  # a built-in name or "file.py:name"
    alpha: float = 0.01
    op: str | None = None  # "file.py:name": the user's affine-like layer
    params: tuple = ()  # ((name, array), ...): extra differentiable inputs of a custom layer
    attrs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GraphNode:
    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict
    path: Path_


@dataclass(frozen=True)
class Config:
    """A validated network: arrays are float64 numpy arrays (dtype is applied by build)."""

    source: Source
    seed: int = 0
    dtype: str = "float64"
    rtol: float | None = None
    atol: float | None = None
    loss: str = "softmax_cross_entropy"
    stable: bool = True
    reg_strength: float = 0.0
    reg_include: tuple[str, ...] | None = None
    labels: np.ndarray | None = None
    targets: np.ndarray | None = None
    # layers form
    inputs: np.ndarray | None = None
    layers: tuple[Layer, ...] = ()
    # graph form
    values: dict = field(default_factory=dict)  # name -> array
    input_names: tuple[str, ...] = ()
    graph: tuple[GraphNode, ...] = ()

    @property
    def is_graph(self) -> bool:
        return bool(self.graph)

    def error(self, message: str, *path) -> ConfigError:
        return self.source.error(message, tuple(path))


# ---------------------------------------------------------------------------------------------
# YAML with positions


class _Reader:
    """Turns a composed YAML node tree into plain data, recording each path's position."""

    _SCALAR_TAGS = {"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null")}

    def __init__(self, source: Source, budget: int):
        self.source = source
        self.budget = budget
        self.seen = 0
        self.constructor = yaml.SafeLoader("")

    def read(self, node, path: Path_ = (), depth: int = 0):
        self.seen += 1
        if self.seen > self.budget:
            raise self.source.error(
                f"the YAML expands to more than {self.budget:,} values (aliases repeated too often?); "
                "raise --max-elements if this is intended", path)
        if depth > MAX_DEPTH:
            raise self.source.error(f"nested more than {MAX_DEPTH} levels deep", path)
        self.source.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.ScalarNode):
            if node.tag not in self._SCALAR_TAGS:
                raise self.source.error(f"the YAML tag {node.tag!r} is not allowed "
                                        "(only plain values, lists and mappings)", path)
            return self.constructor.construct_object(node)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise self.source.error(f"the YAML tag {node.tag!r} is not allowed", path)
            return [self.read(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise self.source.error(f"the YAML tag {node.tag!r} is not allowed", path)
            out = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode) or knode.tag not in self._SCALAR_TAGS:
                    raise self.source.error("mapping keys must be plain names", path)
                key = str(self.constructor.construct_object(knode))
                if key in out:
                    self.source.positions[path + (key,)] = (knode.start_mark.line + 1,
                                                            knode.start_mark.column + 1)
                    raise self.source.error("this key is given twice", path + (key,))
                self.source.positions[path + (key,)] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
                out[key] = self.read(vnode, path + (key,), depth + 1)
            return out
        raise self.source.error("unreadable YAML node", path)  # pragma: no cover


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: same rules, faster


def _check_depth(text: str, source: Source) -> None:
    """Refuse nesting deeper than MAX_DEPTH from the event stream, before building any tree
    (PyYAML's composer recurses once per level)."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", file=source.file,
                                  line=mark.line + 1, col=mark.column + 1)
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def read_yaml(text: str, source: Source, max_elements: int = DEFAULT_MAX_ELEMENTS):
    """Parse YAML text safely into plain data, filling `source.positions`."""
    try:
        _check_depth(text, source)
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = (e.problem or e.context or "invalid YAML").strip()
        raise ConfigError(f"invalid YAML: {problem}", file=source.file,
                          line=mark.line + 1 if mark else None,
                          col=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {str(e).splitlines()[0]}", file=source.file) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", file=source.file) from None
    if node is None:
        raise ConfigError("the config is empty: expected a mapping with `layers:` or `graph:`",
                          file=source.file, line=1)
    budget = max_elements + 100_000
    if _expanded_size(node, {}, budget) > budget:
        raise ConfigError(f"the YAML expands to more than {budget:,} values (aliases repeated too "
                          "often?); raise --max-elements if this is intended", file=source.file,
                          line=1)
    return _Reader(source, budget).read(node)


def _expanded_size(node, memo: dict, budget: int) -> int:
    """How many values the node tree holds once every alias is expanded, counted without
    expanding (an alias is the same node object, so each is counted once and multiplied)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = budget + 1  # a node met again while being counted: treat as too large
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            total += _expanded_size(item, memo, budget)
            if total > budget:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, memo, budget) + _expanded_size(v, memo, budget)
            if total > budget:
                break
    memo[key] = min(total, budget + 1)
    return memo[key]


# ---------------------------------------------------------------------------------------------
# Validation helpers


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_keys(data: dict, allowed, src: Source, path: Path_, what: str) -> None:
    for key in data:
        if key not in allowed:
            raise src.error(f"unknown key {key!r} in {what}{did_you_mean(key, allowed)}; "
                            f"known keys: {', '.join(allowed)}", path + (key,))


def _mapping(value, src: Source, path: Path_, what: str) -> dict:
    if not isinstance(value, dict):
        raise src.error(f"expected a mapping ({what}), got {_kind(value)}", path)
    return value


def _kind(value) -> str:
    if isinstance(value, bool):
        return f"the boolean {value}"
    if value is None:
        return "nothing"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _number(value, src, path, *, positive=False, nonneg=False, integer=False) -> float:
    if not _is_number(value) or (integer and not isinstance(value, int)):
        raise src.error(f"expected {'an integer' if integer else 'a number'}, got {_kind(value)}", path)
    if not np.isfinite(value):
        raise src.error(f"expected a finite number, got {value}", path)
    if positive and value <= 0:
        raise src.error(f"expected a positive number, got {value}", path)
    if nonneg and value < 0:
        raise src.error(f"expected a number ≥ 0, got {value}", path)
    return value


class _Arrays:
    """Reads arrays given inline, generated, or from .npy files, under an element budget."""

    def __init__(self, src: Source, rng: np.random.Generator, max_elements: int):
        self.src, self.rng, self.max_elements = src, rng, max_elements
        self.total = 0

    def _count(self, n: int, path) -> None:
        if n > self.max_elements:
            raise self.src.error(f"{n:,} elements is more than the limit of {self.max_elements:,} "
                                 "(raise it with --max-elements)", path)
        self.total += n
        if self.total > self.max_elements:
            raise self.src.error(f"the arrays add up to more than the limit of {self.max_elements:,} "
                                 "elements (raise it with --max-elements)", path)

    def read(self, value, path: Path_, ndim: int | None = None, what: str = "array") -> np.ndarray:
        if isinstance(value, dict):
            arr = self._special(value, path)
        elif isinstance(value, list) or _is_number(value):
            arr = self._inline(value, path)
        else:
            raise self.src.error(f"expected {what} (a nested list of numbers, "
                                 "{shape: …, init: …} or {file: ….npy}), got " + _kind(value), path)
        if ndim is not None and arr.ndim != ndim:
            shape_hint = {1: "a list of numbers", 2: "a list of rows"}.get(ndim, f"{ndim}-D")
            raise self.src.error(f"expected {what} as {shape_hint} ({ndim}-D), got {arr.ndim}-D with "
                                 f"shape {list(arr.shape)}", path)
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise self.src.error(f"contains {arr[where]} at index {list(where)}: every value must be "
                                 "finite", path + where)
        return arr

    def _inline(self, value, path) -> np.ndarray:
        def shape_of(v, p):
            if isinstance(v, list):
                if not v:
                    raise self.src.error("empty list: arrays need at least one element", p)
                shapes = [shape_of(item, p + (i,)) for i, item in enumerate(v)]
                for i, s in enumerate(shapes[1:], 1):
                    if s != shapes[0]:
                        raise self.src.error(f"ragged array: item {i} has shape {list(s)} but item 0 "
                                             f"has {list(shapes[0])}", p + (i,))
                return (len(v),) + shapes[0]
            if not _is_number(v):
                raise self.src.error(f"expected a number, got {_kind(v)}", p)
            return ()

        shape = shape_of(value, path)
        self._count(int(np.prod(shape)), path)
        return np.array(value, dtype=np.float64)

    def _special(self, spec: dict, path) -> np.ndarray:
        if "file" in spec:
            _check_keys(spec, ("file",), self.src, path, "a file array")
            return self._file(spec["file"], path + ("file",))
        _check_keys(spec, ("shape", "init", "std"), self.src, path, "a generated array")
        if "shape" not in spec:
            raise self.src.error("a generated array needs `shape:` (e.g. {shape: [4, 3], init: normal})", path)
        shape = spec["shape"]
        if not isinstance(shape, list) or not shape or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
            raise self.src.error(f"expected a list of positive integers, got {_kind(shape)}", path + ("shape",))
        init = spec.get("init", "normal")
        if init not in INITS:
            raise self.src.error(f"unknown init {init!r}{did_you_mean(init, INITS)}; "
                                 f"valid: {', '.join(INITS)}", path + ("init",))
        std = _number(spec.get("std", 0.1), self.src, path + ("std",), nonneg=True)
        n = 1
        for s in shape:
            n *= s
        self._count(n, path + ("shape",))  # before allocating anything
        if init == "normal":
            return self.rng.normal(0.0, std, size=shape)
        if init == "uniform":
            return self.rng.uniform(-std, std, size=shape)
        return np.zeros(shape) if init == "zeros" else np.ones(shape)

    def _file(self, name, path) -> np.ndarray:
        if not isinstance(name, str):
            raise self.src.error(f"expected a file name, got {_kind(name)}", path)
        full = self.src.base_dir / name
        try:
            with open(full, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                shape, _, dtype = reader(fh)
                if dtype.hasobject or dtype.kind not in "biuf":
                    raise self.src.error(f"{name}: expected numbers, the file holds {dtype}", path)
                self._count(int(np.prod(shape)), path)  # before reading the data
                fh.seek(0)
                arr = np.load(fh, allow_pickle=False)
        except OSError as e:
            raise self.src.error(f"cannot read {name}: {e.strerror or e}", path) from None
        except ValueError as e:
            raise self.src.error(f"{name} is not a .npy array file: {e}", path) from None
        return np.asarray(arr, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# The config


def load(path: str | os.PathLike, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Config:
    """Read and validate a config file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError("no such config file", file=str(path))
    if p.is_dir():
        raise ConfigError("is a directory, expected a YAML config file", file=str(path))
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"the file is {size:,} bytes, more than the {MAX_FILE_BYTES:,} a config may be",
                              file=str(path))
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", file=str(path)) from None
    return parse_bytes(raw, file=str(path), base_dir=p.parent, max_elements=max_elements)


def parse_bytes(raw: bytes, file: str | None = None, base_dir: Path | str = ".",
                max_elements: int = DEFAULT_MAX_ELEMENTS) -> Config:
    if b"\x00" in raw:
        raise ConfigError("is a binary file, not a YAML config", file=file)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"is not UTF-8 text (byte {e.start})", file=file) from None
    return parse(text, file=file, base_dir=base_dir, max_elements=max_elements)


def parse(text: str, file: str | None = None, base_dir: Path | str = ".",
          max_elements: int = DEFAULT_MAX_ELEMENTS) -> Config:
    """Validate YAML text (or an already-read mapping) into a Config."""
    src = Source(file=file, base_dir=Path(base_dir))
    data = read_yaml(text, src, max_elements) if isinstance(text, str) else text
    return validate(data, src, max_elements)


def validate(data: Any, src: Source, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Config:
    """Plain data -> Config, or a ConfigError naming the first problem."""
    if not isinstance(data, dict):
        raise src.error(f"the config must be a mapping of keys (layers:, loss:, …), got {_kind(data)}")
    _check_keys(data, TOP_KEYS, src, (), "the config")
    seed = int(_number(data.get("seed", 0), src, ("seed",), integer=True, nonneg=True))
    rng = np.random.default_rng(seed)
    arrays = _Arrays(src, rng, max_elements)
    dtype = data.get("dtype", "float64")
    if dtype not in DTYPES:
        raise src.error(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}", ("dtype",))
    rtol = atol = None
    if "tolerance" in data:
        tol = _mapping(data["tolerance"], src, ("tolerance",), "rtol and atol")
        _check_keys(tol, ("rtol", "atol"), src, ("tolerance",), "tolerance")
        if "rtol" in tol:
            rtol = float(_number(tol["rtol"], src, ("tolerance", "rtol"), nonneg=True))
        if "atol" in tol:
            atol = float(_number(tol["atol"], src, ("tolerance", "atol"), nonneg=True))
    reg_strength, reg_include = _regularization(data.get("regularization"), src)
    loss, stable = _loss(data, src)
    common = dict(source=src, seed=seed, dtype=dtype, rtol=rtol, atol=atol, loss=loss, stable=stable,
                  reg_strength=reg_strength, reg_include=reg_include)

    if "graph" in data:
        return _graph_form(data, src, arrays, common)
    if "layers" not in data:
        raise src.error("missing `layers:` (a list of layers) or `graph:` (a list of nodes)")
    if "values" in data:
        raise src.error("`values:` belongs to the graph form (with `graph:`)", ("values",))
    if "inputs" not in data:
        raise src.error("missing `inputs:` (the N×D input array)")
    inputs = arrays.read(data["inputs"], ("inputs",), ndim=2, what="the inputs")
    layers = _layers(data["layers"], src, arrays, inputs.shape)
    n_rows, n_out = inputs.shape[0], layers[-1].bias.shape[0] if layers[-1].bias is not None else None
    labels, targets = _labels_targets(data, src, arrays, rng, loss, n_rows, n_out)
    return Config(inputs=inputs, layers=tuple(layers), labels=labels, targets=targets, **common)


def _regularization(value, src):
    if value is None:
        return 0.0, None
    path = ("regularization",)
    if _is_number(value):
        return float(_number(value, src, path, nonneg=True)), None
    spec = _mapping(value, src, path, "a number, or {strength: …, include: [w1, …]}")
    _check_keys(spec, ("strength", "include"), src, path, "regularization")
    strength = float(_number(spec.get("strength", 0.0), src, path + ("strength",), nonneg=True))
    include = spec.get("include")
    if include is not None:
        if not isinstance(include, list) or not all(isinstance(n, str) for n in include):
            raise src.error(f"expected a list of parameter names, got {_kind(include)}", path + ("include",))
        include = tuple(include)
    return strength, include


def is_custom(name) -> bool:
    """A custom op reference: "path/to/file.py:function"."""
    return isinstance(name, str) and ":" in name and name.split(":", 1)[0].endswith(".py")


def _loss(data, src):
    value = data.get("loss", "softmax_cross_entropy")
    stable = True
    path = ("loss",)
    if isinstance(value, dict):
        _check_keys(value, LOSS_KEYS, src, path, "the loss")
        if "type" not in value:
            raise src.error("missing `type:` (one of " + ", ".join(LOSSES) + ")", path)
        if "stable" in value:
            if not isinstance(value["stable"], bool):
                raise src.error(f"expected true or false, got {_kind(value['stable'])}", path + ("stable",))
            stable = value["stable"]
            if value["type"] != "softmax_cross_entropy" and value["type"] in LOSSES:
                raise src.error("`stable:` applies only to softmax_cross_entropy", path + ("stable",))
        value, path = value["type"], path + ("type",)
    if not isinstance(value, str):
        raise src.error(f"expected a loss name, got {_kind(value)}", path)
    if "graph" in data:
        return value, stable  # the name of the graph's scalar node, checked when it is built
    if value not in LOSSES and not is_custom(value):
        raise src.error(f"unknown loss {value!r}{did_you_mean(value, LOSSES)}; valid: "
                        f"{', '.join(LOSSES)}, or file.py:function for your own", path)
    return value, stable


def _layers(value, src, arrays, in_shape):
    if not isinstance(value, list) or not value:
        raise src.error(f"expected a list of layers, got {_kind(value)}", ("layers",))
    layers = []
    width, width_of, prev_shape = in_shape[1], "the inputs'", in_shape
    for i, spec in enumerate(value):
        path = ("layers", i)
        spec = _mapping(spec, src, path, "a layer with weights:, bias:, activation:")
        _check_keys(spec, LAYER_KEYS, src, path, f"layer {i + 1}")
        for required in ("weights", "bias"):
            if required not in spec:
                raise src.error(f"missing `{required}:`", path)
        w = arrays.read(spec["weights"], path + ("weights",), ndim=2, what="the weights")
        if w.shape[0] != width:
            theirs = "the inputs' shape" if i == 0 else f"layer {i}'s weights"
            raise src.error(f"expected {width} rows to match {width_of} {width} "
                            f"{'columns' if i == 0 else 'outputs'}, got {w.shape[0]} (these weights "
                            f"are {w.shape[0]}×{w.shape[1]}; {theirs} {prev_shape[0]}×{prev_shape[1]})",
                            path + ("weights",))
        b = arrays.read(spec["bias"], path + ("bias",), ndim=1, what="the bias")
        if b.shape[0] != w.shape[1]:
            raise src.error(f"expected {w.shape[1]} values to match the weights' {w.shape[1]} columns, "
                            f"got {b.shape[0]}", path + ("bias",))
        act = spec.get("activation")
        if act is not None:
            if not isinstance(act, str):
                raise src.error(f"expected an activation name, got {_kind(act)}", path + ("activation",))
            if act not in ACTIVATIONS and not is_custom(act):
                raise src.error(f"unknown activation {act!r}{did_you_mean(act, ACTIVATIONS)}; valid: "
                                f"{', '.join(ACTIVATIONS)}, or file.py:function for your own",
                                path + ("activation",))
        alpha = 0.01
        if "alpha" in spec:
            if act != "leaky_relu":
                raise src.error("`alpha:` applies only to activation: leaky_relu", path + ("alpha",))
            alpha = float(_number(spec["alpha"], src, path + ("alpha",), nonneg=True))
        op = spec.get("op")
        if op is not None and not is_custom(op):
            raise src.error(f"expected a custom layer as file.py:name (with name_forward and "
                            f"name_backward in file.py), got {_kind(op)}", path + ("op",))
        params = ()
        if "params" in spec:
            if op is None:
                raise src.error("`params:` applies only to a custom layer (op: file.py:name)", path + ("params",))
            pm = _mapping(spec["params"], src, path + ("params",), "name: array")
            params = tuple((k, arrays.read(v, path + ("params", k), what=f"the parameter {k}"))
                           for k, v in pm.items())
        attrs = {}
        if "attrs" in spec:
            if op is None:
                raise src.error("`attrs:` applies only to a custom layer (op: file.py:name)", path + ("attrs",))
            attrs = _mapping(spec["attrs"], src, path + ("attrs",), "keyword arguments")
        layers.append(Layer(index=i + 1, weights=w, bias=b, activation=act, alpha=alpha, op=op,
                            params=params, attrs=attrs))
        width, width_of, prev_shape = w.shape[1], f"layer {i + 1}'s", w.shape
    return layers


def _labels_targets(data, src, arrays, rng, loss, n_rows, n_classes):
    labels = targets = None
    needs_targets = loss == "mse"
    if needs_targets:
        if "labels" in data:
            raise src.error("loss mse takes `targets:` (an N×C array), not labels", ("labels",))
        if "targets" not in data:
            raise src.error("missing `targets:` (an N×C array) for loss mse")
        targets = arrays.read(data["targets"], ("targets",), ndim=2, what="the targets")
        want = (n_rows, n_classes)
        if targets.shape != want:
            raise src.error(f"expected shape {list(want)} (rows of the inputs × outputs of the last "
                            f"layer), got {list(targets.shape)}", ("targets",))
        return None, targets
    if "targets" in data and not is_custom(loss):
        raise src.error(f"`targets:` belongs to loss mse; loss {loss} takes `labels:`", ("targets",))
    if "labels" not in data:
        raise src.error(f"missing `labels:` (one class index per input row) for loss {loss}")
    labels = read_labels(data["labels"], src, ("labels",), rng, n_rows, n_classes)
    return labels, targets


def read_labels(value, src, path, rng, n_rows, n_classes):
    """Class indices, one per row: a list of integers, or {classes: C} drawn from the seed."""
    if isinstance(value, dict):
        _check_keys(value, ("classes",), src, path, "generated labels")
        c = int(_number(value.get("classes"), src, path + ("classes",), integer=True, positive=True))
        if n_classes is not None and c != n_classes:
            raise src.error(f"{c} classes, but the last layer has {n_classes} outputs", path + ("classes",))
        return rng.integers(0, c, size=n_rows)
    if not isinstance(value, list):
        raise src.error(f"expected a list of class indices or {{classes: C}}, got {_kind(value)}", path)
    if len(value) != n_rows:
        raise src.error(f"expected {n_rows} labels, one per input row, got {len(value)}", path)
    for i, v in enumerate(value):
        if not isinstance(v, int) or isinstance(v, bool):
            raise src.error(f"expected a class index (an integer), got {_kind(v)}", path + (i,))
        if n_classes is not None and not 0 <= v < n_classes:
            raise src.error(f"class {v} is out of range: the last layer has {n_classes} outputs, so "
                            f"labels run from 0 to {n_classes - 1}", path + (i,))
    return np.asarray(value, dtype=np.intp)


def _graph_form(data, src, arrays, common):
    for key in ("layers",):
        if key in data:
            raise src.error("use either `layers:` or `graph:`, not both", (key,))
    values = {}
    raw_values = _mapping(data.get("values"), src, ("values",), "name: array for every input and parameter")
    for name, v in raw_values.items():
        values[name] = arrays.read(v, ("values", name), what=f"the value {name}")
    input_names = ()
    if "inputs" in data:
        inp = data["inputs"]
        if not isinstance(inp, list) or not all(isinstance(n, str) for n in inp):
            raise src.error("in the graph form, `inputs:` lists which values are inputs (the rest "
                            f"are parameters), got {_kind(inp)}", ("inputs",))
        for i, n in enumerate(inp):
            if n not in values:
                raise src.error(f"{n!r} is not one of the values{did_you_mean(n, values)}", ("inputs", i))
        input_names = tuple(inp)
    nodes_raw = data["graph"]
    if not isinstance(nodes_raw, list) or not nodes_raw:
        raise src.error(f"expected a list of nodes {{name, op, inputs}}, got {_kind(nodes_raw)}", ("graph",))
    nodes = []
    for i, spec in enumerate(nodes_raw):
        path = ("graph", i)
        spec = _mapping(spec, src, path, "a node {name, op, inputs, attrs}")
        _check_keys(spec, GRAPH_NODE_KEYS, src, path, "a graph node")
        for required in ("name", "op"):
            if required not in spec:
                raise src.error(f"missing `{required}:`", path)
        name, op = spec["name"], spec["op"]
        if not isinstance(name, str) or not name:
            raise src.error(f"expected a node name, got {_kind(name)}", path + ("name",))
        if not isinstance(op, str) or (op not in OPS and not is_custom(op)):
            raise src.error(f"unknown op {op!r}{did_you_mean(op, OPS)}; valid: {', '.join(OPS)}, "
                            "or file.py:name for your own", path + ("op",))
        inputs = spec.get("inputs", [])
        if not isinstance(inputs, list) or not all(isinstance(n, str) for n in inputs):
            raise src.error(f"expected a list of node or value names, got {_kind(inputs)}", path + ("inputs",))
        attrs = _mapping(spec.get("attrs", {}), src, path + ("attrs",), "the op's attributes")
        nodes.append(GraphNode(name, op, tuple(inputs), attrs, path))
    labels = None
    if "labels" in data:
        n_rows = next(iter(values.values())).shape[0] if values else 0
        first_input = values[input_names[0]] if input_names else None
        labels = read_labels(data["labels"], src, ("labels",), arrays.rng,
                             first_input.shape[0] if first_input is not None else len(data["labels"])
                             if isinstance(data["labels"], list) else n_rows, None)
    targets = None
    if "targets" in data:
        targets = arrays.read(data["targets"], ("targets",), what="the targets")
    return Config(values=values, input_names=input_names, graph=tuple(nodes), labels=labels,
                  targets=targets, **common)
