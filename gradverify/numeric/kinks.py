"""Kinks seen from the numbers, for code that declares none (your own ops): one-sided gaps,
the scan that tells a kink at x from a steep function, and smaller stencils for a kink near x.

A real stencil of step h measures the derivative at x only if no kink lies within it. Built-in
ops declare their kinks, and estimate._shrink_at_kinks shrinks the stencils that cross one; for
your code the gaps between one-sided derivatives say it: a kink's gap is its jump whatever the
step, a smooth function's O(h²) plus rounding that grows as 1/h.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import delta
from ..graph import Graph
from .directional import loss_changes
from .methods import EPS, METHODS, ONE_SIDED_STEP, one_sided
from .prober import Prober

if TYPE_CHECKING:
    from .estimate import Estimate

#: shrinking the step this many times by 10 must stop a real stencil crossing a kink that is near
#: x but not at it; one that is still crossed lies at x. No step is shrunk below MIN_SHRUNK_STEP
#: (relative): below it x + h rounds to x, and a stencil that no longer moves crosses nothing
KINK_SHRINKS = 3
MIN_SHRUNK_STEP = 1e-9

#: one-sided steps for kinks seen from the numbers: a kink's gap stays as the step shrinks 100×;
#: candidates are confirmed at the step between (rounding noise that happened to match at two
#: steps does not match at a third: it grows as 1/h)
KINK_SCAN_STEPS = (1e-3, 1e-5)
KINK_CONFIRM_STEP = 1e-4
#: a gap is a kink only when it stands clear of this many times the one-sided error bars …
KINK_ERROR_BARS = 4.0
#: … and of this fraction of the node's largest derivative: rounding in a derivative scales with
#: the node (the loss and its inputs), not with the element's own, possibly tiny, derivative
KINK_NODE_RTOL = 1e-7


def _same_jump(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Gaps within a factor 2 of each other: the same jump seen at two steps."""
    return (b > 0.5 * a) & (b < 2 * a)


def detect_kinks(graph: Graph, values: dict, name: str, indices: np.ndarray, node_scale: float):
    """Kinks seen from the numbers alone, for code that declares none. At a kink the left and
    right derivatives differ by the jump in the derivative, whatever the step; a smooth
    function's second-order one-sided differences differ by O(h³) plus rounding, which grows as
    1/h. So an element is at a kink when its one-sided gaps at h = 1e-3, 1e-4 and 1e-5 are (1)
    within a factor 2 of each other (the same jump at every step: it neither closes up, as a
    steep smooth function's does, nor grows 10× per step, as rounding noise does), (2) more than
    KINK_ERROR_BARS times the error bar of the estimates, and (3) more than KINK_NODE_RTOL of the
    node's largest derivative `node_scale`.
    Returns (kink, left, right, error bar), one entry per index."""
    prober = Prober(graph, values, name)
    idx = np.asarray(indices, dtype=np.intp)
    x = prober.base[idx].real.astype(np.float64)
    scale = np.maximum(np.abs(x), 1.0)
    loss = float(np.real(values[graph.loss]).reshape(-1)[0])
    coarse, fine = KINK_SCAN_STEPS
    l1, r1, _ = one_sided(prober, idx, x, scale, loss, rel_step=coarse)
    l2, r2, e2 = one_sided(prober, idx, x, scale, loss, rel_step=fine)
    gap1, gap2 = np.abs(r1 - l1), np.abs(r2 - l2)
    noise = KINK_NODE_RTOL * node_scale
    kink = _same_jump(gap1, gap2) & (gap2 > KINK_ERROR_BARS * e2 + noise) & np.isfinite(gap2)
    if kink.any():
        sub = np.flatnonzero(kink)
        l3, r3, e3 = one_sided(prober, idx[sub], x[sub], scale[sub], loss, rel_step=KINK_CONFIRM_STEP)
        gap3 = np.abs(r3 - l3)
        kink[sub] = _same_jump(gap3, gap2[sub]) & _same_jump(gap1[sub], gap3) & (gap3 > KINK_ERROR_BARS * e3 + noise)
    return kink, l2, r2, e2


