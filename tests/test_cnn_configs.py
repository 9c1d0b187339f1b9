"""CNN configs end to end: the bundled configs/cnn.yaml, a custom conv (cs231n's loops) with a
seeded bug caught and blamed, dropout checked the same twice, and `reference:` comparing a
custom op's forward with the built-in's in both directions."""
import json

import pytest
from typer.testing import CliRunner

from gradverify.cli import app

from conftest import CONFIGS

# -- configs: the bundled CNN, a custom conv with a seeded bug, dropout twice ----------------------

def _check(path, *extra):
    res = CliRunner().invoke(app, ["check", str(path), "--format", "json", *extra])
    return res.exit_code, (json.loads(res.stdout) if res.stdout.strip().startswith("{") else res.output)


def test_bundled_cnn_passes():
    code, doc = _check(CONFIGS / "cnn.yaml")
    assert code == 0, doc
    assert doc["blame"] == []
    ops_used = {n["op"].split("(")[0] for n in doc["nodes"]}
    assert {"conv2d", "spatial_batchnorm", "max_pool2d", "flatten"} <= ops_used


# cs231n's conv_forward / conv_backward (loops over output positions, as in the assignment)
CONV = '''import numpy as np

def conv_forward(x, w, b, stride=1, pad=1):
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = 1 + (H + 2 * pad - HH) // stride, 1 + (W + 2 * pad - WW) // stride
    out = np.zeros((N, F, Ho, Wo), dtype=np.result_type(x, w, b))
    for i in range(Ho):
        for j in range(Wo):
            win = xp[:, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
            out[:, :, i, j] = np.tensordot(win, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, b, stride, pad)

def conv_backward(dout, cache):
    x, w, b, stride, pad = cache
    HH, WW = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    xq = XQ
    dxp = np.zeros(xp.shape, dtype=np.result_type(dout, w))
    dw = np.zeros(w.shape, dtype=np.result_type(dout, x))
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            rows, cols = slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW)
            dw += np.tensordot(dout[:, :, i, j], xq[:, :, rows, cols], axes=([0], [0]))
            dxp[:, :, rows, cols] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
    dx = dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]
    return dx, dw, dout.sum(axis=(0, 2, 3))
'''
GOOD_XQ = "xp"
BUGGY_XQ = "np.pad(x, ((0, 0), (0, 0), (0, 2 * pad), (0, 2 * pad)))  # the padding offset lost"


def _small_cnn(tmp_path, conv_src, conv_op="mine.py:conv", dropout="", conv_extra=""):
    (tmp_path / "mine.py").write_text(conv_src)
    first = dropout or "{name: pool_in, op: identity, inputs: [relu]}"
    cfg = tmp_path / "cnn.yaml"
    cfg.write_text(f"""
seed: 1
values:
  x: {{shape: [2, 2, 4, 4], init: normal, std: 1.0}}
  w1: {{shape: [3, 2, 3, 3], init: normal, std: 0.4}}
  b1: {{shape: [3], init: normal, std: 0.1}}
  gamma: {{shape: [3], init: ones}}
  beta: {{shape: [3], init: ones}}
  w2: {{shape: [12, 4], init: normal, std: 0.3}}
  b2: {{shape: [4], init: normal, std: 0.1}}
inputs: [x]
labels: [1, 3]
graph:
  - {{name: conv, op: "{conv_op}", inputs: [x, w1, b1], attrs: {{stride: 1, pad: 1}}{conv_extra}}}
  - {{name: bn, op: spatial_batchnorm, inputs: [conv, gamma, beta]}}
  - {{name: relu, op: relu, inputs: [bn]}}
  - {first}
  - {{name: pool, op: max_pool2d, inputs: [pool_in], attrs: {{size: 2}}}}
  - {{name: flat, op: flatten, inputs: [pool]}}
  - {{name: scores_w, op: matmul, inputs: [flat, w2]}}
  - {{name: scores, op: add_bias, inputs: [scores_w, b2]}}
  - {{name: exps, op: exp, inputs: [scores]}}
  - {{name: sexps, op: row_sum, inputs: [exps]}}
  - {{name: divexps, op: reciprocal, inputs: [sexps]}}
  - {{name: softmax, op: mul, inputs: [exps, divexps]}}
  - {{name: neg_log, op: neg_log_pick, inputs: [softmax]}}
  - {{name: loss, op: batch_mean, inputs: [neg_log]}}
loss: loss
""")
    return cfg


def test_custom_conv_with_a_dw_bug_is_caught_and_blamed(tmp_path):
    code, doc = _check(_small_cnn(tmp_path, CONV.replace("XQ", BUGGY_XQ)))
    assert code == 1, doc
    assert [b["node"] for b in doc["blame"]] == ["conv"]
    assert "mine.py" in doc["blame"][0]["op"]
    status = {n["name"]: n["status"] for n in doc["nodes"]}
    assert status["w1"] == "fail" and status["x"] != "fail"  # dw is wrong, dx is right


def test_correct_custom_conv_passes_and_matches_the_builtin(tmp_path):
    code, doc = _check(_small_cnn(tmp_path, CONV.replace("XQ", GOOD_XQ)))
    assert code == 0, doc
    assert doc["blame"] == []
    builtin = _check(_small_cnn(tmp_path, CONV.replace("XQ", GOOD_XQ), conv_op="conv2d"))
    assert builtin[0] == 0 and builtin[1]["loss"] == pytest.approx(doc["loss"], rel=1e-12)


def test_dropout_network_checks_the_same_twice(tmp_path):
    cfg = _small_cnn(tmp_path, CONV.replace("XQ", GOOD_XQ), conv_op="conv2d",
                     dropout="{name: pool_in, op: dropout, inputs: [relu], attrs: {keep: 0.6, seed: 5}}")
    first, second = _check(cfg), _check(cfg)
    assert first[0] == 0, first[1]
    assert first == second


