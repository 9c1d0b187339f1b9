"""The graph: topological order, downstream sets, forward/backward, recomputing downstream."""
import numpy as np
import pytest

from gradverify import config, ops
from gradverify.build import build
from gradverify.delta import elements
from gradverify.errors import ConfigError
from gradverify.graph import Graph, Node, topological_order

from conftest import CONFIGS


def test_topological_order_is_stable_and_complete():
    deps = {"c": ("a", "b"), "a": (), "b": ("a",), "d": ("c",)}
    order = topological_order(deps)
    assert order == ["a", "b", "c", "d"]


def test_cycle_named():
    with pytest.raises(ConfigError, match="cycle: a -> b -> a|cycle: b -> a -> b"):
        topological_order({"a": ("b",), "b": ("a",)})


def _seed_graph():
    return build(config.load(CONFIGS / "seed.yaml"))


def test_downstream_and_consumers():
    g = _seed_graph()
    assert g.downstream("l2_lin") == ["exps", "sexps", "divexps", "softmax", "neg_log", "loss_data", "loss"]
    assert g.consumers("w1") == ["w1_out", "loss_reg"]
    assert all(g.reaches_loss(n) for n in g.nodes)


def test_forward_values_match_the_notebook():
    g = _seed_graph()
    v = g.forward()
    np.testing.assert_allclose(v["l2_lin"][0], [[3.83, 2.89], [1.95, 0.95]], atol=1e-12)
    np.testing.assert_allclose(v["softmax"][0], [[0.71909966, 0.28090034], [0.73105858, 0.26894142]], atol=1e-8)
    assert v["loss"][0] == pytest.approx(1.6433835063990552, abs=1e-15)


def test_propagate_equals_a_full_forward_pass():
    """The loss change from recomputing downstream of one node (sparse or dense copies) equals
    the change from running everything again with that node replaced."""
    g = _seed_graph()
    v = g.forward()
    rng = np.random.default_rng(0)
    for name in ("w1", "l1_relu", "l2_lin", "b2", "x"):
        base = v[name]
        for idx in range(base[0].size):
            step = rng.normal() * 1e-3
            copies = base.copy().reshape(1, -1)
            copies[0, idx] += step
            copies = copies.reshape(base.shape)
            full = dict(v)
            for n, node in g.nodes.items():  # the whole forward pass again, by hand
                if n == name:
                    full[n] = copies
                elif node.op is not None and n in g.downstream(name):
                    full[n] = node.op.forward(*(full[i] for i in node.inputs))
            want = full["loss"][0] - v["loss"][0]
            sparse = g.propagate(v, {name: elements(np.array([idx]), np.array([step]), base.shape[1:])})
            dense = g.propagate(v, {name: copies})
            assert sparse[0] == pytest.approx(want, rel=1e-9, abs=1e-15)
            assert dense[0] == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_backward_is_zero_off_the_loss_path():
    g = Graph(loss="s")
    g.add(Node("x", "input", value=np.array([[1.0, 2.0]])))
    g.add(Node("s", "loss", op=ops.Sum(), inputs=("x",)))
    g.add(Node("dead", "intermediate", op=ops.Square(), inputs=("x",)))
    grads = g.backward(g.forward())
    assert grads["x"].tolist() == [[1.0, 1.0]] and grads["dead"].tolist() == [[0.0, 0.0]]


def test_malformed_backward_becomes_nan_and_a_problem():
    class Bad(ops.Square):
        def backward(self, g, out, x):
            return (g[:, :1],)  # the wrong shape

    g = Graph(loss="s")
    g.add(Node("x", "input", value=np.array([[1.0, 2.0]])))
    g.add(Node("q", "intermediate", op=Bad(), inputs=("x",)))
    g.add(Node("s", "loss", op=ops.Sum(), inputs=("q",)))
    problems = {}
    grads = g.backward(g.forward(), problems)
    assert np.isnan(grads["x"]).all()
    assert problems == {"q": "the backward of q (square) is malformed: it returned a gradient of "
                             "shape [1] for x of shape [2]"}


def test_node_names_unique():
    g = Graph()
    g.add(Node("x", "input", value=np.zeros((1, 1))))
    with pytest.raises(ConfigError, match="used twice"):
        g.add(Node("x", "input", value=np.zeros((1, 1))))
