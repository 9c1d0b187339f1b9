"""Results -> rich renderables and JSON documents. Never prints, never exits."""
from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .errors import one_line
from .numeric import METHODS
from .numeric.methods import PER_NODE
from .results import NodeResult, Report, Taylor

if TYPE_CHECKING:  # rich loads (~20 ms) only for what prints: not for --format json or github
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

STYLE = {"pass": "green", "kink": "yellow", "fail": "bold red", "undecided": "cyan", "nonfinite": "magenta",
         "floor": "dim"}


def as_text(renderable, width: int = 160) -> str:
    """A renderable as plain text, no colour."""
    import io

    from rich.console import Console
    buf = io.StringIO()
    Console(file=buf, width=width, no_color=True, highlight=False, color_system=None).print(renderable)
    return buf.getvalue()


def plain(text, style: str = "") -> Text:
    """User text (node names, op labels, messages quoting them) as it is: a Text, so "h[/]" or
    "[dropout]" is not rich markup, with control characters spelled out (an ANSI escape in a
    name must not colour the terminal)."""
    from rich.text import Text

    return Text(one_line(str(text)), style=style)


def _num(v, digits: int = 12) -> str:
    if v is None:
        return "—"
    return f"{v + 0.0:.{digits}g}"  # + 0.0: no "-0"


def _err(v) -> str:
    if v is None:
        return "—"
    return "0" if v == 0 else f"{v:.1e}"


def _index(idx) -> str:
    return "[" + ",".join(str(i) for i in idx) + "]" if idx is not None else "—"


def status_text(status: str, inherited: bool = False) -> Text:
    from rich.text import Text

    text = Text(status.upper(), style=STYLE[status])
    if inherited:
        text.append(" (inherited)", style="dim")
    return text


def rule_lines(report: Report) -> list[str]:
    """How elements were judged: the rule, and rtol/atol/step per method used."""
    s = report.info
    lines = ["rule: |analytic − numeric| ≤ atol + rtol·max(|analytic|, |numeric|) + the numeric "
             "estimate's error bar; at a kink, the analytic value must lie between the left and "
             "right one-sided derivatives"]
    if s.mode == "taylor":
        lines = ["rule: the remainder R(h) = |L(x + hv) − L(x) − h⟨g, v⟩| falls like h² when the "
                 "gradient g is right and like h when it is wrong; its order is fitted on the steps "
                 "above rounding and clear of kinks"]
    for m in s.methods_used:
        if m in PER_NODE:
            lines.append(f"  {METHODS[m].title}: {s.step_rule[m]}")
            continue
        lines.append(f"  {METHODS[m].title}: rtol {s.rtol[m]:g}, atol {s.atol[m]:g}; {s.step_rule[m]}")
    if "taylor" not in s.methods_used and any(n.taylor is not None for n in report.nodes):
        lines.append(f"  Taylor test (--taylor, a second opinion): {METHODS['taylor'].step_rule}")
    if any(n.status == "kink" for n in report.nodes):
        lines.append(f"  kinks: rtol {s.rtol['kink']:g}, atol {s.atol['kink']:g}; {s.step_rule['kink']}")
    if s.dtype == "float32":
        lines.append("  float32: the network and its backward run in float32; the numeric side re-runs "
                     "it in float64 from the same float32 values. 'in float64' is the same check with "
                     "the backward in float64: what remains of the error there is not float32's")
    lines.append(f"  dtype {s.dtype}, config seed {s.seed}" +
                 (f", sample seed {s.sample_seed}" if s.mode != "full" else ""))
    return lines


@dataclass(frozen=True)
class Column:
    """One column of the check table: its header (and a shorter one for narrow terminals), how a
    node fills it, and `drop`: narrow terminals drop the highest first (0: always shown)."""

    header: str
    short: str
    cell: Callable[[NodeResult], str | Text]
    numeric: bool = False
    drop: int = 0


def _rel(n: NodeResult) -> str:
    return _err(n.max_rel_error if n.size else (n.directional_error if n.mode == "directional" else None))


#: the check table's columns, left to right (a new column is one more row here)
CHECK_COLUMNS = [
    Column("node", "node", lambda n: plain(n.label)),
    Column("kind", "kind", lambda n: n.kind, drop=5),
    Column("op", "op", lambda n: "—" if n.kind in ("input", "parameter") else plain(n.op), drop=2),
    Column("shape", "shape", lambda n: n.shape_text, drop=1),
    Column("method", "method", lambda n: n.method + (" (dir.)" if n.mode == "directional" else ""), drop=6),
    Column("max |analytic|", "max|a|", lambda n: f"{n.max_analytic:.4g}", numeric=True),
    Column("max abs err", "abs err", lambda n: _err(n.max_abs_error) if n.size else "—", numeric=True, drop=4),
    Column("max rel err", "rel err", _rel, numeric=True),
    Column("in float64", "f64 err", lambda n: _err(n.float64_rel_error), numeric=True, drop=3),
    Column("order", "order", lambda n: order_text(n.taylor), numeric=True, drop=2),
    Column("worst", "worst", lambda n: _index(n.worst_index), drop=1),
    Column("status", "status", lambda n: status_text(n.status, n.inherited)),
]


