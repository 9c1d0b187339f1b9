"""The project's own cs231n-style code (examples/cs231n), checked without gradverify: every backward of
the correct package agrees with independent central differences, and every backward of the buggy one
(examples/cs231n/buggy) disagrees exactly where buggy/bugs.json says, with its forward unchanged.

Both packages are namespace packages named `cs231n` with relative imports; each is imported with its
parent directory put on sys.path for the moment, then dropped from sys.modules, so they never meet.
"""
import ast
import functools
import importlib
import inspect
import json
import sys

import numpy as np
import pytest

from conftest import ROOT, vjp_central

EXAMPLES = ROOT / "examples" / "cs231n"
BUGGY = EXAMPLES / "buggy"
MODULES = ["layers", "rnn_layers", "layer_utils", "classifiers.fc_net", "classifiers.linear_svm", "classifiers.softmax"]
SEEDS = [0, 1, 2]
AGREE = 1e-6     # a right gradient: central differences (step 1e-6, float64) agree with it to ~1e-9
DISAGREE = 1e-3  # a wrong one: every bug here is off by 0.2 or more


def _forget_cs231n():
    for name in [name for name in sys.modules if name == "cs231n" or name.startswith("cs231n.")]:
        del sys.modules[name]


def _load_cs231n(root, modules):
    """Import the `cs231n` package under `root`; returns {last part of a module's name: module}. sys.path and
    sys.modules are left as they were found."""
    saved = {name: module for name, module in sys.modules.items() if name == "cs231n" or name.startswith("cs231n.")}
    _forget_cs231n()
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        return {name.split(".")[-1]: importlib.import_module(f"cs231n.{name}") for name in modules}
    finally:
        sys.path.remove(str(root))
        _forget_cs231n()
        sys.modules.update(saved)


@functools.cache
def correct():
    return _load_cs231n(EXAMPLES, MODULES)


@functools.cache
def buggy():
    return _load_cs231n(BUGGY, [*MODULES, "_bugfree"])


BUGS = {bug["function"]: bug for bug in json.loads((BUGGY / "bugs.json").read_text())}


def rel_error(analytic, numeric):
    """The largest disagreement relative to the gradient's largest entry, taken as at least 1e-2 so that a
    gradient that is exactly zero (a bias followed by batchnorm: the differences are ~1e-10 of rounding)
    is judged by its absolute error."""
    assert np.shape(analytic) == np.shape(numeric)
    scale = max(np.abs(analytic).max(), np.abs(numeric).max(), 1e-2)
    return float(np.abs(analytic - numeric).max() / scale)


def check_pair(forward, backward, inputs, names, rng):
    """forward(*inputs) -> (*outs, cache); backward(*douts, cache) -> the gradients of `names`, in order,
    for random douts. Each gradient is compared with the central differences of Σ outs·douts in its
    input. Returns (outs, {gradient name: relative error})."""
    *outs, cache = forward(*inputs)
    douts = [rng.normal(size=out.shape) for out in outs]
    grads = backward(*douts, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)

    def projected(k, value):
        outs_at = forward(*inputs[:k], value, *inputs[k + 1:])[:-1]
        return sum(np.sum(out * dout) for out, dout in zip(outs_at, douts, strict=True))

    errors = {}
    for k, (name, grad) in enumerate(zip(names, grads, strict=True)):
        numeric = vjp_central(functools.partial(projected, k), inputs[k], 1.0)
        errors[name] = rel_error(grad, numeric)
    return outs, errors


def check_loss(loss_fn, x, name):
    """loss_fn(x) -> (loss, gradient): the gradient against central differences of the loss."""
    loss, grad = loss_fn(x)
    numeric = vjp_central(lambda value: loss_fn(value)[0], x, 1.0)
    return [loss], {name: rel_error(grad, numeric)}


# One case per function with a gradient, keyed like bugs.json: case(modules, rng) -> (forward outputs, errors).
CASES = {}


def case(name):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


@case("affine_backward")
def _affine(m, rng):
    L = m["layers"]
    x, w, b = rng.normal(size=(3, 2, 3)), rng.normal(size=(6, 4)), rng.normal(size=4)  # x: (N, d1, d2)
    return check_pair(L.affine_forward, L.affine_backward, [x, w, b], ["dx", "dw", "db"], rng)


@case("relu_backward")
def _relu(m, rng):
    L = m["layers"]
    return check_pair(L.relu_forward, L.relu_backward, [rng.normal(size=(4, 5))], ["dx"], rng)


