"""Diagnosis hints: each pattern on a backward bug made for it (the factor, the column, the time
step we broke, checked against the sentence), and nothing claimed on correct code over many seeds
or on bugs a pattern does not fit."""
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gradverify import api
from gradverify.checker.diagnosis import (
    confined,
    constant_ratio,
    diagnose,
    missing_path,
    offset,
    transpose,
)
from gradverify.cli import app

SEEDS = range(8)


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def tanh_forward(x):
    return np.tanh(x), x


def _tanh_grad(dout, x):
    return dout * (1 - np.tanh(x) ** 2)


def matmul_forward(x, w):
    return x @ w, (x, w)


def _hint(report, node):
    return report.node(node).diagnosis


# ---- a constant ratio: 1/N, a sign, a factor 2 ------------------------------------------------


def test_missing_1_over_n_is_a_ratio_with_n():
    def backward(dout, x):
        return _tanh_grad(dout, x) / 4  # an extra 1/N, N = 4 rows
    hint = _hint(api.check_op(tanh_forward, backward, _x((4, 5))), "x")
    assert hint.startswith("analytic ≈ 0.25 × numeric at all 20 elements")
    assert "N = 4" in hint and "axis 0" in hint and "sign" not in hint


def test_sign_flip():
    def backward(dout, x):
        return -_tanh_grad(dout, x)
    hint = _hint(api.check_op(tanh_forward, backward, _x((3, 4))), "x")
    assert "≈ -1 × numeric" in hint and "sign is flipped" in hint and "factor 2" not in hint


def test_a_ratio_a_hair_above_1_is_no_sign_flip():
    """analytic = (1 + 1e-7) × numeric everywhere (a constant rounded in the backward): the hint
    said "≈ 1 × numeric: the sign is flipped"."""
    def backward(dout, x):
        return _tanh_grad(dout, x) * (1 + 1e-7)
    hint = _hint(api.check_op(tanh_forward, backward, _x((3, 4))), "x")
    assert hint.startswith("analytic ≈ (1 + 1.0e-07) × numeric at all 12 elements")
    assert "sign" not in hint


def test_factor_2():
    def square_forward(x):
        return x ** 2, x

    def backward(dout, x):
        return dout * x  # the 2 of d(x²)/dx forgotten
    hint = _hint(api.check_op(square_forward, backward, _x((3, 4))), "x")
    assert "≈ 0.5 × numeric" in hint and "factor 2 missing" in hint and "sign" not in hint


# ---- confined failures ------------------------------------------------------------------------


def test_last_column_never_filled_is_a_missing_path_in_that_column():
    def backward(dout, cache):
        x, w = cache
        dw = x.T @ dout
        dw[:, -1] = 0  # the last column of dw never written
        return dout @ w.T, dw
    hint = _hint(api.check_op(matmul_forward, backward, _x((5, 6)), _x((6, 32), 1)), "w")
    assert "the analytic gradient is 0 at all 6 failing elements" in hint
    assert "6 of 192 elements fail, all in column 31 (axis 1, the last)" in hint
    assert "×" not in hint.split(";")[0]  # no ratio claimed


@pytest.mark.parametrize("axis, where, words", [
    (1, (slice(None), -1), "time step 2 (axis 1, the last)"),
    (0, (0,), "batch element 0 (axis 0, the first)"),
])
def test_one_time_step_or_batch_element(axis, where, words):
    def backward(dout, x):
        g = _tanh_grad(dout, x)
        g[where] *= 3.0
        return g
    hint = _hint(api.check_op(tanh_forward, backward, _x((4, 3, 5))), "x")
    assert words in hint


def test_one_channel_and_the_border_of_an_image():
    def channel_backward(dout, x):
        g = _tanh_grad(dout, x)
        g[:, 2] += 0.5 * dout[:, 2]
        return g

    def border_backward(dout, x):
        g = _tanh_grad(dout, x)
        g[:, :, 0, :] = g[:, :, -1, :] = g[:, :, :, 0] = g[:, :, :, -1] = 0.0
        return g
    x = _x((2, 4, 5, 5))
    assert "in channel 2 (axis 1)" in _hint(api.check_op(tanh_forward, channel_backward, x), "x")
    hint = _hint(api.check_op(tanh_forward, border_backward, x), "x")
    assert "128 of 200 elements fail, all on the border" in hint  # 2·4·(25 − 9) on the ring


# ---- a missing path, a transpose, an offset -------------------------------------------------------


def test_zero_gradient_everywhere():
    def backward(dout, x):
        return np.zeros_like(x)
    hint = _hint(api.check_op(tanh_forward, backward, _x((3, 4))), "x")
    assert hint.startswith("the analytic gradient is 0 everywhere while the numeric one is not")


def test_transpose_of_the_right_answer():
    def backward(dout, cache):
        x, w = cache
        return dout @ w.T, (x.T @ dout).T  # operands swapped
    hint = _hint(api.check_op(matmul_forward, backward, _x((6, 4), 5), _x((4, 4), 1)), "w")
    assert hint.startswith("analytic = numericᵀ")