def _cells_width(columns: list[Column], rows: list[list[str]], short: bool) -> int:
    """The table's width if no cell wraps: widest cell per column + 3 (padding, border), + 1."""
    total = 1
    for k, col in enumerate(columns):
        head = col.short if short else max(col.header.split(), key=len)
        total += max([len(head)] + [len(r[k]) for r in rows]) + 3
    return total


def check_columns(report: Report, width: int) -> tuple[list[Column], bool]:
    """The columns that fit `width` (dropping the least useful first) and whether to use the
    short headers. Numbers are never wrapped or cut: a column goes before its numbers would."""
    taylor = any(n.taylor is not None for n in report.nodes)
    # under --method taylor no element is estimated: its columns would be dashes, and the order is
    # the verdict, kept at any width
    only_taylor = bool(report.nodes) and all(n.mode == "taylor" for n in report.nodes)
    elementwise = ("max abs err", "max rel err", "worst")
    columns = [replace(c, drop=0) if only_taylor and c.header == "order" else c for c in CHECK_COLUMNS
               if (c.header != "in float64" or report.info.dtype == "float32") and (c.header != "order" or taylor)
               and not (only_taylor and c.header in elementwise)]
    rows = [[str(c.cell(n)) for c in columns] for n in report.nodes]
    short = _cells_width(columns, rows, False) > width
    while _cells_width(columns, rows, short) > width and any(c.drop for c in columns):
        k = max(range(len(columns)), key=lambda i: columns[i].drop)
        del columns[k]
        for r in rows:
            del r[k]
    return columns, short


def check_table(report: Report, width: int = 200, only_failing: bool = False) -> Table:
    """One row per node (`only_failing`: only the nodes that do not pass, when there are any)."""
    from rich.table import Table

    columns, short = check_columns(report, width)
    table = Table(title="gradverify check", title_justify="left", header_style="bold")
    for c in columns:
        table.add_column(c.short if short else c.header, justify="right" if c.numeric else "left",
                         no_wrap=c.numeric or c.header in ("node", "status"))
    nodes = report.nodes
    if only_failing and any(n.status != "pass" for n in nodes):
        nodes = tuple(n for n in nodes if n.status != "pass")
    for n in nodes:
        table.add_row(*(c.cell(n) for c in columns))
    return table


def blame_lines(report: Report) -> list[Text]:
    """"blame: …; look at conv_backward_naive (layers.py:324)", then each failing node's hint."""
    out = []
    for b in report.blame:
        out.append(plain("blame: " + b.message + (f"; look at {b.where}" if b.where else ""), style="bold red"))
    for n in report.nodes:
        if n.diagnosis and not n.inherited:  # one line per pattern (joined by "; " in the record)
            out += [plain(f"hint: {n.label}: {h}", style="red") for h in n.diagnosis.split("; ")]
    return out


def check_view(report: Report, command: str | None = None, width: int = 200, quiet: bool = False) -> Group:
    """The `check` table: one row per node, then the summary, blame, hints and the rule used.
    `quiet`: the rows that do not pass (all when every node passes), the summary, blame and hints."""
    from rich.console import Group
    from rich.text import Text

    table = check_table(report, width, only_failing=quiet)
    parts: list = [table, summary_text(report), *blame_lines(report)]
    if quiet:
        return Group(*parts)
    for n in report.nodes:
        parts += [plain("note: " + note, style=STYLE["undecided"]) for note in n.notes]
        if n.adjoint is not None:
            a = n.adjoint
            parts.append(plain(f"adjoint {n.label} ({n.op}): ⟨J·u, v⟩ = {_num(a.jvp, 10)} ({a.method}), "
                               f"⟨u, backward(v)⟩ = {_num(a.vjp, 10)}, relative error {_err(a.rel_error)}: "
                               f"{a.reason}", style=STYLE[a.verdict]))
        if n.taylor is not None and n.taylor.verdict != "pass" and n.mode != "taylor":
            parts.append(plain(f"taylor {n.label}: {n.taylor.reason}", style=STYLE[n.taylor.verdict]))
    if any(n.status == "kink" for n in report.nodes):
        parts.append(Text("KINK: perturbing the element crosses a point where an op is not "
                          "differentiable (e.g. ReLU at 0); the analytic gradient lies between the "
                          "one-sided derivatives, a valid subgradient. Not a failure unless --strict.",
                          style="yellow"))
    for line in rule_lines(report):
        parts.append(Text(line, style="dim"))
    worst = worst_node(report)
    if worst is not None and worst.worst_index is not None and command:
        index = ",".join(map(str, worst.worst_index))
        probe = command.format(node=shlex.quote(worst.name)) + (f" --index {index}" if index else "")
        parts.append(plain(f"probe the worst element again: {probe}", style="dim"))
    return Group(*parts)


