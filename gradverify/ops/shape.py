"""Ops that move entries without changing them: flatten, reshape, transpose, concat, and the
embedding lookup. Each backward puts every entry's gradient back where the entry came from.

Axes in attrs count the core axes (N first), never the leading perturbation axis B.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..delta import Delta, Kind
from ..span import Span
from .base import Op, register, unbroadcast


def core_axis(axis: int, x: np.ndarray) -> int:
    """A core axis (N is 0; negative from the end) as an axis of x (B is 0)."""
    core = x.ndim - 1
    if not -core <= axis < core:
        raise ValueError(f"axis {axis} is out of range for a {core}-D input")
    return axis % core + 1


def _int_attr(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


@register
class Flatten(Op):
    """Every sample as one row (cs231n's x.reshape(N, -1)).

    Inputs:
    - x: (B, N, d1, …, dk)
    Returns out (B, N, d1·…·dk).
    """

    name = "flatten"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[:2] + (-1,)).copy()

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return (g.reshape(g.shape[:1] + x.shape[1:]),)

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        # the same entries, renumbered: element (n, i1, …, ik) is element (n, flat(i1, …, ik));
        # a changed channel (n, c, …) is a block of columns of every row, written out whole
        if d.kind is Kind.COL and xs[0].ndim >= 4:
            vals = np.zeros((d.k, xs[0].shape[1], xs[0].shape[2], d.vals[0, 0].size), dtype=d.vals.dtype)
            vals[np.arange(d.k), :, d.at] = d.vals.reshape(d.k, d.vals.shape[1], -1)
            return Delta.full(vals.reshape((d.k,) + out.shape[1:]), out.shape[1:])
        if d.kind is not Kind.ELEM or xs[0].ndim < 3:
            return None
        flat = np.ravel_multi_index(tuple(d.at[:, 1:].T), xs[0].shape[2:])
        return Delta.elem(np.stack([d.at[:, 0], flat], axis=1), d.vals, out.shape[1:])

    span_role = "through"

    def push_span(self, slot: int, d: Any, xs: Sequence[np.ndarray], out: np.ndarray,
                  on_kink: Any) -> Span | None:
        # the same entries: their row-major positions (groups, own changes, fixes) stay as they are
        if not isinstance(d, Span) or xs[0].ndim < 3:
            return None
        shape = out.shape[1:]
        return d.moved(d.basis.reshape(d.basis.shape[:1] + shape), d.groups, d.own_pos, d.own, d.pos, d.fix, shape,
                       silent=d.silent)


@register
class Reshape(Op):
    """Every sample reshaped; N stays.

    Inputs:
    - x: (B, N, d1, …, dk)
    Attrs: shape, the new shape of one sample (without N; one entry may be -1).
    Returns out (B, N, *shape).
    """

    name = "reshape"

    def __init__(self, shape: Sequence[int]) -> None:
        if not isinstance(shape, (list, tuple)) or not shape:
            raise ValueError(f"shape must be a list of integers (one sample's shape), got {shape!r}")
        self.shape = tuple(_int_attr(s, "every entry of shape") for s in shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[:2] + self.shape).copy()

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return (g.reshape(g.shape[:1] + x.shape[1:]),)

    @property
    def label(self) -> str:
        return f"reshape({list(self.shape)})"


@register
class Transpose(Op):
    """The core axes permuted (np.transpose of one copy).

    Inputs:
    - x: (B, *shape)
    Attrs: axes, a permutation of the core axes (N is axis 0).
    Returns out (B, *[shape[a] for a in axes]).
    """

    name = "transpose"

    def __init__(self, axes: Sequence[int]) -> None:
        if not isinstance(axes, (list, tuple)) or sorted(axes) != list(range(len(axes))):
            raise ValueError(f"axes must be a permutation of 0 … k-1, got {axes!r}")
        self.axes = tuple(int(a) for a in axes)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim - 1 != len(self.axes):
            raise ValueError(f"axes {list(self.axes)} do not fit a {x.ndim - 1}-D input")
        return x.transpose((0,) + tuple(a + 1 for a in self.axes)).copy()

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # out[..., i_a0, i_a1, …] = x[..., i0, i1, …]: the inverse permutation takes g back
        inverse = np.argsort(self.axes)
        return (g.transpose((0,) + tuple(int(a) + 1 for a in inverse)).copy(),)

    @property
    def label(self) -> str:
        return f"transpose({list(self.axes)})"


@register
class Concat(Op):
    """Any number of inputs joined along one core axis (np.concatenate).

    Inputs:
    - xs: (B, …) each, equal but along `axis`
    Attrs: axis (of the core shape, N is 0; default -1).
    Returns out (B, …) with the inputs' sizes along `axis` added.
    """

    name, arity = "concat", None

    def __init__(self, axis: int = -1) -> None:
        self.axis = _int_attr(axis, "axis")

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        if not xs:
            raise ValueError("concat needs at least one input")
        b = max(x.shape[0] for x in xs)
        ax = core_axis(self.axis, xs[0])
        return np.concatenate([np.broadcast_to(x, (b,) + x.shape[1:]) for x in xs], axis=ax)

    def backward(self, g: np.ndarray, out: np.ndarray, *xs: np.ndarray) -> tuple[np.ndarray, ...]:
        # each input gets its own slice of g
        ax = core_axis(self.axis, xs[0])
        cuts = np.cumsum([x.shape[ax] for x in xs])[:-1]
        return tuple(unbroadcast(part.copy(), x) for part, x in zip(np.split(g, cuts, axis=ax), xs, strict=True))

    @property
    def label(self) -> str:
        return f"concat(axis={self.axis})"


@register
class Embedding(Op):
    """Word embedding (cs231n word_embedding_forward): row indices[n, t] of the table.

    Inputs:
    - w: the table (B, V, D)
    Attrs: indices, integers in [0, V) of shape (N, T) (a constant: not differentiable).
    Returns out (B, N, T, D), out[n, t] = w[indices[n, t]].
    """

    name = "embedding"

    def __init__(self, indices: ArrayLike) -> None:
        idx = np.asarray(indices)
        if idx.ndim != 2 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0:
            raise ValueError("indices must be a non-empty (N, T) array of integers ≥ 0")
        self.indices = idx.astype(np.intp)

    def forward(self, w: np.ndarray) -> np.ndarray:
        if self.indices.max() >= w.shape[1]:
            raise ValueError(f"index {int(self.indices.max())} is out of range for a table of {w.shape[1]} rows")
        return w[:, self.indices]

    def backward(self, g: np.ndarray, out: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
        # dw[v] = Σ of g[n, t] over the (n, t) with indices[n, t] = v (a row read twice gets both)
        dw = np.zeros(g.shape[:1] + w.shape[1:], dtype=np.result_type(g, w))
        for b in range(g.shape[0]):
            np.add.at(dw[b], self.indices.ravel(), g[b].reshape(-1, w.shape[-1]))
        return (unbroadcast(dw, w),)
