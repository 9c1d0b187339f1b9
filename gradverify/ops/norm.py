"""Normalization: batchnorm (train mode), spatial_batchnorm, layernorm, groupnorm.

All four are one computation over different axes: xhat = (x - μ) / sqrt(σ² + eps) with μ and σ²
the mean and the (biased) variance over a set of axes, then out = gamma · xhat + beta with one
gamma and beta per feature (or channel). The variance is mean((x - μ)·(x - μ)), not np.var, which
takes |x - μ|² and so is not complex-analytic.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..delta import Delta, Kind
from ..span import Span, complex_only, own_points, span_or_none, sum_by
from .base import Op, register, unbroadcast


def normalize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> tuple[np.ndarray, np.ndarray]:
    """xhat = (x - μ) · inv and inv = 1 / sqrt(σ² + eps), μ and σ² over `axes` (kept)."""
    xc = x - x.mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + eps)
    if np.result_type(xc, inv) == xc.dtype:
        xc *= inv  # xc is this function's own array: scaled in place, one copy fewer
        return xc, inv
    return xc * inv, inv


def normalize_backward(dxhat: np.ndarray, xhat: np.ndarray, inv: np.ndarray,
                       axes: tuple[int, ...]) -> np.ndarray:
    """dx from dxhat through xhat = (x - μ) · inv, over m entries along `axes`:
        dxhat/dx carries three paths: directly (inv), through μ (-inv/m each) and through σ²
        (dσ² = Σ dxhat · (x - μ) · (-inv³/2), dx_i += dσ² · 2 (x_i - μ) / m), which add up to
        dx = inv · (dxhat - mean(dxhat) - xhat · mean(dxhat · xhat))."""
    return inv * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                  - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))


class _Norm:
    """out = gamma · xhat + beta; a subclass says over which axes (`_axes`, of `_grouped(x)`),
    how gamma broadcasts against x (`_param`), and over which axes dgamma sums (`_sum_axes`).
    A mixin: every Op subclass in gradverify.ops is a registered op."""

    name: str
    arity: int | None = 3

    def __init__(self, eps: float = 1e-5) -> None:
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
            raise ValueError(f"eps must be a number ≥ 0, got {eps!r}")
        self.eps = float(eps)

    def _grouped(self, x: np.ndarray) -> np.ndarray:
        return x

    def _axes(self, x: np.ndarray) -> tuple[int, ...]:
        raise NotImplementedError

    def _param(self, p: np.ndarray, x: np.ndarray) -> np.ndarray:
        """gamma or beta (B, D) as (B, 1, …, D, 1, …) against x."""
        raise NotImplementedError

    def _sum_axes(self, x: np.ndarray) -> tuple[int, ...]:
        raise NotImplementedError

    def _xhat(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xg = self._grouped(x)
        xhat, inv = normalize(xg, self._axes(xg), self.eps)
        return xhat, inv

    def forward(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
        xhat = self._xhat(x)[0].reshape(x.shape)
        g, b = self._param(gamma, x), self._param(beta, x)
        if np.result_type(xhat, g, b) == xhat.dtype and np.broadcast_shapes(xhat.shape, g.shape, b.shape) == xhat.shape:
            xhat *= g  # xhat is a fresh array: gamma · xhat + beta in place
            xhat += b
            return xhat
        return g * xhat + b

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray, gamma: np.ndarray,
                 beta: np.ndarray) -> tuple[np.ndarray, ...]:
        # dbeta = Σ g and dgamma = Σ g · xhat over everything but the feature; dxhat = g · gamma,
        # then normalize_backward
        xhat_g, inv = self._xhat(x)
        xhat = xhat_g.reshape(x.shape)
        dxhat = g * self._param(gamma, x)
        dxg = normalize_backward(self._grouped(dxhat), xhat_g, inv, self._axes(xhat_g))
        dgamma = (g * xhat).sum(axis=self._sum_axes(x))
        dbeta = g.sum(axis=self._sum_axes(x))
        return (unbroadcast(dxg.reshape(dxhat.shape), x), unbroadcast(dgamma, gamma),
                unbroadcast(dbeta, beta))

    #: batchnorm and spatial_batchnorm normalize each channel (core axis 1) over everything else:
    #: a change inside one channel changes only that channel of out (push)
    per_channel = False

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        x = xs[0]
        if not self.per_channel or x.ndim not in (3, 5):
            return None
        shape = out.shape[1:]
        if slot == 0:  # x's channel c changed: renormalize that channel alone, for each copy
            if d.kind is Kind.ELEM:
                return self._push_element(d, xs)
            if d.kind is Kind.ROW:
                return self._push_row(d, xs)
            if d.kind is not Kind.COL:
                return None
            c, chans = d.at, d.gather(x) + d.vals
            xhat = normalize(chans, tuple(range(1, chans.ndim)), self.eps)[0]
            new = _per_copy(xs[1][0][c], chans) * xhat + _per_copy(xs[2][0][c], chans)
            return Delta.col(c, new - Delta.col(c, new, shape).gather(out), shape)
        if d.kind is not Kind.ELEM:
            return None
        c = d.at[:, 0]  # gamma[c] or beta[c] changed: channel c of out, by Δγ · xhat or by Δβ
        plain = np.swapaxes((self._xhat(x)[0] if slot == 1 else np.ones(x.shape))[0], 0, 1)[c]
        return Delta.col(c, _per_copy(d.vals, plain) * plain, shape)

    def _plain(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The plain pass's x - μ, σ² + eps (kept axes) and xhat, for the pushes below."""
        axes = self._axes(x)
        xc = x - x.mean(axis=axes, keepdims=True)
        var_eps = (xc * xc).mean(axis=axes, keepdims=True) + self.eps
        return xc, var_eps, xc / np.sqrt(var_eps)

    def _push_element(self, d: Delta, xs: Sequence[np.ndarray]) -> Delta:
        """Element (n, c, …) changed: only channel c of out moves, a·xhat - b there, and the
        element's own term (`_points_change`)."""
        points = own_points(d)
        assert points is not None  # an element always is one point
        pos, vals = points
        xhat, a, b, own = self._points_change(pos, vals, xs)
        rows, c = np.arange(d.k), d.at[:, 1]
        chans = np.swapaxes(xhat[0], 0, 1)[c]  # (k, N, …), C-contiguous
        out = np.multiply(_per_copy(a[rows, c], chans), chans, order="C")
        out -= _per_copy(b[rows, c], chans)
        out[(rows, d.at[:, 0]) + tuple(d.at[:, 2:].T)] += own[:, 0]
        return Delta.col(c, out, xs[0].shape[1:])

    def _push_row(self, d: Delta, xs: Sequence[np.ndarray]) -> Delta:
        """Row n changed by δ (k, C, …) (a convolved image): every channel's statistics move, so
        all of out does, by a·xhat - b per channel, plus the row's own terms (FULL)."""
        points = own_points(d)
        assert points is not None  # a row always is its entries
        pos, vals = points
        xhat, a, b, own = self._points_change(pos, vals, xs)
        spread = (slice(None), None, slice(None)) + (None,) * (xhat.ndim - 3)  # (k, C) -> (k, 1, C, 1, …)
        # (k, N, C, …), C-ordered (numpy's default would follow the broadcast operands' strides,
        # and the copies' kink distances downstream are read flat): in place from here on
        out = np.multiply(a[spread], xhat, order="C")
        out -= b[spread]
        np.add.at(out.reshape(d.k, -1), (np.arange(d.k)[:, None], pos), own)
        return Delta.full(out, xs[0].shape[1:])

    span_from_delta = True
    span_role: str | None = "through"

    def push_span(self, slot: int, d: Any, xs: Sequence[np.ndarray], out: np.ndarray,
                  on_kink: Any) -> Span | None:
        """A changed element or row under a complex step (or a conv's patches: a Span of own
        changes alone), as a Span: basis (xhat, 1), coef (a, -b) per channel, the changed
        entries' own terms as each copy's own changes. Only where the shared part is small
        against a row (2·C ≤ a quarter of a row's entries: a spatial batchnorm), else push's
        dense change."""
        x = xs[0]
        if slot != 0 or not self.per_channel or x.ndim not in (3, 5) or 8 * x.shape[2] > x[0][0].size:
            return None
        if isinstance(d, Span) and not d.basis.shape[0] and not d.pos.size and np.iscomplexobj(d.own):
            pos, vals = d.own_pos, d.own
        elif isinstance(d, Delta) and complex_only(d) and (points := own_points(d)) is not None:
            pos, vals = points
        else:
            return None
        xhat, a, b, own = self._points_change(pos, vals, xs)
        groups = np.repeat(np.arange(x.shape[2]), x[0][0].size // x.shape[2])
        span = Span(np.stack([xhat[0], np.ones(x.shape[1:])]), groups, np.stack([a, -b], axis=1), pos, own,
                    np.zeros(0, np.intp), np.zeros((len(pos), 0)), x.shape[1:])
        return span_or_none(span, x)

    def _points_change(self, pos: np.ndarray, vals: np.ndarray,
                       xs: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        """Entries at flat positions pos (k, Q) changed by vals δ (k, Q) (padding: value 0): only
        the statistics of the channels they are in move. Per copy and channel, with the plain μ,
        σ², inv = 1/sqrt(σ² + eps) and the changed ones (′), over the channel's m entries:
            Δμ = Σδ/m,  Δσ² = (2 Σ (x - μ) δ + Σ δ²)/m - Δμ²,  r = 1 + Δσ²/(σ² + eps),
            inv′/inv - 1 = r^(-1/2) - 1 = -(r - 1) / (sqrt(r) (1 + sqrt(r)))   (no cancellation)
            out′ - out = γ xhat (inv′/inv - 1) + γ inv′ (δ - Δμ) = a·xhat - b + own,
        giving the plain xhat, a = γ (inv′/inv - 1) and b = γ inv′ Δμ (k, C), and each entry's
        own term γ inv′ δ (k, Q)."""
        x, gamma = xs[0], xs[1][0]
        xc, var_eps, xhat = self._plain(x)
        chans, m = x.shape[2], x[0].size // x.shape[2]
        chan = (pos // (x[0][0].size // chans)) % chans  # (k, Q)
        at = np.arange(len(pos))[:, None] * chans + chan  # (copy, channel), flat

        def per_channel(v: np.ndarray) -> np.ndarray:  # Σ over each copy's entries in a channel
            return sum_by(at, v, len(pos) * chans).reshape(len(pos), chans)

        dmu = per_channel(vals) / m
        dvar = per_channel((2 * xc.reshape(-1)[pos] + vals) * vals) / m - dmu * dmu
        var_c = var_eps.reshape(1, -1)
        scale, inv_new = _rescale(dvar / var_c, var_c)
        own = (gamma * inv_new)[np.arange(len(pos))[:, None], chan] * vals
        return xhat, gamma * scale, gamma * inv_new * dmu, own

    @property
    def label(self) -> str:
        return f"{self.name}(eps={self.eps:g})"


def _rescale(rel: np.ndarray, var_eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """inv′/inv - 1 and inv′ = 1/sqrt(σ′² + eps) from rel = Δσ²/(σ² + eps), r = 1 + rel:
    r^(-1/2) - 1 = -rel / (sqrt(r) (1 + sqrt(r))), free of the cancellation of the plain form."""
    root = np.sqrt(1 + rel)
    return -rel / (root * (1 + root)), 1 / (root * np.sqrt(var_eps))


def _per_copy(v: np.ndarray, like: np.ndarray) -> np.ndarray:
    """One value per copy (k,) against like (k, ...)."""
    return v.reshape(v.shape + (1,) * (like.ndim - 1))


@register
class BatchNorm(_Norm, Op):
    """Batch normalization in train mode (cs231n batchnorm_forward): every feature normalized by
    the mean and variance over the batch.

    Inputs:
    - x: (B, N, D)
    - gamma, beta: (B, D)
    Attrs: eps.
    Returns out (B, N, D): gamma · (x - μ) / sqrt(σ² + eps) + beta, μ and σ² over N.
    """

    name = "batchnorm"
    per_channel = True

    def _axes(self, x: np.ndarray) -> tuple[int, ...]:
        return (1,)

    def _param(self, p: np.ndarray, x: np.ndarray) -> np.ndarray:
        return p[:, None, :]

    def _sum_axes(self, x: np.ndarray) -> tuple[int, ...]:
        return (1,)


@register
class LayerNorm(_Norm, Op):
    """Layer normalization (cs231n layernorm_forward): every row normalized over its features.

    Inputs:
    - x: (B, N, D)
    - gamma, beta: (B, D)
    Attrs: eps.
    Returns out (B, N, D): gamma · (x - μ) / sqrt(σ² + eps) + beta, μ and σ² over D per row.
    """

    name = "layernorm"

    def _axes(self, x: np.ndarray) -> tuple[int, ...]:
        return (2,)

    def _param(self, p: np.ndarray, x: np.ndarray) -> np.ndarray:
        return p[:, None, :]

    def _sum_axes(self, x: np.ndarray) -> tuple[int, ...]:
        return (1,)


@register
class SpatialBatchNorm(_Norm, Op):
    """Spatial batch normalization (cs231n spatial_batchnorm_forward): every channel normalized
    over the batch and the image.

    Inputs:
    - x: (B, N, C, H, W)
    - gamma, beta: (B, C)
    Attrs: eps.
    Returns out (B, N, C, H, W), μ and σ² per channel over N, H and W.
    """

    name = "spatial_batchnorm"
    per_channel = True

    def _axes(self, x: np.ndarray) -> tuple[int, ...]:
        return (1, 3, 4)

    def _param(self, p: np.ndarray, x: np.ndarray) -> np.ndarray:
        return p[:, None, :, None, None]

    def _sum_axes(self, x: np.ndarray) -> tuple[int, ...]:
        return (1, 3, 4)


@register
class GroupNorm(SpatialBatchNorm):
    """Group normalization (cs231n spatial_groupnorm_forward): the channels of every image split
    into `groups` groups of C / groups, each normalized over its channels and the image.

    Inputs:
    - x: (B, N, C, H, W), C divisible by groups
    - gamma, beta: (B, C)
    Attrs: groups, eps.
    Returns out (B, N, C, H, W), μ and σ² per image and group.
    """

    name = "groupnorm"
    per_channel = False  # its groups mix channels within an image

    def __init__(self, groups: int = 1, eps: float = 1e-5) -> None:
        super().__init__(eps)
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"groups must be an integer ≥ 1, got {groups!r}")
        self.groups = int(groups)

    def _grouped(self, x: np.ndarray) -> np.ndarray:
        """(B, N, C, H, W) -> (B, N, G, C / G, H, W)."""
        b, n, c = x.shape[:3]
        if c % self.groups:
            raise ValueError(f"groupnorm: {c} channels do not split into {self.groups} groups")
        return x.reshape((b, n, self.groups, c // self.groups) + x.shape[3:])

    def _axes(self, x: np.ndarray) -> tuple[int, ...]:
        return (3, 4, 5)

    @property
    def label(self) -> str:
        return f"groupnorm(groups={self.groups}, eps={self.eps:g})"
