"""Config -> graph: the naming scheme for every loss, activation and custom layer."""
import pytest

from gradverify import config
from gradverify.build import build
from gradverify.errors import ConfigError
from conftest import ROOT

NET = """
inputs: [[1.0, 2.0], [0.5, -1.0]]
{labels}
regularization: {reg}
layers:
  - {{weights: [[0.3, -0.2, 0.1], [0.1, 0.4, 0.2]], bias: [0.1, -0.1, 0.0], activation: {act}}}
  - {{weights: [[0.5, 0.1], [0.2, 0.3], [0.1, 0.1]], bias: [0.0, 0.1]{last}}}
loss: {loss}
"""


def names(loss="softmax_cross_entropy", act="relu", labels="labels: [0, 1]", reg="0.1", last=""):
    text = NET.format(loss=loss, act=act, labels=labels, reg=reg, last=last)
    return list(build(config.parse(text)).nodes)


def test_notebook_names():
    assert names() == ["x", "w1", "b1", "w1_out", "l1_lin", "l1_relu", "w2", "b2", "w2_out", "l2_lin",
                       "exps", "sexps", "divexps", "softmax", "neg_log", "loss_data", "loss_reg", "loss"]


@pytest.mark.parametrize("loss,tail,extra", [
    ("cross_entropy", ["l2_softmax", "neg_log", "loss_data"], {"last": ", activation: softmax"}),
    ("mse", ["residual", "sq_err", "loss_data"], {"labels": "targets: [[0.0, 1.0], [1.0, 0.0]]"}),
    ("hinge", ["margins", "loss_data"], {}),
])
def test_loss_names(loss, tail, extra):
    got = names(loss=loss, **extra)
    assert got[-len(tail) - 2:] == tail + ["loss_reg", "loss"]


@pytest.mark.parametrize("act", ["leaky_relu", "sigmoid", "tanh", "identity", "softmax"])
def test_activation_names(act):
    assert f"l1_{act}" in names(act=act)


def test_custom_layer_and_params_names(tmp_path):
    (tmp_path / "mine.py").write_text(
        "def bn_forward(x, w, b, gamma, beta):\n    return x @ w * gamma + b + beta, (x, w, gamma)\n"
        "def bn_backward(d, c):\n    x, w, g = c\n    return d @ (w * g).T, x.T @ (d * g), d.sum(0), (d * (x @ w)).sum(0), d.sum(0)\n")
    text = NET.format(loss="softmax_cross_entropy", act="tanh", labels="labels: [0, 1]", reg="0.1", last="")
    text = text.replace("  - {weights: [[0.3", "  - {op: mine.py:bn, params: {gamma: [1.0, 1.0, 1.0], beta: [0.0, 0.0, 0.0]}, weights: [[0.3")
    g = build(config.parse(text, base_dir=tmp_path))
    assert list(g.nodes)[:7] == ["x", "w1", "b1", "gamma1", "beta1", "l1_bn", "l1_tanh"]
    from gradverify import checker
    assert checker.run(config.parse(text, base_dir=tmp_path)).status == "pass"


def test_regularization_include():
    text = NET.format(loss="softmax_cross_entropy", act="relu", labels="labels: [0, 1]",
                      reg="{strength: 0.1, include: [w1, w2]}", last="")
    g = build(config.parse(text))
    assert g.nodes["loss_reg"].inputs == ("w1", "w2")
    with pytest.raises(ConfigError, match="'w3' is not a parameter"):
        build(config.parse(text.replace("[w1, w2]", "[w1, w3]"), file="c.yaml"))


def test_graph_form_places_each_leaf_before_its_first_use():
    g = build(config.load(ROOT / "configs" / "seed_graph.yaml"))
    order = list(g.nodes)
    assert order.index("w1") < order.index("w1_out") and order.index("b1") < order.index("l1_lin")
    assert g.loss == "loss" and g.nodes["x"].kind == "input" and g.nodes["w1"].kind == "parameter"