def order_text(t: Taylor | None) -> Text:
    """The order column: the remainder's order and the Taylor verdict ("2.00 pass", "1.00 FAIL",
    "— kink", "— no verdict"); "affine" for a pass without an order (L linear along v)."""
    from rich.text import Text

    if t is None:
        return Text("—")
    order = f"{t.order:.2f}" if t.order is not None else ("affine" if t.verdict == "pass" else "—")
    word = {"pass": "pass", "fail": "FAIL", "kink": "kink", "undecided": "no verdict"}[t.verdict]
    return Text(f"{order} {word}", style=STYLE[t.verdict])


def worst_node(report: Report) -> NodeResult | None:
    """The node most worth probing again: a failing one (not inherited first, then the largest
    relative error), else one on a kink, else the one with the largest relative error."""
    pool = ([n for n in report.nodes if n.status == "fail" and n.size]
            or [n for n in report.nodes if n.status == "kink" and n.size]
            or [n for n in report.nodes if n.size])
    if not pool:
        return None
    return max(pool, key=lambda n: (not n.inherited, n.max_rel_error))


def summary_text(report: Report) -> Text:
    from rich.text import Text

    c = report.counts()
    checked = sum(n.size for n in report.nodes)
    total = sum(n.total for n in report.nodes)
    mode = report.info.mode
    if mode == "taylor":
        dirs = sum(n.directions for n in report.nodes)
        what = f"{total} elements, Taylor test ({dirs} directions)"
    elif mode == "directional":
        dirs = sum(n.directions for n in report.nodes)
        what = f"{total} elements, directional ({dirs} directions, {checked} elements isolated)"
    elif checked < total:
        what = f"{checked} of {total} elements (sampled, seed {report.info.sample_seed})"
    else:
        what = f"{total} elements"
    text = Text(f"{len(report.nodes)} nodes, {what}: ")
    text.append(f"{c['pass']} pass", style=STYLE["pass"])
    text.append(", ")
    text.append(f"{c['kink']} kink", style=STYLE["kink"])
    text.append(", ")
    text.append(f"{c['fail']} fail", style=STYLE["fail"] if c["fail"] else "")
    if c["undecided"]:
        text.append(", ")
        text.append(f"{c['undecided']} undecided", style=STYLE["undecided"])
    text.append(f"  ·  loss {report.loss!r}")
    if report.loss_data is not None and report.loss_reg is not None:
        text.append(f" (loss_data {report.loss_data!r} + loss_reg {report.loss_reg!r})")
    text.append("  ·  ")
    text.append(report.status.upper(), style=STYLE[report.status])
    return text


#: element statuses that are not a plain agreement, worst first (the order `node` lists them in)
PROBLEM_ORDER = ("fail", "nonfinite", "kink")


def node_order(result: NodeResult, sort: str = "status", failing: bool = False) -> np.ndarray:
    """Positions of the elements to list: `sort` "status" puts failing elements first (then
    nonfinite, kinks, the rest; index order within each), "error" the largest relative error
    first, "index" index order; `failing` keeps only the elements that do not pass."""
    pos = np.arange(result.size)
    if failing:
        pos = pos[np.isin(result.statuses, PROBLEM_ORDER)]
    if sort == "index":
        return pos
    rel = np.where(np.isfinite(result.rel_error[pos]), result.rel_error[pos], np.inf)
    if sort == "error":
        return pos[np.lexsort((pos, -rel))]
    rank = np.select([result.statuses[pos] == s for s in PROBLEM_ORDER], range(len(PROBLEM_ORDER)),
                     len(PROBLEM_ORDER))
    return pos[np.lexsort((pos, rank))]


def node_counts(result: NodeResult) -> Text:
    """"24 elements: 8 fail, 16 pass  ·  rtol …  ·  FAIL": the node's summary line."""
    from rich.text import Text

    c = {s: int((result.statuses == s).sum()) for s in STYLE}
    nonfinite = f", {c['nonfinite']} nonfinite" if c["nonfinite"] else ""
    nonfinite += f", {c['floor']} below the noise floor" if c["floor"] else ""
    text = Text(f"{result.size} elements: {c['fail']} fail, {c['kink']} kink, {c['pass']} pass{nonfinite}"
                f"  ·  rtol {result.rtol:g}, atol {result.atol:g}  ·  ")
    text.append(result.status.upper(), style=STYLE[result.status])
    return text