def kink_gap(prober: Prober, idx, x, scale, loss, reuse: bool = False, rel_step: float = ONE_SIDED_STEP,
             bend: bool = False):
    """|D₊ - D₋| for each element, from second-order one-sided differences at steps h and 2h on
    each side, and a bound on its rounding. With f(x) = 0 (f holds changes of the loss) and the
    exact steps a, b of one side, D = (b²·f(a) - a²·f(b)) / (a·b·(b - a)) is exact for a
    quadratic: a smooth function's gap is O(h²·f‴), a kink's is its jump whatever h. Rounding:
    (4 + 1)·ε·|loss| / h per side, h = rel_step·max(|x|, 1). `reuse`: the points are central
    differences' last run (x ± h, x ± 2h), so the gap costs no evaluation. `bend`: the gap is at
    least h·|c₊ - c₋|, c the second derivative of each side's quadratic — O(h²·f‴) too, but a
    kink inside the stencil shows in it (c·jump / h at a distance c) even where the one-sided
    slopes happen to agree (a kink 2h/3 from x)."""
    last = prober.last if reuse else None
    if last is None or len(last[0]) != 4:
        h = rel_step * scale
        pts = [x + h, x - h, x + 2 * h, x - 2 * h]
        f, _ = prober.run(idx, pts)
    else:
        pts, f = last
    steps = [np.asarray(p).real - x for p in pts]  # exact: fl(x + m·h) - x
    sides, curves = [], []
    with np.errstate(all="ignore"):
        for a, b in ((0, 2), (1, 3)):
            ha, hb = steps[a], steps[b]
            sides.append((hb * hb * f[a] - ha * ha * f[b]) / (ha * hb * (hb - ha)))
            curves.append(2 * (f[b] / hb - f[a] / ha) / (hb - ha))
        gap = np.abs(sides[0] - sides[1])
        if bend:
            gap = np.fmax(gap, np.abs(curves[0] - curves[1]) * np.abs(steps[0]))
    return gap, 10 * EPS * (abs(loss) + 1e-300) / np.abs(steps[0])


def complex_gap(prober: Prober, idx, x, scale, loss, d):
    """Twice |central difference - complex step| and its rounding bound: two evaluations where
    kink_gap takes four. Smooth: O(h²·f‴). At a kink the central difference is the mean of the
    one-sided derivatives; a complex step that takes one of them (or any value outside
    [left, right]) stands at least half the jump away. One that takes the mean is not told
    apart here; its element then passes only where the analytic value is that mean, which lies
    in [left, right]."""
    h = ONE_SIDED_STEP * scale
    pts = [x + h, x - h]
    f, _ = prober.run(idx, pts)
    steps = [p - x for p in pts]  # exact: fl(x ± h) - x
    with np.errstate(all="ignore"):
        central = (f[0] - f[1]) / (steps[0] - steps[1])
    return 2 * np.abs(central - d), 2 * EPS * (abs(loss) + 1e-300) / h + 8 * EPS * np.abs(d)


#: nodes of more elements than this are first screened along SCREEN_DIRECTIONS directions (4
#: evaluations each) before every element's gap (2 or 4 evaluations each) is measured
SCREEN_FROM = 24
SCREEN_DIRECTIONS = 3


