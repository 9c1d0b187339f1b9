"""Pooling and maxima: max_pool2d, avg_pool2d, and max over one axis.

A maximum is not differentiable where two entries tie for it: those are its kinks. `max_margin`
gives each entry its signed distance to that kink: for the maximum, how far it is above the
runner-up (> 0); for every other entry, how far it is below the maximum (< 0); 0 for entries tied
for the maximum. Whichever entry's value takes over the maximum, some distance changes sign, so a
perturbation that swaps the maximum is seen as crossing a kink, never as a wrong gradient.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..delta import Delta, Kind
from ..span import Span, packed
from . import farkinks
from .base import Op, register, unbroadcast
from .conv import add_windows, out_size, positive_int, windows


def argmax_real(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """The first maximum's index along `axis` by the real part (constant under a complex step),
    keeping the axis."""
    return np.expand_dims(np.argmax(x.real, axis=axis), axis)


def max_margin(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Each entry's signed distance to a tie for the maximum along `axis` (shape of x):
    x[i] - max_{j≠i} x[j], complex-analytic (the runner-up is chosen by the real part)."""
    return _max_and_margin(x, axis)[1]


def _max_and_margin(x: np.ndarray, axis: int = -1, scratch: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The maximum along `axis` (kept, chosen by the real part, the first of tied ones) and
    max_margin, sharing the one argmax: x - top for every entry, top - second for the maximum.
    scratch: x is the caller's temporary, and the distances may be written into it."""
    axis %= x.ndim
    if x.shape[axis] == 1:  # nothing to tie with
        return x.copy(), np.ones(x.shape, dtype=x.dtype)
    if axis != x.ndim - 1 or not x.flags.c_contiguous:
        top, dist = _max_and_margin(np.ascontiguousarray(np.moveaxis(x, axis, -1)))
        return np.moveaxis(top, -1, axis), np.moveaxis(dist, -1, axis)
    # the last axis of a contiguous x: lanes of n entries, each entry addressed by its flat index
    # (np.take and flat stores: take_along_axis/put_along_axis build index grids for every axis,
    # measured several times slower on the pooling windows)
    n = x.shape[-1]
    lanes = np.arange(0, x.size, n, dtype=np.intp).reshape(x.shape[:-1] + (1,))
    real = x.real.copy()
    first = lanes + _argmax_lanes(real)  # flat index of every lane's maximum
    top = np.take(x, first)
    real.reshape(-1)[first] = -np.inf  # the runner-up: the largest of the others
    second = np.take(x, lanes + _argmax_lanes(real))
    dist = np.subtract(x, top, out=x if scratch else None)  # every entry but the maximum: how far below it
    dist.reshape(-1)[first] = top - second  # the maximum: how far above the runner-up
    return top, dist


def _argmax_lanes(real: np.ndarray) -> np.ndarray:
    """np.argmax along the last axis of a real array, keeping it (length 1). For short lanes (a
    pooling window's size² entries) as a running comparison of the lanes' columns: np.argmax
    loops lane by lane (measured 1.7× slower on 2×2 windows). A NaN is np.argmax's first
    maximum but never wins a comparison: with one, np.argmax itself."""
    n = real.shape[-1]
    if n > 16 or np.isnan(real).any():
        return np.argmax(real, axis=-1)[..., None]
    best = real[..., 0].copy()
    idx = np.zeros(best.shape, dtype=np.intp)
    for j in range(1, n):
        column = real[..., j]
        np.copyto(idx, j, where=column > best)  # strictly larger: a tie keeps the earlier entry
        np.maximum(best, column, out=best)
    return idx[..., None]


def _pool_windows(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """x's windows with each window flattened: (B, N, C, Ho, Wo, size²)."""
    win = windows(x, size, size, stride)
    return win.reshape(win.shape[:-2] + (size * size,))


class _Pool:
    """The attributes of a pooling op (a mixin: every Op subclass here is a registered op)."""

    name: str

    def __init__(self, size: int = 2, stride: int | None = None) -> None:
        self.size = positive_int(size, "size")
        self.stride = self.size if stride is None else positive_int(stride, "stride")

    @property
    def label(self) -> str:
        return f"{self.name}(size={self.size}, stride={self.stride})"


def _offsets(x: np.ndarray, size: int, stride: int) -> list[np.ndarray]:
    """Every window's entry at offset (i, j), for the size² offsets in row-major order: strided
    views (..., Ho, Wo) of x (..., H, W), no copies."""
    if x.shape[-2] < size or x.shape[-1] < size:
        raise ValueError(f"a {size}×{size} window does not fit in {x.shape[-2]}×{x.shape[-1]}")
    ho, wo = out_size(x.shape[-2], size, stride), out_size(x.shape[-1], size, stride)
    return [x[..., i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            for i in range(size) for j in range(size)]


def _stacked(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Every window's entries side by side, (..., Ho, Wo, size²): one C-contiguous copy (np.stack
    may follow its inputs' layout instead, and the maxima index it flat)."""
    parts = _offsets(x, size, stride)
    out = np.empty(parts[0].shape + (len(parts),), dtype=x.dtype)
    for k, part in enumerate(parts):
        out[..., k] = part
    return out


@dataclass(frozen=True)
class PlainWindows:
    """The plain pass's windows, W = N·C·Ho·Wo of them, each of s² entries: their flat indices
    into x's core (entries) and into its channel (entries_free: (n, i, j) of (N, H, W)), each
    window's maximum (top, top_free: the first by the real part, as forward picks it), its
    margin over the runner-up (real; inf for one-entry windows), the kink distances, and
    whether x is finite."""

    entries: np.ndarray  # (W, s²)
    entries_free: np.ndarray  # (W, s²)
    top: np.ndarray  # (W,)
    top_free: np.ndarray  # (W,)
    margin: np.ndarray  # (W,)
    dist: np.ndarray  # (W, s²)
    finite: bool


def plain_windows(x: np.ndarray, size: int, stride: int) -> PlainWindows:
    """PlainWindows of x (1, N, C, H, W)."""
    n, c, h, w = x.shape[1:]
    idx = np.arange(x[0].size).reshape((1,) + x.shape[1:])
    entries = _stacked(idx, size, stride).reshape(-1, size * size)
    free = (entries // (c * h * w)) * (h * w) + entries % (h * w)  # drop the channel
    win = _stacked(x, size, stride).reshape(-1, size * size)
    first = _argmax_lanes(win.real.copy())[:, 0]
    dist = max_margin(win)
    rows = np.arange(len(win))
    margin = dist[rows, first].real if size * size > 1 else np.full(len(win), np.inf)
    return PlainWindows(entries, free, entries[rows, first], free[rows, first], margin, dist,
                        bool(np.all(np.isfinite(x))))


@register
class MaxPool2d(_Pool, Op):
    """Max pooling (cs231n max_pool_forward): the largest entry of every size×size window.

    Inputs:
    - x: (B, N, C, H, W)
    Attrs: size (window side), stride (default: size).
    Returns out (B, N, C, Ho, Wo), Ho = (H - size) // stride + 1 (Wo alike).
    Kinks: ties inside a window; kink_distance is max_margin of every window's entries,
    (B, N, C, Ho, Wo, size²), 0 for the entries tied for a window's maximum.
    Sparse: a changed element changes at most one window's maximum (stride ≥ size), a changed
    channel one channel of out (push_kinked); the windows it recomputes report their kinks. A
    full change (after a batchnorm) recomputes every window, with the maxima and the kink
    distances from one argmax.
    """

    name = "max_pool2d"
    kinked = True

    def __init__(self, size: int = 2, stride: int | None = None) -> None:
        super().__init__(size, stride)
        self._plain = farkinks.PlainCache()

    def forward(self, x: np.ndarray) -> np.ndarray:
        win = _stacked(x, self.size, self.stride)
        return np.take_along_axis(win, argmax_real(win), -1)[..., 0]

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # d max(window) = d x[argmax]: each window's g goes to the entry that is its maximum.
        # NOTE: at a tie, all of g goes to the first maximum in row-major window order (np.argmax;
        # cs231n's `x == max` mask would give it to every tied entry). Either is a one-sided choice
        # at a kink.
        win = _pool_windows(x, self.size, self.stride)
        dwin = np.zeros(g.shape + (self.size * self.size,), dtype=np.result_type(g, x))
        np.put_along_axis(dwin, np.broadcast_to(argmax_real(win), g.shape + (1,)), g[..., None], -1)
        dwin = dwin.reshape(dwin.shape[:-1] + (self.size, self.size))
        return (unbroadcast(add_windows(dwin, x.shape[-2:], self.stride), x),)

    def kink_distance(self, x: np.ndarray) -> np.ndarray:
        return _max_and_margin(_stacked(x, self.size, self.stride), scratch=True)[1]

    def push_kinked(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray,
                    on_kink: Any) -> Delta | None:
        if xs[0].ndim != 5:
            return None
        if d.kind in (Kind.COL, Kind.FULL):  # copies too close to no tie: the plain maxima
            res = self._push_far(d, xs[0], out, on_kink)
            if res is not None:
                return res
        if d.kind is Kind.COL:  # channel c changed: recompute that channel's windows
            win = _stacked((d.gather(xs[0]) + d.vals)[:, :, None], self.size, self.stride)  # (k, N, 1, Ho, Wo, s²)
            top, dist = _max_and_margin(win, scratch=True)
            if on_kink is not None:  # the plain pass's distances: computed once, gathered per copy
                plain = self.kink_distance(xs[0])[0]  # (N, C, Ho, Wo, s²)
                on_kink(dist, np.swapaxes(plain, 0, 1)[d.at][:, :, None])
            return Delta.col(d.at, top[:, :, 0, ..., 0] - d.gather(out), out.shape[1:])
        if d.kind is Kind.FULL:  # everything changed (after a batchnorm): the dense windows,
            # with the maximum and the kink distances from one argmax (not forward's and
            # kink_distance's two)
            vals = d.vals.astype(np.result_type(xs[0], d.vals), copy=False)  # x + vals's type
            win = _stacked(vals, self.size, self.stride)  # the copies' windows: their change …
            win += _stacked(xs[0], self.size, self.stride)  # … plus the plain windows, in place
            top, dist = _max_and_margin(win, scratch=True)
            if on_kink is not None:
                on_kink(dist, self.kink_distance(xs[0]))
            return Delta.full(top[..., 0] - out, out.shape[1:])
        if d.kind is Kind.ELEM and self.stride >= self.size:
            return self._push_element(d, xs[0][0], out, on_kink)
        return None

    def _push_far(self, d: Delta, x: np.ndarray, out: np.ndarray, on_kink: Any) -> Delta | None:
        """A full change, or a changed channel, whose real part moves no entry near a tie
        (farkinks): each window's output is its plain maximum's entry, x + Δ there, as forward
        would pick it; the windows within reach of a tie are recomputed as forward does and
        alone reported to on_kink. None where the shortcut does not apply."""
        pw = self._plain.get(x, lambda a: plain_windows(a, self.size, self.stride))
        k = d.k
        flat = d.vals.reshape(k, -1)
        reach = farkinks.reach(flat)
        if reach is None or not pw.finite:
            return None
        if d.kind is Kind.FULL:
            plain, top, ent = x.reshape(1, -1), pw.top[None], pw.entries
            margin, base, dist = pw.margin[None], out.reshape(1, -1), pw.dist
        else:  # channel d.at[b] of copy b: that channel's windows, (k, N·Ho·Wo)
            n, c = x.shape[1], x.shape[2]
            plain, base = d.gather(x).reshape(k, -1), d.gather(out).reshape(k, -1)
            top = pw.top_free.reshape(n, c, -1)[:, d.at].swapaxes(0, 1).reshape(k, -1)
            margin = pw.margin.reshape(n, c, -1)[:, d.at].swapaxes(0, 1).reshape(k, -1)
            s2 = self.size ** 2
            ent = pw.entries_free.reshape(n, c, -1, s2)[:, d.at].swapaxes(0, 1).reshape(k, -1, s2)
            dist = pw.dist.reshape(n, c, -1, s2)[:, d.at].swapaxes(0, 1).reshape(k, -1, s2)
        tol = farkinks.allowance(x, d.vals.dtype)
        near = np.flatnonzero((margin <= 2 * reach.max(initial=0.0) + tol).any(axis=0))
        if near.size > farkinks.NEAR_SHARE * margin.shape[1]:
            return None
        rows = np.arange(k)[:, None]
        change = (plain[rows % len(plain), top] + flat[rows, top]) - base
        # the windows within reach of a tie for some copy, for every copy as forward computes
        # them: (k, P, s²) entries, their maxima and kink distances
        ents = ent[near][None] if d.kind is Kind.FULL else ent[:, near]
        win = plain[rows[:, :, None] % len(plain), ents] + flat[rows[:, :, None], ents]
        new_top, new_dist = _max_and_margin(win, scratch=True)
        change[:, near] = new_top[..., 0] - base[:, near]
        if on_kink is not None:
            farkinks.report(on_kink, k, new_dist, dist[near][None] if d.kind is Kind.FULL else dist[:, near])
        shape = out.shape[1:]
        if d.kind is Kind.FULL:
            return Delta.full(change.reshape((k,) + shape), shape)
        return Delta.col(d.at, change.reshape((k, shape[0]) + shape[2:]), shape)

    span_role = "through"

    def push_span(self, slot: int, d: Any, xs: Sequence[np.ndarray], out: np.ndarray,
                  on_kink: Any) -> Span | None:
        """Away from ties every window's change is its plain maximum's (a Span's copies move
        real values by rounding only): the shared directions, own changes and fixes gathered at
        the maxima once (an own change elsewhere in its window moves nothing). The windows
        within reach of a tie are computed for every copy as forward does, reported to on_kink,
        and enter as fixes (exact − gathered), but for those whose entries are all silent (no
        copy moves them: the maximum stays, nothing is crossed). None with overlapping windows
        (an entry may top several) or too many near windows."""
        x = xs[0]
        if not isinstance(d, Span) or x.ndim != 5 or self.stride < self.size:
            return None
        pw = self._plain.get(x, lambda a: plain_windows(a, self.size, self.stride))
        if not pw.finite:
            return None
        near = pw.margin <= 2 * d.real_reach + farkinks.allowance(x, d.dtype)
        if d.silent is not None:  # a window no copy moves keeps its maximum, tie or not
            near &= ~d.silent[pw.entries].all(axis=1)
        near = np.flatnonzero(near)
        if near.size > farkinks.NEAR_SHARE * pw.margin.size:
            return None
        shape, r = out.shape[1:], d.row_size
        groups = d.groups[pw.top % r].reshape(shape[0], -1)
        if not np.all(groups == groups[:1]):  # a window's entries in several groups
            return None
        owner = np.full(x[0].size, -1, np.intp)  # the window each entry tops (stride ≥ size: one)
        owner[pw.top] = np.arange(pw.top.size)
        keep = owner[d.pos] >= 0
        dvals = d.at(pw.entries[near].reshape(-1)).reshape(d.k, near.size, self.size ** 2)  # (k, P, s²)
        win = x.reshape(-1)[pw.entries[near]][None] + dvals
        gathered = dvals[:, np.arange(near.size), np.argmax(pw.entries[near] == pw.top[near, None], axis=1)]
        new_top, new_dist = _max_and_margin(win, scratch=True)
        exact = new_top[..., 0] - out.reshape(-1)[near]
        if on_kink is not None:
            farkinks.report(on_kink, d.k, new_dist, pw.dist[near][None])
        m = d.basis.shape[0]
        basis = d.basis.reshape(m, x[0].size)[:, pw.top].reshape((m,) + shape)
        pos = np.concatenate([owner[d.pos[keep]], near])
        fix = np.concatenate([d.fix[:, keep], exact - gathered], axis=1)
        silent = None
        if d.silent is not None:  # a far window's output moves as its maximum; a near one's may
            silent = d.silent[pw.top]
            silent[near] = False
        win = owner[d.own_pos]  # an own change moves its window where it is the maximum, else none
        rows = d.own_pos[:, 0] // d.row_size * (pw.top.size // shape[0])  # padding: the copy's row
        own_pos, own = packed(np.maximum(win, 0), np.where(win >= 0, d.own, 0), rows)
        return d.moved(basis, groups[0], own_pos, own, pos, fix, shape, new_fix=exact - gathered, silent=silent)

    def _push_element(self, d: Delta, x: np.ndarray, out: np.ndarray, on_kink: Any) -> Delta:
        """Element (n, c, i, j) lies in window (i // stride, j // stride), or in none (the rows
        and columns a stride leaves over): recompute that one window."""
        s, size = self.stride, self.size
        n, c, i, j = d.at.T
        ho, wo = out.shape[-2:]
        p, q = np.minimum(i // s, ho - 1), np.minimum(j // s, wo - 1)
        di, dj = i - p * s, j - q * s
        inside = (di < size) & (dj < size)
        span = np.arange(size)
        rows, cols = (p * s)[:, None] + span, (q * s)[:, None] + span
        win = x[n[:, None, None], c[:, None, None], rows[:, :, None], cols[:, None, :]]  # (k, size, size)
        new = win.astype(np.result_type(win, d.vals))
        k = np.arange(d.k)
        new[k, np.minimum(di, size - 1), np.minimum(dj, size - 1)] += np.where(inside, d.vals, 0)
        plain, new = win.reshape(d.k, -1), new.reshape(d.k, -1)
        if on_kink is not None:
            on_kink(max_margin(new), max_margin(plain))
        top = np.take_along_axis(new, argmax_real(new), -1)[:, 0]
        return Delta.elem(np.stack([n, c, p, q], axis=1), top - out[0][n, c, p, q], out.shape[1:])


@register
class AvgPool2d(_Pool, Op):
    """Average pooling: the mean of every size×size window.

    Inputs:
    - x: (B, N, C, H, W)
    Attrs: size (window side), stride (default: size).
    Returns out (B, N, C, Ho, Wo), Ho = (H - size) // stride + 1 (Wo alike).
    """

    name = "avg_pool2d"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return _pool_windows(x, self.size, self.stride).sum(axis=-1) / (self.size * self.size)

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # d mean(window) = Σ dx / size²: every entry of a window gets g / size²
        share = g[..., None, None] / (self.size * self.size)
        dwin = np.broadcast_to(share, g.shape + (self.size, self.size))
        return (unbroadcast(add_windows(dwin, x.shape[-2:], self.stride), x),)

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        # linear: a changed channel averages into that channel of out; a changed element adds
        # Δ / size² to the one window it lies in (stride ≥ size), or to none
        if xs[0].ndim != 5:
            return None
        if d.kind is Kind.COL:
            return Delta.col(d.at, self.forward(d.vals[:, :, None])[:, :, 0], out.shape[1:])
        if d.kind is not Kind.ELEM or self.stride < self.size:
            return None
        n, c, i, j = d.at.T
        ho, wo = out.shape[-2:]
        p, q = np.minimum(i // self.stride, ho - 1), np.minimum(j // self.stride, wo - 1)
        inside = (i - p * self.stride < self.size) & (j - q * self.stride < self.size)
        return Delta.elem(np.stack([n, c, p, q], axis=1), np.where(inside, d.vals, 0) / self.size ** 2,
                          out.shape[1:])


@register
class Max(Op):
    """The largest entry along one core axis.

    Inputs:
    - x: (B, *shape)
    Attrs: axis (of the core shape, without B; default -1, the last).
    Returns out (B, *shape without that axis).
    Kinks: ties for the maximum; kink_distance is max_margin along the axis (x's shape).
    """

    name = "max"
    kinked = True

    def __init__(self, axis: int = -1) -> None:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"axis must be an integer, got {axis!r}")
        self.axis = int(axis)

    def _ax(self, x: np.ndarray) -> int:
        core = x.ndim - 1
        if not -core <= self.axis < core:
            raise ValueError(f"axis {self.axis} is out of range for a {core}-D input")
        return self.axis % core + 1

    def forward(self, x: np.ndarray) -> np.ndarray:
        ax = self._ax(x)
        return np.take_along_axis(x, argmax_real(x, ax), ax).squeeze(ax)

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # d max = d x[argmax]
        # NOTE: at a tie, g goes to the first maximum along the axis (np.argmax).
        ax = self._ax(x)
        shape = list(np.broadcast_shapes(x.shape, np.expand_dims(g, ax).shape))
        dx = np.zeros(shape, dtype=np.result_type(g, x))
        idx = np.broadcast_to(argmax_real(x, ax), shape[:ax] + [1] + shape[ax + 1:])
        np.put_along_axis(dx, idx, np.expand_dims(g, ax), ax)
        return (unbroadcast(dx, x),)

    def kink_distance(self, x: np.ndarray) -> np.ndarray:
        return max_margin(x, self._ax(x))

    @property
    def label(self) -> str:
        return f"max(axis={self.axis})"
