"""How the `gradverify` command's process ends: sys.exit's status, sooner.

Both standard streams are flushed first. stdout that could not take the whole report, at any
point of the process (its reader left: `gradverify check … | head`; a full disk: one line says
so), makes the status Python's own for that, 120, whatever the verdict; stderr that cannot take
a note changes nothing (output.StandardStream).

Without your code loaded, the process then leaves without tearing the interpreter down
(os._exit): freeing start-up's ~10^5 objects module by module is ~5–20 ms of a 0.3 s check
(bench/startup.py), and nothing needs it — the command has closed its files and shut its pools
down before it returns. With your code loaded, Python's own exit runs: your open files are
flushed, your process pools shut down, your atexit handlers run (and a thread of yours that
never ends keeps the process waiting, as it would any Python program that imports your file).
"""
from __future__ import annotations

import errno
import os
import sys
from typing import NoReturn

from .. import output, usercode

#: Python's own status when stdout cannot be flushed at exit (Py_FinalizeEx failing)
UNDELIVERED = 120


def status_of(code: object) -> int:
    """The status sys.exit(code) gives: None 0; an integer its low byte (255 beyond a C long,
    as CPython's PyLong_AsLong fails there); anything else 1 (Python prints it first)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if -2**63 <= code < 2**63 else 255
    return 1


def exit_now(code: object) -> NoReturn:
    """End the process with sys.exit(code)'s status (see the module's docstring)."""
    if code is not None and not isinstance(code, int):  # as Python prints a code that is no number
        _write_err(f"{code}\n")
    status = status_of(code)
    refused = output.flush_standard_streams()
    if refused is not None:
        status = UNDELIVERED
        if refused != errno.EPIPE:  # a reader who left knows; a full disk is worth saying
            _write_err(f"gradverify: error: the report could not be written to stdout: {os.strerror(refused)}\n")
            output.flush_standard_streams()
    if usercode.loaded() and not usercode.a_worker_died():
        _leftovers_after_the_report(status)
        sys.exit(status)
    os._exit(status)


def _leftovers_after_the_report(status: int) -> None:
    """Python's own exit finishes what your code left (threads joined, atexit handlers run), after
    the report: what they print goes to stderr (a JSON report on stdout stays one document), an
    os._exit of theirs leaves with the verdict's status, not theirs, and an error of theirs is one
    line, not a traceback."""
    output.stdout_to_stderr_for_good()
    real_exit = os._exit

    def exit_with_the_verdict(_status) -> NoReturn:
        output.flush_standard_streams()
        real_exit(status)

    os._exit = exit_with_the_verdict  # type: ignore[assignment]
    sys.unraisablehook = _one_line


def _one_line(unraisable) -> None:
    """An error Python ignores at exit (your atexit handler raised): one line on stderr."""
    what = usercode.describe(unraisable.exc_value) if unraisable.exc_value is not None else "failed"
    _write_err(f"gradverify: note: your code, run as the process ended, {what} (ignored)\n")


def _write_err(text: str) -> None:
    try:
        if sys.stderr is not None:
            sys.stderr.write(text)
    except (OSError, ValueError):
        pass
