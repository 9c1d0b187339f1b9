"""Where to look: the definition site of the user's function that an op's backward runs.

Read from the function object's code (`__code__`: file and first line), only for plain functions and bound
methods, whose attributes are the interpreter's own (nothing of the user's code runs).
"""
from __future__ import annotations

import os
import types
from dataclasses import dataclass, replace

from ..custom import PythonOp
from ..results import Blame


@dataclass(frozen=True)
class Site:
    """A function's name, its file (as the user would type it: relative to the working directory
    when inside it) and the line its `def` is on."""

    function: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.function} ({os.path.basename(self.file)}:{self.line})"


def _code(fn):
    """The code object behind a plain function or a bound method; None for anything else (a
    callable object's attributes could be user code: not looked at)."""
    if type(fn) is types.MethodType:
        fn = fn.__func__
    return fn.__code__ if type(fn) is types.FunctionType else None


def _shown(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive
        return path
    return path if rel.startswith("..") else rel


def definition_site(op) -> Site | None:
    """The user's backward (or, for a loss or a model that returns its own gradients, the function
    that does) behind `op`; None for a built-in op."""
    if not isinstance(op, PythonOp):
        return None
    fn = op._backward if op._backward is not None else op._forward
    code = _code(fn)
    if code is None:
        return None
    name = str(getattr(code, "co_qualname", code.co_name))
    return Site(name, _shown(str(code.co_filename)), int(code.co_firstlineno))


def with_site(blame: Blame, graph) -> Blame:
    """The blame with the definition site of the blamed op's user function, if it has one."""
    node = graph.nodes.get(blame.node)
    site = definition_site(node.op) if node is not None else None
    if site is None:
        return blame
    return replace(blame, function=site.function, file=site.file, line=site.line)
