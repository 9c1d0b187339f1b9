"""The JSON Schema of `gradverify check --format json` (`gradverify schema --report`).

The report only grows: fields are added (and `schema_version`'s minor number with them), never
removed or changed, so the schema allows properties it does not name (a consumer validating
with an older schema keeps working); tests/test_formats.py checks that every field an output has
is named here, so nothing goes undocumented.
"""
from __future__ import annotations

from typing import Any

from .render import SCHEMA_VERSION
from .results import STATUSES

NUM = {"type": ["number", "null"]}
INT = {"type": "integer"}
STR = {"type": "string"}
OPT_STR = {"type": ["string", "null"]}
INDEX = {"type": "array", "items": INT}
MODES = ["full", "sampled", "directional", "taylor"]
#: a node's fields present only when the Taylor test ran
TAYLOR_ONLY = ("order", "taylor", "adjoint")


def _obj(required: dict[str, Any], description: str = "") -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "object", "required": sorted(required), "properties": required}
    if description:
        doc["description"] = description
    return doc


def _element() -> dict[str, Any]:
    return _obj({"index": INDEX, "value": NUM, "analytic": NUM, "numeric": NUM, "numeric_error": NUM,
                 "left": NUM, "right": NUM, "abs_error": NUM, "rel_error": NUM,
                 "status": {"enum": ["pass", "kink", "fail", "floor", "nonfinite"]}},
                "One element; null where a number is not finite (or, left/right, not at a kink).")


def _node() -> dict[str, Any]:
    node = _obj({
        "name": STR, "kind": STR, "op": STR, "shape": INDEX, "method": STR,
        "status": {"enum": list(STATUSES)}, "inherited": {"type": "boolean"}, "problem": OPT_STR,
        "size": INT, "total": INT, "mode": {"enum": MODES}, "directions": INT,
        "directional_error": {"type": "number"}, "max_analytic": NUM, "of": STR, "below_floor": INT,
        "float64_max_rel_error": NUM, "max_abs_error": NUM, "max_rel_error": NUM,
        "worst_index": {"type": ["array", "null"], "items": INT}, "rtol": {"type": "number"},
        "atol": {"type": "number"}, "notes": {"type": "array", "items": STR},
        "diagnosis": {**OPT_STR, "description": "a failing node: the pattern its numbers show "
                                                "(a constant factor, a sign, confined rows, …), in words"},
        "order": {"type": ["number", "null"], "description": "the Taylor test's order (--taylor, --method "
                                                           "taylor): 2 right, 1 wrong; null where none was fitted"},
        "taylor": {"$ref": "#/$defs/taylor"},
        "adjoint": {"$ref": "#/$defs/adjoint"},
        "elements": {"type": "array", "items": {"$ref": "#/$defs/element"},
                     "description": "the elements that do not pass (check), every element (node)"},
    }, "One node's check.")
    node["required"] = [k for k in node["required"] if k not in TAYLOR_ONLY]
    return node


def _taylor() -> dict[str, Any]:
    return _obj({"verdict": {"enum": list(STATUSES)}, "order": NUM, "odd_order": NUM, "reason": STR,
                 "orders": {"type": "array", "items": NUM}, "resolution": NUM, "error": NUM},
                "A node's Taylor remainder test (--taylor, --method taylor: docs/taylor.md); null where a "
                "number is not finite or was not fitted.")


def _adjoint() -> dict[str, Any]:
    return _obj({"verdict": {"enum": list(STATUSES)}, "jvp": NUM, "vjp": NUM, "rel_error": NUM,
                 "method": STR, "reason": STR},
                "A user op's adjoint (dot-product) identity, ⟨J·u, v⟩ against ⟨u, backward(v)⟩ (docs/taylor.md).")


def _blame() -> dict[str, Any]:
    return _obj({"node": STR, "op": STR, "message": STR,
                 "function": {**OPT_STR, "description": "a user op: the function to look at"},
                 "file": {**OPT_STR, "description": "its file, relative to the working directory when inside it"},
                 "line": {"type": ["integer", "null"], "description": "the line of its def"}},
                "An op whose backward is wrong.")


def _settings() -> dict[str, Any]:
    per_method = {"type": "object", "additionalProperties": {"type": "number"}}
    return _obj({"method": STR, "methods_used": {"type": "array", "items": STR}, "step": NUM,
                 "step_rule": {"type": "object", "additionalProperties": STR}, "rtol": per_method,
                 "atol": per_method, "dtype": STR, "seed": INT, "config": OPT_STR,
                 "mode": {"enum": MODES}, "sample": {"type": ["integer", "null"]},
                 "sample_seed": INT}, "How the check ran.")


def report_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the check report."""
    summary = _obj({k: INT for k in ("nodes", "pass", "kink", "fail", "undecided", "elements", "total_elements")}
                   | {"strict": {"type": "boolean"}})
    doc = _obj({
        "schema_version": {"type": "string", "pattern": r"^\d+\.\d+$",
                           "description": f"this schema's: {SCHEMA_VERSION}; the minor number grows with added fields"},
        "status": {"enum": list(STATUSES)}, "exit_code": {"enum": [0, 1]},
        "loss": {"type": "number"}, "loss_data": NUM, "loss_reg": NUM,
        "settings": {"$ref": "#/$defs/settings"},
        "nodes": {"type": "array", "items": {"$ref": "#/$defs/node"}},
        "blame": {"type": "array", "items": {"$ref": "#/$defs/blame"}},
        "summary": summary,
    })
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "gradverify-report",
            "title": "gradverify check report", **doc,
            "$defs": {"node": _node(), "element": _element(), "blame": _blame(), "settings": _settings(),
                      "taylor": _taylor(), "adjoint": _adjoint()}}
