"""Element statuses: the analytic gradient against its numeric estimate.

An element passes when |a − n| ≤ atol + rtol·max(|a|, |n|) + e, where e is the numeric estimate's
own error bar. At a kink it is judged against the interval between the left and right one-sided
derivatives instead, with their method's tolerance: inside it the analytic value is a valid
subgradient and the element is a KINK; outside it is a FAIL — unless the element's perturbation
crosses several kinks at once, where the valid chain-rule values are not bounded by that one
interval: then it is a KINK without a verdict (`undecided`). Where analytic and numeric are both
below what the estimate resolves, the element is `floor` (no verdict either way); where the
estimate is NaN or Inf, `nonfinite`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..numeric import Estimate

#: the element statuses, and their codes while they are being decided
STATUSES = np.array(["pass", "kink", "floor", "fail", "nonfinite"], dtype="<U9")
PASS, KINK, FLOOR, FAIL, NONFINITE = range(len(STATUSES))


@dataclass(frozen=True)
class Comparison:
    """Per element: errors, statuses, and the kink elements left without a verdict."""

    abs_error: np.ndarray
    rel_error: np.ndarray
    statuses: np.ndarray
    undecided: np.ndarray  # at several kinks at once, outside [left, right]: KINK, no verdict


def compare(analytic: np.ndarray, est: Estimate, tolerance: tuple[float, float],
            kink_tolerance: tuple[float, float]) -> Comparison:
    """Judge every element of `est` against the analytic gradient."""
    a, n = analytic, est.numeric
    abs_err, scale, rtol, atol = _errors(a, est, tolerance, kink_tolerance)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_err = np.where(scale > 0, abs_err / scale, 0.0)
    ok = abs_err <= atol + rtol * scale + est.error
    several = est.crossings >= 2 if est.crossings is not None else np.zeros(len(a), bool)
    undecided = est.kink & several & ~ok & np.isfinite(a)
    ok |= undecided
    # both below what the estimate can resolve (and not both exactly 0): no verdict either way;
    # an infinite error bar (float64 lost the digits on the way) resolves nothing at all
    untrusted = np.isinf(est.error) & ~est.kink
    floor = ((scale <= atol + est.error) & (scale > 0) & ~est.kink) | untrusted
    # codes into STATUSES, the later rules overriding the earlier (strings only at the end: numpy's
    # string arrays are slow to select among)
    code = np.where(ok, np.where(est.kink, KINK, np.where(floor, FLOOR, PASS)), FAIL)
    code[~(np.isfinite(a) | untrusted)] = FAIL
    code[untrusted] = FLOOR
    nonfinite = ~(np.isfinite(n) | est.kink)
    code[nonfinite] = NONFINITE
    abs_err = np.where(nonfinite, np.nan, abs_err)
    rel_err = np.where(nonfinite, np.nan, rel_err)
    return Comparison(abs_err, rel_err, STATUSES[code], undecided)


def _errors(a: np.ndarray, est: Estimate, tolerance: tuple[float, float],
            kink_tolerance: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """Per element: |a − n| and its scale max(|a|, |n|), with the tolerances (rtol, atol); at a
    kink, the distance from the interval [min(left, right), max(left, right)], its scale, and
    the kink's tolerances."""
    n = est.numeric
    abs_err, scale = np.abs(a - n), np.maximum(np.abs(a), np.abs(n))
    if not est.kink.any():
        return abs_err, scale, tolerance[0], tolerance[1]
    lo, hi = np.fmin(est.left, est.right), np.fmax(est.left, est.right)
    kink_dist = np.maximum(np.maximum(lo - a, a - hi), 0.0)
    kink_scale = np.maximum(np.abs(a), np.fmax(np.abs(lo), np.abs(hi)))
    rtol = np.where(est.kink, kink_tolerance[0], tolerance[0])
    atol = np.where(est.kink, kink_tolerance[1], tolerance[1])
    return np.where(est.kink, kink_dist, abs_err), np.where(est.kink, kink_scale, scale), rtol, atol
