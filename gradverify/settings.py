"""Project settings: `[tool.gradverify]` in pyproject.toml, found upward from the working directory
as ruff and pytest find theirs (the nearest pyproject.toml that has the table wins; none found is
no settings). A command-line flag overrides the file, the file overrides the defaults, and
`gradverify check --show-settings` says which of the three each value came from.

    [tool.gradverify]
    configs = ["configs/seed.yaml", "configs/cnn.yaml"]   # what a bare `gradverify check` checks
    method = "central"
    strict = true
    rtol = 1e-6
    sample = 200
    json = "reports/gradverify.json"                       # output files, as --json FILE …

Paths are relative to the pyproject.toml's folder. A value is checked by the rule of the option it
stands for (options.py); a bad one is one line naming the file, line and key, exit 2.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import options
from .errors import GradverifyError, did_you_mean

TABLE = "tool.gradverify"
#: every key and its default; the outputs' defaults are "not written"
DEFAULTS: dict[str, Any] = {
    "configs": (), "method": "auto", "strict": False, "rtol": None, "atol": None, "step": None,
    "sample": None, "seed": 0, "json": None, "markdown": None, "junit": None, "html": None, "svg": None,
    "github": False,
}
PATH_KEYS = ("json", "markdown", "junit", "html", "svg")
KEYS = tuple(DEFAULTS)


@dataclass(frozen=True)
class Resolved:
    """Every key's value, and where it came from: "--flag", "pyproject.toml:LINE" or "default"."""

    values: dict[str, Any]
    sources: dict[str, str]
    file: Path | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


def _toml():
    try:
        import tomllib  # Python ≥ 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import importlib

            return importlib.import_module("tomli")
        except ModuleNotFoundError:
            return None
    return tomllib


def find(start: Path | None = None) -> tuple[Path, dict] | None:
    """(the nearest pyproject.toml at or above `start` that has [tool.gradverify], that table)."""
    here = Path(os.path.abspath(start or os.getcwd()))
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            table = _read_table(candidate)
            if table is not None:
                return candidate, table
    return None


def shown(path: Path) -> str:
    """A settings file as messages name it: relative to the working directory (../../pyproject.toml),
    as the user would type it, unless that is longer than the absolute path."""
    rel = os.path.relpath(path)
    return rel if len(rel) <= len(str(path)) else str(path)


def _read_table(path: Path) -> dict | None:
    """The [tool.gradverify] table of one pyproject.toml, None when it has none. A file that
    cannot be parsed matters only when it mentions the table."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GradverifyError(f"{shown(path)}: cannot read it ({e})") from None
    # any header or dotted key that names the table, well-formed or not (a "[tool.gradverify" with
    # no "]" is TOML's error to report, not a table silently ignored)
    if not re.search(r"^\s*\[[^\n]*\bgradverify\b|^\s*(tool\s*\.\s*)?gradverify\s*[.=]", text, re.M):
        return None
    toml = _toml()
    if toml is None:
        raise GradverifyError(f"{shown(path)}: reading [{TABLE}] needs Python ≥ 3.11 or the tomli package")
    try:
        doc = toml.loads(text)
    except toml.TOMLDecodeError as e:
        raise GradverifyError(f"{shown(path)}: not valid TOML: {e}") from None
    table = doc.get("tool", {}).get("gradverify")
    if table is not None and not isinstance(table, dict):
        raise GradverifyError(f"{shown(path)}: [{TABLE}] must be a table")
    return table


def key_line(path: Path, key: str) -> int | None:
    """The line of `key = …` inside [tool.gradverify] (TOML parsers do not keep positions)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    inside = False
    for number, line in enumerate(lines, 1):
        header = re.match(r"^\s*\[\s*([^\]]+?)\s*\]", line)
        if header:
            inside = header.group(1).replace(" ", "") == TABLE
        elif inside and re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    return None


def _error(path: Path, key: str, message: str) -> GradverifyError:
    return GradverifyError(message, f"{TABLE}.{key}", file=shown(path), line=key_line(path, key))


def validate(path: Path, table: dict) -> dict[str, Any]:
    """The table's values, checked (options.py's rules) and with paths made absolute."""
    folder = path.parent
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in DEFAULTS:
            raise _error(path, key, f"unknown key{did_you_mean(key, KEYS)}; the keys are: {', '.join(KEYS)}")
        try:
            out[key] = _value(key, value, folder)
        except GradverifyError as e:
            raise _error(path, key, e.message) from None
    return out


def _value(key: str, value: Any, folder: Path) -> Any:
    if key == "configs":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
            raise GradverifyError(f"{value!r}: expected a path or a list of paths (strings)")
        return tuple(folder / v for v in items)
    if key in PATH_KEYS:
        if not isinstance(value, str) or not value:
            raise GradverifyError(f"{value!r}: expected a file path (a string)")
        return folder / value
    return options.setting(key, value)


def resolve(flags: dict[str, Any], start: Path | None = None) -> Resolved:
    """Defaults, then [tool.gradverify], then `flags` ({key: value} of the flags given on the
    command line; None means not given)."""
    values, sources = dict(DEFAULTS), {k: "default" for k in KEYS}
    found = find(start)
    file = None
    if found is not None:
        file, table = found
        for key, value in validate(file, table).items():
            values[key] = value
            line = key_line(file, key)
            sources[key] = f"{file}:{line}" if line else str(file)
    for key, value in flags.items():
        if value is not None and value != () and value != []:
            values[key] = value
            sources[key] = "--" + key.replace("_", "-")
    return Resolved(values, sources, file)


def show(resolved: Resolved) -> str:
    """`--show-settings`: one line per key, its value and where it came from."""
    head = f"settings file: {resolved.file}" if resolved.file else "settings file: none ([tool.gradverify] " \
        "in a pyproject.toml at or above the working directory)"
    rows = [head]
    for key in KEYS:
        value = resolved.values[key]
        shown = ", ".join(str(v) for v in value) or "(./gradverify.yaml)" if key == "configs" else \
            ("-" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
        rows.append(f"{key:<9} {shown:<40} {resolved.sources[key]}")
    return "\n".join(rows)
