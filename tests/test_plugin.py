"""The pytest plugin (gradverify.pytest_plugin, entry point pytest11) run by pytest's own pytester:
*.gradverify.yaml files become one test item per node, failures carry the worst element and the
blame, kinks pass unless --gradverify-strict, a bad config is a one-line collection error, and the
configs listed in [tool.gradverify] are collected too. And gradverify.testing's assertions,
whose first line names the gradient, the function and the verdict."""
import numpy as np
import pytest

from gradverify.testing import assert_grads, assert_loss_grads, assert_model_grads

pytest_plugins = ["pytester"]

LAYERS = '''
import numpy as np

def affine_forward(x, w, b):
    return x @ w + b, (x, w, b)

def affine_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0){db_bug}
'''

NET = '''seed: 3
inputs: {{shape: [4, 3], init: normal, std: 1.0}}
labels: [0, 2, 1, 2]
layers:
  - op: layers.py:affine
    weights: {{shape: [3, 5], init: normal, std: 0.8}}
    bias: {{shape: [5], init: normal, std: 0.3}}
    activation: {activation}
  - weights: {{shape: [5, 3], init: normal, std: 0.8}}
    bias: {{shape: [3], init: normal, std: 0.3}}
loss: softmax_cross_entropy
'''


def _project(pytester, bug: bool = False, activation: str = "tanh", name: str = "net.gradverify.yaml"):
    # the bug: db is the mean over the batch of 4, not the sum: analytic = numeric / 4 exactly
    pytester.makefile(".py", layers=LAYERS.format(db_bug=" / 4" if bug else ""))
    (pytester.path / name).write_text(NET.format(activation=activation))


def test_correct_network_is_one_passing_item_per_node(pytester):
    _project(pytester)
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=17)
    result.stdout.fnmatch_lines(["*net.gradverify.yaml::x PASSED*", "*net.gradverify.yaml::b1 PASSED*",
                                 "*net.gradverify.yaml::loss PASSED*"])


def test_wrong_bias_gradient_fails_with_worst_element_and_blame(pytester):
    _project(pytester, bug=True)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=16)
    result.stdout.fnmatch_lines([
        "*_ b1 _*",
        "b1: 5/5 elements wrong, analytic ≈ 0.25 × numeric at all 5 elements checked: *N = 4?",
        "node b1: parameter, op parameter, shape 5, method complex; worst element *",
        "blame: the backward of l1_affine (layers.py:affine) is wrong*b1*",
        "FAILED net.gradverify.yaml::b1 - b1: 5/5 elements wrong*",
    ])
    import re

    from conftest import ROOT

    shown = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")  # the docs show this run
    # its worst element and last digits as the numpy that made the docs rounds them (the five
    # elements tie in relative error up to rounding)
    same_numpy = np.__version__ == (ROOT / "tests" / "golden" / "NUMPY").read_text().strip()
    for start in ("b1: 5/5", "node b1:", "blame: the backward of l1_affine"):
        if start == "node b1:" and not same_numpy:
            continue
        assert next(t for t in result.outlines if t.startswith(start)) + "\n" in shown, start
    line = next(t for t in result.outlines if t.startswith("node b1:"))
    analytic, numeric = map(float, re.search(r"analytic (\S+), numeric (\S+) ", line).groups())
    assert analytic == pytest.approx(numeric / 4, rel=1e-12)  # the mean over a batch of 4, by hand


def test_kink_passes_unless_strict(pytester):
    """relu on inputs where a pre-activation is exactly 0 (the seed network's l1_lin[0,0])."""
    from conftest import CONFIGS

    (pytester.path / "seed.gradverify.yaml").write_text((CONFIGS / "seed.yaml").read_text())
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=18)
    strict = pytester.runpytest("-p", "no:cacheprovider", "--gradverify-strict")
    strict.assert_outcomes(passed=13, failed=5)
    strict.stdout.fnmatch_lines(["l1_lin: 1/6 elements at a kink (a failure under strict)"])


