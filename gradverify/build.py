"""Config -> graph. The one place that knows the naming scheme, and the names a config may use:
LAYERS (a builder per layer type), ACTIVATIONS, LOSSES (a builder per loss); graph-form ops are
ops.OPS. Every unknown name is reported here, at its key in the config.

Layers form, for layer i (1-based), exactly the notebook's names:

    x ─ w{i}_out = x·w{i} ─ l{i}_lin = w{i}_out + b{i} ─ l{i}_{activation}
    (a custom layer `op: file.py:affine` makes one node l{i}_affine instead of w{i}_out, l{i}_lin;
    after images, l{i}_flat comes first; the CNN layer types' names are in build_cnn.py)

then the loss on the last layer's output (its logits):

    softmax_cross_entropy: exps, sexps, divexps, softmax, neg_log, loss_data
    cross_entropy:         neg_log, loss_data        (on probabilities)
    mse:                   residual, sq_err, loss_data
    hinge:                 margins, loss_data
    file.py:name:          loss_data

and always loss_reg = strength · Σ p² over the regularized parameters, loss = loss_data + loss_reg.

A new layer type is a builder in LAYERS, a reader in config.LAYER_TYPES (config/layers.py), its
op in ops.py and its entry in schema.py; a new loss is a builder in LOSSES.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import build_cnn, custom, usergraph
from .config import Config, GraphNode, Layer, is_custom
from .config.paths import code_folder
from .errors import KeyPath, UserCodeError, did_you_mean
from .graph import Graph, Node
from .ops import (
    OPS,
    Add,
    AddBias,
    BatchMean,
    Exp,
    Flatten,
    HingeMargins,
    Identity,
    L2Penalty,
    LeakyReLU,
    MatMul,
    Mean,
    Mul,
    NegLogPick,
    Op,
    Reciprocal,
    ReLU,
    RowSum,
    Sigmoid,
    Softmax,
    Square,
    SubConst,
    Tanh,
)


def build(config: Config) -> Graph:
    """The network's graph, leaves holding their values with the leading axis (1, *shape)."""
    check_names(config)
    graph = _build_graph(config) if config.is_graph else _build_layers(config)
    return _cast(config, graph)


def _cast(config: Config, graph: Graph) -> Graph:
    """A float32 network holds its leaves in float32 (every op then computes in float32)."""
    if config.dtype == "float32":
        for node in graph.nodes.values():
            if node.value is not None:
                node.value = node.value.astype(np.float32)
    return graph


def _add(graph: Graph, name: str, kind: str, key: KeyPath, **fields: Any) -> str:
    """Add a node defined at config key `key`, and return its name."""
    graph.add(Node(name, kind, key=key, **fields))
    return name


def _leaf(graph: Graph, name: str, value: np.ndarray, kind: str, key: KeyPath) -> None:
    _add(graph, name, kind, key, value=np.asarray(value, dtype=np.float64)[None])


def _user(key: KeyPath, make: Callable[[], Op]) -> Op:
    """A custom op from make(); a missing file or function is located at the config key."""
    try:
        return make()
    except UserCodeError as err:
        if err.key is None:
            err.key = key
        raise


@dataclass
class Net:
    """The layers form's graph while it is built, and the parameters added so far."""

    config: Config
    graph: Graph = field(default_factory=Graph)
    params: list[str] = field(default_factory=list)

    def param(self, name: str, value: np.ndarray, key: KeyPath) -> str:
        _leaf(self.graph, name, value, "parameter", key)
        self.params.append(name)
        return name

    def op(self, name: str, op: Op, inputs: list[str], key: KeyPath, source: str | None = None,
           kind: str = "intermediate") -> str:
        return _add(self.graph, name, kind, key, op=op, inputs=tuple(inputs), source=source)

    def user(self, key: KeyPath, make: Callable[[], Op]) -> Op:
        return _user(key, make)


# ---------------------------------------------------------------------------------------------
# The tables

#: a layer type's builder: (net, i, layer, the node feeding it) -> the layer's output node
LayerBuilder = Callable[[Net, int, Layer, str], str]
#: a loss's builder: (net, the logits' node) -> the data loss's node, named loss_data
LossBuilder = Callable[[Net, str], str]


