"""The numeric side: each method's accuracy on a smooth network against the closed-form gradient,
error bars, kinks (declared and found from the numbers), the step sweep."""
import numpy as np
import pytest

from gradverify import checker, config, numeric, ops
from gradverify.checker import Settings

from conftest import CONFIGS

SMOOTH = CONFIGS / "smooth.yaml"


def smooth_worst(method: str, negligible: float) -> float:
    """The largest relative error over every element whose gradient is not negligible: at least
    `negligible` times its node's largest. (A real difference's error has an absolute floor,
    ε·|loss|/h ≈ 1e-11 here, so an element 1e-6 the size of its node's largest cannot be had to
    1e-7 relative by central differences; the complex step has no such floor.)"""
    rep = checker.run(config.load(SMOOTH), Settings(method=method))
    assert rep.status == "pass", [(n.name, n.status) for n in rep.nodes]
    worst = 0.0
    for n in rep.nodes:
        keep = np.abs(n.analytic) > negligible * max(n.max_analytic, 1e-300)
        worst = max(worst, float(np.max(n.rel_error[keep], initial=0.0)))
    return worst


@pytest.mark.parametrize("method,bound,negligible", [
    ("auto", 2e-12, 1e-8), ("complex", 2e-12, 1e-8), ("central", 1e-7, 1e-2), ("richardson", 1e-8, 1e-2)])
def test_smooth_network_accuracy(method, bound, negligible):
    """Analytic against numeric. For the complex step the bound is the float64 backward's own
    rounding: at its worst element (w2[56], 7e-5 of the node's largest) the analytic value is
    1e-12 off the truth (test_complex_step_against_extended_precision)."""
    assert smooth_worst(method, negligible) <= bound


def _smooth_dw2_extended():
    """d loss / d w2 of smooth.yaml by its closed form in numpy's extended precision (64-bit
    mantissa): a reference 2,000 times finer than float64's rounding."""
    cfg = config.load(SMOOTH)
    ld = np.longdouble
    x = cfg.inputs.astype(ld)
    (w1, b1), (w2, b2), (w3, b3) = [(lay.weights.astype(ld), lay.bias.astype(ld)) for lay in cfg.layers]
    h1 = np.tanh(x @ w1 + b1)
    h2 = 1 / (1 + np.exp(-(h1 @ w2 + b2)))
    z = h2 @ w3 + b3
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dh2 = ((p - np.eye(4, dtype=ld)[cfg.labels]) / len(x)) @ w3.T
    return (h1.T @ (dh2 * h2 * (1 - h2)) + 2 * ld(cfg.reg_strength) * w2).reshape(-1)


def test_complex_step_against_extended_precision():
    """The complex step's estimate of w2 (copies stopping at the cuts beyond it) against the
    extended-precision closed form: within 1e-12 relative at every element above 1e-8 of the
    largest (an element 1e-5 of the largest is a sum whose terms cancel: its rounding, ~1e-16 of
    the terms, is ~1e-12 of it; the float64 backward's worst element is off by 1e-12 too), and
    within its own error bar everywhere."""
    truth = _smooth_dw2_extended()
    node = checker.run(config.load(SMOOTH), Settings(nodes=("w2",))).node("w2")
    keep = np.abs(truth) > 1e-8 * np.abs(truth).max()
    rel = np.abs(node.numeric.astype(np.longdouble) - truth)[keep] / np.abs(truth)[keep]
    assert float(rel.max()) <= 1e-12
    assert np.all(np.abs(node.numeric - truth.astype(np.float64)) <= node.error + 1e-15 * np.abs(truth).max())


def test_smooth_analytic_matches_closed_form():
    """The engine's analytic gradient of w1 against the textbook backward written out here."""
    cfg = config.load(SMOOTH)
    x, (l1, l2, l3) = cfg.inputs, cfg.layers
    h1 = np.tanh(x @ l1.weights + l1.bias)
    h2 = 1 / (1 + np.exp(-(h1 @ l2.weights + l2.bias)))
    z = h2 @ l3.weights + l3.bias
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(4)[cfg.labels]) / len(x)
    dh2 = dz @ l3.weights.T
    dh1 = (dh2 * h2 * (1 - h2)) @ l2.weights.T
    dw1 = x.T @ (dh1 * (1 - h1 ** 2)) + 2 * cfg.reg_strength * l1.weights
    rep = checker.run(config.load(SMOOTH), Settings(nodes=("w1",)))
    np.testing.assert_allclose(rep.node("w1").analytic, dw1.reshape(-1), rtol=1e-12)
    np.testing.assert_allclose(rep.node("w1").numeric, dw1.reshape(-1), rtol=1e-12)


