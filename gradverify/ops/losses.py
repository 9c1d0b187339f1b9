"""The pieces a config's `loss:` is built of (build.py assembles softmax cross-entropy, hinge and
mse from them), the L2 penalty, and weighted_sum, which turns an op's output into a scalar."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..delta import Delta, Kind, Structure
from .base import Op, class_indices, core_axes, finite_number, fit_labels, flag, numbers, per_copy, register
from .complexmath import cexp, clog


@register
class Exp(Op):
    """out = e^x elementwise; with `stable`, e^(x - max of the row) (the notebook's exps)."""

    name = "exp"

    def __init__(self, stable: bool = False) -> None:
        self.stable = flag(stable, "stable")
        self.structure = Structure.ROWWISE if self.stable else Structure.ELEMENTWISE

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.stable:
            return cexp(x)
        # the row's max m is the entry at its largest real part, imaginary part and all: a
        # complex step moving that entry moves m too, as moving it moves the real max
        top = np.take_along_axis(x, x.real.argmax(axis=-1)[..., None], axis=-1)
        return cexp(x, top)

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # d e^x = e^x dx.  With `stable`, d e^(x - m) = e^(x - m) (dx - dm), m = x[a] at the row's
        # argmax a:  dx = g·out, less Σ_j g_j·out_j at a. (After a softmax's normalization that
        # sum is 0, the loss being invariant to scaling a row of exps; alone it is not.)
        dx = g * out
        if self.stable:
            top = np.broadcast_to(x.real.argmax(axis=-1)[..., None], dx.shape[:-1] + (1,))
            moved = np.take_along_axis(dx, top, axis=-1) - dx.sum(axis=-1, keepdims=True)
            np.put_along_axis(dx, top, moved, axis=-1)
        return (dx,)

    @property
    def label(self) -> str:
        return "exp(x - max)" if self.stable else "exp"


@register
class NegLogPick(Op):
    """out[n] = -log p[n, y[n]] (the notebook's neg_log).  p: (B, N, C) -> (B, N)."""

    name = "neg_log_pick"
    structure = Structure.ROWWISE

    def __init__(self, labels: ArrayLike) -> None:
        self.labels = class_indices(labels)

    def forward_rows(self, pr: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return -clog(pr[np.arange(len(rows)), self.labels[rows]])

    def forward(self, p: np.ndarray) -> np.ndarray:
        fit_labels(self.labels, p)
        rows = np.arange(p.shape[1])
        return -clog(p[:, rows, self.labels])

    def backward(self, g: np.ndarray, out: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, ...]:
        rows = np.arange(p.shape[1])
        dp = np.zeros(np.broadcast_shapes(p.shape, g.shape[:1] + p.shape[1:]), dtype=np.result_type(p, g))
        # d(-log p) = -dp / p, only at the label's column
        dp[:, rows, self.labels] = -g / p[:, rows, self.labels]
        return (dp,)


@register
class HingeMargins(Op):
    """Multiclass SVM margins, cs231n's svm_loss: out[n, j] = max(0, s[n, j] - s[n, y_n] + 1) for
    j != y_n, and 0 at j = y_n.  s: (B, N, C) -> (B, N, C)."""

    name = "hinge_margins"
    structure = Structure.ROWWISE
    kinked = True

    def __init__(self, labels: ArrayLike, margin: float = 1.0) -> None:
        self.labels = class_indices(labels)
        self.margin = finite_number(margin, "margin")

    def _raw_rows(self, sr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.arange(len(rows))
        raw = sr - sr[k, self.labels[rows]][:, None] + self.margin
        mask = np.zeros(sr.shape, dtype=bool)
        mask[k, self.labels[rows]] = True
        return raw, mask

    def forward_rows(self, sr: np.ndarray, rows: np.ndarray) -> np.ndarray:
        raw, mask = self._raw_rows(sr, rows)
        return np.where((raw.real > 0) & ~mask, raw, 0)

    def kink_distance_rows(self, sr: np.ndarray, rows: np.ndarray) -> np.ndarray:
        raw, mask = self._raw_rows(sr, rows)
        return np.where(mask, 1.0, raw)

    def _raw(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(s.shape[1])
        raw = s - s[:, rows, self.labels][..., None] + self.margin
        mask = np.zeros(s.shape[1:], dtype=bool)
        mask[rows, self.labels] = True
        return raw, mask

    def forward(self, s: np.ndarray) -> np.ndarray:
        fit_labels(self.labels, s)
        raw, mask = self._raw(s)
        return np.where((raw.real > 0) & ~mask, raw, 0)

    def backward(self, g: np.ndarray, out: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
        # NOTE: a margin of exactly 0 counts as inactive (gradient 0), as cs231n's `margins > 0`.
        raw, mask = self._raw(s)
        active = g * ((raw.real > 0) & ~mask)
        ds = active.copy()
        rows = np.arange(s.shape[1])
        ds[:, rows, self.labels] = -active.sum(axis=-1)
        return (ds,)

    def kink_distance(self, s: np.ndarray) -> np.ndarray:
        raw, mask = self._raw(s)
        return np.where(mask, 1.0, raw)  # the label's own column has no kink


@register
class SubConst(Op):
    """out = x - t for a constant target t (mse's residual).  x: (B, ...), t: core shape."""

    name = "sub_const"
    linear = True

    def __init__(self, targets: ArrayLike) -> None:
        self.targets = numbers(targets, "targets")

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x - self.targets[None]

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return (g,)

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        return d


@register
class WeightedSum(Op):
    """out = Σ x · W over every core element, W a constant of x's core shape (a fixed random
    cotangent turns an op's output into a scalar to check, as cs231n's eval_numerical_gradient_array
    does with dout).  (B, ...) -> (B,)."""

    name = "weighted_sum"
    linear = True

    def __init__(self, weights: ArrayLike) -> None:
        self.weights = numbers(weights, "weights")

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.weights.shape != x.shape[1:]:
            raise ValueError(f"weights of shape {list(self.weights.shape)} must have x's shape")
        return (x * self.weights[None]).sum(axis=core_axes(x))

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return (per_copy(g, x) * self.weights[None],)

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        w = d.gather(self.weights[None])
        return Delta.full((d.vals * w).reshape(d.k, -1).sum(axis=1), ())


@register
class L2Penalty(Op):
    """out = strength · Σ_i Σ p_i²  over any number of parameters.  (B, ...)* -> (B,)."""

    name, arity = "l2_penalty", None

    def __init__(self, strength: float) -> None:
        self.strength = finite_number(strength, "strength")

    def forward(self, *ps: np.ndarray) -> np.ndarray:
        if not ps:
            raise ValueError("l2_penalty needs at least one input (the parameters it penalizes)")
        total: Any = 0.0  # then (B,): the sum over the first p, and so on
        for p in ps:
            total = total + (p * p).sum(axis=core_axes(p))  # p·p, not |p|²: complex-analytic
        return self.strength * total

    def backward(self, g: np.ndarray, out: np.ndarray, *ps: np.ndarray) -> tuple[np.ndarray, ...]:
        # d(reg Σ p²) = 2 reg p dp
        return tuple(2.0 * self.strength * p * per_copy(g, p) for p in ps)

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        # Δ(reg p²) = reg (2 p Δ + Δ²), summed over the changed places
        p = d.gather(xs[slot])
        change = (2.0 * p * d.vals + d.vals * d.vals).reshape(d.k, -1).sum(axis=1)
        return Delta.full(self.strength * change, ())

    def push_ray(self, slot: int, ray: Any, xs: Sequence[np.ndarray], out: np.ndarray,
                 on_kink: Any) -> Delta | None:
        # copy b moves p by c_b·u: Δ(reg Σ p²) = reg (c_b · 2⟨p, u⟩ + c_b² · ⟨u, u⟩)
        d = ray.d
        if d.kind is not Kind.FULL:
            return None
        u = d.vals.reshape(d.k, -1)
        lin, sq = 2.0 * (u @ xs[slot][0].reshape(-1)), (u * u).sum(axis=1)
        c, g = ray.coef, ray.group
        return Delta.full(self.strength * (c * lin[g] + c * c * sq[g]), ())

    @property
    def label(self) -> str:
        return f"l2_penalty({self.strength:g})"


#: the `loss:` types of a config (build.py assembles each from the ops above)
LOSSES = ("softmax_cross_entropy", "cross_entropy", "mse", "hinge")