def center_forward(x):
    return x - x.mean(axis=0), None


def test_mean_path_missing_is_an_offset_per_column():
    def backward(dout, cache):
        return dout  # the path through the mean dropped: off by mean(dout, axis=0) per column
    hint = _hint(api.check_op(center_forward, backward, _x((6, 5))), "x")
    assert hint.startswith("analytic − numeric is a constant per column (axis 1")


def test_both_means_dropped_is_a_row_plus_column_offset():
    def both_forward(x):
        return x - x.mean(axis=0) - x.mean(axis=1, keepdims=True), None

    def backward(dout, cache):
        return dout
    hint = _hint(api.check_op(both_forward, backward, _x((6, 5))), "x")
    assert hint.startswith("analytic − numeric = a constant per row + a constant per column")


# ---- not claimed ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_nothing_on_correct_code(seed):
    """Correct backwards pass, and no recogniser claims anything about them even when asked."""
    def center_backward(dout, cache):
        return dout - dout.mean(axis=0)

    def tanh_backward(dout, x):
        return _tanh_grad(dout, x)

    def matmul_backward(dout, cache):
        x, w = cache
        return dout @ w.T, x.T @ dout
    reports = [api.check_op(center_forward, center_backward, _x((6, 5), seed), seed=seed),
               api.check_op(tanh_forward, tanh_backward, _x((2, 3, 4, 4), seed), seed=seed),
               api.check_op(matmul_forward, matmul_backward, _x((4, 4), seed), _x((4, 4), seed + 9), seed=seed)]
    for report in reports:
        assert report.status == "pass"
        for n in report.nodes:
            assert n.diagnosis is None
            assert all(r(n) is None for r in (constant_ratio, missing_path, transpose, offset, confined)), n.name


@pytest.mark.parametrize("seed", SEEDS)
def test_nothing_on_a_bug_no_pattern_fits(seed):
    """Noise added to every element: no factor, no layout, no offset: nothing said."""
    def backward(dout, x):
        return _tanh_grad(dout, x) + 0.3 * np.random.default_rng(seed + 100).normal(size=x.shape)
    report = api.check_op(tanh_forward, backward, _x((4, 5), seed), seed=seed)
    assert report.node("x").status == "fail" and report.node("x").diagnosis is None


def test_patterns_not_claimed_for_each_others_bugs():
    def half(dout, x):
        return 0.5 * _tanh_grad(dout, x)

    def one_column(dout, cache):
        x, w = cache
        dw = x.T @ dout
        dw[:, 1] *= 2.0
        return dout @ w.T, dw
    ratio = _hint(api.check_op(tanh_forward, half, _x((4, 5))), "x")
    assert "fail, all" not in ratio and "offset" not in ratio and "numericᵀ" not in ratio
    col = _hint(api.check_op(matmul_forward, one_column, _x((5, 6)), _x((6, 8), 1)), "w")
    assert "× numeric" not in col and "is 0" not in col and "numericᵀ" not in col
    assert "all in column 1 (axis 1)" in col


def test_hint_in_every_output(tmp_path):
    """The CLI on a user file: the table, JSON, JUnit, GitHub and markdown all carry the hint."""
    (tmp_path / "ops.py").write_text("import numpy as np\n\ndef t_forward(x):\n    return np.tanh(x), x\n\n\n"
                                     "def t_backward(dout, x):\n    return -dout * (1 - np.tanh(x) ** 2)\n")
    (tmp_path / "net.yaml").write_text("values:\n  x: {shape: [3, 4]}\ngraph:\n  - name: t\n    op: ops.py:t_forward\n"
                                       "    inputs: [x]\nloss: t\n")
    runner, cfg = CliRunner(), str(tmp_path / "net.yaml")
    junit = tmp_path / "r.xml"
    table = runner.invoke(app, ["check", cfg, "--junit", str(junit)], env={"COLUMNS": "100"})
    assert table.exit_code == 1 and "hint: x: analytic ≈ -1 × numeric" in table.stdout
    assert "look at t_backward (ops.py:7)" in table.stdout  # `def t_backward` is line 7 of ops.py
    import json
    doc = json.loads(runner.invoke(app, ["check", cfg, "-f", "json"]).stdout)
    assert "sign is flipped" in next(n for n in doc["nodes"] if n["name"] == "x")["diagnosis"]
    assert doc["blame"][0]["function"] == "t_backward" and doc["blame"][0]["line"] == 7
    assert "hint: analytic ≈ -1 × numeric" in junit.read_text()
    assert "hint: analytic ≈ -1" in runner.invoke(app, ["check", cfg, "-f", "github"]).stdout
    assert "**Hint** for `x`: analytic ≈ -1" in runner.invoke(app, ["check", cfg, "-f", "markdown"]).stdout


