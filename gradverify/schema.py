"""The JSON Schema of the config format (`gradverify schema`), for editors' completion and
validation. The validator in gradverify/config/ and the names in build are the authority; this
mirrors them."""
from __future__ import annotations

from typing import Any

from .build import ACTIVATIONS, LAYERS, LOSSES
from .config import DTYPES, INITS
from .ops import OPS

CUSTOM = r"^.+\.py:[A-Za-z_][A-Za-z0-9_]*$"
CUSTOM_REF = {"type": "string", "pattern": CUSTOM}  # "file.py:name", the user's own code


def _array() -> dict[str, Any]:
    return {
        "description": "An inline nested list of numbers, a generated array, or a .npy file.",
        "oneOf": [
            {"$ref": "#/$defs/nested"},
            {"type": "object", "additionalProperties": False, "required": ["shape"],
             "properties": {"shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1},
                            "init": {"enum": list(INITS), "default": "normal"},
                            "std": {"type": "number", "minimum": 0, "default": 0.1}}},
            {"type": "object", "additionalProperties": False, "required": ["file"],
             "properties": {"file": {"type": "string", "description": "a .npy file, relative to the config"}}},
        ],
    }


def _layer() -> dict[str, Any]:
    """One item of `layers:`: one branch per type of build.LAYERS (affine when `type:` is left out)."""
    common = {"activation": {"anyOf": [{"enum": list(ACTIVATIONS)}, CUSTOM_REF]},
              "alpha": {"type": "number", "minimum": 0, "description": "leaky_relu's slope below 0"}}
    custom = {"op": {**CUSTOM_REF, "description": "your layer: name_forward(x, w, b, *params, **attrs)"},
              "params": {"type": "object", "additionalProperties": {"$ref": "#/$defs/array"}},
              "attrs": {"type": "object"}}
    branches = [_branch("affine", ["weights", "bias"], {
        "weights": {"$ref": "#/$defs/array", "description": "D×H (images are flattened first: D = C·H·W)"},
        "bias": {"$ref": "#/$defs/array", "description": "H"}, **custom}, common)]
    branches += [_branch(t, ["type"] + req, props, common) for t, req, props in _cnn_types(custom)]
    assert [b["properties"]["type"]["const"] for b in branches] == list(LAYERS), "a layer type without a schema"
    return {"description": "A layer: `type:` (default affine) and that type's keys.", "oneOf": branches}


def _branch(type_: str, required: list[str], props: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    kind = {"const": type_, "default": "affine"} if type_ == "affine" else {"const": type_}
    return {"type": "object", "additionalProperties": False, "required": required,
            "properties": {"type": kind, **props, **common}}


def _cnn_types(custom: dict[str, Any]) -> list[tuple[str, list[str], dict[str, Any]]]:
    """(type, required keys, properties) of the CNN layer types (config/cnn_layers.py)."""
    pos = {"type": "integer", "minimum": 1}
    norm = {"gamma": {"$ref": "#/$defs/implied", "description": "one per feature or channel (default ones)"},
            "beta": {"$ref": "#/$defs/implied", "description": "one per feature or channel (default zeros)"},
            "eps": {"type": "number", "exclusiveMinimum": 0, "default": 1e-5}}
    pool = {"size": {**pos, "default": 2}, "stride": {**pos, "description": "default: size"}}
    return [
        ("conv", ["weights"], {
            "weights": {"$ref": "#/$defs/implied", "description": "F×C×kh×kw (generated: shape from filters, kernel)"},
            "bias": {"$ref": "#/$defs/implied", "description": "F (optional)"},
            "filters": pos, "kernel": {"anyOf": [pos, {"type": "array", "items": pos, "minItems": 1, "maxItems": 2}]},
            "stride": {**pos, "default": 1}, "pad": {"type": "integer", "minimum": 0, "default": 0}, **custom}),
        ("max_pool", [], pool), ("avg_pool", [], pool),
        ("batchnorm", [], norm), ("layernorm", [], norm),
        ("dropout", [], {"keep": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.5},
                         "seed": {"type": "integer", "minimum": 0, "description": "default: the config's seed"}}),
        ("flatten", [], {}),
    ]


