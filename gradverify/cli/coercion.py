"""Typer's coercion of a command's parameters, without pydantic where the answer is plain.

typer 0.29 coerces every parameter of the command being run through a pydantic TypeAdapter, one
built for each parameter, those left at their defaults included. Importing pydantic and building
the adapters is ~70 ms of the ~0.3 s a `gradverify check` process takes here
(bench/startup.py); typer before 0.29 coerces without pydantic.

Most values need nothing validated: an option left at its default (None, False, 256, an enum
member), text for a str option, a choice's name, a path, a number. Those are answered here by
typer's own functions (`coerce_cli_choice`, `coerce_cli_path`, which need no pydantic) or by the
one conversion pydantic itself makes (`Path(text)`, `int(digits)`, `float(decimal)`). Everything
else — and every value typer refuses, with the error message it earns — goes to typer's own
coercion, unchanged. Only on a typer whose coercion this was compared with (VERIFIED_TYPER) is
anything installed; on any other, typer coerces as it does (correct, ~70 ms slower).
tests/test_cli.py checks that both paths give the same values and errors.
"""
from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any, get_args

import typer
from typer.core import TyperGroup

try:  # typer >= 0.29; the names typer's own coercion uses
    from typer._param_types import coerce_cli_choice, coerce_cli_path
    from typer.core import _TyperParameter as TyperParameter
except ImportError:  # an older typer coerces without pydantic: nothing to do
    TyperParameter = None  # type: ignore[assignment,misc]

#: typer releases (major, minor) whose coercion the plain one was compared with, value by value
#: (tests/test_cli.py); a later typer may coerce otherwise, and keeps its own until checked
VERIFIED_TYPER = {(0, 29)}

#: `_plain_value`'s answer when typer's own coercion must decide
UNDECIDED: Any = object()

#: numbers as text that pydantic's int and float (typer's number adapter) read as int() and
#: float() do; anything else (1_000, 0x10, nan, spaces) is typer's to read
INT_TEXT = re.compile(r"[-+]?[0-9]{1,15}")
FLOAT_TEXT = re.compile(r"[-+]?([0-9]{1,17}\.?[0-9]{0,17}|\.[0-9]{1,17})([eE][-+]?[0-9]{1,3})?")


def verified() -> bool:
    """Is the installed typer one whose coercion the plain one stands in for?"""
    try:
        version = tuple(int(part) for part in typer.__version__.split(".")[:2])
    except ValueError:
        return False
    return TyperParameter is not None and version in VERIFIED_TYPER


class PlainCoercion:
    """Stands in for typer's runtime parameter (`RuntimeParam.coerce`): plain values answered
    here, everything else by typer's own, built the first time it is needed."""

    def __init__(self) -> None:
        self._typer: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        answer = _plain_value(value, param, ctx)
        if answer is not UNDECIDED:
            return answer
        if self._typer is None:
            from typer._coercion import build_runtime_param

            self._typer = build_runtime_param(param.type_descriptor)
        return self._typer.coerce(value, param=param, ctx=ctx)


def install(params: list[Any]) -> None:
    """Give each of a command's typer parameters the plain coercion, before it is parsed."""
    if not verified():
        return
    for param in params:
        if isinstance(param, TyperParameter) and getattr(param, "_runtime_param", ...) is None:
            param._runtime_param = PlainCoercion()  # type: ignore[assignment]  # typer calls .coerce


def _plain_value(value: Any, param: Any, ctx: Any) -> Any:
    """What typer's coercion returns for `value`, where that is plain; else UNDECIDED.
    Mirrors `RuntimeParam.coerce` and typer's list adapter: None is () for a repeatable
    parameter and None otherwise; a list is its items' values, in a list."""
    desc = param.type_descriptor
    info = desc.parameter_info
    if value is None:
        return () if param.multiple or param.nargs == -1 else None
    if desc.file_annotation is not None or info.parser is not None:
        return UNDECIDED
    if not (param.multiple or param.nargs == -1):
        return _plain_leaf(value, desc.annotation, info, param, ctx)
    if not desc.is_list or not isinstance(value, (list, tuple)):
        return UNDECIDED
    (item_type,) = get_args(desc.annotation)
    items = [_plain_leaf(item, item_type, info, param, ctx) for item in value]
    return UNDECIDED if any(item is UNDECIDED for item in items) else items


def _plain_leaf(value: Any, annotation: Any, info: Any, param: Any, ctx: Any) -> Any:
    """One value of a str, int, float, enum or path parameter, as typer's leaf adapter gives it."""
    if annotation is str and type(value) is str:
        return value
    if annotation in (int, float) and info.min is None and info.max is None:
        if type(value) is annotation:  # a default
            return value
        if annotation is float and type(value) is int and abs(value) < 2**53:  # a default of 256
            return float(value)
        if type(value) is str and (INT_TEXT if annotation is int else FLOAT_TEXT).fullmatch(value):
            return annotation(value)
        return UNDECIDED
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        try:
            return coerce_cli_choice(value, choices=list(annotation),
                                     case_sensitive=info.case_sensitive, ctx=ctx)
        except ValueError:  # typer's own words for it
            return UNDECIDED
    if annotation is Path and info.path_type is None:
        if type(value) is str and value:  # pydantic's lax Path from a str
            value = Path(value)
        if isinstance(value, Path):  # typer's checks (exists, readable, ...)
            try:
                return coerce_cli_path(value, info, path_type=Path, param=param, ctx=ctx)
            except Exception:  # noqa: BLE001  typer's own words for it (they name the text typed;
                return UNDECIDED  # NUL or a lone surrogate in it: typer's usage error, not a crash)
    return UNDECIDED


class PlainGroup(TyperGroup):
    """The app's group: its own options and each command it hands out get the plain coercion
    (`install`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # --help and --show-completion included
        install(params)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            install(command.get_params(ctx))
        return command
