"""Where the command line's output goes, and what survives the trip: consoles of a sane width,
streams that cannot encode Unicode, output files checked before the run. Nothing here prints;
cli.py does."""
from __future__ import annotations

import codecs
import errno
import functools
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

from .errors import GradverifyError

#: a pipe or a CI log: don't squeeze the table into 80 columns
PIPE_WIDTH = 200
#: --svg draws the table at this width whatever the terminal (the same picture on every machine)
PICTURE_WIDTH = 120
#: what the report prints that an ASCII (or Latin-1) stream cannot carry, as ASCII; anything else
#: unencodable (a node's name) becomes a \uXXXX escape, never a crash. Rich draws ASCII boxes by
#: itself on a stream whose encoding is not UTF.
ASCII = {"×": "x", "−": "-", "–": "-", "—": "-", "·": "*", "…": "...", "≤": "<=", "≥": ">=",
         "±": "+/-", "→": "->", "↑": "^", "ε": "eps", "√": "sqrt", "∂": "d", "Σ": "sum", "ᵀ": "^T",
         "⁰": "^0", "¹": "^1", "²": "^2", "³": "^3", "⁶": "^6", "⁹": "^9", "✅": "", "❌": "",
         "⚠": "", "\ufe0f": "", "┏": "+", "━": "-", "┃": "|"}
ERRORS = "gradverify-ascii"
#: what a stream must encode for the report to print as it is
PROBE = "┏━×−·…≤ε∂✅"


def _replace(err: UnicodeError):
    if not isinstance(err, UnicodeEncodeError):
        raise err
    bad = err.object[err.start:err.end]
    text = "".join(ASCII.get(c, f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}") for c in bad)
    return text, err.end


codecs.register_error(ERRORS, _replace)


def safe_streams() -> None:
    """stdout and stderr that cannot encode the report's characters (PYTHONIOENCODING=ascii,
    LC_ALL=C without UTF-8 mode) replace them (see ASCII) instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            PROBE.encode(encoding)
            continue
        except (UnicodeEncodeError, LookupError):
            pass
        try:
            stream.reconfigure(errors=ERRORS)  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):  # not a TextIOWrapper: leave it
            pass


def discard(fd: int) -> None:
    """Descriptor `fd` (1 or 2) pointed at /dev/null: what a stream whose reader left still
    holds goes nowhere, and flushing it does not fail again."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


def columns() -> int | None:
    """$COLUMNS when it is a positive integer; None when unset, 0, negative or garbage (rich would
    take COLUMNS=0 as a width of 0 and print nothing)."""
    raw = os.environ.get("COLUMNS", "").strip()
    try:
        n = int(raw)
    except ValueError:
        return None
    return n if n > 0 else None


def isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def width(stderr: bool = False) -> int | None:
    """The width to draw at: $COLUMNS if sane; else a terminal's own (None lets rich ask it,
    unless a garbage $COLUMNS would mislead it); else PIPE_WIDTH."""
    cols = columns()
    if cols is not None:
        return cols
    if isatty(sys.stderr if stderr else sys.stdout):
        return shutil.get_terminal_size().columns if "COLUMNS" in os.environ else None
    return PIPE_WIDTH


def console(stderr: bool = False) -> Console:
    return _console_class()(stderr=stderr, width=width(stderr), highlight=False)


@functools.cache
def _console_class() -> type[Console]:
    """rich's Console, except when the reader of its stream left (rich's own `on_broken_pipe`,
    the subclass hook its docs offer, points stdout at /dev/null and raises SystemExit(1) from
    inside the command, whichever stream broke): stdout's is a BrokenPipeError, for the command
    line to turn into its exit status (`gradverify check … | head`); stderr's only silences
    that console — notes and error lines that cannot arrive change neither the report on stdout
    nor the exit status. rich's console takes ~17 ms to import: only when printing."""
    from rich.console import Console

    class ReaderAware(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            if not self.stderr:
                raise BrokenPipeError(errno.EPIPE, "the reader of the output left")

    return ReaderAware


def recorder(width_: int | None) -> Console:
    """A console that draws into memory for --svg/--html, whatever stdout shows."""
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), record=True, width=width_ or PIPE_WIDTH, highlight=False,
                   force_terminal=True, color_system="truecolor")


def output_path(path: Path | None, what: str) -> Path | None:
    """An output file's absolute path (user code may chdir), checked before anything runs: its
    folder exists and is writable, and the path is not a folder or a read-only file."""
    if path is None:
        return None
    full = Path(os.path.abspath(path))
    folder = full.parent
    problem = None
    if full.is_dir():
        problem = "it is a directory"
    elif not folder.is_dir():
        problem = f"no such directory {str(folder)!r}"
    elif full.exists() and not os.access(full, os.W_OK):
        problem = "the file is not writable"
    elif not full.exists() and not os.access(folder, os.W_OK | os.X_OK):
        problem = f"the directory {str(folder)!r} is not writable"
    if problem:
        raise GradverifyError(f"cannot write the {what} to {path}: {problem}")
    return full


def write(path: Path, text: str) -> str | None:
    """Write the file; None, or what went wrong."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        return e.strerror or str(e)
    return None
