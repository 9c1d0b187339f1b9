"""Cuts (numeric/cuts.py): a complex step stops at the first node beyond whose numeric gradient is
known, and adds ⟨∇L, change⟩ there.

The numbers they give are checked against the same estimates without cuts (every copy pushed to
the loss) and against central differences (a second method); the cut's own gradient is shown to
be what the upstream estimate reads (changed by hand, the estimate moves by the amount worked out
by hand); nodes beyond which the loss is not smooth and built-in are never cuts.
"""
from pathlib import Path

import numpy as np
import pytest

from gradverify import api, checker, config, graph, numeric
from gradverify.delta import Delta, Kind
from gradverify.graph import CutGradient
from gradverify.numeric import cuts as cuts_mod

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
ZOO = Path(__file__).resolve().parent.parent / "examples" / "zoo"


def _prepared(name: str):
    run = checker.prepare(config.load(CONFIGS / name))
    return run, run.graph, run.nvalues


def test_an_estimate_through_cuts_equals_one_without_and_central_differences():
    """smooth.yaml's first-layer weight: with the cuts beyond it, without them (every copy to the
    loss), and by central differences: the same numbers within each one's error bar."""
    run, g, values = _prepared("smooth.yaml")
    cut = numeric.Cuts(g, values)
    with_cuts = numeric.estimate(g, values, "w1", cuts=cut)
    # alone, only cuts no larger than w1's 72 elements pay: the 8×4 logits and the loss after them
    assert {"l3_lin", "loss_data"} <= set(cut.beyond("w1")) and "w1_out" not in cut.beyond("w1")
    plain = numeric.estimate(g, values, "w1")
    central = numeric.estimate(g, values, "w1", method="central")
    scale = np.abs(plain.numeric).max()
    np.testing.assert_allclose(with_cuts.numeric, plain.numeric, rtol=0, atol=1e-14 * scale)
    assert np.all(np.abs(with_cuts.numeric - central.numeric) <= central.error + with_cuts.error + 1e-12 * scale)
    assert np.all(with_cuts.error < 1e-13 * scale)  # still the complex step's precision


def test_the_estimate_reads_the_cuts_gradient():
    """Add 1 to every entry of l3_lin's gradient (the cut nearest b3, by an add_bias): b3[j]
    moves column j of l3_lin by the step in each of its 8 rows, so b3's estimate must move by
    exactly 8 — and its error bar by √8 times the error bar put on the cut (8 terms of 1e-3, in
    quadrature)."""
    run, g, values = _prepared("smooth.yaml")
    cut = numeric.Cuts(g, values)
    numeric.estimate(g, values, "l3_lin", cuts=cut)  # known now: b3's copies stop there
    before = numeric.estimate(g, values, "b3", cuts=cut)
    assert "l3_lin" in cut.beyond("b3")
    known = cut._grads["l3_lin"]  # ∇L and its error bar
    rows = values["l3_lin"].shape[1]
    assert rows == 8
    cut._grads = {"l3_lin": CutGradient(known.grad + 1.0, known.bound + 1e-3)}
    after = numeric.estimate(g, values, "b3", indices=np.arange(4), cuts=cut)
    np.testing.assert_allclose(after.numeric - before.numeric, rows, rtol=1e-12)
    assert np.all(after.error >= np.sqrt(rows) * 1e-3) and np.all(after.error < 1.01 * np.sqrt(rows) * 1e-3 + 1e-12)


def test_only_nodes_beyond_which_the_loss_is_smooth_complex_safe_code_are_cuts():
    """The notebook's ReLU sits exactly on its kink: nothing before it may be a cut, everything
    after it may (but the loss itself)."""
    run, g, values = _prepared("seed.yaml")
    expected = {"x": False, "w1_out": False, "l1_lin": False, "l1_relu": True, "l2_lin": True,
                "exps": True, "loss_data": True, "loss": False}
    assert {n: run.cuts.eligible(n) for n in expected} == expected


def test_your_code_beyond_a_cut_must_have_passed_the_complex_probe():
    """Your ReLU (seed_custom_relu.yaml): with its complex probe passed, the nodes before it may
    be cuts (the superposition test then decides); unprobed, they may not."""
    run, g, values = _prepared("seed_custom_relu.yaml")
    assert run.trusted == {"l1_relu"}
    assert all(run.cuts.eligible(n) for n in ("w1_out", "l1_lin", "l1_relu", "w2_out"))
    unprobed = numeric.Cuts(g, values)
    assert not unprobed.eligible("w1_out") and not unprobed.eligible("l1_lin") and unprobed.eligible("w2_out")


