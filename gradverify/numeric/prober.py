"""Perturbed copies of one node pushed to the loss, with the kinks they cross.

A chunk of a node's elements is perturbed at once: k copies of the node, each with one element
moved, travel as a sparse change (delta.py) through the ops downstream of the node only
(`Graph.propagate`), which returns how much the loss changed in each copy.

Kinks: an op with kinks reports `kink_distance` (0 exactly at its kink) as the copies pass. With
real steps a copy crosses a kink when a point of its stencil lies on another side of one than x
itself does. With the complex step it is exact: a kink op's input sits exactly on the kink (real
part 0) and the element moves it (imaginary part non-zero).
"""
from __future__ import annotations

import threading
import weakref
from functools import partial

import numpy as np

from .. import delta, parallel
from ..graph import Graph
from .methods import AUTO, EPS, METHODS

#: nodes upstream of a user's op with fewer elements than this stay in this process under --jobs
#: (starting the workers and pickling the graph cost more than they save: measured 0.3-0.7 s
#: on a 20-element zoo check)
OFFLOAD_FROM = 256


def crossings(dist, plain, points: int, copies: int, mode: str) -> np.ndarray | None:
    """How many kinks each of `copies` perturbed copies (each evaluated at `points` stencil
    points) crosses, from an op's kink distances `dist` (points·copies, …) and the plain pass's
    `plain`: (copies,) counts; None when the op was reached by none of these copies."""
    dist = np.asarray(dist)
    if dist.shape[0] != points * copies:
        return None
    d = dist.reshape(points, copies, -1)
    if mode == "complex":  # on the kink, and moved by the imaginary step. On it: the copy's
        # distance or the plain pass's is exactly 0. A complex evaluation may leave a rounding-
        # or h²-sized real part where the plain pass sits exactly on the kink (a batchnorm's exact
        # zeros, a tie after gelu's complex form): that copy is on the kink all the same
        plain_real = np.broadcast_to(np.real(plain), dist.shape).reshape(points, copies, -1)
        hit = ((d.real == 0) | (plain_real == 0)) & (d.imag != 0)
    else:  # a stencil point on another side of the kink than x itself
        side = np.sign(np.broadcast_to(np.real(plain), dist.shape)).reshape(points, copies, -1)
        hit = np.sign(d.real) != side
    return hit.any(axis=0).sum(axis=-1)


#: a value this small (and not 0) times the complex step's 1e-20 leaves float64's normal range
#: (2.2e-308): its imaginary part underflows or loses digits
UNDERFLOW_BELOW = 1e-280


def underflow_risk(values: dict, names: list[str], below: float = UNDERFLOW_BELOW) -> bool:
    """Does the plain pass hold a value tiny enough (0 < |v| < below), at one of these nodes, for
    a complex step's imaginary part through it to underflow?"""
    return any(_tiniest(values[n]) < below for n in names)


#: each plain value's smallest nonzero magnitude, found once: every node's probe asks about all
#: the nodes downstream of it (the plain pass is never written to). Keyed by the array's id,
#: with a weak reference that tells a live array from a new one at a reused id
_TINIEST: dict[int, tuple[weakref.ref, float]] = {}


def _tiniest(value: np.ndarray) -> float:
    kept = _TINIEST.get(id(value))
    if kept is not None and kept[0]() is value:
        return kept[1]
    a = np.abs(np.asarray(value, dtype=np.complex128 if np.iscomplexobj(value) else np.float64))
    tiniest = float(a[a > 0].min(initial=np.inf)) if a.size else np.inf  # an integer output too
    try:
        _TINIEST[id(value)] = (weakref.ref(value, partial(_forget, id(value))), tiniest)
    except TypeError:  # not an array (a scalar): nothing to keep
        pass
    return tiniest


def _forget(key: int, _: weakref.ref) -> None:
    _TINIEST.pop(key, None)


