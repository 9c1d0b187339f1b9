"""Numeric d loss / d node, element by element, with error bars and kinks.

`estimate` plans (which method, which step), sizes chunks of perturbed copies (`next_chunk`),
maps a pure per-chunk estimator (`estimate_chunk`) over them on the usable cores (`map_chunks`),
and gathers the results into one `Estimate`.

At a kink a real stencil is shrunk (a kink merely near x stops being crossed; one still crossed
after a thousandfold shrink lies at x), and an element at a kink gets its two one-sided
derivatives instead of one derivative.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np

from ..graph import Graph
from .methods import METHODS, Method, one_sided
from .prober import Prober, node_method

#: shrinking the step this many times by 10 must stop a real stencil crossing a kink that is near
#: x but not at it; one that is still crossed lies at x
KINK_SHRINKS = 3
#: the most copies in one chunk (beyond this, numpy's per-call overhead is already negligible)
MAX_CHUNK = 8192
#: but keep a chunk's copies near cache-sized: beyond this, bigger chunks only get slower
CACHE_BYTES = 16 * 2**20
#: chunks smaller than this many elements in all are not worth a second thread
THREADED_FROM = 256


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. under taskset or a container
    quota), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


#: numpy releases the GIL inside its loops, so chunks on threads run in parallel, one per core;
#: more threads than cores would only contend for them
WORKERS = usable_cores()


@dataclass(frozen=True)
class Estimate:
    """Numeric derivatives of the loss for some elements of one node (flat indices `index`).

    `error` is the estimate's own error bar; `left`/`right` the one-sided derivatives where
    `kink` (NaN elsewhere)."""

    index: np.ndarray
    numeric: np.ndarray
    error: np.ndarray
    kink: np.ndarray
    left: np.ndarray
    right: np.ndarray
    method: str
    step: float


def estimate_chunk(prober: Prober, method: Method, idx: np.ndarray, rel_step: float, loss: float):
    """The estimate for the elements `idx`: (derivative, error bar, kink, left, right)."""
    x = prober.base[idx].real.astype(np.float64)
    scale = np.maximum(np.abs(x), 1.0)
    d, err, crossed = method.estimate(prober, idx, x, scale, rel_step, loss)
    if method.name != "complex":
        _shrink_at_kinks(prober, method, idx, x, scale, rel_step, loss, (d, err, crossed))
    left, right = np.full(len(idx), np.nan), np.full(len(idx), np.nan)
    if crossed.any():
        sub = np.flatnonzero(crossed)
        left[sub], right[sub], err[sub] = one_sided(prober, idx[sub], x[sub], scale[sub], loss)
    return d, err, crossed, left, right


def _shrink_at_kinks(prober, method: Method, idx, x, scale, rel_step, loss, result) -> None:
    """A real stencil across a kink: shrink the step, in place; a kink near x stops being
    crossed, and those elements take the estimate at the smaller step."""
    d, err, crossed = result
    shrink = rel_step
    for _ in range(KINK_SHRINKS):
        if not crossed.any():
            break
        shrink /= 10
        sub = np.flatnonzero(crossed)
        d2, e2, c2 = method.estimate(prober, idx[sub], x[sub], scale[sub], shrink, loss)
        fixed = sub[~c2]
        d[fixed], err[fixed] = d2[~c2], e2[~c2]
        crossed[fixed] = False


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
             trusted: frozenset = frozenset(), progress=None) -> Estimate:
    """Numeric d loss / d `name` for the flat element indices `indices` (all by default).

    values: the plain forward pass, {node: (1, *shape)}. step: relative step overriding the
    method's. via: only this consumer of `name` sees the perturbation. trusted: custom op nodes
    whose complex probe passed. progress(done, total) hears after each chunk."""
    m = METHODS[node_method(graph, name, method, trusted)]
    rel_step = step if step is not None else m.step
    prober = Prober(graph, values, name, via)
    loss = float(np.real(values[graph.loss]).reshape(-1)[0])
    index = np.arange(values[name][0].size) if indices is None else np.asarray(indices, dtype=np.intp)
    n = len(index)
    numeric, error, kink = np.zeros(n), np.zeros(n), np.zeros(n, bool)
    left, right = np.full(n, np.nan), np.full(n, np.nan)
    workers = WORKERS if n > THREADED_FROM else 1
    budget = max_memory // workers
    graph.downstream(via or name)  # fill the graph's cache before threads share it

    def run(start: int, k: int) -> int:
        sl = slice(start, start + k)
        numeric[sl], error[sl], kink[sl], left[sl], right[sl] = estimate_chunk(
            prober, m, index[sl], rel_step, loss)
        return min(start + k, n)

    first = min(n, first_chunk(graph, values, name, m.evals, budget))
    done = run(0, first) if n else 0
    if progress is not None and n:
        progress(done, n)
    k = next_chunk(prober, m.evals, first, budget)
    map_chunks(run, range(done, n, k), k, workers, n, progress)
    return Estimate(index, numeric, error, kink, left, right, m.name, rel_step)


def detect_kinks(graph: Graph, values: dict, name: str, indices: np.ndarray):
    """Kinks seen from the numbers alone, for code that declares none: one-sided derivatives at
    two steps 100× apart. A smooth function's left and right derivatives differ by O(h) and close
    up as h shrinks (a steep one too, only from further apart); at a kink they stay apart.
    Returns (kink, left, right, error bar), one entry per index."""
    prober = Prober(graph, values, name)
    idx = np.asarray(indices, dtype=np.intp)
    x = prober.base[idx].real.astype(np.float64)
    scale = np.maximum(np.abs(x), 1.0)
    loss = float(np.real(values[graph.loss]).reshape(-1)[0])
    l1, r1, _ = one_sided(prober, idx, x, scale, loss, rel_step=1e-3)
    l2, r2, e2 = one_sided(prober, idx, x, scale, loss, rel_step=1e-5)
    gap1, gap2 = np.abs(r1 - l1), np.abs(r2 - l2)
    size = np.maximum(np.maximum(np.abs(l2), np.abs(r2)), 1e-300)
    kink = (gap2 > 0.5 * gap1) & (gap2 > 1e-6 * size) & np.isfinite(gap2)
    return kink, l2, r2, e2


__all__ = ["Estimate", "estimate", "detect_kinks", "usable_cores", "WORKERS"]
