"""The graph form: named `values:` (inputs and parameters) and a list of `graph:` nodes
{name, op, inputs, attrs}. Which ops exist is build's business (build checks each `op:`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import did_you_mean
from .arrays import ArrayReader
from .checks import check_keys, kind, mapping
from .labels import read_labels
from .model import GraphNode, Source

GRAPH_NODE_KEYS = ("name", "op", "inputs", "attrs")


def read_graph_form(data: dict[str, Any], src: Source, arrays: ArrayReader) -> dict[str, Any]:
    """The graph form's fields of the Config: values, input_names, graph, labels, targets."""
    if "layers" in data:
        raise src.error("use either `layers:` or `graph:`, not both", ("layers",))
    raw_values = mapping(data.get("values"), src, ("values",), "name: array for every input and parameter")
    values = {name: arrays.read(v, ("values", name), what=f"the value {name}") for name, v in raw_values.items()}
    input_names = _input_names(data, src, values)
    nodes = _nodes(data["graph"], src)
    labels = None
    if "labels" in data:
        labels = read_labels(data["labels"], src, ("labels",), arrays.rng,
                             _label_rows(data["labels"], values, input_names), None)
    targets = None
    if "targets" in data:
        targets = arrays.read(data["targets"], ("targets",), what="the targets")
    return dict(values=values, input_names=input_names, graph=nodes, labels=labels, targets=targets)


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
        name = spec["name"]
        if not isinstance(name, str) or not name:
            raise src.error(f"expected a node name, got {kind(name)}", path + ("name",))
        inputs = spec.get("inputs", [])
        if not isinstance(inputs, list) or not all(isinstance(n, str) for n in inputs):
            raise src.error(f"expected a list of node or value names, got {kind(inputs)}", path + ("inputs",))
        attrs = mapping(spec.get("attrs", {}), src, path + ("attrs",), "the op's attributes")
        nodes.append(GraphNode(name, spec["op"], tuple(inputs), attrs, path))
    return tuple(nodes)


def _label_rows(labels: Any, values: dict[str, np.ndarray], input_names: tuple[str, ...]) -> int:
    """How many labels the graph form expects: one per row of the first input; without inputs,
    as many as are listed, or (for generated labels) the rows of the first value."""
    if input_names:
        return values[input_names[0]].shape[0]
    if isinstance(labels, list):
        return len(labels)
    return next(iter(values.values())).shape[0] if values else 0
