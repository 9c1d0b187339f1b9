"""`gradverify init` refuses options that would write a config `check` refuses: one line, exit
2, nothing written."""
import pytest
from typer.testing import CliRunner

from gradverify.cli import app


@pytest.mark.parametrize("args, words", [
    (["--rows", "0"], "--rows 0: expected an integer ≥ 1"),
    (["--rows", "-1"], "--rows -1: expected an integer ≥ 1"),
    (["--seed", "-1"], "--seed -1: expected an integer ≥ 0"),
    (["--layers", "100000,100000,3"], "layer 1's weights (100000×100000) would have 10,000,000,000 elements"),
    (["--rows", "2000000", "--layers", "100,3"], "--rows × the input width would have 200,000,000 elements"),
    (["--layers", "3000,3000,3000"], "the arrays would have 18,030,000 elements together"),
    (["--layers", "4,0,3"], "--layers takes at least two positive widths"),
])
def test_bad_init_options_write_nothing(tmp_path, args, words):
    path = tmp_path / "g.yaml"
    res = CliRunner().invoke(app, ["init", str(path), *args])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradverify: error: ") and words in lines[0], res.stderr
    assert not path.exists()


def test_a_large_starter_within_the_limits_passes_check(tmp_path):
    path = tmp_path / "g.yaml"
    assert CliRunner().invoke(app, ["init", str(path), "--layers", "1000,3000,3", "--rows", "2"]).exit_code == 0
    from gradverify.config import load
    assert load(path).layers[0].weights.shape == (1000, 3000)


# -- init --conv: a CNN starter; init --op: one op of yours checked alone --------------------------

def _check_json(path):
    import json
    res = CliRunner().invoke(app, ["check", str(path), "--format", "json"])
    return res.exit_code, json.loads(res.stdout)


@pytest.mark.parametrize("conv,image", [("8:3", "3,8,8"), ("4:3,6:2", "2,7,6"), ("5:1", "1,1,1")])
def test_init_conv_writes_a_cnn_that_passes(tmp_path, conv, image):
    path = tmp_path / "c.yaml"
    res = CliRunner().invoke(app, ["init", str(path), "--conv", conv, "--image", image, "--rows", "4"])
    assert res.exit_code == 0, res.output
    code, doc = _check_json(path)
    assert code == 0, doc
    names = [n["name"] for n in doc["nodes"]]
    assert "w1" in names and "l1_conv" in names and "l2_bn" in names
    assert doc["blame"] == [] and {n["status"] for n in doc["nodes"]} <= {"pass", "kink"}


@pytest.mark.parametrize("args,words", [
    (["--conv", "8"], "expected FILTERS:KERNEL blocks"),
    (["--conv", "0:3"], "filters and kernel must be ≥ 1"),
    (["--conv", "8:3", "--image", "3,8"], "expected C,H,W"),
    (["--conv", "8:3", "--image", "3,2000,2000"], "more than the limit of 10,000,000"),
    (["--op", "layers.py"], "expected file.py:name"),
    (["--op", "nothere.py:affine"], "nothere.py has no function affine_forward"),
])
def test_bad_conv_and_op_options_write_nothing(tmp_path, args, words):
    path = tmp_path / "g.yaml"
    res = CliRunner().invoke(app, ["init", str(path), *args])
    assert res.exit_code == 2, res.output
    assert words in res.stderr and not path.exists()


AFFINE = '''import numpy as np

def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b, (x, w, b)

def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    return dx, dw, DB
'''


@pytest.mark.parametrize("db,verdict", [("dout.sum(axis=0)", 0), ("dout.mean(axis=0)", 1)])
def test_init_op_checks_a_named_op_alone(tmp_path, db, verdict):
    (tmp_path / "layers.py").write_text(AFFINE.replace("DB", db))
    path = tmp_path / "op.yaml"
    res = CliRunner().invoke(app, ["init", str(path), "--op", "layers.py:affine"])
    assert res.exit_code == 0, res.output
    text = path.read_text()
    assert "loss: out" in text and 'op: "layers.py:affine", inputs: [x, w, b]' in text
    code, doc = _check_json(path)
    assert code == verdict, doc
    status = {n["name"]: n["status"] for n in doc["nodes"]}
    assert status["b"] == ("fail" if verdict else "pass") and status["w"] == "pass"
    assert [b["node"] for b in doc["blame"]] == (["out"] if verdict else [])


def test_init_op_reads_an_unknown_ops_parameters(tmp_path):
    (tmp_path / "mine.py").write_text(
        "def scale_forward(x, s, scale_param):\n    return x * s, (x, s)\n"
        "def scale_backward(dout, cache):\n    x, s = cache\n    return dout * s, dout * x\n")
    path = tmp_path / "op.yaml"
    assert CliRunner().invoke(app, ["init", str(path), "--op", "mine.py:scale"]).exit_code == 0
    assert "attrs: {scale_param: {}}" in path.read_text()
    assert _check_json(path)[0] == 0
