"""Real cs231n-style code checked unchanged (examples/cs231n/configs): every config passes on the
correct package with no kink on any node, and fails on the buggy one (examples/cs231n/buggy, one bug
per function, listed in buggy/bugs.json) with exactly the wrong gradients failing and the right op
blamed. The expectations come from bugs.json, not from gradverify."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import gradverify
from gradverify.cli import app

from conftest import ROOT

EXAMPLES = ROOT / "examples" / "cs231n"
CONFIGS = EXAMPLES / "configs"
BUGS = {bug["function"]: bug for bug in json.loads((EXAMPLES / "buggy" / "bugs.json").read_text())}

#: config -> (the buggy function of bugs.json it exercises, the node its bug is blamed on)
CASES = {
    "conv": ("conv_backward_naive", "conv"),
    "max_pool": ("max_pool_backward_naive", "pool"),
    "batchnorm": ("batchnorm_backward", "bn"),
    "batchnorm_alt": ("batchnorm_backward_alt", "bn"),
    "layernorm": ("layernorm_backward", "ln"),
    "dropout": ("dropout_backward", "drop"),
    "embedding": ("word_embedding_backward", "emb"),
    "rnn_step": ("rnn_step_backward", "next_h"),
    "rnn": ("rnn_backward", "h"),
    "lstm_step": ("lstm_step_backward", "next_h"),  # an op of two outputs: named by its first
    "lstm": ("lstm_backward", "h"),
    "temporal_affine": ("temporal_affine_backward", "out"),
    "temporal_softmax_loss": ("temporal_softmax_loss", "loss"),
    "svm_loss_naive": ("svm_loss_naive", "loss"),
    "fc_net": ("FullyConnectedNet", "loss"),
}


def run(path):
    res = CliRunner().invoke(app, ["check", str(path), "--format", "json"])
    return res.exit_code, json.loads(res.stdout) if res.stdout.startswith("{") else res.output


def test_every_config_is_a_case():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_correct_code_passes_without_kinks(case):
    code, doc = run(CONFIGS / f"{case}.yaml")  # timings: bench/realcode.py, not a test
    assert code == 0, doc
    # no KINK, no FAIL; a bias before batchnorm has a true gradient of exactly 0, which some numpy
    # versions compute as exactly 0 (undecided: nothing to judge) and others as rounding (pass)
    assert {n["name"]: n["status"] for n in doc["nodes"] if n["status"] in ("kink", "fail")} == {}


def _buggy_config(case, tmp_path):
    text = (CONFIGS / f"{case}.yaml").read_text().replace("../cs231n/", "../buggy/cs231n/")
    path = CONFIGS / f".buggy_{case}_{tmp_path.name}.yaml"  # beside the others: the same relative refs
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_buggy_code_fails_where_bugs_json_says(case, tmp_path):
    function, blamed = CASES[case]
    path = _buggy_config(case, tmp_path)
    try:
        code, doc = run(path)
    finally:
        path.unlink()
    assert code == 1, doc
    wrong = {w.removeprefix("d") if case != "fc_net" else w for w in BUGS[function]["wrong"]}
    leaves = {n["name"] for n in doc["nodes"] if n["kind"] in ("input", "parameter")}
    failing = {n["name"] for n in doc["nodes"] if n["status"] == "fail"}
    assert failing & leaves == wrong
    if case == "fc_net":  # a whole model: blamed once for each parameter whose gradient is wrong
        assert [b["node"] for b in doc["blame"]] == [blamed] * len(wrong)
        assert [b["message"].split("gradient for ")[1].split(":")[0] for b in doc["blame"]] == sorted(wrong)
    else:
        assert [b["node"] for b in doc["blame"]] == [blamed]
    assert function in doc["blame"][0]["op"]  # the op column names the backward that is wrong
    if case == "lstm_step":
        assert "lstm_step_forward" in doc["blame"][0]["op"] and "outputs next_h, next_c" in doc["blame"][0]["message"]


def test_op_column_names_the_pair_used():
    _, doc = run(CONFIGS / "batchnorm_alt.yaml")
    assert doc["nodes"][-1]["op"] == "project"
    assert {n["op"] for n in doc["nodes"] if n["name"] == "bn"} == {
        "../cs231n/layers.py:batchnorm_forward/batchnorm_backward_alt"}
    _, doc = run(CONFIGS / "batchnorm.yaml")
    assert {n["op"] for n in doc["nodes"] if n["name"] == "bn"} == {
        "../cs231n/layers.py:batchnorm_forward/batchnorm_backward"}


def test_data_stays_integer_and_is_not_checked():
    _, doc = run(CONFIGS / "embedding.yaml")
    assert "idx" not in {n["name"] for n in doc["nodes"]}


def _load(relpath):
    """A module of the examples' packages, loaded as gradverify loads it (sys.modules restored)."""
    from gradverify import custom, usercode
    with usercode.session():
        return custom.load_module(EXAMPLES / relpath, relpath)


