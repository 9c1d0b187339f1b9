"""Finite-difference estimates of d loss / d node, element by element, with error bars and kinks.

For one node, a chunk of its elements is perturbed at once: k copies of the node, each with one
element moved, travel as a sparse change (delta.py) through the ops downstream of the node only
(`Graph.propagate`), which returns how much the loss changed in each copy. Methods, for an element
x with scale s = max(|x|, 1):

* complex:    Im f(x + ih) / h, h = 1e-20·s (at most 1e-8·|x| for a tiny non-zero x). No
              subtraction, so no cancellation: exact to rounding. Needs every op downstream to be
              complex-analytic (all built-ins are).
* central:    (f(x+h) - f(x-h)) / 2h, h = ε^(1/3)·s; error bar from the same at 2h.
* richardson: central differences at h, h/2, h/4 extrapolated twice (error O(h⁶)), h = 1e-3·s.
* forward:    (f(x+h) - f(x)) / h, h = √ε·s (the notebook's method, for comparison).

Kinks: an op with kinks reports `kink_distance` (0 exactly at its kink) as the copies pass.
With real steps an element is at a kink when a point of the stencil lies on another side of one
than x itself does, and still does as the step shrinks a thousandfold (a kink merely near x stops
being crossed). With the complex step it is exact: a kink op's input sits exactly on the kink
(real part 0) and the element moves it (imaginary part non-zero). There the derivative is two one-sided derivatives,
taken from real one-sided second-order differences.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np

from . import delta
from .graph import Graph

METHODS = ("auto", "complex", "central", "richardson", "forward")
EPS = float(np.finfo(np.float64).eps)

#: relative step of each real method (times max(|x|, 1)); the complex step is 1e-20
STEPS = {"complex": 1e-20, "central": EPS ** (1 / 3), "richardson": 1e-3, "forward": EPS ** 0.5,
         "one_sided": EPS ** (1 / 3)}
#: how many copies of the node each element costs (for sizing chunks)
EVALS = {"complex": 1, "central": 4, "richardson": 6, "forward": 2, "one_sided": 6}
#: shrinking the step this many times by 10 must stop a real stencil crossing a kink that is near
#: x but not at it; one that is still crossed lies at x
KINK_SHRINKS = 3
#: chunks of perturbed copies evaluated at once, each in its own thread
WORKERS = max(1, min(2, os.cpu_count() or 1))
#: the most copies in one chunk (beyond this, numpy's per-call overhead is already negligible)
MAX_CHUNK = 8192
#: but keep a chunk's copies near cache-sized: beyond this, bigger chunks only get slower
CACHE_BYTES = 16 * 2**20


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


def node_method(graph: Graph, name: str, method: str, trusted: frozenset = frozenset()) -> str:
    """The method actually used for `name`: `auto` means complex step where every op downstream
    is complex-safe (built-ins are; a custom op is once `complex_probe` agrees), central
    differences otherwise."""
    if method != "auto":
        return method
    safe = all(graph.nodes[n].op.complex_safe or n in trusted for n in graph.downstream(name))
    return "complex" if safe else "central"


def complex_probe(graph: Graph, values: dict, name: str, elements: int = 3) -> bool:
    """Does op node `name` (a custom op) carry a complex step correctly? Its VJP against a random
    cotangent is estimated both ways on the `elements` most sensitive entries of each input; code
    that drops the imaginary part (float(), .astype(float), np.real) makes them disagree."""
    node = graph.nodes[name]
    xs = [values[i] for i in node.inputs]
    rng = np.random.default_rng(0)
    out = values[name]
    cot = rng.normal(size=out.shape)
    try:
        with np.errstate(all="ignore"):
            for slot, x in enumerate(xs):
                flat = x.reshape(-1)
                picks = np.argsort(-np.abs(flat))[:elements] if flat.size > elements else np.arange(flat.size)
                for e in picks:
                    def f(delta, complex_=False):
                        z = flat.astype(np.complex128 if complex_ else np.float64).copy()
                        z[e] += delta
                        args = list(xs)
                        args[slot] = z.reshape(x.shape)
                        return np.sum(node.op.forward(*args) * cot)
                    scale = max(abs(float(flat[e].real)), 1.0)
                    h = STEPS["central"] * scale
                    central = (f(h) - f(-h)) / (2 * h)
                    res = f(1e-20j * scale, complex_=True)
                    cstep = np.imag(res) / (1e-20 * scale)
                    if not np.isfinite(cstep) or abs(cstep - central) > 1e-5 * max(abs(central), 1e-3):
                        return False
    except Exception:  # the user's code cannot take complex input at all
        return False
    return True


def chunk_size(graph: Graph, values: dict, name: str, evals: int, max_memory: int) -> int:
    """A first, safe chunk size: as if every copy were dense complex128 (a value is dropped once
    its last consumer has run, so about three nodes' copies are alive at once). `estimate` then
    measures what a copy really costs and sizes the rest of the chunks from that."""
    largest = max([values[name][0].size] + [values[n][0].size for n in graph.downstream(name)])
    per_element = max(largest, 1) * 16 * evals * 3
    return int(max(1, min(4096, max_memory // per_element)))


class _Prober:
    """Runs batches of perturbed copies of one node and records kink crossings per copy."""

    def __init__(self, graph: Graph, values: dict, name: str, via: str | None = None):
        self.graph, self.values, self.name, self.via = graph, values, name, via
        self.stats: dict = {}  # the copies' peak bytes, for sizing chunks
        self.base = values[name].reshape(-1)
        self.shape = values[name].shape[1:]
        self.reaches = graph.reaches_loss(via or name)

    def run(self, idx: np.ndarray, points: list[np.ndarray], mode: str = "real"):
        """How the loss changes at each point: points[j][r] replaces element idx[r]. Returns
        (J, k) loss changes and a (k,) bool array: the copies of row r straddle a kink ("real":
        a point on another side than x itself; "complex": a kink input exactly on its kink moved
        by the imaginary step)."""
        k, J = len(idx), len(points)
        if not self.reaches:
            return np.zeros((J, k)), np.zeros(k, bool)
        x = np.tile(self.base[idx], J)
        change = np.concatenate(points) - x  # exact: fl(x + m·h) - x
        d = delta.elements(np.tile(idx, J), change, self.shape)
        crossed = np.zeros(k, bool)

        def on_kink(node, dist, plain):
            dist = np.asarray(dist)
            if dist.shape[0] != J * k:  # an op none of these copies reached
                return
            d_ = dist.reshape(J, k, -1)
            if mode == "complex":
                hit = (d_.real == 0) & (d_.imag != 0)
            else:
                side = np.sign(d_.real)
                hit = side != np.sign(np.broadcast_to(np.real(plain), dist.shape)).reshape(J, k, -1)
            crossed[:] |= hit.any(axis=(0, 2))

        with np.errstate(all="ignore"):
            if self.via is None:
                changed = {self.name: d}
            else:  # only the consumer `via` sees the perturbed value: one edge's share
                changed = {self.via: self.graph.apply(self.via, {self.name: d}, self.values, on_kink)}
            stats: dict = {}
            change = self.graph.propagate(self.values, changed, on_kink, stats)
        per_copy = stats.get("peak_bytes", 0) / (J * k)
        self.stats["per_copy"] = max(self.stats.get("per_copy", 0.0), per_copy)
        return np.asarray(change).reshape(J, k), crossed


def _real_points(x: np.ndarray, h: np.ndarray, multiples) -> list[np.ndarray]:
    return [x + m * h for m in multiples]


def _central(prober, idx, x, scale, rel_step, loss):
    """Central difference at h and 2h: estimate D(h), error bar |D(2h) - D(h)|/3 + rounding."""
    h = rel_step * scale
    pts = _real_points(x, h, (1, -1, 2, -2))
    f, crossed = prober.run(idx, pts)
    d1 = (f[0] - f[1]) / (pts[0] - pts[1])
    d2 = (f[2] - f[3]) / (pts[2] - pts[3])
    err = np.abs(d2 - d1) / 3 + 4 * EPS * (np.abs(loss) + 1e-300) / h
    return d1, err, crossed


def _richardson(prober, idx, x, scale, rel_step, loss):
    """Central differences at h, h/2, h/4, extrapolated: O(h²) -> O(h⁴) -> O(h⁶)."""
    h = rel_step * scale
    pts = _real_points(x, h, (1, -1, 0.5, -0.5, 0.25, -0.25))
    f, crossed = prober.run(idx, pts)
    d = [(f[2 * i] - f[2 * i + 1]) / (pts[2 * i] - pts[2 * i + 1]) for i in range(3)]
    r1 = (4 * d[1] - d[0]) / 3
    r2 = (4 * d[2] - d[1]) / 3
    r = (16 * r2 - r1) / 15
    err = np.abs(r2 - r1) / 15 + 16 * EPS * (np.abs(loss) + 1e-300) / h
    return r, err, crossed


def _forward(prober, idx, x, scale, rel_step, loss):
    """(f(x+h) - f(x)) / h, error bar from the same at h/2 (first order: twice the change)."""
    h = rel_step * scale
    pts = _real_points(x, h, (1, 0.5))
    f, crossed = prober.run(idx, pts)
    d1 = f[0] / (pts[0] - x)  # f holds changes of the loss: f(x + h) - f(x)
    d2 = f[1] / (pts[1] - x)
    err = 2 * np.abs(d1 - d2) + 4 * EPS * (np.abs(loss) + 1e-300) / h
    return d1, err, crossed


def _complex(prober, idx, x, scale, rel_step, loss):
    """Im f(x + ih) / h: one evaluation, no cancellation; rounding is the only error.
    h stays below 1e-8·|x| so that even a tiny x (1e-300, inside a log) is linearized."""
    h = rel_step * scale
    tiny = (x != 0) & (np.abs(x) < 1e-12)
    h = np.where(tiny, np.maximum(1e-8 * np.abs(x), 1e-307), h)
    f, crossed = prober.run(idx, [x + 1j * h], mode="complex")
    d = f[0].imag / h
    err = 4 * EPS * np.abs(d)
    return d, err, crossed


_ESTIMATORS = {"central": _central, "richardson": _richardson, "forward": _forward,
               "complex": _complex}


def one_sided(prober, idx, x, scale, loss, rel_step=STEPS["one_sided"]):
    """Left and right derivatives by second-order one-sided differences at h and h/2:
    D₊(h) = (-3f(x) + 4f(x+h) - f(x+2h)) / 2h, and the mirror image for the left.
    Returns left, right and an error bar for each."""
    h = rel_step * scale
    pts = _real_points(x, h, (0.5, 1, 2, -0.5, -1, -2))
    f, _ = prober.run(idx, pts)
    out = []
    for s, (a, b, c) in ((1, (0, 1, 2)), (-1, (3, 4, 5))):
        coarse = (4 * f[b] - f[c]) / (2 * s * h)  # f holds changes: f(x) itself is 0
        fine = (4 * f[a] - f[b]) / (s * h)
        out.append((fine, np.abs(fine - coarse) / 3 + 8 * EPS * (np.abs(loss) + 1e-300) / h))
    (right, rerr), (left, lerr) = out
    return left, right, np.maximum(lerr, rerr)


def estimate(graph: Graph, values: dict, name: str, method: str = "auto",
             step: float | None = None, indices: np.ndarray | None = None,
             max_memory: int = 256 * 2**20, via: str | None = None,
             trusted: frozenset = frozenset(), progress=None) -> Estimate:
    """Numeric d loss / d `name` for the flat element indices `indices` (all by default).

    values: the plain forward pass, {node: (1, *shape)}. step: relative step overriding the
    method's. via: only this consumer of `name` sees the perturbation (the share of the gradient
    that flows through that one edge). trusted: custom op nodes whose complex probe passed.
    progress(done, total) hears after each chunk. Returns an Estimate whose arrays have one
    entry per index."""
    method = node_method(graph, name, method, trusted)
    rel_step = step if step is not None else STEPS[method]
    prober = _Prober(graph, values, name, via)
    loss = float(np.real(values[graph.loss]).reshape(-1)[0])
    size = values[name][0].size
    index = np.arange(size) if indices is None else np.asarray(indices, dtype=np.intp)
    n = len(index)
    numeric, error = np.zeros(n), np.zeros(n)
    kink = np.zeros(n, bool)
    left, right = np.full(n, np.nan), np.full(n, np.nan)
    estimator = _ESTIMATORS[method]
    workers = WORKERS if n > 256 else 1
    budget = max_memory // workers
    graph.downstream(via or name)  # fill the graph's cache before threads share it

    def chunk(start: int, k: int) -> int:
        sl = slice(start, start + k)
        idx = index[sl]
        x = prober.base[idx].real.astype(np.float64)
        scale = np.maximum(np.abs(x), 1.0)
        d, err, crossed = estimator(prober, idx, x, scale, rel_step, loss)
        if method != "complex":
            # a real stencil across a kink: shrink the step; a kink near x stops being crossed
            shrink = rel_step
            for _ in range(KINK_SHRINKS):
                if not crossed.any():
                    break
                shrink /= 10
                sub = np.flatnonzero(crossed)
                d2, e2, c2 = estimator(prober, idx[sub], x[sub], scale[sub], shrink, loss)
                fixed = sub[~c2]
                d[fixed], err[fixed] = d2[~c2], e2[~c2]
                crossed[fixed] = False
        numeric[sl], error[sl], kink[sl] = d, err, crossed
        if crossed.any():
            sub = np.flatnonzero(crossed)
            lo, hi, e = one_sided(prober, idx[sub], x[sub], scale[sub], loss)
            pos = start + sub
            left[pos], right[pos] = lo, hi
            error[pos] = e
        return min(start + k, n)

    # a first small chunk measures what a copy really costs (sparse changes cost far less than
    # dense copies), then the rest goes in chunks sized to the memory budget
    first = min(n, chunk_size(graph, values, name, EVALS[method], budget), 32)
    done = chunk(0, first) if n else 0
    if progress is not None and n:
        progress(done, n)
    per_copy = prober.stats.get("per_copy", 0.0) * EVALS[method] * 2  # and the ops' temporaries
    k = int(max(first, min(MAX_CHUNK, min(budget, CACHE_BYTES) // max(per_copy, 1.0))))
    starts = range(done, n, k)
    if workers == 1 or len(starts) <= 1:
        for start in starts:
            finished = chunk(start, k)
            if progress is not None:
                progress(finished, n)
    else:  # numpy releases the GIL in its loops: two chunks at once use both cores
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            finished = done
            for fut in as_completed([pool.submit(chunk, s, k) for s in starts]):
                fut.result()
                finished += k
                if progress is not None:
                    progress(min(finished, n), n)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return Estimate(index, numeric, error, kink, left, right, method, rel_step)


def directional(graph: Graph, values: dict, name: str, directions: np.ndarray,
                method: str = "auto", trusted: frozenset = frozenset()):
    """Numeric derivatives of the loss along each direction: directions (m, size) over the
    node's flat elements. One evaluation per direction with the complex step, two with central
    differences (other methods fall back to central). Returns (derivatives (m,), error bars (m,),
    kink (m,): the direction moves some op input that sits exactly on a kink), and the method."""
    method = node_method(graph, name, method, trusted)
    if method != "complex":
        method = "central"
    shape = values[name].shape[1:]
    m = len(directions)
    if not graph.reaches_loss(name):
        return np.zeros(m), np.zeros(m), np.zeros(m, bool), method
    base = values[name].reshape(-1).real.astype(np.float64)
    vmax = np.maximum(np.abs(directions).max(axis=1), 1e-300)
    scale = max(float(np.abs(base).max(initial=0.0)), 1.0)
    crossed = np.zeros(m, bool)
    if method == "complex":
        h = 1e-20 * scale / vmax
        vals = (1j * h[:, None] * directions).reshape((m,) + shape)
        J = 1
    else:
        h = STEPS["central"] * scale / vmax
        steps = np.concatenate([h, -h])
        vals = (steps[:, None] * np.concatenate([directions, directions])).reshape((2 * m,) + shape)
        J = 2

    def on_kink(node, dist, plain):
        dist = np.asarray(dist)
        if dist.shape[0] != J * m:
            return
        d_ = dist.reshape(J, m, -1)
        if method == "complex":
            hit = (d_.real == 0) & (d_.imag != 0)
        else:
            hit = np.sign(d_.real) != np.sign(np.broadcast_to(np.real(plain), dist.shape)).reshape(J, m, -1)
        crossed[:] |= hit.any(axis=(0, 2))

    with np.errstate(all="ignore"):
        change = graph.propagate(values, {name: delta.Delta("full", None, vals, shape)}, on_kink)
    change = np.asarray(change).reshape(J, m)
    loss = abs(float(np.real(values[graph.loss]).reshape(-1)[0]))
    if method == "complex":
        d = change[0].imag / h
        err = 8 * EPS * np.abs(d)
    else:
        d = (change[0] - change[1]).real / (2 * h)
        err = 8 * EPS * (loss + 1e-300) / h + 1e-6 * np.abs(d)
    return d, err, crossed, method


def detect_kinks(graph: Graph, values: dict, name: str, indices: np.ndarray):
    """Kinks seen from the numbers alone, for code that declares none: one-sided derivatives at
    two steps 100× apart. A smooth function's left and right derivatives differ by O(h) and close
    up as h shrinks (a steep one too, only from further apart); at a kink they stay apart.
    Returns (kink, left, right, error bar), one entry per index."""
    prober = _Prober(graph, values, name)
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


#: the steps `gradverify sweep` tries, relative to max(|x|, 1)
SWEEP_STEPS = 10.0 ** -np.arange(1, 15)


def sweep(graph: Graph, values: dict, name: str, index: int) -> dict:
    """Every method's estimate of d loss / d name[index] at every step in SWEEP_STEPS:
    {"steps": (S,), method: (S,), …}; at a kink also "left" and "right" (one-sided), and
    "kink": True."""
    prober = _Prober(graph, values, name)
    idx = np.array([index], dtype=np.intp)
    x = prober.base[idx].real.astype(np.float64)
    scale = np.maximum(np.abs(x), 1.0)
    loss = float(np.real(values[graph.loss]).reshape(-1)[0])
    out: dict = {"steps": SWEEP_STEPS * scale[0]}
    with np.errstate(all="ignore"):
        for method in ("forward", "central", "richardson", "complex"):
            out[method] = np.array([_ESTIMATORS[method](prober, idx, x, scale, h, loss)[0][0]
                                    for h in SWEEP_STEPS])
        _, _, crossed = _complex(prober, idx, x, scale, STEPS["complex"], loss)
        out["kink"] = bool(crossed[0])
        if out["kink"]:
            sides = [one_sided(prober, idx, x, scale, loss, rel_step=h) for h in SWEEP_STEPS]
            out["left"] = np.array([s[0][0] for s in sides])
            out["right"] = np.array([s[1][0] for s in sides])
    return out
