"""The HTML report (`check --html`): self-contained, rendered in a real browser (headless Chromium,
Debian's `chromium`; .ci/run installs it) with the network blocked, asserting on the DOM the
browser built: the graph, one heat map per failing node, the blame; and no console errors."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gradverify import api
from gradverify.cli import app
from gradverify.html_svg import fold, heatmap_svg
from gradverify.report_html import html_report

from conftest import CONFIGS, ROOT

CASE = ROOT / "examples" / "zoo" / "softmax_rowsum.yaml"  # 10 nodes fail (1 root + 9 inherited), l2_softmax blamed
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed here (Debian package "
                                   "`chromium`; .ci/run installs it): the browser test cannot run")


def _render(page: Path, tmp_path: Path) -> tuple[str, str]:
    """(the DOM Chromium built from the page, its log) with every network request refused."""
    res = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--enable-logging=stderr", "--v=0",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout, res.stderr


def _console_messages(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "report.html"
    res = CliRunner().invoke(app, ["check", str(CASE), "--html", str(out), "-q"])
    assert res.exit_code == 1
    return out


def test_page_is_self_contained(page):
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    # nothing to fetch: no script, stylesheet link, image or frame; the only URL is SVG's namespace
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", text, re.I)
    assert set(re.findall(r"https?://[^\s\"'<>)]+", text)) == {"http://www.w3.org/2000/svg"}
    assert "url(" not in text and "@import" not in text


@needs_browser
def test_browser_renders_graph_heat_maps_and_blame(page, tmp_path):
    doc = json.loads(CliRunner().invoke(app, ["check", str(CASE), "-f", "json"]).stdout)  # the independent count
    failing = [n["name"] for n in doc["nodes"] if n["status"] == "fail"]
    dom, log = _render(page, tmp_path)
    assert _console_messages(log) == []
    graph = re.search(r'<svg class="graph".*?</svg>', dom, re.S)
    assert graph, "no graph in the rendered page"
    drawn = re.findall(r'<g class="node[^"]*" data-node="([^"]+)"', graph.group(0))
    assert sorted(drawn) == sorted(n["name"] for n in doc["nodes"])
    assert re.search(r'<g class="node blamed" data-node="l2_softmax"', graph.group(0))
    assert re.search(r'<path class="edge wrong" data-from="l2_lin" data-to="l2_softmax"', graph.group(0))
    assert len(re.findall(r'class="node[^"]*inherited"', graph.group(0))) == 9
    heat = re.findall(r'<svg class="heatmap" data-node="([^"]+)"', dom)
    assert sorted(heat) == sorted(failing) and len(heat) == 10
    assert len(re.findall(r'<svg class="scatter"', dom)) == 10
    blame = re.search(r'<div class="blame"[^>]*>(.*?)</div>', dom, re.S).group(1)
    assert "the backward of l2_softmax" in blame and "softmax_backward (buggy.py:16)" in blame
    assert dom.index('class="blame"') < dom.index('class="graph"')  # the blame before the pictures


@needs_browser
def test_the_console_check_can_fail(tmp_path):
    """The check above would see a console error (a page made to log one)."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><script>console.error("boom")</script></body></html>')
    _, log = _render(bad, tmp_path)
    assert any('"boom"' in line for line in _console_messages(log))


def test_one_heat_map_and_scatter_per_failing_node_without_a_browser():
    report = api.check(CASE)
    text = html_report(report)
    assert text.count('<svg class="heatmap"') == sum(n.status == "fail" for n in report.nodes) == 10
    assert text.count('<svg class="scatter"') == 10
    passing = api.check(CONFIGS / "smooth.yaml")
    assert passing.status == "pass" and '<svg class="heatmap"' not in html_report(passing)


def test_higher_ranks_fold_with_labelled_axes():
    assert fold((2, 3, 5, 5)) == (30, 5, "axis 0, axis 1, axis 2 (2×3×5, row-major)", "axis 3 (0…4)")
    assert fold((4, 6)) == (4, 6, "axis 0 (0…3)", "axis 1 (0…5)")
    assert fold((7,))[:2] == (1, 7) and fold(())[:2] == (1, 1)


