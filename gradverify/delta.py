"""Sparse changes pushed through ops: how k perturbed copies differ from the plain pass.

Perturbing one element of w1 changes one column of w1_out, one column of l1_lin and l1_relu, and
only then everything. A `Delta` says how each of k copies of a node differs from its plain value
(1, *shape), without materialising the copies:

* ELEM: copy b changes element index[b] (a row of ints, index (k, ndim)) by vals[b];  vals (k,)
* ROW:  copy b changes row index[b] of a 2-D node by vals[b];                         vals (k, ncols)
* COL:  copy b changes column index[b] of a 2-D node by vals[b];                      vals (k, nrows)
        (of an N-D node: slice index[b] along its second axis, a channel;      vals (k, N, *rest))
* FULL: copy b changes everything by vals[b] (no index);                              vals (k, *shape)

A `Ray` is k copies whose changes are multiples of a few shared ones (the Taylor test's ladder
x ± h_k·v): an op whose change is linear in its input's pushes the shared changes once for all
the copies (`push_ray`); the first op that is not materialises the copies.

Ops that are linear in an input say how a change goes through them (`Op.push`); elementwise and
row-wise ops (`Op.structure`) are handled here generically, by recomputing only the changed
slices. Everything else gets the dense copies (`Delta.dense`) and runs its plain forward: custom
ops take that path.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .ops import Op

#: on_kink(distance, plain_distance): the kink distances at the changed places, perturbed and plain
#: (`Op.kink_distance`, None for an op without kinks). Called before the push returns, and must
#: not keep the arrays: a push may reuse them for its output (ReLU's full change does)
OnKink = Callable[[np.ndarray | None, np.ndarray | None], None]


class Kind(str, Enum):
    """Which slice of a node a Delta changes. A str, so `Delta("full", …)` still works."""

    ELEM = "elem"
    ROW = "row"
    COL = "col"
    FULL = "full"

    def __str__(self) -> str:
        return self.value


class Structure(str, Enum):
    """How an op's output depends on its (single) input, for `Op.structure`: lets delta.push
    recompute only the changed slices of the output."""

    ELEMENTWISE = "elementwise"  # out[i] depends on x[i] only
    ROWWISE = "rowwise"  # row n of out (or out[n]) depends on row n of x only

    def __str__(self) -> str:
        return self.value


class Delta:
    """k copies of a node of core shape `shape`, as their differences from the plain value.
    Build one with `Delta.elem`, `.row`, `.col` or `.full` (or `elements` from flat indices).

    A change made of rows of one matrix times one factor per copy (a matmul's change from one
    element of an input: a row or column of the other, times the step) may be kept as that
    product (`Delta.scaled`): `vals` is then made when first read, and a cut
    (graph.linear_change) reads the rows, picks and factors without making it."""

    __slots__ = ("kind", "index", "shape", "_vals", "source", "pick", "factor")

    def __init__(self, kind: Kind | str, index: np.ndarray | None, vals: np.ndarray | None,
                 shape: tuple[int, ...]) -> None:
        self.kind, self.index, self.shape = Kind(kind), index, shape
        self._vals = vals
        #: with `pick` (k,) and `factor` (k,): vals[b] = source[pick[b]] · factor[b]
        self.source: np.ndarray | None = None
        self.pick: np.ndarray | None = None
        self.factor: np.ndarray | None = None

    @classmethod
    def scaled(cls, kind: Kind, index: np.ndarray, source: np.ndarray, pick: np.ndarray,
               factor: np.ndarray, shape: tuple[int, ...]) -> Delta:
        """Copy b changes its slice by source[pick[b]] · factor[b]: source (S, m), factor (k,)."""
        d = cls(kind, index, None, shape)
        d.source, d.pick, d.factor = source, pick, factor
        return d

    @property
    def rows(self) -> np.ndarray:
        """A scaled change's rows, source[pick] (k, m)."""
        assert self.source is not None and self.pick is not None
        return self.source[self.pick]

    @property
    def vals(self) -> np.ndarray:
        if self._vals is None:
            assert self.factor is not None
            self._vals = scale_rows(self.rows, self.factor)
        return self._vals

    @vals.setter
    def vals(self, vals: np.ndarray) -> None:
        self._vals, self.source, self.pick, self.factor = vals, None, None, None

    @property
    def nbytes(self) -> int:
        """The bytes its changes hold (a scaled one: as its rows gathered, and its factors)."""
        if self._vals is not None:
            return int(self._vals.nbytes)
        assert self.source is not None and self.pick is not None and self.factor is not None
        return int(len(self.pick) * self.source.shape[1] * self.source.itemsize + self.factor.nbytes)

    @classmethod
    def elem(cls, index: np.ndarray, vals: np.ndarray, shape: tuple[int, ...]) -> Delta:
        """Copy b changes the element at multi-index index[b] (index (k, ndim)) by vals[b] (k,)."""
        return cls(Kind.ELEM, index, vals, shape)

    @classmethod
    def row(cls, index: np.ndarray, vals: np.ndarray, shape: tuple[int, ...]) -> Delta:
        """Copy b changes row index[b] (index (k,)) of a 2-D node by vals[b] (k, ncols)."""
        return cls(Kind.ROW, index, vals, shape)

    @classmethod
    def col(cls, index: np.ndarray, vals: np.ndarray, shape: tuple[int, ...]) -> Delta:
        """Copy b changes column index[b] (index (k,)) of a 2-D node by vals[b] (k, nrows)."""
        return cls(Kind.COL, index, vals, shape)

    @classmethod
    def full(cls, vals: np.ndarray, shape: tuple[int, ...]) -> Delta:
        """Copy b changes everything by vals[b] (k, *shape)."""
        return cls(Kind.FULL, None, vals, shape)

    @property
    def k(self) -> int:
        return int(self.vals.shape[0])

    @property
    def at(self) -> np.ndarray:
        """`index`, for the kinds that have one (all but FULL)."""
        if self.index is None:
            raise ValueError("a FULL change has no index")
        return self.index

    def gather(self, base: np.ndarray) -> np.ndarray:
        """The plain values (1, *shape) at the changed places, shaped like `vals`."""
        b = base[0]
        if self.kind is Kind.ELEM:
            return b[tuple(self.at.T)]
        if self.kind is Kind.ROW:
            return b[self.at]
        if self.kind is Kind.COL:  # indexing the swapped view: a C-contiguous (k, N, …) copy
            return np.swapaxes(b, 0, 1)[self.at]
        return np.broadcast_to(b, self.vals.shape)

    def with_vals(self, vals: np.ndarray) -> Delta:
        """The same places changed by other values."""
        return Delta(self.kind, self.index, vals, self.shape)

    def dense(self, base: np.ndarray) -> np.ndarray:
        """The k copies themselves, (k, *shape)."""
        dtype = np.result_type(base, self.vals)
        if self.kind is Kind.FULL:
            return (base + self.vals).astype(dtype, copy=False)
        out = np.repeat(base.astype(dtype, copy=False), self.k, axis=0)
        rows = np.arange(self.k)
        if self.kind is Kind.ELEM:
            out[(rows,) + tuple(self.at.T)] += self.vals
        elif self.kind is Kind.ROW:
            out[rows, self.at] += self.vals
        else:
            out[rows, :, self.at] += self.vals
        return out

    def as_rows(self) -> Delta | None:
        """The same change as whole rows of a 2-D node (an element is a row with one entry)."""
        if self.kind is Kind.ROW:
            return self
        if self.kind is Kind.ELEM and len(self.shape) == 2:
            vals = np.zeros((self.k, self.shape[1]), dtype=self.vals.dtype)
            vals[np.arange(self.k), self.at[:, 1]] = self.vals
            return Delta.row(self.at[:, 0], vals, self.shape)
        return None


