"""The layers form's CNN types (conv, max_pool, avg_pool, batchnorm, layernorm, dropout, flatten):
node names, the forward against plain numpy written here, full checks that pass, bugs that are
caught and blamed, dropout repeatable, and shape errors located at the layer with both shapes."""
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from gradverify import build, config
from gradverify.cli import app

from conftest import CONFIGS

SMALL = """
seed: {seed}
inputs: {{shape: [3, 2, 6, 6], init: normal, std: 1.0}}
labels: {{classes: 4}}
layers:
{layers}
loss: softmax_cross_entropy
"""
CONV_NET = """\
  - {type: conv, filters: 3, kernel: 3, pad: 1, weights: {init: normal, std: 0.4}, bias: {init: normal}}
  - {type: batchnorm, activation: relu}
  - {type: max_pool, size: 2}
  - {weights: {shape: [27, 4], init: normal, std: 0.3}, bias: {shape: [4], init: normal}}"""


def _write(tmp_path, layers, seed=0, name="net.yaml"):
    path = tmp_path / name
    path.write_text(SMALL.format(seed=seed, layers=layers))
    return path


def _check(path, *extra):
    res = CliRunner().invoke(app, ["check", str(path), "--format", "json", *extra])
    doc = json.loads(res.stdout) if res.stdout.strip().startswith("{") else res.output
    return res.exit_code, doc


def _error(tmp_path, layers):
    res = CliRunner().invoke(app, ["check", str(_write(tmp_path, layers))])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    return res.output


# -- names ----------------------------------------------------------------------------------------

def test_bundled_cnn_node_names():
    g = build.build(config.load(CONFIGS / "cnn.yaml"))
    assert list(g.nodes)[:13] == ["x", "w1", "l1_conv", "gamma2", "beta2", "l2_bn", "l2_relu", "l3_pool",
                                  "l4_flat", "w4", "b4", "w4_out", "l4_lin"]
    assert g.nodes["l2_bn"].op.name == "spatial_batchnorm"
    assert g.nodes["x"].value.shape == (1, 8, 3, 16, 16) and g.nodes["w1"].value.shape == (1, 8, 3, 3, 3)


def test_every_type_and_its_names(tmp_path):
    layers = """\
  - {type: conv, weights: {shape: [4, 2, 3, 3]}, bias: [0.1, 0.2, 0.3, 0.4], stride: 2}
  - {type: avg_pool, size: 2, stride: 1}
  - {type: flatten}
  - {type: dropout, keep: 0.7, seed: 9}
  - {type: layernorm, gamma: {init: ones}, eps: 0.001}
  - {weights: {shape: [4, 5]}, bias: {shape: [5]}, activation: tanh}
  - {type: batchnorm}
  - {weights: {shape: [5, 4]}, bias: {shape: [4]}}"""
    g = build.build(config.load(_write(tmp_path, layers)))
    assert [n for n in g.nodes if n not in ("exps", "sexps", "divexps", "softmax", "neg_log", "loss_data",
                                          "loss_reg", "loss")] == [
        "x", "w1", "b1", "l1_conv", "l2_pool", "l3_flat", "l4_drop", "gamma5", "beta5", "l5_ln",
        "w6", "b6", "w6_out", "l6_lin", "l6_tanh", "gamma7", "beta7", "l7_bn", "w8", "b8", "w8_out", "l8_lin"]
    assert g.nodes["l1_conv"].op.label == "conv2d(stride=2, pad=0)"
    assert g.nodes["l4_drop"].op.label == "dropout(keep=0.7, seed=9)"
    assert g.nodes["l7_bn"].op.name == "batchnorm"
    np.testing.assert_array_equal(g.nodes["beta5"].value, np.zeros((1, 4)))
    code, doc = _check(_write(tmp_path, layers))
    assert code == 0, doc
    assert {n["status"] for n in doc["nodes"]} <= {"pass", "kink"}