def _batchnorm(m, rng, backward_name):
    L = m["layers"]
    x, gamma, beta = rng.normal(2.0, 3.0, size=(5, 4)), rng.normal(size=4), rng.normal(size=4)
    bn_param = {"mode": "train"}

    def forward(x, gamma, beta):
        return L.batchnorm_forward(x, gamma, beta, bn_param)
    return check_pair(forward, getattr(L, backward_name), [x, gamma, beta], ["dx", "dgamma", "dbeta"], rng)


case("batchnorm_backward")(functools.partial(_batchnorm, backward_name="batchnorm_backward"))
case("batchnorm_backward_alt")(functools.partial(_batchnorm, backward_name="batchnorm_backward_alt"))


@case("layernorm_backward")
def _layernorm(m, rng):
    L = m["layers"]
    x, gamma, beta = rng.normal(2.0, 3.0, size=(4, 5)), rng.normal(size=5), rng.normal(size=5)

    def forward(x, gamma, beta):
        return L.layernorm_forward(x, gamma, beta, {"eps": 1e-5})
    return check_pair(forward, L.layernorm_backward, [x, gamma, beta], ["dx", "dgamma", "dbeta"], rng)


@case("dropout_backward")
def _dropout(m, rng):
    L = m["layers"]
    dropout_param = {"mode": "train", "p": 0.6, "seed": 7}  # the seed: the same mask on every call

    def forward(x):
        return L.dropout_forward(x, dropout_param)
    return check_pair(forward, L.dropout_backward, [rng.normal(size=(4, 6))], ["dx"], rng)


@case("conv_backward_naive")
def _conv(m, rng):
    L = m["layers"]
    x, w, b = rng.normal(size=(2, 3, 5, 5)), rng.normal(size=(2, 3, 3, 3)), rng.normal(size=2)
    conv_param = {"stride": 2, "pad": 1}

    def forward(x, w, b):
        return L.conv_forward_naive(x, w, b, conv_param)
    return check_pair(forward, L.conv_backward_naive, [x, w, b], ["dx", "dw", "db"], rng)


@case("max_pool_backward_naive")
def _max_pool(m, rng):
    L = m["layers"]
    pool_param = {"pool_height": 2, "pool_width": 3, "stride": 1}  # windows overlap; no ties in random data

    def forward(x):
        return L.max_pool_forward_naive(x, pool_param)
    return check_pair(forward, L.max_pool_backward_naive, [rng.normal(size=(2, 2, 4, 5))], ["dx"], rng)


@case("spatial_batchnorm_backward")
def _spatial_batchnorm(m, rng):
    L = m["layers"]
    x, gamma, beta = rng.normal(1.0, 2.0, size=(2, 3, 3, 4)), rng.normal(size=3), rng.normal(size=3)

    def forward(x, gamma, beta):
        return L.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    return check_pair(forward, L.spatial_batchnorm_backward, [x, gamma, beta], ["dx", "dgamma", "dbeta"], rng)


@case("spatial_groupnorm_backward")
def _spatial_groupnorm(m, rng):
    L = m["layers"]
    x = rng.normal(1.0, 2.0, size=(2, 4, 3, 3))
    gamma, beta = rng.normal(size=(1, 4, 1, 1)), rng.normal(size=(1, 4, 1, 1))

    def forward(x, gamma, beta):
        return L.spatial_groupnorm_forward(x, gamma, beta, 2, {"eps": 1e-5})
    return check_pair(forward, L.spatial_groupnorm_backward, [x, gamma, beta], ["dx", "dgamma", "dbeta"], rng)


@case("svm_loss")
def _svm_loss(m, rng):
    y = rng.integers(5, size=6)
    return check_loss(lambda x: m["layers"].svm_loss(x, y), rng.normal(size=(6, 5)), "dx")


@case("softmax_loss")
def _softmax_loss(m, rng):
    y = rng.integers(5, size=6)
    return check_loss(lambda x: m["layers"].softmax_loss(x, y), rng.normal(size=(6, 5)), "dx")


@case("rnn_step_backward")
def _rnn_step(m, rng):
    R = m["rnn_layers"]
    N, D, H = 3, 4, 5
    inputs = [rng.normal(size=(N, D)), rng.normal(size=(N, H)), rng.normal(size=(D, H)),
              rng.normal(size=(H, H)) * 0.5, rng.normal(size=H)]
    return check_pair(R.rnn_step_forward, R.rnn_step_backward, inputs, ["dx", "dprev_h", "dWx", "dWh", "db"], rng)