def test_a_hinge_margin_of_exactly_zero_beyond_stops_cuts(tmp_path):
    """scores → hinge margins with a margin of exactly 0: scores is no cut (a copy moving it
    crosses the kink), the margins node after it is."""
    f = tmp_path / "svm.yaml"
    f.write_text("values: {x: [[2.0, 1.0], [0.5, -1.0]], w: [[1.0, 0.0], [0.0, 1.0]]}\n"
                 "inputs: [x]\nlabels: [0, 0]\ngraph:\n"
                 "- {name: s, op: matmul, inputs: [x, w]}\n"
                 "- {name: m, op: hinge_margins, inputs: [s]}\n"
                 "- {name: loss, op: sum, inputs: [m]}\nloss: loss\n")
    run = checker.prepare(config.load(f))
    cut = numeric.Cuts(run.graph, run.nvalues)
    assert not cut.eligible("s") and cut.eligible("m")
    report = api.check(str(f))
    assert report.node("x").status == "kink"  # and the kink is still found through the cut at m


def test_a_cut_whose_error_bar_was_widened_is_not_kept(tmp_path):
    """A softmax output of 3e-14 gets the complex step's underflow probe, whose error bar is of
    the size of the derivative itself: it would widen every error bar upstream, so it is no cut."""
    f = tmp_path / "tiny.yaml"
    f.write_text("values: {s: [[0.0, 31.0], [1.0, 0.0]]}\ninputs: [s]\nlabels: [0, 0]\ngraph:\n"
                 "- {name: p, op: softmax, inputs: [s]}\n"
                 "- {name: nl, op: neg_log_pick, inputs: [p]}\n"
                 "- {name: loss, op: batch_mean, inputs: [nl]}\nloss: loss\n")
    run = checker.prepare(config.load(f))
    cut = numeric.Cuts(run.graph, run.nvalues)
    assert cut.eligible("p")
    est = numeric.estimate(run.graph, run.nvalues, "p", cuts=cut)
    assert est.error.max() > cuts_mod.CUT_ERROR * np.abs(est.numeric).max()
    assert "p" not in cut.beyond("s") and "nl" in cut.beyond("s")
    assert api.check(str(f)).node("s").status == "pass"


def _same_reports(a, b, rtol=1e-12):
    assert a.exit_code == b.exit_code and [str(x) for x in a.blame] == [str(x) for x in b.blame]
    for x, y in zip(a.nodes, b.nodes, strict=True):
        assert x.statuses.tolist() == y.statuses.tolist(), x.name
        scale = max(np.abs(y.numeric).max(initial=0), 1e-300)
        close = np.abs(x.numeric - y.numeric) <= x.error + y.error + rtol * scale
        assert np.all(close | ~np.isfinite(y.numeric)), x.name


@pytest.mark.parametrize("path", [
    CONFIGS / "seed.yaml", CONFIGS / "seed_custom_relu.yaml", CONFIGS / "smooth32.yaml",
    CONFIGS / "skip.yaml", CONFIGS / "bench_medium.yaml", CONFIGS / "cnn_graph.yaml",
    ZOO / "softmax_rowsum.yaml", ZOO / "relu_mask.yaml", ZOO / "svm_correct_class.yaml",
    ZOO / "bias_mean.yaml",
], ids=lambda p: p.stem)
def test_checks_with_cuts_equal_checks_without(path, monkeypatch):
    """Whole checks, correct and buggy networks: the same statuses, blame and exit code, and
    every estimate within the two error bars (relative 1e-12 of the node)."""
    with_cuts = api.check(str(path))
    monkeypatch.setattr(cuts_mod, "ENABLED", False)
    without = api.check(str(path))
    _same_reports(with_cuts, without)


