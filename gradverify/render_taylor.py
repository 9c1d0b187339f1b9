"""The Taylor remainder's plot for `gradverify sweep`: log R against log h in text, in the style
of render_sweep.sweep_plot. Returns strings; never prints."""
from __future__ import annotations

import numpy as np


def remainder_plot(steps: np.ndarray, remainder: np.ndarray, clean: np.ndarray, rows: int = 17) -> str:
    """log R against log h in text (h falling left to right, as in the sweep plot): R's points
    ("o" where the order is fitted, "." elsewhere) and reference lines of slope 2 and 1 ("2",
    "1") a decade above the smallest fitted step (else the smallest finite one): R runs parallel
    to the one whose order it has."""
    logh = np.log10(steps)
    with np.errstate(divide="ignore", invalid="ignore"):
        logr = np.log10(remainder)
    finite = np.isfinite(logr)
    if not finite.any():
        return "        (no finite remainder to plot)"
    anchor = int(np.flatnonzero(clean)[-1]) if clean.any() else int(np.flatnonzero(finite)[-1])
    ref = {s: logr[anchor] + 1 + s * (logh - logh[anchor]) for s in (2, 1)}  # a decade above R
    top = float(np.ceil(np.nanmax(np.where(finite, logr, np.nan))))
    bottom = float(np.floor(max(np.nanmin(np.where(finite, logr, np.nan)), top - 20)))
    bottom = top - 4 * np.ceil((top - bottom) / 4)  # every fourth row on a whole decade
    grid = [[" "] * (2 * len(steps)) for _ in range(rows)]

    def put(k: int, y: float, mark: str) -> None:
        if np.isfinite(y) and bottom <= y <= top:
            r = int(round((top - y) / (top - bottom) * (rows - 1)))
            if grid[r][2 * k] in (" ", "1", "2") or mark in "o.":
                grid[r][2 * k] = mark

    for s in (1, 2):
        for k in range(len(steps)):
            put(k, float(ref[s][k]), str(s))
    for k in range(len(steps)):
        put(k, float(logr[k]), "o" if clean[k] else ".")
    lines = []
    for r in range(rows):
        y = top - r * (top - bottom) / (rows - 1)
        label = f"1e{int(round(y)):+03d}" if r % 4 == 0 else ""
        lines.append(f"{label:>6} |" + "".join(grid[r]))
    lines.append(" " * 7 + "+" + "-" * (2 * len(steps)))
    axis = [" "] * (2 * len(steps))
    for k in range(0, len(steps), 5):
        text = f"{logh[k]:.1f}"
        axis[2 * k:2 * k + len(text)] = text
    lines.append(" " * 8 + "".join(axis)[:2 * len(steps)] + "   log10(h)")
    lines.append(" " * 8 + "o R(h), fitted  . R(h), not fitted  2 slope 2  1 slope 1 (a decade above R)")
    return "\n".join(lines)