def affine(net: Net, i: int, layer: Layer, prev: str) -> str:
    """w{i}_out = prev·w{i}, l{i}_lin = w{i}_out + b{i}; with `op: file.py:name`, the user's
    l{i}_name(prev, w{i}, b{i}, *params) instead."""
    key: KeyPath = ("layers", i - 1)
    assert layer.weights is not None and layer.bias is not None, "config validation requires both"
    if len(layer.in_shape) > 2:  # images: each one a row first
        prev = net.op(f"l{i}_flat", Flatten(), [prev], key)
    w = net.param(f"w{i}", layer.weights, key + ("weights",))
    b = net.param(f"b{i}", layer.bias, key + ("bias",))
    if layer.op:
        return _custom_affine(net, i, layer, [prev, w, b])
    net.op(f"w{i}_out", MatMul(), [prev, w], key + ("weights",))
    return net.op(f"l{i}_lin", AddBias(), [f"w{i}_out", b], key + ("bias",))


def _custom_affine(net: Net, i: int, layer: Layer, inputs: list[str]) -> str:
    key: KeyPath = ("layers", i - 1)
    ref, c = str(layer.op), net.config
    extra = [net.param(f"{pname}{i}", value, key + ("params", pname)) for pname, value in layer.params]
    node = f"l{i}_{custom.split_ref(ref)[1]}"
    names = ("x", "w", "b") + tuple(pname for pname, _ in layer.params)
    user = net.user(key + ("op",), lambda: custom.layer(ref, code_folder(c.source), c.seed, node, names, layer.attrs))
    return net.op(node, user, inputs + extra, key + ("op",), user.label)


LAYERS: dict[str, LayerBuilder] = {"affine": affine, **build_cnn.CNN_LAYERS}

#: activation name -> its op's factory, called with the layer's activation options that are
#: given (ACTIVATION_OPTIONS, by keyword): an option belongs to the activations whose factory
#: takes it (alpha: leaky_relu)
ACTIVATIONS: dict[str, Callable[..., Op]] = {
    "relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh, "identity": Identity,
    "softmax": Softmax,
}
ACTIVATION_OPTIONS = ("alpha",)
_ACTIVATION_OPS = ACTIVATIONS  # its former name


def _activation_options(layer: Layer) -> dict[str, Any]:
    return {name: getattr(layer, name) for name in ACTIVATION_OPTIONS if getattr(layer, name) is not None}


def _takes(factory: Callable[..., Op], option: str) -> bool:
    return option in inspect.signature(factory).parameters


def _activation(net: Net, layer: Layer, prev: str) -> str:
    """l{i}_{activation}(prev), or the user's l{i}_name(prev) for `activation: file.py:name`."""
    act, i, c = layer.activation, layer.index, net.config
    if act is None:
        return prev
    key: KeyPath = ("layers", i - 1, "activation")
    if not is_custom(act):
        return net.op(f"l{i}_{act}", ACTIVATIONS[act](**_activation_options(layer)), [prev], key)
    node = f"l{i}_{custom.split_ref(act)[1]}"
    user = net.user(key, lambda: custom.activation(act, code_folder(c.source), c.seed, node))
    return net.op(node, user, [prev], key, user.label)


LOSS_KEY: KeyPath = ("loss",)


def _given(array: np.ndarray | None) -> np.ndarray:
    """Labels or targets that config validation guarantees for this loss."""
    assert array is not None, "config validation lets no loss without its labels or targets through"
    return array


def softmax_cross_entropy(net: Net, logits: str) -> str:
    """softmax = exps / Σ exps row by row (exps = e^(logits - row max) when stable), then the mean
    over rows of -log softmax[label]."""
    net.op("exps", Exp(stable=net.config.stable), [logits], LOSS_KEY)
    if not net.config.stable:
        net.graph.hints["exps"] = ("the logits are too large for e^x: use "
                                   "`loss: {type: softmax_cross_entropy, stable: true}`")
    net.op("sexps", RowSum(), ["exps"], LOSS_KEY)
    net.op("divexps", Reciprocal(), ["sexps"], LOSS_KEY)
    net.op("softmax", Mul(), ["exps", "divexps"], LOSS_KEY)
    net.op("neg_log", NegLogPick(_given(net.config.labels)), ["softmax"], LOSS_KEY)
    return net.op("loss_data", BatchMean(), ["neg_log"], LOSS_KEY)