def test_a_deep_network_keeps_its_cuts():
    """Error bars of independent roundings add in quadrature: through 8 hidden layers every node
    but the inputs' is a cut, and no error bar exceeds 1e-13 of its node's largest estimate
    (added as absolute values they grew ~4× per layer and stopped the cuts at the fifth)."""
    import yaml
    sizes = [16, 16, 16, 16, 16, 16, 16, 16, 16, 4]
    layers = [{"weights": {"shape": [a, b], "init": "normal", "std": 0.3}, "bias": {"shape": [b], "init": "normal"},
               "activation": "tanh"} for a, b in zip(sizes[:-1], sizes[1:])]
    layers[-1].pop("activation")
    cfg = config.parse(yaml.safe_dump({"seed": 1, "inputs": {"shape": [6, 16], "init": "normal"},
                                       "labels": {"classes": 4}, "layers": layers}))
    run = checker.prepare(cfg)
    report = checker.run_prepared(run)
    assert report.status == "pass"
    ops = [n.name for n in report.nodes if run.graph.nodes[n.name].op is not None and n.name != run.graph.loss]
    assert all(name in run.cuts._grads for name in ops)
    for n in report.nodes:
        assert np.max(n.error) <= 1e-13 * max(np.max(np.abs(n.numeric)), 1e-300), n.name


def _random_net(seed: int) -> str:
    """A random MLP of built-in ops, integer-valued half the time (ReLU inputs at exactly 0, ties
    for max), with a softmax, hinge or squared-error loss."""
    rng = np.random.default_rng(seed)
    ints = seed % 2 == 0

    def arr(*shape):
        a = rng.integers(-2, 3, size=shape).astype(float) if ints else rng.normal(size=shape)
        return a.tolist()

    n, d, h, c = 3, 3, 4, 3
    act = ["relu", "tanh", "leaky_relu", "abs", "gelu"][seed % 5]
    loss = ["- {name: p, op: softmax, inputs: [s]}\n- {name: nl, op: neg_log_pick, inputs: [p]}\n"
            "- {name: ld, op: batch_mean, inputs: [nl]}\n",
            "- {name: hm, op: hinge_margins, inputs: [s]}\n- {name: ld, op: sum, inputs: [hm]}\n",
            f"- {{name: r, op: sub_const, inputs: [s], attrs: {{targets: {arr(n, c)}}}}}\n"
            "- {name: sq, op: square, inputs: [r]}\n- {name: ld, op: mean, inputs: [sq]}\n"][seed % 3]
    return (f"values: {{x: {arr(n, d)}, w1: {arr(d, h)}, b1: {arr(h)}, w2: {arr(h, c)}}}\n"
            f"inputs: [x]\nlabels: {rng.integers(0, c, size=n).tolist()}\ngraph:\n"
            "- {name: m1, op: matmul, inputs: [x, w1]}\n- {name: a1, op: add_bias, inputs: [m1, b1]}\n"
            f"- {{name: h1, op: {act}, inputs: [a1]}}\n- {{name: mx, op: max, inputs: [h1]}}\n"
            "- {name: s, op: matmul, inputs: [h1, w2]}\n" + loss +
            "- {name: mm, op: mean, inputs: [mx]}\n- {name: loss, op: add, inputs: [ld, mm]}\nloss: loss\n")


@pytest.mark.parametrize("seed", range(12))
def test_random_networks_with_cuts_equal_without(seed, tmp_path, monkeypatch):
    """Random networks, kinks on and off the plain pass: cuts change no status. An element whose
    gradient is exactly 0 may come out as rounding-sized (below the floor) through a cut where
    the full push cancelled exactly: that is the only difference allowed, and only there."""
    f = tmp_path / "net.yaml"
    f.write_text(_random_net(seed))
    with_cuts = api.check(str(f))
    monkeypatch.setattr(cuts_mod, "ENABLED", False)
    without = api.check(str(f))
    for x, y in zip(with_cuts.nodes, without.nodes, strict=True):
        benign = (x.analytic == 0) & (np.abs(x.numeric) < 1e-13) & \
            np.isin(x.statuses, ["pass", "floor"]) & np.isin(y.statuses, ["pass", "floor"])
        assert np.all((x.statuses == y.statuses) | benign), x.name
    assert with_cuts.exit_code == without.exit_code


def test_one_node_alone_gets_the_numbers_of_the_whole_check():
    """`gradverify node w1` (cuts estimated on demand, only those no larger than w1) and the
    whole check (every cut known from the nodes checked before) agree on w1."""
    cfg = config.load(CONFIGS / "smooth.yaml")
    whole = checker.run(cfg).node("w1")
    alone = checker.run_node(cfg, "w1").node("w1")
    np.testing.assert_allclose(alone.numeric, whole.numeric, rtol=0, atol=1e-14 * np.abs(whole.numeric).max())
    assert alone.statuses.tolist() == whole.statuses.tolist()


