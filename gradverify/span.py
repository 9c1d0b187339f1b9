"""Changes that share a few dense directions: k copies whose changes after a batchnorm are, up to
a few numbers per copy and channel, the same two arrays.

A spatial batchnorm renormalises each channel: when one pixel of its input moves, every entry of
the channel moves, but only by a rescaling of the plain xhat and a shift (ops/norm.py) plus the
pixel's own term:

    Δout_b[p] = Σ_j coef[b, j, group(p)] · basis[j][p]  +  Σ_i own[b, i]·[p = own_pos[b, i]]
                                                        +  Σ_i fix[b, i]·[p = pos[i]]

with basis (m, *shape) shared by all copies (xhat and ones), group(p) the channel of position p
(the same in every row n: `groups` has the shape of one row), coef (k, m, G) a few numbers per
copy and channel, each copy's own changes at a few positions of its own (own_pos, own: a changed
element, a convolved pixel's patch) and fix (k, P) corrections at P flat positions shared by all
copies. `silent` marks the positions where every copy's change is exactly 0 (relu's off side:
every part of the change is multiplied by 0 there), so that pooling need not recompute a window
tied among them.

Ops downstream that are linear where the copies go (relu away from 0, max pooling away from
ties, flatten) map the shared directions, the own changes and the fixes once for all copies
(`Op.push_span`; flat positions of the core are the same before and after a flatten); a matmul
ends the span, computing basis @ w once per channel and the copies' change as coef @ that
(`Op.span_role` "end"). Everything else materialises the copies (`materialize`).

Only complex-step copies take this path: their real parts are rounding-sized, so no copy moves
a relu input across 0 or a window's maximum past another entry except where the plain pass sits
on a kink, and those places are recomputed as forward does (`fix`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .delta import Delta, Kind


@dataclass
class Span:
    """k copies of a node of core shape `shape` (n rows first), as a shared low-rank change plus
    sparse parts of their own (see the module's docstring)."""

    basis: np.ndarray  # (m, *shape)
    groups: np.ndarray  # (row size,) ints < G: the group of each position of a row
    coef: np.ndarray  # (k, m, G)
    own_pos: np.ndarray  # (k, Q) flat positions of each copy's own changes (0 with value 0: padding)
    own: np.ndarray  # (k, Q) their values; a position may repeat (the values add up)
    pos: np.ndarray  # (P,) flat positions
    fix: np.ndarray  # (k, P)
    shape: tuple[int, ...]
    real_reach: float = 0.0  # the bound `reach()` at the Span's making, carried downstream
    silent: np.ndarray | None = None  # (n · row size,) bool: where every copy's change is exactly 0

    @property
    def k(self) -> int:
        return int(self.coef.shape[0])

    @property
    def row_size(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64))

    @property
    def dtype(self) -> np.dtype:
        return np.result_type(self.basis, self.coef, self.fix, self.own)

    @property
    def nbytes(self) -> int:
        """The bytes the copies hold: the shared basis is one node's size whatever k is, like the
        plain pass's values, and is not counted (chunks are sized from bytes per copy)."""
        return self.coef.nbytes + self.fix.nbytes + self.own.nbytes + self.own_pos.nbytes

    def materialize(self) -> Delta:
        """The copies' own changes, one dense FULL Delta (k, *shape); a ROW where every copy's
        change lies in one row (own changes alone: a conv's patches)."""
        k, n, r = self.k, self.shape[0], self.row_size
        rows = self.own_pos // r
        if not self.basis.shape[0] and not self.pos.size and np.all(rows == rows[:, :1]):
            vals = np.zeros((k, r), dtype=self.dtype)
            np.add.at(vals, (np.arange(k)[:, None], self.own_pos % r), self.own)
            return Delta.row(rows[:, 0], vals.reshape((k,) + self.shape[1:]), self.shape)
        out = np.zeros((k, n, r), dtype=self.dtype)
        for j in range(self.basis.shape[0]):
            out += self.coef[:, j][:, None, self.groups] * self.basis[j].reshape(1, n, r)
        flat = out.reshape(k, -1)
        rows = np.arange(k)[:, None]
        np.add.at(flat, (rows, self.own_pos), self.own)
        np.add.at(flat, (rows, self.pos[None, :]), self.fix)
        return Delta.full(out.reshape((k,) + self.shape), self.shape)

    def at(self, q: np.ndarray) -> np.ndarray:
        """The copies' changes at flat positions q (Q,): (k, Q)."""
        g = self.groups[q % self.row_size]
        vals = np.zeros((self.k, q.size), dtype=self.dtype)
        for j in range(self.basis.shape[0]):
            vals += self.coef[:, j][:, g] * self.basis[j].reshape(-1)[q]
        if not q.size:
            return vals
        places, back = np.unique(q, return_inverse=True)
        mine = np.zeros((self.k, places.size), dtype=self.dtype)  # the own changes at `places`
        slot = np.minimum(np.searchsorted(places, self.own_pos), places.size - 1)
        hit = places[slot] == self.own_pos
        np.add.at(mine, (np.nonzero(hit)[0], slot[hit]), self.own[hit])
        vals += mine[:, back.reshape(-1)]
        if self.pos.size:
            vals += self.fix @ (self.pos[:, None] == q[None, :])
        return vals

    def reach(self) -> float:
        """A bound on how far any copy moves any real value: Σ_j max |Re coef| · max |basis_j|
        (per group) + Σ |Re own| + Σ |Re fix|. The complex step's copies move none but by
        rounding."""
        real = np.isrealobj(self.basis)
        bound = np.zeros(self.k)
        for j in range(self.basis.shape[0]):
            top = np.zeros(self.coef.shape[2])
            np.maximum.at(top, self.groups, np.abs(self.basis[j]).reshape(self.shape[0], -1).max(axis=0))
            c = np.abs(self.coef[:, j].real) if real else np.abs(self.coef[:, j])
            bound += (c * top).max(axis=1, initial=0.0)
        bound += np.abs(self.own.real).sum(axis=1) + np.abs(self.fix.real).sum(axis=1)
        return float(bound.max(initial=0.0))

    def moved(self, basis: np.ndarray, groups: np.ndarray, own_pos: np.ndarray, own: np.ndarray,
              pos: np.ndarray, fix: np.ndarray, shape: tuple[int, ...], new_fix: np.ndarray | None = None,
              silent: np.ndarray | None = None) -> Span:
        """The same copies' coefficients on other shared directions: an op's output, which moves
        no real value farther than its input did but by the real parts of the fixes it adds
        (new_fix, (k, P')); `silent` its positions known to stay unchanged."""
        added = 0.0 if new_fix is None else float(np.abs(new_fix.real).sum(axis=1).max(initial=0.0))
        return Span(basis, groups, self.coef, own_pos, own, pos, fix, shape, self.real_reach + added, silent)


