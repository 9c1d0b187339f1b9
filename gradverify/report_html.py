"""`gradverify check --html report.html`: a self-contained page (inline CSS and SVG, no script, no
link to anything outside it: it works from file://, as a CI artifact and offline).

Order of the page: the verdict and summary; the blame (and where to look) and the hints; the graph
with failing nodes coloured, inherited ones faded, the blamed op and its disagreeing edge in red;
per failing node a heat map of relative error and an analytic-vs-numeric scatter; the table of
every node; how elements were judged. `Report._repr_html_` (Jupyter) shows the same body.
"""
from __future__ import annotations

from .html_svg import FILL, esc, graph_svg, heatmap_svg, scatter_svg, sweep_svg
from .render import _err, _index, node_order, rule_lines
from .results import NodeResult, Report

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 15px; }
.verdict-fail { color: #b00; } .verdict-pass { color: #070; } .verdict-kink { color: #a70; }
.verdict-undecided { color: #06a; }
.blame { border-left: 4px solid #d00; padding: 6px 12px; background: #fff3f2; margin: 8px 0; }
.hint { border-left: 4px solid #e80; padding: 6px 12px; background: #fff8ee; margin: 8px 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pictures { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.graph-box { overflow-x: auto; border: 1px solid #eee; }
.rule { color: #666; font-size: 12px; }
"""


def _status_cell(status: str, inherited: bool = False) -> str:
    return (f'<td style="background:{FILL[status]}">{status.upper()}'
            f'{" (inherited)" if inherited else ""}</td>')


def summary_html(report: Report) -> str:
    c = report.counts()
    checked = sum(n.size for n in report.nodes)
    undecided = f", {c['undecided']} undecided" if c["undecided"] else ""
    return (f'<h1 class="verdict verdict-{report.status}">gradverify: {report.status.upper()}</h1>'
            f'<p class="summary">{len(report.nodes)} nodes, {checked} elements checked: {c["pass"]} pass, '
            f'{c["kink"]} kink, {c["fail"]} fail{undecided} · loss {report.loss!r}'
            + (f' · config {esc(report.info.config)}' if report.info.config else "") + "</p>")


def blame_html(report: Report) -> str:
    parts = []
    for b in report.blame:
        where = f' <b>Look at <code>{esc(b.where)}</code></b>' if b.where else ""
        path = f' <span class="path">({esc(b.file)}, line {b.line})</span>' if b.file else ""
        parts.append(f'<div class="blame" id="blame-{esc(b.node)}"><b>Blame:</b> {esc(b.message)}.{where}{path}</div>')
    for n in report.nodes:
        if n.diagnosis and not n.inherited:
            parts.append(f'<div class="hint"><b>Hint</b> for <code>{esc(n.label)}</code>: {esc(n.diagnosis)}</div>')
    return "".join(parts)


def elements_table(n: NodeResult, limit: int) -> str:
    rows = []
    for p in node_order(n)[:limit]:
        e = n.element(int(p))
        rows.append(f"<tr><td>{_index(e.index)}</td><td class=num>{e.analytic!r}</td>"
                    f"<td class=num>{e.numeric!r}</td><td class=num>{_err(e.rel_error)}</td>"
                    f"{_status_cell(e.status) if e.status in FILL else f'<td>{e.status}</td>'}</tr>")
    return ("<table class=elements><tr><th>index</th><th>analytic</th><th>numeric</th><th>rel err</th>"
            "<th>status</th></tr>" + "".join(rows) + "</table>")


def node_section(n: NodeResult, elements: int = 0) -> str:
    """One node: its verdict and hint, the heat map and the scatter (and its worst elements)."""
    c = {s: int((n.statuses == s).sum()) for s in ("fail", "pass", "kink")}
    head = (f'<section class="node-detail" data-node="{esc(n.name)}"><h3>{esc(n.label)} '
            f'<small>({esc(n.op)}, {n.shape_text})</small>: {n.status.upper()}'
            f'{" (inherited)" if n.inherited else ""}</h3>'
            f'<p>{n.size} elements checked: {c["fail"]} fail, {c["kink"]} kink, {c["pass"]} pass; '
            f'max rel err {_err(n.max_rel_error)}</p>')
    hint = f'<div class="hint"><b>Hint:</b> {esc(n.diagnosis)}</div>' if n.diagnosis else ""
    problem = f'<div class="blame">{esc(n.problem)}</div>' if n.problem else ""
    pictures = ""
    if n.size:
        pictures = (f'<div class="pictures"><figure>{heatmap_svg(n)}<figcaption>relative error per element'
                    f'</figcaption></figure><figure>{scatter_svg(n)}<figcaption>analytic against numeric '
                    f'(dashed: equal)</figcaption></figure></div>')
    table = elements_table(n, elements) if elements and n.size else ""
    return head + hint + problem + pictures + table + "</section>"


def nodes_table(report: Report) -> str:
    rows = []
    for n in report.nodes:
        rows.append(f'<tr data-node="{esc(n.name)}"><td><code>{esc(n.label)}</code></td><td>{esc(n.op)}</td>'
                    f"<td>{n.shape_text}</td><td>{n.method}</td><td class=num>{n.max_analytic:.4g}</td>"
                    f"<td class=num>{_err(n.max_rel_error)}</td><td>{_index(n.worst_index)}</td>"
                    f"{_status_cell(n.status, n.inherited)}</tr>")
    return ("<table class=nodes><tr><th>node</th><th>op</th><th>shape</th><th>method</th><th>max |analytic|</th>"
            "<th>max rel err</th><th>worst</th><th>status</th></tr>" + "".join(rows) + "</table>")


def report_body(report: Report) -> str:
    """Everything but the page's head: Jupyter shows this."""
    failing = [n for n in report.nodes if n.status == "fail"]
    failing.sort(key=lambda n: n.inherited)  # the root failures first
    graph = (f'<h2>The network</h2><div class="graph-box">{graph_svg(report)}</div>'
             '<p class="rule">green pass · red fail (faded: inherited from a wrong gradient downstream) · '
             'yellow kink · blue undecided · red outline: the blamed op · thick red edge: the gradient that '
             'disagrees</p>') if report.edges else ""
    sections = "".join(node_section(n) for n in failing)
    rules = "".join(f'<div class="rule">{esc(line)}</div>' for line in rule_lines(report))
    return (f'<div class="gradverify-report"><style>{CSS}</style>{summary_html(report)}{blame_html(report)}{graph}'
            + (f"<h2>Failing nodes</h2>{sections}" if sections else "")
            + f"<h2>Every node</h2>{nodes_table(report)}<h2>How elements were judged</h2>{rules}</div>")


def html_page(report: Report | None, body: str = "") -> str:
    """The whole page: one report's, or (`report` None) `body`, several reports' bodies in turn."""
    if report is not None:
        title = f"gradverify: {report.status.upper()}" + (f" · {report.info.config}" if report.info.config else "")
        body = report_body(report)
    else:
        title = "gradverify"
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title></head><body>{body}</body></html>\n")


def html_report(report: Report) -> str:
    """One report's page."""
    return html_page(report)


def sweep_page(name: str, index, value: float, analytic: float, data: dict, chosen: dict) -> str:
    """`gradverify sweep --html`: the log-log plot and the table of errors per step and method."""
    from .render_sweep import sweep_errors
    errors = sweep_errors(data, analytic)
    rows = "".join(f"<tr><td class=num>{h:.0e}</td>" + "".join(f"<td class=num>{_err(float(errors[m][k]))}</td>"
                                                                for m in errors) + "</tr>"
                   for k, h in enumerate(data["steps"]))
    where = ",".join(map(str, index))
    body = (f'<div class="gradverify-report"><style>{CSS}</style><h1>gradverify sweep {esc(name)} [{where}]</h1>'
            f"<p>value {value:.8g}, analytic {analytic!r}{' (on a kink)' if data.get('kink') else ''}</p>"
            f"{sweep_svg(errors, [float(h) for h in data['steps']], chosen)}"
            "<table><tr><th>step h</th>" + "".join(f"<th>|err| {esc(m)}</th>" for m in errors) + f"</tr>{rows}</table>"
            "<p class=rule>forward differences fall as h until rounding (ε/h) takes over; central and Richardson "
            "fall faster and turn earlier; the complex step has no subtraction, so its error stays at rounding "
            "level for every small h.</p></div>")
    return html_page(None, body)
