"""Assertions for your own test suite, whose message's first line says what is wrong:

    from gradverify.testing import assert_grads, assert_loss_grads, assert_model_grads

    assert_grads(affine_forward, affine_backward, x, w, b)
    # AssertionError: dw of affine_backward: 15/15 elements wrong, analytic ≈ 0.2 × numeric

    assert_loss_grads(svm_loss_naive, W, X, y, data=("X",), attrs={"reg": 0.1})
    assert_model_grads(model, X, y)

The first line names the gradient (`d` + the input's name), the function that computed it and
the verdict; the lines after it hold the other wrong gradients, the blame and the whole table.
Kinks pass (the analytic value is a valid subgradient) unless `strict=True`; a check whose
numbers decide nothing is never a pass.
"""
from __future__ import annotations

from . import api
from .results import NodeResult, Report

__all__ = ["assert_grads", "assert_loss_grads", "assert_model_grads", "failure_message"]

def assert_grads(forward, backward, *inputs, strict: bool = False, **options) -> Report:
    """`gradverify.check_op(forward, backward, *inputs, **options)`, raising AssertionError
    unless every gradient agrees (kinks too under `strict`). Returns the Report."""
    report = api.check_op(forward, backward, *inputs, **options)
    _raise_unless_ok(report, _name(backward, "backward"), strict)
    return report


def assert_loss_grads(fn, *inputs, strict: bool = False, **options) -> Report:
    """`gradverify.check_loss(fn, *inputs, **options)`, raising AssertionError unless every
    gradient agrees. Returns the Report."""
    report = api.check_loss(fn, *inputs, **options)
    _raise_unless_ok(report, _name(fn, "loss"), strict)
    return report


def assert_model_grads(model, *inputs, strict: bool = False, **options) -> Report:
    """`gradverify.check_model(model, *inputs, **options)`, raising AssertionError unless every
    parameter's gradient agrees. Returns the Report."""
    report = api.check_model(model, *inputs, **options)
    _raise_unless_ok(report, f"{type(model).__name__}.loss", strict)
    return report


def _name(fn, default: str) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) and name and "<lambda>" not in name else default


def _raise_unless_ok(report: Report, function: str, strict: bool) -> None:
    bad = report.exit_code != 0 or (strict and report.status in ("kink", "undecided"))
    if bad:
        raise AssertionError(failure_message(report, function))


def _culprits(report: Report) -> list[NodeResult]:
    """The nodes to name, the most telling first: a blamed input, then failing inputs and
    parameters that are not merely inherited, then any other failing node, then kinks and
    undecided ones (which fail only under strict, or when nothing could be decided)."""
    blamed = {b.input for b in report.blame if b.input}

    def rank(n: NodeResult) -> int:
        if n.status != "fail":
            return 5 if n.status == "kink" else 6 if n.status == "undecided" else 9
        if n.name in blamed:
            return 0
        return 1 if not n.inherited and n.kind in ("input", "parameter") else 2 if not n.inherited else 3

    ranked = sorted((n for n in report.nodes if rank(n) < 9), key=rank)
    return ranked


def verdict(n: NodeResult) -> str:
    """`24/24 elements wrong, analytic ≈ 0.2 × numeric`, or the worst element."""
    if n.problem and not (n.statuses == "fail").any():
        return n.problem
    if n.status == "kink":
        kinks = int((n.statuses == "kink").sum())
        return f"{kinks}/{n.size} elements at a kink"
    if n.status == "undecided":
        return "undecided: " + "; ".join(n.notes)
    if n.mode == "taylor" and n.taylor is not None:  # no element was estimated: the order is the verdict
        return f"Taylor test: {n.taylor.reason}"
    wrong = int(((n.statuses == "fail") | (n.statuses == "nonfinite")).sum())
    text = f"{wrong}/{n.size} elements wrong"
    return f"{text}, {_relation(n)}" if _relation(n) else text


def _relation(n: NodeResult) -> str:
    """How analytic relates to numeric: the node's diagnosis (checker.diagnosis: a constant
    factor, a sign, a missing path, …) when one pattern explains it, else the worst element."""
    if n.diagnosis:
        return n.diagnosis
    w = n.worst
    if w is None:
        return ""
    e = n.element(w)
    where = ",".join(map(str, e.index))
    return f"worst element [{where}]: analytic {e.analytic!r}, numeric {e.numeric!r}"


def failure_message(report: Report, function: str) -> str:
    """The AssertionError's text: `d<input> of <function>: <verdict>`, the other culprits, the
    blame, then the table."""
    culprits = _culprits(report)
    if not culprits:
        lines = [f"{function}: {report.status}"]
    else:
        first, rest = culprits[0], culprits[1:]
        lines = [f"{_gradient(first)} of {function}: {verdict(first)}"]
        lines += [f"also {_gradient(n)}: {verdict(n)}" for n in rest]
    lines += [f"blame: {b.message}" for b in report.blame]
    return "\n".join(lines) + "\n" + report.table()


def _gradient(n: NodeResult) -> str:
    """What the user's code calls this gradient: dw for input w, d(loss) for the loss node."""
    return f"d{n.name}" if n.name.isidentifier() else f"gradient of {n.label}"
