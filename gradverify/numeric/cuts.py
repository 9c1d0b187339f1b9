"""The loss beyond a node, linearized by that node's own numeric gradient: a perturbation is
pushed only as far as the first node whose estimate is known.

Under the complex step a copy of the network differs from the plain pass by an imaginary part of
order h = 1e-20 (its real parts by h², far below rounding), so the loss beyond any node N is
linear in N's change to rounding:

    Im L(N + iΔ) = ⟨∇_N L, Δ⟩ + O(h³).

∇_N L is exactly what the check estimates for N itself, by the complex step through the forward
code. Once it is known, a copy of a node A upstream needs to travel only as far as N: its loss
change is ⟨∇_N L, Im ΔN⟩, with ΔN made by the forward code of the ops between A and N. Every
number still comes from forward code; the chain rule only adds them up (no op's derivative rule
is used, so a wrong backward cannot leak into the numeric side).

A node N is a *cut* when this holds exactly: every op beyond N is complex-analytic (a built-in,
or code of yours whose complex step agreed with central differences: `complex_probe`) and no
built-in one sits on a kink in the plain pass (a copy moved by iΔ keeps its real parts, so it
crosses no kink there, and the kinks of ops beyond N are never counted for copies that stop at
N), the plain values beyond N are far from underflow, the loss beyond N superposes along random
directions to rounding (`superposes`), with your code beyond N its estimate at -h equals the one
at +h element by element (your code declares no kinks, and at one its complex step may pick a
branch by the sign of an imaginary part: `_mirrored`), and N's
estimate covers all its elements, finite, with no kink crossed, exact to CUT_ERROR. N's own error
bar travels with it: a copy's loss change gains (Σ (|Im ΔN|·(N's error bar + 4ε·|∇_N L|))²)^½,
independent roundings adding in quadrature (graph.linear_change).
"""
from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..delta import Delta
from ..graph import CutGradient, Graph
from .methods import EPS, METHODS
from .prober import UNDERFLOW_BELOW, underflow_risk

if TYPE_CHECKING:
    from .estimate import Estimate

#: checks stop their complex steps at cuts; off, every copy travels to the loss (tests and
#: bench/ compare the two)
ENABLED = True

#: a kink op beyond a cut must have every plain kink distance above this: a complex step leaves
#: real parts within ~h² = 1e-40 of the plain pass, which cannot reach a kink this far away
KINK_CLEARANCE = 1e-30


#: a cut's estimate must be this exact (its error bars against its largest entry): the complex
#: step's are ~1e-15; one whose error bar had to be widened (an underflow probe at a probability
#: of 1e-14, a step chosen by the user) would widen every error bar upstream of it
CUT_ERROR = 1e-12


#: random directions along which a cut's linearity is tested (one complex copy each), and how
#: closely the loss along them must equal ⟨∇L, v⟩: this fraction of Σ|v_i·∇L_i| (rounding is
#: ~1e-16 of it; a kink crossed or a direction-dependent complex step misses by ~1 of it)
SUPERPOSE_DIRECTIONS = 2
SUPERPOSE_RTOL = 1e-12
#: with your code beyond a cut, its estimates at +h and -h must agree to this, element by element
MIRROR_RTOL = 1e-13