def test_the_split_parts_do_not_use_the_whole_losss_cuts():
    """--split checks each parameter against loss_data and loss_reg: another loss, so the cuts
    (gradients of the whole loss) must not serve it. Its numbers equal a check without cuts."""
    cfg = config.load(CONFIGS / "seed.yaml")
    split = checker.run(cfg, checker.Settings(split=True))
    parts = [r for r in split.nodes if r.of is not None]
    assert parts and all(r.status in ("pass", "kink") for r in parts)
    for r in parts:
        if r.of == "loss_reg":  # 0.05·Σp²: by hand, 0.1·p
            np.testing.assert_allclose(r.numeric, 0.1 * np.asarray(r.value, float), rtol=1e-12)


def test_a_users_step_is_never_carried_by_a_cut(monkeypatch):
    """--method complex --step 5e-10 on logits of 1e6: h = 5e-10·|x| is large enough for
    truncation there, so no estimate at a step of the user's becomes a cut (or stops at one):
    the check equals the one without cuts, number for number."""
    text = ("values: {x: [[1.0e6, 2.0e6], [-1.5e6, 5.0e5], [7.0e5, -3.0e5]], w: [[1.0, 1.0], [1.0, 1.0]],"
            " b: [0.3, -0.2]}\ninputs: [x]\nlabels: [0, 1, 0]\ngraph:\n"
            "- {name: m, op: matmul, inputs: [x, w]}\n- {name: n, op: add_bias, inputs: [m, b]}\n"
            "- {name: p, op: softmax, inputs: [n]}\n- {name: nl, op: neg_log_pick, inputs: [p]}\n"
            "- {name: loss, op: batch_mean, inputs: [nl]}\nloss: loss\n")
    settings = checker.Settings(method="complex", step=5e-10)
    with_cuts = checker.run(config.parse(text), settings)
    monkeypatch.setattr(cuts_mod, "ENABLED", False)
    without = checker.run(config.parse(text), settings)
    for x, y in zip(with_cuts.nodes, without.nodes, strict=True):
        assert x.statuses.tolist() == y.statuses.tolist() and np.array_equal(x.numeric, y.numeric), x.name


def _users_net(path, relu_std: float = 0.1) -> dict:
    """8×6 → 12 (your relu) → 4 with your affine (cs231n style), softmax cross-entropy, L2."""
    return {"seed": 3, "inputs": {"shape": [8, 6], "init": "normal"}, "labels": {"classes": 4},
            "regularization": 0.01,
            "layers": [{"op": f"{path}:affine", "weights": {"shape": [6, 12], "init": "normal", "std": 0.5},
                        "bias": {"shape": [12], "init": "normal", "std": relu_std},
                        "activation": f"{path}:relu"},
                       {"op": f"{path}:affine", "weights": {"shape": [12, 4], "init": "normal", "std": 0.5},
                        "bias": {"shape": [4], "init": "zeros"}}]}


@pytest.mark.parametrize("code", ["correct.py", "buggy.py"])
def test_your_probed_code_beyond_a_cut(code, monkeypatch):
    """Your affine and relu (complex-probed) beyond a cut: with it, copies of w1 stop at your
    first affine's output instead of running your relu and second affine each; the same statuses,
    blame and exit code as without cuts, for correct code (PASS) and for buggy code (its relu
    backward is wrong: FAIL, blamed on your relu)."""
    net = _users_net(ZOO / code)
    run = checker.prepare(config.parse(__import__("yaml").safe_dump(net)))
    report = checker.run_prepared(run)
    assert "l1_affine" in run.cuts._grads  # your relu and affine beyond it, probed, no kink seen
    monkeypatch.setattr(cuts_mod, "ENABLED", False)
    without = api.check(net)
    _same_reports(report, without)
    assert report.exit_code == (0 if code == "correct.py" else 1)