#: below float64's smallest normal number, values have lost digits: a derivative through them
#: is not computable in float64, by any method
SUBNORMAL = float(np.finfo(np.float64).tiny)


class Prober:
    """Runs batches of perturbed copies of one node and records kink crossings per copy.

    via: only this consumer of the node sees the perturbation (the share of the gradient that
    flows through that one edge)."""

    def __init__(self, graph: Graph, values: dict, name: str, via: str | None = None):
        self.graph, self.values, self.name, self.via = graph, values, name, via
        self.stats: dict = {}  # the copies' peak bytes, for sizing chunks
        self.base = values[name].reshape(-1)
        self.shape = values[name].shape[1:]
        self.reaches = graph.reaches_loss(via or name)
        path = [name] + graph.downstream(via or name)
        self.underflow_risk = underflow_risk(values, path)
        self.subnormal = underflow_risk(values, path, SUBNORMAL)
        #: code downstream that declares no kinks (a user's op): its kinks are looked for in the
        #: numbers (estimate.kink_gap), so the last run's loss changes are kept for reuse
        self.opaque = any(graph.nodes[n].fn.opaque for n in path[1:] if graph.nodes[n].op is not None)
        self._last = threading.local()  # per thread: chunks of one node run on several
        #: the cuts beyond this node (numeric/cuts.py), {node: CutGradient}, set by estimate
        #: where a complex step may stop at them; run_linear uses them
        self.cuts: dict | None = None

    def run_linear(self, idx: np.ndarray, point: np.ndarray):
        """`run` at one complex point x + ih, stopping at the cuts: returns (1, k) loss changes,
        (k,) kink counts, and (k,) the error the cuts' own error bars carry into Im f."""
        return self.run(idx, [point], mode="complex", cuts=self.cuts)

    def run(self, idx: np.ndarray, points: list[np.ndarray], mode: str = "real", cuts: dict | None = None):
        """How the loss changes at each point: points[j][r] replaces element idx[r]. Returns
        (J, k) loss changes and (k,) counts: how many kinks the copies of row r cross (an op's
        kinks at several positions count one each); with `cuts` (run_linear), also the cuts'
        error per copy."""
        k, J = len(idx), len(points)
        if not self.reaches:
            return (np.zeros((J, k)), np.zeros(k, int)) + ((np.zeros(k),) if cuts is not None else ())
        x = np.tile(self.base[idx], J)
        change = np.concatenate(points) - x  # exact: fl(x + m·h) - x
        d = delta.elements(np.tile(idx, J), change, self.shape)
        crossed = np.zeros(k, int)

        def on_kink(node, dist, plain):
            hit = crossings(dist, plain, J, k, mode)
            if hit is not None:
                crossed[:] += hit

        with np.errstate(all="ignore"):
            if self.via is None:
                changed = {self.name: d}
            else:
                changed = {self.via: self.graph.apply(self.via, {self.name: d}, self.values, on_kink)}
            stats: dict = {}
            loss_change = self.graph.propagate(self.values, changed, on_kink, stats, cuts or None)
        per_copy = stats.get("peak_bytes", 0) / (J * k)
        self.stats["per_copy"] = max(self.stats.get("per_copy", 0.0), per_copy)
        f = np.asarray(loss_change).reshape(J, k)
        self._last.run = (points, f)
        if cuts is not None:
            return f, crossed, np.broadcast_to(stats.get("cut_error", 0.0), (k,))
        return f, crossed

    def offload(self, n: int):
        """The workers n elements of this node go to (parallel.offloading), or None: here."""
        return parallel.current() if self.opaque and self.via is None and n >= OFFLOAD_FROM else None

    @property
    def last(self) -> tuple[list[np.ndarray], np.ndarray] | None:
        """This thread's last run: (points, loss changes)."""
        return getattr(self._last, "run", None)


