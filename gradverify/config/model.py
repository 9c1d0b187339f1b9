"""What a validated config is: the Config, its layers or graph nodes, and the Source that knows
where each key path sits in the file."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, GradverifyError, KeyPath, key_str


@dataclass
class Source:
    """Where the config came from, and the line/column of every key path in it."""

    file: str | None = None
    base_dir: Path = Path(".")
    confine: Path | None = None  # every file the config names must be inside it (config.paths)
    code_dir: Path | None = None  # where file.py:name references are read (--code-dir), else base_dir
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: KeyPath) -> tuple[int | None, int | None]:
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

    def error(self, message: str, path: KeyPath = ()) -> ConfigError:
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
    weights: np.ndarray | None  # None: a layer without weights (pooling, batchnorm, dropout, flatten)
    bias: np.ndarray | None  # None: no bias (those layers, and a conv without `bias:`)
    type: str = "affine"  # which builder makes its nodes (build.LAYERS)
    activation: str | None = None  # a built-in name or "file.py:name"
    alpha: float | None = None  # the activation's `alpha:`, when given
    op: str | None = None  # "file.py:name": the user's affine-like layer
    params: tuple[tuple[str, np.ndarray], ...] = ()  # extra differentiable inputs of a custom layer
    attrs: dict[str, Any] = field(default_factory=dict)  # a custom layer's keywords; a built-in type's settings
    in_shape: tuple[int, ...] = ()  # the layer's input without the perturbation axis (N×D, N×C×H×W)
    out_shape: tuple[int, ...] = ()  # its output, before the activation (which keeps the shape)


@dataclass(frozen=True)
class GraphNode:
    name: str  # the first output's name when `name:` lists several
    op: Any  # as given: a built-in op's name, "file.py:name", {forward:, backward:} or {loss:}
    inputs: tuple[str, ...]
    attrs: dict[str, Any]
    path: KeyPath
    outputs: tuple[str, ...] = ()  # `name: [next_h, next_c]`: every output's name
    reference: str | None = None  # `reference: conv2d`: a built-in whose forward the user's must equal


@dataclass(frozen=True)
class ModelSpec:
    """`model:`: the user's classifier, `cls(**args).loss(*inputs, **kwargs) -> (loss, grads)`."""

    cls: Any  # "file.py:Class" (or, from the API, the class or an instance)
    args: dict[str, Any]
    inputs: tuple[str, ...]  # names from data:
    kwargs: dict[str, Any]
    path: KeyPath = ("model",)


@dataclass(frozen=True)
class Config:
    """A validated network: arrays are float64 numpy arrays (dtype is applied by build)."""

    source: Source
    seed: int = 0
    dtype: str = "float64"
    rtol: float | None = None
    atol: float | None = None
    loss: str | None = "softmax_cross_entropy"  # None: a `loss:` mapping without `type:` (build says so)
    stable: bool = True
    loss_spec: dict[str, Any] = field(default_factory=dict)  # the `loss:` mapping as given; {} for a name
    reg_strength: float = 0.0
    reg_include: tuple[str, ...] | None = None
    labels: np.ndarray | None = None
    targets: np.ndarray | None = None
    # layers form
    inputs: np.ndarray | None = None
    layers: tuple[Layer, ...] = ()
    # graph form
    values: dict[str, np.ndarray] = field(default_factory=dict)
    input_names: tuple[str, ...] = ()
    graph: tuple[GraphNode, ...] = ()
    data: dict[str, np.ndarray] = field(default_factory=dict)  # constants in their own dtype
    loss_nodes: tuple[str, ...] = ()  # `loss:` as a list: the nodes projected and summed
    model: ModelSpec | None = None

    @property
    def is_graph(self) -> bool:
        return bool(self.graph) or self.model is not None

    def error(self, message: str, *path: str | int) -> ConfigError:
        return self.source.error(message, tuple(path))