def test_api_check_op_with_data_attrs_and_two_outputs():
    rnn = _load("cs231n/rnn_layers.py")
    layers = _load("cs231n/layers.py")
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(2, 3, 5, 5)), rng.normal(size=(3, 3, 3, 3)), rng.normal(size=3)
    rep = gradverify.check_op(layers.conv_forward_naive, layers.conv_backward_naive, x, w, b,
                              attrs={"conv_param": {"stride": 1, "pad": 1}})
    assert rep.ok and [n.name for n in rep.nodes] == ["x", "w", "b", "conv_forward_naive", "loss"]
    idx = np.array([[0, 3, 1], [2, 2, 4]])
    rep = gradverify.check_op(rnn.word_embedding_forward, rnn.word_embedding_backward, idx, rng.normal(size=(5, 4)))
    assert rep.ok and [n.name for n in rep.nodes][0] == "W"
    args = [rng.normal(size=s) for s in [(2, 4), (2, 5), (2, 5), (4, 20), (5, 20), (20,)]]
    rep = gradverify.check_op(rnn.lstm_step_forward, rnn.lstm_step_backward, *args, outputs=2)
    assert rep.ok and "lstm_step_forward_1" in [n.name for n in rep.nodes]


def test_api_check_loss_and_model_and_dict():
    rnn = _load("cs231n/rnn_layers.py")
    svm = _load("cs231n/classifiers/linear_svm.py")
    fc = _load("cs231n/classifiers/fc_net.py")
    rng = np.random.default_rng(0)
    y, mask = rng.integers(0, 5, size=(2, 3)), np.array([[True, True, False], [True, False, False]])
    assert gradverify.check_loss(rnn.temporal_softmax_loss, rng.normal(size=(2, 3, 5)), y, mask).ok
    W, X, ys = rng.normal(size=(6, 4)), rng.normal(size=(5, 6)), rng.integers(0, 4, size=5)
    rep = gradverify.check_loss(svm.svm_loss_naive, W, X, ys, attrs={"reg": 0.1}, data=("X",))
    assert rep.ok and [n.name for n in rep.nodes] == ["W", "svm_loss_naive"]
    model = fc.FullyConnectedNet([10, 7], input_dim=15, num_classes=4, reg=0.1, dtype=np.float64,
                                 weight_scale=0.5, normalization="layernorm")
    before = {k: v.copy() for k, v in model.params.items()}
    rep = gradverify.check_model(model, rng.normal(size=(5, 15)), rng.integers(0, 4, size=5))
    assert rep.ok and {n.name for n in rep.nodes} == set(before) | {"loss"}
    assert all(np.array_equal(model.params[k], v) for k, v in before.items())
    cfg = {"values": {"x": rng.normal(size=(4, 5)), "gamma": np.ones(5), "beta": np.zeros(5)},
           "graph": [{"name": "bn", "op": {"forward": fc.batchnorm_forward, "backward": fc.batchnorm_backward_alt},
                      "inputs": ["x", "gamma", "beta"], "attrs": {"bn_param": {"mode": "train"}}}],
           "loss": "bn"}
    rep = gradverify.check(cfg)
    assert rep.ok and rep.node("bn").op == "batchnorm_forward/batchnorm_backward_alt"


def test_readme_shows_a_fresh_run():
    """docs/custom-ops.md's config is the bundled one; its output is compared with a fresh run by
    tests/test_docs.py, like every command block in the docs."""
    readme = (ROOT / "docs" / "custom-ops.md").read_text(encoding="utf-8")
    section = readme.split("# Checking your own layers", 1)[1]
    config = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert config == (CONFIGS / "embedding.yaml").read_text()
    assert "$ gradverify check examples/cs231n/configs/embedding.yaml\n" in section

def test_api_check_op_blames_an_op_of_two_outputs_by_its_first_with_both_functions():
    rnn = _load("buggy/cs231n/rnn_layers.py")
    rng = np.random.default_rng(0)
    args = [rng.normal(size=s) for s in [(2, 4), (2, 5), (2, 5), (4, 20), (5, 20), (20,)]]
    rep = gradverify.check_op(rnn.lstm_step_forward, rnn.lstm_step_backward, *args, outputs=2)
    assert rep.exit_code == 1
    assert [(b.node, b.op) for b in rep.blame] == [("lstm_step_forward_0", "lstm_step_forward/lstm_step_backward")]
    layers = _load("cs231n/layers.py")
    x = rng.normal(size=(4, 3))
    rep = gradverify.check_op(layers.batchnorm_forward, layers.batchnorm_backward_alt, x, rng.normal(size=3),
                              rng.normal(size=3), attrs={"bn_param": {"mode": "train"}})
    assert rep.ok and rep.node("batchnorm_forward").op == "batchnorm_forward/batchnorm_backward_alt"
