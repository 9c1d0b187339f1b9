"""Numeric d loss / d node, element by element, with error bars and kinks.

`estimate` plans (which method, which step), sizes chunks of perturbed copies (`next_chunk`),
maps a pure per-chunk estimator (`estimate_chunk`) over them on the usable cores (`map_chunks`),
and gathers the results into one `Estimate`.

At a kink a real stencil is shrunk (a kink merely near x stops being crossed; one still crossed
after a thousandfold shrink lies at x), and an element at a kink gets its two one-sided
derivatives instead of one derivative.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace

import numpy as np

from .. import delta
from ..graph import Graph
from ..parallel import usable_cores
from ..results import max_finite
from .cuts import Cuts
from .methods import EPS, METHODS, ONE_SIDED_STEP, Method, one_sided
from .prober import Prober, copy_order, node_method

#: shrinking the step this many times by 10 must stop a real stencil crossing a kink that is near
#: x but not at it; one that is still crossed lies at x. No step is shrunk below MIN_SHRUNK_STEP
#: (relative): below it x + h rounds to x, and a stencil that no longer moves crosses nothing
KINK_SHRINKS = 3
MIN_SHRUNK_STEP = 1e-9
#: the most copies in one chunk (beyond this, numpy's per-call overhead is already negligible)
MAX_CHUNK = 8192
#: but keep a chunk's copies near cache-sized: beyond this, bigger chunks only get slower
CACHE_BYTES = 16 * 2**20
#: chunks smaller than this many elements in all are not worth a second thread
THREADED_FROM = 256
#: a node whose remaining chunks would take less than this (seconds, at its first chunk's pace)
#: stays on one thread: starting threads and handing the GIL between them cost more than they
#: save (measured: a 64×128→256→10 check 20% slower on two threads than on one)
SERIAL_BELOW = 0.02
#: upstream of a user's op, nodes up to this size have every element's one-sided gap measured
#: (kink_gap) and scanned for kinks where the gap calls for it; larger nodes only their failing
#: elements
OPAQUE_KINK_SCAN = 2048


#: numpy releases the GIL inside its loops, so chunks on threads run in parallel, one per core;
#: more threads than cores would only contend for them
WORKERS = usable_cores()


@dataclass(frozen=True)
class Estimate:
    """Numeric derivatives of the loss for some elements of one node (flat indices `index`).

    `error` is the estimate's own error bar; `left`/`right` the one-sided derivatives where
    `kink` (NaN elsewhere); `crossings` how many kinks the element's perturbation crosses (one
    interval [left, right] bounds the valid subgradients only when it is one)."""

    index: np.ndarray
    numeric: np.ndarray
    error: np.ndarray
    kink: np.ndarray
    left: np.ndarray
    right: np.ndarray
    method: str
    step: float
    crossings: np.ndarray | None = None
    #: upstream of a user's op (which declares no kinks), for nodes up to OPAQUE_KINK_SCAN
    #: elements: |right - left| from second-order one-sided differences, and its rounding bound
    #: (kink_candidates reads them); None where not computed
    kink_gap: np.ndarray | None = None
    kink_gap_error: np.ndarray | None = None


def estimate_chunk(prober: Prober, method: Method, idx: np.ndarray, rel_step: float, loss: float,
                   gaps: bool = False):
    """The estimate for the elements `idx`: (derivative, error bar, kinks crossed, left, right,
    and with `gaps` (kink gap, its rounding bound), see kink_gap)."""
    x = prober.base[idx].real.astype(np.float64)
    scale = np.maximum(np.abs(x), 1.0)
    d, err, crossed = method.estimate(prober, idx, x, scale, rel_step, loss)
    gap = None
    if gaps:
        gap = (complex_gap(prober, idx, x, scale, loss, d) if method.name == "complex"
               else kink_gap(prober, idx, x, scale, loss, reuse=method.name == "central"))
    if method.name != "complex":
        _shrink_at_kinks(prober, method, idx, x, scale, rel_step, loss, (d, err, crossed))
    if prober.subnormal:  # the plain pass itself has lost digits on the way to the loss
        err = np.full(len(idx), np.inf)
    left, right = np.full(len(idx), np.nan), np.full(len(idx), np.nan)
    if crossed.any():
        sub = np.flatnonzero(crossed)
        left[sub], right[sub], err[sub] = one_sided(prober, idx[sub], x[sub], scale[sub], loss)
    return d, err, crossed, left, right, gap


def kink_gap(prober: Prober, idx, x, scale, loss, reuse: bool = False):
    """|D₊ - D₋| for each element, from second-order one-sided differences at steps h and 2h on
    each side, and a bound on its rounding. With f(x) = 0 (f holds changes of the loss) and the
    exact steps a, b of one side, D = (b²·f(a) - a²·f(b)) / (a·b·(b - a)) is exact for a
    quadratic: a smooth function's gap is O(h²·f‴), a kink's is its jump whatever h. Rounding:
    (4 + 1)·ε·|loss| / h per side. `reuse`: the points are central differences' last run
    (x ± h, x ± 2h), so the gap costs no evaluation."""
    last = prober.last if reuse else None
    if last is None or len(last[0]) != 4:
        h = ONE_SIDED_STEP * scale
        pts = [x + h, x - h, x + 2 * h, x - 2 * h]
        f, _ = prober.run(idx, pts)
    else:
        pts, f = last
    steps = [np.asarray(p).real - x for p in pts]  # exact: fl(x + m·h) - x
    sides = []
    with np.errstate(all="ignore"):
        for a, b in ((0, 2), (1, 3)):
            ha, hb = steps[a], steps[b]
            sides.append((hb * hb * f[a] - ha * ha * f[b]) / (ha * hb * (hb - ha)))
    return np.abs(sides[0] - sides[1]), 10 * EPS * (abs(loss) + 1e-300) / np.abs(steps[0])


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


def _gaps(prober: Prober, m: Method, index: np.ndarray, loss: float, numeric: np.ndarray, max_memory: int):
    """Every element's kink gap (complex_gap or kink_gap), in chunks, in this process."""
    gap, bound = np.zeros(len(index)), np.zeros(len(index))
    k = max(1, first_chunk(prober.graph, prober.values, prober.name, 4, max_memory))
    for start in range(0, len(index), k):
        sl = slice(start, start + k)
        idx = index[sl]
        x = prober.base[idx].real.astype(np.float64)
        scale = np.maximum(np.abs(x), 1.0)
        gap[sl], bound[sl] = (complex_gap(prober, idx, x, scale, loss, numeric[sl]) if m.name == "complex"
                              else kink_gap(prober, idx, x, scale, loss))
    return gap, bound


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


