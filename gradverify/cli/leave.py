"""How the `gradverify` command's process ends: sys.exit's status, sooner.

Without your code loaded, the process leaves without tearing the interpreter down (os._exit once
stdout and stderr are flushed): freeing start-up's ~10^5 objects module by module is ~20 ms of a
0.3 s check (bench/startup.py), and nothing needs it — the command has closed its files and shut
its pools down before it returns. With your code loaded, Python's own exit runs (your files are
flushed, your pools shut down, your atexit handlers run), watched: a thread of yours that never
ends would keep it waiting forever, so after GRACE seconds a note says so and the process leaves.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import NoReturn

from .. import usercode

#: seconds Python's exit may wait for threads your code left running
GRACE = 5.0
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
    if usercode.loaded():
        _leave_if_stuck(status_of(code))
        sys.exit(code)  # type: ignore[arg-type]
    if code is not None and not isinstance(code, int):
        _write(sys.stderr, f"{code}\n")
    status = status_of(code)
    if not _flushed(sys.stdout):  # the report did not arrive, whatever the verdict: as Python says
        status = UNDELIVERED
    _flushed(sys.stderr)  # notes that cannot arrive change nothing: the status is the report's
    os._exit(status)


def _flushed(stream) -> bool:
    """Flush a standard stream; False only where what it holds could not be written. None (a
    closed descriptor at start-up) and a stream your code closed count as flushed, as in
    Python's own exit."""
    try:
        if stream is not None:
            stream.flush()
        return True
    except ValueError:  # closed
        return True
    except OSError:
        return False


def _write(stream, text: str) -> None:
    try:
        if stream is not None:
            stream.write(text)
    except (OSError, ValueError):
        pass


def _leave_if_stuck(status: int) -> None:
    """A daemon thread that, if the process still exists GRACE seconds from now (Python's exit
    waiting on threads your code started), says which threads and leaves with `status`."""
    def watch() -> None:
        time.sleep(GRACE)
        stuck = [t.name for t in threading.enumerate()
                 if t.is_alive() and not t.daemon and t is not threading.main_thread()]
        _write(sys.stderr, f"gradverify: note: threads your code started are still running after "
                           f"{GRACE:g} s ({', '.join(stuck) or 'none left'}): not waited for\n")
        delivered = _flushed(sys.stdout)
        _flushed(sys.stderr)
        os._exit(status if delivered else UNDELIVERED)

    threading.Thread(target=watch, name="gradverify-exit-watch", daemon=True).start()
