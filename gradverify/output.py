"""Where the command line's output goes, and what survives the trip: consoles of a sane width,
streams that cannot encode Unicode, output files checked before the run. Nothing here prints;
cli.py does."""
from __future__ import annotations

import codecs
import errno
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
    """A console on sys.stdout or sys.stderr (rich's takes ~17 ms to import: only when printing)."""
    from rich.console import Console

    return Console(stderr=stderr, width=width(stderr), highlight=False)


class Undelivered(Exception):
    """stdout could not take the report (its reader left: `gradverify check … | head`; a full
    disk): the command stops, and its status is 120 (cli.leave)."""


#: errno of the first write or flush stdout refused in this process, None while it takes all
_REFUSED: int | None = None


class StandardStream:
    """sys.stdout or sys.stderr of the gradverify process (cli.invoke), failing as the command
    line means: when its descriptor refuses a write or a flush (EPIPE, ENOSPC, EIO), the
    descriptor is pointed at /dev/null so that nothing fails on it again, and then
      stdout: raises Undelivered — the report did not arrive — and the process remembers why
              (flush_standard_streams returns it: cli.leave says it and exits 120);
      stderr: the text is lost and nothing else changes (a note, an error line, your code's print
              that nobody can read change neither the report on stdout nor the exit status).
    Every other attribute (encoding, fileno, isatty, buffer) is the stream's own."""

    def __init__(self, stream, fd: int):
        self._stream, self._fd, self._pid = stream, fd, os.getpid()

    @classmethod
    def of(cls, stream, fd: int) -> StandardStream:
        return stream if isinstance(stream, StandardStream) else cls(stream, fd)

    def write(self, text) -> int:
        if self._fd == 1 and os.getpid() != self._pid:  # a child your code forked went on with the
            return len(text)  # check: its report is not the report (stdout carries one)
        try:
            return self._stream.write(text)
        except OSError as err:
            self._refused(err)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as err:
            self._refused(err)

    def _refused(self, err: OSError) -> None:
        global _REFUSED
        discard(self._fd)
        if self._fd == 1:
            if _REFUSED is None:
                _REFUSED = err.errno or errno.EIO
            raise Undelivered(_REFUSED) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def stdout_to_stderr_for_good() -> None:
    """Once the report is whole: whatever this process writes to stdout from now on (your code's
    leftovers at exit) goes to stderr, at Python's level and at the descriptor's."""
    flush_standard_streams()
    try:
        os.dup2(2, 1)
    except OSError:
        pass
    sys.stdout = sys.stderr


def guard_standard_streams() -> None:
    """sys.stdout and sys.stderr as StandardStreams, for the rest of this process."""
    global _REFUSED
    _REFUSED = None
    if sys.stdout is not None:
        sys.stdout = StandardStream.of(sys.stdout, 1)
    if sys.stderr is not None:
        sys.stderr = StandardStream.of(sys.stderr, 2)


def flush_standard_streams() -> int | None:
    """Both streams flushed, never raising (a stream your code closed is skipped, as in Python's
    own exit); the errno of stdout's first refusal in this process, None if it took everything."""
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        try:
            if stream is not None:
                StandardStream.of(stream, fd).flush()
        except (Undelivered, ValueError):
            pass
    return _REFUSED


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
