"""The op registry: every built-in operation, its forward and its backward side by side.

Conventions (the whole engine relies on them):

* Every array an op sees carries a leading *perturbation axis* B. The plain forward and backward
  passes use B = 1; the numeric side stacks B perturbed copies of one node and pushes them through
  the ops downstream of it in one call. Inputs that were not perturbed keep B = 1 and broadcast.
  So "x: (B, N, D)" below means N rows of D features, for each of B copies.
* `forward(*xs) -> out` and `backward(g, out, *xs) -> tuple` (one gradient per input, same shapes
  as the inputs) are pure: an op holds only the constant attributes it was built with.
* Every op works on complex arrays too and is complex-analytic wherever it is differentiable, so
  the complex-step derivative Im f(x + ih)/h is exact to rounding. Comparisons use the real part.
* An op with kinks (points where it is not differentiable) says so in `kink_distance(*xs)`: an
  array whose sign tells which side of its kink each position is on and which is 0 exactly at it.
  The numeric side uses it to tell a kink from a bug. Each kink's convention is a `# NOTE:`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .delta import Delta, Kind, Structure


class BadGradient(Exception):
    """An op's backward returned the wrong number or shapes of gradients. Not a crash: the engine
    reports the op as failing, with this message."""


#: below this |Im z| / scale, cos(Im z) rounds to 1 and sin(Im z) to Im z in float64: the complex
#: exp and log reduce exactly to real ones (the complex step's imaginary parts are ~1e-20)
_TINY_IMAG = 1e-9


def cexp(z: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    """np.exp(z - shift) for a real shift, faster for complex z with tiny imaginary parts:
    e^(a+ib) = e^a (1 + ib) exactly in float64 when |b| < 1e-9 (cos b = 1 and sin b = b to the
    last bit)."""
    if not np.iscomplexobj(z) or not z.size or not (-_TINY_IMAG < z.imag.min() and z.imag.max() < _TINY_IMAG):
        return np.exp(z if shift is None else z - shift)
    out = z - shift if shift is not None else z.copy()  # a new array, filled in place
    e = np.exp(out.real)
    out.real = e
    out.imag *= e
    return out


def clog(z: np.ndarray) -> np.ndarray:
    """np.log, faster for complex z = a + ib with a > 0 and |b| < 1e-9·a: log z = log a + ib/a
    exactly in float64 (the dropped terms are (b/a)² relative)."""
    if not np.iscomplexobj(z) or not z.size:
        return np.log(z)
    low = z.real.min()
    if not (low > 0 and -_TINY_IMAG * low < z.imag.min() and z.imag.max() < _TINY_IMAG * low):
        return np.log(z)
    out = np.empty(z.shape, dtype=np.complex128)
    out.real = np.log(z.real)
    out.imag = z.imag / z.real
    return out


def core_axes(x: np.ndarray) -> tuple[int, ...]:
    """All axes but the leading perturbation axis."""
    return tuple(range(1, x.ndim))


def expand_to(x: np.ndarray, ndim: int) -> np.ndarray:
    """Insert unit axes right after the batch axis so `x` broadcasts like numpy's core shapes."""
    return x.reshape(x.shape[:1] + (1,) * (ndim - x.ndim) + x.shape[1:])


