"""Changes too small to reach a kink: the shortcut the kinked ops (relu, max pooling) take for a
full change whose real part is far smaller than the plain pass's distance to every kink.

A copy b changes its input by vals[b]; R_b = max |Re vals[b]| bounds how far any real value moves
(the complex step's imaginary part moves none: R_b is 0 there). A position whose plain kink
distance exceeds 2·R_b plus rounding keeps its side of the kink in copy b, so it crosses nothing
and its output follows a fixed branch (relu's x > 0, the window's plain maximum). Only the other
("near") pairs of copy and position are computed as the plain forward computes them, and only
they are shown to `on_kink`, as a (k, P, …) array padded with positions that cross nothing.
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


def allowance(x: np.ndarray) -> float:
    """How far rounding may move a distance computed from x: ROUNDING·ε·max |x|."""
    return ROUNDING * float(np.finfo(np.float64).eps) * float(np.abs(x.real).max(initial=0.0))


def report_near(on_kink: Any, k: int, copy: np.ndarray, dist: np.ndarray, plain: np.ndarray) -> None:
    """Tell on_kink the near pairs' kink distances: copy (P,) sorted, dist and plain (P, …) for
    the pairs, as (k, P_max, …) arrays padded with -1 (a distance on the same side in both, so no
    crossing in either method's test)."""
    counts = np.bincount(copy, minlength=k)
    width = max(int(counts.max(initial=0)), 1)
    slot = np.arange(len(copy)) - (np.cumsum(counts) - counts)[copy]
    tail = dist.shape[1:]
    d = np.full((k, width) + tail, -1.0, dtype=np.result_type(dist, float))
    p = np.full((k, width) + tail, -1.0, dtype=np.result_type(plain, float))
    d[copy, slot], p[copy, slot] = dist, plain
    on_kink(d, p)


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