def kinks_along_directions(prober: Prober, loss: float, node_scale: float) -> bool:
    """May some element of the node sit on a kink? The gap of kink_gap along random Gaussian
    directions v over all its elements at once: a kink at element i shows as |v_i|·jump (two
    tied elements of a max as |v_a - v_b|·jump, never 0 for Gaussian v), a smooth function's as
    O(h²). Said yes also to rounding or curvature that stands out: only costs the per-element
    gaps. A kink missed here, as in kink_candidates, lets only an agreeing element pass."""
    shape = prober.shape
    rng = np.random.default_rng(len(prober.base))
    v = rng.normal(size=(SCREEN_DIRECTIONS,) + tuple(shape))
    h = ONE_SIDED_STEP * max(float(np.abs(prober.base.real).max(initial=0.0)), 1.0)
    steps = np.array([h, -h, 2 * h, -2 * h])
    vals = (steps[:, None, None] * v.reshape(1, SCREEN_DIRECTIONS, -1)).reshape((-1,) + tuple(shape))
    if not prober.reaches:
        return False
    with np.errstate(all="ignore"):
        change = prober.graph.propagate(prober.values, {prober.name: delta.Delta.full(vals, shape)})
    f = np.real(np.asarray(change)).reshape(4, SCREEN_DIRECTIONS)
    right = (4 * f[0] - f[2]) / (2 * h)  # (b²f(a) - a²f(b)) / (ab(b - a)) at a = h, b = 2h
    left = (4 * f[1] - f[3]) / (-2 * h)
    bound = 10 * EPS * (abs(loss) + 1e-300) / h
    return bool(np.any(~(np.abs(right - left) <= KINK_ERROR_BARS * bound + 0.5 * KINK_NODE_RTOL * node_scale)))


def kink_candidates(est: Estimate, node_scale: float) -> np.ndarray:
    """Elements whose numbers call for the kink scan (detect_kinks): a one-sided gap that is not
    clearly within KINK_ERROR_BARS times its rounding plus half the scan's own threshold
    (KINK_NODE_RTOL of the node's largest derivative), or no gap measured. A kink missed here
    only lets an element pass whose analytic value agreed with its estimate anyway; a failing
    element is scanned whatever its gap."""
    if est.kink_gap is None or est.kink_gap_error is None:
        return np.ones(len(est.index), bool)
    gap, bound = est.kink_gap, est.kink_gap_error
    return ~(gap <= KINK_ERROR_BARS * bound + 0.5 * KINK_NODE_RTOL * node_scale)


#: a smooth function's one-sided gap falls 100× when the step does 10× (O(h²)); a kink's stays, and
#: rounding's grows 10×: a gap this many times smaller than at the step before is smooth
SMOOTH_FALL = 30
#: clear_of_kinks's smallest step (relative): one below MIN_SHRUNK_STEP, only to confirm the one
#: before (its rounding, ε|loss|/h, is in its error bar)
MIN_CLEAR_STEP = 1e-10


def clear_of_kinks(graph: Graph, values: dict, name: str, indices: np.ndarray, method: str,
                   rel_step: float, node_scale: float):
    """Elements whose real stencil (x ± 2h) may cross a kink of your code near x, not at it (a
    ReLU input at -3e-6 under h = 6e-6: central differences take a quarter of the jump, and
    their error bar, |D(2h) - D(h)|, sees less than that), or be too wide for how fast the
    function turns (a batchnorm over timestamps ~1.7e9 that spread by 3600: h = ε^(1/3)·|x| ≈ 1e4,
    where the error bar's h² asymptotics do not hold yet): estimated again at its own step and
    with the step shrunk 10× at a time, KINK_SHRINKS times and once more to confirm (_levels),
    keeping the estimate whose stencil's one-sided gap (kink_gap at that step) is within its
    noise — no kink within it — or falls as a smooth function's does (SMOOTH_FALL), of least
    error bar; as estimate._shrink_at_kinks does at the kinks built-in ops declare. Returns
    (derivative, error bar, clear), one entry per index; an element not clear has a kink within
    the smallest stencil: at x (detect_kinks)."""
    prober = Prober(graph, values, name)
    m = METHODS[method]
    idx = np.asarray(indices, dtype=np.intp)
    x = prober.base[idx].real.astype(np.float64)
    scale = np.maximum(np.abs(x), 1.0)
    loss = float(np.real(values[graph.loss]).reshape(-1)[0])
    levels = _levels(prober, m, idx, x, scale, loss, rel_step, node_scale)
    return _least_error(levels, len(idx))


