"""Sparse changes pushed through ops: how k perturbed copies differ from the plain pass.

Perturbing one element of w1 changes one column of w1_out, one column of l1_lin and l1_relu, and
only then everything. A `Delta` says how each of k copies of a node differs from its plain value
(1, *shape), without materialising the copies:

* "elem": copy b changes element index[b] (a tuple of ints) by vals[b];          vals (k,)
* "row":  copy b changes row index[b] of a 2-D node by vals[b];                   vals (k, ncols)
* "col":  copy b changes column index[b] of a 2-D node by vals[b];               vals (k, nrows)
* "full": copy b changes everything by vals[b];                                   vals (k, *shape)

Ops that are linear in an input say how a change goes through them (`Op.push`); elementwise and
row-wise ops are handled here generically, by recomputing only the changed slices. Everything
else gets the dense copies (`Delta.dense`) and runs its plain forward: custom ops take that path.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Delta:
    kind: str
    index: np.ndarray | None
    vals: np.ndarray
    shape: tuple

    @property
    def k(self) -> int:
        return self.vals.shape[0]

    def positions(self):
        """Fancy indices (after the leading axis) of the changed slice, and the batch rows."""
        rows = np.arange(self.k)
        if self.kind == "elem":
            return rows, tuple(self.index.T)
        if self.kind == "row":
            return rows, (self.index,)
        if self.kind == "col":
            return rows, (slice(None), self.index)
        return rows, ()

    def gather(self, base: np.ndarray) -> np.ndarray:
        """The plain values (1, *shape) at the changed places, shaped like `vals`."""
        b = base[0]
        if self.kind == "elem":
            return b[tuple(self.index.T)]
        if self.kind == "row":
            return b[self.index]
        if self.kind == "col":
            return b[:, self.index].T
        return np.broadcast_to(b, self.vals.shape)

    def with_vals(self, vals) -> "Delta":
        return Delta(self.kind, self.index, vals, self.shape)

    def dense(self, base: np.ndarray) -> np.ndarray:
        """The k copies themselves, (k, *shape)."""
        dtype = np.result_type(base, self.vals)
        if self.kind == "full":
            return (base + self.vals).astype(dtype, copy=False)
        out = np.repeat(base.astype(dtype, copy=False), self.k, axis=0)
        rows = np.arange(self.k)
        if self.kind == "elem":
            out[(rows,) + tuple(self.index.T)] += self.vals
        elif self.kind == "row":
            out[rows, self.index] += self.vals
        else:
            out[rows, :, self.index] += self.vals
        return out

    def as_rows(self) -> "Delta | None":
        """The same change as whole rows of a 2-D node (an element is a row with one entry)."""
        if self.kind == "row":
            return self
        if self.kind == "elem" and len(self.shape) == 2:
            vals = np.zeros((self.k, self.shape[1]), dtype=self.vals.dtype)
            vals[np.arange(self.k), self.index[:, 1]] = self.vals
            return Delta("row", self.index[:, 0], vals, self.shape)
        return None


def elements(index: np.ndarray, vals: np.ndarray, shape: tuple) -> Delta:
    """k copies of a node, copy b with flat element index[b] changed by vals[b]."""
    multi = np.stack(np.unravel_index(index, shape), axis=1) if shape else np.zeros((len(index), 0), int)
    if not shape:
        return Delta("full", None, vals.reshape(-1), ())
    return Delta("elem", multi, vals, shape)


def push(op, slot: int, d: Delta, xs: list, out: np.ndarray, on_kink=None):
    """The change of op's output when input `slot` changes by `d` (the others stay plain), as a
    Delta, or None when only the dense copies will do. `on_kink(dist, base_dist)` sees the kink
    distances at the changed places."""
    own = getattr(op, "push", None)
    if own is not None and not op.kinked:
        res = own(slot, d, xs, out)
        if res is not None:
            return res
    structure = getattr(op, "structure", None)
    if structure == "elementwise" and len(xs) == 1:
        new_in = d.gather(xs[0]) + d.vals
        if on_kink is not None and op.kinked:
            on_kink(op.kink_distance(new_in), op.kink_distance(d.gather(xs[0])))
        return d.with_vals(op.forward(new_in) - d.gather(out))
    if structure == "rowwise" and len(xs) == 1 and len(d.shape) == 2:
        rows = d.as_rows()
        if rows is None:
            return None
        new_in = rows.gather(xs[0]) + rows.vals  # (k, C)
        if on_kink is not None and op.kinked:
            on_kink(op.kink_distance_rows(new_in, rows.index),
                    op.kink_distance_rows(rows.gather(xs[0]), rows.index))
        new_out = op.forward_rows(new_in, rows.index)
        if out.ndim == 2:  # one value per row: (N,) -> elements
            base = out[0][rows.index]
            return Delta("elem", rows.index[:, None], new_out - base, out.shape[1:])
        return Delta("row", rows.index, new_out - out[0][rows.index], out.shape[1:])
    return None


def push_rows(op, changed: dict, xs: list, out: np.ndarray):
    """Several inputs changed at once (softmax = exps · divexps, after exps changed), all in the
    same rows of 2-D nodes: recompute just those rows. `changed` maps input slot -> Delta.
    Only for ops whose output row n depends on input rows n alone (`row_separable`)."""
    if not getattr(op, "row_separable", False) or out.ndim != 3:
        return None
    rows = {slot: d.as_rows() for slot, d in changed.items()}
    if any(r is None for r in rows.values()):
        return None
    first = next(iter(rows.values()))
    if any(r.k != first.k or not np.array_equal(r.index, first.index) for r in rows.values()):
        return None
    if any(x.ndim != 3 or x.shape[1] != out.shape[1] for x in xs):
        return None
    idx = first.index
    inputs = []
    for slot, x in enumerate(xs):
        base = x[0][idx]  # (k, C_slot)
        inputs.append((base + rows[slot].vals if slot in rows else base)[:, None, :])
    new = op.forward(*inputs)[:, 0]
    return Delta("row", idx, new - out[0][idx], out.shape[1:])
