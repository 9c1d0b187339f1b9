"""Small checks shared by every part of validation: the keys of a mapping, numbers, and how a
wrong value is described in a message."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import KeyPath, did_you_mean
from .model import Source


def is_custom(name: object) -> bool:
    """A custom op reference: "path/to/file.py:function"."""
    return isinstance(name, str) and ":" in name and name.split(":", 1)[0].endswith(".py")


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def kind(value: object) -> str:
    """How a message names a value that is not what was expected."""
    if isinstance(value, bool):
        return f"the boolean {value}"
    if value is None:
        return "nothing"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def check_keys(data: dict[str, Any], allowed: Iterable[str], src: Source, path: KeyPath, what: str) -> None:
    allowed = tuple(allowed)
    for key in data:
        if key not in allowed:
            raise src.error(f"unknown key {key!r} in {what}{did_you_mean(key, allowed)}; "
                            f"known keys: {', '.join(allowed)}", path + (key,))


def mapping(value: object, src: Source, path: KeyPath, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise src.error(f"expected a mapping ({what}), got {kind(value)}", path)
    return value


def number(value: Any, src: Source, path: KeyPath, *, positive: bool = False, nonneg: bool = False,
           integer: bool = False) -> float:
    if not is_number(value) or (integer and not isinstance(value, int)):
        raise src.error(f"expected {'an integer' if integer else 'a number'}, got {kind(value)}", path)
    if isinstance(value, float) and not np.isfinite(value):  # an int is finite, even beyond 2**64
        raise src.error(f"expected a finite number, got {value}", path)
    if positive and value <= 0:
        raise src.error(f"expected a positive number, got {value}", path)
    if nonneg and value < 0:
        raise src.error(f"expected a number ≥ 0, got {value}", path)
    return value
