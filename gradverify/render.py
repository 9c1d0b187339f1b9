"""Results -> rich renderables and JSON documents. Never prints, never exits."""
from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .check import NodeResult, Report

STYLE = {"pass": "green", "kink": "yellow", "fail": "bold red", "nonfinite": "magenta"}
METHOD_NAMES = {"complex": "complex step", "central": "central differences",
                "richardson": "Richardson extrapolation", "forward": "forward differences"}


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
    text = Text(status.upper(), style=STYLE[status])
    if inherited:
        text.append(" (inherited)", style="dim")
    return text


def rule_lines(report: Report) -> list[str]:
    """How elements were judged: the rule, and rtol/atol/step per method used."""
    s = report.settings
    lines = ["rule: |analytic − numeric| ≤ atol + rtol·max(|analytic|, |numeric|) + the numeric "
             "estimate's error bar; at a kink, the analytic value must lie between the left and "
             "right one-sided derivatives"]
    for m in s["methods_used"]:
        lines.append(f"  {METHOD_NAMES[m]}: rtol {s['rtol'][m]:g}, atol {s['atol'][m]:g}; "
                     f"{s['step_rule'][m]}")
    if any(n.status == "kink" for n in report.nodes):
        lines.append(f"  kinks: {s['step_rule']['kink']}")
    return lines


def check_view(report: Report, command: str | None = None) -> Group:
    """The `check` table: one row per node, then the summary, blame and the rule used."""
    table = Table(title="gradverify check", title_justify="left", header_style="bold")
    for col, just in (("node", "left"), ("kind", "left"), ("op", "left"), ("shape", "left"),
                      ("method", "left"), ("max |analytic|", "right"), ("max abs err", "right"),
                      ("max rel err", "right"), ("worst", "left"), ("status", "left")):
        table.add_column(col, justify=just, no_wrap=col in ("node", "status"))
    for n in report.nodes:
        method = n.method + (" (dir.)" if n.mode == "directional" else "")
        rel = n.max_rel_error if n.size else n.directional_error
        table.add_row(n.name, n.kind, "—" if n.kind in ("input", "parameter") else n.op,
                      "×".join(map(str, n.shape)) or "scalar", method,
                      f"{_max_abs(n):.4g}", _err(n.max_abs_error) if n.size else "—", _err(rel),
                      _index(n.worst_index), status_text(n.status, n.inherited))
    parts: list = [table, summary_text(report)]
    for b in report.blame:
        parts.append(Text("blame: " + b.message, style="bold red"))
    if any(n.status == "kink" for n in report.nodes):
        parts.append(Text("KINK: perturbing the element crosses a point where an op is not "
                          "differentiable (e.g. ReLU at 0); the analytic gradient lies between the "
                          "one-sided derivatives, a valid subgradient. Not a failure unless --strict.",
                          style="yellow"))
    for line in rule_lines(report):
        parts.append(Text(line, style="dim"))
    worst = worst_node(report)
    if worst is not None and command:
        index = ",".join(map(str, worst.worst_index))
        probe = command.format(node=worst.name) + (f" --index {index}" if index else "")
        parts.append(Text(f"probe the worst element again: {probe}", style="dim"))
    return Group(*parts)


def _max_abs(n: NodeResult) -> float:
    return n.max_analytic


def worst_node(report: Report) -> NodeResult | None:
    """The failing node with the largest relative error, else the node with the largest error."""
    pool = [n for n in report.nodes if n.status == "fail" and n.size] or [n for n in report.nodes if n.size]
    if not pool:
        return None
    return max(pool, key=lambda n: (not n.inherited, n.max_rel_error))