def copy_order(prober: Prober, index: np.ndarray) -> np.ndarray | None:
    """An order of the node's elements `index` in which its copies take fewer calls of the one
    op that reads it (Op.copy_order: a user's conv, its filters in turn); None: as given."""
    graph, name = prober.graph, prober.name
    if not prober.reaches or prober.offload(len(index)):  # no copy runs here (none at all, or the
        return None  # workers take the node in flat pieces): no probe to pay for
    readers = [prober.via] if prober.via else graph.consumers(name)
    node = graph.nodes[readers[0]] if len(readers) == 1 else None
    if node is None or node.op is None or node.inputs.count(name) != 1:
        return None
    xs = [prober.values[i] for i in node.inputs]
    return node.op.copy_order(node.inputs.index(name), index, xs, prober.values[readers[0]])


def node_method(graph: Graph, name: str, method: str, trusted: frozenset = frozenset()) -> str:
    """The method actually used for `name`: `auto` means complex step where every op downstream
    is complex-safe (built-ins are; a custom op is once `complex_probe` agrees), central
    differences otherwise."""
    if method != AUTO:
        return method
    safe = all(graph.nodes[n].fn.complex_safe or n in trusted for n in graph.downstream(name))
    return "complex" if safe else "central"


#: the relative step of the differences along a probe's direction: small, for its one-sided
#: differences to tell a kink (they differ by its jump, at any step) from curvature (by the step
#: times the second derivative)
PROBE_STEP = 1e-7


def complex_probe(graph: Graph, values: dict, name: str, elements: int = 3) -> bool:
    """Does op node `name` (a custom op) carry a complex step correctly? Its VJP against a random
    cotangent is estimated both ways on the `elements` most sensitive entries of each input, and
    along a random direction through all the others (code whose branch for small entries drops
    the imaginary part: x·|x| by np.abs); code that drops it (float(), .astype(float), np.real)
    makes them disagree. A direction along which the forward is not smooth (a kink one-sided
    differences see) decides nothing."""
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
                    v = np.zeros(flat.size)
                    v[e] = 1.0
                    if _agrees(node.op, xs, slot, v, cot, out) is False:
                        return False
                rest = rng.normal(size=flat.size)
                rest[picks] = 0.0
                if rest.any() and _agrees(node.op, xs, slot, rest, cot, out) is False:
                    return False
                if _second_order(node.op, xs, slot, rng.normal(size=flat.size), cot, out) is False:
                    return False
    except Exception:  # the user's code cannot take complex input at all
        return False
    return True


def _along(op, xs: list, slot: int, v: np.ndarray, cot: np.ndarray, out: np.ndarray):
    """φ(t) = Σ (op(xs with input `slot` moved by t·v) − op(xs))·cot, for real or complex t: the
    output's change, entry by entry, before the sum (an entry v does not move adds exactly 0)."""
    flat = xs[slot].reshape(-1)

    def phi(step):
        z = flat.astype(np.complex128 if isinstance(step, complex) else np.float64) + step * v
        args = list(xs)
        args[slot] = z.reshape(xs[slot].shape)
        return np.sum((op.forward(*args) - out) * cot)

    return phi, max(float(np.abs(flat[v != 0].real).max()), 1.0)


def _rounding(out: np.ndarray, cot: np.ndarray) -> float:
    """The outputs' own rounding in φ: ε|out| per entry, both ways, weighted by the cotangent."""
    return 4 * EPS * float(np.sum(np.abs(np.real(out) * cot)))


#: the second-order test's step (relative): s²·φ'' stands far above the outputs' rounding, and
#: φ's Taylor series holds to 4s at most layers' scales (a batchnorm's √eps ≈ 3e-3 among them)
SECOND_ORDER_STEP = 1e-5


