"""Typed exceptions. Every error a user can cause is a GradverifyError carrying where it came from.

The CLI catches GradverifyError in exactly one place and prints `str(err)` as one line, exit 2.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

#: a place in the config, from the top: ("layers", 1, "weights") is layers[1].weights
KeyPath = tuple[str | int, ...]


class GradverifyError(Exception):
    """Base class: a problem with the user's input, reported as one line, exit code 2.

    `key` is the config key path, as text (``layers[1].weights``) or as a tuple
    (``("layers", 1, "weights")``); `file`/`line`/`col` locate it in the YAML (1-based, as editors
    count) when known.
    """

    exit_code = 2

    def __init__(self, message: str, key: str | KeyPath | None = None, *, file: str | None = None,
                 line: int | None = None, col: int | None = None):
        super().__init__(message)
        self.message = message
        self.key = key
        self.file = file
        self.line = line
        self.col = col

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.col is not None:
                    where += f":{self.col}"
            where += ": "
        key = f"{key_str(self.key)}: " if self.key else ""
        return f"{where}{key}{self.message}"


class ConfigError(GradverifyError):
    """The config cannot be read or is not valid."""


class UnknownNodeError(GradverifyError):
    """A node name that the network does not have."""


class UserCodeError(GradverifyError):
    """A custom op file is missing, or the user's forward/backward raised."""


class NumericalError(GradverifyError):
    """The forward pass produced NaN or Inf, so no gradient can be checked."""


def key_str(path: str | KeyPath) -> str:
    """("layers", 1, "weights") -> "layers[1].weights" (text passes through)."""
    if isinstance(path, str):
        return path
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = str(part) if str(part).isprintable() and str(part) else repr(str(part))
        out += f".{name}" if out else name
    return out


def one_line(text: str) -> str:
    """Escape anything that is not printable (newlines, control characters) so a message stays on
    one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def did_you_mean(word: object, choices: Iterable[object]) -> str:
    """' (did you mean "x"?)' for the closest of `choices`, or '' when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
