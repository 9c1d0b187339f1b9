"""The user's own ops: the bug zoo, the notebook's softmax, misbehaving user code."""
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gradverify import checker, config
from gradverify.cli import app

from conftest import ROOT

ZOO = ROOT / "examples" / "zoo"
CASES = json.loads((ZOO / "cases.json").read_text())


def test_zoo_has_ten_cases_or_more():
    assert len(CASES) >= 10
    for case in CASES:
        assert (ZOO / f"{case}.yaml").is_file() and (ZOO / f"{case}_ok.yaml").is_file()


@pytest.mark.parametrize("case", sorted(CASES))
def test_buggy_case_fails_with_its_op_blamed(case):
    res = CliRunner().invoke(app, ["check", str(ZOO / f"{case}.yaml"), "--format", "json"])
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    assert [b["node"] for b in doc["blame"]] == [CASES[case]]
    assert "buggy.py" in doc["blame"][0]["op"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_correct_case_passes(case):
    res = CliRunner().invoke(app, ["check", str(ZOO / f"{case}_ok.yaml"), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["blame"] == []


def test_inherited_nodes_are_marked_not_blamed():
    rep = checker.run(config.load(ZOO / "softmax_rowsum.yaml"))
    assert rep.node("l2_lin").status == "fail" and not rep.node("l2_lin").inherited
    for upstream in ("w2_out", "l1_tanh", "l1_lin", "w1_out", "x"):
        assert rep.node(upstream).status == "fail" and rep.node(upstream).inherited
    (b,) = rep.blame
    assert b.message == ("the backward of l2_softmax (buggy.py:softmax) is wrong: its input's "
                         "gradient l2_lin disagrees while l2_softmax's own agrees")


def test_notebook_softmax_as_custom_activation_matches_closed_form():
    """The notebook's softmax (correct.py) gives l2_lin's gradient (p - onehot)/N by hand."""
    rep = checker.run(config.load(ZOO / "softmax_rowsum_ok.yaml"))
    assert rep.status == "pass"
    cfg = config.load(ZOO / "softmax_rowsum_ok.yaml")
    h = np.tanh(cfg.inputs @ cfg.layers[0].weights + cfg.layers[0].bias)
    logits = h @ cfg.layers[1].weights + cfg.layers[1].bias
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    want = (p - np.eye(3)[cfg.labels]) / len(p)
    np.testing.assert_allclose(rep.node("l2_lin").analytic, want.reshape(-1), rtol=1e-12, atol=1e-15)


def test_malformed_backward_is_a_fail_naming_shapes():
    rep = checker.run(config.load(ZOO / "bias_axis.yaml"))
    assert rep.exit_code == 1
    (b,) = rep.blame
    assert b.node == "l1_affine_axis" and "db of shape [4], but b has shape [5]" in b.message
    assert rep.node("l1_affine_axis").problem


def _net(tmp_path, body: str, act: str) -> Path:
    (tmp_path / "mine.py").write_text(body)
    cfg = tmp_path / "net.yaml"
    cfg.write_text(f"""
inputs: [[1.0, -2.0]]
labels: [0]
layers:
  - {{weights: [[0.3, 0.1], [0.25, -0.4]], bias: [0.1, 0.2], activation: {act}}}
""")
    return cfg


def test_an_op_of_yours_with_integer_outputs_is_checked_not_an_internal_error(tmp_path):
    """A forward returning an int64 array (a rounding layer, its backward 0): "internal error:
    OverflowError" (an integer array's smallest entry sought with an initial of inf). Its output
    is steps: inputs off the steps' edges have derivative 0, and 0 passes."""
    cfg = _net(tmp_path, "import numpy as np\ndef q_forward(x):\n"
                         "    return np.round(np.real(x) * 10).astype(np.int64), x\n"
                         "def q_backward(d, c):\n    return np.zeros_like(d)\n", "mine.py:q")
    res = CliRunner().invoke(app, ["check", str(cfg), "-q"])
    assert "internal error" not in res.stderr
    assert res.exit_code == 0, res.output


def test_forward_that_raises_is_exit_2(tmp_path):
    cfg = _net(tmp_path, "def boom_forward(x):\n    raise RuntimeError('kaput')\n"
                         "def boom_backward(d, c):\n    return d\n", "mine.py:boom")
    res = CliRunner().invoke(app, ["check", str(cfg)])
    assert res.exit_code == 2
    assert "l1_boom (mine.py:boom): boom_forward raised RuntimeError: kaput" in res.stderr
    assert "Traceback" not in res.output


def test_missing_function_is_exit_2(tmp_path):
    cfg = _net(tmp_path, "def relu_forward(x):\n    return x, x\n", "mine.py:relu")
    res = CliRunner().invoke(app, ["check", str(cfg)])
    assert res.exit_code == 2
    assert "relu_backward not found in mine.py (it defines: relu_forward)" in res.stderr


def test_missing_file_is_exit_2(tmp_path):
    cfg = _net(tmp_path, "", "nothere.py:relu")
    res = CliRunner().invoke(app, ["check", str(cfg)])
    assert res.exit_code == 2 and "no such file" in res.stderr


def test_forward_gets_fresh_inputs(tmp_path):
    """A forward that modifies its input in place (x[x < 0] = 0) must not corrupt other calls."""
    body = ("import numpy as np\n"
            "def inplace_forward(x):\n    x[x.real < 0] = 0\n    return x, x.copy()\n"
            "def inplace_backward(d, c):\n    return d * (c.real > 0)\n")
    cfg = _net(tmp_path, body, "mine.py:inplace")
    rep = checker.run(config.load(cfg))
    assert rep.status == "pass", [(n.name, n.status) for n in rep.nodes]


def test_code_dropping_imaginary_part_falls_back_to_central(tmp_path):
    """A forward that calls .astype(float) breaks the complex step; the probe notices and the
    nodes upstream of it use central differences, and still pass."""
    body = ("import numpy as np\n"
            "def sq_forward(x):\n    x = np.asarray(x).real.astype(float)\n    return x * x, x\n"
            "def sq_backward(d, c):\n    return 2 * c * d\n")
    cfg = _net(tmp_path, body, "mine.py:sq")
    rep = checker.run(config.load(cfg))
    assert rep.status == "pass"
    assert rep.node("l1_lin").method == "central"
    assert rep.node("l1_sq").method == "complex"  # nothing custom downstream of it


_SOFTCLIP = ("import numpy as np\n"
             "def softclip_forward(x):\n    return x * np.minimum(np.abs(x), 1.0), x\n"
             "def softclip_backward(dout, x):\n    return dout * np.where(np.abs(x) < 1.0, {slope} * np.abs(x), 1.0)\n")


@pytest.mark.parametrize("slope, status", [(2, "pass"), (1, "fail")])
def test_code_dropping_the_imaginary_part_only_for_small_entries_is_seen(tmp_path, slope, status):
    """x·min(|x|, 1): x·|x| below 1 (np.abs drops a complex step's imaginary part there), x
    beyond; the probe's entries, the largest, take the analytic branch (a review's repro). Its
    direction through all the other entries sees the small ones: x is estimated by central
    differences, and d/dx x|x| = 2|x| (by hand) passes while |x| fails, blaming softclip."""
    (tmp_path / "ops.py").write_text(_SOFTCLIP.format(slope=slope))
    f = tmp_path / "net.yaml"
    f.write_text("values:\n  x: [[2.0, -3.0, 1.5, 0.5, -0.25, 4.0]]\ngraph:\n"
                 "  - {name: y, op: ops.py:softclip, inputs: [x]}\n  - {name: loss, op: sum, inputs: [y]}\nloss: loss\n")
    rep = checker.run(config.load(f))
    x = rep.node("x")
    assert x.method == "central" and rep.status == status
    np.testing.assert_allclose(x.numeric, [1, 1, 1, 1.0, 0.5, 1], rtol=1e-8)  # 2|x| below 1
    if status == "fail":
        assert [b.node for b in rep.blame] == ["y"]


_BIG_AFFINE = ("import numpy as np\n"
               "def affine_forward(x, w, b):\n    return {out} + b, (x, w, b)\n"
               "def affine_backward(dout, cache):\n    x, w, b = cache\n"
               "    return dout.dot(w.T), x.T.dot(dout) * {dw_factor}, {db_sign}dout.sum(axis=0)\n")


def _big_affine(tmp_path, std: float, out="x.dot(w)", dw_factor="1", db_sign=""):
    (tmp_path / "aff.py").write_text(_BIG_AFFINE.format(out=out, dw_factor=dw_factor, db_sign=db_sign))
    f = tmp_path / "net.yaml"
    f.write_text(f"values:\n  x: {{shape: [4, 3], init: normal, std: {std}}}\n"
                 f"  w: {{shape: [3, 5], init: normal, std: {std}}}\n  b: {{shape: [5], init: normal}}\n"
                 "graph:\n  - {name: out, op: aff.py:affine, inputs: [x, w, b]}\nloss: out\n")
    return checker.run(config.load(f))


@pytest.mark.parametrize("std", [3000.0, 1e4, 1e6])
def test_outputs_far_larger_than_an_input_keep_the_complex_step(tmp_path, std):
    """A review's repro: x·w + b of yours, x and w of entries ~std, b ~1. At b's own step (6e-6)
    the outputs' rounding (ε·|x·w| ~ 1e-9 … 1e-4) swamped the probe's central differences: the
    complex step was refused, every input went to central differences, and a dw wrong by one part
    in a million passed (std 3000), a db of the wrong sign had no verdict (std 1e6), exit 0. The
    probe now tries larger steps, exact for code linear in the input: complex step, FAIL."""
    rep = _big_affine(tmp_path, std, dw_factor="(1 + 1e-6)")
    assert [rep.node(n).method for n in "xwb"] == ["complex"] * 3
    assert [rep.node(n).status for n in "xwb"] == ["pass", "fail", "pass"] and rep.exit_code == 1
    rep = _big_affine(tmp_path, std, db_sign="-")
    assert [rep.node(n).status for n in "xwb"] == ["pass", "pass", "fail"] and rep.exit_code == 1


def test_large_outputs_of_code_dropping_the_imaginary_part_still_refuse_the_complex_step(tmp_path):
    """The other direction at the same scale: np.real(x·w) + b drops the complex step through x
    and w (not b); the probe, larger steps and all, still sees it: central differences."""
    rep = _big_affine(tmp_path, 3000.0, out="np.real(x.dot(w))")
    assert [rep.node(n).method for n in "xwb"] == ["central"] * 3
    assert rep.exit_code == 0


_EXP32 = ("import numpy as np\n"
          "def exp_forward(x):\n    out = np.exp(x)\n    return out, {cache}\n"
          "def exp_backward(dout, cache):\n    return dout * cache\n")


@pytest.mark.parametrize("cache, status", [("out", "pass"), ("out.astype(np.float32)", "fail")])
def test_a_few_large_outputs_do_not_drown_the_probes_direction(tmp_path, cache, status):
    """A review's repro: e^x of your own, three logits near 25 (e^25 ~ 7e10) and the rest ~1. The
    probe's direction moves only the others: summed with the large outputs, its differences were
    rounding noise, the probe failed, and x was checked by central differences, whose 1e-6
    tolerance let a cache kept in float32 (1e-8 wrong) pass. The differences are now taken entry
    by entry: the complex step is used, the right backward passes and the float32 cache fails."""
    (tmp_path / "mine.py").write_text(_EXP32.format(cache=cache))
    f = tmp_path / "net.yaml"
    f.write_text("values:\n  x: [[25.0, 0.2428, -1.6563, 0.6561, 1.1435], [-0.4526, 0.4305, 0.2509, -0.3944, -0.8624],"
                 " [-2.0326, 1.4104, -0.0476, 24.0, 0.8262], [0.2778, 23.0, 1.3925, -0.5063, 1.5699]]\n"
                 "inputs: [x]\ngraph:\n  - {name: y, op: mine.py:exp, inputs: [x]}\nloss: y\n")
    rep = checker.run(config.load(f))
    x = rep.node("x")
    assert x.method == "complex" and rep.status == status
    if status == "pass":
        assert x.max_rel_error < 1e-13  # the complex step's precision, not central differences'


_OFFSET = ("import numpy as np\n"
           "def off_forward(x):\n    return x + 3e4 * np.triu(np.ones(x.shape), 1), None\n"
           "def off_backward(dout, cache):\n    return {grad}\n")


@pytest.mark.parametrize("grad, status", [("dout", "pass"), ("dout.astype(np.float32)", "fail")])
def test_the_outputs_own_rounding_decides_nothing_in_the_probe(tmp_path, grad, status):
    """A review's repro: 3e4 added to the upper triangle of x (5×5). Along the probe's direction,
    at its small step, the rounding of x + 3e4 (ulp 3.6e-12 against a move of 1e-7) made the two
    estimates miss by 2e-5 of the derivative: the probe called your op not complex-safe, x went
    to central differences, and a gradient cast to float32 passed. A miss within the outputs'
    own rounding now decides nothing: the complex step is used, and the cast fails."""
    (tmp_path / "mine.py").write_text(_OFFSET.format(grad=grad))
    x = [[0.18905338179353307, -0.1568245324442242, -0.12391906301756803, -0.7324402147919566, 0.5399122148162706],
         [1.1441658720372287, -0.32542283686782436, 0.23214197601829842, 0.08436320093929477, -0.1661468509272157],
         [0.9775674511260357, -0.31055654665915255, -0.3288239040579627, -0.23764402660766945, 0.13648742137225664],
         [-0.09919805171738795, 0.5452887139646817, -0.6071856998706371, 0.12682784711186987, -0.2676822130289371],
         [0.8414649723701431, 0.18803508698068597, 0.33057100813532614, 0.41050391297026284, -1.0107575001533344]]
    f = tmp_path / "net.yaml"
    f.write_text(f"values:\n  x: {x}\ninputs: [x]\ngraph:\n  - {{name: y, op: mine.py:off, inputs: [x]}}\nloss: y\n")
    rep = checker.run(config.load(f))
    assert rep.node("x").method == "complex" and rep.status == status


def test_graph_form_reproduces_layers_form():
    layers = checker.run(config.load(ROOT / "configs" / "seed.yaml"))
    graph = checker.run(config.load(ROOT / "configs" / "seed_graph.yaml"))
    assert sorted(n.name for n in graph.nodes) == sorted(n.name for n in layers.nodes)
    assert graph.loss == layers.loss
    for a in layers.nodes:
        b = graph.node(a.name)
        assert a.status == b.status, a.name
        np.testing.assert_array_equal(a.analytic, b.analytic)
        np.testing.assert_allclose(a.numeric, b.numeric, rtol=1e-14, atol=1e-16)


def test_skip_connection_sums_both_paths():
    rep = checker.run(config.load(ROOT / "configs" / "skip.yaml"))
    assert rep.status == "pass"
    cfg = config.load(ROOT / "configs" / "skip.yaml")
    v = cfg.values
    h = np.tanh(v["x"] @ v["w1"] + v["b1"])
    logits = (h + v["x"]) @ v["w2"] + v["b2"]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    dl = (p - np.eye(3)[cfg.labels]) / len(p)
    dskip = dl @ v["w2"].T
    dx = dskip + ((dskip * (1 - h ** 2)) @ v["w1"].T)   # the skip path + the tanh path
    np.testing.assert_allclose(rep.node("x").analytic, dx.reshape(-1), rtol=1e-12)


@pytest.mark.parametrize("graph,words", [
    ("- {name: a, op: matmul, inputs: [x, nope]}", ["graph[0].inputs[1]", "unknown input 'nope'"]),
    ("- {name: a, op: matmull, inputs: [x, w]}", ["graph[0].op", "did you mean 'matmul'"]),
    ("- {name: a, op: add, inputs: [b, x]}\n- {name: b, op: add, inputs: [a, x]}", ["cycle"]),
    ("- {name: a, op: matmul, inputs: [x]}", ["takes 2 input(s)"]),
])
def test_graph_form_errors(graph, words, tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text(f"values: {{x: [[1.0, 2.0]], w: [[1.0], [2.0]]}}\ninputs: [x]\ngraph:\n{graph}\nloss: a\n")
    res = CliRunner().invoke(app, ["check", str(f)])
    assert res.exit_code == 2, res.output
    for w in words:
        assert w in res.stderr, res.stderr


def test_graph_form_non_scalar_loss_is_projected(tmp_path):
    """A non-scalar `loss:` node is contracted with a fixed random R: the node `loss`, op project."""
    f = tmp_path / "g.yaml"
    f.write_text("values: {x: [[1.0, 2.0]], w: [[1.0], [2.0]]}\ngraph:\n"
                 "- {name: a, op: matmul, inputs: [x, w]}\nloss: a\n")
    res = CliRunner().invoke(app, ["check", str(f), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    loss = [n for n in doc["nodes"] if n["name"] == "loss"]
    assert loss and loss[0]["op"] == "project"


def test_graph_form_warns_on_unused_nodes(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("values: {x: [[1.0, 2.0]], w: [[1.0], [2.0]]}\ngraph:\n"
                 "- {name: a, op: matmul, inputs: [x, w]}\n- {name: s, op: sum, inputs: [a]}\n"
                 "- {name: dead, op: square, inputs: [a]}\nloss: s\n")
    rep = checker.run(config.load(f))
    assert any("'dead' does not reach the loss" in w for w in rep.warnings)
    res = CliRunner().invoke(app, ["check", str(f)])
    assert res.exit_code == 0 and "'dead' does not reach the loss" in res.stderr


#: a float32 cache is off by ~1e-8: below central differences' resolution (rtol 1e-6)
DOCUMENTED_MISSES = {("tanh_float32_cache", "central")}


@pytest.mark.parametrize("mode", [["--sample", "3"], ["--fast"], ["--method", "central"],
                                  ["--method", "richardson"]], ids=["sample", "fast", "central", "richardson"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_mode_catches_every_zoo_bug(case, mode):
    res = CliRunner().invoke(app, ["check", str(ZOO / f"{case}.yaml"), "--format", "json"] + mode)
    if (case, mode[-1]) in DOCUMENTED_MISSES:
        assert res.exit_code == 0  # below what central differences can resolve (README)
        return
    assert res.exit_code == 1, res.output
    assert [b["node"] for b in json.loads(res.stdout)["blame"]] == [CASES[case]]
    ok = CliRunner().invoke(app, ["check", str(ZOO / f"{case}_ok.yaml"), "--format", "json"] + mode)
    assert ok.exit_code == 0, ok.output


def test_graph_form_custom_op_dict_names_from_forward(tmp_path):
    """A two-input custom op in the graph form: its backward's dict keys are d + the names of
    forward's parameters."""
    (tmp_path / "mine.py").write_text(
        "def scale_forward(a, s):\n    return a * s, (a, s)\n"
        "def scale_backward(d, c):\n    a, s = c\n    return {'da': d * s, 'ds': (d * a).sum(0)}\n")
    f = tmp_path / "g.yaml"
    f.write_text("values: {a: [[1.0, 2.0], [3.0, 4.0]], s: [0.5, -1.0]}\ngraph:\n"
                 "- {name: m, op: mine.py:scale, inputs: [a, s]}\n- {name: q, op: square, inputs: [m]}\n"
                 "- {name: loss, op: sum, inputs: [q]}\nloss: loss\n")
    rep = checker.run(config.load(f))
    assert rep.status == "pass"
    np.testing.assert_allclose(rep.node("s").analytic, [2 * (0.5 * 1 + 0.5 * 9), 2 * (4 + 16) * -1.0])


# ---- user code decides nothing: BaseExceptions, fresh source, determinism, complex gradients ----

TANH = "import numpy as np\ndef t_forward(x):\n    return np.tanh(x), x\n" \
       "def t_backward(d, c):\n    return d * (1 - np.tanh(c) ** 2)\n"


@pytest.mark.parametrize("body,said", [
    ("import sys\ndef q_forward(x):\n    sys.exit(0)\ndef q_backward(d, c):\n    return d\n",
     "l1_q (mine.py:q): q_forward called sys.exit(0)"),
    ("import sys\ndef q_forward(x):\n    sys.exit()\ndef q_backward(d, c):\n    return d\n",
     "q_forward called sys.exit()"),
    ("import sys\ndef q_forward(x):\n    return x, x\ndef q_backward(d, c):\n    sys.exit(0)\n",
     "l1_q (mine.py:q): q_backward called sys.exit(0)"),
    ("def q_forward(x):\n    raise KeyboardInterrupt\ndef q_backward(d, c):\n    return d\n",
     "q_forward raised KeyboardInterrupt itself (not a Ctrl-C)"),
    ("def q_forward(x):\n    raise GeneratorExit\ndef q_backward(d, c):\n    return d\n",
     "q_forward raised GeneratorExit"),
    ("class Odd(BaseException):\n    def __str__(self):\n        raise ValueError\n"
     "def q_forward(x):\n    raise Odd()\ndef q_backward(d, c):\n    return d\n",
     "q_forward raised Odd: <unprintable Odd>"),
    ("import sys\nsys.exit(0)\n", "layers[0].activation: mine.py:q: importing mine.py called sys.exit(0)"),
    ("raise KeyboardInterrupt\n", "importing mine.py raised KeyboardInterrupt itself (not a Ctrl-C)"),
    ("class Odd(Exception):\n    def __str__(self):\n        raise KeyboardInterrupt\n"
     "def q_forward(x):\n    raise Odd()\ndef q_backward(d, c):\n    return d\n",
     "q_forward raised Odd: <unprintable Odd>"),
    ("class Code:\n    def __repr__(self):\n        raise SystemExit(0)\n"
     "import sys\ndef q_forward(x):\n    sys.exit(Code())\ndef q_backward(d, c):\n    return d\n",
     "q_forward called sys.exit(<unprintable Code>)"),
], ids=["exit0", "exit", "backward_exit", "keyboardinterrupt", "generatorexit", "custom", "import_exit",
        "import_keyboardinterrupt", "str_raises_keyboardinterrupt", "repr_raises_systemexit"])
def test_user_code_base_exceptions_are_exit_2(tmp_path, body, said):
    """sys.exit(0) in a forward used to end gradverify with exit 0 and no output: a silent pass.
    An exception whose __str__ raises KeyboardInterrupt said "interrupted", 130."""
    cfg = _net(tmp_path, body, "mine.py:q")
    res = CliRunner().invoke(app, ["check", str(cfg), "--format", "json"])
    assert res.exit_code == 2, res.output
    doc = json.loads(res.stdout)  # no report: the JSON error object, nothing of the user's
    assert doc["status"] == "error" and doc["exit_code"] == 2 and set(doc) >= {"message", "file", "line"}
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("gradverify: error: ") and said in line, line


@pytest.mark.parametrize("where, said", [
    ("forward", "l1_q (mine.py:q): q_forward called os._exit(0) (at mine.py:3, in q_forward)"),
    ("backward", "l1_q (mine.py:q): q_backward called os._exit(0) (at mine.py:5, in q_backward)")])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_user_code_calling_os_exit_is_exit_2(tmp_path, where, said, jobs):
    """os._exit(0) in your op ended gradverify's process there: exit 0, no report, a silent pass
    (in a subprocess: in this one it would end the test run, green)."""
    import subprocess
    import sys

    fwd, bwd = ("os._exit(0)", "return d") if where == "forward" else ("return x, x", "os._exit(0)")
    cfg = _net(tmp_path, f"import os\ndef q_forward(x):\n    {fwd}\ndef q_backward(d, c):\n    {bwd}\n", "mine.py:q")
    done = subprocess.run([sys.executable, "-m", "gradverify", "check", str(cfg), "--jobs", jobs],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr.strip()) == (2, f"gradverify: error: {said}")


_TANH_WITH = ("import atexit, os, threading, time\nimport numpy as np\n{top}\n_calls = [0]\n"
              "def t_forward(x):\n    _calls[0] += 1\n    {fwd}\n    return np.tanh(x), x\n"
              "def t_backward(d, x):\n    return d * (1 - np.tanh(x) ** 2) * {factor}\n")


@pytest.mark.parametrize("top, fwd, factor, status", [
    ("atexit.register(lambda: print('AT EXIT'))", "pass", "1", 0),
    ("threading.Thread(target=lambda: (time.sleep(0.5), print('LATE THREAD'))).start()", "pass", "1", 0),
    ("", "os.fork() if _calls[0] == 1 else None", "1", 0),
    ("atexit.register(lambda: os._exit(0))", "pass", "2", 1),
    ("atexit.register(lambda: 1 / 0)", "pass", "1", 0)],
    ids=["atexit_print", "late_thread_print", "fork", "atexit_os_exit", "atexit_raises"])
def test_what_your_code_leaves_behind_changes_neither_the_report_nor_the_status(tmp_path, top, fwd, factor, status):
    """Python's exit runs your leftovers after the report. A print of theirs landed after the JSON
    document on stdout (two documents with a fork: the child went on with the check); an
    os._exit(0) of an atexit handler turned a FAIL into exit 0; an error of one was a traceback.
    Now: one JSON document, the verdict's status, one line on stderr for the error."""
    import subprocess
    import sys

    cfg = _net(tmp_path, _TANH_WITH.format(top=top, fwd=fwd, factor=factor), "mine.py:t")
    done = subprocess.run([sys.executable, "-m", "gradverify", "check", str(cfg), "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    doc = json.loads(done.stdout)  # one document, nothing after it
    assert (done.returncode, doc["exit_code"]) == (status, status)
    assert "Traceback" not in done.stderr
    for said in ("AT EXIT", "LATE THREAD"):
        assert (said in done.stderr) == (said in top)
    if "1 / 0" in top:
        assert "gradverify: note: your code, run as the process ended, raised ZeroDivisionError" in done.stderr


_PATCHES_NUMPY = ("import numpy as np\n_abs = np.abs\nnp.abs = lambda a, *r, **k: _abs(a, *r, **k) * 0.0\n"
                  "def t_forward(x):\n    return np.tanh(x), x\n"
                  "def t_backward(d, x):\n    return d * (1 - np.tanh(x) ** 2) * {factor}\n")


def test_a_file_that_replaces_a_numpy_function_changes_no_verdict(tmp_path):
    """`np.abs = …` at a file's top level (every |error| 0): a wrong backward in that file passed,
    and so did one checked after it in the same process (a teacher's --code-dir: one student's
    file passed the next one's bug). The judge's numpy names are put back after each import."""
    wrong = _net(tmp_path, _PATCHES_NUMPY.format(factor="2"), "mine.py:t")
    assert checker.run(config.load(wrong)).exit_code == 1
    (tmp_path / "other").mkdir()
    right = _net(tmp_path / "other", _PATCHES_NUMPY.format(factor="1"), "mine.py:t")
    assert checker.run(config.load(right)).exit_code == 0
    (tmp_path / "plain").mkdir()
    plain = _net(tmp_path / "plain", TANH.replace("** 2)", "** 2) * 2"), "mine.py:t")
    assert checker.run(config.load(plain)).exit_code == 1
    assert np.abs(-2.0) == 2.0


def test_user_loss_calling_sys_exit_is_exit_2(tmp_path):
    (tmp_path / "mine.py").write_text("import sys\ndef my_loss(x, y):\n    sys.exit(0)\n")
    cfg = tmp_path / "net.yaml"
    cfg.write_text("inputs: [[1.0, -2.0]]\nlabels: [0]\nlayers:\n  - {weights: [[0.3, 0.1], [0.25, -0.4]], "
                   "bias: [0.1, 0.2]}\nloss: mine.py:my_loss\n")
    res = CliRunner().invoke(app, ["check", str(cfg), "-q"])
    assert res.exit_code == 2 and "loss_data (mine.py:my_loss): my_loss called sys.exit(0)" in res.stderr


def test_argparse_at_import_in_a_real_process(tmp_path):
    """A layers file that parses the command line at import: argparse calls sys.exit(2) (and
    prints its usage on stderr, which is the user's); gradverify says so, located, exit 2."""
    import subprocess
    import sys

    body = ("import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', required=True)\n"
            "p.parse_args()\n" + TANH)
    cfg = _net(tmp_path, body, "mine.py:t")
    res = subprocess.run([sys.executable, "-m", "gradverify", "check", str(cfg), "--format", "json"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and json.loads(res.stdout)["line"] == 5  # the error object, located
    assert res.stderr.strip().splitlines()[-1] == (
        f"gradverify: error: {cfg}:5:61: layers[0].activation: mine.py:t: importing mine.py called sys.exit(2)")


def test_an_error_line_nobody_reads_keeps_its_exit_code_with_your_code_loaded(tmp_path):
    """With your code loaded the command ends through Python's own exit, which says 120 when a
    standard stream cannot be flushed: an error line stderr's reader never took must not do
    that — bad input stays 2."""
    import os
    import subprocess
    import sys

    cfg = _net(tmp_path, TANH, "mine.py:t")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen([sys.executable, "-m", "gradverify", "node", "nosuch", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    proc.stderr.close()
    assert proc.wait(timeout=120) == 2


def test_what_your_code_leaves_open_is_finished_as_python_would(tmp_path):
    """Your layers file's own file (written, never closed) is flushed, its atexit handler runs
    and its process pool's workers end: with your code loaded, the command ends through
    Python's own exit, not the quick one that skips it."""
    import subprocess
    import sys

    body = ("import atexit, concurrent.futures, os\n"
            f"log = open({str(tmp_path / 'log.txt')!r}, 'w')\n"
            f"atexit.register(lambda: open({str(tmp_path / 'atexit.txt')!r}, 'w').write('ran'))\n"
            "pool = concurrent.futures.ProcessPoolExecutor(1)\n"
            f"pool.submit(os.getpid).result()\n"
            "import numpy as np\n"
            "def t_forward(x):\n    log.write('forward\\n')\n    return np.tanh(x), x\n"
            "def t_backward(d, c):\n    return d * (1 - np.tanh(c) ** 2)\n")
    cfg = _net(tmp_path, body, "mine.py:t")
    res = subprocess.run([sys.executable, "-m", "gradverify", "check", str(cfg)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "log.txt").read_text().count("forward") > 0
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_raised_keyboard_interrupt_in_a_real_process_is_not_ctrl_c(tmp_path):
    import subprocess
    import sys

    cfg = _net(tmp_path, "def q_forward(x):\n    raise KeyboardInterrupt\ndef q_backward(d, c):\n    return d\n",
               "mine.py:q")
    res = subprocess.run([sys.executable, "-m", "gradverify", "check", str(cfg)], capture_output=True, text=True)
    assert res.returncode == 2 and "raised KeyboardInterrupt itself (not a Ctrl-C)" in res.stderr


def test_edited_file_is_seen_by_the_next_check_in_the_same_process(tmp_path):
    """A notebook or a pytest session: the op file is executed from its current source every
    check (it used to be imported once per process, so a bug added after a passing check passed)."""
    import gradverify

    cfg = _net(tmp_path, TANH, "mine.py:t")
    assert gradverify.check(cfg).status == "pass"
    (tmp_path / "mine.py").write_text(TANH.replace("** 2)", "** 3)"))
    assert gradverify.check(cfg).status == "fail"
    assert not (tmp_path / "__pycache__").exists()


def test_same_size_file_replaced_within_the_same_second(tmp_path):
    """Bytecode caches key on size and mtime (seconds): a same-size edit within the second ran the
    old code. Same size, same mtime here."""
    import os

    import gradverify

    cfg = _net(tmp_path, TANH, "mine.py:t")
    code = tmp_path / "mine.py"
    stat = code.stat()
    assert gradverify.check(cfg).status == "pass"
    code.write_text(TANH.replace("** 2)", "** 3)"))
    assert code.stat().st_size == stat.st_size
    os.utime(code, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert gradverify.check(cfg).status == "fail"
    assert not (tmp_path / "__pycache__").exists()


def test_cli_writes_no_bytecode_beside_user_files(tmp_path):
    (tmp_path / "helper.py").write_text("SCALE = 1.0\n")
    body = "import sys\nsys.path.insert(0, __file__.rsplit('/', 1)[0])\nimport helper\n" + TANH
    cfg = _net(tmp_path, body, "mine.py:t")
    res = CliRunner().invoke(app, ["check", str(cfg), "-q"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "__pycache__").exists()


@pytest.mark.parametrize("body", [
    "import numpy as np\nN = [0]\ndef s_forward(x):\n    N[0] += 1\n    return np.tanh(x) + 0.01 * N[0], x\n"
    "def s_backward(d, c):\n    return d * (1 - np.tanh(c) ** 2)\n",
    "import numpy as np\ndef s_forward(x):\n    m = 1 + np.random.default_rng().random(x.shape)\n"
    "    return x * m, m\ndef s_backward(d, c):\n    return d * c\n",
], ids=["call_counter", "unseeded_generator"])
def test_stateful_forward_is_a_fail_saying_so_not_a_kink(tmp_path, body):
    """A forward that depends on a call counter was reported KINK (exit 0)."""
    cfg = _net(tmp_path, body, "mine.py:s")
    res = CliRunner().invoke(app, ["check", str(cfg), "--format", "json"])
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    node = next(n for n in doc["nodes"] if n["name"] == "l1_s")
    assert node["status"] == "fail" and "s_forward is not deterministic: two calls on the same inputs " \
                                          "differ by" in node["problem"]
    assert [b["node"] for b in doc["blame"]] == ["l1_s"]
    assert not any(n["status"] == "kink" for n in doc["nodes"])


def test_stateful_loss_is_a_fail(tmp_path):
    (tmp_path / "mine.py").write_text(
        "import numpy as np\nN = [0]\ndef my_loss(x, y):\n    N[0] += 1\n"
        "    return float((x ** 2).sum()) + N[0], 2 * x\n")
    cfg = tmp_path / "net.yaml"
    cfg.write_text("inputs: [[1.0, -2.0]]\nlabels: [0]\nlayers:\n  - {weights: [[0.3, 0.1], [0.25, -0.4]], "
                   "bias: [0.1, 0.2]}\nloss: mine.py:my_loss\n")
    rep = checker.run(config.load(cfg))
    assert rep.status == "fail" and "my_loss is not deterministic" in rep.node("loss_data").problem


def test_seeded_dropout_is_deterministic():
    rep = checker.run(config.load(ZOO / "dropout_scale_ok.yaml"))
    assert rep.status == "pass" and not any(n.problem for n in rep.nodes)


def test_complex_gradient_from_a_backward_is_malformed(tmp_path):
    """Its imaginary part used to be dropped, and the check passed."""
    body = TANH.replace("return d * (1 - np.tanh(c) ** 2)", "return d * (1 - np.tanh(c) ** 2) + 1e-3j")
    cfg = _net(tmp_path, body, "mine.py:t")
    rep = checker.run(config.load(cfg))
    assert rep.status == "fail"
    (b,) = rep.blame
    assert b.node == "l1_t" and ("it returned dx of complex type complex128 (largest imaginary part 1.0e-03) "
                                 "for the real input x") in b.message


def test_complex_gradient_with_zero_imaginary_part_is_still_malformed(tmp_path):
    body = TANH.replace("return d * (1 - np.tanh(c) ** 2)", "return (d * (1 - np.tanh(c) ** 2)).astype(complex)")
    rep = checker.run(config.load(_net(tmp_path, body, "mine.py:t")))
    assert rep.status == "fail" and "complex type" in rep.blame[0].message


def test_nan_from_a_backward_fails(tmp_path):
    body = TANH.replace("return d * (1 - np.tanh(c) ** 2)",
                        "g = d * (1 - np.tanh(c) ** 2)\n    g[0, 0] = np.nan\n    return g")
    res = CliRunner().invoke(app, ["check", str(_net(tmp_path, body, "mine.py:t")), "--format", "json"])
    assert res.exit_code == 1
    lin = next(n for n in json.loads(res.stdout)["nodes"] if n["name"] == "l1_lin")
    assert lin["status"] == "fail" and lin["elements"][0]["analytic"] is None


def test_ragged_gradient_is_malformed_not_an_internal_error(tmp_path):
    body = TANH.replace("return d * (1 - np.tanh(c) ** 2)", "return ([[1.0], [1.0, 2.0]],)")
    res = CliRunner().invoke(app, ["check", str(_net(tmp_path, body, "mine.py:t")), "--format", "json"])
    assert res.exit_code == 1, res.output
    assert "it returned dx that is not an array" in json.loads(res.stdout)["blame"][0]["message"]


# ---- speed without losing fresh inputs: shared read-only inputs, stacked calls, kink scans ----

def _scaled_net(tmp_path, body: str) -> str:
    """A net whose hidden layer is the user's `scale` op, written with `body` (2·x each way)."""
    (tmp_path / "ops.py").write_text("import numpy as np\n"
                                     f"def scale_forward(x):\n{body}\n"
                                     "def scale_backward(dout, cache):\n    return 2 * dout\n")
    cfg = tmp_path / "net.yaml"
    cfg.write_text("seed: 2\ninputs: {shape: [3, 4], init: normal}\nlabels: {classes: 3}\nlayers:\n"
                   "  - {weights: {shape: [4, 5], init: normal}, bias: {shape: [5], init: normal},\n"
                   "     activation: ops.py:scale}\n"
                   "  - {weights: {shape: [5, 3], init: normal}, bias: {shape: [3], init: normal}}\n")
    return str(cfg)


@pytest.mark.parametrize("body", ["    x *= 2\n    return x, None",
                                  "    x.setflags(write=True)\n    x *= 2\n    return x, None",
                                  "    x = np.array(x)\n    x[0] = 2 * x[0]\n    x[1:] *= 2\n    return x, None"])
def test_an_op_that_writes_into_its_input_gets_fresh_copies(tmp_path, body):
    """In place (raises on a read-only view: run again with copies), through a view made
    writeable again (seen in the snapshot), or on its own copy: the same numbers as 2·x."""
    import gradverify

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = gradverify.check(_scaled_net(tmp_path / "a", "    return 2 * x, None"))
    mutating = gradverify.check(_scaled_net(tmp_path / "b", body))
    assert mutating.status == plain.status == "pass" and mutating.loss == plain.loss
    for a, b in zip(plain.nodes, mutating.nodes):
        assert np.allclose(a.numeric, b.numeric, rtol=1e-12, atol=1e-300), a.name


def test_copies_are_stacked_into_one_call_for_a_row_wise_op(tmp_path):
    """tanh row by row: far fewer calls than perturbed copies, and the numbers of the complex step
    agree with tanh' = 1 - tanh² by hand."""
    import gradverify

    calls = []

    def tanh_forward(x):
        calls.append(x.shape)
        return np.tanh(x), x

    def tanh_backward(dout, x):
        return dout * (1 - np.tanh(x) ** 2)

    x = np.random.default_rng(1).normal(size=(64, 8))
    rep = gradverify.check_op(tanh_forward, tanh_backward, x)
    assert rep.ok and len(calls) < x.size // 4
    assert any(shape[0] > x.shape[0] for shape in calls)  # (copies·64, 8): stacked


def test_a_batch_mixing_op_is_never_stacked(tmp_path):
    """Centering over the batch mixes the stacked copies: it must be run one copy per call, and
    a correct backward still passes (the zoo's center op), a wrong one still fails."""
    res = CliRunner().invoke(app, ["check", str(ZOO / "center_mean_path_ok.yaml"), "-f", "json"])
    bad = CliRunner().invoke(app, ["check", str(ZOO / "center_mean_path.yaml"), "-f", "json"])
    assert (res.exit_code, bad.exit_code) == (0, 1)


def test_smooth_user_layers_are_not_scanned_for_kinks(monkeypatch):
    """A smooth custom net: no element's one-sided gap calls for the scan (before: every element
    of every node up to 2,048 cost 12 more forward calls)."""
    import gradverify
    from gradverify.checker import nodes

    scanned = []
    real = nodes.numeric.detect_kinks
    monkeypatch.setattr(nodes.numeric, "detect_kinks",
                        lambda g, v, n, idx, s: scanned.append(n) or real(g, v, n, idx, s))
    layers = ROOT / "examples" / "cs231n" / "cs231n" / "layers.py"
    cfg = {"seed": 0, "inputs": {"shape": [4, 3], "init": "normal"}, "labels": {"classes": 3},
           "layers": [{"op": f"{layers}:affine", "activation": "tanh", "weights": {"shape": [3, 5], "init": "normal"},
                       "bias": {"shape": [5], "init": "normal"}},
                      {"op": f"{layers}:affine", "weights": {"shape": [5, 3], "init": "normal"},
                       "bias": {"shape": [3], "init": "normal"}}]}
    assert gradverify.check(cfg).status == "pass" and scanned == []


# ---- many copies in one call (userpush.push_slices) --------------------------------------------

def _affine(coupling: float = 0.0, calls: list | None = None, src: int = 0):
    """cs231n's affine; with `coupling`, column 5 of out also gets coupling · Σ w[:, src] (an op
    whose weight columns are not separable: only column src reaches another column)."""
    def forward(x, w, b):
        if calls is not None:
            calls.append(1)
        out = x @ w + b
        out[:, 5] += coupling * w[:, src].sum()
        return out, (x, w)

    def backward(dout, cache, honest: bool = True):
        x, w = cache
        dw = x.T @ dout
        if honest:
            dw[:, src] += coupling * dout[:, 5].sum()
        return dout @ w.T, dw, dout.sum(axis=0)
    return forward, backward


def _affine_inputs(seed=0, hidden=8):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(6, 4)), rng.normal(size=(4, hidden)), rng.normal(size=hidden)


def test_separable_weight_is_checked_in_fewer_calls_with_the_same_numbers():
    """w's 256 copies cost a handful of calls (one per row of w: each moves one element of every
    column; one call per copy: 382 calls for the whole check), and the estimates are the
    hand-derived gradient xᵀR and Σ R."""
    import gradverify
    from gradverify.userops import Project
    x, w, b = _affine_inputs(hidden=64)
    calls: list = []
    fwd, bwd = _affine(calls=calls)
    rep = gradverify.check_op(fwd, bwd, x, w, b, seed=3)
    assert rep.ok
    assert len(calls) < 155, len(calls)  # 148 here: probes (17 per input: 12 first order, 5 second),
    # checks, x by samples, w and b by slices
    R = np.random.default_rng([3, Project.STREAM]).normal(size=(6, 64))
    np.testing.assert_allclose(rep.node("w").numeric, (x.T @ R).reshape(-1), rtol=1e-12)
    np.testing.assert_allclose(rep.node("b").numeric, R.sum(axis=0), rtol=1e-12)


def _conv(calls: list, wrong_at: tuple | None = None):
    """A valid 2×2 convolution, stride 1, in the cs231n convention (windows by slicing, no
    loops over filters); its backward right, or off by 0.5 at filter element `wrong_at`."""
    def forward(x, w, b):
        calls.append(w.dtype.kind)
        c, hh, ww = x.shape[1], x.shape[2] - 1, x.shape[3] - 1
        win = np.stack([x[:, :, i:i + hh, j:j + ww] for i in range(2) for j in range(2)], axis=2)  # N,C,4,H',W'
        out = np.einsum("nckhw,fck->nfhw", win, w.reshape(w.shape[0], c, 4)) + b[None, :, None, None]
        return out, (x, w, win)

    def backward(dout, cache):
        x, w, win = cache
        dw = np.einsum("nfhw,nckhw->fck", dout, win).reshape(w.shape)
        if wrong_at is not None:
            dw[wrong_at] += 0.5
        dwin = np.einsum("nfhw,fck->nckhw", dout, w.reshape(w.shape[0], x.shape[1], 4))
        dx = np.zeros_like(x)
        hh, ww = x.shape[2] - 1, x.shape[3] - 1
        for k, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            dx[:, :, i:i + hh, j:j + ww] += dwin[:, :, k]
        return dx, dw, dout.sum(axis=(0, 2, 3))
    return forward, backward


@pytest.mark.parametrize("wrong_at", [None, (0, 0, 0, 0), (1, 5, 1, 0)])
def test_a_convs_filters_are_taken_in_turn_one_element_of_each_per_call(wrong_at):
    """w (2 filters × 8×2×2) moves only its own filter's output channel: the 64 copies of w go
    through the forward one element of each filter per call (32 calls; in flat order each chunk
    of 32 held one filter's elements, a call each: 64), and each estimate lands on its own element:
    central differences written out here agree with every one, and a wrong dw fails exactly
    where it is wrong."""
    import gradverify
    from gradverify.userops import Project
    rng = np.random.default_rng(4)
    x, w, b = rng.normal(size=(5, 8, 4, 4)), rng.normal(size=(2, 8, 2, 2)), rng.normal(size=2)
    calls: list = []
    fwd, bwd = _conv(calls, wrong_at)
    rep = gradverify.check_op(fwd, bwd, x, w, b, seed=1)
    node = rep.node("w")
    cot = np.random.default_rng([1, Project.STREAM]).normal(size=(5, 2, 3, 3))  # check_op's R
    want = np.zeros(w.size)
    for e in range(w.size):  # d Σ out·R / d w_e, by central differences on the forward alone
        step = np.zeros(w.size)
        step[e] = 1e-6
        up, down = fwd(x, w + step.reshape(w.shape), b)[0], fwd(x, w - step.reshape(w.shape), b)[0]
        want[e] = np.sum((up - down) * cot) / 2e-6
    np.testing.assert_allclose(node.numeric, want, rtol=1e-7, atol=1e-8)
    wrong = {tuple(np.unravel_index(i, w.shape)) for i in node.flat[node.statuses == "fail"]}
    assert wrong == (set() if wrong_at is None else {wrong_at})
    assert calls.count("c") <= 42, calls.count("c")  # 32 for the 64 copies, 4 probing, 3 verifying


@pytest.mark.parametrize("honest", [True, False])
@pytest.mark.parametrize("src", [0, 3])
@pytest.mark.parametrize("seed", range(4))
def test_a_coupling_the_probes_may_miss_gives_no_false_verdict(honest, src, seed):
    """Column src of w also moves column 5 of out: a slice shortcut would give w[:, src] too
    little and w[:, 5] too much. The probe moves every pair of columns apart in some call and
    sees it (before it moved two random columns, and missed src = 3); behind it, every call's
    unmoved columns must not change, and failing elements are estimated again one call per copy.
    A right backward passes, one missing the coupling fails at w[:, src] alone."""
    import gradverify
    x, w, b = _affine_inputs(seed)
    fwd, bwd = _affine(coupling=2.0, src=src)
    rep = gradverify.check_op(fwd, lambda d, c: bwd(d, c, honest), x, w, b, seed=seed)
    node = rep.node("w")
    wrong = {tuple(np.unravel_index(i, w.shape)) for i in node.flat[node.statuses == "fail"]}
    assert rep.ok == honest
    assert wrong == (set() if honest else {(i, src) for i in range(4)})


COUPLED_BAD = '''
import numpy as np

def affine_forward(x, w, b):
    out = x @ w + b
    out[:, 5] += 2.0 * w[:, 3].sum()  # column 3 of w also moves column 5
    return out, (x, w)

def affine_backward(dout, cache):  # forgets that coupling: dw[:, 3] is wrong
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)
'''


@pytest.mark.parametrize("sample,seed", [(4, 0), (6, 2), (8, 1), (12, 1), (12, 3), (16, 5)])
def test_a_sampled_wrong_element_behind_a_missed_coupling_still_fails(tmp_path, sample, seed):
    """A sample may hold no element whose estimate a missed coupling spoils (none of column 5),
    so no element fails for the recheck to look at: the probe (every pair of columns) and each
    call of the slice shortcut (a slice none of its copies moved must not change) must see it.
    Every sampled w[:, 3] is wrong, and fails."""
    import gradverify
    (tmp_path / "coupled.py").write_text(COUPLED_BAD)
    cfg = tmp_path / "net.yaml"
    cfg.write_text("seed: 0\nvalues:\n  x: {shape: [6, 4], init: normal}\n  w: {shape: [4, 8], init: normal}\n"
                   "  b: {shape: [8], init: normal}\ninputs: [x]\n"
                   "graph:\n  - {name: out, op: coupled.py:affine, inputs: [x, w, b]}\nloss: out\n")
    node = gradverify.check(cfg, sample=sample, seed=seed, nodes=["w"]).node("w")
    column = np.unravel_index(node.flat, (4, 8))[1]
    assert list(node.statuses[column == 3]) == ["fail"] * int((column == 3).sum())
    assert list(node.statuses[column != 3]) == ["pass"] * int((column != 3).sum())


def test_a_boolean_output_is_a_mask_of_numbers():
    """A step function's output, (x @ w) > 0, is 0 and 1: its gradient is 0 almost everywhere,
    and a backward returning zeros passes (no numpy error on subtracting booleans)."""
    import gradverify
    rng = np.random.default_rng(0)
    rep = gradverify.check_op(lambda x, w: ((x @ w) > 0, None),
                              lambda dout, cache: (np.zeros((6, 4)), np.zeros((4, 8))),
                              rng.normal(size=(6, 4)), rng.normal(size=(4, 8)))
    assert all(n.numeric.max(initial=0) == 0 for n in rep.nodes if n.name in ("x", "w"))


def _coupled_into_six(kind: str):
    """An affine whose column 6 also gets 2·Σ w[:, 3] ("swap") or 2·(Σ w[:, 3] − Σ w[:, 2])
    ("cancel": with equal steps, moving both columns at once cancels), and two backwards: one
    right, one wrong ("swap": the term credited to the receiving column 6; "cancel": forgotten)."""
    def forward(x, w, b):
        out = x @ w + b
        out[:, 6] += 2.0 * (w[:, 3].sum() - (w[:, 2].sum() if kind == "cancel" else 0.0))
        return out, (x, w)

    def backward(dout, cache, right: bool):
        x, w = cache
        dw, extra = x.T @ dout, 2.0 * dout[:, 6].sum()
        if right:
            dw[:, 3] += extra
            if kind == "cancel":
                dw[:, 2] -= extra
        elif kind == "swap":
            dw[:, 6] += extra
        return dout @ w.T, dw, dout.sum(axis=0)
    return forward, backward


@pytest.mark.parametrize("kind", ["swap", "cancel"])
@pytest.mark.parametrize("right", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_a_coupling_within_one_call_is_found_by_the_probe(kind, right, seed):
    """Every call of the slice shortcut moves one element of each column in a full check, so a
    coupling between columns never shows as an unmoved column changing there, and its effect can
    cancel (equal steps, opposite signs) or land on the receiving copy, mirroring a backward
    that credits it there. The probe moves every pair of columns apart in some call (group
    testing over the bits of the column index), sees the coupling and keeps the shortcut off:
    the verdicts are those of one call per copy."""
    import gradverify
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(6, 4)), rng.uniform(-0.9, 0.9, size=(4, 8)), rng.normal(size=8)
    fwd, bwd = _coupled_into_six(kind)
    rep = gradverify.check_op(fwd, lambda d, c: bwd(d, c, right), x, w, b, seed=seed)
    assert rep.ok == right, rep.table()


@pytest.mark.parametrize("seed", range(3))
def test_a_probe_that_missed_a_coupling_is_caught_among_many_kinks(monkeypatch, seed):
    """The last net under the probe (forced here to accept w's columns although column 3 also
    moves column 6): failing elements are estimated again one call per copy. Here 64 elements of
    w sit on relu's kink (row 0 of x @ w is 0) and fail a central difference before kink
    detection either way; the recheck spreads over up to 64 of the failing elements and
    compares estimates, so it reaches the spoiled columns 3 and 6 and turns the shortcut off:
    w is KINK, as with one call per copy, not FAIL."""
    import gradverify
    from gradverify import userpush
    monkeypatch.setattr(userpush, "aligned_axis", lambda op, slot, xs, out: xs[slot].ndim - 2)

    def forward(x, w, b):
        z = x @ w
        out = np.maximum(z, 0) + b
        out[:, 6] += 2.0 * w[:, 3].sum()
        return out, (x, w, z)

    def backward(dout, cache):
        x, w, z = cache
        dz = dout * (z > 0)
        dw = x.T @ dz
        dw[:, 3] += 2.0 * dout[:, 6].sum()
        return dz @ w.T, dw, dout.sum(axis=0)

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(6, 4))
    x[0] = [1.0, 0.0, 0.0, -1.0]
    w = rng.uniform(-0.9, 0.9, size=(4, 32))
    w[3] = w[0]
    rep = gradverify.check_op(forward, backward, x, w, rng.normal(size=32), seed=seed, method="central")
    assert rep.node("w").status == "kink" and not (rep.node("w").statuses == "fail").any()


@pytest.mark.parametrize("row,rows", [(4, 8), (6, 8), (4, 16), (6, 16)])
def test_a_coupling_through_a_tie_is_found_by_moving_both_ways(row, rows):
    """out = x @ w + 3·max(w[row, :]) with w[row, :] = 0, a tie: a move that lowers the tied
    entries changes nothing, one that raises one moves every column. A probe moving one way only
    can miss the coupling; the shortcut then moves the whole row at once and reads each copy's
    3·Σ dout off its own column, exactly what a backward adding 3·dout.sum(0) to the whole row
    (no argmax) computes. The probe moves every slice both ways, sees the coupling, and that
    backward fails, as it does with one call per copy."""
    import gradverify

    def forward(x, w):
        return x @ w + 3.0 * np.max(w[row, :]), (x, w)

    def backward(dout, cache):
        x, w = cache
        dw = x.T @ dout
        dw[row, :] += 3.0 * dout.sum(axis=0)  # wrong: belongs to dw[row, argmax], summed over columns
        return dout @ w.T, dw

    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(6, rows)), rng.normal(size=(rows, 2))
    w[row] = 0.0
    rep = gradverify.check_op(forward, backward, x, w, method="central")
    assert not rep.ok and list(rep.node("w").statuses.reshape(rows, 2)[row]) == ["fail", "fail"]
