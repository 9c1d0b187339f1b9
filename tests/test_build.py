"""Config -> graph: the naming scheme for every loss, activation and custom layer."""
import pytest

from gradverify import build as build_mod
from gradverify import checker, config
from gradverify.build import build
from gradverify.errors import ConfigError
from gradverify.ops import Add, LeakyReLU, Mean

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
        "def bn_backward(d, c):\n    x, w, g = c\n"
        "    return d @ (w * g).T, x.T @ (d * g), d.sum(0), (d * (x @ w)).sum(0), d.sum(0)\n")
    text = NET.format(loss="softmax_cross_entropy", act="tanh", labels="labels: [0, 1]", reg="0.1", last="")
    text = text.replace("  - {weights: [[0.3", "  - {op: mine.py:bn, params: {gamma: [1.0, 1.0, 1.0], "
                        "beta: [0.0, 0.0, 0.0]}, weights: [[0.3")
    g = build(config.parse(text, base_dir=tmp_path))
    assert list(g.nodes)[:7] == ["x", "w1", "b1", "gamma1", "beta1", "l1_bn", "l1_tanh"]
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


# ---- the tables: LAYERS (with config.LAYER_TYPES), LOSSES, ACTIVATIONS --------------------------

RESIDUAL = """
inputs: [[1.0, 2.0], [0.5, -1.0]]
labels: [0, 1]
layers:
  - {type: residual, weights: [[0.3, -0.2], [0.1, 0.4]], bias: [0.1, -0.1], activation: tanh}
  - {weights: [[0.5, 0.1, 0.2], [0.2, 0.3, -0.4]], bias: [0.0, 0.1, 0.2]}
"""


def read_residual(r, i, spec, prev):
    """A residual layer's reader: an affine layer whose weights are square."""
    layer = config.read_affine(r, i, spec, prev)
    if layer.weights.shape[0] != layer.weights.shape[1]:
        raise r.src.error("a residual layer's weights must be square", ("layers", i, "weights"))
    return layer


def residual(net, i, layer, prev):
    """l{i}_res = prev + (prev·w{i} + b{i})."""
    lin = build_mod.affine(net, i, layer, prev)
    return net.op(f"l{i}_res", Add(), [prev, lin], ("layers", i - 1))


@pytest.fixture
def with_residual(monkeypatch):
    monkeypatch.setitem(config.LAYER_TYPES, "residual", read_residual)
    monkeypatch.setitem(build_mod.LAYERS, "residual", residual)


def test_a_registered_layer_type_builds_and_checks(with_residual):
    g = build(config.parse(RESIDUAL))
    assert list(g.nodes)[:7] == ["x", "w1", "b1", "w1_out", "l1_lin", "l1_res", "l1_tanh"]
    assert g.nodes["l1_res"].inputs == ("x", "l1_lin") and g.nodes["w2_out"].inputs == ("l1_tanh", "w2")
    assert checker.run(config.parse(RESIDUAL)).status == "pass"
    with pytest.raises(ConfigError, match=r"c.yaml:5:\d+: layers\[0\].weights: a residual layer's weights"):
        config.parse(RESIDUAL.replace("[[0.3, -0.2], [0.1, 0.4]], bias: [0.1, -0.1]",
                                      "[[0.3, -0.2, 0.0], [0.1, 0.4, 0.0]], bias: [0.1, -0.1, 0.0]"), file="c.yaml")


def test_an_unknown_layer_type_is_located_and_lists_the_types():
    with pytest.raises(ConfigError) as e:
        config.parse(RESIDUAL.replace("residual", "afine"), file="c.yaml")
    assert str(e.value) == ("c.yaml:5:6: layers[0].type: unknown layer type 'afine' (did you mean 'affine'?); "
                            "valid: affine, conv, max_pool, avg_pool, batchnorm, layernorm, dropout, flatten")
    with pytest.raises(ConfigError, match=r"layers\[0\].type: unknown layer type \[1\]; valid: affine, conv, "):
        config.parse(RESIDUAL.replace("residual", "[1]"), file="c.yaml")


def test_a_layer_type_without_a_builder_is_refused_by_build(monkeypatch):
    monkeypatch.setitem(config.LAYER_TYPES, "residual", read_residual)
    with pytest.raises(ConfigError) as e:
        build(config.parse(RESIDUAL, file="c.yaml"))
    assert str(e.value) == ("c.yaml:5:6: layers[0].type: unknown layer type 'residual'; valid: affine, conv, "
                            "max_pool, avg_pool, batchnorm, layernorm, dropout, flatten")


def test_the_layer_keys_are_the_types_and_the_common_ones():
    with pytest.raises(ConfigError, match="known keys: weights, bias, op, params, attrs, activation, alpha, type"):
        config.parse(RESIDUAL.replace("type: residual", "kind: residual"))


def test_a_registered_loss_builds_and_checks(monkeypatch):
    def mean_logit(net, logits):
        """The mean of the logits (a loss only in name: its gradient is 1/size everywhere)."""
        return net.op("loss_data", Mean(), [logits], ("loss",))

    monkeypatch.setitem(build_mod.LOSSES, "mean_logit", mean_logit)
    text = NET.format(loss="mean_logit", act="tanh", labels="labels: [0, 1]", reg="0.1", last="")
    assert list(build(config.parse(text)).nodes)[-4:] == ["l2_lin", "loss_data", "loss_reg", "loss"]
    assert checker.run(config.parse(text)).status == "pass"


def located(text, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        build(config.parse(text, file="c.yaml", **kw))
    return str(e.value)


def test_loss_names_are_checked_by_build_at_their_keys():
    text = NET.format(loss="{type: mse, stable: false}", act="relu", labels="targets: [[0.0, 1.0], [1.0, 0.0]]",
                      reg="0.1", last="")
    assert located(text) == "c.yaml:8:19: loss.stable: `stable:` applies only to softmax_cross_entropy"
    text = NET.format(loss="{stable: false}", act="relu", labels="labels: [0, 1]", reg="0.1", last="")
    assert located(text) == "c.yaml:8:1: loss: missing `type:` (one of softmax_cross_entropy, cross_entropy, mse, hinge)"
    text = NET.format(loss="hinj", act="relu", labels="labels: [0, 1]", reg="0.1", last="")
    assert located(text).startswith("c.yaml:8:1: loss: unknown loss 'hinj' (did you mean 'hinge'?); valid: ")


def test_alpha_belongs_to_the_activations_that_take_it(monkeypatch):
    text = NET.format(loss="softmax_cross_entropy", act="leaky_relu, alpha: 0.2", labels="labels: [0, 1]",
                      reg="0.1", last="")
    assert build(config.parse(text)).nodes["l1_leaky_relu"].op.alpha == 0.2
    assert build(config.parse(text.replace(", alpha: 0.2", ""))).nodes["l1_leaky_relu"].op.alpha == 0.01
    assert located(text.replace("leaky_relu", "relu")).endswith(
        "layers[0].alpha: `alpha:` applies only to activation: leaky_relu")
    typo = located(text.replace("leaky_relu", "leaky_rel"))
    assert "layers[0].activation: unknown activation 'leaky_rel' (did you mean 'leaky_relu'?)" in typo
    monkeypatch.setitem(build_mod.ACTIVATIONS, "leaky_relu2", LeakyReLU)  # a new activation with alpha
    assert build(config.parse(text.replace("leaky_relu", "leaky_relu2"))).nodes["l1_leaky_relu2"].op.alpha == 0.2
    assert located(text.replace("leaky_relu", "relu")).endswith("applies only to activation: leaky_relu or leaky_relu2")
