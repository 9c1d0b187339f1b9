"""Reports for CI: JUnit XML, GitHub Actions annotations, GitHub-flavoured markdown.
Each takes a Report and returns text; nothing here prints or exits."""
from __future__ import annotations

import re
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


def _failure_body(report: Report, n: NodeResult, detail: str) -> tuple[str, str]:
    """(message, body) of a failing node's <failure>: the worst element, the hint, the blame."""
    msg = detail
    if n.inherited:
        msg += "; inherited from a wrong gradient downstream"
    if n.problem:
        msg += f"; {_clean(n.problem)}"
    lines = [msg] + ([f"hint: {_clean(n.diagnosis)}"] if n.diagnosis else [])
    for b in report.blame:
        if n.name in (b.node, b.input):
            lines.append(f"blame: {_clean(b.message)}" + (f"; look at {_clean(b.where)}" if b.where else ""))
    return msg, "\n".join(lines)


def junit_xml(report: Report, suite: str = "gradverify") -> str:
    """One <testcase> per node. A failing node is a <failure> carrying its worst element, its hint
    and the blamed op; a kink is a passed test case with its explanation in <system-out> (a
    <failure> under --strict); an undecided node is <skipped> (a <failure> under --strict)."""
    import xml.etree.ElementTree as ET  # only for a JUnit report: not on every check

    suite = _clean(suite)
    c = report.counts()
    strict = report.strict
    failures = c["fail"] + (c["kink"] + c["undecided"] if strict else 0)
    skipped = 0 if strict else c["undecided"]
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
        if n.status == "fail":
            msg, body = _failure_body(report, n, detail)
            ET.SubElement(case, "failure", message=msg, type="GradientMismatch").text = body
        elif n.status == "kink":
            reason = (f"kink: {detail}; the analytic value lies between the one-sided derivatives "
                      "(a valid subgradient)")
            if strict:
                ET.SubElement(case, "failure", message=reason, type="Kink").text = reason
            else:
                ET.SubElement(case, "system-out").text = reason
        elif n.status == "undecided":
            reason = f"undecided: {'; '.join(n.notes)}"
            if strict:
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


#: GitHub shows at most 10 error and 10 warning annotations per step: past that they are lost
GITHUB_BUDGET = 10


def _fold(items: list, what: str) -> list:
    """At most GITHUB_BUDGET annotations of one level: the first 9 and one that counts the rest."""
    if len(items) <= GITHUB_BUDGET:
        return items
    rest = items[GITHUB_BUDGET - 1:]
    where = rest[0][1]
    names = ", ".join(i[2].removeprefix("gradverify: ") for i in rest[:6]) + (", …" if len(rest) > 6 else "")
    return items[:GITHUB_BUDGET - 1] + [(rest[0][0], where, f"gradverify: {len(rest)} more {what}", names)]


def github_items(report: Report, config_file: str | None) -> list:
    """(level, (file, line), title, message) of every annotation, most useful first: the blamed
    ops (at their Python function when it has one), the root failures, the inherited ones folded
    into one, then kinks and undecided nodes."""
    at = (lambda line: (config_file, line)) if config_file else (lambda line: (None, None))
    soft = "error" if report.strict else "warning"
    items: list = []
    by_name = {n.name: n for n in report.nodes if n.of == "loss"}
    for b in report.blame:
        n = by_name.get(b.node)
        where = (b.file, b.line) if b.file else at(n.line if n else None)
        msg = b.message + (f"; look at {b.where}" if b.where else "")
        items.append(("error", where, f"gradverify: the backward of {b.node} is wrong", msg))
    inherited = [n for n in report.nodes if n.status == "fail" and n.inherited]
    for n in report.nodes:
        if n.status == "fail" and not n.inherited:
            hint = f"; hint: {n.diagnosis}" if n.diagnosis else ""
            items.append(("error", at(n.line), f"gradverify: {n.label} FAIL",
                          f"{n.label} ({n.op}, {n.shape_text}): {worst_text(n)}{hint}"))
    if inherited:
        names = ", ".join(n.label for n in inherited)
        items.append(("error", at(None), f"gradverify: {len(inherited)} nodes FAIL (inherited)",
                      f"{names}: fail only because a gradient downstream of them is wrong (fix the blamed op first)"))
    for n in report.nodes:
        if n.status == "kink":
            items.append((soft, at(n.line), f"gradverify: {n.label} KINK",
                          f"{n.label} ({n.op}, {n.shape_text}) sits on a kink: {worst_text(n)}"))
        elif n.status == "undecided":
            items.append((soft, at(n.line), f"gradverify: {n.label} UNDECIDED", "; ".join(n.notes)))
    return items


