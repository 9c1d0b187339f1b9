"""Typer's coercion of a command's parameters, without pydantic where the answer is plain.

typer 0.28 and later coerce every parameter of the command being run through a pydantic
TypeAdapter, one built for each parameter, those left at their defaults included. Importing
pydantic and building the adapters is ~70 ms of the ~0.29 s a `gradverify check` process takes
here (bench/startup.py); typer before 0.28 coerces without pydantic.

Most values need nothing validated: an option left at its default (None, False, 256, an enum
member), text for a str option, a choice's name, a path. Those are answered here by typer's own
functions (`coerce_cli_choice`, `coerce_cli_path`, which need no pydantic) or by the one
conversion pydantic itself makes (`Path(text)`, `int(digits)`). Everything else — a float, a
negative number, an invalid value and the error message it earns — goes to typer's own coercion,
unchanged. On a typer without this machinery nothing is installed (`install` does nothing).
tests/test_cli.py checks that both paths give the same values and errors.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, get_args

from typer.core import TyperGroup

try:  # typer >= 0.28; the names typer's own coercion uses
    from typer._param_types import coerce_cli_choice, coerce_cli_path
    from typer.core import _TyperParameter as TyperParameter
except ImportError:  # an older typer coerces without pydantic: nothing to do
    TyperParameter = None  # type: ignore[assignment,misc]

#: `_plain_value`'s answer when typer's own coercion must decide
UNDECIDED: Any = object()


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
    if TyperParameter is None or not hasattr(TyperParameter, "get_runtime_param"):
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
        if annotation is int and type(value) is str and value.isascii() and value.isdigit() \
                and len(value) <= 15:
            return int(value)
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
        if isinstance(value, Path):  # typer's checks (exists, readable, ...) and messages
            return coerce_cli_path(value, info, path_type=Path, param=param, ctx=ctx)
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
