"""Element statuses: the analytic gradient against its numeric estimate.

An element passes when |a − n| ≤ atol + rtol·max(|a|, |n|) + e, where e is the numeric estimate's
own error bar. At a kink it is judged against the interval between the left and right one-sided
derivatives instead: inside it (within the same tolerance) the analytic value is a valid
subgradient and the element is a KINK; outside it is a FAIL. Where analytic and numeric are both
below what the estimate resolves, the element is `floor` (no verdict either way); where the
estimate is NaN or Inf, `nonfinite`.
"""
from __future__ import annotations

import numpy as np

from ..numeric import Estimate


def compare(analytic: np.ndarray, est: Estimate, rtol: float, atol: float):
    """Errors and statuses per element: (abs_error, rel_error, statuses)."""
    a, n = analytic, est.numeric
    scale = np.maximum(np.abs(a), np.abs(n))
    abs_err = np.abs(a - n)
    # at a kink, the distance from the interval [min(left, right), max(left, right)]
    lo, hi = np.fmin(est.left, est.right), np.fmax(est.left, est.right)
    kink_dist = np.maximum(np.maximum(lo - a, a - hi), 0.0)
    kink_scale = np.maximum(np.abs(a), np.fmax(np.abs(lo), np.abs(hi)))
    abs_err = np.where(est.kink, kink_dist, abs_err)
    scale = np.where(est.kink, kink_scale, scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_err = np.where(scale > 0, abs_err / scale, 0.0)
    ok = abs_err <= atol + rtol * scale + est.error
    # both below what the estimate can resolve (and not both exactly 0): no verdict either way
    floor = (scale <= atol + est.error) & (scale > 0) & ~est.kink
    statuses = np.where(ok, np.where(est.kink, "kink", np.where(floor, "floor", "pass")), "fail")
    statuses = np.where(np.isfinite(a), statuses, "fail")
    statuses = np.where(np.isfinite(n) | est.kink, statuses, "nonfinite")
    abs_err = np.where(statuses == "nonfinite", np.nan, abs_err)
    rel_err = np.where(statuses == "nonfinite", np.nan, rel_err)
    return abs_err, rel_err, statuses.astype("<U9")
