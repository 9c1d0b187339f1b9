"""Convolution, and the sliding windows (im2col and its adjoint col2im) the pooling ops share.

Layouts are cs231n's: images (N, C, H, W), filters (F, C, kh, kw), each with the leading
perturbation axis B in front. Windows come from `sliding_window_view` (no copy) and the products
are batched matmuls over B; only the kh·kw window offsets are looped over, never pixels.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..delta import Delta, Kind
from ..span import Span, span_or_none
from .base import Op, register, unbroadcast


def out_size(n: int, k: int, stride: int) -> int:
    """How many windows of size k at this stride fit in n positions."""
    return (n - k) // stride + 1


def windows(x: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """The (kh, kw) windows of x's last two axes at `stride`: (..., H, W) -> (..., Ho, Wo, kh, kw),
    a read-only view."""
    if x.shape[-2] < kh or x.shape[-1] < kw:
        raise ValueError(f"a {kh}×{kw} window does not fit in {x.shape[-2]}×{x.shape[-1]}")
    view = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(-2, -1))
    return view[..., ::stride, ::stride, :, :]


def add_windows(dwin: np.ndarray, hw: tuple[int, int], stride: int) -> np.ndarray:
    """The adjoint of `windows` (col2im): every window's gradient (..., Ho, Wo, kh, kw) added back
    to the position it was read from, giving (..., H, W) with (H, W) = hw. Positions no window
    reads (the rows and columns a stride leaves over) get 0."""
    ho, wo, kh, kw = dwin.shape[-4:]
    out = np.zeros(dwin.shape[:-4] + hw, dtype=dwin.dtype)
    for i in range(kh):  # window offset (i, j) of window (p, q) reads x[s·p + i, s·q + j]
        for j in range(kw):
            out[..., i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride] += dwin[..., i, j]
    return out


def positive_int(value: object, what: str, low: int = 1) -> int:
    """An integer attribute ≥ low, or a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{what} must be an integer ≥ {low}, got {value!r}")
    return int(value)


