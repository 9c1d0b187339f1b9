"""The HTML report's pictures, as inline SVG text: the graph, a heat map of one node's relative
error, an analytic-vs-numeric scatter. Records in, markup out; nothing fetched, nothing scripted."""
from __future__ import annotations

import html

import numpy as np

from .errors import one_line
from .results import NodeResult, Report

#: fill per node status; an inherited failure is drawn faded
FILL = {"pass": "#b7e4b7", "kink": "#f5dc7a", "fail": "#f28b82", "undecided": "#a8d0f0"}
#: heat maps are folded to at most this many rows and columns (block maxima beyond)
MAX_CELLS = 160
#: a scatter draws at most this many points (three quarters of them failing ones, when there are)
MAX_POINTS = 2000


def esc(text) -> str:
    """User text (names, messages) as HTML/SVG text: on one line, control characters spelled out."""
    return html.escape(one_line(str(text)), quote=True)


def _layers(nodes: list[str], edges) -> dict[str, int]:
    """Each node's column: the longest path to it from a leaf (forward order, left to right)."""
    depth = {n: 0 for n in nodes}
    inputs: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        if src in inputs and dst in inputs:
            inputs[dst].append(src)
    for n in nodes:  # nodes come in topological order
        depth[n] = max((depth[i] + 1 for i in inputs[n]), default=0)
    return depth


