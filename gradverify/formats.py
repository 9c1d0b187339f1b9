"""Reports for CI: JUnit XML, GitHub Actions annotations, GitHub-flavoured markdown.
Each takes a Report and returns text; nothing here prints or exits."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .errors import one_line
from .results import NodeResult, Report


def _clean(text) -> str:
    """User text (node names, op labels, messages that quote them) on one line, with control
    characters, ANSI escapes, bidi overrides and lone surrogates spelled out (\\x1b, \\u202e):
    XML 1.0 cannot carry most of them, and none should act on the reader's terminal or page."""
    return one_line(str(text))


def worst_text(n: NodeResult) -> str:
    """"worst element [0,2]: analytic 0.05, numeric 0.0501 (rel err 2.0e-03)" and kinks' sides."""
    if n.worst is None and n.taylor is not None:  # --method taylor: no element was estimated
        return f"Taylor test: {n.taylor.reason}"
    if n.worst is None:
        return f"directional check, relative error {n.directional_error:.1e}" if n.mode == "directional" else ""
    e = n.element(n.worst)
    text = (f"worst element [{','.join(map(str, e.index))}]: analytic {e.analytic!r}, numeric {e.numeric!r} "
            f"(abs err {e.abs_error:.1e}, rel err {e.rel_error:.1e})" if e.analytic is not None
            and e.numeric is not None and e.abs_error is not None else
            f"worst element [{','.join(map(str, e.index))}]: {e.status}")
    if e.left is not None:
        text += f"; left derivative {e.left!r}, right {e.right!r}"
    return text


# ---- JUnit ---------------------------------------------------------------------------------


def junit_xml(report: Report, suite: str = "gradverify") -> str:
    """One <testcase> per node. A failing node is a <failure> carrying its worst element and the
    blamed op; a kink is <skipped> with its reason (a <failure> under --strict)."""
    suite = _clean(suite)
    c = report.counts()
    kinks_fail = report.strict
    failures = c["fail"] + (c["kink"] + c["undecided"] if kinks_fail else 0)
    skipped = 0 if kinks_fail else c["kink"] + c["undecided"]
    total_time = sum(n.seconds for n in report.nodes)
    root = ET.Element("testsuites", name="gradverify", tests=str(len(report.nodes)),
                      failures=str(failures), errors="0", skipped=str(skipped), time=f"{total_time:.6f}")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(report.nodes)), failures=str(failures),
                       errors="0", skipped=str(skipped), time=f"{total_time:.6f}")
    props = ET.SubElement(ts, "properties")
    for key in ("method", "dtype", "seed", "config", "mode"):
        ET.SubElement(props, "property", name=key, value=_clean(getattr(report.info, key)))
    for n in report.nodes:
        case = ET.SubElement(ts, "testcase", classname=f"{suite}.{n.kind}", name=_clean(n.label),
                             time=f"{n.seconds:.6f}")
        detail = _clean(f"node {n.label} ({n.op}, shape {n.shape_text}, {n.method}): {worst_text(n)}")
        blamed = [b for b in report.blame if n.name in (b.node, b.input)]
        if n.status == "fail":
            msg = detail
            if n.inherited:
                msg += "; inherited from a wrong gradient downstream"
            if n.problem:
                msg += f"; {_clean(n.problem)}"
            body = "\n".join([msg] + [f"blame: {_clean(b.message)}" for b in blamed])
            f = ET.SubElement(case, "failure", message=msg, type="GradientMismatch")
            f.text = body
        elif n.status == "kink":
            reason = (f"kink: {detail}; the analytic value lies between the one-sided derivatives "
                      "(a valid subgradient)")
            if kinks_fail:
                ET.SubElement(case, "failure", message=reason, type="Kink").text = reason
            else:
                ET.SubElement(case, "skipped", message=reason)
        elif n.status == "undecided":
            reason = f"undecided: {'; '.join(n.notes)}"
            if kinks_fail:
                ET.SubElement(case, "failure", message=reason, type="Undecided").text = reason
            else:
                ET.SubElement(case, "skipped", message=reason)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---- GitHub Actions ------------------------------------------------------------------------


