"""Changes that share a few dense directions: k copies whose changes after a batchnorm are, up to
a few numbers per copy and channel, the same two arrays.

A spatial batchnorm renormalises each channel: when one pixel of its input moves, every entry of
the channel moves, but only by a rescaling of the plain xhat and a shift (ops/norm.py) plus the
pixel's own term:

    Δout_b[p] = Σ_j coef[b, j, group(p)] · basis[j][p]  +  rest_b[p]  +  Σ_i fix[b, i]·[p = pos[i]]

with basis (m, *shape) shared by all copies (xhat and ones), group(p) the channel of position p
(the same in every row n: `groups` has the shape of one row), coef (k, m, G) a few numbers per copy
and channel, rest a sparse Delta of each copy's own (ELEM or ROW) and fix (k, P) corrections at
P flat positions shared by all copies. `silent` marks the positions where every copy's change is
exactly 0 (relu's off side: every part of the change is multiplied by 0 there), so that pooling
need not recompute a window tied among them. Ops downstream that are linear where the copies go (relu
away from 0, max pooling away from ties, flatten) map basis, rest and fix once for all copies
(`Op.push_span`); a matmul ends the span, computing basis @ w once per channel and the copies'
change as coef @ that (Op.span_role "end"). Everything else materialises the copies (`materialize`).

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
    rest: Delta | None  # ELEM or ROW of `shape`
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
        parts = [self.basis, self.coef, self.fix] + ([self.rest.vals] if self.rest is not None else [])
        return np.result_type(*parts)

    @property
    def nbytes(self) -> int:
        rest = 0 if self.rest is None else self.rest.vals.nbytes
        return self.basis.nbytes + self.coef.nbytes + self.fix.nbytes + rest

    def materialize(self) -> Delta:
        """The copies' own changes, one dense FULL Delta (k, *shape)."""
        k, n, r = self.k, self.shape[0], self.row_size
        out = np.zeros((k, n, r), dtype=self.dtype)
        for j in range(self.basis.shape[0]):
            out += self.coef[:, j][:, None, self.groups] * self.basis[j].reshape(1, n, r)
        flat = out.reshape(k, -1)
        rows = np.arange(k)
        if self.rest is not None:
            if self.rest.kind is Kind.ELEM:
                flat[rows, self.rest_flat()] += self.rest.vals
            else:
                out[rows, self.rest.at] += self.rest.vals.reshape(k, r)
        if self.pos.size:
            np.add.at(flat, (rows[:, None], self.pos[None, :]), self.fix)
        return Delta.full(out.reshape((k,) + self.shape), self.shape)

    def rest_flat(self) -> np.ndarray:
        """An ELEM rest's element, as a flat position of the core (k,)."""
        assert self.rest is not None and self.rest.kind is Kind.ELEM
        return np.ravel_multi_index(tuple(self.rest.at.T), self.shape)

    def at(self, q: np.ndarray) -> np.ndarray:
        """The copies' changes at flat positions q (Q,): (k, Q)."""
        r = self.row_size
        g = self.groups[q % r]
        vals = np.zeros((self.k, q.size), dtype=self.dtype)
        for j in range(self.basis.shape[0]):
            vals += self.coef[:, j][:, g] * self.basis[j].reshape(-1)[q]
        if self.rest is not None:
            if self.rest.kind is Kind.ELEM:
                vals += np.where(self.rest_flat()[:, None] == q, self.rest.vals[:, None], 0)
            else:
                own = self.rest.vals.reshape(self.k, r)[:, q % r]
                vals += np.where(self.rest.at[:, None] == q // r, own, 0)
        if self.pos.size:
            vals += self.fix @ (self.pos[:, None] == q[None, :])
        return vals

    def reach(self) -> float:
        """A bound on how far any copy moves any real value: Σ_j max |Re coef| · max |basis_j|
        (per group) + the largest real part of rest + Σ |Re fix|. The complex step's copies move
        none but by rounding."""
        real = np.isrealobj(self.basis)
        bound = np.zeros(self.k)
        for j in range(self.basis.shape[0]):
            top = np.zeros(self.coef.shape[2])
            np.maximum.at(top, self.groups, np.abs(self.basis[j]).reshape(self.shape[0], -1).max(axis=0))
            c = np.abs(self.coef[:, j].real) if real else np.abs(self.coef[:, j])
            bound += (c * top).max(axis=1, initial=0.0)
        if self.rest is not None:
            bound += np.abs(self.rest.vals.real).reshape(self.k, -1).max(axis=1, initial=0.0)
        bound += np.abs(self.fix.real).sum(axis=1)
        return float(bound.max(initial=0.0))

    def moved(self, basis: np.ndarray, groups: np.ndarray, rest: Delta | None, pos: np.ndarray,
              fix: np.ndarray, shape: tuple[int, ...], new_fix: np.ndarray | None = None,
              silent: np.ndarray | None = None) -> Span:
        """The same copies' coefficients on other shared directions: an op's output, which moves
        no real value farther than its input did but by the real parts of the fixes it adds
        (new_fix, (k, P')); `silent` its positions known to stay unchanged."""
        added = 0.0 if new_fix is None else float(np.abs(new_fix.real).sum(axis=1).max(initial=0.0))
        return Span(basis, groups, self.coef, rest, pos, fix, shape, self.real_reach + added, silent)


def complex_only(d: Delta) -> bool:
    """Does `d` carry a complex step (the only copies a Span is made for)?"""
    return np.iscomplexobj(d.vals)


def span_or_none(span: Span, x: np.ndarray) -> Span | None:
    """`span`, its `real_reach` set, where its real parts are rounding-sized against x (no copy
    can cross a kink but where the plain pass sits on one), else None."""
    from .ops import farkinks  # ops import this module

    span.real_reach = span.reach()
    return span if span.real_reach <= farkinks.allowance(x, span.dtype) else None