@register
class Conv2d(Op):
    """A 2-D convolution (cs231n conv_forward): every filter slides over the zero-padded image.

    Inputs:
    - x: images (B, N, C, H, W)
    - w: filters (B, F, C, kh, kw)
    - b: biases (B, F), optional: inputs [x, w] are a convolution without bias (the usual
      choice before a batchnorm, which would cancel any bias: its gradient would be exactly 0)
    Attrs: stride (≥ 1), pad (zeros added on every side of H and W, ≥ 0).
    Returns out (B, N, F, Ho, Wo), Ho = (H + 2 pad - kh) // stride + 1 (Wo alike):
        out[n, f, p, q] = b[f] + Σ_{c,i,j} w[f, c, i, j] · xpad[n, c, stride·p + i, stride·q + j]
    """

    name, arity = "conv2d", None  # 2 or 3: the bias is optional

    def __init__(self, stride: int = 1, pad: int = 0) -> None:
        self.stride = positive_int(stride, "stride")
        self.pad = positive_int(pad, "pad", 0)

    def _cols(self, x: np.ndarray, kh: int, kw: int) -> np.ndarray:
        """im2col: (B, N·Ho·Wo, C·kh·kw), and (N, Ho, Wo)."""
        p = self.pad
        xp = np.pad(x, ((0, 0),) * 3 + ((p, p), (p, p)))
        win = windows(xp, kh, kw, self.stride)  # (B, N, C, Ho, Wo, kh, kw)
        b, n, c, ho, wo = win.shape[:5]
        return win.transpose(0, 1, 3, 4, 2, 5, 6).reshape(b, n * ho * wo, c * kh * kw)

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        if len(xs) not in (2, 3):
            raise ValueError(f"conv2d takes inputs [x, w] or [x, w, b], got {len(xs)} inputs")
        x, w = xs[:2]
        kh, kw = w.shape[-2:]
        cols = self._cols(x, kh, kw)
        wm = w.reshape(w.shape[0], w.shape[1], -1)  # (B, F, C·kh·kw)
        out = cols @ np.swapaxes(wm, 1, 2)  # (B, N·Ho·Wo, F)
        n = x.shape[1]
        ho = out_size(x.shape[3] + 2 * self.pad, kh, self.stride)
        wo = out_size(x.shape[4] + 2 * self.pad, kw, self.stride)
        out = out.reshape(out.shape[0], n, ho, wo, -1).transpose(0, 1, 4, 2, 3)
        return out + xs[2][:, None, :, None, None] if len(xs) == 3 else out

    def backward(self, g: np.ndarray, out: np.ndarray, *xs: np.ndarray) -> tuple[np.ndarray, ...]:
        # out = cols · wmᵀ + b with cols = im2col(xpad), linear in each input:
        #   db[f] = Σ_{n,p,q} g[n, f, p, q]
        #   dw    = gmᵀ · cols            (gm: g as (N·Ho·Wo, F))
        #   dcols = gm · wm, and dxpad = col2im(dcols) (each window's share added back), dx its
        #   interior (the padding is a constant)
        x, w = xs[:2]
        f, c, kh, kw = w.shape[1:]
        nb, n, _, ho, wo = g.shape
        gm = g.transpose(0, 1, 3, 4, 2).reshape(nb, n * ho * wo, f)
        cols = self._cols(x, kh, kw)
        wm = w.reshape(w.shape[0], f, -1)
        dw = (np.swapaxes(gm, 1, 2) @ cols).reshape((-1, f, c, kh, kw))
        dcols = (gm @ wm).reshape(nb, n, ho, wo, c, kh, kw).transpose(0, 1, 4, 2, 3, 5, 6)
        p, (h, wd) = self.pad, x.shape[3:]
        dxp = add_windows(dcols, (h + 2 * p, wd + 2 * p), self.stride)
        dx = dxp[..., p:p + h, p:p + wd]
        grads: tuple[np.ndarray, ...] = (unbroadcast(dx, x), unbroadcast(dw, w))
        if len(xs) == 3:
            grads += (unbroadcast(g.sum(axis=(1, 3, 4)), xs[2]),)
        return grads

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        # A changed pixel (n, c, i, j) changes image n's output alone (a row of out), and there
        # only the term it enters: Δout[n, f, p, q] = w[f, c, di, dj] · v wherever
        # stride·p + di = i + pad (and q, dj alike) for a kernel offset (di, dj) in range.
        if d.kind is not Kind.ELEM or xs[0].ndim != 5:
            return None
        if slot == 1:  # w[f, c, i, j] + v: channel f of every image, by v · xpad[:, c] at offset (i, j)
            f, c, i, j = d.at.T
            kh, kw = xs[1].shape[-2:]
            win = windows(np.pad(xs[0][0], ((0, 0),) * 2 + ((self.pad, self.pad),) * 2), kh, kw,
                          self.stride)  # (N, C, Ho, Wo, kh, kw)
            vals = win[:, c, :, :, i, j]  # (k, N, Ho, Wo): the indexed axes come first
            return Delta.col(f, vals * d.vals[:, None, None, None], out.shape[1:])
        if slot == 2:  # b[f] + v: channel f of every image, by v
            shape = (d.k, out.shape[1]) + out.shape[3:]
            return Delta.col(d.at[:, 0], np.broadcast_to(d.vals[:, None, None, None], shape).copy(), out.shape[1:])
        w, s, ho, wo = xs[1][0], self.stride, out.shape[-2], out.shape[-1]
        n, c, i, j = d.at.T
        vals = np.zeros((d.k, w.shape[0], ho, wo), dtype=np.result_type(w, d.vals, out))
        for di in range(w.shape[2]):
            p = i + self.pad - di
            on_p = (p % s == 0) & (p >= 0) & (p < s * ho)
            for dj in range(w.shape[3]):
                q = j + self.pad - dj
                ok = np.flatnonzero(on_p & (q % s == 0) & (q >= 0) & (q < s * wo))
                vals[ok, :, p[ok] // s, q[ok] // s] += w[:, c[ok], di, dj].T * d.vals[ok, None]
        return Delta.row(n, vals, out.shape[1:])

    span_from_delta = True

    def push_span(self, slot: int, d: Any, xs: Sequence[np.ndarray], out: np.ndarray,
                  on_kink: Any) -> Span | None:
        """A changed pixel under a complex step as the kh·kw·F entries it enters (push's
        terms, as each copy's own changes of a Span with no shared part), for a batchnorm to
        take up without the dense row. Offsets that fall outside out hold 0."""
        if slot != 0 or not isinstance(d, Delta) or d.kind is not Kind.ELEM or xs[0].ndim != 5 \
                or not np.iscomplexobj(d.vals):
            return None
        w, s, (nf, ho, wo) = xs[1][0], self.stride, out.shape[2:]
        n, c, i, j = d.at.T
        p = i[:, None, None] + self.pad - np.arange(w.shape[2])[:, None]  # (k, kh, 1)
        q = j[:, None, None] + self.pad - np.arange(w.shape[3])  # (k, 1, kw)
        ok = (p % s == 0) & (p >= 0) & (p < s * ho) & (q % s == 0) & (q >= 0) & (q < s * wo)
        at = np.where(ok, (p // s) * wo + q // s, 0)  # (k, kh, kw): the output pixel of each offset
        pos = (n * nf)[:, None, None, None] * (ho * wo) + np.arange(nf) * (ho * wo) + at[..., None]
        vals = np.moveaxis(w[:, c], 0, -1) * np.where(ok, d.vals[:, None, None], 0)[..., None]  # (k, kh, kw, F)
        k = d.k
        span = Span(np.zeros((0,) + out.shape[1:]), np.repeat(np.arange(nf), ho * wo), np.zeros((k, 0, nf)),
                    pos.reshape(k, -1), vals.reshape(k, -1), np.zeros(0, np.intp), np.zeros((k, 0)), out.shape[1:])
        return span_or_none(span, out)  # real parts of rounding size only (a large step's are not)

    @property
    def label(self) -> str:
        return f"conv2d(stride={self.stride}, pad={self.pad})"