def test_heat_map_marks_exactly_the_failing_elements():
    """A conv input whose border we broke: the red cells of the heat map are the border's."""
    def tanh_forward(x):
        return np.tanh(x), x

    def border_backward(dout, x):
        g = dout * (1 - np.tanh(x) ** 2)
        g[..., 0, :] = 0.0
        return g
    x = np.random.default_rng(3).normal(size=(1, 2, 4, 4))
    node = api.check_op(tanh_forward, border_backward, x).node("x")
    svg = heatmap_svg(node)
    cells = re.findall(r'<rect x="\d+" y="\d+" width="\d+" height="\d+" fill="([^"]+)"><title>\[(\d+),(\d+)\]', svg)
    assert len(cells) == 8 * 4  # rows: 1·2·4 folded, columns: 4
    red = {(int(i), int(j)) for fill, i, j in cells if fill == "rgb(225,30,30)"}
    assert red == {(i, j) for i in (0, 4) for j in range(4)}  # row 0 of each channel's 4×4 image


def test_jupyter_html_and_one_line_repr():
    report = api.check(CASE)
    body = report._repr_html_()
    assert '<svg class="graph"' in body and body.count('<svg class="heatmap"') == 10 and "Blame:" in body
    assert "\n" not in repr(report) and repr(report).startswith("<Report fail")
    node = report.node("l2_lin")
    assert '<svg class="heatmap"' in node._repr_html_() and "\n" not in repr(node)


def test_a_large_node_stays_a_page_of_bounded_size():
    """A failing 100×1000 node (all elements, built by hand): the heat map shows blocks (a bad
    element is never averaged away), the scatter at most MAX_POINTS points."""
    from dataclasses import replace

    from gradverify.html_svg import MAX_CELLS, MAX_POINTS, scatter_svg
    node = api.check(CASE).node("l2_lin")
    size, shape = 100_000, (100, 1000)
    num = np.random.default_rng(0).normal(size=size)
    statuses = np.full(size, "pass", dtype="<U9")
    statuses[777] = "fail"  # one bad element among 100,000
    big = replace(node, shape=shape, flat=np.arange(size), value=num, analytic=num, numeric=num,
                  error=np.zeros(size), left=np.full(size, np.nan), right=np.full(size, np.nan),
                  abs_error=np.zeros(size), rel_error=np.where(statuses == "fail", 0.5, 1e-15), statuses=statuses,
                  total=size)
    heat = heatmap_svg(big)
    fills = re.findall(r'<rect x="\d+" y="\d+" width="\d+" height="\d+" fill="([^"]+)"', heat)
    assert len(fills) <= MAX_CELLS * MAX_CELLS and fills.count("rgb(225,30,30)") == 1
    assert "blocks of 1×7" in heat
    assert scatter_svg(big).count("<circle") <= MAX_POINTS


def test_several_configs_make_one_page_with_each_report(tmp_path):
    out = tmp_path / "r.html"
    zoo = ROOT / "examples" / "zoo"
    res = CliRunner().invoke(app, ["check", str(zoo / "sigmoid_sign.yaml"), str(zoo / "relu_mask_ok.yaml"),
                                   "--html", str(out), "-q"])
    assert res.exit_code == 1
    text = out.read_text(encoding="utf-8")
    assert re.findall(r'<h1 class="verdict verdict-(\w+)">', text) == ["fail", "pass"]
    assert text.count('<svg class="graph"') == 2 and "sigmoid_sign.yaml" in text and "relu_mask_ok.yaml" in text


def _sweep_page(tmp_path) -> tuple[Path, dict]:
    runner = CliRunner()
    page = tmp_path / "sweep.html"
    args = ["sweep", "w1", "--config", str(CONFIGS / "seed.yaml")]
    assert runner.invoke(app, [*args, "--html", str(page)]).exit_code == 0
    return page, json.loads(runner.invoke(app, [*args, "-f", "json"]).stdout)


def test_sweep_page_is_a_log_log_plot(tmp_path):
    page, doc = _sweep_page(tmp_path)
    text = page.read_text(encoding="utf-8")
    curves = dict(re.findall(r'<polyline class="curve" data-method="(\w+)" points="([^"]+)"', text))
    assert sorted(curves) == sorted(doc["errors"])
    for method, points in curves.items():
        xy = [tuple(map(float, p.split(","))) for p in points.split()]
        assert len(xy) == len(doc["steps"])
        assert [x for x, _ in xy] == sorted(x for x, _ in xy)  # steps from large (left) to small
        errs = [max(e, 1e-17) for e in doc["errors"][method]]  # y falls as log10(error) rises
        order = sorted(range(len(xy)), key=lambda k: xy[k][1])
        assert all(np.log10(errs[a]) >= np.log10(errs[b]) - 1e-9 for a, b in zip(order, order[1:]))


@needs_browser
def test_sweep_page_renders_in_the_browser(tmp_path):
    page, doc = _sweep_page(tmp_path)
    dom, log = _render(page, tmp_path)
    assert _console_messages(log) == []
    assert len(re.findall(r'<polyline class="curve"', dom)) == len(doc["errors"])
