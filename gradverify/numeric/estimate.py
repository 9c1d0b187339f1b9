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

from ..graph import Graph
from ..parallel import usable_cores
from ..results import max_finite
from .cuts import Cuts
from .kinks import (
    KINK_SHRINKS,
    MIN_SHRUNK_STEP,
    SCREEN_FROM,
    complex_gap,
    kink_gap,
    kinks_along_directions,
)
from .methods import METHODS, Method, one_sided
from .prober import Prober, copy_order, node_method

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


__all__ = ["Estimate", "estimate", "usable_cores", "WORKERS", "OPAQUE_KINK_SCAN"]
