"""Linear algebra, elementwise arithmetic and reductions. The ops linear in an input say exactly
how a sparse change goes through them (`push`)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..delta import Delta, Kind, Structure
from ..span import Span
from .base import Op, core_axes, expand_to, per_copy, register, unbroadcast
from .complexmath import cmatmul


@register
class MatMul(Op):
    """out = x @ w.  x: (B, N, D), w: (B, D, H) -> (B, N, H)."""

    name, arity = "matmul", 2
    linear = True  # Δout is linear in one input's Δ

    def forward(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return cmatmul(x, w)

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
        # d(x w) = dx w + x dw  =>  dx = g wᵀ,  dw = xᵀ g
        return g @ np.swapaxes(w, -1, -2), np.swapaxes(x, -1, -2) @ g

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        x, w = xs[0][0], xs[1][0]
        if x.ndim != 2 or w.ndim != 2:
            return None
        shape = out.shape[1:]
        if slot == 1:  # w + Δw:  Δout = x Δw
            if d.kind is Kind.ELEM:  # Δw[r, j] = v:  Δout[:, j] = x[:, r] v, a column
                return Delta.scaled(Kind.COL, d.at[:, 1], x.T, d.at[:, 0], d.vals, shape)
            if d.kind is Kind.COL:  # Δw[:, j] = v:  Δout[:, j] = x v
                return Delta.col(d.at, cmatmul(d.vals, x.T), shape)
            if d.kind is Kind.ROW:  # Δw[r] = v:  Δout = x[:, r] ⊗ v, everything
                return Delta.full(x[:, d.at].T[:, :, None] * d.vals[:, None, :], shape)
            return Delta.full(cmatmul(x, d.vals), shape)
        # x + Δx:  Δout = Δx w
        if d.kind is Kind.ELEM:  # Δx[i, r] = v:  Δout[i] = v w[r], a row
            return Delta.scaled(Kind.ROW, d.at[:, 0], w, d.at[:, 1], d.vals, shape)
        if d.kind is Kind.ROW:  # Δx[i] = v:  Δout[i] = v w
            return Delta.row(d.at, cmatmul(d.vals, w), shape)
        if d.kind is Kind.COL:  # Δx[:, r] = v:  Δout = v ⊗ w[r], everything
            return Delta.full(d.vals[:, :, None] * w[d.at][:, None, :], shape)
        return Delta.full(cmatmul(d.vals, w), shape)

    span_role = "end"

    def push_span(self, slot: int, d: Any, xs: Sequence[np.ndarray], out: np.ndarray,
                  on_kink: Any) -> Delta | None:
        """x changed by a Span:  Δout = Σ_j Σ_g coef[:, j, g] · (basis_j's columns in group g) w
        + own changes w + fixes w. The products basis_j[:, cols_g] w[cols_g] are made once for all
        copies (m·G of them, N×H each), and the copies' change is coef @ those."""
        w = xs[1][0]
        if slot != 0 or not isinstance(d, Span) or len(d.shape) != 2 or w.ndim != 2:
            return None
        (n, cols), h, k = d.shape, w.shape[1], d.k
        m, groups = d.basis.shape[0], d.coef.shape[2]
        order = np.argsort(d.groups, kind="stable")
        present, starts = np.unique(d.groups[order], return_index=True)
        shared = np.zeros((m, groups, n, h), dtype=np.result_type(d.basis, w))
        for j in range(m):
            terms = d.basis[j][:, order, None] * w[order][None]  # (N, D, H)
            shared[j, present] = np.add.reduceat(terms, starts, axis=1).transpose(1, 0, 2)
        vals = cmatmul(d.coef.reshape(k, m * groups), shared.reshape(m * groups, n * h)).reshape(k, n, h)
        vals = vals.astype(np.result_type(d.dtype, w), copy=False)
        prow, pcol = np.divmod(d.own_pos, cols)  # own change Δx[i, r] = v: v w[r] in row i
        terms = d.own[:, :, None] * w[pcol]  # (k, Q, H)
        row = prow[np.arange(k), np.argmax(d.own != 0, axis=1)]  # a copy's first own change's row
        if np.all((prow == row[:, None]) | (d.own == 0)):  # each copy's own changes in one row (a patch)
            vals[np.arange(k), row] += terms.sum(axis=1)
        else:
            np.add.at(vals, (np.arange(k)[:, None], prow), terms)
        if d.pos.size:  # fix i at (row p_i, column c_i): fix_i w[c_i] in row p_i
            prow, pcol = np.divmod(d.pos, cols)
            spread = (prow[:, None] == np.arange(n))[:, :, None] * w[pcol][:, None, :]  # (P, N, H)
            vals += cmatmul(d.fix, spread.reshape(len(d.pos), n * h)).reshape(k, n, h)
        return Delta.full(vals, out.shape[1:])


@register
class AddBias(Op):
    """out = x + b, b added to every row.  x: (B, N, H), b: (B, H) -> (B, N, H)."""

    name, arity = "add_bias", 2
    linear = True

    def forward(self, x: np.ndarray, b: np.ndarray) -> np.ndarray:
        return x + expand_to(b, x.ndim)

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
        return g, unbroadcast(g, b)

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        if slot == 0:
            return d
        n = xs[0].shape[1] if xs[0].ndim == 3 else None
        if n is None or xs[1].ndim != 2:
            return None
        if d.kind is Kind.ELEM:  # b[j] + v: column j of every row
            return Delta.col(d.at[:, 0], np.repeat(d.vals[:, None], n, axis=1), out.shape[1:])
        return Delta.full(np.broadcast_to(d.vals[:, None, :], (d.k,) + out.shape[1:]), out.shape[1:])


@register
class Add(Op):
    """out = a + b with numpy broadcasting of the core shapes."""

    name, arity = "add", 2
    linear = True
    row_separable = True  # out[n] from a[n] and b[n] when both are (N, ·)

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        n = max(a.ndim, b.ndim)
        return expand_to(a, n) + expand_to(b, n)

    def backward(self, g: np.ndarray, out: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
        return unbroadcast(g, a), unbroadcast(g, b)

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        return d if xs[slot].shape[1:] == out.shape[1:] else None


@register
class Sub(Op):
    """out = a - b with numpy broadcasting of the core shapes."""

    name, arity = "sub", 2
    linear = True
    row_separable = True  # out[n] from a[n] and b[n] when both are (N, ·)

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        n = max(a.ndim, b.ndim)
        return expand_to(a, n) - expand_to(b, n)

    def backward(self, g: np.ndarray, out: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
        return unbroadcast(g, a), -unbroadcast(g, b)

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        if xs[slot].shape[1:] != out.shape[1:]:
            return None
        return d if slot == 0 else d.with_vals(-d.vals)


@register
class Mul(Op):
    """out = a * b with numpy broadcasting of the core shapes (softmax = exps · divexps)."""

    name, arity = "mul", 2
    linear = True
    row_separable = True  # out[n] from a[n] and b[n] when both are (N, ·)

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        n = max(a.ndim, b.ndim)
        return expand_to(a, n) * expand_to(b, n)

    def backward(self, g: np.ndarray, out: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
        n = g.ndim
        return unbroadcast(g * expand_to(b, n), a), unbroadcast(g * expand_to(a, n), b)

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        mine, other = xs[slot], xs[1 - slot]
        full_other = np.broadcast_to(expand_to(other, out.ndim), (1,) + out.shape[1:])
        if mine.shape[1:] == out.shape[1:]:  # not broadcast: Δout = Δa · b at the same places
            return d.with_vals(d.vals * d.gather(full_other))
        if mine.shape[1:] == out.shape[1:2] + (1,) and len(out.shape) == 3:
            rows = d.as_rows()  # a per-row factor (N, 1): its change scales a whole row
            if rows is not None:
                return Delta.row(rows.at, rows.vals * other[0][rows.at], out.shape[1:])
        return None


@register
class Reciprocal(Op):
    """out = 1 / x (the notebook's divexps).  Any shape."""

    name = "reciprocal"
    structure = Structure.ELEMENTWISE

    def forward(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / x

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # d(1/x) = -dx / x²
        return (-g * out * out,)


@register
class Square(Op):
    """out = x²  elementwise."""

    name = "square"
    structure = Structure.ELEMENTWISE

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * x

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return (2.0 * x * g,)


@register
class RowSum(Op):
    """out = Σ_j x[..., j], keeping the axis (the notebook's sexps).  (B, N, C) -> (B, N, 1)."""

    name = "row_sum"
    structure = Structure.ROWWISE

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.sum(axis=-1, keepdims=True)

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.broadcast_to(g, x.shape).copy(),)


@register
class Sum(Op):
    """out = Σ x over every core axis.  (B, ...) -> (B,)."""

    name = "sum"
    linear = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.sum(axis=core_axes(x))

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.broadcast_to(per_copy(g, x), x.shape).copy(),)

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        return Delta.full(d.vals.reshape(d.k, -1).sum(axis=1), ())


@register
class Mean(Op):
    """out = mean of x over every core element.  (B, ...) -> (B,)."""

    name = "mean"
    linear = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.sum(axis=core_axes(x)) / (x[0].size or 1)

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.broadcast_to(per_copy(g, x) / (x[0].size or 1), x.shape).copy(),)

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        return Delta.full(d.vals.reshape(d.k, -1).sum(axis=1) / (xs[0][0].size or 1), ())


@register
class BatchMean(Op):
    """out = (Σ x over every core element) / N, N the number of rows (cs231n's loss / num_train).
    (B, N, ...) -> (B,)."""

    name = "batch_mean"
    linear = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.sum(axis=core_axes(x)) / x.shape[1]

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.broadcast_to(per_copy(g, x) / x.shape[1], x.shape).copy(),)

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        return Delta.full(d.vals.reshape(d.k, -1).sum(axis=1) / xs[0].shape[1], ())