def _esc_data(text: str) -> str:
    text = _clean(text)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _esc_prop(text: str) -> str:
    return _esc_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(report: Report, config_file: str | None) -> str:
    """`::error` for each failing node and each blamed op, `::warning` for each kink, each
    pointing at the config line that defines the node (its layer, op or value)."""
    lines = []

    def emit(level: str, n_line, title: str, message: str):
        where = []
        if config_file:
            where.append(f"file={_esc_prop(config_file)}")
            if n_line:
                where.append(f"line={n_line}")
        where.append(f"title={_esc_prop(title)}")
        lines.append(f"::{level} {','.join(where)}::{_esc_data(message)}")

    by_name = {n.name: n for n in report.nodes if n.of == "loss"}
    for b in report.blame:
        n = by_name.get(b.node)
        emit("error", n.line if n else None, f"gradverify: the backward of {b.node} is wrong", b.message)
    for n in report.nodes:
        if n.status == "fail":
            extra = " (inherited from a wrong gradient downstream)" if n.inherited else ""
            emit("error", n.line, f"gradverify: {n.label} FAIL",
                 f"{n.label} ({n.op}, {n.shape_text}): {worst_text(n)}{extra}")
        elif n.status == "kink":
            emit("error" if report.strict else "warning", n.line, f"gradverify: {n.label} KINK",
                 f"{n.label} ({n.op}, {n.shape_text}) sits on a kink: {worst_text(n)}")
        elif n.status == "undecided":
            emit("error" if report.strict else "warning", n.line, f"gradverify: {n.label} UNDECIDED",
                 "; ".join(n.notes))
    c = report.counts()
    lines.append(f"gradverify: {len(report.nodes)} nodes: {c['pass']} pass, {c['kink']} kink, "
                 f"{c['fail']} fail: {report.status.upper()}")
    return "\n".join(lines) + "\n"


# ---- markdown ------------------------------------------------------------------------------


#: characters that would make markdown of user text: emphasis, code, links, HTML, tables
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>~|])|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def _md(text: str) -> str:
    """User text as markdown that shows it as it is (an underscore inside a word, as in
    l2_softmax, is not emphasis and stays as it is)."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), _clean(text))


def _code(text: str) -> str:
    """A code span that holds any text: a fence longer than any run of backticks in it, and the
    table's pipes escaped (GFM splits cells at a pipe even inside a code span)."""
    text = _clean(text)
    fence = "`" * (max((len(r) for r in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def markdown(report: Report) -> str:
    """The check table as GitHub-flavoured markdown, for a PR comment or a job summary."""
    icon = {"pass": "✅ PASS", "kink": "⚠️ KINK", "fail": "❌ FAIL", "undecided": "❔ UNDECIDED"}
    out = [f"### gradverify: {icon[report.status]}", ""]
    cfg = report.info.config
    if cfg:
        out.append(f"Config {_code(Path(cfg).name)} · loss {report.loss!r}")
        out.append("")
    out.append("| node | kind | op | shape | method | max \\|analytic\\| | max abs err | max rel err | worst | status |")
    out.append("|---|---|---|---|---|---:|---:|---:|---|---|")
    for n in report.nodes:
        worst = "[" + ",".join(map(str, n.worst_index)) + "]" if n.worst_index is not None else "—"
        status = icon[n.status] + (" (inherited)" if n.inherited else "")
        out.append("| " + " | ".join((_code(n.label), n.kind, _md(n.op), n.shape_text, n.method,
                                      f"{n.max_analytic:.4g}", *((f"{n.max_abs_error:.1e}",
                                      f"{n.max_rel_error:.1e}") if n.mode != "taylor" else ("—", "—")),
                                      worst, status)) + " |")
    c = report.counts()
    out += ["", f"{len(report.nodes)} nodes: {c['pass']} pass, {c['kink']} kink, {c['fail']} fail."]
    for b in report.blame:
        out.append(f"\n**Blame:** {_md(b.message)}")
    return "\n".join(out) + "\n"
