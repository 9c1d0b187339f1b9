"""The Taylor remainder test (numeric/taylor.py, checker/taylor.py): its order against closed forms
worked by hand, on a smooth network, on every zoo bug and its fix, at kinks, and the adjoint
identity of user ops, right and wrong."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import gradverify
from gradverify import checker, config
from gradverify.cli import app
from gradverify.numeric import taylor

from conftest import CONFIGS, ROOT

ZOO = ROOT / "examples" / "zoo"
CASES = json.loads((ZOO / "cases.json").read_text())
runner = CliRunner()


def _config(cfg: dict):
    return config.validate(cfg, config.Source(file="<dict>"))


def _square_sum(x):
    """L = Σ x² in the graph form."""
    return {"values": {"x": np.asarray(x).tolist()},
            "graph": [{"name": "q", "op": "square", "inputs": ["x"]},
                      {"name": "s", "op": "sum", "inputs": ["q"]}], "loss": "s"}


# ---- the fit and the ladder against closed forms ------------------------------------------

def test_fit_order_on_exact_powers():
    h = 1e-2 * 2.0 ** -np.arange(12)
    clean = np.ones(12, bool)
    assert taylor.fit_order(h, 3 * h ** 2, clean)[0] == pytest.approx(2, abs=1e-9)
    assert taylor.fit_order(h, 0.5 * h, clean)[0] == pytest.approx(1, abs=1e-9)
    # a bug of size e with curvature c: slope 2 while h·c ≫ e, slope 1 once h·c ≪ e; the fit
    # takes the smallest clean steps, where the limit h → 0 shows
    assert taylor.fit_order(h, 1e-3 * h + h ** 2, clean)[0] == pytest.approx(1, abs=0.05)
    assert taylor.fit_order(h, 1e-9 * h + h ** 2, clean)[0] == pytest.approx(2, abs=0.05)  # unseen
    # no clean run of three steps: no order, and why
    order, why = taylor.fit_order(h, h ** 2, np.arange(12) % 2 == 0)
    assert order is None and "clean step" in why


def test_remainder_of_sum_of_squares_is_h_squared_times_v_squared():
    """L = Σx²: L(x + hv) − L(x) − h⟨2x, v⟩ = h²Σv² exactly (by hand), and with a gradient off by
    δ along v, h²Σv² − h⟨δ, v⟩."""
    x = np.array([[0.3, -1.2, 2.0], [0.7, 0.1, -0.4]])
    run = checker.prepare(_config(_square_sum(x)))
    v = taylor.gaussian_directions(np.random.default_rng(5), 1, 6)[0]
    h = taylor.ladder_steps(2.0)
    lad = taylor.ladder(run.graph, run.values, "x", 2 * x.reshape(-1), v, h)
    want = h ** 2 * (v @ v)
    above = want > 1e-10
    np.testing.assert_allclose(lad.r_plus[above], want[above], rtol=1e-5)
    np.testing.assert_allclose(lad.r_minus[above], want[above], rtol=1e-5)
    assert taylor.judge(lad).verdict == "pass" and taylor.judge(lad).order == pytest.approx(2, abs=0.01)
    delta = np.zeros(6)
    delta[4] = 1e-3
    bad = taylor.ladder(run.graph, run.values, "x", 2 * x.reshape(-1) + delta, v, h)
    np.testing.assert_allclose(bad.r_plus, want - h * (delta @ v), rtol=1e-6, atol=1e-15)
    judged = taylor.judge(bad)
    assert judged.verdict == "fail" and taylor.remainder_order(judged) == pytest.approx(1, abs=0.05)


def test_affine_loss_passes_without_an_order():
    """L = Σ 3x: R(h) is rounding at every step (the first-order model is exact)."""
    cfg = {"values": {"x": [[1.0, 2.0]]}, "graph": [{"name": "s", "op": "sum", "inputs": ["x"]}],
           "loss": "s"}
    rep = gradverify.check(cfg, method="taylor")
    t = rep.node("x").taylor
    assert t.verdict == "pass" and t.order is None and "affine" in t.reason


def test_kink_near_x_shortens_the_ladder():
    """relu at 1e-3 from its kink: the large steps cross it and are dropped; the small ones show
    order 2 for the right gradient and order 1 for a wrong one."""
    cfg = {"values": {"x": [[1e-3, 0.8, -0.5]]},
           "graph": [{"name": "r", "op": "relu", "inputs": ["x"]},
                     {"name": "q", "op": "square", "inputs": ["r"]},
                     {"name": "s", "op": "sum", "inputs": ["q"]}], "loss": "s"}
    run = checker.prepare(_config(cfg))
    x = np.array([1e-3, 0.8, -0.5])
    right = 2 * np.maximum(x, 0)  # by hand
    v = np.array([1.0, 0.3, -0.6])
    h = taylor.ladder_steps(1.0)
    lad = taylor.ladder(run.graph, run.values, "x", right, v, h)
    assert lad.crossed[:3].all() and not lad.crossed[-3:].any()
    assert taylor.judge(lad).verdict == "pass"
    wrong = right + np.array([0.0, 0.05, 0.0])
    assert taylor.judge(taylor.ladder(run.graph, run.values, "x", wrong, v, h)).verdict == "fail"


def _plain_downstream(graph, values, name, new):
    """The loss and every node's value when `name` takes the value `new` (1, *shape): the plain
    forward of each op downstream, in order (no pushes, no rays)."""
    vals = dict(values)
    vals[name] = new
    with np.errstate(all="ignore"):  # a large step may leave a log's domain: NaN, as the ladder
        for n in graph.downstream(name):
            node = graph.nodes[n]
            vals[n] = node.fn.forward(*[vals[i] for i in node.inputs])
    return vals


RAY_CONFIGS = [CONFIGS / "seed.yaml", CONFIGS / "bench_medium.yaml", CONFIGS / "cnn.yaml"]


@pytest.mark.parametrize("path", RAY_CONFIGS, ids=lambda p: p.stem)
def test_ladder_equals_plain_forward_passes(path):
    """The ladder pushes x ± h_k·v as one ray (ops linear in their input push v once; relu keeps
    the steps that cross no kink on the ray): its loss changes are those of plain forward passes
    at each step, and the steps it says cross a kink are those where some relu or max-pool input
    changes sign (the seed network's l1_lin[0, 0] is 0: every step there crosses)."""
    run = checker.prepare(config.load(path))
    graph, values = run.graph, run.values
    rng = np.random.default_rng(3)
    for name in [n for n in graph.nodes if graph.reaches_loss(n) and n != graph.loss][:8]:
        x = values[name]
        v = taylor.gaussian_directions(rng, 1, x.size)[0]
        h = taylor.ladder_steps(max(float(np.abs(x).max()), 1.0))[::3]
        lad = taylor.ladder(graph, values, name, np.zeros(x.size), v, h)
        loss = float(values[graph.loss].reshape(-1)[0])
        for sign, r in ((1, lad.r_plus), (-1, lad.r_minus)):
            for k, step in enumerate(h):
                vals = _plain_downstream(graph, values, name, x + sign * step * v.reshape(x.shape))
                want = float(vals[graph.loss].reshape(-1)[0]) - loss
                assert r[k] == pytest.approx(want, rel=1e-7, abs=1e-12 * (abs(loss) + 1)), (name, sign, k)
        crossed = np.zeros(len(h), bool)
        for k, step in enumerate(h):
            for sign in (1, -1):
                vals = _plain_downstream(graph, values, name, x + sign * step * v.reshape(x.shape))
                crossed[k] |= any(np.any(np.sign(vals[graph.nodes[n].inputs[0]])
                                         != np.sign(values[graph.nodes[n].inputs[0]]))
                                  for n in graph.downstream(name) if graph.nodes[n].fn.name == "relu")
        relu_only = all(graph.nodes[n].fn.name != "max_pool2d" for n in graph.downstream(name))
        if relu_only:
            np.testing.assert_array_equal(lad.crossed, crossed, err_msg=name)


@pytest.mark.parametrize("path", RAY_CONFIGS[1:], ids=lambda p: p.stem)
def test_ladder_through_one_consumer_equals_plain_forward_passes(path):
    """With `via` (a node's share of the gradient through one of its consumers, for blame), only
    that consumer sees the ray: the loss changes are plain forward passes where it alone takes
    x + h·v."""
    run = checker.prepare(config.load(path))
    graph, values = run.graph, run.values
    loss = float(values[graph.loss].reshape(-1)[0])
    shared = [n for n in graph.nodes if sum(n in node.inputs for node in graph.nodes.values()) > 1]
    assert shared
    for name in shared:
        x = values[name]
        v = taylor.gaussian_directions(np.random.default_rng(1), 1, x.size)[0]
        h = taylor.ladder_steps(max(float(np.abs(x).max()), 1.0))[::4]
        for via in [n for n, node in graph.nodes.items() if name in node.inputs]:
            lad = taylor.ladder(graph, values, name, np.zeros(x.size), v, h, via=via)
            for k, step in enumerate(h):
                node = graph.nodes[via]
                moved = node.fn.forward(*[x + step * v.reshape(x.shape) if i == name else values[i]
                                          for i in node.inputs])
                want = float(_plain_downstream(graph, values, via, moved)[graph.loss].reshape(-1)[0]) - loss
                assert lad.r_plus[k] == pytest.approx(want, rel=1e-7, abs=1e-12 * (abs(loss) + 1), nan_ok=True), \
                    (name, via, k)


# ---- networks ------------------------------------------------------------------------------

#: nodes of smooth.yaml the loss is affine in (by construction: a mean, a sum, -log p picked)
AFFINE = {"neg_log", "loss_data", "loss_reg", "loss"}


def test_smooth_network_every_order_is_two():
    rep = gradverify.check(CONFIGS / "smooth.yaml", method="taylor")
    assert rep.ok and rep.status == "pass"
    for n in rep.nodes:
        if n.name in AFFINE:
            assert n.taylor.order is None and n.taylor.verdict == "pass", n.name
        else:
            assert n.taylor.order == pytest.approx(2.0, abs=0.1), (n.name, n.taylor)
            assert all(o == pytest.approx(2.0, abs=0.1) for o in n.taylor.orders)


def _blamed_inputs(case):
    cfg = config.load(ZOO / f"{case}.yaml")
    run = checker.prepare(cfg)
    return list(run.graph.nodes[CASES[case]].inputs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_zoo_bug_blamed_inputs_have_order_one(case):
    rep = gradverify.check(ZOO / f"{case}.yaml", method="taylor")
    assert rep.exit_code == 1
    # blame lands on the op alone, also where the node has several consumers (each edge's share
    # gets its own Taylor test: b1 feeds the affine op and the L2 penalty)
    assert [b.node for b in rep.blame] == [CASES[case]]
    for name in _blamed_inputs(case):
        t = rep.node(name).taylor
        if case == "bias_axis":  # a malformed backward: NaN gradients, no order to fit
            if name == "b1":
                assert t.verdict == "fail" and "not finite" in t.reason
            continue
        if case == "bias_mean" and name != "b1":  # only db is wrong; x and w1 are right
            assert t.verdict == "pass"
            continue
        assert t.verdict == "fail", (name, t)
        assert t.order == pytest.approx(1.0, abs=0.15), (name, t)
    ok = gradverify.check(ZOO / f"{case}_ok.yaml", method="taylor")
    assert ok.exit_code == 0, ok.table()
    for name in _blamed_inputs(case):
        assert ok.node(name).taylor.verdict == "pass"


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("cfg", ["seed.yaml", "seed_custom_relu.yaml", "seed_graph.yaml"])
def test_seed_network_kinks_are_never_a_false_fail(cfg, seed):
    """l1_lin[0,0] = 0 sits on the ReLU's kink: every node upstream of it is a kink, never a
    FAIL, whatever the directions; built-in relu by its declared kinks, the custom one by the
    order of the even part."""
    rep = gradverify.check(CONFIGS / cfg, method="taylor", seed=seed)
    statuses = {n.name: n.status for n in rep.nodes}
    assert "fail" not in statuses.values(), rep.table()
    for name in ("x", "w1", "b1", "l1_lin"):
        assert statuses[name] == "kink"
    assert rep.exit_code == 0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("case", sorted(CASES))
def test_correct_zoo_networks_never_fail_over_many_seeds(case, seed):
    rep = gradverify.check(ZOO / f"{case}_ok.yaml", method="taylor", seed=seed)
    assert not [n.name for n in rep.nodes if n.status == "fail"], rep.table()


def test_float32_network_is_no_false_fail():
    rep = gradverify.check(CONFIGS / "smooth32.yaml", method="taylor")
    assert "fail" not in {n.status for n in rep.nodes}


# ---- the adjoint identity of user ops -------------------------------------------------------

MATVEC = """import numpy as np
M = np.array([[1.0, 2.0, 0.5], [-0.3, 0.7, 1.1], [0.2, -1.4, 0.9]])
def mv_forward(x):
    return np.sin(x) @ M, x
def mv_backward(d, x):
    return (d @ M.T) * np.cos(x)
def mvbug_forward(x):
    return np.sin(x) @ M, x
def mvbug_backward(d, x):
    return (d @ M) * np.cos(x)  # BUG: M, not its transpose
"""


def _matvec_config(tmp_path, op):
    (tmp_path / "mv.py").write_text(MATVEC)
    return {"values": {"x": [[0.3, -0.2, 1.1], [0.5, 0.9, -1.3]]},
            "graph": [{"name": "y", "op": f"mv.py:{op}", "inputs": ["x"]},
                      {"name": "t", "op": "tanh", "inputs": ["y"]},
                      {"name": "s", "op": "sum", "inputs": ["t"]}], "loss": "s"}


def _check_file(tmp_path, op, seed, **kw):
    import yaml
    cfg = _matvec_config(tmp_path, op)
    f = tmp_path / f"{op}.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return gradverify.check(f, seed=seed, **kw)


def test_adjoint_identity_by_hand(tmp_path):
    """⟨J·u, v⟩ = Σ v·((cos(x)·u) @ M) and ⟨u, Jᵀv⟩ = Σ u·cos(x)·(v @ Mᵀ): equal for the right
    backward (M symmetric or not), apart for the transposed one."""
    rep = _check_file(tmp_path, "mv", 0, taylor=True)
    adj = rep.node("y").adjoint
    assert adj.verdict == "pass" and adj.rel_error < 1e-12 and adj.method == "complex"
    bad = _check_file(tmp_path, "mvbug", 0, taylor=True)
    adj = bad.node("y").adjoint
    assert adj.verdict == "fail" and adj.rel_error > 1e-3
    assert [b.node for b in bad.blame] == ["y"] and bad.exit_code == 1


class _SinMatvec:
    """f(x) = sin(x) @ M, forward only (the leading perturbation axis as ops have it)."""

    M = np.array([[1.0, 2.0, 0.5], [-0.3, 0.7, 1.1], [0.2, -1.4, 0.9]])

    def forward(self, x):
        return np.sin(x) @ self.M


class _Relu:
    def forward(self, x):
        return np.maximum(x, 0)


@pytest.mark.parametrize("complex_ok", [True, False])
def test_jvp_dot_against_the_closed_form(complex_ok):
    """⟨J·u, v⟩ = Σ v·((cos(x)·u) @ M), by hand."""
    rng = np.random.default_rng(3)
    x, u, v = rng.normal(size=(1, 2, 3)), rng.normal(size=(1, 2, 3)), rng.normal(size=(1, 2, 3))
    want = float(np.sum(v * ((np.cos(x) * u) @ _SinMatvec.M)))
    got = taylor.jvp_dot(_SinMatvec(), [x], [u], v, complex_ok)
    assert got.value == pytest.approx(want, rel=1e-13 if complex_ok else 1e-8)
    assert abs(got.value - want) <= got.error + 1e-15 and not got.kink


def test_jvp_dot_sees_a_kink_along_u():
    x = np.array([[[0.0, 0.5, -0.7]]])
    got = taylor.jvp_dot(_Relu(), [x], [np.ones_like(x)], np.ones_like(x), complex_ok=False)
    assert got.kink
    away = taylor.jvp_dot(_Relu(), [x + 0.1], [np.ones_like(x)], np.ones_like(x), complex_ok=False)
    assert not away.kink and away.value == pytest.approx(2.0)


@pytest.mark.parametrize("seed", range(10))
def test_adjoint_identity_holds_for_correct_ops_over_seeds(tmp_path, seed):
    rep = _check_file(tmp_path, "mv", seed, method="taylor")
    assert rep.node("y").adjoint.verdict == "pass" and rep.exit_code == 0
    assert _check_file(tmp_path, "mvbug", seed, method="taylor").node("y").adjoint.verdict == "fail"


@pytest.mark.parametrize("case", sorted(CASES))
def test_adjoint_identity_of_zoo_ops(case):
    """Every zoo bug's op breaks its adjoint identity (or its backward is malformed); every fix
    keeps it."""
    blamed = CASES[case]
    ok = gradverify.check(ZOO / f"{case}_ok.yaml", taylor=True).node(blamed).adjoint
    assert ok is not None and ok.verdict == "pass", ok
    bad = gradverify.check(ZOO / f"{case}.yaml", taylor=True).node(blamed).adjoint
    assert bad.verdict in (("undecided",) if case == "bias_axis" else ("fail",)), bad


# ---- the command line -----------------------------------------------------------------------

def test_check_taylor_adds_an_order_column_and_json_fields():
    res = runner.invoke(app, ["check", str(CONFIGS / "smooth.yaml"), "--taylor"],
                        env={"COLUMNS": "220"})
    assert res.exit_code == 0 and "order" in res.stdout and "2.00 pass" in res.stdout
    doc = json.loads(runner.invoke(app, ["check", str(CONFIGS / "smooth.yaml"), "--taylor", "-f", "json"]).stdout)
    node = doc["nodes"][0]
    assert node["order"] == pytest.approx(2, abs=0.1) and node["taylor"]["verdict"] == "pass"
    plain = json.loads(runner.invoke(app, ["check", str(CONFIGS / "smooth.yaml"), "-f", "json"]).stdout)
    assert "order" not in plain["nodes"][0] and "taylor" not in plain["nodes"][0]  # additive only


def test_method_taylor_exit_codes_and_blame():
    assert runner.invoke(app, ["check", str(CONFIGS / "smooth.yaml"), "--method", "taylor"]).exit_code == 0
    res = runner.invoke(app, ["check", str(ZOO / "sigmoid_sign.yaml"), "-m", "taylor", "-f", "json"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["settings"]["mode"] == "taylor"
    assert [b["node"] for b in doc["blame"]] == ["l1_sigmoid"]
    assert doc["nodes"][0]["elements"] == []


def test_node_view_shows_the_order():
    res = runner.invoke(app, ["node", "w2", "-c", str(CONFIGS / "smooth.yaml"), "-m", "taylor"])
    assert res.exit_code == 0 and "Taylor test: order 2.00 pass" in res.stdout


def test_sweep_draws_the_remainder_plot():
    res = runner.invoke(app, ["sweep", "l1_lin", "-c", str(ZOO / "sigmoid_sign.yaml")], env={"COLUMNS": "200"})
    assert "Taylor remainder" in res.stdout and "FAIL" in res.stdout and "log10(h)" in res.stdout
    doc = json.loads(runner.invoke(app, ["sweep", "w2", "-c", str(CONFIGS / "smooth.yaml"), "-f", "json"]).stdout)
    t = doc["taylor"]
    assert t["verdict"] == "pass" and t["order"] == pytest.approx(2, abs=0.1)
    assert len(t["steps"]) == len(t["remainder"]) == len(t["fitted"]) and sum(t["fitted"]) >= 3


def test_ci_formats_say_why_under_method_taylor():
    res = runner.invoke(app, ["check", str(ZOO / "sigmoid_sign.yaml"), "-m", "taylor", "-f", "github"])
    assert res.exit_code == 1 and "Taylor test: order 1.00" in res.stdout
    md = runner.invoke(app, ["check", str(ZOO / "sigmoid_sign.yaml"), "-m", "taylor", "-f", "markdown"])
    # no relative error under the Taylor test: a dash, not a number that was never computed
    assert "| `l1_lin` | add_bias | 4×5 | 0.08496 | — | — | ❌ FAIL |" in md.stdout


def test_blame_resting_on_a_too_coarse_pass_is_dropped():
    """A node fails with a directional error of 1e-8 while its consumer passes: the consumer is
    blamed only if its test resolves errors 10× smaller than that; otherwise no blame, a note."""
    from dataclasses import replace

    from gradverify.checker.taylor import resolved_blame
    from gradverify.results import Blame, Taylor

    rep = gradverify.check(CONFIGS / "smooth.yaml", method="taylor")
    failing = replace(rep.node("l1_lin"), taylor=Taylor("fail", 1.0, 1.0, "order 1", (1.0,), 1e-9, 1e-8))
    blame = (Blame("l1_tanh", "tanh", "the backward of l1_tanh is wrong", input="l1_lin"),)
    for resolution, kept in ((1e-10, True), (5e-9, False)):
        consumer = replace(rep.node("l1_tanh"), taylor=Taylor("pass", 2.0, 3.0, "order 2.00", (2.0,), resolution))
        out = resolved_blame({"l1_lin": failing, "l1_tanh": consumer}, blame)
        assert (out["blame"] == blame) is kept
        noted = [n for n in out["results"]["l1_lin"].notes if n.startswith("no blame for l1_tanh")]
        assert bool(noted) is not kept