def unbroadcast(g: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Sum `g` over the axes along which `like` was broadcast, giving `like`'s shape."""
    extra = g.ndim - like.ndim
    if extra > 0:
        g = g.sum(axis=tuple(range(1, 1 + extra)))
    axes = tuple(i for i, (gs, ls) in enumerate(zip(g.shape, like.shape)) if ls == 1 and gs != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def per_copy(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Reshape a per-copy scalar gradient g (B,) so it broadcasts against x (B, ...)."""
    return g.reshape(g.shape[:1] + (1,) * (x.ndim - 1))


class Op:
    """An operation of the graph: its forward and its backward side by side, and what else the
    engine may ask of it. Every member has a default but `forward` and `backward`.

    Must provide:
        name = "op"                        the registry key, `op:` in a config
        forward(*xs) -> out                every x (B, ...) with the perturbation axis
        backward(g, out, *xs) -> (dx, …)   one gradient per input, each of its input's shape
    May declare (the defaults suit a smooth op with no shortcuts):
        arity = 1                          differentiable inputs (None: any number)
        label                              how the op is shown in tables (default: name)
        complex_safe = True                complex-analytic, so the complex step is exact
        kinked = False                     True when kink_distance says something
        kink_distance(*xs)                 signed distance to the nearest kink, or None if smooth
        opaque = False                     declares no kinks but may have some: look in the numbers
        structure = None                   Structure.ELEMENTWISE / ROWWISE (one input): a sparse
                                           change is pushed by recomputing only changed slices
        forward_rows(xr, rows)             a ROWWISE op's forward on some rows
        kink_distance_rows(xr, rows)       a ROWWISE op's kink_distance on some rows
        push(slot, d, xs, out)             an exact sparse rule, for an op linear in input `slot`
        row_separable = False              out row n from input rows n alone (delta.push_rows)
    """

    name: str = "op"
    arity: int | None = 1
    complex_safe: bool = True  # built-ins all are; custom ops must earn it by a probe
    kinked: bool = False
    opaque: bool = False  # custom ops: their kinks are found in the numbers (numeric.detect_kinks)
    structure: Structure | None = None
    row_separable: bool = False

    # (*xs: Any, **kw: Any): subclasses name their inputs, forward(self, x, w)

    def forward(self, *xs: Any, **kw: Any) -> np.ndarray:
        """out from the inputs xs, each with the leading perturbation axis."""
        raise NotImplementedError

    def backward(self, g: np.ndarray, out: np.ndarray, *xs: Any, **kw: Any) -> tuple[np.ndarray, ...]:
        """The gradient of each input, given g = dL/dout, the forward's out and its inputs."""
        raise NotImplementedError

    def kink_distance(self, *xs: Any, **kw: Any) -> np.ndarray | None:
        """Signed distance to the nearest kink per position (0 on the kink), or None if smooth.
        Complex under a complex step: its imaginary part says which positions the step moved."""
        return None

    def forward_rows(self, xr: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """A ROWWISE op on some rows: xr (k, C) are rows `rows` (k,) of the input. The default
        runs them as k copies of one row; an op with per-row constants (labels) overrides it."""
        return self.forward(xr[:, None, :])[:, 0]

    def kink_distance_rows(self, xr: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        """kink_distance on some rows, as forward_rows is forward on some rows."""
        dist = self.kink_distance(xr[:, None, :])
        return None if dist is None else dist[:, 0]

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        """The change of out when input `slot` changes by the sparse change `d` (the other inputs
        plain), as a Delta; None: no sparse rule (delta.push then tries `structure`, else the
        dense copies run through forward). Asked only of ops that are not kinked."""
        return None

    @property
    def label(self) -> str:
        """How the op is shown in tables."""
        return self.name


# ---------------------------------------------------------------------------------------------
# Linear algebra and elementwise arithmetic


class MatMul(Op):
    """out = x @ w.  x: (B, N, D), w: (B, D, H) -> (B, N, H)."""

    name, arity = "matmul", 2

    def forward(self, x, w):
        return x @ w

    def backward(self, g, out, x, w):
        # d(x w) = dx w + x dw  =>  dx = g wᵀ,  dw = xᵀ g
        return g @ np.swapaxes(w, -1, -2), np.swapaxes(x, -1, -2) @ g

    def push(self, slot, d, xs, out):
        x, w = xs[0][0], xs[1][0]
        if x.ndim != 2 or w.ndim != 2:
            return None
        shape = out.shape[1:]
        if slot == 1:  # w + Δw:  Δout = x Δw
            if d.kind is Kind.ELEM:  # Δw[r, j] = v:  Δout[:, j] = x[:, r] v, a column
                return Delta.col(d.at[:, 1], x[:, d.at[:, 0]].T * d.vals[:, None], shape)
            if d.kind is Kind.COL:  # Δw[:, j] = v:  Δout[:, j] = x v
                return Delta.col(d.at, d.vals @ x.T, shape)
            if d.kind is Kind.ROW:  # Δw[r] = v:  Δout = x[:, r] ⊗ v, everything
                return Delta.full(x[:, d.at].T[:, :, None] * d.vals[:, None, :], shape)
            return Delta.full(x @ d.vals, shape)
        # x + Δx:  Δout = Δx w
        if d.kind is Kind.ELEM:  # Δx[i, r] = v:  Δout[i] = v w[r], a row
            return Delta.row(d.at[:, 0], d.vals[:, None] * w[d.at[:, 1]], shape)
        if d.kind is Kind.ROW:  # Δx[i] = v:  Δout[i] = v w
            return Delta.row(d.at, d.vals @ w, shape)
        if d.kind is Kind.COL:  # Δx[:, r] = v:  Δout = v ⊗ w[r], everything
            return Delta.full(d.vals[:, :, None] * w[d.at][:, None, :], shape)
        return Delta.full(d.vals @ w, shape)


class AddBias(Op):
    """out = x + b, b added to every row.  x: (B, N, H), b: (B, H) -> (B, N, H)."""

    name, arity = "add_bias", 2

    def forward(self, x, b):
        return x + expand_to(b, x.ndim)

    def backward(self, g, out, x, b):
        return g, unbroadcast(g, b)

    def push(self, slot, d, xs, out):
        if slot == 0:
            return d
        n = xs[0].shape[1] if xs[0].ndim == 3 else None
        if n is None or xs[1].ndim != 2:
            return None
        if d.kind is Kind.ELEM:  # b[j] + v: column j of every row
            return Delta.col(d.at[:, 0], np.repeat(d.vals[:, None], n, axis=1), out.shape[1:])
        return Delta.full(np.broadcast_to(d.vals[:, None, :], (d.k,) + out.shape[1:]), out.shape[1:])


class Add(Op):
    """out = a + b with numpy broadcasting of the core shapes."""

    name, arity = "add", 2
    row_separable = True  # out[n] from a[n] and b[n] when both are (N, ·)

    def forward(self, a, b):
        n = max(a.ndim, b.ndim)
        return expand_to(a, n) + expand_to(b, n)

    def backward(self, g, out, a, b):
        return unbroadcast(g, a), unbroadcast(g, b)

    def push(self, slot, d, xs, out):
        return d if xs[slot].shape[1:] == out.shape[1:] else None


class Sub(Op):
    """out = a - b with numpy broadcasting of the core shapes."""

    name, arity = "sub", 2
    row_separable = True  # out[n] from a[n] and b[n] when both are (N, ·)

    def forward(self, a, b):
        n = max(a.ndim, b.ndim)
        return expand_to(a, n) - expand_to(b, n)

    def backward(self, g, out, a, b):
        return unbroadcast(g, a), -unbroadcast(g, b)

    def push(self, slot, d, xs, out):
        if xs[slot].shape[1:] != out.shape[1:]:
            return None
        return d if slot == 0 else d.with_vals(-d.vals)


class Mul(Op):
    """out = a * b with numpy broadcasting of the core shapes (softmax = exps · divexps)."""

    name, arity = "mul", 2
    row_separable = True  # out[n] from a[n] and b[n] when both are (N, ·)

    def forward(self, a, b):
        n = max(a.ndim, b.ndim)
        return expand_to(a, n) * expand_to(b, n)

    def backward(self, g, out, a, b):
        n = g.ndim
        return unbroadcast(g * expand_to(b, n), a), unbroadcast(g * expand_to(a, n), b)

    def push(self, slot, d, xs, out):
        mine, other = xs[slot], xs[1 - slot]
        full_other = np.broadcast_to(expand_to(other, out.ndim), (1,) + out.shape[1:])
        if mine.shape[1:] == out.shape[1:]:  # not broadcast: Δout = Δa · b at the same places
            return d.with_vals(d.vals * d.gather(full_other))
        if mine.shape[1:] == out.shape[1:2] + (1,) and len(out.shape) == 3:
            rows = d.as_rows()  # a per-row factor (N, 1): its change scales a whole row
            if rows is not None:
                return Delta.row(rows.at, rows.vals * other[0][rows.at], out.shape[1:])
        return None


class Reciprocal(Op):
    """out = 1 / x (the notebook's divexps).  Any shape."""

    name = "reciprocal"
    structure = Structure.ELEMENTWISE

    def forward(self, x):
        return 1.0 / x

    def backward(self, g, out, x):
        # d(1/x) = -dx / x²
        return (-g * out * out,)


class Square(Op):
    """out = x²  elementwise."""

    name = "square"
    structure = Structure.ELEMENTWISE

    def forward(self, x):
        return x * x

    def backward(self, g, out, x):
        return (2.0 * x * g,)


class RowSum(Op):
    """out = Σ_j x[..., j], keeping the axis (the notebook's sexps).  (B, N, C) -> (B, N, 1)."""

    name = "row_sum"
    structure = Structure.ROWWISE

    def forward(self, x):
        return x.sum(axis=-1, keepdims=True)

    def backward(self, g, out, x):
        return (np.broadcast_to(g, x.shape).copy(),)


class Sum(Op):
    """out = Σ x over every core axis.  (B, ...) -> (B,)."""

    name = "sum"

    def forward(self, x):
        return x.sum(axis=core_axes(x))

    def backward(self, g, out, x):
        return (np.broadcast_to(per_copy(g, x), x.shape).copy(),)

    def push(self, slot, d, xs, out):
        return Delta.full(d.vals.reshape(d.k, -1).sum(axis=1), ())


class Mean(Op):
    """out = mean of x over every core element.  (B, ...) -> (B,)."""

    name = "mean"

    def forward(self, x):
        return x.sum(axis=core_axes(x)) / (x[0].size or 1)

    def backward(self, g, out, x):
        return (np.broadcast_to(per_copy(g, x) / (x[0].size or 1), x.shape).copy(),)

    def push(self, slot, d, xs, out):
        return Delta.full(d.vals.reshape(d.k, -1).sum(axis=1) / (xs[0][0].size or 1), ())


class BatchMean(Op):
    """out = (Σ x over every core element) / N, N the number of rows (cs231n's loss / num_train).
    (B, N, ...) -> (B,)."""

    name = "batch_mean"

    def forward(self, x):
        return x.sum(axis=core_axes(x)) / x.shape[1]

    def backward(self, g, out, x):
        return (np.broadcast_to(per_copy(g, x) / x.shape[1], x.shape).copy(),)

    def push(self, slot, d, xs, out):
        return Delta.full(d.vals.reshape(d.k, -1).sum(axis=1) / xs[0].shape[1], ())


# ---------------------------------------------------------------------------------------------
# Activations


class Identity(Op):
    name = "identity"
    structure = Structure.ELEMENTWISE

    def forward(self, x):
        return x + 0  # a new array: values are never aliased between nodes

    def backward(self, g, out, x):
        return (g,)


class ReLU(Op):
    """out = max(x, 0)  elementwise."""

    name = "relu"
    structure = Structure.ELEMENTWISE
    kinked = True

    def forward(self, x):
        return np.where(x.real > 0, x, 0)

    def backward(self, g, out, x):
        # NOTE: at x == 0 the gradient is taken as 0 (the left derivative), cs231n's `x > 0` mask.
        return (g * (x.real > 0),)

    def kink_distance(self, x):
        return x


class LeakyReLU(Op):
    """out = x if x > 0 else alpha · x  elementwise."""

    name = "leaky_relu"
    structure = Structure.ELEMENTWISE
    kinked = True

    def __init__(self, alpha: float = 0.01):
        self.alpha = float(alpha)

    def forward(self, x):
        return np.where(x.real > 0, x, self.alpha * x)

    def backward(self, g, out, x):
        # NOTE: at x == 0 the slope is taken as alpha (the left derivative).
        return (g * np.where(x.real > 0, 1.0, self.alpha),)

    def kink_distance(self, x):
        return x

    @property
    def label(self):
        return f"leaky_relu(alpha={self.alpha:g})"


class Sigmoid(Op):
    """out = 1 / (1 + e^-x)  elementwise, evaluated without overflow on either side."""

    name = "sigmoid"
    structure = Structure.ELEMENTWISE

    def forward(self, x):
        with np.errstate(over="ignore", invalid="ignore"):
            pos = 1.0 / (1.0 + np.exp(-x))
            ex = np.exp(x)
            neg = ex / (1.0 + ex)
        return np.where(x.real >= 0, pos, neg)

    def backward(self, g, out, x):
        # σ' = σ (1 - σ)
        return (g * out * (1.0 - out),)


class Tanh(Op):
    name = "tanh"
    structure = Structure.ELEMENTWISE

    def forward(self, x):
        return np.tanh(x)

    def backward(self, g, out, x):
        # tanh' = 1 - tanh²
        return (g * (1.0 - out * out),)


class Softmax(Op):
    """Row-wise softmax as one op.  (B, N, C) -> (B, N, C)."""

    name = "softmax"
    structure = Structure.ROWWISE

    def forward(self, x):
        # The shift by the row max (of the real part: constant under a complex step) cancels.
        e = cexp(x, x.real.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def backward(self, g, out, x):
        # dx_j = p_j (g_j - Σ_k g_k p_k)
        return (out * (g - (g * out).sum(axis=-1, keepdims=True)),)


# ---------------------------------------------------------------------------------------------
# The pieces of the losses


class Exp(Op):
    """out = e^x elementwise; with `stable`, e^(x - max of the row) (the notebook's exps)."""

    name = "exp"

    def __init__(self, stable: bool = False):
        self.stable = bool(stable)
        self.structure = Structure.ROWWISE if self.stable else Structure.ELEMENTWISE

    def forward(self, x):
        return cexp(x, x.real.max(axis=-1, keepdims=True) if self.stable else None)

    def backward(self, g, out, x):
        # d e^x = e^x dx.
        # NOTE: with `stable` the row max is treated as a constant. Every consumer of this node in
        # softmax cross-entropy is invariant to scaling a row of exps, so the max's own derivative
        # (and its kink where two logits tie) contributes exactly nothing to the loss's gradient.
        return (g * out,)

    @property
    def label(self):
        return "exp(x - max)" if self.stable else "exp"


class NegLogPick(Op):
    """out[n] = -log p[n, y[n]] (the notebook's neg_log).  p: (B, N, C) -> (B, N)."""

    name = "neg_log_pick"
    structure = Structure.ROWWISE

    def __init__(self, labels):
        self.labels = np.asarray(labels, dtype=np.intp)

    def forward_rows(self, pr, rows):
        return -clog(pr[np.arange(len(rows)), self.labels[rows]])

    def forward(self, p):
        rows = np.arange(p.shape[1])
        return -clog(p[:, rows, self.labels])

    def backward(self, g, out, p):
        rows = np.arange(p.shape[1])
        dp = np.zeros(np.broadcast_shapes(p.shape, g.shape[:1] + p.shape[1:]), dtype=np.result_type(p, g))
        # d(-log p) = -dp / p, only at the label's column
        dp[:, rows, self.labels] = -g / p[:, rows, self.labels]
        return (dp,)


class HingeMargins(Op):
    """Multiclass SVM margins, cs231n's svm_loss: out[n, j] = max(0, s[n, j] - s[n, y_n] + 1) for
    j != y_n, and 0 at j = y_n.  s: (B, N, C) -> (B, N, C)."""

    name = "hinge_margins"
    structure = Structure.ROWWISE
    kinked = True

    def __init__(self, labels, margin: float = 1.0):
        self.labels = np.asarray(labels, dtype=np.intp)
        self.margin = float(margin)

    def _raw_rows(self, sr, rows):
        k = np.arange(len(rows))
        raw = sr - sr[k, self.labels[rows]][:, None] + self.margin
        mask = np.zeros(sr.shape, dtype=bool)
        mask[k, self.labels[rows]] = True
        return raw, mask

    def forward_rows(self, sr, rows):
        raw, mask = self._raw_rows(sr, rows)
        return np.where((raw.real > 0) & ~mask, raw, 0)

    def kink_distance_rows(self, sr, rows):
        raw, mask = self._raw_rows(sr, rows)
        return np.where(mask, 1.0, raw)

    def _raw(self, s):
        rows = np.arange(s.shape[1])
        raw = s - s[:, rows, self.labels][..., None] + self.margin
        mask = np.zeros(s.shape[1:], dtype=bool)
        mask[rows, self.labels] = True
        return raw, mask

    def forward(self, s):
        raw, mask = self._raw(s)
        return np.where((raw.real > 0) & ~mask, raw, 0)

    def backward(self, g, out, s):
        # NOTE: a margin of exactly 0 counts as inactive (gradient 0), as cs231n's `margins > 0`.
        raw, mask = self._raw(s)
        active = g * ((raw.real > 0) & ~mask)
        ds = active.copy()
        rows = np.arange(s.shape[1])
        ds[:, rows, self.labels] = -active.sum(axis=-1)
        return (ds,)

    def kink_distance(self, s):
        raw, mask = self._raw(s)
        return np.where(mask, 1.0, raw)  # the label's own column has no kink


class SubConst(Op):
    """out = x - t for a constant target t (mse's residual).  x: (B, ...), t: core shape."""

    name = "sub_const"

    def __init__(self, targets):
        self.targets = np.asarray(targets)

    def forward(self, x):
        return x - self.targets[None]

    def backward(self, g, out, x):
        return (g,)

    def push(self, slot, d, xs, out):
        return d


class WeightedSum(Op):
    """out = Σ x · W over every core element, W a constant of x's core shape (a fixed random
    cotangent turns an op's output into a scalar to check, as cs231n's eval_numerical_gradient_array
    does with dout).  (B, ...) -> (B,)."""

    name = "weighted_sum"

    def __init__(self, weights):
        self.weights = np.asarray(weights, dtype=np.float64)

    def forward(self, x):
        return (x * self.weights[None]).sum(axis=core_axes(x))

    def backward(self, g, out, x):
        return (per_copy(g, x) * self.weights[None],)

    def push(self, slot, d, xs, out):
        w = d.gather(self.weights[None])
        return Delta.full((d.vals * w).reshape(d.k, -1).sum(axis=1), ())


class L2Penalty(Op):
    """out = strength · Σ_i Σ p_i²  over any number of parameters.  (B, ...)* -> (B,)."""

    name, arity = "l2_penalty", None

    def __init__(self, strength: float):
        self.strength = float(strength)

    def forward(self, *ps):
        total = 0.0
        for p in ps:
            total = total + (p * p).sum(axis=core_axes(p))  # p·p, not |p|²: complex-analytic
        return self.strength * total

    def backward(self, g, out, *ps):
        # d(reg Σ p²) = 2 reg p dp
        return tuple(2.0 * self.strength * p * per_copy(g, p) for p in ps)

    def push(self, slot, d, xs, out):
        # Δ(reg p²) = reg (2 p Δ + Δ²), summed over the changed places
        p = d.gather(xs[slot])
        change = (2.0 * p * d.vals + d.vals * d.vals).reshape(d.k, -1).sum(axis=1)
        return Delta.full(self.strength * change, ())

    @property
    def label(self):
        return f"l2_penalty({self.strength:g})"


OPS: dict[str, type[Op]] = {
    cls.name: cls
    for cls in (MatMul, AddBias, Add, Sub, Mul, Reciprocal, Square, RowSum, Sum, Mean, BatchMean,
                Identity, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, Exp, NegLogPick, HingeMargins,
                SubConst, WeightedSum, L2Penalty)
}

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "identity", "softmax")
LOSSES = ("softmax_cross_entropy", "cross_entropy", "mse", "hinge")
