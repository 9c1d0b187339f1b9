"""The Taylor remainder test of one node (numeric/taylor.py), as the check's verdict
(`--method taylor`) or as a second opinion next to the element check (`--taylor`); and the adjoint
identity of each user op."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import numeric
from ..numeric import taylor as remainder
from ..ops import BadGradient
from ..results import Adjoint, Blame, NodeResult, Taylor
from .nodes import _node_rng
from .prepare import Run

#: float32's ε: a float32 backward's own rounding, in the remainder's rounding floor
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def ladder_start(run: Run) -> float:
    """The ladder's first step: --step under --method taylor, else the default."""
    s = run.settings
    return s.step if s.method == "taylor" and s.step is not None else remainder.LADDER_START


def taylor_of(run: Run, name: str) -> Taylor:
    """The Taylor test of node `name` along seeded directions (seeded by --seed and the node's
    name, as --fast's), through the float64 values the numeric side perturbs."""
    start = ladder_start(run)
    grad_eps = FLOAT32_EPS if run.dtype == "float32" else numeric.EPS
    found = remainder.taylor_node(run.graph, run.nvalues, name, run.grads[name], _node_rng(run, name),
                                  start=start, grad_eps=grad_eps)
    return Taylor(found.verdict, found.order, found.odd_order, found.reason,
                  tuple(remainder.remainder_order(d) for d in found.directions), found.resolution,
                  found.error)


def edge_fails(run: Run, name: str, consumer: str) -> bool:
    """Blame's edge probe under --method taylor: the Taylor test of node `name` as only `consumer`
    sees it, against the share of the gradient that consumer's backward alone gives `name`. True
    when that share fails (a wrong backward of `consumer`)."""
    node = run.graph.nodes[consumer]
    xs = [run.values[i] for i in node.inputs]
    try:
        with np.errstate(all="ignore"):
            gs = node.fn.backward(run.grads[consumer], run.values[consumer], *xs)
    except BadGradient:
        return True
    share = np.zeros(np.shape(run.values[name]))
    for i, g in zip(node.inputs, gs):  # an op may take the node in several slots (x·x)
        if i == name:
            share = share + np.asarray(g, dtype=np.float64)
    grad_eps = FLOAT32_EPS if run.dtype == "float32" else numeric.EPS
    found = remainder.taylor_node(run.graph, run.nvalues, name, share, _node_rng(run, name),
                                  grad_eps=grad_eps, via=consumer)
    return found.verdict == "fail"


def check_node_taylor(run: Run, name: str) -> NodeResult:
    """One node judged by the Taylor test alone: no element is estimated (the record's element
    arrays are empty, its mode "taylor"); the node's status is the test's verdict."""
    node = run.graph.nodes[name]
    full = np.asarray(run.grads[name], dtype=np.float64).reshape(-1)
    rtol, atol = run.tolerance("taylor")
    empty = np.zeros(0)
    test = taylor_of(run, name)
    notes = () if test.verdict == "pass" else (f"taylor {name}: {test.reason}",)
    finite = full[np.isfinite(full)]
    return NodeResult(name=name, kind=node.kind, op=node.op_label, shape=run.values[name].shape[1:],
                      method="taylor", rtol=rtol, atol=atol, step=ladder_start(run),
                      flat=np.zeros(0, dtype=np.intp), value=empty, analytic=empty, numeric=empty,
                      error=empty, left=empty, right=empty, abs_error=empty, rel_error=empty,
                      statuses=np.zeros(0, dtype="<U9"),
                      total=full.size, mode="taylor", directions=len(test.orders),
                      grad_max=float(np.abs(finite).max(initial=0.0)), line=run.line(name),
                      notes=notes, undecided=test.verdict == "undecided", taylor=test)


