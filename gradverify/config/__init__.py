"""YAML -> validated plain data: the Config that build turns into a graph.

    yaml_reader  safe YAML with the line and column of every value (the only yaml importer)
    arrays       arrays inline, generated from the seed, or from .npy files, under a budget
    toplevel     load / parse / validate: the top-level keys, then one of the two forms
    layers       the layers form, one reader per layer `type:` (LAYER_TYPES)
    graph_form   the graph form: values and nodes
    labels       labels and targets
    model        Config, Layer, GraphNode, Source
    checks       the small checks they share

Names (of activations, losses, ops, layer types' builders) are checked by build, which owns them.
"""
from .arrays import DEFAULT_MAX_ELEMENTS, INITS, ArrayReader
from .checks import is_custom, kind, number
from .graph_form import GRAPH_NODE_KEYS
from .labels import read_labels
from .layers import AFFINE_KEYS, COMMON_KEYS, LAYER_TYPES, LayersReader, LayerType, read_affine
from .model import Config, GraphNode, Layer, Source
from .toplevel import DTYPES, LOSS_KEYS, MAX_FILE_BYTES, TOP_KEYS, load, parse, parse_bytes, validate
from .yaml_reader import MAX_DEPTH, read_yaml

__all__ = [
    "AFFINE_KEYS", "COMMON_KEYS", "DEFAULT_MAX_ELEMENTS", "DTYPES", "GRAPH_NODE_KEYS", "INITS", "LAYER_TYPES",
    "LOSS_KEYS", "MAX_DEPTH", "MAX_FILE_BYTES", "TOP_KEYS", "ArrayReader", "Config", "GraphNode", "Layer",
    "LayerType", "LayersReader", "Source", "is_custom", "kind", "load", "number", "parse", "parse_bytes",
    "read_affine", "read_labels", "read_yaml", "validate",
]