def cross_entropy(net: Net, probs: str) -> str:
    """The mean over rows of -log probs[label]."""
    net.op("neg_log", NegLogPick(_given(net.config.labels)), [probs], LOSS_KEY)
    return net.op("loss_data", BatchMean(), ["neg_log"], LOSS_KEY)


def mse(net: Net, out: str) -> str:
    """The mean of (out - targets)² over every element."""
    net.op("residual", SubConst(_given(net.config.targets)), [out], LOSS_KEY)
    net.op("sq_err", Square(), ["residual"], LOSS_KEY)
    return net.op("loss_data", Mean(), ["sq_err"], LOSS_KEY)


def hinge(net: Net, scores: str) -> str:
    """The mean over rows of Σ_j max(0, scores_j - scores_label + 1), j ≠ label."""
    net.op("margins", HingeMargins(_given(net.config.labels)), [scores], LOSS_KEY)
    return net.op("loss_data", BatchMean(), ["margins"], LOSS_KEY)


LOSSES: dict[str, LossBuilder] = {
    "softmax_cross_entropy": softmax_cross_entropy, "cross_entropy": cross_entropy, "mse": mse,
    "hinge": hinge,
}


def _custom_loss(net: Net, logits: str) -> str:
    """`loss: file.py:name`, cs231n's (loss, dx) = name(x, y)."""
    c, ref = net.config, str(net.config.loss)
    user = net.user(LOSS_KEY, lambda: custom.loss(ref, code_folder(c.source), c.seed, c.labels))
    return net.op("loss_data", user, [logits], LOSS_KEY, ref)


# ---------------------------------------------------------------------------------------------
# Names


def check_names(c: Config) -> None:
    """Every name the config uses that build owns (the loss, each layer's type and activation,
    each graph node's op): an unknown one is located at its key, with the valid ones listed."""
    if c.loss is None and not c.loss_nodes and c.model is None:
        raise c.error("missing `type:` (one of " + ", ".join(LOSSES) + ")", "loss")
    if "stable" in c.loss_spec and c.loss in LOSSES and c.loss != "softmax_cross_entropy":
        raise c.error("`stable:` applies only to softmax_cross_entropy", "loss", "stable")
    if not c.is_graph and c.loss not in LOSSES and not is_custom(c.loss):
        key = ("loss", "type") if "type" in c.loss_spec else ("loss",)
        raise c.error(f"unknown loss {c.loss!r}{did_you_mean(c.loss, LOSSES)}; valid: "
                      f"{', '.join(LOSSES)}, or file.py:function for your own", *key)
    for layer in c.layers:
        _check_layer(c, layer)
    for node in c.graph:
        if isinstance(node.op, dict):
            continue  # {forward:, backward:} or {loss:}, checked by validation
        if not isinstance(node.op, str) or (node.op not in OPS and not is_custom(node.op)):
            raise c.error(f"unknown op {node.op!r}{did_you_mean(node.op, OPS)}; valid: {', '.join(OPS)}, "
                          "or file.py:name for your own", *node.path, "op")


def _check_layer(c: Config, layer: Layer) -> None:
    key = ("layers", layer.index - 1)
    if layer.type not in LAYERS:
        raise c.error(f"unknown layer type {layer.type!r}{did_you_mean(layer.type, LAYERS)}; "
                      f"valid: {', '.join(LAYERS)}", *key, "type")
    act = layer.activation
    if act is not None and act not in ACTIVATIONS and not is_custom(act):
        raise c.error(f"unknown activation {act!r}{did_you_mean(act, ACTIVATIONS)}; valid: "
                      f"{', '.join(ACTIVATIONS)}, or file.py:function for your own", *key, "activation")
    for option in ACTIVATION_OPTIONS:
        if getattr(layer, option) is not None and not (act in ACTIVATIONS and _takes(ACTIVATIONS[act], option)):
            takers = [name for name, factory in ACTIVATIONS.items() if _takes(factory, option)]
            raise c.error(f"`{option}:` applies only to activation: {' or '.join(takers)}", *key, option)


