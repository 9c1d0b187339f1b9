"""Activations: elementwise ops and the row-wise softmax."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..delta import Delta, Kind, Ray, Structure
from ..span import Span
from . import farkinks
from .base import Op, finite_number, register
from .complexmath import cexp


@register
class Identity(Op):
    """out = x, a new array.  Any shape."""

    name = "identity"
    structure = Structure.ELEMENTWISE

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x + 0  # a new array: values are never aliased between nodes

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return (g,)


@register
class ReLU(Op):
    """out = max(x, 0)  elementwise."""

    name = "relu"
    structure = Structure.ELEMENTWISE
    kinked = True

    def __init__(self) -> None:
        self._plain = farkinks.PlainCache()

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.where(x.real > 0, x, 0)

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # NOTE: at x == 0 the gradient is taken as 0 (the left derivative), cs231n's `x > 0` mask.
        return (g * (x.real > 0),)

    def kink_distance(self, x: np.ndarray) -> np.ndarray:
        return x

    def push_kinked(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray,
                    on_kink: Any) -> Delta | None:
        # A full change (after a batchnorm) or a changed channel too small to reach 0 from x:
        # the plain side (farkinks). Else, for a full change, one array holds the copies' input
        # x + Δ (their kink distances), then, in place, their output where(x + Δ > 0, x + Δ, 0)
        # and its change. Other changes: delta.push's elementwise rule.
        if d.kind in (Kind.FULL, Kind.COL):
            res = self._push_far(d, xs[0], out, on_kink)
            if res is not None:
                return res
        if d.kind is not Kind.FULL:
            return None
        new = np.add(d.vals, xs[0], dtype=np.result_type(d.vals, xs[0]), order="C")
        if on_kink is not None:
            on_kink(new, xs[0])
        np.copyto(new, 0, where=~(new.real > 0))  # forward's where(x.real > 0, x, 0), NaN to 0
        new -= out
        return Delta.full(new, d.shape)

    def _push_far(self, d: Delta, x: np.ndarray, out: np.ndarray, on_kink: Any) -> Delta | None:
        """relu(x + Δ) − relu(x) = Δ·[x > 0] wherever |x| exceeds Δ's real part (rounded as the
        dense path rounds: (x + Δ) − x); the elements within reach of 0 for some copy are
        computed for every copy as forward does, and alone reported to on_kink. None where the
        shortcut does not apply."""
        k = d.k
        flat = d.vals.reshape(k, -1)
        reach = farkinks.reach(flat)
        plain_all, smallest = self._plain.get(x, _plain_sides)
        if reach is None or not np.isfinite(smallest):
            return None
        plain = plain_all if d.kind is Kind.FULL else d.gather(x).reshape(k, -1)
        base = out.reshape(1, -1) if d.kind is Kind.FULL else d.gather(out).reshape(k, -1)
        tol = farkinks.allowance(x, d.vals.dtype)
        cols = np.zeros(0, np.intp)
        if reach.max(initial=0.0) + tol >= smallest:
            cols = np.flatnonzero((np.abs(plain.real) <= reach.max() + tol).any(axis=0))
            if cols.size > farkinks.NEAR_SHARE * flat.shape[1]:
                return None
        if np.all(reach == 0) and not np.iscomplexobj(plain):  # Δ has no real part: (x + Δ) − x = Δ
            change = flat * (plain > 0)
        else:
            change = flat + plain
            change -= plain
            np.copyto(change, 0, where=~(plain.real > 0))
        at = plain[:, cols]
        new = at + flat[:, cols]  # (k, P): the near elements, as forward computes them
        change[:, cols] = np.where(new.real > 0, new, 0) - base[:, cols]
        if on_kink is not None:
            farkinks.report(on_kink, k, new, at)
        if d.kind is Kind.FULL:
            return Delta.full(change.reshape(d.vals.shape), d.shape)
        return d.with_vals(change.reshape(d.vals.shape))

    span_role = "through"

    def push_span(self, slot: int, d: Any, xs: Sequence[np.ndarray], out: np.ndarray,
                  on_kink: Any) -> Span | None:
        """relu(x + Δ) − relu(x) = Δ·[x > 0] when no copy's real part reaches 0 from any x (a
        Span's copies move real values by rounding only): the shared directions, every copy's
        own changes and the fixes masked once, and the off side silent (every copy's change there is
        exactly 0). None where some x lies within that reach of 0."""
        x = xs[0]
        _, smallest = self._plain.get(x, _plain_sides)
        if not isinstance(d, Span) or np.iscomplexobj(x) or not np.isfinite(smallest) \
                or d.real_reach + farkinks.allowance(x, d.dtype) >= smallest:
            return None
        mask = (x[0] > 0).astype(x.dtype)
        flat = mask.reshape(-1)
        if on_kink is not None:  # no place within reach of 0: nothing crossed
            farkinks.report(on_kink, d.k, np.zeros((d.k, 0)), np.zeros((1, 0)))
        silent = flat == 0 if d.silent is None else d.silent | (flat == 0)
        return d.moved(d.basis * mask, d.groups, d.own_pos, d.own * flat[d.own_pos], d.pos, d.fix * flat[d.pos],
                       d.shape, silent=silent)

    def push_ray(self, slot: int, ray: Ray, xs: Sequence[np.ndarray], out: np.ndarray,
                 on_kink: Any) -> Ray | None:
        # Along a ray x + c·u an element keeps its side of 0 unless c·u_i points across 0 and
        # |c·u_i| ≥ |x_i|: then relu(x + c·u) − relu(x) = c·u_i·[x_i > 0], one shared change per
        # direction u. A copy whose |c| reaches the nearest crossing (less 1e-9 of it) is
        # computed as it is, and becomes a shared change of its own.
        d, x = ray.d, xs[0][0]
        if d.kind is not Kind.FULL or np.iscomplexobj(d.vals) or np.iscomplexobj(x) \
                or not (np.isfinite(d.vals).all() and np.isfinite(x).all()):
            return None
        u, c = d.vals, ray.coef
        reach = crossing_reach(x, u)[ray.group, (c < 0).astype(int)]
        near = np.flatnonzero((c != 0) & (np.abs(c) >= reach * (1 - 1e-9)))
        shared, group, coef = u * (x > 0), ray.group.copy(), c.copy()
        crossed = np.zeros(ray.k, bool)
        if near.size:
            new = u[ray.group[near]] * c[near].reshape((-1,) + (1,) * x.ndim) + x
            side = ((new > 0) != (x > 0)) | ((new < 0) != (x < 0))  # sign(new) ≠ sign(x)
            crossed[near] = side.reshape(near.size, -1).any(axis=1)
            np.maximum(new, 0.0, out=new)  # finite here: forward's where(x > 0, x, 0)
            shared = np.concatenate([shared, new - out])
            group[near], coef[near] = len(u) + np.arange(near.size), 1.0
        if on_kink is not None:
            on_kink(np.where(crossed, -1.0, 1.0)[:, None], np.ones((1, 1)))
        return Ray(Delta.full(shared, d.shape), group, coef)


def _plain_sides(x: np.ndarray) -> tuple[np.ndarray, float]:
    """x flat (1, n) and the smallest |x| (NaN unless x is finite)."""
    flat = x.reshape(1, -1)
    finite = bool(np.all(np.isfinite(flat)))
    return flat, float(np.abs(flat.real).min(initial=np.inf)) if finite else float("nan")


def crossing_reach(x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(m, 2): for each direction u_j (m, *x.shape), the smallest c > 0 and the smallest |c| of
    c < 0 at which some x_i + c·u_ji reaches 0 (inf: none does; 0: x_i is 0 already)."""
    s = (u * x).reshape(len(u), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (np.abs(x).reshape(-1) / np.abs(u).reshape(len(u), -1))
    ratio[~np.isfinite(ratio)] = np.inf  # u_i = 0: this element never moves
    at = (x == 0).reshape(-1)
    up = np.where((s < 0) | at, ratio, np.inf).min(axis=1, initial=np.inf)
    down = np.where((s > 0) | at, ratio, np.inf).min(axis=1, initial=np.inf)
    return np.stack([up, down], axis=1)


@register
class LeakyReLU(Op):
    """out = x if x > 0 else alpha · x  elementwise."""

    name = "leaky_relu"
    structure = Structure.ELEMENTWISE
    kinked = True

    def __init__(self, alpha: float = 0.01) -> None:
        self.alpha = finite_number(alpha, "alpha")

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.where(x.real > 0, x, self.alpha * x)

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # NOTE: at x == 0 the slope is taken as alpha (the left derivative).
        return (g * np.where(x.real > 0, 1.0, self.alpha),)

    def kink_distance(self, x: np.ndarray) -> np.ndarray:
        return x

    @property
    def label(self) -> str:
        return f"leaky_relu(alpha={self.alpha:g})"


@register
class Sigmoid(Op):
    """out = 1 / (1 + e^-x)  elementwise, evaluated without overflow on either side."""

    name = "sigmoid"
    structure = Structure.ELEMENTWISE

    def forward(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            pos = 1.0 / (1.0 + np.exp(-x))
            ex = np.exp(x)
            neg = ex / (1.0 + ex)
        return np.where(x.real >= 0, pos, neg)

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # σ' = σ (1 - σ)
        return (g * out * (1.0 - out),)


@register
class Tanh(Op):
    """out = tanh x  elementwise."""

    name = "tanh"
    structure = Structure.ELEMENTWISE

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # tanh' = 1 - tanh²
        return (g * (1.0 - out * out),)


@register
class Softmax(Op):
    """Row-wise softmax as one op.  (B, N, C) -> (B, N, C)."""

    name = "softmax"
    structure = Structure.ROWWISE

    def forward(self, x: np.ndarray) -> np.ndarray:
        # The shift by the row max (of the real part: constant under a complex step) cancels.
        e = cexp(x, x.real.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # dx_j = p_j (g_j - Σ_k g_k p_k)
        return (out * (g - (g * out).sum(axis=-1, keepdims=True)),)


#: the `activation:` names of a config's layers (build.py maps each to its op)
ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "identity", "softmax")