def test_a_kink_of_your_code_beyond_a_cut_is_still_found(monkeypatch):
    """Your ReLU with inputs at exactly 0 (seed_custom_relu.yaml; a kink it does not declare),
    whose complex step takes the same branch in every direction: the loss beyond l1_lin still
    superposes, so l1_lin may be a cut, giving the numbers the full push gives; the kinks are
    found from real one-sided steps (which take no cut), so the same five nodes are KINKs, with
    the same left and right derivatives, as without cuts."""
    run = checker.prepare(config.load(CONFIGS / "seed_custom_relu.yaml"))
    report = checker.run_prepared(run)
    assert run.cuts.opaque_beyond("l1_lin") and "l1_lin" in run.cuts._grads
    kinks = {n.name for n in report.nodes if n.status == "kink"}
    assert kinks == {"x", "w1", "b1", "w1_out", "l1_lin"}
    monkeypatch.setattr(cuts_mod, "ENABLED", False)
    without = api.check(str(CONFIGS / "seed_custom_relu.yaml"))
    _same_reports(report, without)
    for a, b in zip(report.nodes, without.nodes):
        np.testing.assert_array_equal(np.isnan(a.left), np.isnan(b.left))
        np.testing.assert_allclose(a.left[~np.isnan(a.left)], b.left[~np.isnan(b.left)], rtol=1e-9)


_TIED_MAX = '''import numpy as np


def rowmax2dbl_forward(x):
    """max over the first two columns, (N, D) -> (N, 1); numpy compares complex numbers"""
    out = np.max(x[:, :2], axis=1, keepdims=True)
    return out, (x, out)


def rowmax2dbl_backward(dout, cache):
    """the classic max-pool bug: every tied maximum gets the whole gradient"""
    x, out = cache
    dx = np.zeros(x.shape)
    dx[:, :2] = (x[:, :2] == out) * dout
    return dx
'''


def _tied_max_net(tmp_path) -> Path:
    """Your row max on N = x·W + B, whose sample 3 ties (N[3] = [4, 4, -40]); its backward
    double-counts ties, so d loss / d x[3] is wrong (a review's repro). Sample 3 is classified
    confidently: its gradient is ~1e-9 of the others'."""
    (tmp_path / "tricky.py").write_text(_TIED_MAX)
    f = tmp_path / "net.yaml"
    f.write_text("seed: 1\nvalues:\n  x: [[0.7], [1.3], [0.4], [4.0]]\n  W: [[1.0, 1.0, -10.0]]\n"
                 "  B: [[0, 0.5, 0], [0.3, 0, 0], [0, 0.2, 0], [0, 0, 0]]\n"
                 "  W2: [[0.3, -0.8, 0.5], [-0.6, 0.2, 0.9], [0.1, 0.4, -0.3]]\n  v: [[1.0, -2.0, 0.5]]\n"
                 "inputs: [x]\nlabels: [2, 0, 1, 2]\ngraph:\n"
                 "  - {name: xw, op: matmul, inputs: [x, W]}\n  - {name: N, op: add, inputs: [xw, B]}\n"
                 "  - {name: S, op: matmul, inputs: [N, W2]}\n  - {name: M, op: tricky.py:rowmax2dbl, inputs: [N]}\n"
                 "  - {name: T, op: matmul, inputs: [M, v]}\n  - {name: scores, op: add, inputs: [S, T]}\n"
                 "  - {name: p, op: softmax, inputs: [scores]}\n  - {name: nl, op: neg_log_pick, inputs: [p]}\n"
                 "  - {name: loss, op: batch_mean, inputs: [nl]}\nloss: loss\n")
    return f


@pytest.mark.parametrize("nodes", [None, ("x",)])
def test_your_direction_dependent_code_beyond_is_no_cut(tmp_path, nodes):
    """np.max of complex numbers at a tie picks by the imaginary part: the complex step beyond N
    depends on its direction, so N's estimate does not linearize what lies beyond it. N fails the
    superposition test and is no cut; x[3]'s bug is found as without cuts (in the whole check,
    and with --nodes x, where N's estimate is made on demand). A screen for kinks along random
    directions (the first version) missed this jump, 1e-9 of the node's largest derivative."""
    cfg = config.load(_tied_max_net(tmp_path))
    settings = checker.Settings(nodes=nodes) if nodes else checker.Settings()
    run = checker.prepare(cfg, settings)
    report = checker.run_prepared(run)
    assert run.cuts.eligible("N") and "N" not in run.cuts._grads
    x = report.node("x")
    assert x.statuses[3] == "fail" and report.exit_code == 1
    assert x.numeric[3] == pytest.approx(-1.204e-9, rel=1e-3)  # central differences: -1.2035e-9