def graph_svg(report: Report) -> str:
    """The network left to right: one box per node coloured by status (inherited failures faded),
    the blamed op outlined red and the edge whose gradient disagrees drawn thick and red."""
    nodes = [n.name for n in report.nodes if n.of == "loss"]
    status = {n.name: n for n in report.nodes if n.of == "loss"}
    depth = _layers(nodes, report.edges)
    columns: dict[int, list[str]] = {}
    for n in nodes:
        columns.setdefault(depth[n], []).append(n)
    box_w, box_h, gap_x, gap_y = 150, 40, 60, 18
    pos = {n: (20 + d * (box_w + gap_x), 20 + k * (box_h + gap_y)) for d, col in columns.items()
           for k, n in enumerate(col)}
    width = 40 + (max(columns, default=0) + 1) * (box_w + gap_x)
    height = 40 + max((len(c) for c in columns.values()), default=1) * (box_h + gap_y)
    blamed = {b.node for b in report.blame}
    wrong = {(b.input, b.node) for b in report.blame if b.input}
    out = [f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="the network">']
    for src, dst in report.edges:
        if src not in pos or dst not in pos:
            continue
        (sx, sy), (dx, dy) = pos[src], pos[dst]
        x1, y1, x2, y2 = sx + box_w, sy + box_h / 2, dx, dy + box_h / 2
        bad = (src, dst) in wrong
        cls = "edge wrong" if bad else "edge"
        out.append(f'<path class="{cls}" data-from="{esc(src)}" data-to="{esc(dst)}" d="M{x1},{y1} '
                   f'C{x1 + gap_x / 2},{y1} {x2 - gap_x / 2},{y2} {x2},{y2}" fill="none" '
                   f'stroke="{"#d00" if bad else "#999"}" stroke-width="{4 if bad else 1.2}"/>')
    for name in nodes:
        x, y = pos[name]
        res = status[name]
        faded = ' opacity="0.45"' if res.inherited else ""
        stroke = ' stroke="#d00" stroke-width="4"' if name in blamed else ' stroke="#555" stroke-width="1"'
        cls = "node" + (" blamed" if name in blamed else "") + (" inherited" if res.inherited else "")
        label = name if len(name) <= 20 else name[:19] + "…"
        out.append(f'<g class="{cls}" data-node="{esc(name)}" data-status="{res.status}"{faded}>'
                   f'<title>{esc(name)}: {esc(res.op)}, {res.shape_text}, {res.status.upper()}</title>'
                   f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="{FILL[res.status]}"{stroke}/>'
                   f'<text x="{x + 8}" y="{y + 16}" font-size="12" font-weight="bold">{esc(label)}</text>'
                   f'<text x="{x + 8}" y="{y + 31}" font-size="10">{res.shape_text} · {res.status.upper()}'
                   f'{" · BLAMED" if name in blamed else ""}</text></g>')
    out.append("</svg>")
    return "".join(out)


def fold(shape: tuple[int, ...]) -> tuple[int, int, str, str]:
    """(rows, columns, rows' label, columns' label) of a tensor laid out in 2-D: a matrix as it is;
    a vector as one row; higher ranks with every axis but the last folded into the rows."""
    if len(shape) == 0:
        return 1, 1, "scalar", ""
    if len(shape) == 1:
        return 1, shape[0], "", f"axis 0 (0…{shape[0] - 1})"
    rows = int(np.prod(shape[:-1]))
    axes = ", ".join(f"axis {k}" for k in range(len(shape) - 1))
    what = f"{axes} ({'×'.join(map(str, shape[:-1]))}, row-major)" if len(shape) > 2 else f"axis 0 (0…{shape[0] - 1})"
    return rows, shape[-1], what, f"axis {len(shape) - 1} (0…{shape[-1] - 1})"


def _colour(log_err: float) -> str:
    """log10 relative error from −16 (pale) to 0 and above (deep red)."""
    t = min(max((log_err + 16) / 16, 0.0), 1.0)
    return f"rgb({int(255 - 30 * t)},{int(245 - 215 * t)},{int(235 - 205 * t)})"


def _error_grid(n: NodeResult, rows: int, cols: int) -> np.ndarray:
    """log10 of each element's relative error laid out rows × cols (NaN: not checked); a failing
    or nonfinite element at least 0, so it always shows red."""
    grid = np.full(rows * cols, np.nan)
    rel = np.where(np.isfinite(n.rel_error), n.rel_error, 1.0)
    logs = np.log10(np.maximum(rel, 1e-16))
    bad = np.isin(n.statuses, ("fail", "nonfinite"))
    grid[n.flat] = np.where(bad, np.maximum(logs, 0.0), np.minimum(logs, -0.5))
    return grid.reshape(rows, cols)


def _pool(grid: np.ndarray) -> np.ndarray:
    """At most MAX_CELLS × MAX_CELLS cells: the largest value of each block (a bad element is never
    averaged away)."""
    rows, cols = grid.shape
    fr, fc = -(-rows // MAX_CELLS), -(-cols // MAX_CELLS)
    if fr == 1 and fc == 1:
        return grid
    padded = np.full((-(-rows // fr) * fr, -(-cols // fc) * fc), np.nan)
    padded[:rows, :cols] = grid
    blocks = padded.reshape(padded.shape[0] // fr, fr, padded.shape[1] // fc, fc)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmax(blocks, axis=(1, 3))


def heatmap_svg(n: NodeResult) -> str:
    """The node's relative error per element (log scale; failing elements red, grey not checked),
    2-D directly, higher ranks folded with the fold written on the axes."""
    rows, cols, row_label, col_label = fold(n.shape)
    grid = _pool(_error_grid(n, rows, cols))
    r, c = grid.shape
    cell = max(3, min(24, 480 // max(c, 1), 360 // max(r, 1)))
    left, top = 60, 24
    width, height = max(left + c * cell + 20, 420), top + r * cell + 44
    out = [f'<svg class="heatmap" data-node="{esc(n.name)}" xmlns="http://www.w3.org/2000/svg" '
           f'width="{width}" height="{height}" role="img" aria-label="relative error of {esc(n.name)}">']
    out.append(f'<text x="{left}" y="14" font-size="11">columns: {esc(col_label)}</text>')
    out.append(f'<text x="12" y="{top + r * cell / 2}" font-size="11" transform="rotate(-90 12 '
               f'{top + r * cell / 2})" text-anchor="middle">rows: {esc(row_label)}</text>')
    for i in range(r):
        for j in range(c):
            v = grid[i, j]
            fill = "#ddd" if np.isnan(v) else _colour(float(v))
            tip = "not checked" if np.isnan(v) else f"rel err 1e{v:.1f}"
            title = f"<title>[{i},{j}] {tip}</title>" if r * c <= 4096 else ""  # a tooltip per cell, if few
            out.append(f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell}" height="{cell}" '
                       f'fill="{fill}">{title}</rect>')
    note = "" if grid.shape == (rows, cols) else f" (blocks of {-(-rows // r)}×{-(-cols // c)}: their largest)"
    out.append(f'<text x="{left}" y="{top + r * cell + 16}" font-size="11">log10 relative error: '
               f'pale 1e-16 … red ≥ 1 (fails); grey: not checked{note}</text></svg>')
    return "".join(out)


def _spread(positions: np.ndarray, k: int) -> np.ndarray:
    """At most k of the positions, evenly spaced."""
    if positions.size <= k:
        return positions
    return positions[np.linspace(0, positions.size - 1, k).astype(int)]


def scatter_svg(n: NodeResult, size: int = 260) -> str:
    """Analytic (y) against numeric (x) per checked element, with the line y = x: a constant-factor
    bug is a straight line of another slope, a missing path a row of points on y = 0."""
    ok = np.isfinite(n.analytic) & np.isfinite(n.numeric)
    a, num, bad = n.analytic[ok], n.numeric[ok], np.isin(n.statuses[ok], ("fail", "nonfinite"))
    if a.size > MAX_POINTS:  # an even spread of the failing elements and of the rest
        keep = np.concatenate([_spread(np.flatnonzero(bad), MAX_POINTS * 3 // 4),
                               _spread(np.flatnonzero(~bad), MAX_POINTS // 4)])
        a, num, bad = a[keep], num[keep], bad[keep]
    m = float(max(np.abs(a).max(initial=0), np.abs(num).max(initial=0))) or 1.0
    pad = 30

    def at(v):
        return pad + (v + m) / (2 * m) * (size - 2 * pad)

    out = [f'<svg class="scatter" data-node="{esc(n.name)}" xmlns="http://www.w3.org/2000/svg" width="{size}" '
           f'height="{size}" role="img" aria-label="analytic against numeric for {esc(n.name)}">',
           f'<rect x="{pad}" y="{pad}" width="{size - 2 * pad}" height="{size - 2 * pad}" fill="none" stroke="#999"/>',
           f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{pad}" stroke="#4a4" stroke-dasharray="4 3"/>']
    for x, y, b in zip(num, a, bad):
        out.append(f'<circle cx="{at(x):.1f}" cy="{size - at(y):.1f}" r="2.5" fill="{"#d00" if b else "#369"}"/>')
    out.append(f'<text x="{size / 2}" y="{size - 8}" font-size="11" text-anchor="middle">numeric (±{m:.3g})</text>'
               f'<text x="10" y="{size / 2}" font-size="11" transform="rotate(-90 10 {size / 2})" '
               f'text-anchor="middle">analytic</text></svg>')
    return "".join(out)


#: a colour per curve of the step sweep
SWEEP_COLOURS = {"forward": "#d62728", "central": "#1f77b4", "richardson": "#2ca02c", "complex": "#9467bd",
                 "left": "#8c564b", "right": "#e377c2"}


def sweep_svg(errors: dict, steps, chosen: dict, width: int = 560, height: int = 360) -> str:
    """The step sweep as a log-log plot: |estimate − analytic| against the step h, one curve per
    method, a dashed line at the step gradverify uses for it (errors of 0 drawn at 1e-17)."""
    left, top, right, bottom = 60, 20, 130, 40
    lo_x, hi_x = float(np.log10(min(steps))), float(np.log10(max(steps)))
    lo_y, hi_y = -17.0, 1.0

    def at(h: float, err: float) -> tuple[float, float]:
        x = left + (hi_x - np.log10(h)) / (hi_x - lo_x) * (width - left - right)  # large steps left
        e = min(max(np.log10(max(err, 1e-300)), lo_y), hi_y)
        return x, top + (hi_y - e) / (hi_y - lo_y) * (height - top - bottom)

    out = [f'<svg class="sweep" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           'aria-label="error against step, log-log">',
           f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
           'fill="none" stroke="#999"/>']
    for e in range(-16, 1, 4):
        _, y = at(steps[0], 10.0 ** e)
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">1e{e}</text>')
    for h in steps:
        x, _ = at(h, 1.0)
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 14}" font-size="10" text-anchor="middle">'
                   f'{int(round(np.log10(h)))}</text>')
    for k, (method, errs) in enumerate(errors.items()):
        colour = SWEEP_COLOURS.get(method, "#333")
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (at(h, float(err)) for h, err in zip(steps, errs))
                          if np.isfinite(y))
        out.append(f'<polyline class="curve" data-method="{esc(method)}" points="{points}" fill="none" '
                   f'stroke="{colour}" stroke-width="1.8"/>')
        if method in chosen:
            x, _ = at(chosen[method], 1.0)
            out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="{colour}" '
                       'stroke-dasharray="4 3"/>')
        out.append(f'<text x="{width - right + 10}" y="{top + 14 + 16 * k}" font-size="11" fill="{colour}">'
                   f'{esc(method)}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" font-size="11" text-anchor="middle">'
               'log10(step h); dashed: the step gradverify uses</text>'
               f'<text x="14" y="{(top + height - bottom) / 2}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 14 {(top + height - bottom) / 2})">|estimate − analytic|</text></svg>')
    return "".join(out)