def _levels(prober: Prober, m, idx, x, scale, loss: float, rel_step: float, node_scale: float) -> list:
    """(estimate, error bar, clear) at the step that failed and at KINK_SHRINKS + 1 smaller ones.
    The first is clear only where quiet (a smooth element that failed keeps its own, tightest,
    bar); the last only where quiet too: a gap that merely fell there may be a kink the outer
    points just cross (x - 2h barely past it: one-sided slopes nearly agree), and no step after
    it would tell. Between them, quiet or fallen as a smooth function's gap falls."""
    levels, before = [], None
    for k in range(KINK_SHRINKS + 2):
        step = rel_step / 10 ** k
        if step < MIN_CLEAR_STEP:
            break
        d, err, _ = m.estimate(prober, idx, x, scale, step, loss)
        gap, bound = kink_gap(prober, idx, x, scale, loss, reuse=m.name == "central", rel_step=step, bend=True)
        clear = gap <= KINK_ERROR_BARS * bound + 0.5 * KINK_NODE_RTOL * node_scale
        if before is not None and k <= KINK_SHRINKS:
            clear |= gap <= before / SMOOTH_FALL
        # the bar at least the disagreement of the two one-sided estimates at this step, plus the
        # rounding of x's own magnitude inside the code (x - mean(x) of inputs ~1e5 loses 5
        # digits): ~ε|x| per evaluation times the node's derivatives, over h = step·|x|
        err = np.fmax(err, gap) + 8 * EPS * node_scale / step
        levels.append((d, err, clear & np.isfinite(d) & np.isfinite(err)))
        before = gap
    return levels


def _least_error(levels: list, n: int):
    """Each element's clear estimate of least error bar, the bar widened by what of its distance
    from a clear neighbour's estimate the neighbour's own bar does not explain (the least of
    several bars may be one that rounding made small): (derivative, error bar, clear)."""
    derivative, error, clear = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool)
    for k, (d, err, ok) in enumerate(levels):
        widened = err.copy()
        for j in (k - 1, k + 1):
            if 0 <= j < len(levels):
                both = ok & levels[j][2]
                unexplained = np.abs(d - levels[j][0]) - levels[j][1]
                widened[both] = np.maximum(widened[both], unexplained[both])
        better = ok & ~(widened >= error)
        derivative[better], error[better], clear[better] = d[better], widened[better], True
    return derivative, error, clear


def moved_together(graph: Graph, values: dict, name: str, groups: list[np.ndarray]):
    """Left and right derivatives of the loss when the elements of each group (flat indices of
    node `name`) all move by the same step: along the direction 1 over the group. Where one op
    couples them — the tied entries of a max — that direction is smooth (the max moves with
    them), and a valid gradient's entries sum to its derivative; each entry alone only bounds
    its own. Second-order one-sided differences at h/2, h, 2h, h = ONE_SIDED_STEP·max(|x|, 1) over
    the group, as methods.one_sided. Returns (left, right, error bar), one entry per group."""
    size = values[name][0].size
    base = np.real(values[name]).reshape(-1)
    ones = np.zeros((len(groups), size))
    for row, idx in enumerate(groups):
        ones[row, idx] = 1.0
    h = ONE_SIDED_STEP * np.array([max(float(np.abs(base[idx]).max()), 1.0) for idx in groups])
    multiples = (0.5, 1.0, 2.0, -0.5, -1.0, -2.0)
    moves = np.concatenate([m * h[:, None] * ones for m in multiples]).reshape((-1,) + values[name].shape[1:])
    f = np.real(loss_changes(graph, values, name, moves)).reshape(len(multiples), len(groups))
    loss = abs(float(np.real(values[graph.loss]).reshape(-1)[0]))
    out = []
    for s, (a, b, c) in ((1, (0, 1, 2)), (-1, (3, 4, 5))):
        coarse = (4 * f[b] - f[c]) / (2 * s * h)  # f holds changes: f(x) itself is 0
        fine = (4 * f[a] - f[b]) / (s * h)
        out.append((fine, np.abs(fine - coarse) / 3 + 8 * EPS * (loss + 1e-300) / h))
    (right, rerr), (left, lerr) = out
    return left, right, np.maximum(lerr, rerr)
