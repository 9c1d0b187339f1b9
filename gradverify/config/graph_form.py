"""The graph form: named `values:` (inputs and parameters) and a list of `graph:` nodes
{name, op, inputs, attrs}. Which ops exist is build's business (build checks each `op:`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import did_you_mean
from .arrays import ArrayReader
from .checks import check_keys, is_custom, kind, mapping
from .data import read_data
from .labels import read_labels
from .model import GraphNode, Source
from .model_form import read_model

GRAPH_NODE_KEYS = ("name", "op", "inputs", "attrs", "reference")
#: `op:` as a mapping: a forward/backward pair named separately, or a general loss
OP_KEYS = ("forward", "backward", "loss")


def read_graph_form(data: dict[str, Any], src: Source, arrays: ArrayReader) -> dict[str, Any]:
    """The graph form's fields of the Config: values, input_names, graph, labels, targets, data,
    loss_nodes (and, for `model:`, the model form's)."""
    for other in ("layers", "graph"):
        if other in data and ("model" in data or other == "layers"):
            both = "`model:` or `graph:`" if "model" in data else "`layers:` or `graph:`"
            raise src.error(f"use either {both}, not both", (other,))
    consts = read_data(data["data"], arrays) if "data" in data else {}
    loss = _loss_nodes(data, src)
    if "model" in data:
        if "loss" in data or "values" in data:
            key = "loss" if "loss" in data else "values"
            raise src.error(f"`{key}:` does not go with `model:` (the model's loss is checked, over "
                            "model.params)", (key,))
        return dict(model=read_model(data["model"], src, consts), data=consts, **loss)
    raw_values = mapping(data.get("values"), src, ("values",), "name: array for every input and parameter")
    values = {name: arrays.read(v, ("values", name), what=f"the value {name}") for name, v in raw_values.items()}
    for name in consts:
        if name in values:
            raise src.error(f"{name!r} is both a value and data: give it once", ("data", name))
    input_names = _input_names(data, src, values)
    nodes = _nodes(data["graph"], src)
    labels = None
    if "labels" in data:
        labels = read_labels(data["labels"], src, ("labels",), arrays.rng,
                             _label_rows(data["labels"], values, input_names), None)
    targets = None
    if "targets" in data:
        targets = arrays.read(data["targets"], ("targets",), what="the targets")
    return dict(values=values, input_names=input_names, graph=nodes, labels=labels, targets=targets,
                data=consts, **loss)


def _loss_nodes(data: dict[str, Any], src: Source) -> dict[str, Any]:
    """`loss:` as a list of node names: {loss: None, loss_nodes: the names}; else nothing."""
    value = data.get("loss")
    if not isinstance(value, list):
        return {}
    if not value or not all(isinstance(n, str) and n for n in value):
        raise src.error(f"expected a node name or a list of node names, got {kind(value)}", ("loss",))
    return dict(loss=None, loss_nodes=tuple(value))


def _input_names(data: dict[str, Any], src: Source, values: dict[str, np.ndarray]) -> tuple[str, ...]:
    if "inputs" not in data:
        return ()
    inp = data["inputs"]
    if not isinstance(inp, list) or not all(isinstance(n, str) for n in inp):
        raise src.error("in the graph form, `inputs:` lists which values are inputs (the rest "
                        f"are parameters), got {kind(inp)}", ("inputs",))
    for i, n in enumerate(inp):
        if n not in values:
            raise src.error(f"{n!r} is not one of the values{did_you_mean(n, values)}", ("inputs", i))
    return tuple(inp)


def _nodes(nodes_raw: Any, src: Source) -> tuple[GraphNode, ...]:
    if not isinstance(nodes_raw, list) or not nodes_raw:
        raise src.error(f"expected a list of nodes {{name, op, inputs}}, got {kind(nodes_raw)}", ("graph",))
    nodes = []
    for i, spec in enumerate(nodes_raw):
        path = ("graph", i)
        spec = mapping(spec, src, path, "a node {name, op, inputs, attrs}")
        check_keys(spec, GRAPH_NODE_KEYS, src, path, "a graph node")
        for required in ("name", "op"):
            if required not in spec:
                raise src.error(f"missing `{required}:`", path)
        outputs = _names(spec["name"], src, path + ("name",))
        op = _op(spec["op"], src, path + ("op",), len(outputs))
        inputs = spec.get("inputs", [])
        if not isinstance(inputs, list) or not all(isinstance(n, str) for n in inputs):
            raise src.error(f"expected a list of node or value names, got {kind(inputs)}", path + ("inputs",))
        attrs = mapping(spec.get("attrs", {}), src, path + ("attrs",), "the op's attributes")
        nodes.append(GraphNode(outputs[0], op, tuple(inputs), attrs, path,
                               outputs if isinstance(spec["name"], list) else (), _reference(spec, src, path)))
    return tuple(nodes)


def _reference(spec: dict[str, Any], src: Source, path: tuple) -> str | None:
    """`reference: conv2d`: a built-in op's name, for a node with your own op (build checks the
    name; checker/reference.py compares the two forwards)."""
    if "reference" not in spec:
        return None
    ref = spec["reference"]
    if not isinstance(ref, str) or not ref:
        raise src.error(f"expected a built-in op's name (e.g. conv2d), got {kind(ref)}", path + ("reference",))
    if isinstance(spec["name"], list) or not (is_custom(spec.get("op")) or isinstance(spec.get("op"), dict)):
        raise src.error("`reference:` compares your own op's forward (op: file.py:name) with a built-in's",
                        path + ("reference",))
    return ref


def _names(name: Any, src: Source, path: tuple) -> tuple[str, ...]:
    """`name:` a node name, or a list of names, one per output of a user op."""
    names = name if isinstance(name, list) else [name]
    if not names or not all(isinstance(n, str) and n for n in names):
        raise src.error(f"expected a node name or a list of names (one per output), got {kind(name)}", path)
    if len(set(names)) != len(names):
        raise src.error("an output name is given twice", path)
    return tuple(names)


def _op(op: Any, src: Source, path: tuple, outputs: int) -> Any:
    """`op:` as given; a mapping is {forward: file.py:f, backward: file.py:g} (backward optional:
    f with forward replaced by backward) or {loss: file.py:name}."""
    if isinstance(op, dict):
        check_keys(op, OP_KEYS, src, path, "op")
        if "loss" in op and len(op) > 1:
            raise src.error("`loss:` names a whole loss function: give it alone", path)
        if "loss" not in op and "forward" not in op:
            raise src.error("missing `forward:` (file.py:name_forward)", path)
        for key, ref in op.items():
            if not (is_custom(ref) or callable(ref)):
                raise src.error(f"expected file.py:function, got {kind(ref)}", path + (key,))
        if "loss" in op and outputs > 1:
            raise src.error("a loss has one output", path[:-1] + ("name",))
    elif outputs > 1 and not is_custom(op):
        raise src.error("several outputs need your own op (file.py:name_forward)", path)
    return op


def _label_rows(labels: Any, values: dict[str, np.ndarray], input_names: tuple[str, ...]) -> int:
    """How many labels the graph form expects: one per row of the first input; without inputs,
    as many as are listed, or (for generated labels) the rows of the first value."""
    if input_names:
        return values[input_names[0]].shape[0]
    if isinstance(labels, list):
        return len(labels)
    return next(iter(values.values())).shape[0] if values else 0