def test_dropout_seed_defaults_to_the_config_seed(tmp_path):
    g = build.build(config.load(_write(tmp_path, "  - {type: dropout}\n  - {weights: {shape: [72, 4]}, "
                                                 "bias: {shape: [4]}}", seed=7)))
    assert g.nodes["l1_drop"].op.label == "dropout(keep=0.5, seed=7)"


# -- the forward against numpy written here ---------------------------------------------------------

def _numpy_loss(cfg):
    """conv (pad 1) → spatial batchnorm → relu → 2×2 max pool → affine → softmax CE, by loops."""
    x, (conv, bn, _, fc) = cfg.inputs, cfg.layers
    w, b = conv.weights, conv.bias
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    n, f, h, wd = x.shape[0], w.shape[0], x.shape[2], x.shape[3]
    out = np.zeros((n, f, h, wd))
    for i, j, k, m in np.ndindex(out.shape):
        out[i, j, k, m] = np.sum(xp[i, :, k:k + 3, m:m + 3] * w[j]) + b[j]
    mu, var = out.mean(axis=(0, 2, 3), keepdims=True), out.var(axis=(0, 2, 3), keepdims=True)
    (_, gamma), (_, beta) = bn.params
    y = (out - mu) / np.sqrt(var + 1e-5) * gamma[None, :, None, None] + beta[None, :, None, None]
    y = np.maximum(y, 0.0)
    pooled = y.reshape(n, f, h // 2, 2, wd // 2, 2).max(axis=(3, 5))
    scores = pooled.reshape(n, -1) @ fc.weights + fc.bias
    scores = scores - scores.max(axis=1, keepdims=True)
    logp = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return -logp[np.arange(n), cfg.labels].mean()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_conv_network_loss_and_check_over_seeds(tmp_path, seed):
    path = _write(tmp_path, CONV_NET, seed=seed)
    code, doc = _check(path)
    assert code == 0, doc
    assert doc["loss"] == pytest.approx(_numpy_loss(config.load(path)), rel=1e-12)
    assert doc["blame"] == []


# -- bugs caught and blamed ----------------------------------------------------------------------

CONV_SRC = '''import numpy as np

def conv_forward(x, w, stride=1, pad=0):
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = 1 + (H + 2 * pad - HH) // stride, 1 + (W + 2 * pad - WW) // stride
    out = np.zeros((N, F, Ho, Wo), dtype=np.result_type(x, w))
    for i in range(Ho):
        for j in range(Wo):
            win = xp[:, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
            out[:, :, i, j] = np.tensordot(win, w, axes=([1, 2, 3], [1, 2, 3]))
    return out, (x, w, stride, pad)

def conv_backward(dout, cache):
    x, w, stride, pad = cache
    HH, WW = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros(xp.shape, dtype=np.result_type(dout, w))
    dw = np.zeros(w.shape, dtype=np.result_type(dout, x))
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            rows, cols = slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW)
            dw += np.tensordot(dout[:, :, i, j], XQ[:, :, rows, cols], axes=([0], [0]))
            dxp[:, :, rows, cols] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
    dx = dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]
    return dx, dw
'''
GOOD_XQ = "xp"
BUGGY_XQ = "np.pad(x, ((0, 0), (0, 0), (0, 2 * pad), (0, 2 * pad)))"  # the padding offset lost


def _cnn_copy(tmp_path, xq=GOOD_XQ):
    """configs/cnn.yaml with its conv replaced by the user's."""
    (tmp_path / "mine.py").write_text(CONV_SRC.replace("XQ", xq))
    text = (CONFIGS / "cnn.yaml").read_text()
    old = "  - {type: conv, filters: 8, kernel: 3, pad: 1, weights: {init: normal, std: 0.3}}"
    assert old in text
    text = text.replace(old, old[:-1] + ", op: mine.py:conv}")
    path = tmp_path / "cnn_mine.yaml"
    path.write_text(text)
    return path


def test_cnn_copy_with_a_bug_in_the_custom_conv_backward_is_caught_and_blamed(tmp_path):
    code, doc = _check(_cnn_copy(tmp_path, BUGGY_XQ), "--sample", "40")
    assert code == 1, doc
    assert [b["node"] for b in doc["blame"]] == ["l1_conv"]
    assert "mine.py" in doc["blame"][0]["op"]
    status = {n["name"]: n["status"] for n in doc["nodes"]}
    assert status["w1"] == "fail" and status["x"] == "pass"  # dw is wrong, dx is right


def test_cnn_copy_with_a_correct_custom_conv_passes(tmp_path):
    code, doc = _check(_cnn_copy(tmp_path), "--sample", "40")
    assert code == 0, doc
    assert doc["blame"] == []


@pytest.mark.parametrize("bug", [0.0, 0.05])
def test_a_wrong_batchnorm_gradient_is_not_hidden_by_the_sparse_push(tmp_path, bug):
    """A network whose batchnorm is the user's (the built-in's numbers, its dx off by
    bug · gamma · dout): with bug 0 it passes, else it fails and the user's bn is blamed, while
    the built-in conv and pool upstream and downstream push their sparse changes."""
    src = '''import numpy as np
from gradverify.ops import SpatialBatchNorm
OP = SpatialBatchNorm()
def bn_forward(x, gamma, beta):
    return OP.forward(x[None], gamma[None], beta[None])[0], (x, gamma, beta)
def bn_backward(dout, cache):
    x, gamma, beta = cache
    dx, dg, db = OP.backward(dout[None], None, x[None], gamma[None], beta[None])
    return dx[0] + BUG * dout * gamma[None, :, None, None], dg[0], db[0]
'''
    (tmp_path / "bn.py").write_text(src.replace("BUG", repr(bug)))
    (tmp_path / "g.yaml").write_text("""
seed: 0
values:
  x: {shape: [2, 2, 4, 4], init: normal, std: 1.0}
  w: {shape: [3, 2, 3, 3], init: normal, std: 0.4}
  gamma: {shape: [3], init: ones}
  beta: {shape: [3], init: zeros}
  v: {shape: [12, 3], init: normal, std: 0.3}
inputs: [x]
labels: [0, 2]
graph:
  - {name: conv, op: conv2d, inputs: [x, w], attrs: {pad: 1}}
  - {name: bn, op: bn.py:bn, inputs: [conv, gamma, beta]}
  - {name: pool, op: max_pool2d, inputs: [bn], attrs: {size: 2}}
  - {name: flat, op: flatten, inputs: [pool]}
  - {name: scores, op: matmul, inputs: [flat, v]}
  - {name: probs, op: softmax, inputs: [scores]}
  - {name: pick, op: neg_log_pick, inputs: [probs]}
  - {name: loss, op: batch_mean, inputs: [pick]}
loss: loss
""")
    code, doc = _check(tmp_path / "g.yaml")
    assert code == (1 if bug else 0), doc
    assert [b["node"] for b in doc["blame"]] == (["bn"] if bug else [])


# -- shape errors, located at the layer with both shapes ----------------------------------------------

@pytest.mark.parametrize("layers,where,message", [
    ("  - {weights: {shape: [72, 4]}, bias: {shape: [4]}}\n  - {type: conv, weights: {shape: [2, 4, 3, 3]}}\n"
     "  - {weights: {shape: [4, 4]}, bias: {shape: [4]}}",
     "layers[1]", "a conv layer takes images N×C×H×W, but layer 1's output is 3×4 (2-D)"),
    ("  - {type: conv, weights: {shape: [5, 3, 3, 3]}}\n  - {type: flatten}",
     "layers[0].weights", "expected weights F×2×kh×kw to match the 2 channels of the inputs 3×2×6×6, got 5×3×3×3"),
    ("  - {type: conv, weights: {shape: [5, 2, 7, 7]}}\n  - {type: flatten}",
     "layers[0]", "a 7×7 kernel does not fit the inputs 3×2×6×6 (padded to 6×6)"),
    ("  - {type: conv, weights: {init: normal}}\n  - {type: flatten}",
     "layers[0].weights", "need `filters:` and `kernel:`"),
    ("  - {type: conv, filters: 4, kernel: 3, weights: {init: normal}, bias: [1, 2]}\n  - {type: flatten}",
     "layers[0].bias", "expected 4 values, one per filter, got 2"),
    ("  - {type: max_pool, size: 7}\n  - {type: flatten}",
     "layers[0].size", "a 7×7 window does not fit the inputs 3×2×6×6"),
    ("  - {type: layernorm}", "layers[0]", "a layernorm layer takes rows N×D, but the inputs is 3×2×6×6"),
    ("  - {type: max_pool}", "layers[0]", "the last layer gives 3×2×3×3 (4-D) but the loss needs N×classes"),
    ("  - {type: max_pool}\n  - {weights: {shape: [72, 4]}, bias: {shape: [4]}}",
     "layers[1].weights", "expected 18 rows to match layer 1's output 3×2×3×3 flattened to 3×18, got 72"),
    ("  - {type: batchnorm, gamma: [1, 2, 3]}\n  - {type: flatten}",
     "layers[0].gamma", "expected 2 values, one per channel of 3×2×6×6, got 3"),
    ("  - {type: dropout, keep: 0}\n  - {type: flatten}", "layers[0].keep", "expected a probability in (0, 1]"),
    ("  - {type: conv, weights: {shape: [2, 2, 3, 3]}, stride: 0}\n  - {type: flatten}",
     "layers[0].stride", "expected an integer ≥ 1, got 0"),
    ("  - {type: pool}", "layers[0].type", "unknown layer type 'pool'"),
    ("  - {type: max_pool, filters: 3}", "layers[0]", "filters"),
])
def test_shape_errors_are_located_at_the_layer(tmp_path, layers, where, message):
    out = " ".join(_error(tmp_path, layers).split())
    assert message in out
    assert re.search(r"net\.yaml:\d+:\d+", out) and where in out


def test_images_as_inputs_need_4_dimensions(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("inputs: {shape: [2, 3, 4]}\nlabels: [0, 1]\nlayers:\n  - {type: flatten}\n")
    res = CliRunner().invoke(app, ["check", str(path)])
    assert res.exit_code == 2 and "inputs" in res.output and "got 3-D with shape [2, 3, 4]" in res.output


def test_conv_weights_from_a_npy_file_and_inline(tmp_path):
    w = np.random.default_rng(3).normal(size=(3, 2, 3, 3)) * 0.4
    np.save(tmp_path / "w.npy", w)
    inline = w[:, :, :, :].tolist()
    for weights in ("{file: w.npy}", str(inline)):
        layers = (f"  - {{type: conv, pad: 1, weights: {weights}}}\n  - {{type: max_pool}}\n"
                  "  - {weights: {shape: [27, 4]}, bias: {shape: [4]}}")
        cfg = config.load(_write(tmp_path, layers))
        np.testing.assert_array_equal(cfg.layers[0].weights, w)
        assert _check(_write(tmp_path, layers))[0] == 0


def test_the_schema_knows_the_layer_types():
    import jsonschema
    import yaml
    res = CliRunner().invoke(app, ["schema"])
    validator = jsonschema.Draft202012Validator(json.loads(res.stdout))
    good = yaml.safe_load(SMALL.format(seed=0, layers=CONV_NET))
    assert not list(validator.iter_errors(good))
    for bad in ({"type": "conv", "weights": {"init": "normal"}, "size": 2},  # a pooling key on a conv
                {"type": "max_pool", "weights": [[1.0]]},
                {"type": "dropout", "keep": 0},
                {"type": "pool"}):
        doc = dict(good, layers=[bad] + good["layers"][1:])
        assert list(validator.iter_errors(doc)), bad
