"""`gradverify sweep`: the numeric error of each method against the step, as a table, a text
log-log plot and JSON, and the Taylor remainder below it. Returns renderables; never prints."""
from __future__ import annotations

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from .numeric import METHODS, SWEEP_METHODS
from .render import STYLE, _err, _finite, plain
from .render_taylor import remainder_plot

#: each curve's letter in the plot: the methods' own, then the one-sided derivatives at a kink
SWEEP_MARKS = {**{m: METHODS[m].mark for m in SWEEP_METHODS}, "left": "<", "right": ">"}


def sweep_errors(data: dict, analytic: float) -> dict:
    """|estimate − analytic| per method and step."""
    return {m: np.abs(data[m] - analytic) for m in SWEEP_MARKS if m in data}


def sweep_plot(data: dict, analytic: float, chosen: dict, rows: int = 17) -> str:
    """A log-log plot in text: x = step (1e-1 … 1e-14, left to right), y = error (1 … 1e-16)."""
    errors = sweep_errors(data, analytic)
    steps = data["steps"]
    col_w = 4
    width = col_w * len(steps)
    grid = [[" "] * width for _ in range(rows)]
    top, bottom = 0.0, -16.0

    def row_of(err):
        e = np.log10(max(err, 1e-300))
        e = min(max(e, bottom), top)
        return int(round((top - e) / (top - bottom) * (rows - 1)))

    for m, errs in errors.items():
        for k, err in enumerate(errs):
            if not np.isfinite(err):
                continue
            r, c = row_of(err), k * col_w + 1 + list(SWEEP_MARKS).index(m) % 3
            grid[r][c] = SWEEP_MARKS[m] if grid[r][c] == " " else "*"
    lines = []
    for r in range(rows):
        label = f"1e{int(round(top - r * (top - bottom) / (rows - 1))):+03d}" if r % 4 == 0 else ""
        lines.append(f"{label:>6} |" + "".join(grid[r]))
    lines.append(" " * 7 + "+" + "-" * width)
    axis = "".join(f"{int(np.round(np.log10(s))):>+{col_w}d}"[:col_w] for s in steps)
    lines.append(" " * 8 + axis + "   log10(step)")
    marks = [" "] * width
    for m, h in chosen.items():
        k = int(np.argmin(np.abs(np.log10(steps) - np.log10(h))))
        marks[k * col_w + 1 + list(SWEEP_MARKS).index(m) % 3] = "^"
    lines.append(" " * 8 + "".join(marks) + "   ^ the step gradverify uses")
    legend = "  ".join(f"{v} {k}" for k, v in SWEEP_MARKS.items() if k in errors)
    lines.append(" " * 8 + legend + "  (* overlap)")
    return "\n".join(lines)


def sweep_view(name: str, index, value: float, analytic: float, data: dict, chosen: dict) -> Group:
    errors = sweep_errors(data, analytic)
    table = Table(title=plain(f"gradverify sweep {name} [{','.join(map(str, index))}]  value {value:.8g}, "
                             f"analytic {analytic:.15g}" + ("  (on a kink)" if data.get("kink") else ""),
                             style="table.title"),
                  title_justify="left", header_style="bold")
    table.add_column("step h", justify="right")
    for m in errors:
        table.add_column(f"|err| {m}", justify="right")
    for k, h in enumerate(data["steps"]):
        table.add_row(f"{h:.0e}", *(_err(float(errors[m][k])) for m in errors))
    note = ("forward differences fall as h until rounding (ε/h) takes over: the V; central and "
            "Richardson fall faster and turn earlier; the complex step has no subtraction, so its "
            "error stays at rounding level for every small h.")
    parts: list = [table, Text(sweep_plot(data, analytic, chosen)), Text(note, style="dim")]
    if "taylor" in data:
        parts += remainder_view(data["taylor"], index)
    return Group(*parts)


def remainder_view(t: dict, index) -> list:
    """The Taylor remainder's heading, plot and reading."""
    order = "—" if t["order"] is None else f"{t['order']:.2f}"
    head = Text(f"Taylor remainder R(h) = |L(x + h·e) − L(x) − h·analytic| along element "
                f"[{','.join(map(str, index))}]: order {order} ")
    head.append(t["verdict"].upper(), style=STYLE[t["verdict"]])
    if t["verdict"] != "pass" or t["order"] is None:
        head.append(f"  ({t['reason']})")
    note = ("R falls like h² (slope 2) when the analytic value is right and like h (slope 1) when "
            "it is wrong; at large h higher orders bend it, at small h rounding (ε|L|) makes it "
            "flat or noisy. The order is fitted on the steps marked o.")
    return [head, Text(remainder_plot(t["steps"], t["remainder"], t["clean"])), Text(note, style="dim")]


def sweep_json(name, index, value, analytic, data, chosen) -> dict:
    errors = sweep_errors(data, analytic)
    return {"name": name, "index": list(index), "value": value, "analytic": analytic,
            "kink": data.get("kink", False), "steps": [float(h) for h in data["steps"]],
            "estimates": {m: [_finite(float(v)) for v in data[m]] for m in errors},
            "errors": {m: [_finite(float(v)) for v in errors[m]] for m in errors},
            "chosen_steps": chosen,
            **({"taylor": {"steps": [float(h) for h in data["taylor"]["steps"]],
                           "remainder": [_finite(float(r)) for r in data["taylor"]["remainder"]],
                           "fitted": [bool(c) for c in data["taylor"]["clean"]],
                           "order": data["taylor"]["order"], "verdict": data["taylor"]["verdict"],
                           "reason": data["taylor"]["reason"]}} if "taylor" in data else {})}