def summary_text(report: Report) -> Text:
    c = report.counts()
    checked = sum(n.size for n in report.nodes)
    total = sum(n.total for n in report.nodes)
    mode = report.settings.get("mode", "full")
    if mode == "directional":
        dirs = sum(n.directions for n in report.nodes)
        what = f"{total} elements, directional ({dirs} directions, {checked} elements isolated)"
    elif checked < total:
        what = f"{checked} of {total} elements (sampled, seed {report.settings['sample_seed']})"
    else:
        what = f"{total} elements"
    text = Text(f"{len(report.nodes)} nodes, {what}: ")
    text.append(f"{c['pass']} pass", style=STYLE["pass"])
    text.append(", ")
    text.append(f"{c['kink']} kink", style=STYLE["kink"])
    text.append(", ")
    text.append(f"{c['fail']} fail", style=STYLE["fail"] if c["fail"] else "")
    text.append(f"  ·  loss {report.loss!r}")
    if report.loss_data is not None and report.loss_reg is not None:
        text.append(f" (loss_data {report.loss_data!r} + loss_reg {report.loss_reg!r})")
    text.append("  ·  ")
    text.append(report.status.upper(), style=STYLE[report.status])
    return text


def node_view(result: NodeResult, limit: int | None = None) -> Group:
    """The `node` table: one row per element."""
    table = Table(title=f"gradverify node {result.name}  ({result.op}, shape "
                        f"{'×'.join(map(str, result.shape)) or 'scalar'}, {METHOD_NAMES[result.method]})",
                  title_justify="left", header_style="bold")
    for col in ("index", "value", "analytic", "numeric", "± error", "left", "right", "abs err",
                "rel err", "status"):
        table.add_column(col, justify="left" if col in ("index", "status") else "right",
                         no_wrap=True)
    elements = result.elements()
    shown = elements if limit is None else elements[:limit]
    for e in shown:
        table.add_row(_index(e.index), _num(e.value, 8), _num(e.analytic), _num(e.numeric),
                      _err(e.error), _num(e.left), _num(e.right), _err(e.abs_error),
                      _err(e.rel_error), status_text(e.status))
    parts: list = [table]
    if len(shown) < len(elements):
        parts.append(Text(f"… {len(elements) - len(shown)} more elements (--limit 0 shows all, "
                          "--format json lists every one)", style="dim"))
    c = {s: int((result.statuses == s).sum()) for s in STYLE}
    nonfinite = f", {c['nonfinite']} nonfinite" if c["nonfinite"] else ""
    parts.append(Text(f"{result.size} elements: {c['pass']} pass, {c['kink']} kink, {c['fail']} fail{nonfinite}"
                      f"  ·  rtol {result.rtol:g}, atol {result.atol:g}  ·  "))
    parts[-1].append(result.status.upper(), style=STYLE[result.status])
    if result.problem:
        parts.append(Text(result.problem, style="bold red"))
    return Group(*parts)


# ---------------------------------------------------------------------------------------------
# JSON


def node_dict(n: NodeResult, all_elements: bool) -> dict:
    return {
        "name": n.name, "kind": n.kind, "op": n.op, "shape": list(n.shape), "method": n.method,
        "status": n.status, "inherited": n.inherited, "problem": n.problem,
        "size": n.size, "total": n.total, "mode": n.mode, "directions": n.directions,
        "directional_error": n.directional_error, "max_analytic": _finite(n.max_analytic),
        "max_abs_error": _finite(n.max_abs_error), "max_rel_error": _finite(n.max_rel_error),
        "worst_index": list(n.worst_index) if n.worst_index is not None else None,
        "rtol": n.rtol, "atol": n.atol,
        "elements": [e.to_dict() for e in n.elements(only_failing_or_kink=not all_elements)],
    }


def _finite(v):
    return v if v == v and abs(v) != float("inf") else None


def check_json(report: Report) -> dict:
    c = report.counts()
    return {
        "status": report.status,
        "exit_code": report.exit_code,
        "loss": report.loss,
        "loss_data": report.loss_data,
        "loss_reg": report.loss_reg,
        "settings": report.settings,
        "nodes": [node_dict(n, all_elements=False) for n in report.nodes],
        "blame": [b.to_dict() for b in report.blame],
        "summary": {"nodes": len(report.nodes), "pass": c["pass"], "kink": c["kink"],
                    "fail": c["fail"], "elements": sum(n.size for n in report.nodes),
                    "total_elements": sum(n.total for n in report.nodes), "strict": report.strict},
    }


def node_json(result: NodeResult, report: Report) -> dict:
    doc = node_dict(result, all_elements=True)
    doc["exit_code"] = report.exit_code
    doc["settings"] = report.settings
    return doc
