"""The notebook reproduced: its loss, its probes, and gradients derived by hand in this file."""
import numpy as np
import pytest

from gradverify import checker, config, ops
from gradverify.build import build
from gradverify.checker import Settings

from conftest import CONFIGS

# the notebook's network, written out again here
X = np.array([[2.0], [-5.0]])
Y = np.array([1, 0])
W1 = np.array([[0.5, 0.4, 0.3]])
B1 = np.array([-1.0, 3.0, 1.0])
W2 = np.array([[0.8, -0.1], [1.3, 0.15], [-1.1, 0.95]])
B2 = np.array([0.65, 0.8])
REG = 0.05


def hand_gradients():
    """Every node's gradient by the textbook formulas (not gradverify's ops)."""
    n = X.shape[0]
    l1_lin = X @ W1 + B1
    l1_relu = np.maximum(l1_lin, 0)
    l2_lin = l1_relu @ W2 + B2
    exps = np.exp(l2_lin)
    sexps = exps.sum(1, keepdims=True)
    p = exps / sexps
    onehot = np.eye(2)[Y]
    g = {}
    g["neg_log"] = np.full(n, 1 / n)
    g["softmax"] = -onehot / p / n
    g["divexps"] = (g["softmax"] * exps).sum(1, keepdims=True)
    g["sexps"] = -g["divexps"] / sexps ** 2
    g["exps"] = g["softmax"] / sexps + g["sexps"]
    g["l2_lin"] = (p - onehot) / n          # the classic softmax-CE gradient
    g["w2_out"] = g["l2_lin"]
    g["b2"] = g["l2_lin"].sum(0) + 2 * REG * B2
    g["w2"] = l1_relu.T @ g["l2_lin"] + 2 * REG * W2
    g["l1_relu"] = g["l2_lin"] @ W2.T
    g["l1_lin"] = g["l1_relu"] * (l1_lin > 0)
    g["w1_out"] = g["l1_lin"]
    g["b1"] = g["l1_lin"].sum(0) + 2 * REG * B1
    g["w1"] = X.T @ g["l1_lin"] + 2 * REG * W1
    g["x"] = g["l1_lin"] @ W1.T
    return g


@pytest.fixture(scope="module")
def report():
    return checker.run(config.load(CONFIGS / "seed.yaml"))


def test_seed_loss_matches_notebook(report):
    assert report.loss == pytest.approx(1.6433835063990552, abs=1e-15)
    assert report.loss_data == pytest.approx(0.7915085063990551, abs=1e-15)
    assert report.loss_reg == pytest.approx(0.851875, abs=1e-15)


def test_seed_statuses(report):
    kink = {"x", "w1", "b1", "w1_out", "l1_lin"}
    got = {n.name: n.status for n in report.nodes}
    assert list(got) == ["x", "w1", "b1", "w1_out", "l1_lin", "l1_relu", "w2", "b2", "w2_out",
                         "l2_lin", "exps", "sexps", "divexps", "softmax", "neg_log", "loss_data",
                         "loss_reg", "loss"]
    assert {n for n, s in got.items() if s == "kink"} == kink
    assert all(s == "pass" for n, s in got.items() if n not in kink)
    for name in kink:  # at their first element, and only there
        res = report.node(name)
        assert [e.index for e in res.elements() if e.status == "kink"] == [(0,) * len(res.shape)]
    assert report.exit_code == 0 and not report.blame


def test_seed_strict_exits_1():
    strict = checker.run(config.load(CONFIGS / "seed.yaml"), Settings(strict=True))
    assert strict.status == "kink" and strict.exit_code == 1


@pytest.mark.parametrize("name", list(hand_gradients()))
def test_analytic_and_numeric_match_hand_derivation(report, name):
    want = hand_gradients()[name].reshape(-1)
    res = report.node(name)
    np.testing.assert_allclose(res.analytic, want, rtol=1e-13, atol=1e-15)
    smooth = res.statuses != "kink"
    np.testing.assert_allclose(res.numeric[smooth], want[smooth], rtol=1e-12, atol=1e-14)


def test_w1_kink_left_and_right(report):
    e = report.node("w1").elements()[0]
    assert e.status == "kink" and e.analytic == pytest.approx(0.05, abs=1e-15)
    assert e.left == pytest.approx(0.05, abs=1e-9)
    # right-hand derivative: the ReLU switched on, so x[0]·dl1_relu[0,0] joins the L2 term
    right = 2.0 * hand_gradients()["l1_relu"][0, 0] + 2 * REG * 0.5
    assert e.right == pytest.approx(right, abs=1e-9)
    assert e.right == pytest.approx(0.69719, abs=1e-5)                 # the number
    assert e.right == pytest.approx(0.6971889732199088, abs=1e-5)      # the notebook's probe


