"""Normalization: batchnorm (train mode), spatial_batchnorm, layernorm, groupnorm.

All four are one computation over different axes: xhat = (x - μ) / sqrt(σ² + eps) with μ and σ²
the mean and the (biased) variance over a set of axes, then out = gamma · xhat + beta with one
gamma and beta per feature (or channel). The variance is mean((x - μ)·(x - μ)), not np.var, which
takes |x - μ|² and so is not complex-analytic.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..delta import Delta, Kind
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
                c, chans = d.at[:, 1], np.moveaxis(x[0][:, d.at[:, 1]], 1, 0).astype(np.result_type(x, d.vals))
                chans[(np.arange(d.k), d.at[:, 0]) + tuple(d.at[:, 2:].T)] += d.vals
            elif d.kind is Kind.COL:
                c, chans = d.at, d.gather(x) + d.vals
            else:
                return None
            xhat = normalize(chans, tuple(range(1, chans.ndim)), self.eps)[0]
            new = _per_copy(xs[1][0][c], chans) * xhat + _per_copy(xs[2][0][c], chans)
            return Delta.col(c, new - Delta.col(c, new, shape).gather(out), shape)
        if d.kind is not Kind.ELEM:
            return None
        c = d.at[:, 0]  # gamma[c] or beta[c] changed: channel c of out, by Δγ · xhat or by Δβ
        plain = np.moveaxis((self._xhat(x)[0] if slot == 1 else np.ones(x.shape))[0][:, c], 1, 0)
        return Delta.col(c, _per_copy(d.vals, plain) * plain, shape)

    @property
    def label(self) -> str:
        return f"{self.name}(eps={self.eps:g})"


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