@case("rnn_backward")
def _rnn(m, rng):
    R = m["rnn_layers"]
    N, T, D, H = 2, 3, 4, 3
    inputs = [rng.normal(size=(N, T, D)), rng.normal(size=(N, H)), rng.normal(size=(D, H)) * 0.5,
              rng.normal(size=(H, H)) * 0.5, rng.normal(size=H)]
    return check_pair(R.rnn_forward, R.rnn_backward, inputs, ["dx", "dh0", "dWx", "dWh", "db"], rng)


@case("word_embedding_backward")
def _word_embedding(m, rng):
    R = m["rnn_layers"]
    words = rng.integers(5, size=(2, 4))  # 8 words out of 5: some occur more than once
    return check_pair(lambda W: R.word_embedding_forward(words, W), R.word_embedding_backward,
                      [rng.normal(size=(5, 3))], ["dW"], rng)


@case("lstm_step_backward")
def _lstm_step(m, rng):
    R = m["rnn_layers"]
    N, D, H = 3, 4, 3
    inputs = [rng.normal(size=(N, D)), rng.normal(size=(N, H)), rng.normal(size=(N, H)),
              rng.normal(size=(D, 4 * H)), rng.normal(size=(H, 4 * H)), rng.normal(size=4 * H)]
    names = ["dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"]
    return check_pair(R.lstm_step_forward, R.lstm_step_backward, inputs, names, rng)  # two outputs, two douts


@case("lstm_backward")
def _lstm(m, rng):
    R = m["rnn_layers"]
    N, T, D, H = 2, 3, 3, 2
    inputs = [rng.normal(size=(N, T, D)), rng.normal(size=(N, H)), rng.normal(size=(D, 4 * H)),
              rng.normal(size=(H, 4 * H)), rng.normal(size=4 * H)]
    return check_pair(R.lstm_forward, R.lstm_backward, inputs, ["dx", "dh0", "dWx", "dWh", "db"], rng)


@case("temporal_affine_backward")
def _temporal_affine(m, rng):
    R = m["rnn_layers"]
    inputs = [rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 5)), rng.normal(size=5)]
    return check_pair(R.temporal_affine_forward, R.temporal_affine_backward, inputs, ["dx", "dw", "db"], rng)


@case("temporal_softmax_loss")
def _temporal_softmax_loss(m, rng):
    N, T, V = 3, 4, 5
    y = rng.integers(V, size=(N, T))
    mask = rng.random((N, T)) < 0.7
    mask[0, -1] = False  # at least one timestep that does not count
    return check_loss(lambda x: m["rnn_layers"].temporal_softmax_loss(x, y, mask), rng.normal(size=(N, T, V)), "dx")


@case("affine_relu_backward")
def _affine_relu(m, rng):
    U = m["layer_utils"]
    x, w, b = rng.normal(size=(4, 2, 2)), rng.normal(size=(4, 3)), rng.normal(size=3)
    return check_pair(U.affine_relu_forward, U.affine_relu_backward, [x, w, b], ["dx", "dw", "db"], rng)


@case("conv_relu_backward")
def _conv_relu(m, rng):
    U = m["layer_utils"]
    x, w, b = rng.normal(size=(2, 2, 4, 4)), rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3)

    def forward(x, w, b):
        return U.conv_relu_forward(x, w, b, {"stride": 1, "pad": 1})
    return check_pair(forward, U.conv_relu_backward, [x, w, b], ["dx", "dw", "db"], rng)


@case("svm_loss_naive")
def _svm_loss_naive(m, rng):
    X, y = rng.normal(size=(6, 4)), rng.integers(3, size=6)
    return check_loss(lambda W: m["linear_svm"].svm_loss_naive(W, X, y, 0.1), rng.normal(size=(4, 3)), "dW")


@case("softmax_loss_naive")
def _softmax_loss_naive(m, rng):
    X, y = rng.normal(size=(6, 4)), rng.integers(3, size=6)
    return check_loss(lambda W: m["softmax"].softmax_loss_naive(W, X, y, 0.1), rng.normal(size=(4, 3)), "dW")