def node_view(result: NodeResult, limit: int | None = None, sort: str = "status",
              failing: bool = False) -> Group:
    """The `node` table: the counts first, then one row per element, failing elements first (see
    node_order), then the hint."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=plain(f"gradverify node {result.name}  ({result.op}, shape "
                             f"{result.shape_text}, {METHODS[result.method].title})", style="table.title"),
                  title_justify="left", header_style="bold")
    for col in ("index", "value", "analytic", "numeric", "± error", "left", "right", "abs err",
                "rel err", "status"):
        table.add_column(col, justify="left" if col in ("index", "status") else "right",
                         no_wrap=True)
    order = node_order(result, sort, failing)
    shown = order if limit is None else order[:limit]
    for p in shown:
        e = result.element(int(p))
        table.add_row(_index(e.index), _num(e.value, 8), _num(e.analytic), _num(e.numeric),
                      _err(e.error), _num(e.left), _num(e.right), _err(e.abs_error),
                      _err(e.rel_error), status_text(e.status))
    parts: list = [node_counts(result), table]
    if len(shown) < len(order):
        parts.append(Text(f"… {len(order) - len(shown)} more elements (--limit 0 shows all, "
                          "--format json lists every one)", style="dim"))
    if result.diagnosis:
        parts.append(plain(f"hint: {result.diagnosis}", style="red"))
    if result.problem:
        parts.append(plain(result.problem, style="bold red"))
    parts += [plain("note: " + note, style=STYLE["undecided"]) for note in result.notes]
    if result.taylor is not None:
        t = result.taylor
        line = Text("Taylor test: order ")
        line.append(order_text(t))
        line.append(f"  ·  {t.reason}; along each direction: "
                    + ", ".join("—" if o is None else f"{o:.2f}" for o in t.orders))
        parts.append(line)
    return Group(*parts)


# ---------------------------------------------------------------------------------------------
# JSON

#: the JSON report's version (`gradverify schema --report` publishes its schema): the minor number
#: grows with every field added, the major one would grow with a field removed or changed
SCHEMA_VERSION = "1.1"


def node_dict(n: NodeResult, all_elements: bool) -> dict:
    return {
        "name": n.name, "kind": n.kind, "op": n.op, "shape": list(n.shape), "method": n.method,
        "status": n.status, "inherited": n.inherited, "problem": n.problem,
        "size": n.size, "total": n.total, "mode": n.mode, "directions": n.directions,
        "directional_error": n.directional_error, "max_analytic": _finite(n.max_analytic),
        "of": n.of, "below_floor": int((n.statuses == "floor").sum()),
        "float64_max_rel_error": n.float64_rel_error,
        "max_abs_error": _finite(n.max_abs_error), "max_rel_error": _finite(n.max_rel_error),
        "worst_index": list(n.worst_index) if n.worst_index is not None else None,
        "rtol": n.rtol, "atol": n.atol,
        "notes": list(n.notes), "diagnosis": n.diagnosis,
        **({"order": n.taylor.to_dict()["order"], "taylor": n.taylor.to_dict()} if n.taylor else {}),
        **({"adjoint": n.adjoint.to_dict()} if n.adjoint else {}),
        "elements": [e.to_dict() for e in n.elements(only_failing_or_kink=not all_elements)],
    }


def _finite(v):
    return v if v == v and abs(v) != float("inf") else None


def check_json(report: Report) -> dict:
    c = report.counts()
    return {
        "schema_version": SCHEMA_VERSION,
        "status": report.status,
        "exit_code": report.exit_code,
        "loss": report.loss,
        "loss_data": report.loss_data,
        "loss_reg": report.loss_reg,
        "settings": report.settings,
        "nodes": [node_dict(n, all_elements=False) for n in report.nodes],
        "blame": [b.to_dict() for b in report.blame],
        "summary": {"nodes": len(report.nodes), "pass": c["pass"], "kink": c["kink"],
                    "fail": c["fail"], "undecided": c["undecided"], "elements": sum(n.size for n in report.nodes),
                    "total_elements": sum(n.total for n in report.nodes), "strict": report.strict},
    }


def node_json(result: NodeResult, report: Report) -> dict:
    doc = node_dict(result, all_elements=True)
    doc["exit_code"] = report.exit_code
    doc["settings"] = report.settings
    return doc
