"""CI formats from a failing zoo case (JUnit, GitHub annotations, markdown, SVG/HTML), the graph
picture, init, the schema, and the command-line conventions."""
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gradverify.build import ACTIVATIONS, LOSSES
from gradverify.cli import app

from conftest import CONFIGS, ROOT

ZOO = ROOT / "examples" / "zoo"
CASE = ZOO / "softmax_rowsum.yaml"  # 15 nodes, 10 fail (l2_lin and 9 inherited), l2_softmax blamed


@pytest.fixture
def runner():
    return CliRunner()


def test_junit(runner, tmp_path):
    out = tmp_path / "report.xml"
    res = runner.invoke(app, ["check", str(CASE), "--junit", str(out), "-q"])
    assert res.exit_code == 1
    import xmlschema
    xmlschema.XMLSchema(str(Path(__file__).parent / "junit.xsd")).validate(str(out))
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite.get("tests") == "15" and suite.get("failures") == "10" and suite.get("skipped") == "0"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert len(cases) == 15
    failure = cases["l2_lin"].find("failure")
    # the worst element named is the one with the largest relative error, read from the JSON
    doc = json.loads(runner.invoke(app, ["node", "l2_lin", "--config", str(CASE), "-f", "json"]).stdout)
    worst = max(doc["elements"], key=lambda e: e["rel_error"])
    index = ",".join(map(str, worst["index"]))
    assert f"worst element [{index}]: analytic" in failure.get("message") and "numeric" in failure.get("message")
    assert "blame: the backward of l2_softmax (buggy.py:softmax) is wrong" in failure.text
    assert cases["l2_softmax"].find("failure") is None


def test_junit_kinks_pass_with_system_out_or_fail_under_strict(runner, tmp_path):
    out = tmp_path / "r.xml"
    assert runner.invoke(app, ["check", str(CONFIGS / "seed.yaml"), "--junit", str(out)]).exit_code == 0
    import xmlschema
    xmlschema.XMLSchema(str(Path(__file__).parent / "junit.xsd")).validate(str(out))
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite.get("skipped") == "0" and suite.get("failures") == "0"
    assert not suite.findall("testcase/skipped")  # dashboards show skipped as not run: a kink ran and passed
    kinks = [c.get("name") for c in suite.findall("testcase") if c.find("system-out") is not None]
    assert kinks == ["x", "w1", "b1", "w1_out", "l1_lin"]
    assert "left derivative" in suite.find("testcase/system-out").text
    assert runner.invoke(app, ["check", str(CONFIGS / "seed.yaml"), "--junit", str(out), "--strict"]).exit_code == 1
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite.get("failures") == "5" and suite.get("skipped") == "0"
    assert [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None] == kinks


def _annotation(line: str):
    m = re.match(r"::(error|warning) (?:file=([^,:]+)(?:,line=(\d+))?,)?title=([^:]+)::(.*)", line)
    assert m, line
    return m.groups()


def test_github_annotations_blame_first_at_the_python_line_inherited_folded(runner):
    res = runner.invoke(app, ["check", str(CASE), "--format", "github"])
    assert res.exit_code == 1
    errors = [_annotation(line) for line in res.stdout.splitlines() if line.startswith("::error ")]
    # the blamed op (at the user's function), the one root failure, the nine inherited in one
    assert len(errors) == 3
    level, file, line, title, message = errors[0]
    assert "the backward of l2_softmax" in title and file.endswith("buggy.py")
    source = (CASE.parent / "buggy.py").read_text().splitlines()
    assert source[int(line) - 1].startswith("def softmax_backward(")  # read independently of gradverify
    assert "look at softmax_backward (buggy.py:" in message
    _, file, line, title, message = errors[1]
    assert file == str(CASE) and "l2_lin FAIL" in title
    assert "bias:" in CASE.read_text().splitlines()[int(line) - 1]
    _, file, line, title, message = errors[2]
    assert "9 nodes FAIL (inherited)" in title and line is None
    assert message.startswith("x, w1, b1, w1_out, l1_lin, l1_tanh, w2, b2, w2_out:")
    seed = runner.invoke(app, ["check", str(CONFIGS / "seed.yaml"), "--format", "github"]).stdout
    assert seed.count("::warning ") == 5 and "::error" not in seed