def scale_rows(rows: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """rows (k, m) real times factor (k,), one factor per row. A complex step's change has a real
    part of 0: then only the imaginary part is multiplied (one real product per entry, not
    numpy's complex cast and complex product); the same values otherwise."""
    if np.iscomplexobj(factor) and not np.iscomplexobj(rows) and not factor.real.any():
        out = np.zeros(rows.shape, dtype=np.result_type(rows, factor))
        np.multiply(rows, factor.imag[:, None], out=out.imag)
        return out
    return rows * factor[:, None]


def elements(index: np.ndarray, vals: np.ndarray, shape: tuple[int, ...]) -> Delta:
    """k copies of a node, copy b with flat element index[b] changed by vals[b]."""
    if not shape:
        return Delta.full(vals.reshape(-1), ())
    return Delta.elem(np.stack(np.unravel_index(index, shape), axis=1), vals, shape)


@dataclass
class Ray:
    """k copies, copy b changed by coef[b] · (row group[b] of `d`): d holds m shared changes."""

    d: Delta
    group: np.ndarray  # (k,) ints < m
    coef: np.ndarray  # (k,) real

    @property
    def k(self) -> int:
        return len(self.coef)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.d.shape

    def materialize(self) -> Delta:
        """The copies' own changes, as one Delta of k rows."""
        d = self.d
        scale = self.coef.reshape((-1,) + (1,) * (d.vals.ndim - 1))
        index = None if d.index is None else d.index[self.group]
        return Delta(d.kind, index, d.vals[self.group] * scale, d.shape)


def push_ray(op: Op, slot: int, ray: Ray, xs: Sequence[np.ndarray], out: np.ndarray,
             on_kink: OnKink | None = None) -> Ray | Delta | None:
    """The change of op's output for the copies of a Ray in input `slot`: the op's own rule
    (`Op.push_ray`: ReLU keeps the copies that cross no kink on the ray), else, for an op whose
    change is linear in its input's (`Op.linear`), the m shared changes pushed once. None: the
    copies must be materialised."""
    res = op.push_ray(slot, ray, xs, out, on_kink)
    if res is not None or not op.linear or op.kinked:
        return res
    shared = push(op, slot, ray.d, xs, out)
    return None if shared is None else Ray(shared, ray.group, ray.coef)


def push(op: Op, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray,
         on_kink: OnKink | None = None) -> Delta | None:
    """The change of op's output when input `slot` changes by `d` (the others stay plain), as a
    Delta, or None when only the dense copies will do: the op's own rule (`Op.push`, for an op
    without kinks), else the generic one its `Op.structure` allows. `on_kink(dist, base_dist)`
    sees the kink distances at the changed places."""
    res = op.push(slot, d, xs, out) if not op.kinked else op.push_kinked(slot, d, xs, out, on_kink)
    if res is not None:
        return res
    if len(xs) != 1:
        return None
    if op.structure == Structure.ELEMENTWISE:  # == : a plain "elementwise" works too
        return _push_elementwise(op, d, xs[0], out, on_kink)
    if op.structure == Structure.ROWWISE and len(d.shape) == 2:
        return _push_rowwise(op, d, xs[0], out, on_kink)
    return None


def _push_elementwise(op: Op, d: Delta, x: np.ndarray, out: np.ndarray, on_kink: OnKink | None) -> Delta:
    """out[i] from x[i] alone: recompute the changed elements (rows, columns) only."""
    new_in = d.gather(x) + d.vals
    if on_kink is not None and op.kinked:  # a FULL change's plain places are all of x: once, not k times
        on_kink(op.kink_distance(new_in), op.kink_distance(x if d.kind is Kind.FULL else d.gather(x)))
    return d.with_vals(op.forward(new_in) - d.gather(out))


def _push_rowwise(op: Op, d: Delta, x: np.ndarray, out: np.ndarray, on_kink: OnKink | None) -> Delta | None:
    """Row n of out from row n of x alone: recompute the changed rows only."""
    rows = d.as_rows()
    if rows is None:
        return None
    new_in = rows.gather(x) + rows.vals  # (k, C)
    if on_kink is not None and op.kinked:
        on_kink(op.kink_distance_rows(new_in, rows.at), op.kink_distance_rows(rows.gather(x), rows.at))
    new_out = op.forward_rows(new_in, rows.at)
    if out.ndim == 2:  # one value per row: (N,) -> elements
        base = out[0][rows.at]
        return Delta.elem(rows.at[:, None], new_out - base, out.shape[1:])
    return Delta.row(rows.at, new_out - out[0][rows.at], out.shape[1:])


def push_rows(op: Op, changed: dict[int, Delta], xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
    """Several inputs changed at once (softmax = exps · divexps, after exps changed), all in the
    same rows of 2-D nodes: recompute just those rows. `changed` maps input slot -> Delta.
    Only for ops whose output row n depends on input rows n alone (`Op.row_separable`)."""
    if not op.row_separable or out.ndim != 3:
        return None
    rows: dict[int, Delta] = {}
    for slot, d in changed.items():
        r = d.as_rows()
        if r is None:
            return None
        rows[slot] = r
    first = next(iter(rows.values()))
    if any(r.k != first.k or not np.array_equal(r.at, first.at) for r in rows.values()):
        return None
    if any(x.ndim != 3 or x.shape[1] != out.shape[1] for x in xs):
        return None
    idx = first.at
    inputs = []
    for slot, x in enumerate(xs):
        base = x[0][idx]  # (k, C_slot)
        inputs.append((base + rows[slot].vals if slot in rows else base)[:, None, :])
    new = op.forward(*inputs)[:, 0]
    return Delta.row(idx, new - out[0][idx], out.shape[1:])