def _smooth_with_seed(seed: int):
    text = SMOOTH.read_text().replace("seed: 3", f"seed: {seed}")
    return config.parse(text, file="smooth.yaml", base_dir=CONFIGS)


def test_correct_backward_never_fails_over_100_seeds():
    for seed in range(100):
        rep = checker.run(_smooth_with_seed(seed))
        assert rep.status == "pass", (seed, [(n.name, n.max_rel_error) for n in rep.nodes if n.status != "pass"])


@pytest.mark.parametrize("seed", range(5))
def test_backward_wrong_by_1e9_is_caught(seed, monkeypatch):
    class Off(ops.Tanh):
        def backward(self, g, out, x):
            return (super().backward(g, out, x)[0] * (1 + 1e-9),)

    import gradverify.build as build
    monkeypatch.setitem(build._ACTIVATION_OPS, "tanh", Off)
    rep = checker.run(_smooth_with_seed(seed))
    assert rep.node("l1_lin").status == "fail" and rep.node("l1_tanh").status == "pass"
    assert [b.node for b in rep.blame] == ["l1_tanh"]


def test_error_bars_cover_the_real_error():
    """Each real method's error bar is at least its actual error against the complex step."""
    exact = checker.run(config.load(SMOOTH))
    for method in ("central", "richardson"):
        rep = checker.run(config.load(SMOOTH), Settings(method=method))
        for n, e in zip(rep.nodes, exact.nodes):
            actual = np.abs(n.numeric - e.numeric)
            assert np.all(actual <= n.error + 1e-15), (method, n.name)


def test_near_kink_is_stepped_around_not_reported(tmp_path):
    """l1_lin[0,0] = 1e-7: a central stencil of h ≈ 6e-6 would cross ReLU's kink; shrinking the
    step finds the function smooth at x (the kink is near, not at), so no KINK. At 1e-9, within
    a thousandth of the step, it is reported as a kink, the analytic value on its right side."""
    f = tmp_path / "near.yaml"
    f.write_text((CONFIGS / "seed.yaml").read_text().replace("bias: [-1, 3, 1]", "bias: [-0.9999999, 3, 1]"))
    rep = checker.run(config.load(f), Settings(method="central"))
    assert rep.status == "pass", [(n.name, n.status) for n in rep.nodes]
    f.write_text((CONFIGS / "seed.yaml").read_text().replace("bias: [-1, 3, 1]", "bias: [-0.999999999, 3, 1]"))
    e = checker.run(config.load(f), Settings(method="central")).node("w1").element(0)
    assert e.status == "kink" and e.analytic == pytest.approx(e.right, abs=1e-9)


def test_kink_found_from_numbers_in_custom_code():
    rep = checker.run(config.load(CONFIGS / "seed_custom_relu.yaml"))
    got = {n.name: n.status for n in rep.nodes}
    assert {k for k, v in got.items() if v == "kink"} == {"x", "w1", "b1", "w1_out", "l1_lin"}
    assert got["divexps"] == "pass"   # steep but smooth: its one-sided derivatives close up
    e = rep.node("w1").element(0)
    assert e.left == pytest.approx(0.05, abs=1e-8) and e.right == pytest.approx(0.69719, abs=1e-5)


def test_divexps_steep_but_smooth_not_a_kink():
    """detect_kinks itself on divexps (1/sexps is steep): no kink."""
    p = checker.prepare(config.load(CONFIGS / "seed.yaml"))
    kink, left, right, _ = numeric.detect_kinks(p.graph, p.values, "divexps", np.array([0, 1]), 32.0)
    assert not kink.any()
    kink, *_ = numeric.detect_kinks(p.graph, p.values, "l1_lin", np.array([0]), 0.74)
    assert kink.all()


def test_below_noise_floor(tmp_path):
    """A gradient of 1e-20: analytic and numeric agree only in being too small to judge."""
    f = tmp_path / "tiny.yaml"
    f.write_text("values: {x: [[1.0e-20, 1.0]]}\ngraph:\n- {name: s, op: sum, inputs: [x]}\n"
                 "- {name: q, op: square, inputs: [x]}\n- {name: t, op: sum, inputs: [q]}\nloss: t\n")
    rep = checker.run(config.load(f))
    assert rep.node("x").statuses.tolist() == ["floor", "pass"] and rep.node("x").status == "pass"
    # s does not reach the loss: its gradient is zero, which proves nothing about its backward
    assert rep.node("s").status == "undecided" and rep.status == "undecided" and rep.exit_code == 0


