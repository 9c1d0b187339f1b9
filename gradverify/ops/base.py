"""What an op is: the `Op` base class (its whole protocol), the registry `OPS`, and the broadcasting
helpers the built-in ops share.

Conventions (the whole engine relies on them):

* Every array an op sees carries a leading *perturbation axis* B. The plain forward and backward
  passes use B = 1; the numeric side stacks B perturbed copies of one node and pushes them through
  the ops downstream of it in one call. Inputs that were not perturbed keep B = 1 and broadcast.
  So "x: (B, N, D)" in an op's docstring means N rows of D features, for each of B copies.
* `forward(*xs) -> out` and `backward(g, out, *xs) -> tuple` (one gradient per input, same shapes
  as the inputs) are pure: an op holds only the constant attributes it was built with.
* Every op works on complex arrays too and is complex-analytic wherever it is differentiable, so
  the complex-step derivative Im f(x + ih)/h is exact to rounding. Comparisons use the real part.
* An op with kinks (points where it is not differentiable) says so in `kink_distance(*xs)`: an
  array whose sign tells which side of its kink each position is on and which is 0 exactly at it.
  The numeric side uses it to tell a kink from a bug. Each kink's convention is a `# NOTE:`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from ..delta import Delta, Structure


class BadGradient(Exception):
    """An op's backward returned the wrong number or shapes of gradients. Not a crash: the engine
    reports the op as failing, with this message."""


class Op:
    """An operation of the graph: its forward and its backward side by side, and what else the
    engine may ask of it. Every member has a default but `forward` and `backward`.

    Must provide:
        name = "op"                        the registry key, `op:` in a config
        forward(*xs) -> out                every x (B, ...) with the perturbation axis
        backward(g, out, *xs) -> (dx, …)   one gradient per input, each of its input's shape
    May declare (the defaults suit a smooth op with no shortcuts):
        arity = 1                          differentiable inputs (None: any number)
        label                              how the op is shown in tables (default: name)
        complex_safe = True                complex-analytic, so the complex step is exact
        kinked = False                     True when kink_distance says something
        kink_distance(*xs)                 signed distance to the nearest kink, or None if smooth
        opaque = False                     declares no kinks but may have some: look in the numbers
        structure = None                   Structure.ELEMENTWISE / ROWWISE (one input): a sparse
                                           change is pushed by recomputing only changed slices
        forward_rows(xr, rows)             a ROWWISE op's forward on some rows
        kink_distance_rows(xr, rows)       a ROWWISE op's kink_distance on some rows
        push(slot, d, xs, out)             an exact sparse rule: out's change for a Delta d of an
                                           input (ops linear in it, reductions), or None
        push_kinked(slot, d, xs, out, on_kink)  the same for an op with kinks (max pooling)
        row_separable = False              out row n from input rows n alone (delta.push_rows)
        linear = False                     push(slot, c·d) = c·push(slot, d): out's change is
                                           linear in one input's change (delta.push_ray)
        push_ray(slot, ray, xs, out, on_kink)  a rule for a Ray of copies (ReLU, l2_penalty)
        shortcuts = False                  a user's op pushing copies in fewer calls than one each
                                           (userpush); the checker turns it off if a recheck
                                           of failing elements without it disagrees
        span_from_delta = False            push_span may turn a Delta into a `span.Span` (conv2d:
                                           a pixel's patch; batchnorm: its shared directions)
        span_role = None                   what it does with a Span: "through" (a Span out:
                                           batchnorm, relu, max pooling, flatten) or "end" (a
                                           Delta out: matmul)
        push_span(slot, d, xs, out, on_kink)  the rule for those, or None (the copies are
                                           materialised)
    """

    name: str = "op"
    arity: int | None = 1
    complex_safe: bool = True  # built-ins all are; custom ops must earn it by a probe
    kinked: bool = False
    opaque: bool = False  # custom ops: their kinks are found in the numbers (numeric.detect_kinks)
    structure: Structure | None = None
    row_separable: bool = False
    linear: bool = False
    shortcuts: bool = False
    span_from_delta: bool = False
    span_role: str | None = None

    # Typed (*xs: Any, **kw: Any) so that a subclass may name its inputs: forward(self, x, w).

    def forward(self, *xs: Any, **kw: Any) -> np.ndarray:
        """out from the inputs xs, each with the leading perturbation axis."""
        raise NotImplementedError

    def backward(self, g: np.ndarray, out: np.ndarray, *xs: Any, **kw: Any) -> tuple[np.ndarray, ...]:
        """The gradient of each input, in order, given g = dL/dout, the forward's out and its inputs."""
        raise NotImplementedError

    def kink_distance(self, *xs: Any, **kw: Any) -> np.ndarray | None:
        """Signed distance to the nearest kink per position (0 on the kink), or None if smooth.
        Complex under a complex step: its imaginary part says which positions the step moved."""
        return None

    def forward_rows(self, xr: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """A ROWWISE op on some rows: xr (k, C) are rows `rows` (k,) of the input. The default
        runs them as k copies of one row; an op with per-row constants (labels) overrides it."""
        return self.forward(xr[:, None, :])[:, 0]

    def kink_distance_rows(self, xr: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        """kink_distance on some rows, as forward_rows is forward on some rows."""
        dist = self.kink_distance(xr[:, None, :])
        return None if dist is None else dist[:, 0]

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        """The change of out when input `slot` changes by the sparse change `d` (the other inputs
        plain), as a Delta; None: no sparse rule (delta.push then tries `structure`, else the
        dense copies run through forward). Asked only of ops that are not kinked."""
        return None

    def copy_order(self, slot: int, index: np.ndarray, xs: Sequence[np.ndarray],
                   out: np.ndarray) -> np.ndarray | None:
        """An order of the flat elements `index` of input `slot` in which chunks of their copies
        take fewer calls through `push` (a permutation of range(len(index))); None: as given."""
        return None

    def push_kinked(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray,
                    on_kink: Any) -> Delta | None:
        """`push` for an op with kinks: it also tells on_kink(distance, plain_distance) the kink
        distances of the places it recomputed (or None: the dense copies run instead)."""
        return None

    def push_ray(self, slot: int, ray: Any, xs: Sequence[np.ndarray], out: np.ndarray,
                 on_kink: Any) -> Any:
        """The change of out for the copies of a `delta.Ray` in input `slot` (a Ray or a Delta),
        or None: `linear` ops push its shared changes, the rest materialise the copies. An op
        with kinks tells on_kink one distance per copy, (k, 1), against a plain one of (1, 1):
        the sign differs where the copy crosses a kink."""
        return None

    def push_span(self, slot: int, d: Any, xs: Sequence[np.ndarray], out: np.ndarray,
                  on_kink: Any) -> Any:
        """A Span of out for a Delta in input `slot` (`span_from_delta`), or for a Span there
        (`span_role` "through"), or out's change as a Delta for a Span ("end"); None: no rule
        this time (the copies are materialised). An op with kinks tells on_kink the places it
        recomputed, as push_kinked does."""
        return None

    @property
    def label(self) -> str:
        """How the op is shown in tables."""
        return self.name


#: every built-in op by name, in the order the families are imported (error messages list it)
OPS: dict[str, type[Op]] = {}

_OpClass = TypeVar("_OpClass", bound=type[Op])


def register(cls: _OpClass) -> _OpClass:
    """Class decorator: make `cls` the built-in op called `cls.name` (`op:` in a config)."""
    if cls.name in OPS:
        raise ValueError(f"op name {cls.name!r} is taken by {OPS[cls.name].__qualname__}")
    OPS[cls.name] = cls
    return cls


# ---------------------------------------------------------------------------------------------
# Broadcasting with the leading perturbation axis


def core_axes(x: np.ndarray) -> tuple[int, ...]:
    """All axes but the leading perturbation axis."""
    return tuple(range(1, x.ndim))


def expand_to(x: np.ndarray, ndim: int) -> np.ndarray:
    """Insert unit axes right after the batch axis so `x` broadcasts like numpy's core shapes."""
    return x.reshape(x.shape[:1] + (1,) * (ndim - x.ndim) + x.shape[1:])


def unbroadcast(g: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Sum `g` over the axes along which `like` was broadcast, giving `like`'s shape."""
    extra = g.ndim - like.ndim
    if extra > 0:
        g = g.sum(axis=tuple(range(1, 1 + extra)))
    axes = tuple(i for i, (gs, ls) in enumerate(zip(g.shape, like.shape, strict=False)) if ls == 1 and gs != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def per_copy(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Reshape a per-copy scalar gradient g (B,) so it broadcasts against x (B, ...)."""
    return g.reshape(g.shape[:1] + (1,) * (x.ndim - 1))


# -- constructor checks: a bad attribute is a ValueError, which build reports as "bad attrs" -----

def finite_number(value: Any, name: str) -> float:
    """A real number attribute (margin, alpha, strength): not text, not a boolean, finite."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r:.40}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large") from None
    if not np.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    return number


def flag(value: Any, name: str) -> bool:
    """A true/false attribute: `stable: no` is text in YAML 1.2, not False."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {value!r:.40}")
    return bool(value)


def numbers(value: Any, name: str) -> np.ndarray:
    """A constant array attribute (targets, weights): numbers only, finite, as float64."""
    try:
        arr = np.asarray(value)
    except ValueError:
        raise ValueError(f"{name} must be an array of numbers (rows of equal length)") from None
    if arr.size == 0 or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a non-empty array of numbers, got {_kind(arr)}")
    try:
        arr = arr.astype(np.float64)
    except OverflowError:
        raise ValueError(f"{name} holds a number too large for a float") from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    return arr


def class_indices(labels: Any) -> np.ndarray:
    """Labels as top-level `labels:` are: a 1-D list of integers ≥ 0, one per row (never -1 for
    the last class, never 0.5 rounded to 0)."""
    try:
        arr = np.asarray(labels)
    except ValueError:
        raise ValueError("labels must be a list of class indices, one per row") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"labels must be a non-empty list of class indices (1-D), got shape {list(arr.shape)}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"labels must be class indices (integers ≥ 0), got {_kind(arr)}")
    if (arr < 0).any():
        raise ValueError(f"labels must be ≥ 0, got {arr[arr < 0][0]}")
    try:
        return arr.astype(np.intp, casting="safe" if arr.dtype.kind == "i" else "same_kind")
    except TypeError:
        raise ValueError("labels are too large for class indices") from None


def fit_labels(labels: np.ndarray, x: np.ndarray) -> None:
    """One label per row of x (B, N, C), each below C; a ValueError (shapes that do not fit) else."""
    if x.ndim != 3:
        raise ValueError(f"expects rows of class scores (N×C), got {x.ndim - 1}-D")
    if len(labels) != x.shape[1]:
        raise ValueError(f"{len(labels)} labels for {x.shape[1]} rows: give one per row")
    if labels.max() >= x.shape[2]:
        raise ValueError(f"label {labels.max()} is out of range for {x.shape[2]} classes")


def _kind(arr: np.ndarray) -> str:
    if arr.size == 0:
        return "an empty list"
    return {"b": "booleans", "f": "fractional numbers", "U": "text", "S": "text",
            "c": "complex numbers"}.get(arr.dtype.kind, "mixed values")