def test_strict_from_settings(pytester):
    from conftest import CONFIGS

    (pytester.path / "seed.gradverify.yaml").write_text((CONFIGS / "seed.yaml").read_text())
    pytester.makepyprojecttoml("[tool.gradverify]\nstrict = true\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=13, failed=5)


def test_bad_config_is_one_line_collection_error(pytester):
    (pytester.path / "bad.gradverify.yaml").write_text("inptus: {shape: [2, 2]}\nlayers: []\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["gradverify: error: *bad.gradverify.yaml:1:1: inptus: unknown key*"])
    assert "Traceback" not in result.stdout.str()


def test_configs_listed_in_settings_are_collected(pytester):
    _project(pytester, bug=True, name="net.yaml")
    pytester.makepyprojecttoml('[tool.gradverify]\nconfigs = ["net.yaml"]\n')
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=1, passed=16)


def test_plain_yaml_is_not_collected(pytester):
    _project(pytester, name="net.yaml")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes()


# ---- gradverify.testing -------------------------------------------------------------------------


def affine_forward(x, w, b):
    return x @ w + b, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, 0.2 * (x.T @ dout), dout.sum(axis=0)  # dw scaled by 0.2: the bug


def affine_backward_ok(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def _xwb(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(4, 3)), rng.normal(size=(3, 6)), rng.normal(size=6)


@pytest.mark.parametrize("seed", range(5))
def test_assert_grads_passes_correct_code(seed):
    report = assert_grads(affine_forward, affine_backward_ok, *_xwb(seed), seed=seed)
    assert report.ok


def test_assert_grads_first_line_names_input_function_and_verdict():
    with pytest.raises(AssertionError) as e:
        assert_grads(affine_forward, affine_backward, *_xwb())
    first = str(e.value).split("\n")[0]
    assert first.startswith("dw of affine_backward: 18/18 elements wrong, analytic ≈ 0.2 × numeric at all 18 ")
    assert "blame: the backward of affine_forward" in str(e.value)


def test_assert_grads_unproportional_bug_shows_worst_element():
    def backward(dout, cache):  # dx off by noise: no pattern explains it, so the worst element is named
        x, w, b = cache
        dx = dout @ w.T
        return dx + np.random.default_rng(7).normal(size=dx.shape), x.T @ dout, dout.sum(axis=0)

    with pytest.raises(AssertionError) as e:
        assert_grads(affine_forward, backward, *_xwb())
    first = str(e.value).split("\n")[0]
    assert first.startswith("dx of test_assert_grads_unproportional_bug_shows_worst_element.<locals>.backward: "
                            "12/12 elements wrong, worst element [")


def relu_forward(x):
    return np.maximum(x, 0) if not np.iscomplexobj(x) else np.where(x.real > 0, x, 0), x


def relu_backward(dout, x):
    return dout * (x > 0)


def test_assert_grads_kink_passes_unless_strict():
    x = np.array([[0.0, 1.0], [-2.0, 3.0]])  # x[0,0] = 0 sits on relu's kink: 0 is a subgradient
    assert_grads(relu_forward, relu_backward, x)
    with pytest.raises(AssertionError, match=r"^dx of relu_backward: 1/4 elements at a kink"):
        assert_grads(relu_forward, relu_backward, x, strict=True)


def test_assert_loss_grads():
    rng = np.random.default_rng(1)
    W, X, y = rng.normal(size=(3, 4)), rng.normal(size=(5, 3)), rng.integers(0, 4, size=5)

    def half_squared(W, X, y):  # L = 0.5 Σ (XW)²: dW = Xᵀ X W, by hand
        s = X @ W
        return 0.5 * np.sum(s * s), X.T @ s

    def half_squared_bug(W, X, y):
        s = X @ W
        return 0.5 * np.sum(s * s), -(X.T @ s)  # the sign

    assert_loss_grads(half_squared, W, X, y, data=("X",))
    with pytest.raises(AssertionError, match=r"^dW of .*half_squared_bug: 12/12 elements wrong, analytic ≈ -1 × num"):
        assert_loss_grads(half_squared_bug, W, X, y, data=("X",))


class Quadratic:
    """loss = 0.5·Σ W² + Σ b: dW = W, db = 1 by hand; `bug` halves dW."""

    def __init__(self, bug=False):
        self.params = {"W": np.arange(6.0).reshape(2, 3) - 2, "b": np.ones(3)}
        self.bug = bug

    def loss(self, X, y=None):
        W, b = self.params["W"], self.params["b"]
        return 0.5 * np.sum(W * W) + np.sum(b) + 0 * np.sum(X), {"W": W * (0.5 if self.bug else 1), "b": np.ones(3)}


def test_assert_model_grads():
    X = np.ones((2, 2))
    assert_model_grads(Quadratic(), X)
    with pytest.raises(AssertionError, match=r"^dW of Quadratic.loss: 5/6 elements wrong, analytic ≈ 0.5 × numeric"):
        assert_model_grads(Quadratic(bug=True), X)


def test_bad_settings_are_a_usage_error_not_an_internal_error(pytester):
    """The plugin loads in every project where gradverify is installed: a bad [tool.gradverify]
    must be one line, not an INTERNALERROR traceback that breaks the whole test run."""
    pytester.makepyprojecttoml('[tool.gradverify]\nmethod = "nope"\n')
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert "tool.gradverify.method: 'nope'" in result.stderr.str()


def test_assert_grads_under_the_taylor_method_names_the_order():
    import numpy as np

    x, w = np.random.default_rng(0).normal(size=(3, 4)), np.random.default_rng(1).normal(size=(4, 2))
    with pytest.raises(AssertionError) as e:
        assert_grads(lambda x, w: (x @ w, (x, w)), lambda d, c: (d @ c[1].T, 2 * c[0].T @ d), x, w,
                     method="taylor")
    first = str(e.value).split("\n")[0]
    assert first.startswith("dw of ") and "Taylor test: order 1.0" in first and "0/0" not in first