def github_annotations(report: Report, config_file: str | None) -> str:
    """`::error` for each blamed op (at its Python function's file and line when it is the
    user's, else at the config line of its node) and each root failure, one for all inherited
    failures, `::warning` for each kink; at most GITHUB_BUDGET of each level (the rest counted in
    the last), then a summary line."""
    lines = annotation_lines(github_items(report, config_file))
    return "\n".join(lines + [f"gradverify: {github_summary(report)}"]) + "\n"


def github_summary(report: Report) -> str:
    c = report.counts()
    return f"{len(report.nodes)} nodes: {c['pass']} pass, {c['kink']} kink, {c['fail']} fail: {report.status.upper()}"


def annotation_lines(items: list) -> list[str]:
    """`::error`/`::warning` lines of (level, (file, line), title, message) items, each level
    folded into GitHub's budget of GITHUB_BUDGET per step."""
    errors = _fold([i for i in items if i[0] == "error"], "failures")
    warnings = _fold([i for i in items if i[0] == "warning"], "warnings")
    lines = []
    for level, (file, line), title, message in errors + warnings:
        where = [f"file={_esc_prop(file)}"] + ([f"line={line}"] if line else []) if file else []
        where.append(f"title={_esc_prop(title)}")
        lines.append(f"::{level} {','.join(where)}::{_esc_data(message)}")
    return lines


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


_ICON = {"pass": "✅ PASS", "kink": "⚠️ KINK", "fail": "❌ FAIL", "undecided": "❔ UNDECIDED"}
_MD_HEAD = ["| node | op | shape | max \\|analytic\\| | max rel err | worst | status |",
            "|---|---|---|---:|---:|---|---|"]


def _md_row(n: NodeResult) -> str:
    worst = "[" + ",".join(map(str, n.worst_index)) + "]" if n.worst_index is not None else "—"
    status = _ICON[n.status] + (" (inherited)" if n.inherited else "")
    return "| " + " | ".join((_code(n.label), _md(n.op), n.shape_text, f"{n.max_analytic:.4g}",
                              f"{n.max_rel_error:.1e}" if n.mode != "taylor" else "—", worst, status)) + " |"


def markdown(report: Report) -> str:
    """The check as GitHub-flavoured markdown for a PR comment or a job summary: the verdict and
    the blame first, then the nodes that do not pass with their hints, and the full table and
    how elements were judged folded in a <details> block (seven columns: fits a PR's width)."""
    c = report.counts()
    out = [f"### gradverify: {_ICON[report.status]}", ""]
    cfg = report.info.config
    head = f"Config {_code(Path(cfg).name)} · " if cfg else ""
    out += [f"{head}{len(report.nodes)} nodes: {c['pass']} pass, {c['kink']} kink, {c['fail']} fail"
            + (f", {c['undecided']} undecided" if c["undecided"] else "") + f" · loss {report.loss!r}", ""]
    for b in report.blame:
        out += [f"**Blame:** {_md(b.message)}" + (f"; look at {_code(b.where)}" if b.where else ""), ""]
    bad = [n for n in report.nodes if n.status != "pass"]
    if bad:
        out += _MD_HEAD + [_md_row(n) for n in bad] + [""]
    for n in bad:
        if n.diagnosis and not n.inherited:
            out += [f"- **Hint** for {_code(n.label)}: {_md(n.diagnosis)}"]
    if any(n.diagnosis and not n.inherited for n in bad):
        out.append("")
    out += ["<details><summary>All nodes and the rule</summary>", "", *_MD_HEAD,
            *[_md_row(n) for n in report.nodes], ""]
    from .render import rule_lines  # the same words as the terminal's footer
    out += [_md(line.strip()) + "  " for line in rule_lines(report)]
    out += ["", "</details>"]
    return "\n".join(out) + "\n"