def test_a_cut_made_on_demand_is_tested_as_one_made_in_its_own_check(tmp_path):
    """--nodes x: the cuts beyond x are estimated on demand, inside x's estimate. Here N =
    concat(x·w, x·w, x·w3) ties its first two columns in every row and your row max of them is
    direction-dependent under the complex step; N must be no cut there either (a first version
    tested only cuts made in their own check, and x's 16 wrong elements passed with --nodes x)."""
    (tmp_path / "tricky.py").write_text(_TIED_MAX)
    f = tmp_path / "net.yaml"
    f.write_text("seed: 1\nvalues:\n  x: [[0.126, -0.132, 0.64, 0.105], [-0.536, 0.362, 1.304, 0.947],"
                 " [-0.704, -1.265, -0.623, 0.041], [-2.325, -0.219, -1.246, -0.732]]\n"
                 "  w: [[-0.544], [-0.316], [0.412], [1.043]]\n  w3: [[-1.028], [10.932], [-5.322], [2.812]]\n"
                 "  W2: [[0.903, 0.094, -0.743], [-0.922, -0.458, 0.22], [-1.01, -0.209, -0.159]]\n"
                 "  v: [[0.541, 0.215, 0.355]]\ninputs: [x]\nlabels: [0, 2, 1, 0]\ngraph:\n"
                 "- {name: xw, op: matmul, inputs: [x, w]}\n- {name: xz, op: matmul, inputs: [x, w3]}\n"
                 "- {name: N, op: concat, inputs: [xw, xw, xz], attrs: {axis: -1}}\n"
                 "- {name: S, op: matmul, inputs: [N, W2]}\n- {name: M, op: tricky.py:rowmax2dbl, inputs: [N]}\n"
                 "- {name: T, op: matmul, inputs: [M, v]}\n- {name: scores, op: add, inputs: [S, T]}\n"
                 "- {name: p, op: softmax, inputs: [scores]}\n- {name: nl, op: neg_log_pick, inputs: [p]}\n"
                 "- {name: loss, op: batch_mean, inputs: [nl]}\nloss: loss\n")
    run = checker.prepare(config.load(f), checker.Settings(nodes=("x",)))
    report = checker.run_prepared(run)
    assert "N" not in run.cuts._grads
    assert report.exit_code == 1 and set(report.node("x").statuses.tolist()) == {"fail"}


def _wide_tie_net(tmp_path, rows: int = 1000, wrong: float = 3e-10) -> Path:
    """A review's repro: N = x·W + B (rows×3) whose first two columns tie in row 3 only, your
    double-counting row max of them beyond N, row 3 classified with a wrong-class probability of
    3e-10 (so its gradients are tiny next to the other rows')."""
    import yaml

    (tmp_path / "tricky.py").write_text(_TIED_MAX)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.3, 1.5, size=(rows, 4)).round(3)
    w = rng.normal(size=(4, 3)).round(3)
    w[:, 1] = w[:, 0]
    off = np.zeros((rows, 3))
    off[:, 1] = rng.choice([-1, 1], rows) * rng.uniform(0.2, 0.6, rows).round(3)
    x[3], off[3] = 1.0, 0.0  # row 3: N[3, 0] == N[3, 1]
    w2, v = rng.normal(size=(3, 3)).round(3), rng.normal(size=(1, 3)).round(3)
    labels = rng.integers(0, 3, rows)

    def scores(t):
        off[3, 2] = t
        n = x @ w + off
        return n @ w2 + np.max(n[:, :2], 1, keepdims=True) @ v

    def wrong_of(t):
        s = scores(t)[3]
        p = np.exp(s - s.max())
        return 1 - (p / p.sum()).max()

    off[3, 2] = min((round(t, 3) for t in np.linspace(-60, 60, 2401)),
                    key=lambda t: abs(np.log(wrong_of(t) + 1e-300) - np.log(wrong)))
    labels[3] = int(np.argmax(scores(off[3, 2])[3]))
    graph = [{"name": "xw", "op": "matmul", "inputs": ["x", "W"]}, {"name": "N", "op": "add", "inputs": ["xw", "B"]},
             {"name": "S", "op": "matmul", "inputs": ["N", "W2"]},
             {"name": "M", "op": "tricky.py:rowmax2dbl", "inputs": ["N"]},
             {"name": "T", "op": "matmul", "inputs": ["M", "v"]}, {"name": "scores", "op": "add", "inputs": ["S", "T"]},
             {"name": "p", "op": "softmax", "inputs": ["scores"]}, {"name": "nl", "op": "neg_log_pick", "inputs": ["p"]},
             {"name": "loss", "op": "batch_mean", "inputs": ["nl"]}]
    cfg = {"seed": 1, "values": {"x": x.tolist(), "W": w.tolist(), "B": off.tolist(), "W2": w2.tolist(),
                                 "v": v.tolist()}, "inputs": ["x"], "labels": labels.tolist(), "graph": graph,
           "loss": "loss"}
    f = tmp_path / "wide.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


