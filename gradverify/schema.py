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
    """One item of `layers:` (build.LAYERS has its types; affine is the only one yet)."""
    return {
        "type": "object", "additionalProperties": False, "required": ["weights", "bias"],
        "properties": {
            "type": {"enum": list(LAYERS), "default": "affine"},
            "weights": {"$ref": "#/$defs/array", "description": "D×H"},
            "bias": {"$ref": "#/$defs/array", "description": "H"},
            "activation": {"anyOf": [{"enum": list(ACTIVATIONS)}, CUSTOM_REF]},
            "alpha": {"type": "number", "minimum": 0, "description": "leaky_relu's slope below 0"},
            "op": {**CUSTOM_REF, "description": "your layer: name_forward(x, w, b, *params, **attrs)"},
            "params": {"type": "object", "additionalProperties": {"$ref": "#/$defs/array"}},
            "attrs": {"type": "object"},
        },
    }


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
                           "attrs": {"type": "object"}}}


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
            "exact": {"oneOf": [{"type": "integer"}, {"type": "boolean"},
                                {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/exact"}}]},
        },
        "properties": _properties(),
    }
