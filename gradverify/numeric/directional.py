"""Derivatives along directions (`--fast`), and group testing to find the elements behind a
directional mismatch.

Along a direction v over a node's elements, one complex-step evaluation (or two central
differences) gives D_v L = vᵀ∇L whatever the node's size. When vᵀ(analytic) disagrees, `bisect`
halves v's support and keeps the halves that still disagree: about k·log₂ n evaluations isolate
k bad elements.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import delta
from ..graph import Graph
from .methods import EPS, METHODS
from .prober import crossings, node_method


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
    h = METHODS[method].step * scale / vmax
    if method == "complex":
        vals, points = (1j * h[:, None] * directions).reshape((m,) + shape), 1
    else:
        steps = np.concatenate([h, -h])
        vals = (steps[:, None] * np.concatenate([directions, directions])).reshape((2 * m,) + shape)
        points = 2

    def on_kink(node, dist, plain):
        hit = crossings(dist, plain, points, m, "complex" if method == "complex" else "real")
        if hit is not None:
            crossed[:] |= hit > 0

    change = loss_changes(graph, values, name, vals, on_kink).reshape(points, m)
    loss = abs(float(np.real(values[graph.loss]).reshape(-1)[0]))
    if method == "complex":
        d = change[0].imag / h
        err = 8 * EPS * np.abs(d)
    else:
        d = (change[0] - change[1]).real / (2 * h)
        err = 8 * EPS * (loss + 1e-300) / h + 1e-6 * np.abs(d)
    return d, err, crossed, method


def loss_changes(graph: Graph, values: dict, name: str, displacements: np.ndarray | delta.Ray,
                 on_kink=None, via: str | None = None) -> np.ndarray:
    """How the loss changes, (P,), when node `name` moves by each of the displacements (P,
    *shape) (real or complex; or a `delta.Ray` of P copies): one pass of P copies through the
    nodes downstream of `name` only. `on_kink(node, distance, plain_distance)` sees every kinked
    op on the way. via: only this consumer of `name` sees the move (the share of the gradient
    through that one edge)."""
    shape = values[name].shape[1:]
    start = displacements if isinstance(displacements, delta.Ray) else delta.Delta.full(displacements, shape)
    moved: dict = {name: start}
    with np.errstate(all="ignore"):
        if via is not None:
            moved = {via: graph.apply(via, moved, values, on_kink)}
        change = graph.propagate(values, moved, on_kink)
    return np.asarray(change).reshape(-1)


def bisect(judge: Callable[[np.ndarray], np.ndarray], sign: np.ndarray,
           max_suspects: int) -> tuple[list[np.ndarray], int]:
    """Group testing: the single elements behind a directional mismatch along `sign` (a ±1
    vector over the node's elements). judge(directions (m, size)) says which directions disagree.
    Halves of a disagreeing group are judged in turn, keeping at most `max_suspects` groups per
    round. Returns the isolated elements (arrays of one flat index) and the directions judged."""
    total = len(sign)
    groups, count = [np.arange(total)], 0
    leaves: list[np.ndarray] = []
    while groups:
        halves = [h for g in groups for h in (g[: len(g) // 2], g[len(g) // 2:]) if len(h)]
        vs = np.zeros((len(halves), total))
        for row, h in enumerate(halves):
            vs[row, h] = sign[h]
        bad = judge(vs)
        count += len(halves)
        groups = []
        for h, b in zip(halves, bad):
            if b:
                (leaves if len(h) == 1 else groups).append(h)
        groups = groups[:max_suspects]
        if len(leaves) >= max_suspects:
            break
    return leaves[:max_suspects], count
