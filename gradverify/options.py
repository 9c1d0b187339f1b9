"""How a check may be asked to run: one validation for the command line's options and the Python
API's arguments alike. A value outside its range is a GradverifyError naming it (`--rtol -1: …`
on the command line, `rtol=-1: …` in Python) before anything runs: never a check that silently
does something else (0 elements sampled, a negative tolerance that fails everything, a node
pattern split into characters)."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import GradverifyError, did_you_mean
from .numeric.methods import CHOICES
from .results import Settings

#: --max-memory's default, in MiB
DEFAULT_MEMORY_MIB = 256


def _bad(name: str, value, want: str, cli: bool | str) -> GradverifyError:
    """The error for a bad `value`: `--name value: want` (cli=True), `name=value: want` (the
    Python API) or, with cli="setting", `value: want` (settings.py puts the file, line and key
    in front)."""
    if cli == "setting":
        return GradverifyError(f"{value!r}: {want}")
    if cli:
        shown = value.value if hasattr(value, "value") else value  # an Enum choice
        shown = f"{shown:g}" if isinstance(shown, float) else shown
        return GradverifyError(f"--{name.replace('_', '-')} {shown}: {want}")
    return GradverifyError(f"{name}={value!r}: {want}")


def number(value, name: str, *, cli: bool | str = False, positive: bool = False) -> float:
    """A finite real number, ≥ 0 (> 0 when `positive`)."""
    want = "expected a finite number " + ("> 0" if positive else "≥ 0")
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise _bad(name, value, want, cli)
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise _bad(name, value, want, cli)
    return v


def integer(value, name: str, *, cli: bool | str = False, minimum: int = 0) -> int:
    """An integer ≥ `minimum`."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise _bad(name, value, f"expected an integer ≥ {minimum}", cli)
    return int(value)


def optional(check, value, *args, **kw):
    """None, or `check(value, …)`."""
    return None if value is None else check(value, *args, **kw)


def flag(value, name: str, *, cli: bool | str = False) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise _bad(name, value, "expected True or False", cli)
    return bool(value)


def method_name(value, *, cli: bool | str = False) -> str:
    name = getattr(value, "value", value)  # the CLI's Enum, or a string
    if not isinstance(name, str) or name not in CHOICES:
        raise _bad("method", value, f"expected one of {', '.join(CHOICES)}{did_you_mean(name, CHOICES)}", cli)
    return name


def node_patterns(value, *, cli: bool | str = False) -> tuple[str, ...] | None:
    """None or [] (every node), one pattern, or a list of fnmatch patterns."""
    if value is None:
        return None
    patterns = (value,) if isinstance(value, str) else value
    try:
        patterns = tuple(patterns)
    except TypeError:
        raise _bad("nodes", value, "expected a node name pattern or a list of them", cli) from None
    if not all(isinstance(p, str) and p for p in patterns):
        raise _bad("nodes", value, "expected node name patterns (non-empty strings)", cli)
    return patterns or None


def settings(*, method="auto", step=None, rtol=None, atol=None, strict=False, nodes=None,
             max_memory=DEFAULT_MEMORY_MIB, sample=None, seed=0, fast=False, split=False,
             taylor=False, cli: bool | str = False) -> Settings:
    """Validated Settings. max_memory is in MiB (as --max-memory takes it)."""
    memory = number(max_memory, "max_memory", cli=cli, positive=True)
    return Settings(method=method_name(method, cli=cli),
                    step=optional(number, step, "step", cli=cli, positive=True),
                    rtol=optional(number, rtol, "rtol", cli=cli),
                    atol=optional(number, atol, "atol", cli=cli),
                    strict=flag(strict, "strict", cli=cli),
                    nodes=node_patterns(nodes, cli=cli),
                    max_memory=max(1, int(memory * 2**20)),
                    sample=optional(integer, sample, "sample", cli=cli, minimum=1),
                    seed=integer(seed, "seed", cli=cli),
                    fast=flag(fast, "fast", cli=cli), split=flag(split, "split", cli=cli),
                    taylor=flag(taylor, "taylor", cli=cli))


def setting(key: str, value):
    """A `[tool.gradverify]` value checked by the rule of the option it stands for (GradverifyError
    `value: what was expected` otherwise); `key` is one of settings.KEYS' numeric or flag keys."""
    if key in ("rtol", "atol"):
        return number(value, key, cli="setting")
    if key == "step":
        return number(value, key, cli="setting", positive=True)
    if key in ("sample", "seed"):
        return integer(value, key, cli="setting", minimum=1 if key == "sample" else 0)
    if key in ("strict", "github"):
        return flag(value, key, cli="setting")
    if key == "method":
        return method_name(value, cli="setting")
    raise KeyError(key)