# ---------------------------------------------------------------------------------------------
# The layers form


def _build_layers(c: Config) -> Graph:
    net = Net(c)
    assert c.inputs is not None
    _leaf(net.graph, "x", c.inputs, "input", ("inputs",))
    prev = "x"
    for layer in c.layers:
        prev = LAYERS[layer.type](net, layer.index, layer, prev)
        prev = _activation(net, layer, prev)
    builder = LOSSES.get(str(c.loss), _custom_loss)
    data = builder(net, prev)
    include = net.params
    if c.reg_include is not None:
        for k, name in enumerate(c.reg_include):
            if name not in net.params:
                raise c.error(f"{name!r} is not a parameter{did_you_mean(name, net.params)}; the "
                              f"parameters are {', '.join(net.params)}", "regularization", "include", k)
        include = list(c.reg_include)
    net.op("loss_reg", L2Penalty(c.reg_strength), include, ("regularization",))
    net.op("loss", Add(), [data, "loss_reg"], LOSS_KEY, kind="loss")
    net.graph.parts = (data, "loss_reg")
    return net.graph


# ---------------------------------------------------------------------------------------------
# The graph form


def _builtin(c: Config, spec: GraphNode) -> Op:
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


def _graph_op(c: Config, spec: GraphNode) -> Op:
    """A built-in node's op, with its arity checked (data goes only to the user's ops)."""
    for k, inp in enumerate(spec.inputs):
        if inp in c.data:
            raise c.error(f"{inp!r} is data: data goes to your own ops (file.py:name), not to "
                          f"op {spec.op}", *spec.path, "inputs", k)
    op = _builtin(c, spec)
    if op.arity is not None and len(spec.inputs) != op.arity:
        raise c.error(f"op {spec.op} takes {op.arity} input(s), got {len(spec.inputs)}", *spec.path, "inputs")
    if op.arity is None and not spec.inputs:  # l2_penalty, concat: any number, but not none
        raise c.error(f"op {spec.op} takes one input or more, got none", *spec.path, "inputs")
    return op


def _build_graph(c: Config) -> Graph:
    if c.model is not None:
        return usergraph.build_model(c)
    g = Graph(loss=str(c.loss))
    names = set(c.values) | set(c.data)
    for name, value in c.values.items():
        _leaf(g, name, value, "input" if name in c.input_names else "parameter", ("values", name))
    defined = names | {o for n in c.graph for o in (n.outputs or (n.name,))}
    for spec in c.graph:
        for j, out in enumerate(spec.outputs or (spec.name,)):
            if out in names:
                raise c.error(f"node name {out!r} is used twice", *spec.path, "name", *((j,) if spec.outputs else ()))
            names.add(out)
        for k, inp in enumerate(spec.inputs):
            if inp not in defined:
                raise c.error(f"unknown input {inp!r}{did_you_mean(inp, defined)}", *spec.path, "inputs", k)
        if usergraph.is_user(spec.op):
            usergraph.add_user_node(g, c, spec)
            if spec.reference is not None:
                g.nodes[spec.name].op.reference = _reference_op(c, spec)  # type: ignore[union-attr]
        else:
            _add(g, spec.name, "intermediate", spec.path, op=_graph_op(c, spec), inputs=spec.inputs)
    usergraph.set_loss(g, c)
    g.parts = tuple(n for n in ("loss_data", "loss_reg") if n in g.nodes)
    return g


def _reference_op(c: Config, spec: GraphNode) -> Op:
    """The built-in op named by `reference:`, made with the node's own attrs."""
    ref = str(spec.reference)
    if ref not in OPS:
        raise c.error(f"unknown op {ref!r}{did_you_mean(ref, OPS)}; valid: {', '.join(OPS)}", *spec.path, "reference")
    try:
        return OPS[ref](**spec.attrs)
    except (TypeError, ValueError) as e:
        raise c.error(f"the reference {ref} cannot take this node's attrs: {e}", *spec.path, "attrs") from None


def unused_nodes(graph: Graph) -> list[str]:
    """Nodes whose value never reaches the loss (worth a warning: their gradient is zero)."""
    return [n for n in graph.nodes if not graph.reaches_loss(n)]