def _shrink_at_kinks(prober, method: Method, idx, x, scale, rel_step, loss, result) -> None:
    """A real stencil across a kink: shrink the step, in place; a kink near x stops being
    crossed, and those elements take the estimate at the smaller step."""
    d, err, crossed = result
    shrink = rel_step
    for _ in range(KINK_SHRINKS):
        if not crossed.any() or shrink / 10 < MIN_SHRUNK_STEP:
            break
        shrink /= 10
        sub = np.flatnonzero(crossed)
        d2, e2, c2 = method.estimate(prober, idx[sub], x[sub], scale[sub], shrink, loss)
        clear = c2 == 0
        fixed = sub[clear]
        d[fixed], err[fixed] = d2[clear], e2[clear]
        crossed[fixed] = 0
        crossed[sub[~clear]] = c2[~clear]  # the kinks the smallest stencil still crosses


def first_chunk(graph: Graph, values: dict, name: str, evals: int, max_memory: int) -> int:
    """A first, safe chunk size: as if every copy were dense complex128 (a value is dropped once
    its last consumer has run, so about three nodes' copies are alive at once), at most 32.
    `next_chunk` then sizes the rest from what a copy really cost."""
    largest = max([values[name][0].size] + [values[n][0].size for n in graph.downstream(name)])
    per_element = max(largest, 1) * 16 * evals * 3
    return int(max(1, min(4096, max_memory // per_element, 32)))


def next_chunk(prober: Prober, evals: int, first: int, budget: int) -> int:
    """Chunks after the first: as many copies as fit the cache and the memory budget, from the
    measured bytes per copy (sparse changes cost far less than dense copies), times the stencil's
    evaluations and 2 for the ops' temporaries."""
    per_copy = prober.stats.get("per_copy", 0.0) * evals * 2
    return int(max(first, min(MAX_CHUNK, min(budget, CACHE_BYTES) // max(per_copy, 1.0))))


def map_chunks(run: Callable[[int, int], int], starts: range, k: int, workers: int,
               n: int, progress=None) -> None:
    """run(start, k) for every start, on `workers` threads; progress(done, n) after each."""
    if workers == 1 or len(starts) <= 1:
        for start in starts:
            finished = run(start, k)
            if progress is not None:
                progress(finished, n)
        return
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        finished = starts.start
        for fut in as_completed([pool.submit(run, s, k) for s in starts]):
            fut.result()
            finished += k
            if progress is not None:
                progress(min(finished, n), n)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def estimate(graph: Graph, values: dict, name: str, method: str = "auto",
             step: float | None = None, indices: np.ndarray | None = None,
             max_memory: int = 256 * 2**20, via: str | None = None,
             trusted: frozenset = frozenset(), progress=None, cuts: Cuts | None = None) -> Estimate:
    """Numeric d loss / d `name` for the flat element indices `indices` (all by default).

    values: the plain forward pass, {node: (1, *shape)}. step: relative step overriding the
    method's. via: only this consumer of `name` sees the perturbation. trusted: custom op nodes
    whose complex probe passed. progress(done, total) hears after each chunk. Inside
    parallel.offloading(), a node whose perturbations pass through a user's op is estimated in
    pieces on the executor's workers. cuts: one check's numeric/cuts.py, where complex steps
    stop at the nodes beyond whose estimates are known (and this node's is kept for others)."""
    m = METHODS[node_method(graph, name, method, trusted)]
    rel_step = step if step is not None else m.step
    prober = Prober(graph, values, name, via)
    index = np.arange(values[name][0].size) if indices is None else np.asarray(indices, dtype=np.intp)
    # the complex step at its own h = 1e-20·max(|x|, 1) only: a step of the user's can be large
    # for |x| (truncation), and a cut would carry that error to every node above it
    linear = cuts is not None and cuts.serves(graph, values) and m.name == "complex" \
        and rel_step == m.step and via is None
    if linear:
        assert cuts is not None
        known = cuts.known(name, index)  # kept at the complex step's own h, as this one
        if known is not None:
            return known
        prober.cuts = _cuts_beyond(cuts, graph, values, name, len(index), max_memory)
    est = _estimate(prober, m, index, rel_step, max_memory, progress)
    if linear:
        assert cuts is not None
        cuts.keep(name, est, lambda: _mirror(cuts, prober, m, index, max_memory))
    return est


def _mirror(cuts: Cuts, prober: Prober, m: Method, index: np.ndarray, max_memory: int):
    """For a would-be cut with your code beyond it: the same estimate at -h, (derivative, error
    bar) per element. Code whose complex step is analytic gives the same numbers at -h (f(x - ih)
    is the conjugate of f(x + ih)); code that picks a branch by the sign of an imaginary part (a
    max of tied complex numbers, x·(x > 0) at 0) does not, at exactly the entries where it would
    read a copy's change wrong (Cuts.keep asks for it only where it decides)."""
    loss = float(np.real(prober.values[prober.graph.loss]).reshape(-1)[0])
    return estimate_all(prober, m, index, -m.step, loss, False, max_memory)[:2]


def _cuts_beyond(cuts: Cuts, graph: Graph, values: dict, name: str, n: int, max_memory: int) -> dict:
    """The cuts beyond `name`, estimating first those worth it for n elements (Cuts.wanted)."""
    for cut in cuts.wanted(name, n):
        estimate(graph, values, cut, "complex", None, None, max_memory, cuts=cuts)  # keeps it
    return cuts.beyond(name)


def _estimate(prober: Prober, m: Method, index: np.ndarray, rel_step: float, max_memory: int,
              progress) -> Estimate:
    """`_estimate_in_order` on the elements in the order whose copies take the fewest calls of
    the op reading the node (prober.copy_order), the result in the order asked for."""
    order = copy_order(prober, index)
    if order is None:
        return _estimate_in_order(prober, m, index, rel_step, max_memory, progress)
    est, back = _estimate_in_order(prober, m, index[order], rel_step, max_memory, progress), np.argsort(order)
    moved = {f: getattr(est, f) for f in ("numeric", "error", "kink", "left", "right", "crossings", "kink_gap",
                                          "kink_gap_error") if getattr(est, f) is not None}
    return replace(est, index=index, **{f: a[back] for f, a in moved.items()})


def _estimate_in_order(prober: Prober, m: Method, index: np.ndarray, rel_step: float, max_memory: int,
                       progress) -> Estimate:
    """`estimate` for a prober ready to run: in chunks here or on the offloading workers, then
    retried inside the domain and screened for kinks where its method and code call for it."""
    graph, values, name = prober.graph, prober.values, prober.name
    loss = float(np.real(values[graph.loss]).reshape(-1)[0])
    gaps = prober.opaque and len(index) <= OPAQUE_KINK_SCAN
    screen = gaps and len(index) > SCREEN_FROM  # the gaps only if the directions call for them
    offload = prober.offload(len(index))
    parts = None
    how = (m.name, rel_step, loss, gaps and not screen, max_memory, prober.cuts)
    if offload is not None:
        parts = offload.map(graph, values, name, how, index, progress)
    if parts is None:
        parts = estimate_all(prober, m, index, rel_step, loss, how[3], max_memory, progress)
    numeric, error, crossings, left, right, gap, gap_error = parts
    if m.name != "complex" and np.isfinite(loss):
        inside_domain(prober, m, index, rel_step, loss, max_memory, (numeric, error, crossings, left, right))
    if screen:
        gap, gap_error = np.zeros(len(index)), np.zeros(len(index))
        if kinks_along_directions(prober, loss, max_finite(np.abs(numeric))):
            gap, gap_error = _gaps(prober, m, index, loss, numeric, max_memory)
    return Estimate(index, numeric, error, crossings > 0, left, right, m.name, rel_step, crossings,
                    gap if gaps else None, gap_error if gaps else None)


#: a difference stencil that leaves the function's domain (a probability stepped below 0, then
#: its log: NaN where the loss itself is finite; its error bar's wider stencil too) is tried
#: again at smaller steps, each DOMAIN_SHRINK times the last, at most DOMAIN_RETRIES times
DOMAIN_RETRIES, DOMAIN_SHRINK = 6, 1 / 16


def inside_domain(prober: Prober, m: Method, index: np.ndarray, rel_step: float, loss: float,
                  max_memory: int, parts: tuple[np.ndarray, ...]) -> None:
    """Elements whose difference estimate or its error bar is NaN or Inf while the loss is
    finite, estimated again at smaller steps until both are finite (each with its own, larger,
    error bar); the ones that stay non-finite stay so. `parts`: (derivative, error bar,
    crossings, left, right), updated in place."""
    for k in range(1, DOMAIN_RETRIES + 1):
        bad = np.flatnonzero(~(np.isfinite(parts[0]) & np.isfinite(parts[1])))
        if not bad.size:
            return
        again = estimate_all(prober, m, index[bad], rel_step * DOMAIN_SHRINK ** k, loss, False, max_memory)
        ok = np.isfinite(again[0]) & np.isfinite(again[1])
        for arr, new in zip(parts, again[:5]):
            arr[bad[ok]] = new[ok]


def estimate_all(prober: Prober, m: Method, index: np.ndarray, rel_step: float, loss: float,
                 gaps: bool, max_memory: int, progress=None) -> tuple[np.ndarray, ...]:
    """Every element of `index` in chunks, on the usable cores: (derivative, error bar, kinks
    crossed, left, right, kink gap, its rounding bound), one entry per element."""
    n = len(index)
    numeric, error, crossings = np.zeros(n), np.zeros(n), np.zeros(n, int)
    left, right = np.full(n, np.nan), np.full(n, np.nan)
    gap, gap_error = np.full(n, np.inf), np.full(n, np.inf)
    # a user's Python code holds the GIL: its chunks on threads only contend for it (measured:
    # 2 threads took 20× as long as 1 on a custom affine); processes run them in parallel
    workers = WORKERS if n > THREADED_FROM and not prober.opaque else 1
    budget = max_memory // workers
    prober.graph.downstream(prober.via or prober.name)  # fill the graph's cache before threads share it

    def run(start: int, k: int) -> int:
        sl = slice(start, start + k)
        numeric[sl], error[sl], crossings[sl], left[sl], right[sl], g = estimate_chunk(
            prober, m, index[sl], rel_step, loss, gaps)
        if g is not None:
            gap[sl], gap_error[sl] = g
        return min(start + k, n)

    first = min(n, first_chunk(prober.graph, prober.values, prober.name, m.evals, budget))
    done = run(0, first) if n else 0
    if progress is not None and n:
        progress(done, n)
    k = next_chunk(prober, m.evals, first, budget)
    if workers > 1 and n - done > k:  # one full chunk here, timed: is the rest worth threads?
        start = time.perf_counter()
        done = run(done, k)
        if progress is not None:
            progress(done, n)
        if (time.perf_counter() - start) / k * (n - done) < SERIAL_BELOW:
            workers = 1  # quicker than starting threads and handing the GIL between them
    map_chunks(run, range(done, n, k), k, workers, n, progress)
    return numeric, error, crossings, left, right, gap, gap_error


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


__all__ = ["Estimate", "estimate", "detect_kinks", "kink_candidates", "usable_cores", "WORKERS",
           "OPAQUE_KINK_SCAN"]
