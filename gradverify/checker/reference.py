"""`reference: conv2d` on a node with your own op: its forward must equal the built-in's.

A gradient check compares a backward with the forward it is given; a wrong forward (a flipped
kernel, the padding on one side only) checks clean. So a node with a reference also runs the
built-in op (`op.reference`, made by build with the node's attrs) on the same input values and
compares the outputs element by element:

    |yours - built-in| ≤ rtol · max |built-in|,   rtol 1e-8 in float64, 1e-4 in float32

(summation order alone moves a float64 result by ~1e-16 relative). A mismatch makes the node
FAIL with its own message (and blames it); a match is a note with the largest difference.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..graph import Graph
from ..results import NodeResult
from .prepare import Run

RTOL = {"float64": 1e-8, "float32": 1e-4}


def _inputs(op: Any, xs: list[np.ndarray]) -> list[np.ndarray]:
    """The node's inputs in their order: its data inputs (held by the op) put back in place."""
    data: dict[int, np.ndarray] = getattr(op, "data", {}) or {}
    full = list(xs)
    for slot in sorted(data):
        full.insert(slot, np.asarray(data[slot])[None])
    return full


def _where(diff: np.ndarray) -> str:
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def compare(graph: Graph, values: dict[str, np.ndarray], dtype: str = "float64") -> dict[str, tuple[bool, str]]:
    """node -> (its forward equals its reference's, the message saying so or what differs)."""
    out: dict[str, tuple[bool, str]] = {}
    for name, node in graph.nodes.items():
        ref = getattr(node.op, "reference", None)
        if ref is None:
            continue
        yours = np.asarray(values[name])
        try:
            with np.errstate(all="ignore"):
                theirs = np.asarray(ref.forward(*_inputs(node.op, [values[i] for i in node.inputs])))
        except (ValueError, TypeError, IndexError) as e:
            out[name] = (False, f"the reference {ref.label} cannot run on this node's inputs: {e}")
            continue
        out[name] = _verdict(ref.label, yours, theirs, RTOL.get(dtype, 1e-8))
    return out


def _verdict(label: str, yours: np.ndarray, theirs: np.ndarray, rtol: float) -> tuple[bool, str]:
    if yours.shape != theirs.shape:
        return False, (f"forward gives shape {list(yours.shape[1:])} but the reference {label} gives "
                       f"{list(theirs.shape[1:])} on the same inputs")
    diff = np.abs(np.real(yours) - np.real(theirs))[0]
    largest = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(np.real(theirs)).max()) if theirs.size else 0.0
    if not np.isfinite(largest) or largest > rtol * max(scale, 1e-300):
        return False, (f"forward differs from the reference {label} on the same inputs: largest "
                       f"difference {largest:.3g} at {_where(np.nan_to_num(diff, nan=np.inf))} "
                       f"(allowed {rtol:g} × max |reference| = {rtol * scale:.3g})")
    return True, f"forward equals the reference {label} on the same inputs (largest difference {largest:.3g})"


def attach(run: Run, results: dict[str, NodeResult]) -> dict[str, NodeResult]:
    """A node whose forward differs from its reference gets the message as its problem (in
    `run.problems` too, so it FAILs and is blamed); one that matches, as a note."""
    problems: dict[str, str] = run.problems  # type: ignore[assignment]  # a dict, built by prepare
    for name, (ok, msg) in compare(run.graph, run.values, run.dtype).items():
        if not ok:
            problems[name] = f"{problems[name]}; {msg}" if name in problems else msg
        if name in results:
            res = results[name]
            results[name] = replace(res, problem=problems[name]) if not ok else replace(res, notes=res.notes + (msg,))
    return results