def sum_by(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Σ values[i] over the i with index[i] = j, for j < size (np.add.at's result, by
    np.bincount: several times faster), in values' type."""
    index, values = index.reshape(-1), values.reshape(-1)
    total = np.bincount(index, weights=values.real, minlength=size)
    if np.iscomplexobj(values):
        total = total + 1j * np.bincount(index, weights=values.imag, minlength=size)
    return total.astype(np.result_type(values, np.float32), copy=False)


def own_points(d: Delta) -> tuple[np.ndarray, np.ndarray] | None:
    """A changed element or row as each copy's own changes: flat positions and values (k, Q),
    a row's nonzero entries only (a convolved pixel's patch), padded with value 0 at the row's
    start. None for other kinds."""
    if d.kind is Kind.ELEM:
        return np.ravel_multi_index(tuple(d.at.T), d.shape)[:, None], d.vals[:, None]
    if d.kind is not Kind.ROW:
        return None
    r = int(np.prod(d.shape[1:], dtype=np.int64))
    cols = np.broadcast_to(np.arange(r), (d.k, r))
    return packed(d.at[:, None] * r + cols, d.vals.reshape(d.k, r), d.at * r)


def packed(pos: np.ndarray, vals: np.ndarray, pad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each copy's nonzero entries of (pos, vals) (k, Q) first, in order, the rest dropped: as
    few columns as the copy with most needs, padded with value 0 at position pad[b]."""
    nonzero = vals != 0  # a complex value is 0 only when both its parts are
    copy, col = np.nonzero(nonzero)  # row-major: each copy's entries together, in order
    counts = np.bincount(copy, minlength=len(vals))
    rank = np.arange(copy.size) - np.repeat(np.cumsum(counts) - counts, counts)
    out_pos = np.repeat(pad[:, None], max(int(counts.max(initial=0)), 1), axis=1)
    out = np.zeros(out_pos.shape, dtype=vals.dtype)
    out_pos[copy, rank] = pos[copy, col]
    out[copy, rank] = vals[copy, col]
    return out_pos, out


def complex_only(d: Delta) -> bool:
    """Does `d` carry a complex step (the only copies a Span is made for)?"""
    return np.iscomplexobj(d.vals)


def span_or_none(span: Span, x: np.ndarray) -> Span | None:
    """`span`, its `real_reach` set, where its real parts are rounding-sized against x (no copy
    can cross a kink but where the plain pass sits on one), else None."""
    from .ops import farkinks  # ops import this module

    span.real_reach = span.reach()
    return span if span.real_reach <= farkinks.allowance(x, span.dtype) else None
