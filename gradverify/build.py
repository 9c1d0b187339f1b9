"""Config -> graph. The one place that knows the naming scheme.

Layers form, for layer i (1-based), exactly the notebook's names:

    x ─ w{i}_out = x·w{i} ─ l{i}_lin = w{i}_out + b{i} ─ l{i}_{activation}
    (a custom layer `op: file.py:affine` makes one node l{i}_affine instead of w{i}_out, l{i}_lin)

then the loss on the last layer's output (its logits):

    softmax_cross_entropy: exps, sexps, divexps, softmax, neg_log, loss_data
    cross_entropy:         neg_log, loss_data        (on probabilities)
    mse:                   residual, sq_err, loss_data
    hinge:                 margins, loss_data
    file.py:name:          loss_data

and always loss_reg = strength · Σ p² over the regularized parameters, loss = loss_data + loss_reg.
"""
from __future__ import annotations

import numpy as np

from . import custom
from .config import Config, is_custom
from .errors import UserCodeError, did_you_mean
from .graph import Graph, Node
from .ops import (OPS, Add, AddBias, BatchMean, Exp, HingeMargins, Identity, L2Penalty, LeakyReLU,
                  MatMul, Mean, Mul, NegLogPick, Op, Reciprocal, ReLU, RowSum, Sigmoid, Softmax,
                  Square, SubConst, Tanh)

_ACTIVATION_OPS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "identity": Identity,
                   "softmax": Softmax}


def build(config: Config) -> Graph:
    """The network's graph, leaves holding their values with the leading axis (1, *shape)."""
    graph = _build_graph(config) if config.is_graph else _build_layers(config)
    return _cast(config, graph)


def _user(key: tuple, make):
    """A custom op from make(); a missing file or function is located at the config key."""
    try:
        return make()
    except UserCodeError as err:
        if err.key is None:
            err.key = key
        raise


def _cast(config: Config, graph: Graph) -> Graph:
    """A float32 network holds its leaves in float32 (every op then computes in float32)."""
    if config.dtype == "float32":
        for node in graph.nodes.values():
            if node.value is not None:
                node.value = node.value.astype(np.float32)
    return graph


def _leaf(graph: Graph, name: str, value: np.ndarray, kind: str, key: tuple) -> None:
    graph.add(Node(name, kind, value=np.asarray(value, dtype=np.float64)[None], key=key))


def _build_layers(c: Config) -> Graph:
    g = Graph()
    base, seed = c.source.base_dir, c.seed

    def op(name, op_, inputs, key, source=None, kind="intermediate"):
        g.add(Node(name, kind, op=op_, inputs=tuple(inputs), key=key, source=source))
        return name

    _leaf(g, "x", c.inputs, "input", ("inputs",))
    prev, params = "x", []
    for layer in c.layers:
        i, key = layer.index, ("layers", layer.index - 1)
        _leaf(g, f"w{i}", layer.weights, "parameter", key + ("weights",))
        _leaf(g, f"b{i}", layer.bias, "parameter", key + ("bias",))
        params += [f"w{i}", f"b{i}"]
        if layer.op:
            extra = []
            for pname, value in layer.params:
                _leaf(g, f"{pname}{i}", value, "parameter", key + ("params", pname))
                extra.append(f"{pname}{i}")
            params += extra
            _, fname = custom.split_ref(layer.op)
            node = f"l{i}_{fname}"
            user = _user(key + ("op",), lambda: custom.layer(
                layer.op, base, seed, node, ("x", "w", "b") + tuple(p for p, _ in layer.params), layer.attrs))
            prev = op(node, user, [prev, f"w{i}", f"b{i}"] + extra, key + ("op",), layer.op)
        else:
            op(f"w{i}_out", MatMul(), [prev, f"w{i}"], key + ("weights",))
            prev = op(f"l{i}_lin", AddBias(), [f"w{i}_out", f"b{i}"], key + ("bias",))
        act = layer.activation
        if act is None:
            continue
        if is_custom(act):
            _, fname = custom.split_ref(act)
            node = f"l{i}_{fname}"
            user = _user(key + ("activation",), lambda: custom.activation(act, base, seed, node))
            prev = op(node, user, [prev], key + ("activation",), act)
        else:
            act_op = LeakyReLU(layer.alpha) if act == "leaky_relu" else _ACTIVATION_OPS[act]()
            prev = op(f"l{i}_{act}", act_op, [prev], key + ("activation",))

    loss = c.loss
    if loss == "softmax_cross_entropy":
        op("exps", Exp(stable=c.stable), [prev], ("loss",))
        op("sexps", RowSum(), ["exps"], ("loss",))
        op("divexps", Reciprocal(), ["sexps"], ("loss",))
        op("softmax", Mul(), ["exps", "divexps"], ("loss",))
        op("neg_log", NegLogPick(c.labels), ["softmax"], ("loss",))
        op("loss_data", BatchMean(), ["neg_log"], ("loss",))
    elif loss == "cross_entropy":
        op("neg_log", NegLogPick(c.labels), [prev], ("loss",))
        op("loss_data", BatchMean(), ["neg_log"], ("loss",))
    elif loss == "mse":
        op("residual", SubConst(c.targets), [prev], ("loss",))
        op("sq_err", Square(), ["residual"], ("loss",))
        op("loss_data", Mean(), ["sq_err"], ("loss",))
    elif loss == "hinge":
        op("margins", HingeMargins(c.labels), [prev], ("loss",))
        op("loss_data", BatchMean(), ["margins"], ("loss",))
    else:  # file.py:name, cs231n's (loss, dx) = name(x, y)
        user = _user(("loss",), lambda: custom.loss(loss, base, seed, c.labels))
        op("loss_data", user, [prev], ("loss",), loss)

    include = params
    if c.reg_include is not None:
        for k, name in enumerate(c.reg_include):
            if name not in params:
                raise c.error(f"{name!r} is not a parameter{did_you_mean(name, params)}; the "
                              f"parameters are {', '.join(params)}", "regularization", "include", k)
        include = list(c.reg_include)
    op("loss_reg", L2Penalty(c.reg_strength), include, ("regularization",))
    op("loss", Add(), ["loss_data", "loss_reg"], ("loss",), kind="loss")
    g.parts = ("loss_data", "loss_reg")
    if loss == "softmax_cross_entropy" and not c.stable:
        g.hints["exps"] = ("the logits are too large for e^x: use "
                           "`loss: {type: softmax_cross_entropy, stable: true}`")
    return g


