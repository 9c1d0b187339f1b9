"""Changes too small to reach a kink: the shortcut the kinked ops (relu, max pooling) take for a
full change whose real part is far smaller than the plain pass's distance to every kink.

A copy b changes its input by vals[b]; R_b = max |Re vals[b]| bounds how far any real value moves
(the complex step's imaginary part moves none: R_b is 0 there). A position whose plain kink
distance exceeds 2·R_b plus rounding keeps its side of the kink in copy b, so it crosses nothing
and its output follows a fixed branch (relu's x > 0, the window's plain maximum). The positions
within reach of a kink for some copy (the near ones, the same for every copy: a stencil's points
are compared position by position) are computed for every copy as the plain forward computes
them, and only they are shown to `on_kink`, as (k, P, …) arrays.
"""
from __future__ import annotations

from typing import Any

import numpy as np

#: a shortcut pays only while most positions are far: above this share of near pairs, the op
#: takes its dense path
NEAR_SHARE = 0.25
#: rounding allowance on a kink distance, in units of ε·max|x|: x + Δ and the maxima are rounded
ROUNDING = 8.0


def reach(flat: np.ndarray) -> np.ndarray | None:
    """R_b = max |Re vals[b]| per copy (k,), from the copies' changes flat (k, n); None when a
    change is not finite (the dense path handles NaN and Inf as forward does)."""
    r = np.abs(flat.real).max(axis=1, initial=0.0)
    return r if np.all(np.isfinite(r)) else None


def allowance(x: np.ndarray, dtype: Any = np.float64) -> float:
    """How far rounding may move a distance computed from x in `dtype` (the copies' type:
    float32 rounds at its own ε): ROUNDING·ε·max |x|."""
    eps = float(np.finfo(np.result_type(dtype, np.float32)).eps)
    return ROUNDING * max(eps, float(np.finfo(np.float64).eps)) * float(np.abs(x.real).max(initial=0.0))


def report(on_kink: Any, k: int, dist: np.ndarray, plain: np.ndarray) -> None:
    """Tell on_kink the near positions' kink distances, dist (k, P, …) against plain (1 or k, P,
    …); with no near position, one position on the same side in both (no crossing)."""
    if dist.shape[1] == 0:
        dist, plain = np.full((k, 1), -1.0), np.full((1, 1), -1.0)
    on_kink(dist, plain)


class PlainCache:
    """One derived value of the plain pass, kept while the same input array comes back (the
    chunks of one node all push against the same plain values)."""

    def __init__(self) -> None:
        self._entry: tuple[Any, Any] = (None, None)  # (input, value): replaced whole, so a thread
        # never sees one input with another's value

    def get(self, x: np.ndarray, build: Any) -> Any:
        key, value = self._entry
        if key is not x:
            value = build(x)
            self._entry = (x, value)
        return value

    def __getstate__(self) -> dict:  # worker processes rebuild it
        return {"_entry": (None, None)}