def test_diagnose_says_nothing_of_a_passing_node():
    report = api.check_op(tanh_forward, lambda dout, x: _tanh_grad(dout, x), _x((3, 3)))
    assert all(diagnose(n) is None for n in report.nodes)


# ---- where to look ---------------------------------------------------------------------------------


def _def_line(path, name):
    """The line of `def name(` in a file, read without gradverify."""
    return next(k for k, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(f"def {name}("))


def test_blame_names_the_users_backward_and_its_line(tmp_path):
    from conftest import ROOT
    buggy = ROOT / "examples" / "cs231n" / "buggy" / "cs231n" / "layers.py"
    cfg = (ROOT / "examples" / "cs231n" / "configs" / "conv.yaml").read_text()
    (tmp_path / "conv.yaml").write_text(cfg.replace("../cs231n/layers.py", str(buggy)))
    runner = CliRunner()
    res = runner.invoke(app, ["check", str(tmp_path / "conv.yaml")], env={"COLUMNS": "200"})
    line = _def_line(buggy, "conv_backward_naive")
    assert res.exit_code == 1 and f"look at conv_backward_naive (layers.py:{line})" in " ".join(res.stdout.split())
    gh = runner.invoke(app, ["check", str(tmp_path / "conv.yaml"), "-f", "github"]).stdout.splitlines()[0]
    file, at = re.match(r"::error file=([^,]+),line=(\d+),", gh).groups()
    assert Path(file).resolve() == buggy.resolve() and int(at) == line  # the Python file, not the YAML


def test_user_exception_names_the_innermost_user_frame(tmp_path):
    (tmp_path / "ops.py").write_text("import numpy as np\n\n\ndef helper(x):\n    raise ValueError('bad shape')\n\n\n"
                                     "def f_forward(x):\n    return 2 * x, x\n\n\ndef f_backward(dout, cache):\n"
                                     "    return helper(dout)\n")
    (tmp_path / "net.yaml").write_text("values:\n  x: {shape: [2, 3]}\ngraph:\n  - name: y\n    op: ops.py:f_forward\n"
                                       "    inputs: [x]\nloss: y\n")
    res = CliRunner().invoke(app, ["check", str(tmp_path / "net.yaml")])
    assert res.exit_code == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().endswith("f_backward raised ValueError: bad shape (at ops.py:5, in helper)")
    assert len(res.stderr.strip().splitlines()) == 1


def _last_column(dout, cache):
    x, w = cache
    dw = x.T @ dout
    dw[:, -1] = 0
    return dout @ w.T, dw


def _transposed(dout, cache):
    x, w = cache
    return dout @ w.T, (x.T @ dout).T


def _no_border(dout, x):
    g = _tanh_grad(dout, x)
    g[:, :, 0, :] = g[:, :, -1, :] = g[:, :, :, 0] = g[:, :, :, -1] = 0.0
    return g


RECOGNISED = {  # forward, buggy backward, input shapes, the node, what the hint must say
    "1/N": (tanh_forward, lambda d, x: _tanh_grad(d, x) / 4, [(4, 5)], "x", "0.25 × numeric"),
    "sign": (tanh_forward, lambda d, x: -_tanh_grad(d, x), [(3, 4)], "x", "sign is flipped"),
    "column": (matmul_forward, _last_column, [(5, 6), (6, 32)], "w", "all in column 31"),
    "transpose": (matmul_forward, _transposed, [(6, 4), (4, 4)], "w", "numericᵀ"),
    "offset": (center_forward, lambda d, c: d, [(6, 5)], "x", "constant per column"),
    "border": (tanh_forward, _no_border, [(2, 4, 5, 5)], "x", "on the border"),
}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("case", RECOGNISED)
def test_patterns_recognised_on_every_seed(case, seed):
    forward, backward, shapes, node, said = RECOGNISED[case]
    inputs = [_x(shape, seed * 7 + k + 1) for k, shape in enumerate(shapes)]
    assert said in (api.check_op(forward, backward, *inputs, seed=seed).node(node).diagnosis or "")


@pytest.mark.parametrize("config, node", [("conv.yaml", "x"), ("max_pool.yaml", "x")])
def test_real_bugs_no_pattern_fits_get_no_hint(tmp_path, config, node):
    """examples/cs231n/buggy: conv's dx cropped at the wrong offset, max pool's gradient sent to each
    window's top-left element. Neither is a factor, a layout, a missing path or an offset: blamed,
    with no hint."""
    from conftest import ROOT
    buggy = ROOT / "examples" / "cs231n" / "buggy" / "cs231n" / "layers.py"
    text = (ROOT / "examples" / "cs231n" / "configs" / config).read_text()
    (tmp_path / config).write_text(text.replace("../cs231n/layers.py", str(buggy)))
    report = api.check(tmp_path / config)
    assert report.node(node).status == "fail" and report.blame
    assert report.node(node).diagnosis is None
