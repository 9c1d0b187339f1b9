"""The Taylor remainder test: the order of convergence of the first-order model, per node.

Along a direction v over a node's elements, with g the analytic gradient and L the loss,

    r(h) = L(x + h·v) − L(x) − h·⟨g, v⟩ = h·e + h²·c + h³·d + …,   e = ⟨∇L − g, v⟩,

so R(h) = |r(h)| shrinks like h² when g is right (e = 0) and like h when it is not, whatever the
scale of the numbers: the slope of log R against log h is the verdict (pyadjoint's taylor_test).
Each direction is evaluated on a geometric ladder h_k = h₀·2^-k on both sides (x ± h·v), which
splits the remainder into its odd and even parts:

    A(h) = |r(h) − r(−h)| / 2 = |h·e + h³·d + …|    order 1 if g is wrong, ≥ 3 if right;
    T(h) = |r(h) + r(−h)|     = |2h²·c + …|         order 2 where L is smooth along v, 1 at a kink.

A reaches much smaller errors than R (its right-gradient part falls as h³, so an h·e term shows
at larger steps); T needs no gradient at all and tells a kink (a jump in the slope: order 1)
from a wrong gradient, also in code that declares no kinks.

The orders are fitted on the clean part of the ladder: steps whose stencil crosses no declared
kink (built-in ops' `kink_distance`), whose remainder is finite and at least CLEAN_ABOVE times its
rounding floor, taking the FIT_POINTS smallest such steps (the asymptotic end: large steps may
still be in the nonlinear regime). The rounding floor of a remainder at step h is

    floor(h) = ROUNDING·ε·(|L| + |loss inputs|)  +  ROUNDING·ε_g·h·Σ|g_i v_i|,

the loss's own rounding (L(x + hv) − L(x) cancels) plus the gradient's (ε_g: float32's for a
float32 backward). Forward evaluations only, through `Graph.propagate` (directional.loss_changes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..delta import Delta, Ray
from ..graph import Graph
from .directional import loss_changes
from .methods import EPS, METHODS

#: the ladder: h_k = LADDER_START·scale·2^-k, k < LADDER_STEPS, scale = max(|x|_∞, 1), |v|_∞ = 1
#: (the start is the methods table's step for "taylor": --step overrides it)
LADDER_START = METHODS["taylor"].step
LADDER_STEPS = 16
#: seeded Gaussian directions per node
DIRECTIONS = 3
#: the rounding floor's multiple of ε, and how far above it a step must be to count as clean (a
#: rounding error of 1/CLEAN_ABOVE of R moves a local slope over one halving by < 0.1, and the
#: fit over four steps by less). Chosen on the bundled networks and zoo: 40 seeds of every
#: correct network gave no FAIL (tests/test_taylor.py repeats a part of that)
ROUNDING = 4.0
CLEAN_ABOVE = 16.0
#: the order is fitted on this many clean steps at the small-step end (at least MIN_CLEAN)
FIT_POINTS = 4
MIN_CLEAN = 3
#: R's order: PASS at ≥ PASS_ORDER (2, or more where c = 0), FAIL at ≤ FAIL_ORDER; between: no
#: verdict. A's order: a wrong gradient at ≤ ODD_FAIL, a right one at ≥ ODD_PASS. T's order ≤
#: KINK_ORDER: a kink along v within every clean step's reach
PASS_ORDER, FAIL_ORDER = 1.75, 1.25
ODD_FAIL, ODD_PASS = 1.5, 2.5
KINK_ORDER = 1.5
#: the odd part of the loss's change must halve to within this when the step halves
LINEAR_SLACK = 0.25
#: the local slopes inside a fit window may differ by this much (one power of h, not a bend)
SLOPE_SPREAD = 0.6


@dataclass(frozen=True)
class Ladder:
    """One direction's remainders: steps h (S,), r(h) and r(−h) (S,), which steps cross a
    declared kink (S,), the rounding floor (S,), and the ops whose kinks were crossed."""

    h: np.ndarray
    r_plus: np.ndarray
    r_minus: np.ndarray
    crossed: np.ndarray
    floor: np.ndarray
    gv_scale: float  # Σ|g_i v_i|: what a directional error is relative to
    loss_floor: float  # the floor's part from the loss's rounding alone (T's floor)
    gv: float  # ⟨g, v⟩
    linear: np.ndarray  # (S,): L is in its own first-order regime along v at this step (see ladder)
    kink_ops: tuple[str, ...] = ()

    @property
    def remainder(self) -> np.ndarray:
        """R(h) = |L(x + hv) − L(x) − h⟨g, v⟩|."""
        return np.abs(self.r_plus)

    @property
    def odd(self) -> np.ndarray:
        """A(h) = |r(h) − r(−h)| / 2: the part odd in h (h·e + h³·d + …)."""
        return np.abs(self.r_plus - self.r_minus) / 2

    @property
    def even(self) -> np.ndarray:
        """T(h) = |r(h) + r(−h)| = |L(x+hv) + L(x−hv) − 2L(x)|: no gradient in it."""
        return np.abs(self.r_plus + self.r_minus)


@dataclass(frozen=True)
class Direction:
    """The verdict along one direction: "pass", "fail", "kink" or "undecided", R's order and
    A's (None where not fitted), the reason in words, and the resolution: the smallest
    directional error, relative to Σ|g_i v_i|, that A would have shown as order 1; for a FAIL,
    `error`: the directional error seen, |⟨∇L − g, v⟩| ≈ A(h)/h at the smallest fitted step,
    relative to Σ|g_i v_i| (NaN where not measured)."""

    verdict: str
    order: float | None
    odd_order: float | None
    reason: str
    resolution: float
    error: float = float("nan")


def ladder_steps(scale: float, start: float = LADDER_START, steps: int = LADDER_STEPS) -> np.ndarray:
    """h_k = start·scale·2^-k."""
    return start * scale * 2.0 ** -np.arange(steps)


def gaussian_directions(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """`count` Gaussian directions over `size` elements, each scaled to max |v_i| = 1."""
    v = rng.normal(size=(count, size))
    return v / np.maximum(np.abs(v).max(axis=1, keepdims=True), 1e-300)


def loss_scale(graph: Graph, values: dict) -> float:
    """|L| plus the magnitudes of the loss node's scalar inputs (loss_data, loss_reg): what a
    change of the loss is rounded against."""
    loss = abs(float(np.real(values[graph.loss]).reshape(-1)[0]))
    node = graph.nodes[graph.loss]
    for i in node.inputs:
        if values[i].size == 1:
            loss += abs(float(np.real(values[i]).reshape(-1)[0]))
    return loss


def ladder(graph: Graph, values: dict, name: str, grad: np.ndarray, v: np.ndarray,
           h: np.ndarray, grad_eps: float = EPS, via: str | None = None) -> Ladder:
    """r(±h_k) along direction v (flat, over the node's elements) for every step of h: 2·len(h)
    forward copies in one pass downstream of `name`. grad: the analytic gradient, flat (with
    `via`: its share through that one consumer, which alone sees the move)."""
    steps = len(h)
    shape = values[name].shape[1:]
    signed = np.concatenate([h, -h])
    crossed = np.zeros(2 * steps, bool)
    kink_ops: list[str] = []

    def on_kink(node, dist, plain):
        if dist is None or np.shape(dist)[0] != 2 * steps:
            return
        moved = np.sign(np.real(dist)) != np.sign(np.real(plain))  # broadcasts the plain side
        hit = moved.reshape(2 * steps, -1).any(axis=1)
        if hit.any() and node not in kink_ops:
            kink_ops.append(node)
        crossed[:] |= hit

    gv = float(grad @ v)
    # the copies x ± h_k·v as one ray: ops linear in their input push v once for all the steps
    disp = Ray(Delta.full(v.reshape((1,) + shape), shape), np.zeros(2 * steps, int), signed)
    change = np.real(loss_changes(graph, values, name, disp, on_kink, via))
    r_plus, r_minus = change[:steps] - h * gv, change[steps:] + h * gv
    linear = first_order_regime(change[:steps], change[steps:])
    gv_scale = float(np.abs(grad) @ np.abs(v))
    loss_floor = ROUNDING * EPS * loss_scale(graph, values)
    floor = loss_floor + ROUNDING * grad_eps * h * gv_scale
    return Ladder(h, r_plus, r_minus, crossed[:steps] | crossed[steps:], floor, gv_scale, loss_floor,
                  gv, linear, tuple(kink_ops))


def first_order_regime(up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """Which steps lie where L itself is close to linear along v, seen without any gradient: the
    odd part of the loss's change, (L(x+hv) − L(x−hv))/2 = h·D + h³·d + …, halves (within
    LINEAR_SLACK) when h halves, on both sides of the step. Far from it (a log near its pole, a
    softmax of 1e-11, steps past a function's scale) R is dominated by terms of every order and
    its slope says nothing about the gradient."""
    odd = (up - down) / 2
    with np.errstate(all="ignore"):
        pair = np.abs(odd[:-1] / odd[1:] - 2) <= LINEAR_SLACK  # step k against step k + 1
    pair &= np.isfinite(odd[:-1]) & np.isfinite(odd[1:])
    if not pair.size:
        return np.zeros(len(odd), bool)
    before = np.concatenate([pair[:1], pair])  # the pair above step k (step 0: its own)
    after = np.concatenate([pair, pair[-1:]])  # the pair below it (the last step: its own)
    return before & after


def fit_window(h: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """The steps an order is fitted on (a mask): the FIT_POINTS smallest steps of the clean run
    that reaches furthest down the ladder (h descending)."""
    window = np.zeros(len(h), bool)
    idx = np.flatnonzero(clean)
    if idx.size:
        end = start = int(idx[-1])
        while start > 0 and clean[start - 1]:
            start -= 1
        window[max(start, end + 1 - FIT_POINTS):end + 1] = True
    return window


def fit_order(h: np.ndarray, y: np.ndarray, clean: np.ndarray) -> tuple[float | None, str]:
    """The slope of log y against log h on the FIT_POINTS smallest steps of the clean run that
    reaches furthest down the ladder (h descending). (None, why) when there is no clean run of
    MIN_CLEAN steps, or its local slopes bend by more than SLOPE_SPREAD."""
    window = fit_window(h, clean)
    if not window.any():
        return None, "no step is clean"
    if window.sum() < MIN_CLEAN:
        return None, f"only {int(window.sum())} clean step(s) in a row (need {MIN_CLEAN})"
    lh, ly = np.log(h[window]), np.log(y[window])
    local = np.diff(ly) / np.diff(lh)
    if np.ptp(local) > SLOPE_SPREAD:
        return None, (f"the remainder bends on its clean steps (local slopes {local.min():.2f} to "
                      f"{local.max():.2f}): not one power of h")
    return float(np.polyfit(lh, ly, 1)[0]), ""


def clean_steps(lad: Ladder, y: np.ndarray, floor: np.ndarray, linear: bool = True) -> np.ndarray:
    """Steps to fit on: finite, crossing no declared kink, above the rounding floor, and (unless
    `linear` is False: T, whose kinks break the regime) where L is in its first-order regime."""
    ok = np.isfinite(y) & ~lad.crossed & (y > CLEAN_ABOVE * floor)
    return ok & lad.linear if linear else ok


def resolution(lad: Ladder) -> float:
    """The smallest directional error e (relative to Σ|g_i v_i|) that the odd part would show:
    min over steps of max(CLEAN_ABOVE·floor, A) / h (where A itself is larger, an error below it
    hides under the right gradient's own h³ term)."""
    ok = np.isfinite(lad.odd) & ~lad.crossed
    if not ok.any() or lad.gv_scale == 0:
        return float("inf")
    e = np.maximum(CLEAN_ABOVE * lad.floor[ok], lad.odd[ok]) / lad.h[ok]
    return float(e.min() / lad.gv_scale)


def _kink(lad: Ladder, res: float) -> Direction | None:
    """A kink along v: declared kinks crossed at every step, or T of order ≤ KINK_ORDER."""
    if lad.crossed.all():
        ops = ", ".join(lad.kink_ops) or "an op"
        return Direction("kink", None, None, f"every step crosses a kink of {ops}: x sits on it, so "
                         "the order is 1 on one side whatever the gradient; no order verdict", res)
    even, _ = fit_order(lad.h, lad.even, clean_steps(lad, lad.even, np.full_like(lad.h, lad.loss_floor), False))
    if even is not None and even <= KINK_ORDER:
        return Direction("kink", None, None, f"the even part L(x+hv) + L(x−hv) − 2L(x) has order "
                         f"{even:.2f}: the slope jumps along v (a kink within every clean step's "
                         "reach); no order verdict", res)
    return None


def _no_clean_range(lad: Ladder, why: str, odd: float | None, res: float) -> Direction:
    """R has no clean run. If the loss itself moves well above rounding at every step that
    crosses no kink while R stays at rounding, L is affine along v and the first-order model is
    exact to the resolution: a pass without an order. Otherwise no verdict, and why."""
    change = np.abs(lad.r_plus + lad.h * lad.gv)
    usable = np.isfinite(lad.remainder) & ~lad.crossed & lad.linear
    if usable.all() and np.all(change > CLEAN_ABOVE * lad.floor) and \
            np.all(lad.remainder <= CLEAN_ABOVE * lad.floor):
        return Direction("pass", None, odd, "the remainder is at rounding level at every step while "
                         "the loss moves far above it: L is affine along v and the first-order model "
                         f"is exact (errors above {res:.0e} of Σ|g·v| would show)", res)
    if not lad.linear.any():
        return Direction("undecided", None, odd, "L is not close to linear along v at any step (the "
                         "odd part of its change does not halve with h: a pole, a saturated softmax or "
                         "a kink nearer than the smallest step); no verdict", res)
    if not np.any(change[usable] > CLEAN_ABOVE * lad.floor[usable]):
        return Direction("undecided", None, odd, "the loss does not move above rounding along v at "
                         "any step: the test cannot see this node; no verdict", res)
    crossed = int(lad.crossed.sum())
    kinks = f"{crossed} of {len(lad.h)} steps cross a kink of {', '.join(lad.kink_ops)}, " if crossed else ""
    return Direction("undecided", None, odd, f"no clean range on the ladder ({why}; {kinks}the "
                     "others are at rounding level); no verdict", res)


def error_seen(lad: Ladder) -> float:
    """|⟨∇L − g, v⟩| / Σ|g_i v_i| ≈ A(h) / h / Σ|g_i v_i| at the smallest step where A is clean."""
    clean = np.flatnonzero(clean_steps(lad, lad.odd, lad.floor))
    if not clean.size or lad.gv_scale == 0:
        return float("nan")
    k = int(clean[-1])
    return float(lad.odd[k] / lad.h[k] / lad.gv_scale)


def judge(lad: Ladder) -> Direction:
    """One direction's verdict, from its ladder: a kink first (declared kinks crossed at every
    step, or T of order 1), then a wrong gradient (A or R of order 1), then R's order."""
    res = resolution(lad)
    kink = _kink(lad, res)
    if kink is not None:
        return kink
    order, why = fit_order(lad.h, lad.remainder, clean_steps(lad, lad.remainder, lad.floor))
    odd, _ = fit_order(lad.h, lad.odd, clean_steps(lad, lad.odd, lad.floor))
    if order is not None and order <= FAIL_ORDER:
        return Direction("fail", order, odd, f"order {order:.2f}: the remainder falls like h, a "
                         "wrong gradient", res, error_seen(lad))
    if odd is not None and odd <= ODD_FAIL:
        return Direction("fail", order, odd, f"the odd part of the remainder has order {odd:.2f} "
                         "(R's clean steps end before its h term shows): a wrong gradient", res,
                         error_seen(lad))
    if order is None:
        return _no_clean_range(lad, why, odd, res)
    if order >= PASS_ORDER and (odd is None or odd >= ODD_PASS):
        return Direction("pass", order, odd, f"order {order:.2f}", res)
    odd_text = "—" if odd is None else f"{odd:.2f}"
    return Direction("undecided", order, odd, f"order {order:.2f} (odd part {odd_text}): between 1 "
                     "and 2 on the clean steps; no verdict", res)


@dataclass(frozen=True)
class NodeTaylor:
    """A node's Taylor test over its directions: the verdict ("pass", "fail", "kink",
    "undecided"), the order of the remainder (along the deciding direction: the lowest), the odd
    part's order, the reason in words, the directions and the worst resolution."""

    verdict: str
    order: float | None
    odd_order: float | None
    reason: str
    directions: tuple[Direction, ...]
    resolution: float
    error: float = float("nan")  # a FAIL's largest directional error seen (see Direction)


#: which direction decides a node: any failing one, else a kink, else an undecided one
_PRECEDENCE = ("fail", "kink", "undecided", "pass")


def remainder_order(d: Direction) -> float | None:
    """The remainder's order as h → 0: the lower of R's fitted order and its odd part's (an odd
    term linear in h governs the limit even where R's clean steps ended before it showed)."""
    orders = [o for o in (d.order, d.odd_order) if o is not None]
    return min(orders) if orders else None


def taylor_node(graph: Graph, values: dict, name: str, grad: np.ndarray, rng: np.random.Generator,
                count: int = DIRECTIONS, start: float = LADDER_START, grad_eps: float = EPS,
                via: str | None = None) -> NodeTaylor:
    """The Taylor test of node `name` along `count` seeded Gaussian directions. grad: the
    analytic d loss / d name, flat (with `via`, its share through that consumer alone)."""
    grad = np.asarray(grad, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(grad)):
        bad = Direction("fail", None, None, "the analytic gradient is not finite (NaN or Inf)", float("inf"))
        return NodeTaylor("fail", None, None, bad.reason, (bad,), float("inf"))
    if not graph.reaches_loss(via or name):
        none = Direction("undecided", None, None, "the node does not reach the loss", float("inf"))
        return NodeTaylor("undecided", None, None, none.reason, (none,), float("inf"))
    x = np.real(values[name]).reshape(-1)
    h = ladder_steps(max(float(np.abs(x).max(initial=0.0)), 1.0), start)
    found = tuple(judge(ladder(graph, values, name, grad, v, h, grad_eps, via))
                  for v in gaussian_directions(rng, count, x.size))
    verdict = next(p for p in _PRECEDENCE if any(d.verdict == p for d in found))
    deciding = [d for d in found if d.verdict == verdict]
    ranked = sorted(deciding, key=lambda d: (remainder_order(d) is None, remainder_order(d) or 0.0))
    chosen = ranked[0]
    errors = [d.error for d in found if np.isfinite(d.error)]
    return NodeTaylor(verdict, remainder_order(chosen), chosen.odd_order, chosen.reason, found,
                      max(d.resolution for d in found), max(errors) if errors else float("nan"))


# ---------------------------------------------------------------------------------------------
# The adjoint (dot-product) identity of one op: ⟨J·u, v⟩ = ⟨u, Jᵀ·v⟩


#: central differences' step for J·u (relative to max(|x|_∞, 1) over the op's inputs)
ADJOINT_STEP = EPS ** (1 / 3)


@dataclass(frozen=True)
class Jvp:
    """⟨J·u, v⟩ from the op's forward alone: its value, error bar, whether the op has a kink
    along u (its even part f(x+tu) + f(x−tu) − 2f(x) halves, not quarters, with t), and how."""

    value: float
    error: float
    kink: bool
    method: str


def jvp_dot(op, xs: list[np.ndarray], us: list[np.ndarray], v: np.ndarray, complex_ok: bool) -> Jvp:
    """⟨J·u, v⟩ for the op's forward at inputs xs (each (1, …)) along us, against cotangent v:
    by the complex step Im⟨f(x + i·t·u), v⟩ / t where the op carries it (one call), else by
    central differences at t and 2t (four calls; the change between them is the error bar)."""
    scale = max(max(float(np.abs(x).max(initial=0.0)) for x in xs), 1.0)
    if complex_ok:
        t = 1e-20 * scale
        out = op.forward(*[x + 1j * t * u for x, u in zip(xs, us)])
        d = float(np.sum(np.imag(out) * v) / t)
        return Jvp(d, 8 * EPS * float(np.sum(np.abs(np.imag(out) * v)) / t), False, "complex")
    t = ADJOINT_STEP * scale
    steps = np.array([t, -t, 2 * t, -2 * t, 0.0])
    out = op.forward(*[x + steps.reshape((-1,) + (1,) * (x.ndim - 1)) * u for x, u in zip(xs, us)])
    phi = np.real(out.reshape(len(steps), -1) @ v.reshape(-1))  # ⟨f(x + s·u), v⟩ per step s
    d1, d2 = (phi[0] - phi[1]) / (2 * t), (phi[2] - phi[3]) / (4 * t)
    rounding = 16 * EPS * float(np.sum(np.abs(np.real(out[4]) * v))) / t
    even1, even2 = phi[0] + phi[1] - 2 * phi[4], phi[2] + phi[3] - 2 * phi[4]
    # smooth: even(2t) ≈ 4·even(t); at a kink along u: ≈ 2·even(t)
    kink = bool(abs(even1) > 64 * rounding * t and abs(even2) < 3 * abs(even1))
    return Jvp(float(d1), float(abs(d2 - d1) + rounding), kink, "central")
