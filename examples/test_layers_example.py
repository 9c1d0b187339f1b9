"""Gradient checks in your own test suite: run with `python -m pytest examples/test_layers_example.py`.

Each layer is checked on its own (like cs231n's eval_numerical_gradient_array, but with every
input, the complex step, error bars and kinks), then the whole network from its config.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

import gradverify
from gradverify.testing import assert_grads

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "zoo"))
import buggy  # noqa: E402
import correct  # noqa: E402  the layers under test (examples/zoo/correct.py)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_affine_layer(rng):
    x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 5)), rng.normal(size=5)
    report = gradverify.check_op(correct.affine_forward, correct.affine_backward, x, w, b)
    report.assert_ok()  # on failure, the AssertionError's message is the whole table


def test_affine_layer_with_testing_helpers(rng):
    x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 5)), rng.normal(size=5)
    assert_grads(correct.affine_forward, correct.affine_backward, x, w, b)
    with pytest.raises(AssertionError, match=r"^db of affine_backward: 5/5 elements wrong"):
        assert_grads(buggy.affine_forward, buggy.affine_backward, x, w, b)  # db: a mean, not a sum


def test_every_activation(rng):
    x = rng.normal(size=(4, 6))
    for name in ("relu", "sigmoid", "tanh", "gelu", "center"):
        fwd, bwd = getattr(correct, f"{name}_forward"), getattr(correct, f"{name}_backward")
        assert gradverify.check_op(fwd, bwd, x).ok, name


def test_a_buggy_layer_is_caught(rng):
    x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 5)), rng.normal(size=5)
    report = gradverify.check_op(buggy.affine_forward, buggy.affine_backward, x, w, b)
    assert not report.ok
    assert [n.name for n in report.nodes if n.status == "fail"] == ["b"]  # db is a mean, not a sum
    assert [b.node for b in report.blame] == ["affine_forward"]  # the op is named after its forward


def test_whole_network():
    report = gradverify.check(HERE.parent / "configs" / "seed.yaml")
    assert report.ok and report.status == "kink"  # l1_lin[0,0] sits on ReLU's kink
    assert report.to_dict()["loss"] == pytest.approx(1.6433835063990552)