def test_notebook_probes(report):
    """The notebook's forward-difference probes (steps 1e-10 … 1e-7) agree to their own accuracy."""
    probes = {("l1_relu", (1, 2)): 0.2756649575275105, ("w2_out", (1, 0)): -0.1344707012407298,
              ("w2", (2, 1)): -0.4802780395607442, ("b2", (1,)): -0.1450791042856281,
              ("softmax", (0, 1)): -1.7799906437687696, ("l2_lin", (0, 1)): -0.35954981214558757,
              ("exps", (1, 0)): -0.019131674022787593, ("sexps", (1, 0)): 0.052005355577477985,
              ("w2", (1, 0)): 1.3618186578412406}
    for (name, idx), value in probes.items():
        res = report.node(name)
        e = res.element(int(np.ravel_multi_index(idx, res.shape)))
        assert e.numeric == pytest.approx(value, abs=2e-6), (name, idx)
    assert report.node("l1_relu").element(5).numeric == pytest.approx(0.2756649569, abs=1e-10)
    # l1_lin[0,0] is on the kink: the notebook's forward probe 0.32359 is the right derivative
    assert report.node("l1_lin").element(0).right == pytest.approx(0.323594884221734, abs=1e-7)


def test_notebook_rounded_dsoftmax_is_caught():
    """The notebook typed dsoftmax by hand, rounded to -1.78 and -0.6839: off by ~1e-5 relative.
    A softmax-CE backward seeded with that rounding fails, blamed on neg_log_pick."""
    class Rounded(ops.NegLogPick):
        def backward(self, g, out, p):
            (dp,) = super().backward(g, out, p)
            return (np.round(dp, 4),)

    cfg = config.load(CONFIGS / "seed.yaml")
    graph = build(cfg)  # the seam: build the graph, substitute one node's op, check that graph
    graph.nodes["neg_log"].op = Rounded(graph.nodes["neg_log"].op.labels)
    rep = checker.run(cfg, graph=graph)
    assert rep.node("softmax").status == "fail" and rep.node("neg_log").status == "pass"
    assert [b.node for b in rep.blame] == ["neg_log"]
    assert rep.node("l2_lin").inherited and rep.exit_code == 1


@pytest.mark.parametrize("method", ["complex", "central", "richardson", "forward"])
def test_every_method_reproduces_the_seed_verdicts(method):
    rep = checker.run(config.load(CONFIGS / "seed.yaml"), Settings(method=method))
    assert {n.name for n in rep.nodes if n.status == "kink"} == {"x", "w1", "b1", "w1_out", "l1_lin"}
    assert rep.status == "kink"


def test_off_by_1e5_backward_is_caught():
    """A backward wrong by one part in 100,000 fails, with the right op blamed."""
    class Off(ops.Reciprocal):
        def backward(self, g, out, x):
            return (super().backward(g, out, x)[0] * (1 + 1e-5),)

    import gradverify.build as build
    orig = build.Reciprocal
    build.Reciprocal = Off
    try:
        rep = checker.run(config.load(CONFIGS / "seed.yaml"))
    finally:
        build.Reciprocal = orig
    assert rep.node("sexps").status == "fail" and rep.node("divexps").status == "pass"
    assert [(b.node, b.op) for b in rep.blame] == [("divexps", "reciprocal")]
    assert "sexps" in rep.blame[0].message


def test_bundled_config_is_the_seed():
    from gradverify.cli import BUNDLED
    assert BUNDLED.read_text() == (CONFIGS / "seed.yaml").read_text()


def test_nonfinite_numeric_marks_the_element_only(tmp_path):
    """p[0,0] = 1e-300: a real step below it takes log of a negative number. That element is
    marked nonfinite; the other elements and the node's maxima stay meaningful."""
    f = tmp_path / "g.yaml"
    f.write_text("values: {p: [[1.0e-300, 1.0], [0.5, 0.5]]}\nlabels: [0, 1]\ngraph:\n"
                 "- {name: n, op: neg_log_pick, inputs: [p]}\n- {name: s, op: sum, inputs: [n]}\nloss: s\n")
    rep = checker.run(config.load(f), Settings(method="central"))
    p = rep.node("p")
    assert p.statuses.tolist() == ["nonfinite", "pass", "pass", "pass"]
    assert p.status == "fail" and np.isfinite(p.max_abs_error)
    assert checker.run(config.load(f)).node("p").status == "pass"  # the complex step has no such trouble