def test_a_tie_among_thousands_of_entries_is_seen_by_the_mirror(tmp_path, monkeypatch):
    """One tie among N's 3,000 entries, whose jump is ~1e-10 of N's scale: two random directions
    cannot see it against the rounding of 3,000 terms (the review's false PASS: x's row 3 wrong
    and passing with cuts). N's estimate at -h differs from the one at +h exactly at that entry,
    so N is no cut, and x's two wrong elements FAIL as without cuts."""
    f = _wide_tie_net(tmp_path)
    run = checker.prepare(config.load(f))
    report = checker.run_prepared(run)
    assert "N" not in run.cuts._grads
    monkeypatch.setattr(cuts_mod, "ENABLED", False)
    without = api.check(str(f))
    assert report.exit_code == without.exit_code == 1
    assert report.node("x").statuses.tolist() == without.node("x").statuses.tolist()
    assert (report.node("x").statuses == "fail").sum() == 2


_PAIR_MAX = '''import numpy as np


def pairmax_forward(x):
    """out[:, j] = max(x[:, j], x[:, j + m]), m half the columns; numpy compares complex numbers"""
    m = x.shape[1] // 2
    return np.maximum(x[:, :m], x[:, m:]), (x[:, :m], x[:, m:])


def pairmax_backward(dout, cache):
    """the tie bug: both tied entries get the whole gradient"""
    a, b = cache
    return np.concatenate([dout * (a >= b), dout * (b >= a)], axis=1)
'''


def test_the_mirror_steps_back_at_tiny_entries_too(tmp_path, monkeypatch):
    """A review's repro: n = x·w ties n[0] and n[4] at 1e-13 (x[0, 0] moves both alike), your
    pair max double-counts ties, and the loss weighs that pair 1e-13 of the others, below what
    two random directions can see. The complex step gives entries below 1e-12 a step of their
    own size; the mirror's -h must stay -h there (it was +h: the mirror compared +h with +h and
    n became a cut, and x's wrong element passed). dL/dx[0, 0] = 1e3·1e-13 (the loss is smooth
    along x[0, 0]: both entries move together); the backward says twice that."""
    (tmp_path / "ops.py").write_text(_PAIR_MAX)
    f = tmp_path / "tie.yaml"
    f.write_text("values:\n  x: [[1.0, 1.0]]\n"
                 "  w: [[1.0e-13, 0, 0, 0, 1.0e-13, 0, 0, 0], [0, 0.5, 0.7, 0.9, 0, 0.25, 0.35, 0.45]]\n"
                 "graph:\n  - {name: n, op: matmul, inputs: [x, w]}\n"
                 "  - {name: p, op: ops.py:pairmax, inputs: [n]}\n"
                 "  - {name: loss, op: weighted_sum, inputs: [p], attrs: {weights: [[1.0e3, 1.0e16, 1.0e16, 1.0e16]]}}\n"
                 "loss: loss\n")
    run = checker.prepare(config.load(f))
    report = checker.run_prepared(run)
    assert "n" not in run.cuts._grads
    x = report.node("x")
    assert x.analytic[0] == pytest.approx(2e-10, rel=1e-12)
    assert x.numeric[0] == pytest.approx(1e-10, rel=1e-6) and x.statuses[0] == "fail"
    monkeypatch.setattr(cuts_mod, "ENABLED", False)
    assert api.check(str(f)).exit_code == report.exit_code == 1


def _changes(rng, shape):
    """Every kind of change of k = 4 copies of a node of `shape` (2-D: all; 3-D: elements,
    channels (COL), everything), as (name, change, its dense copies' differences)."""
    k, base = 4, np.zeros((1, *shape))
    step = 1e-20j * rng.normal(size=k)
    out = [("elem", Delta.elem(np.stack([rng.integers(0, s, k) for s in shape], axis=1), step, shape))]
    cols = 1e-20j * rng.normal(size=(k, shape[0], *shape[2:]))
    out.append(("col", Delta.col(rng.integers(0, shape[1], k), cols, shape)))
    out.append(("full", Delta.full(1e-20j * rng.normal(size=(k, *shape)), shape)))
    if len(shape) == 2:
        out.append(("row", Delta.row(rng.integers(0, shape[0], k), 1e-20j * rng.normal(size=(k, shape[1])), shape)))
        out += _scaled(rng, shape)
    return [(name, d, d.dense(base)) for name, d in out]


