"""Blame: from failing nodes to the op whose backward is wrong.

A node whose gradient fails while every node consuming it passes was given a wrong gradient by a
consumer's backward. With one consumer, that is the culprit; with several, each edge's share of
the gradient is checked on its own (perturbing the node as only that consumer sees it) and the
consumers whose share disagrees are blamed. A failing node with a failing consumer inherits the
error: marked, not blamed. An op whose backward returned malformed gradients is blamed with that
message.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import numeric
from ..graph import Graph
from ..ops import BadGradient
from ..results import Blame, NodeResult
from .compare import compare
from .prepare import Run
from .taylor import edge_fails
from .where import with_site

#: failing elements of a node whose edges are checked one by one
EDGE_PROBES = 8


def edge_disagrees(run: Run, name: str, consumer: str, positions) -> bool:
    """Is the share of d loss / d `name` that flows through `consumer` wrong at the given flat
    positions? Analytic: that consumer's backward alone; numeric: perturb `name` as only
    `consumer` sees it."""
    if run.settings.method == "taylor":  # no element was estimated: the edge's own Taylor test
        return edge_fails(run, name, consumer)
    node = run.graph.nodes[consumer]
    xs = [run.values[i] for i in node.inputs]
    with np.errstate(all="ignore"):
        try:
            gs = node.fn.backward(run.grads[consumer], run.values[consumer], *xs)
        except BadGradient:
            return True
    share = sum(np.asarray(g, dtype=np.float64) for i, g in zip(node.inputs, gs) if i == name)
    share = np.asarray(share).reshape(-1)[positions]
    s = run.settings
    est = numeric.estimate(run.graph, run.nvalues, name, s.method, s.step, positions, s.max_memory,
                           via=consumer, trusted=run.trusted)
    judged = compare(share, est, run.tolerance(est.method), run.tolerance("kink"))
    return bool((judged.statuses == "fail").any())


def shown_name(graph: Graph, name: str) -> str:
    """The name a user knows a node by: an op of several outputs (`name: [next_h, next_c]`) is
    held as one packed node with a `pick` node per output, and is named by its first output."""
    picks = [c for c in graph.consumers(name) if graph.nodes[c].op_label == "pick"]
    if picks and len(picks) == len(graph.consumers(name)):
        return min(picks, key=lambda c: getattr(graph.nodes[c].op, "k", 0))
    return name


def _culprit(run: Run, consumer: str, name: str, culprits: list[str]) -> Blame:
    graph = run.graph
    op, shown = graph.nodes[consumer].op_label, shown_name(graph, consumer)
    if getattr(graph.nodes[consumer].op, "blames_each_input", False):
        # a whole model: its loss returns the gradient of every parameter, each judged on its own
        return Blame(shown, op, f"the model's loss ({op}) returns a wrong gradient for {name}: "
                                f"grads[{name!r}] disagrees with the numeric d loss / d {name}", input=name)
    outputs = list(graph.consumers(consumer)) if shown != consumer else [consumer]
    own = f"{shown}'s own agrees" if len(outputs) == 1 else \
        f"the gradients of its outputs {', '.join(outputs)} agree"
    others = "" if len(culprits) == 1 else (
        f" (or the backward of {', '.join(shown_name(graph, x) for x in culprits if x != consumer)})")
    return Blame(shown, op, f"the backward of {shown} ({op}) is wrong: its input's gradient "
                            f"{name} disagrees while {own}{others}", input=name)


def assign_blame(run: Run, results: dict[str, NodeResult]):
    """(results with inherited failures marked, the blamed ops)."""
    graph = run.graph
    blame = [Blame(shown_name(graph, n), graph.nodes[n].op_label, m) for n, m in run.problems.items()]
    blamed: set[tuple[str, str | None]] = {(n, None) for n in run.problems}
    marked = dict(results)
    for name, res in results.items():
        if res.status != "fail" or not (res.statuses == "fail").any() and name in run.problems:
            continue  # failing for its own problem (a wrong forward), not its gradient's numbers
        consumers = [c for c in graph.consumers(name) if graph.reaches_loss(c)]
        if not consumers or any(c not in results for c in consumers):
            continue  # the loss itself, or consumers not checked: nothing to conclude
        if any(results[c].status == "fail" for c in consumers):
            marked[name] = replace(res, inherited=True)
            continue
        culprits = consumers
        if len(consumers) > 1:
            bad = np.flatnonzero(res.statuses == "fail")[:EDGE_PROBES]
            culprits = [c for c in consumers if edge_disagrees(run, name, c, res.flat[bad])] or consumers
        for c in culprits:
            # an op is blamed once (for the first input found wrong); a model once per parameter
            which = name if getattr(graph.nodes[c].op, "blames_each_input", False) else None
            if (c, which) not in blamed and (c, None) not in blamed:
                blame.append(_culprit(run, c, name, culprits))
                blamed.add((c, which))
    return marked, tuple(with_site(b, graph) for b in blame)