def test_a_stencil_leaving_the_domain_is_tried_again_at_smaller_steps(tmp_path):
    """p[0, 0] = 1e-7 below central differences' step (6e-6): x − h is a negative probability
    and its log NaN, although the loss is finite. The element is estimated again at h/16, h/256
    (inside the domain), and passes, with the complex step's value (a second method); at
    p = 1e-300 no step is small enough, and it stays nonfinite (the test above)."""
    f = tmp_path / "g.yaml"
    f.write_text("values: {p: [[1.0e-7, 1.0], [0.5, 0.5]]}\nlabels: [0, 1]\ngraph:\n"
                 "- {name: n, op: neg_log_pick, inputs: [p]}\n- {name: s, op: sum, inputs: [n]}\nloss: s\n")
    central = checker.run(config.load(f), Settings(method="central")).node("p")
    assert central.statuses.tolist() == ["pass"] * 4
    complex_step = checker.run(config.load(f)).node("p")
    assert complex_step.numeric[0] == pytest.approx(-1e7, rel=1e-12)  # d(−log p)/dp = −1/p, by hand
    # h/256 = 2.3e-8 is a quarter of p: a truncation error of h²/(3p²) ≈ 2%, inside the error bar
    assert np.all(np.abs(central.numeric - complex_step.numeric) <= central.error)
    assert central.error[0] < 0.1 * 1e7


@pytest.mark.parametrize("method", ["central", "richardson"])
def test_an_error_bar_whose_wider_stencil_leaves_the_domain_is_tried_again(method):
    """log x near 0 with a right backward (1/x): for x between h and 2h the estimate is finite
    but its error bar, from the 2h stencil, is NaN; for x far below h only a step thousands of
    times smaller stays inside. Both are tried again at smaller steps until the estimate and its
    error bar are finite, and pass."""
    import gradverify
    x = np.array([[5e-7, 9e-6, 3e-6, 0.5], [2e-8, 1e-3, 0.25, 0.75]])
    rep = gradverify.check_op(lambda v: (np.log(v), v), lambda dout, v: dout / v, x, method=method)
    node = rep.node("v")  # check_op names an input after the forward's parameter
    assert rep.ok and np.all(np.isfinite(node.error)), (node.statuses, node.error)


@pytest.mark.parametrize("settings", [Settings(), Settings(max_memory=1), Settings(sample=5),
                                      Settings(fast=True), Settings(method="richardson")],
                         ids=["full", "one-at-a-time", "sampled", "fast", "richardson"])
def test_smooth_passes_in_every_mode(settings):
    rep = checker.run(config.load(CONFIGS / "smooth.yaml"), settings)
    assert rep.status == "pass" and rep.exit_code == 0


@pytest.mark.parametrize("name", ["smooth.yaml", "seed.yaml", "skip.yaml"])
def test_vectorized_equals_one_at_a_time(name):
    """Chunks of copies with sparse changes give what one plain copy at a time gives."""
    batched = checker.run(config.load(CONFIGS / name))
    single = checker.run(config.load(CONFIGS / name), Settings(max_memory=1))
    for a, b in zip(batched.nodes, single.nodes):
        assert a.status == b.status
        np.testing.assert_allclose(a.numeric, b.numeric, rtol=1e-13, atol=1e-16)


def test_projection_is_not_drawn_like_the_values(tmp_path):
    """`loss:` naming a non-scalar node contracts it with a random R. Were R drawn from the same
    stream as the config's first generated value (same seed, same shape, std 1), R would equal x,
    the upstream gradient would equal x, and a backward that uses x where dout belongs would pass.
    It must fail (it did pass, exit 0, before R got its own stream)."""
    (tmp_path / "ops.py").write_text(
        "import numpy as np\n"
        "def t_forward(x):\n    y = np.tanh(x)\n    return y, (x, y)\n"
        "def t_backward(dout, cache):\n    x, y = cache\n    return x * (1 - y ** 2)  # BUG: x, not dout\n")
    cfg = tmp_path / "t.yaml"
    for seed in range(4):
        cfg.write_text(f"seed: {seed}\nvalues:\n  x: {{shape: [4, 5], init: normal, std: 1.0}}\n"
                       "graph:\n  - {name: t, op: ops.py:t, inputs: [x]}\nloss: t\n")
        rep = checker.run(config.load(cfg))
        assert rep.node("x").status == "fail" and rep.exit_code == 1, seed