def _scaled(rng, shape):
    """A matmul's scaled changes of 12 copies: rows of a 12-row source: few picks in few slices
    (their sums as one product), many picks in every slice (their sums per copy), and a huge
    source (1e160: its rows' squares overflow, their products with the step, 1e140, do not)."""
    k, out = 12, []
    for kind, along, m in ((Kind.ROW, shape[0], shape[1]), (Kind.COL, shape[1], shape[0])):
        source, step = rng.normal(size=(12, m)), 1e-20j * rng.normal(size=k)
        out.append((f"scaled {kind}, few", Delta.scaled(kind, rng.integers(0, 2, k), source,
                                                        rng.integers(0, 3, k), step, shape)))
        out.append((f"scaled {kind}, many", Delta.scaled(kind, np.arange(k) % along, source,
                                                         rng.permutation(k), step, shape)))
        out.append((f"scaled {kind}, huge", Delta.scaled(kind, rng.integers(0, 2, k), 1e160 * source,
                                                         rng.integers(0, 3, k), step, shape)))
    return out


@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 2)])
def test_a_cut_adds_the_dot_of_its_gradient_with_the_change_for_every_kind_of_change(shape, rng):
    """graph.linear_change against the sums written out over the dense copies: i·Σ ∇L·Im Δ, and
    (Σ (Im Δ·bound)²)^½, for each kind of change (gathered rows, columns, elements, everything,
    and a matmul's scaled rows, whose factor comes out of the sums) and for dense copies."""
    cut = CutGradient(rng.normal(size=shape), np.abs(rng.normal(size=shape)))
    changes = _changes(rng, shape)
    changes.append(("dense", changes[-1][2] + 1.0, changes[-1][2]))  # copies around a base of 1
    for name, change, moved in changes:
        total, error = graph.linear_change(change, np.ones((1, *shape)), cut)
        im = moved.imag.reshape(len(moved), -1)
        want = [1j * sum(float(a) * float(g) for a, g in zip(row, cut.grad.ravel())) for row in im]
        bar = [np.sqrt(sum((float(a) * float(b)) ** 2 for a, b in zip(row, cut.bound.ravel()))) for row in im]
        np.testing.assert_allclose(total, want, rtol=1e-13, atol=0, err_msg=name)
        np.testing.assert_allclose(error, bar, rtol=1e-13, atol=0, err_msg=name)


def test_a_scaled_change_of_huge_rows_keeps_a_finite_error_bar(rng):
    """A review's repro, in small: rows ~1e90 against a cut whose error bar is ~1e70 (inputs of
    1e90 under an mse loss). Their squares' products, 1e320, overflow; the change's own terms,
    (1e90·1e-20·1e70)² = 1e280, do not. The error bar is the one written out by hand (it was
    Inf, and the element got no verdict)."""
    shape = (3, 4)
    cut = CutGradient(rng.normal(size=shape) * 1e70, np.abs(rng.normal(size=shape)) * 1e70)
    source, step = rng.normal(size=(5, 4)) * 1e90, 1e-20j * (1 + rng.random(6))
    change = Delta.scaled(Kind.ROW, np.array([0, 0, 1, 1, 2, 2]), source, np.array([0, 1, 0, 1, 3, 4]), step, shape)
    total, error = graph.linear_change(change, np.zeros((1, *shape)), cut)
    moved = [[float(r) * s.imag for r in source[p]] for p, s in zip(change.pick, step)]
    bar = [np.sqrt(sum((a * float(b)) ** 2 for a, b in zip(row, cut.bound[n]))) for row, n in zip(moved, change.at)]
    want = [1j * sum(a * float(g) for a, g in zip(row, cut.grad[n])) for row, n in zip(moved, change.at)]
    assert np.all(np.isfinite(error))
    np.testing.assert_allclose(error, bar, rtol=1e-13)
    np.testing.assert_allclose(total, want, rtol=1e-13)