def _second_order(op, xs: list, slot: int, v: np.ndarray, cot: np.ndarray, out: np.ndarray) -> bool | None:
    """Does the op carry the complex step at second order too? Where it is analytic in its
    input, Re φ(is) = −s²φ''/2 + O(s⁴) and the real φ(s) + φ(−s) = s²φ'' + O(s⁴): they cancel.
    Complex arithmetic that is not analytic — np.var and np.abs of complex numbers are |z|²
    and √(z·z̄) — flips the sign of its share of φ''. Where that share is too small at first
    order for `_agrees` (a batchnorm's variance over inputs ~1e-6: ~1e-7 of the derivative), it
    is all of φ'' here, and a right backward would FAIL against the complex step. None where φ
    is not smooth at this scale: a smooth φ's second differences D(k) = φ(ks) + φ(−ks) grow 4×
    per doubling of k, at both doublings to 4s; a kink within 4s (a ReLU input the move
    crosses, whose complex form is analytic on either side) cannot do both. 2 calls of your
    forward where φ has no curvature along v, 5 where it has, 7 where the test says False."""
    phi, scale = _along(op, xs, slot, v, cot, out)
    s = SECOND_ORDER_STEP * scale

    def second(k):  # D(k) = k²s²φ'' + k⁴s⁴φ⁗/12 + …
        return np.real(phi(k * s) + phi(-k * s))

    d1 = second(1)
    noise = 10 * _rounding(out, cot)
    if abs(d1) <= noise:  # no curvature along v (code linear in this input, a ReLU): nothing to see
        return True
    d2 = second(2)
    if abs(d2 - 4 * d1) > abs(d1) / 4 + noise:
        return None
    # for analytic code Re φ(is) + D(1)/2 = s⁴φ⁗/12 + …, and so is (D(2) − 4·D(1))/12
    truncation = abs(d2 - 4 * d1) / 12
    miss = abs(np.real(phi(1j * s)) + d1 / 2)
    if miss <= 3 * truncation + 2e-3 * abs(d1) + noise:
        return True
    if miss <= 10 * truncation + 1e-2 * abs(d1) + noise:
        return None
    return None if abs(second(4) - 4 * d2) > abs(d2) / 4 + noise else False  # 4s: kinks or not


def _agrees(op, xs: list, slot: int, v: np.ndarray, cot: np.ndarray, out: np.ndarray) -> bool | None:
    """The derivative of Σ op(xs)·cot along v (flat, in input `slot`) by the complex step and by
    central differences: do they agree? None where the numbers cannot say: the forward is not
    smooth along v (its one-sided differences differ by more than the tolerance: a kink), or the
    miss lies within the outputs' own rounding at every step tried."""
    f, scale = _along(op, xs, slot, v, cot, out)
    along = np.count_nonzero(v) > 1
    cstep = np.imag(f(1e-20j * scale)) / (1e-20 * scale)
    if not np.isfinite(cstep):
        return False
    # the outputs' own rounding (ε|out| per entry, both ways), over the step: outputs far larger
    # than the input's own scale (x·w of entries ~3000 against a bias ~1) swamp central
    # differences at the input's step, and larger steps are tried (exact for code linear in it)
    noise = _rounding(out, cot)
    h = (PROBE_STEP if along else METHODS["central"].step) * scale
    for grow in (1.0,) if along else (1.0, 1e2, 1e4):
        ahead, behind = f(grow * h), f(-grow * h)
        central = (ahead - behind) / (2 * grow * h)
        tol = 1e-5 * max(abs(central), 1e-3)
        # a kink crossed shifts central differences by half its jump; one-sided ones show it whole
        if along and abs(ahead + behind) / h > tol:
            return None
        miss = abs(cstep - central)
        if miss <= tol:
            return True
        # beyond a larger step's truncation too (|D(2h) − D(h)|, three times D(h)'s): they disagree
        wider = 0.0 if grow == 1 else abs((f(2 * grow * h) - f(-2 * grow * h)) / (4 * grow * h) - central)
        if miss > tol + noise / (grow * h) + wider:
            return False
    return None