def adjoint_of(run: Run, name: str) -> Adjoint | None:
    """The adjoint identity of op node `name`: ⟨J·u, v⟩ from its forward (complex step where the
    op carries it, else central differences) against ⟨u, backward(v)⟩, for seeded Gaussian u
    (over every input) and v (over the output). None for a leaf."""
    node = run.graph.nodes[name]
    if node.op is None:
        return None
    values = run.nvalues
    xs = [np.asarray(values[i]) for i in node.inputs]
    rng = _node_rng(run, "adjoint:" + name)
    us = [rng.normal(size=x.shape) for x in xs]
    v = rng.normal(size=np.shape(values[name]))
    complex_ok = node.op.complex_safe or name in run.trusted
    try:
        with np.errstate(all="ignore"):
            grads = node.op.backward(v, values[name], *xs)
            rhs_terms = [np.real(np.asarray(g, dtype=complex)) * u for g, u in zip(grads, us)]
            jvp = remainder.jvp_dot(node.op, xs, us, v, complex_ok)
    except (BadGradient, ValueError, TypeError) as e:
        return Adjoint("undecided", None, None, None, "none", f"cannot be evaluated: {e}")
    rhs = float(sum(np.sum(t) for t in rhs_terms))
    scale = max(float(sum(np.sum(np.abs(t)) for t in rhs_terms)), abs(jvp.value), 1e-300)
    rel = abs(jvp.value - rhs) / scale
    rtol = run.tolerance(jvp.method)[0]
    if not (np.isfinite(rhs) and np.isfinite(jvp.value)):
        verdict, why = "undecided", "not finite"
    elif jvp.kink:
        verdict, why = "kink", "the op has a kink along u (its even part halves with the step): no verdict"
    elif abs(jvp.value - rhs) <= rtol * scale + jvp.error:
        verdict, why = "pass", "holds"
    else:
        verdict, why = "fail", "broken: the backward is not the transpose of the forward's Jacobian"
    return Adjoint(verdict, jvp.value, rhs, rel, jvp.method, why)


def adjoint_checks(run: Run, results: dict, blamed=()) -> dict:
    """With --taylor or --method taylor: the adjoint identity of every user op (custom
    file.py:name ops) whose node was checked, as the node's `adjoint`. A broken identity of an op
    not already blamed (`blamed`: node names) fails the op's node and blames the op itself:
    {"results": …, "blame": the new Blames}."""
    out, blame = dict(results), []
    for name, res in results.items():
        node = run.graph.nodes[name]
        if node.op is None or not node.op.opaque or not run.graph.reaches_loss(name):
            continue
        adj = adjoint_of(run, name)
        res = replace(res, adjoint=adj)
        if adj is not None and adj.verdict == "fail" and name not in run.problems and name not in blamed:
            msg = (f"the backward of {name} ({node.op_label}) is wrong: its adjoint identity is broken, "
                   f"⟨J·u, v⟩ = {adj.jvp:.6g} by the {adj.method} step of its forward, ⟨u, backward(v)⟩ = "
                   f"{adj.vjp:.6g} (relative error {adj.rel_error:.1e})")
            res = replace(res, problem=res.problem or msg)
            blame.append(Blame(name, node.op_label, msg))
        out[name] = res
    return {"results": out, "blame": tuple(blame)}


#: a consumer's Taylor PASS clears it of blame only when it resolves errors this many times
#: smaller than the one its input shows
BLAME_MARGIN = 10.0


def resolved_blame(results: dict, blame: tuple) -> dict:
    """Under --method taylor: drop blame that rests on a PASS too coarse to trust. A node fails
    while its consumer passes; but if the consumer's test resolves only errors larger than a
    tenth of the error seen at the node (a bug near the test's resolution, seen along one node's
    directions and not the next's), the consumer may hide the same error, and the op blamed may
    be innocent. Its blame is dropped, with a note on the node saying why (the check still fails).
    {"results": …, "blame": …}."""
    out, kept = dict(results), []
    for b in blame:
        node, consumer = results.get(b.input), results.get(b.node)
        t, c = (node.taylor if node else None), (consumer.taylor if consumer else None)
        if node is None or t is None or c is None or not np.isfinite(t.error) or \
                c.resolution * BLAME_MARGIN <= t.error:
            kept.append(b)
            continue
        note = (f"no blame for {b.node}: its Taylor test resolves directional errors above "
                f"{c.resolution:.0e} of Σ|g·v|, and the error seen at {b.input} is {t.error:.0e}: a "
                "wrong gradient there could hide below it; run the full check to place the bug")
        out[b.input] = replace(node, notes=node.notes + (note,))
    return {"results": out, "blame": tuple(kept)}