class Cuts:
    """The numeric gradients of one check's cut nodes, estimated once and shared by every node
    upstream of them. Bound to one graph and one plain pass: a check of another loss (--split's
    parts) or other values does not use them."""

    def __init__(self, graph: Graph, values: dict, trusted: frozenset = frozenset()) -> None:
        self.graph, self.values, self.trusted = graph, values, trusted
        self._eligible: dict[str, bool] = {}
        self._full: dict[str, Estimate] = {}  # full complex-step estimates of eligible nodes
        self._grads: dict[str, CutGradient] = {}  # ∇L, and its error bar + 4ε|∇L|

    def serves(self, graph: Graph, values: dict) -> bool:
        return graph is self.graph and values is self.values

    def eligible(self, name: str) -> bool:
        """May `name` be a cut (everything beyond it complex-analytic, no built-in op on a kink,
        far from underflow)? Its estimate must then still pass `keep`'s tests."""
        if name not in self._eligible:
            self._eligible[name] = self._eligible_now(name)
        return self._eligible[name]

    def _eligible_now(self, name: str) -> bool:
        g = self.graph
        node = g.nodes[name]
        if node.op is None or name == g.loss or not g.reaches_loss(name):
            return False
        if np.asarray(self.values[name]).dtype.kind not in "fc":
            return False
        beyond = g.downstream(name)
        for n in beyond:
            op = g.nodes[n].op
            if op is None or not (op.complex_safe or n in self.trusted):  # your op: once probed
                return False
            if op.kinked and self._near_kink(n):
                return False
        return not underflow_risk(self.values, [name] + beyond, UNDERFLOW_BELOW)

    def _near_kink(self, name: str) -> bool:
        node = self.graph.nodes[name]
        with np.errstate(all="ignore"):
            dist = node.fn.kink_distance(*[self.values[i] for i in node.inputs])
        return dist is not None and not bool(np.all(np.abs(np.asarray(dist)) > KINK_CLEARANCE))

    def wanted(self, name: str, n: int) -> list[str]:
        """Cuts beyond `name` worth estimating now, for a node with `n` elements to estimate:
        the eligible ones not yet known of at most n elements (a cut costs its own elements'
        copies, each pushed no further than the next cut), nearest the loss first."""
        sizes = {c: self.values[c][0].size for c in self.graph.downstream(name)}
        return [c for c in reversed(list(sizes)) if c not in self._full and sizes[c] <= n and self.eligible(c)]

    def opaque_beyond(self, name: str) -> bool:
        """Is there code of yours beyond `name`?"""
        return any(self.graph.nodes[n].fn.opaque for n in self.graph.downstream(name))

    def forget_opaque(self) -> None:
        """Drop the cuts with code of yours beyond them: its shortcuts went off (checker's
        recheck), so estimates made with them may have misread it."""
        for name in [n for n in self._full if self.opaque_beyond(n)]:
            self._full.pop(name)
            self._grads.pop(name, None)

    def keep(self, name: str, est: Estimate, mirror: Callable[[], tuple] | None = None) -> None:
        """Remember a full complex-step estimate of an eligible node; one finite everywhere,
        crossing no kink, exact to CUT_ERROR, along which the loss beyond superposes
        (`superposes`) and, with code of yours beyond, equal to its `mirror` (the same estimate
        at -h: (derivative, error bar), made only when everything else holds) at every element,
        becomes a cut."""
        if not self.eligible(name) or est.method != "complex" or est.step != METHODS["complex"].step \
                or len(est.index) != self.values[name][0].size:
            return
        self._full[name] = est
        grad, err = np.abs(est.numeric), est.error
        ok = np.all(np.isfinite(grad)) and np.all(err <= CUT_ERROR * np.max(grad, initial=0.0)) \
            and not np.any(est.kink) and (est.crossings is None or not np.any(est.crossings))
        if ok and (not self.opaque_beyond(name) or _mirrored(est, None if mirror is None else mirror())):
            order = np.argsort(est.index)
            grad, err = est.numeric[order], est.error[order]
            if not self.superposes(name, grad, err):
                return
            # the dot's own rounding: 4ε per term, on top of the estimate's error bar
            shape = self.values[name].shape[1:]
            self._grads[name] = CutGradient(grad.reshape(shape), (err + 4 * EPS * np.abs(grad)).reshape(shape))

    def superposes(self, name: str, grad: np.ndarray, err: np.ndarray) -> bool:
        """Is the loss beyond `name` linear in its change, as a cut assumes? One complex step
        along each of a few random directions v, through everything beyond (your code included),
        against ⟨∇L, v⟩ from the node's own estimate (`grad`, flat, with its error bars `err`):
        equal to rounding where the complex step is linear in the change. A kink that a copy
        crosses, or code whose complex step depends on its direction (np.maximum at a tie, x·(x > 0)
        at 0, compared as complex numbers), misses by the order of a derivative."""
        base = self.values[name]
        shape = base.shape[1:]
        rng = np.random.default_rng([base.size, zlib.crc32(name.encode())])
        v = rng.normal(size=(SUPERPOSE_DIRECTIONS, int(np.prod(shape))))
        h = 1e-20 * max(float(np.abs(np.real(base)).max(initial=0.0)), 1.0)
        with np.errstate(all="ignore"):
            change = self.graph.propagate(self.values, {name: Delta.full(1j * h * v.reshape((-1,) + shape), shape)})
        along = np.imag(np.asarray(change)).reshape(-1) / h
        terms = v * grad
        spread = np.sqrt(((v * err) ** 2).sum(axis=1))
        miss = np.abs(along - terms.sum(axis=1))
        return bool(np.all(miss <= SUPERPOSE_RTOL * np.abs(terms).sum(axis=1) + 4 * spread))

    def known(self, name: str, index: np.ndarray) -> Estimate | None:
        """The kept estimate of `name` at the flat indices `index`, or None."""
        est = self._full.get(name)
        if est is None:
            return None
        pos = np.empty(len(est.index), dtype=np.intp)
        pos[est.index] = np.arange(len(est.index))
        sel = pos[np.asarray(index, dtype=np.intp)]
        return replace(est, index=np.asarray(index, dtype=np.intp), numeric=est.numeric[sel], error=est.error[sel],
                       kink=est.kink[sel], left=est.left[sel], right=est.right[sel],
                       crossings=None if est.crossings is None else est.crossings[sel])

    def beyond(self, name: str) -> dict[str, CutGradient]:
        """The cuts downstream of `name`: {node: its ∇L and bound}, where bound = the
        estimate's error bar + 4ε·|∇L| (the rounding of the dot product)."""
        return {c: self._grads[c] for c in self.graph.downstream(name) if c in self._grads}


def _mirrored(est: Estimate, mirror: tuple | None) -> bool:
    """The estimate at +h and at -h agree at every element, within their error bars (analytic
    code gives conjugate evaluations, the same numbers to rounding): a branch taken by the sign of
    an imaginary part shows at its own entry, however small its share of the node."""
    if mirror is None:
        return False
    numeric, error = mirror
    miss = np.abs(est.numeric - numeric)
    return bool(np.all(miss <= 4 * (est.error + error) + MIRROR_RTOL * np.abs(est.numeric)))


__all__ = ["CUT_ERROR", "Cuts", "ENABLED", "KINK_CLEARANCE", "MIRROR_RTOL", "SUPERPOSE_DIRECTIONS", "SUPERPOSE_RTOL"]
