"""Elements at kinks judged together, not only one by one.

Each element at a kink passes when its analytic value lies between its own left and right
derivatives. That bounds one entry, not how entries add up: a max whose entries tie (a 2×2
pooling window of equal pixels, a window of zeros after a ReLU) has every tied entry's interval
[0, dout], and a backward that sends dout to *every* tied entry — counting the tie twice — stays
inside each of them. Moved together, the tied entries move the max with them: along that
direction the loss is smooth, its derivative is dout once, and a valid gradient's entries over
the tie sum to it. So the elements at kinks of a node, grouped by their jump (right − left: the
tied entries of one window share it), are moved together per group; where the analytic values'
sum lies outside the group's own left and right derivatives, they FAIL, with a note.

Separate kinks in one group (ReLUs at 0) keep their per-element freedom: moved together, their
interval is the sum of their intervals, and any sum of values inside each lies inside it. What
this test leaves alone, as the per-element one does: elements whose own move crosses several
kinks at once (an entry in four overlapping pooling windows: counted where the engine can, and
in your code seen as a move together that is itself a kink, left ≠ right), and sums short of the
derivative, on the side of 0 (the chain rule's relu'(0) = 0 where the move also crosses a ReLU
at 0): only a sum beyond it, away from 0, along a move that is smooth — a tie counted more than
once — FAILs.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import numeric
from .compare import Comparison
from .prepare import Run

#: jumps within this relative distance of each other are one group (the same tie measured twice)
SAME_JUMP = 1e-4
#: at most this many groups per node are moved together, the largest first
MAX_GROUPS = 16


def groups_by_jump(at: np.ndarray, jumps: np.ndarray) -> list[np.ndarray]:
    """Positions `at` grouped by signed jump, groups of two or more, the largest first."""
    order = np.argsort(jumps)
    j = jumps[order]
    cut = np.abs(np.diff(j)) > SAME_JUMP * np.maximum(np.abs(j[1:]), np.abs(j[:-1]))
    parts = np.split(at[order], np.flatnonzero(cut) + 1)
    groups = sorted((g for g in parts if len(g) >= 2), key=len, reverse=True)
    return groups[:MAX_GROUPS]


def judge_together(run: Run, name: str, est: numeric.Estimate, a: np.ndarray,
                   judged: Comparison) -> tuple[Comparison, tuple[str, ...]]:
    """`judged` with the groups of kink elements whose analytic sum lies outside their
    derivatives moved together turned to FAIL; and a note if any did."""
    one = est.crossings <= 1 if est.crossings is not None else np.ones(len(a), bool)
    at = np.flatnonzero((judged.statuses == "kink") & ~judged.undecided & np.isfinite(a) & one)
    if at.size < 2:
        return judged, ()
    groups = groups_by_jump(at, est.right[at] - est.left[at])
    if not groups:
        return judged, ()
    left, right, err = numeric.moved_together(run.graph, run.nvalues, name, [est.index[g] for g in groups])
    rtol, atol = run.tolerance("kink")
    statuses, wrong = judged.statuses.copy(), []
    for g, lo, hi, e in zip(groups, np.minimum(left, right), np.maximum(left, right), err):
        total = float(a[g].sum())
        slack = atol + rtol * max(abs(lo), abs(hi), abs(total)) + e
        smooth = hi - lo <= slack  # the move itself crosses no kink: the tie moves as one
        if np.isfinite(lo + hi + e) and smooth and _counted_beyond(total, lo, hi, slack):
            statuses[g] = "fail"
            wrong.append((len(g), total, lo, hi))
    if not wrong:
        return judged, ()
    k, total, lo, hi = wrong[0]
    return replace(judged, statuses=statuses), (
        f"{sum(w[0] for w in wrong)} elements of {name} at kinks FAIL together though each lies within its "
        f"own kink: moved together (in {len(wrong)} group(s) of equal jump), their analytic values sum "
        f"outside the derivatives along them — {k} elements sum to {total:.6g}, outside [{lo:.6g}, "
        f"{hi:.6g}]: no valid gradient (a tie counted more than once?)",)


def _counted_beyond(total: float, lo: float, hi: float, slack: float) -> bool:
    """The sum lies beyond [lo, hi] on the side away from 0: more than the move's derivative, as a
    tie counted twice gives (2·dout against dout). A sum on the side of 0 (short of it) is what
    the chain rule with relu'(0) = 0 gives where the move also crosses a ReLU at 0 beyond the tie
    (a node the engine cannot count kinks in: your code): no verdict from this test."""
    if total > hi + slack:
        return hi >= 0 or total > 0  # beyond a positive end, or past 0 from a negative interval
    if total < lo - slack:
        return lo <= 0 or total < 0
    return False