# -- reference: the user's forward against the built-in's ------------------------------------------

def test_reference_conv2d_matching_forward_passes_with_its_largest_difference(tmp_path):
    code, doc = _check(_small_cnn(tmp_path, CONV.replace("XQ", GOOD_XQ), conv_extra=", reference: conv2d"))
    assert code == 0, doc
    conv = next(n for n in doc["nodes"] if n["name"] == "conv")
    assert conv["status"] == "pass"
    note = next(m for m in conv["notes"] if "reference conv2d" in m)
    assert "largest difference" in note
    assert float(note.rsplit("difference ", 1)[1].rstrip(")")) < 1e-12


# a forward that is consistently wrong: the kernel flipped (true convolution, not cs231n's
# correlation); the flipped weights are cached, so the backward differentiates that forward, and
# dw is flipped back: every gradient agrees with the wrong forward
FLIP = "    w = w[:, :, ::-1, ::-1]  # cached flipped\n"
FLIPPED = CONV.replace("XQ", GOOD_XQ).replace(
    "    F, _, HH, WW = w.shape\n", "    F, _, HH, WW = w.shape\n" + FLIP).replace(
    "    return dx, dw, dout.sum", "    return dx, dw[:, :, ::-1, ::-1], dout.sum")


def test_reference_catches_a_wrong_forward_that_the_gradients_cannot_see(tmp_path):
    cfg = _small_cnn(tmp_path, FLIPPED)
    code, doc = _check(cfg)
    assert code == 0, doc  # without a reference: the gradients agree with the flipped forward
    code, doc = _check(_small_cnn(tmp_path, FLIPPED, conv_extra=", reference: conv2d"))
    assert code == 1, doc
    conv = next(n for n in doc["nodes"] if n["name"] == "conv")
    assert conv["status"] == "fail" and "differs from the reference conv2d" in conv["problem"]
    assert [b["node"] for b in doc["blame"]] == ["conv"]


@pytest.mark.parametrize("extra,message", [
    (", reference: conv3d", "unknown op 'conv3d'"),
    (", reference: 3", "expected a built-in op's name"),
    (", reference: max_pool2d", "cannot take this node's attrs"),
])
def test_reference_errors_are_located(tmp_path, extra, message):
    res = CliRunner().invoke(app, ["check", str(_small_cnn(tmp_path, CONV.replace("XQ", GOOD_XQ), conv_extra=extra))])
    assert res.exit_code == 2
    assert message in res.output and "cnn.yaml:" in res.output


# -- kinks classified at the config level: a max-pool tie and abs at 0 are KINKs, never FAILs --------

KINKS = """
seed: 0
values:
  x: [[[[2.0, 2.0], [0.5, 1.0]], [[0.0, -1.0], [3.0, -2.0]]]]
inputs: [x]
graph:
  - {name: pool, op: max_pool2d, inputs: [x], attrs: {size: 2}}
  - {name: a, op: abs, inputs: [x]}
  - {name: s, op: sum, inputs: [pool]}
  - {name: t, op: sum, inputs: [a]}
  - {name: loss, op: add, inputs: [s, t]}
loss: loss
"""


@pytest.mark.parametrize("method", ["complex", "central"])
def test_a_pool_tie_and_abs_at_zero_are_kinks(tmp_path, method):
    path = tmp_path / "k.yaml"
    path.write_text(KINKS)
    code, doc = _check(path, "--method", method)
    assert code == 0, doc
    x = next(n for n in doc["nodes"] if n["name"] == "x")
    assert x["status"] == "kink"
    res = CliRunner().invoke(app, ["node", "x", "--config", str(path), "--method", method, "--format", "json"])
    elems = {tuple(e["index"]): e for e in json.loads(res.stdout)["elements"]}
    # the tied 2.0s of channel 0 (a max-pool tie) and the 0.0 of channel 1 (abs at 0): kinks
    status = {i: e["status"] for i, e in elems.items()}
    assert status[(0, 0, 0, 0)] == status[(0, 0, 0, 1)] == status[(0, 1, 0, 0)] == "kink"
    assert status[(0, 0, 1, 0)] == status[(0, 1, 1, 1)] == "pass"
    # by hand: d(pool + |x|)/dx at a tied 2.0 is 1 (abs) + 0 or 1 (which entry is the maximum)
    assert elems[(0, 0, 0, 1)]["left"] == pytest.approx(1.0) and elems[(0, 0, 0, 1)]["right"] == pytest.approx(2.0)
    # |x| at 0: the one-sided derivatives -1 and 1 (not in the pool's maximum: 3.0 is)
    assert sorted([elems[(0, 1, 0, 0)]["left"], elems[(0, 1, 0, 0)]["right"]]) == pytest.approx([-1.0, 1.0])


def test_layers_form_dropout_is_exact_and_repeatable(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("""
seed: 3
inputs: {shape: [4, 2, 4, 4], init: normal, std: 1.0}
labels: {classes: 3}
layers:
  - {type: conv, filters: 3, kernel: 3, pad: 1, weights: {init: normal, std: 0.4}, bias: {init: normal}}
  - {type: dropout, keep: 0.6, activation: tanh}
  - {type: avg_pool, size: 2}
  - {weights: {shape: [12, 3], init: normal, std: 0.3}, bias: {shape: [3]}}
loss: softmax_cross_entropy
""")
    first, second = _check(path), _check(path)
    assert first[0] == 0, first[1]
    assert first == second
    drop = next(n for n in first[1]["nodes"] if n["name"] == "l2_drop")
    assert drop["op"] == "dropout(keep=0.6, seed=3)" and drop["max_rel_error"] < 1e-9