def _node() -> dict[str, Any]:
    """One item of `graph:`."""
    pair = {"type": "object", "additionalProperties": False, "required": ["forward"],
            "description": "your forward and backward named separately (backward defaults to the "
                           "forward's name with forward replaced by backward)",
            "properties": {"forward": CUSTOM_REF, "backward": CUSTOM_REF}}
    loss = {"type": "object", "additionalProperties": False, "required": ["loss"],
            "description": "your loss: name(*inputs, **attrs) -> (loss, grads)",
            "properties": {"loss": CUSTOM_REF}}
    names = {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string", "minLength": 1},
             "description": "one name per output: forward returns (out1, …, cache)"}
    return {"type": "object", "additionalProperties": False, "required": ["name", "op"],
            "properties": {"name": {"anyOf": [{"type": "string", "minLength": 1}, names]},
                           "op": {"anyOf": [{"enum": list(OPS)}, CUSTOM_REF, pair, loss]},
                           "inputs": {"type": "array", "items": {"type": "string"}},
                           "attrs": {"type": "object"},
                           "reference": {"enum": list(OPS), "description": "a built-in whose forward "
                                         "your op's must equal on the same inputs"}}}


def _properties() -> dict[str, Any]:
    """The top-level keys."""
    labels = {"oneOf": [{"type": "array", "items": {"type": "integer", "minimum": 0}},
                        {"type": "object", "additionalProperties": False, "required": ["classes"],
                         "properties": {"classes": {"type": "integer", "minimum": 1}}}],
              "description": "One class index per input row, or {classes: C} drawn from the seed."}
    return {
        "seed": {"type": "integer", "minimum": 0, "default": 0},
        "dtype": {"enum": list(DTYPES), "default": "float64"},
        "tolerance": {"type": "object", "additionalProperties": False,
                      "properties": {"rtol": {"type": "number", "minimum": 0},
                                     "atol": {"type": "number", "minimum": 0}}},
        "inputs": {"anyOf": [{"$ref": "#/$defs/array"},
                             {"type": "array", "items": {"type": "string"},
                              "description": "graph form: which values are inputs"}]},
        "labels": labels,
        "targets": {"$ref": "#/$defs/array"},
        "regularization": {"oneOf": [
            {"type": "number", "minimum": 0},
            {"type": "object", "additionalProperties": False,
             "properties": {"strength": {"type": "number", "minimum": 0},
                            "include": {"type": "array", "items": {"type": "string"}}}}]},
        "layers": {"type": "array", "minItems": 1, "items": _layer()},
        "loss": {"anyOf": [
            {"type": "string", "description": f"one of {', '.join(LOSSES)}, file.py:name, or in "
                                              "the graph form a node's name (projected if not scalar)"},
            {"type": "array", "minItems": 1, "items": {"type": "string"},
             "description": "graph form: nodes each contracted with a fixed random R, summed"},
            {"type": "object", "additionalProperties": False, "required": ["type"],
             "properties": {"type": {"enum": list(LOSSES)}, "stable": {"type": "boolean"}}}]},
        "values": {"type": "object", "additionalProperties": {"$ref": "#/$defs/array"}},
        "graph": {"type": "array", "minItems": 1, "items": _node()},
        "data": {"type": "object", "description": "constant arguments of your code, in their own dtype",
                 "additionalProperties": {"anyOf": [
                     {"$ref": "#/$defs/array"}, {"$ref": "#/$defs/exact"},
                     {"type": "object", "additionalProperties": False, "required": ["shape", "init", "high"],
                      "properties": {"shape": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                                     "init": {"const": "integers"}, "high": {"type": "integer"},
                                     "low": {"type": "integer", "default": 0}}}]}},
        "model": {"type": "object", "additionalProperties": False, "required": ["class"],
                  "description": "a classifier: Class(**args).loss(*inputs, **kwargs) -> (loss, grads)",
                  "properties": {"class": CUSTOM_REF, "args": {"type": "object"},
                                 "inputs": {"type": "array", "items": {"type": "string"}},
                                 "kwargs": {"type": "object"}}},
    }


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "gradverify-config",
        "title": "gradverify config",
        "description": "A network for gradverify: the layers form (inputs, layers, loss) or the "
                       "graph form (values, graph, loss).",
        "type": "object",
        "additionalProperties": False,
        "$defs": {
            "nested": {"oneOf": [{"type": "number"},
                                 {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/nested"}}]},
            "array": _array(),
            "implied": {"description": "An array; a generated one may leave out `shape:` (the layer implies it).",
                        "anyOf": [{"$ref": "#/$defs/array"},
                                  {"type": "object", "additionalProperties": False,
                                   "properties": {"init": {"enum": list(INITS)},
                                                  "std": {"type": "number", "minimum": 0}}}]},
            "exact": {"oneOf": [{"type": "integer"}, {"type": "boolean"},
                                {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/exact"}}]},
        },
        "properties": _properties(),
    }