@case("FullyConnectedNet")
def _fc_net(m, rng, normalization="batchnorm", dropout_keep_ratio=0.75):
    """A 5-4-3-3 net in float64 with regularization, every parameter random (gamma too), its grads
    against central differences of its loss in that parameter."""
    net = m["fc_net"].FullyConnectedNet([4, 3], input_dim=5, num_classes=3, dropout_keep_ratio=dropout_keep_ratio,
                                        normalization=normalization, reg=0.3, dtype=np.float64, seed=11)
    net.params = {name: rng.normal(size=value.shape) for name, value in net.params.items()}
    X, y = rng.normal(size=(6, 5)), rng.integers(3, size=6)
    loss, grads = net.loss(X, y)

    def loss_at(name, value):
        saved, net.params[name] = net.params[name], value
        try:
            return net.loss(X, y)[0]
        finally:
            net.params[name] = saved
    errors = {name: rel_error(grads[name], vjp_central(functools.partial(loss_at, name), value, 1.0))
              for name, value in net.params.items()}
    return [loss, net.loss(X)], errors


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(CASES))
def test_correct_backward_agrees_with_central_differences(name, seed):
    _, errors = CASES[name](correct(), np.random.default_rng(seed))
    assert max(errors.values()) < AGREE, errors


@pytest.mark.parametrize(("normalization", "dropout_keep_ratio"),
                         [(None, 1), ("layernorm", 1), (None, 0.5), ("batchnorm", 1), ("layernorm", 0.75)])
def test_correct_fc_net_every_configuration(normalization, dropout_keep_ratio):
    _, errors = _fc_net(correct(), np.random.default_rng(5), normalization, dropout_keep_ratio)
    assert max(errors.values()) < AGREE, errors


@pytest.mark.parametrize("name", list(CASES))
def test_buggy_backward_is_wrong_exactly_where_bugs_json_says(name):
    """The gradients bugs.json lists disagree, the others agree, and the forward gives exactly what the
    correct one gives."""
    right_outs, _ = CASES[name](correct(), np.random.default_rng(0))
    outs, errors = CASES[name](buggy(), np.random.default_rng(0))
    wrong = BUGS[name]["wrong"]
    assert set(wrong) <= set(errors), f"bugs.json names gradients that {name} does not have: {wrong}"
    assert all(errors[grad] > DISAGREE for grad in wrong), errors
    assert all(error < AGREE for grad, error in errors.items() if grad not in wrong), errors
    for right_out, out in zip(right_outs, outs, strict=True):
        np.testing.assert_array_equal(out, right_out)


def test_bugs_json_covers_every_case_once():
    assert sorted(BUGS) == sorted(CASES)
    assert len(BUGS) == len(json.loads((BUGGY / "bugs.json").read_text()))  # no function twice


def _source_of(path, name):
    """The source of the top-level function or class `name` in the file at `path` (repository-relative)."""
    text = (ROOT / path).read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
            return "\n".join(text.splitlines()[node.lineno - 1:node.end_lineno])
    raise AssertionError(f"{name} is not defined in {path}")


@pytest.mark.parametrize("name", list(BUGS))
def test_each_buggy_function_has_one_marked_bug_in_its_file(name):
    assert _source_of(BUGS[name]["file"], name).count("# BUG:") == 1


def test_every_marked_bug_is_in_bugs_json():
    marks = sum(path.read_text().count("# BUG:") for path in (BUGGY / "cs231n").rglob("*.py"))
    docstring_mentions = sum(path.read_text().count("`# BUG:`") for path in (BUGGY / "cs231n").rglob("*.py"))
    assert marks - docstring_mentions == len(BUGS)


def test_bugfree_copies_are_the_correct_functions_verbatim():
    copies = buggy()["_bugfree"]
    names = [name for name, value in vars(copies).items() if inspect.isfunction(value)]
    assert len(names) == 10
    for name in names:
        original = getattr(correct()["layers"], name, None) or getattr(correct()["rnn_layers"], name)
        assert inspect.getsource(getattr(copies, name)) == inspect.getsource(original), name


def test_packages_are_namespace_packages_and_leave_no_trace():
    assert not list(EXAMPLES.rglob("__init__.py"))
    assert correct()["layers"] is not buggy()["layers"]
    assert correct()["fc_net"].affine_forward is correct()["layers"].affine_forward  # relative imports resolved
    assert "cs231n" not in sys.modules and str(EXAMPLES) not in sys.path and str(BUGGY) not in sys.path