# ---------------------------------------------------------------------------------------------
# The graph form


def _builtin(c: Config, spec) -> Op:
    """A built-in op from a graph node's `op:` and `attrs:`; labels and targets default to the
    config's top-level ones."""
    cls = OPS[spec.op]
    attrs = dict(spec.attrs)
    if cls in (NegLogPick, HingeMargins) and "labels" not in attrs:
        if c.labels is None:
            raise c.error(f"op {spec.op} needs labels: give `labels:` at the top or in attrs", *spec.path)
        attrs["labels"] = c.labels
    if cls is SubConst and "targets" not in attrs:
        if c.targets is None:
            raise c.error("op sub_const needs `targets:` at the top or in attrs", *spec.path)
        attrs["targets"] = c.targets
    try:
        return cls(**attrs)
    except (TypeError, ValueError) as e:
        raise c.error(f"bad attrs for op {spec.op}: {e}", *spec.path, "attrs") from None


def _build_graph(c: Config) -> Graph:
    g = Graph(loss=c.loss)
    names = set(c.values)
    for name, value in c.values.items():
        _leaf(g, name, value, "input" if name in c.input_names else "parameter", ("values", name))
    defined = names | {n.name for n in c.graph}
    for spec in c.graph:
        if spec.name in names:
            raise c.error(f"node name {spec.name!r} is used twice", *spec.path, "name")
        names.add(spec.name)
        for k, inp in enumerate(spec.inputs):
            if inp not in defined:
                raise c.error(f"unknown input {inp!r}{did_you_mean(inp, defined)}", *spec.path, "inputs", k)
        if is_custom(spec.op):
            op_ = _user(tuple(spec.path) + ("op",), lambda: custom.layer(
                spec.op, c.source.base_dir, c.seed, spec.name, None, dict(spec.attrs),
                n_inputs=len(spec.inputs)))
        else:
            op_ = _builtin(c, spec)
            if op_.arity is not None and len(spec.inputs) != op_.arity:
                raise c.error(f"op {spec.op} takes {op_.arity} input(s), got {len(spec.inputs)}",
                              *spec.path, "inputs")
        kind = "loss" if spec.name == c.loss else "intermediate"
        g.add(Node(spec.name, kind, op=op_, inputs=spec.inputs, key=tuple(spec.path),
                   source=spec.op if is_custom(spec.op) else None))
    if c.loss not in g.nodes or g.nodes[c.loss].op is None:
        raise c.error(f"the loss {c.loss!r} is not a node of the graph{did_you_mean(c.loss, g.nodes)}", "loss")
    g.parts = tuple(n for n in ("loss_data", "loss_reg") if n in g.nodes)
    g.finish()
    return g


def unused_nodes(graph: Graph) -> list[str]:
    """Nodes whose value never reaches the loss (worth a warning: their gradient is zero)."""
    return [n for n in graph.nodes if not graph.reaches_loss(n)]