def test_split_finds_a_data_bug_hidden_by_l2(tmp_path):
    """With a huge L2 term the total gradient of w1 hides a 1e-6 error in the data loss's
    backward; --split checks d loss_data / d w1 on its own and catches it."""
    (tmp_path / "mine.py").write_text(
        "import numpy as np\n"
        "def softmax_loss(x, y):\n"
        "    p = np.exp(x - x.real.max(1, keepdims=True)); p = p / p.sum(1, keepdims=True)\n"
        "    n = len(x)\n"
        "    loss = -np.sum(np.log(p[np.arange(n), y])) / n\n"
        "    dx = p.copy(); dx[np.arange(n), y] -= 1\n"
        "    return loss, dx / n * (1 + 1e-6)\n")
    cfg = tmp_path / "net.yaml"
    cfg.write_text("inputs: [[1.0, 2.0], [0.5, -1.0]]\nlabels: [0, 1]\nregularization: 1000000\n"
                   "layers:\n  - {weights: [[0.3, -0.2], [0.1, 0.4]], bias: [0.1, -0.1]}\n"
                   "loss: mine.py:softmax_loss\n")
    plain = checker.run(config.load(cfg), Settings(nodes=("w1", "b1")))
    assert plain.status == "pass"   # the L2 term's gradient is 1e7× larger
    split = checker.run(config.load(cfg), Settings(nodes=("w1", "b1"), split=True))
    parts = {(n.name, n.of): n.status for n in split.nodes}
    assert parts[("w1", "loss_data")] == "fail" and parts[("w1", "loss_reg")] == "pass"


def test_float32_side_by_side():
    text = SMOOTH.read_text().replace("seed: 3", "seed: 3\ndtype: float32")
    rep = checker.run(config.parse(text, file="smooth32.yaml"))
    assert rep.status == "pass"
    worst32 = max(n.max_rel_error for n in rep.nodes)
    worst64 = max(n.float64_rel_error for n in rep.nodes)
    assert worst32 > 1e-9 and worst64 < 1e-12   # float32 rounding explains all of the error
    assert rep.nodes[0].rtol == checker.FLOAT32_TOLERANCE[0]


def test_float32_fast_and_blame_estimate_on_the_float64_rerun(monkeypatch):
    """--fast's directions and elements, and blame's per-edge estimates, perturb the float64
    re-run of a float32 network (as the full check does), not its float32 values."""
    text = SMOOTH.read_text().replace("seed: 3", "seed: 3\ndtype: float32")
    seen = []
    real_estimate, real_directional = numeric.estimate, numeric.directional

    def spy(fn):
        def wrapped(graph, values, name, *args, **kw):
            seen.append(values[name].dtype)
            return fn(graph, values, name, *args, **kw)
        return wrapped

    monkeypatch.setattr(numeric, "estimate", spy(real_estimate))
    monkeypatch.setattr(numeric, "directional", spy(real_directional))
    rep = checker.run(config.parse(text, file="smooth32.yaml"), Settings(fast=True))
    assert rep.status == "pass" and seen and all(dt == np.float64 for dt in seen)
    from gradverify.checker import blame
    run = checker.prepare(config.parse(text, file="smooth32.yaml"))
    seen.clear()
    blame.edge_disagrees(run, "l1_tanh", "w2_out", np.arange(3))
    assert seen == [np.float64]


def test_sweep_shapes():
    """The V of forward differences, the complex step's flat floor."""
    p = checker.prepare(config.load(SMOOTH))
    flat = int(np.argmax(np.abs(p.grads["w2"])))
    data = numeric.sweep(p.graph, p.values, "w2", flat)
    a = float(np.asarray(p.grads["w2"]).reshape(-1)[flat])
    err = {m: np.abs(data[m] - a) for m in ("forward", "central", "complex")}
    steps = list(data["steps"])

    def at(h):
        return steps.index(min(steps, key=lambda s: abs(np.log10(s / h))))

    assert err["forward"][at(1e-8)] < err["forward"][at(1e-2)]     # truncation falls …
    assert err["forward"][at(1e-8)] < err["forward"][at(1e-13)]    # … until rounding rises
    assert np.all(err["complex"][at(1e-6):] < 1e-14 * max(abs(a), 1))
    assert not data["kink"]


def test_loss_changes_match_whole_forward_passes():
    """directional.loss_changes (the Taylor test's and --fast's evaluations, downstream of the
    node only) against full forward passes with the node's leaf replaced."""
    from gradverify.numeric.directional import loss_changes

    p = checker.prepare(config.load(CONFIGS / "smooth.yaml"))
    rng = np.random.default_rng(1)
    w = p.values["w2"]
    disp = rng.normal(size=(3,) + w.shape[1:]) * 1e-3
    got = loss_changes(p.graph, p.values, "w2", disp)
    base = float(p.values["loss"][0])
    want = [float(p.graph.forward({"w2": w + d[None]})["loss"][0]) - base for d in disp]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)
