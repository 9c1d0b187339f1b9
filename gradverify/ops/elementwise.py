"""More activations: abs, elu, gelu, softplus and dropout (elementwise), and the row-wise
log_softmax."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..delta import Delta, Structure
from .base import Op, register
from .complexmath import cexp, clog


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) without overflow on either side (by the real part's sign)."""
    with np.errstate(over="ignore", invalid="ignore"):
        pos = 1.0 / (1.0 + np.exp(-x))
        ex = np.exp(x)
        neg = ex / (1.0 + ex)
    return np.where(x.real >= 0, pos, neg)


@register
class Abs(Op):
    """out = |x| elementwise, as x · sign(Re x) (complex-analytic off 0; np.abs is not).

    Inputs: x (B, *shape).  Returns out (B, *shape).
    Kinks: at x = 0; kink_distance is x.
    """

    name = "abs"
    structure = Structure.ELEMENTWISE
    kinked = True

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * np.sign(x.real)

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # d|x| = sign(x) dx
        # NOTE: at x == 0 the gradient is taken as 0 (np.sign(0), the mean of both sides).
        return (g * np.sign(x.real),)

    def kink_distance(self, x: np.ndarray) -> np.ndarray:
        return x


@register
class ELU(Op):
    """out = x if x > 0 else alpha (e^x - 1) elementwise.

    Inputs: x (B, *shape).  Attrs: alpha (default 1).  Returns out (B, *shape).
    Kinks: at x = 0 when alpha != 1 (the slopes alpha and 1 differ); with alpha = 1 it is smooth
    enough (C¹) and declares none.
    """

    name = "elu"
    structure = Structure.ELEMENTWISE

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = _number(alpha, "alpha")
        self.kinked = self.alpha != 1.0

    def forward(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.where(x.real > 0, x, self.alpha * np.expm1(x))

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # d/dx alpha (e^x - 1) = alpha e^x on the left, 1 on the right
        # NOTE: at x == 0 the slope is taken as alpha (the left derivative).
        with np.errstate(over="ignore", invalid="ignore"):
            return (g * np.where(x.real > 0, 1.0, self.alpha * np.exp(x)),)

    def kink_distance(self, x: np.ndarray) -> np.ndarray | None:
        return x if self.kinked else None

    @property
    def label(self) -> str:
        return f"elu(alpha={self.alpha:g})"


_GELU_C = float(np.sqrt(2.0 / np.pi))
_GELU_A = 0.044715


@register
class GELU(Op):
    """GELU, tanh form: out = x/2 · (1 + tanh(c (x + 0.044715 x³))), c = sqrt(2/π), elementwise.

    Inputs: x (B, *shape).  Returns out (B, *shape).
    """

    name = "gelu"
    structure = Structure.ELEMENTWISE

    def forward(self, x: np.ndarray) -> np.ndarray:
        return 0.5 * x * (1.0 + np.tanh(_GELU_C * (x + _GELU_A * x * x * x)))

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # with t = tanh u, u = c (x + a x³):  out' = (1 + t)/2 + x/2 · (1 - t²) · c (1 + 3 a x²)
        t = np.tanh(_GELU_C * (x + _GELU_A * x * x * x))
        return (g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _GELU_C * (1.0 + 3.0 * _GELU_A * x * x)),)


@register
class Softplus(Op):
    """out = log(1 + e^x) elementwise, without overflow (x + log(1 + e^-x) for x > 0).

    Inputs: x (B, *shape).  Returns out (B, *shape).
    """

    name = "softplus"
    structure = Structure.ELEMENTWISE

    def forward(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.where(x.real > 0, x + np.log1p(np.exp(-x)), np.log1p(np.exp(x)))

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # d log(1 + e^x) = e^x / (1 + e^x) = σ(x)
        return (g * sigmoid(x),)


@register
class LogSoftmax(Op):
    """Row-wise log-softmax over the last axis: out = x - log Σ_j e^(x_j).

    Inputs: x (B, N, C).  Returns out (B, N, C).
    """

    name = "log_softmax"
    structure = Structure.ROWWISE

    def forward(self, x: np.ndarray) -> np.ndarray:
        # shifted by the row max of the real part, a constant that cancels exactly
        z = x - x.real.max(axis=-1, keepdims=True)
        return z - clog(cexp(z).sum(axis=-1, keepdims=True))

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # d out_i / d x_j = δ_ij - p_j with p = e^out the softmax:  dx_j = g_j - p_j Σ_i g_i
        return (g - cexp(out) * g.sum(axis=-1, keepdims=True),)


@register
class Dropout(Op):
    """Inverted dropout (cs231n dropout_forward, train mode): out = x · mask / keep.

    Inputs: x (B, *shape).
    Attrs: keep, the probability in (0, 1] of keeping an entry; seed.
    Returns out (B, *shape).
    The mask is a function of x's core shape: drawn from np.random.default_rng(seed) the first
    time a shape is seen and reused for every perturbed copy and every check, so the op is a
    fixed linear map and its check is exact and repeatable.
    """

    name = "dropout"
    linear = True

    def __init__(self, keep: float = 0.5, seed: int = 0) -> None:
        self.keep = _number(keep, "keep")
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"keep must be a probability in (0, 1], got {keep!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer ≥ 0, got {seed!r}")
        self.seed = int(seed)
        self._scales: dict[tuple[int, ...], np.ndarray] = {}

    def scale(self, shape: tuple[int, ...]) -> np.ndarray:
        """mask / keep for one copy of this core shape."""
        if shape not in self._scales:
            mask = np.random.default_rng(self.seed).random(shape) < self.keep
            self._scales[shape] = mask / self.keep
        return self._scales[shape]

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * self.scale(x.shape[1:])[None]

    def backward(self, g: np.ndarray, out: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
        # linear: dx = g · mask / keep
        return (g * self.scale(x.shape[1:])[None],)

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        # Δout = Δx · mask / keep at the same places
        return d.with_vals(d.vals * d.gather(self.scale(xs[0].shape[1:])[None]))

    @property
    def label(self) -> str:
        return f"dropout(keep={self.keep:g}, seed={self.seed})"