def test_github_annotations_stay_within_budget():
    """Twelve blamed ops, one root failure, the inherited ones: 14 errors folded into 10, the last
    counting the 5 it stands for."""
    from gradverify import api
    from gradverify.formats import GITHUB_BUDGET, github_annotations
    from gradverify.results import Blame

    report = api.check(CASE)
    blames = tuple(Blame(f"n{i}", "op", f"wrong {i}") for i in range(12))
    text = github_annotations(replace(report, blame=blames), str(CASE))
    errors = [line for line in text.splitlines() if line.startswith("::error")]
    assert len(errors) == GITHUB_BUDGET == 10
    assert errors[0].endswith("::wrong 0") and "5 more failures" in errors[-1]


def test_markdown_verdict_and_blame_first_rest_folded(runner):
    res = runner.invoke(app, ["check", str(CASE), "--format", "markdown", "-q"])
    assert res.exit_code == 1
    head, details = res.stdout.split("<details>")
    assert head.startswith("### gradverify: ❌ FAIL")
    assert head.index("**Blame:** the backward of l2_softmax") < head.index("| node |")
    rows = [line for line in head.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == ["x", "w1", "b1", "w1_out", "l1_lin", "l1_tanh", "w2", "b2",
                                              "w2_out", "l2_lin"]  # the failing ones only
    all_rows = [line for line in details.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in all_rows][-5:] == ["l2_softmax", "neg_log", "loss_data", "loss_reg", "loss"]
    assert all(r.count(" | ") == 6 for r in rows + all_rows)  # seven cells, no stray pipes
    assert details.rstrip().endswith("</details>") and "rule:" in details


def test_svg_and_html_save_the_table(runner, tmp_path):
    svg, html = tmp_path / "r.svg", tmp_path / "r.html"
    res = runner.invoke(app, ["check", str(CASE), "--svg", str(svg), "--html", str(html), "-q"])
    assert res.exit_code == 1
    assert svg.read_text().startswith("<svg") and "l2_softmax" in svg.read_text()
    assert "<html" in html.read_text().lower() and "l2_softmax" in html.read_text()


def test_graph_tree_and_dot(runner):
    res = runner.invoke(app, ["graph", str(CONFIGS / "skip.yaml"), "--check"])
    assert res.exit_code == 0
    for name in ("loss", "neg_log", "skip", "l1_tanh", "w1", "b2", "x"):
        assert name in res.stdout
    assert "↑ x" in res.stdout  # x reached twice: through the skip and through w1_out
    dot = runner.invoke(app, ["graph", str(CONFIGS / "seed.yaml"), "--dot"]).stdout
    assert dot.startswith("digraph gradverify {") and '"l1_lin" -> "l1_relu";' in dot


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_init_passes_check(runner, tmp_path, activation, loss):
    path = tmp_path / "g.yaml"
    res = runner.invoke(app, ["init", str(path), "--activation", activation, "--loss", loss])
    assert res.exit_code == 0, res.output
    check = runner.invoke(app, ["check", str(path), "--format", "json"])
    assert check.exit_code == 0, check.output
    assert json.loads(check.stdout)["status"] == "pass"


def test_init_refuses_to_overwrite(runner, tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("mine")
    res = runner.invoke(app, ["init", str(path)])
    assert res.exit_code == 2 and "not overwriting" in res.stderr and path.read_text() == "mine"


def test_schema_validates_every_bundled_config(runner):
    import jsonschema
    schema = json.loads(runner.invoke(app, ["schema"]).stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    files = sorted(CONFIGS.glob("*.yaml")) + sorted(ZOO.glob("*.yaml"))
    assert len(files) > 20
    for f in files:
        errors = list(validator.iter_errors(yaml.safe_load(f.read_text())))
        assert not errors, (f.name, errors[0].message)
    bad = yaml.safe_load((CONFIGS / "seed.yaml").read_text())
    bad["layres"] = bad.pop("layers")
    assert list(validator.iter_errors(bad))


def test_schema_file_is_current(runner):
    committed = json.loads((ROOT / "gradverify.schema.json").read_text())
    assert committed == json.loads(runner.invoke(app, ["schema"]).stdout)


def test_python_dash_m_and_version():
    res = subprocess.run([sys.executable, "-m", "gradverify", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("gradverify ")


def test_no_color(tmp_path):
    env = dict(os.environ, NO_COLOR="1", FORCE_COLOR="")
    res = subprocess.run([sys.executable, "-m", "gradverify", "check", str(CASE), "-q"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 1 and "\x1b[" not in res.stdout


# ---- names are data ---------------------------------------------------------------------------

#: node names that are rich markup, an ANSI escape, a bidi override, XML and markdown specials
ODD = ["h[/]", "[dropout]", "attn[q]", "\x1b[31mred\u202e<&>", "lo`ss|*x*"]
ODD_YAML = """values: {x: [[1.0, 2.0]], w: [[1.0], [2.0]]}
inputs: [x]
graph:
  - {name: "h[/]", op: matmul, inputs: [x, w]}
  - {name: "[dropout]", op: tanh, inputs: ["h[/]"]}
  - {name: "attn[q]", op: square, inputs: ["[dropout]"]}
  - {name: "\\e[31mred\\u202e<&>", op: square, inputs: ["attn[q]"]}
  - {name: "lo`ss|*x*", op: sum, inputs: ["\\e[31mred\\u202e<&>"]}
loss: "lo`ss|*x*"
"""


@pytest.fixture
def odd(tmp_path):
    path = tmp_path / "my net {1}.yaml"
    path.write_text(ODD_YAML)
    return path


def test_odd_names_print_as_they_are_in_the_table(runner, odd):
    """h[/] crashed the report with a MarkupError after the check ran; [dropout] printed empty."""
    res = runner.invoke(app, ["check", str(odd)])
    assert res.exit_code == 0, res.output
    for name in ODD[:3] + ["lo`ss|*x*", "\\x1b[31mred\\u202e<&>"]:  # control characters spelled out
        assert name in res.stdout, name
    assert "\x1b" not in res.stdout and "\u202e" not in res.stdout
    import shlex
    assert f"--config {shlex.quote(str(odd))}" in res.stdout  # the probe command pastes into a shell


def test_odd_names_in_node_graph_and_dot(runner, odd):
    res = runner.invoke(app, ["node", "h[/]", "--config", str(odd)])
    assert res.exit_code == 0 and "gradverify node h[/]" in res.stdout
    res = runner.invoke(app, ["graph", str(odd), "--check"])
    assert res.exit_code == 0 and "[dropout]" in res.stdout and "\x1b" not in res.stdout
    dot = runner.invoke(app, ["graph", str(odd), "--dot"]).stdout
    assert '"\\\\x1b[31mred\\\\u202e<&>" -> "lo`ss|*x*";' in dot


def test_odd_names_make_well_formed_junit(runner, odd, tmp_path):
    out = tmp_path / "j.xml"
    assert runner.invoke(app, ["check", str(odd), "--junit", str(out), "--strict"]).exit_code == 0
    import xmlschema
    xmlschema.XMLSchema(str(Path(__file__).parent / "junit.xsd")).validate(str(out))
    names = [c.get("name") for c in ET.parse(out).getroot().iter("testcase")]
    assert names == ["x", "w"] + ODD[:3] + ["\\x1b[31mred\\u202e<&>", "lo`ss|*x*"]


def test_odd_names_in_markdown_and_github(runner, odd):
    md = runner.invoke(app, ["check", str(odd), "--format", "markdown"]).stdout
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == 7 and all(r.count(" | ") == 6 for r in rows)  # no stray cell from the pipe
    assert "| ``lo`ss\\|*x*`` |" in md and "\x1b" not in md
    gh = runner.invoke(app, ["check", str(odd), "--format", "github", "--strict"]).stdout
    assert "\x1b" not in gh and "\u202e" not in gh


def test_markdown_escapes_op_labels_and_blame(runner, tmp_path):
    from gradverify.formats import _code, _md

    assert _md("a*b* <i>x</i> [l](u) l2_softmax _e_") == "a\\*b\\* \\<i\\>x\\</i\\> \\[l\\](u) l2_softmax \\_e\\_"
    assert _code("a`b") == "``a`b``" and _code("`x") == "`` `x ``"


# ---- the JSON report's schema -------------------------------------------------------------------

BUNDLED = sorted((ROOT / "examples" / "zoo").glob("*.yaml")) + sorted(
    (ROOT / "examples" / "cs231n" / "configs").glob("*.yaml")) + [
    CONFIGS / name for name in ("seed.yaml", "seed_custom_relu.yaml", "seed_graph.yaml", "skip.yaml", "smooth.yaml",
                                "smooth32.yaml", "cnn.yaml")]


def _named_everywhere(doc, schema, defs, where="report") -> None:
    """Every field of `doc` is named in `schema` (the published schema allows more, for readers of
    later versions; this keeps every field gradverify writes documented)."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    if isinstance(doc, dict) and "properties" in schema:
        for key, value in doc.items():
            assert key in schema["properties"], f"{where}.{key} is not in `gradverify schema --report`"
            _named_everywhere(value, schema["properties"][key], defs, f"{where}.{key}")
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for k, item in enumerate(doc):
            _named_everywhere(item, schema["items"], defs, f"{where}[{k}]")


@pytest.fixture(scope="module")
def report_schema():
    import jsonschema
    doc = json.loads(CliRunner().invoke(app, ["schema", "--report"]).stdout)
    jsonschema.Draft202012Validator.check_schema(doc)
    return doc


@pytest.mark.parametrize("config", BUNDLED, ids=lambda p: p.name)
def test_every_bundled_report_matches_the_published_schema(config, report_schema):
    import jsonschema

    from gradverify import api
    from gradverify.render import SCHEMA_VERSION
    assert config.exists(), config
    doc = api.check(config).to_dict()  # what check --format json prints (check_json)
    jsonschema.validate(doc, report_schema)
    _named_everywhere(doc, report_schema, report_schema["$defs"])
    assert doc["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize("args", [["--fast"], ["--sample", "3"], ["--split"], ["--strict"], ["--method", "central"],
                                  ["--method", "taylor"], ["--taylor"]])
def test_report_schema_holds_in_every_mode(args, report_schema, runner):
    import jsonschema
    res = runner.invoke(app, ["check", str(CONFIGS / "seed.yaml"), "-f", "json", *args])
    doc = json.loads(res.stdout)
    jsonschema.validate(doc, report_schema)
    _named_everywhere(doc, report_schema, report_schema["$defs"])
    node = json.loads(runner.invoke(app, ["node", "w1", "--config", str(CONFIGS / "seed.yaml"), "-f", "json"]).stdout)
    jsonschema.validate(node, report_schema["$defs"]["node"] | {"$defs": report_schema["$defs"]})


# ---- terminals: 80 columns, -q, fixed-width pictures; node's order; the graph's marks ------------


def _numbers(text: str) -> list[str]:
    return re.findall(r"-?\d+(?:\.\d+)?(?:e[+-]\d+)?", text)


@pytest.mark.parametrize("width", [80, 120, 200])
def test_check_table_numbers_are_never_cut(runner, width):
    """At every width each node's max |analytic| and max rel err appear whole (compared with the JSON
    report's numbers, formatted independently), and no line is wider than the terminal."""
    res = runner.invoke(app, ["check", str(CASE)], env={"COLUMNS": str(width)})
    doc = json.loads(runner.invoke(app, ["check", str(CASE), "-f", "json"]).stdout)
    assert all(len(line) <= width for line in res.stdout.splitlines())
    rows = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if line.startswith("│ ")}
    for n in doc["nodes"]:
        row = rows[n["name"]]
        assert f"{n['max_analytic']:.4g}" in _numbers(row)
        rel = n["max_rel_error"]
        assert ("0" if rel == 0 else f"{rel:.1e}") in _numbers(row)
    header = res.stdout.split("\n", 3)[2]
    assert ("kind" in header) == (width >= 120)  # low-value columns go first at 80


def test_quiet_is_the_failing_rows_and_the_verdict(runner):
    res = runner.invoke(app, ["check", str(CASE), "-q"], env={"COLUMNS": "120"})
    rows = [line.split("│")[1].strip() for line in res.stdout.splitlines() if line.startswith("│ ")]
    assert rows == ["x", "w1", "b1", "w1_out", "l1_lin", "l1_tanh", "w2", "b2", "w2_out", "l2_lin"]
    assert "FAIL" in res.stdout and "blame: the backward of l2_softmax" in res.stdout
    assert "rule:" not in res.stdout and "probe the worst element" not in res.stdout
    passing = runner.invoke(app, ["check", str(CONFIGS / "smooth.yaml"), "-q"]).stdout
    assert "PASS" in passing and "rule:" not in passing and passing.count("│ ") > 3  # every row when all pass


def test_svg_is_drawn_at_a_fixed_width(runner, tmp_path):
    pictures = []
    for width in ("60", "250"):
        out = tmp_path / f"r{width}.svg"
        assert runner.invoke(app, ["check", str(CASE), "--svg", str(out), "-q"], env={"COLUMNS": width}).exit_code == 1
        pictures.append(re.search(r'<svg[^>]*viewBox="([^"]+)"', out.read_text()).group(1))
    assert pictures[0] == pictures[1]


def test_node_lists_failing_elements_first_with_the_counts_on_top(runner):
    cfg = str(ROOT / "examples" / "cs231n" / "configs" / "embedding.yaml")
    doc = json.loads(runner.invoke(app, ["node", "W", "--config", cfg, "-f", "json"]).stdout)
    statuses = [e["status"] for e in doc["elements"]]
    out = runner.invoke(app, ["node", "W", "--config", cfg]).stdout
    first = out.splitlines()[0]
    assert first.startswith(f"{len(statuses)} elements: {statuses.count('fail')} fail")
    shown = [line.split("│")[-2].strip().lower() for line in out.splitlines() if line.startswith("│ [")]
    assert shown == sorted(statuses, key=lambda s: (s != "fail", s != "kink"))  # stable: failing, kinks, rest
    failing = runner.invoke(app, ["node", "W", "--config", cfg, "--failing"]).stdout
    assert all("PASS" not in line for line in failing.splitlines() if line.startswith("│ ["))
    by_error = runner.invoke(app, ["node", "W", "--config", cfg, "--sort", "error"]).stdout
    rels = [float(line.split("│")[-3]) for line in by_error.splitlines() if line.startswith("│ [")]
    assert rels == sorted(rels, reverse=True) and len(rels) == len(statuses)


def test_graph_marks_the_blamed_op_and_the_disagreeing_edge(runner):
    tree = runner.invoke(app, ["graph", str(CASE), "--check"]).stdout
    blamed = [line for line in tree.splitlines() if "BLAMED" in line]
    assert len(blamed) == 1 and "l2_softmax" in blamed[0]
    edge = [line for line in tree.splitlines() if "disagrees" in line]
    assert len(edge) == 1 and "l2_lin" in edge[0] and "the gradient l2_softmax sends here" in edge[0]
    dot = runner.invoke(app, ["graph", str(CASE), "--check", "--dot"]).stdout
    assert re.search(r'"l2_softmax" \[label="[^"]*BLAMED[^"]*".*color="red", penwidth=3\];', dot)
    assert '"l2_lin" -> "l2_softmax" [color="red", penwidth=3, label="gradient disagrees"];' in dot
    assert dot.count("penwidth=3") == 2


def test_odd_names_are_text_in_the_html_report(runner, odd, tmp_path):
    out = tmp_path / "r.html"
    assert runner.invoke(app, ["check", str(odd), "--html", str(out)]).exit_code == 0
    text = out.read_text(encoding="utf-8")
    assert "\\x1b[31mred\\u202e&lt;&amp;&gt;" in text  # escaped, control characters spelled out
    assert "<&>" not in text and "\x1b" not in text and "\u202e" not in text
    assert text.count("<svg") == text.count("</svg>")
