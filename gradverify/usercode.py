"""Running the user's code without letting it decide gradverify's outcome.

User code is untrusted in behaviour: it may print, call sys.exit, raise KeyboardInterrupt itself,
change the working directory or replace sys.stdout. Here:

* `guard(what)`: any BaseException from user code becomes a UserCodeError quoting what the code
  did ("affine_forward called sys.exit(0)"), except a real Ctrl-C, which stays a
  KeyboardInterrupt. Telling the two apart needs `watch_sigint()`: while it is active, a SIGINT
  is recorded before the KeyboardInterrupt is raised, so a KeyboardInterrupt without a recorded
  signal was raised by the code itself.
* `load_source(path)`: the user's file compiled from its current source into a fresh module, every
  time (no import cache, no bytecode beside the user's file); `session()` shares one module per
  file for the duration of one check (a forward and a loss from the same file see the same globals).
* `stdout_to_stderr()`: while user code may run, whatever it writes to stdout (print, os.write(1),
  a replaced sys.stdout) goes to stderr, so stdout carries only gradverify's report.
"""
from __future__ import annotations

import contextvars
import os
import random
import signal
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import userpkg
from .errors import UserCodeError

_SIGINT = threading.Event()
_SESSION: contextvars.ContextVar[dict | None] = contextvars.ContextVar("gradverify_session", default=None)
_COUNT = [0]  # modules made so far, for unique names
_LOADED = [False]  # has this process run a user's file (its top level)?
_WORKER_DIED = [False]  # has a --jobs worker running your code died?


def interrupted() -> bool:
    """Has a real SIGINT arrived since `watch_sigint` started?"""
    return _SIGINT.is_set()


@contextmanager
def watch_sigint() -> Iterator[None]:
    """Record every SIGINT (then behave as the handler before did: raise KeyboardInterrupt).
    Only in the main thread, and only over a Python-level handler: a SIGINT that is ignored or
    kills the process stays so."""
    _SIGINT.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        yield
        return

    def record(signum, frame):
        _SIGINT.set()
        previous(signum, frame)

    signal.signal(signal.SIGINT, record)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def safe_str(obj) -> str:
    """str(obj), or its type's name when its __str__ itself misbehaves (raises anything, a
    KeyboardInterrupt or SystemExit included: it is your code, not a Ctrl-C)."""
    try:
        return str(obj)
    except BaseException:  # noqa: B036
        return f"<unprintable {type(obj).__name__}>"


def safe_repr(obj) -> str:
    try:
        return repr(obj)
    except BaseException:  # noqa: B036  (as safe_str)
        return f"<unprintable {type(obj).__name__}>"


#: files that are not the user's: gradverify's own, and installed packages and the standard library
_NOT_USER = tuple({p.rstrip(os.sep) + os.sep for p in (os.path.dirname(os.path.abspath(__file__)), sys.prefix,
                                                       sys.base_prefix, sys.exec_prefix)})


def user_frame(exc: BaseException) -> str:
    """" (at ops.py:3, in helper)": the innermost frame of the traceback in the user's files."""
    tb, found = exc.__traceback__, ""
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename
        if not path.startswith("<") and not os.path.abspath(path).startswith(_NOT_USER):
            found = f" (at {os.path.basename(path)}:{tb.tb_lineno}, in {tb.tb_frame.f_code.co_name})"
        tb = tb.tb_next
    return found


class OsExit(BaseException):  # noqa: N818  (what your code called, not an error of gradverify's)
    """os._exit(status) called by your code while a check runs (`session`): it would end
    gradverify's process there and then, the report unsaid, with a status of its choosing (0: a
    silent pass). Raised instead, it is your code's error as any other."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


def describe(exc: BaseException) -> str:
    """What the user's code did, as the end of a sentence: "called sys.exit(0)",
    "raised KeyboardInterrupt itself (not a Ctrl-C)", "raised ValueError: bad shape"."""
    if isinstance(exc, OsExit):
        return f"called os._exit({safe_repr(exc.status)})" + user_frame(exc)
    if isinstance(exc, SystemExit):
        return f"called sys.exit({'' if exc.code is None else safe_repr(exc.code)})"
    if isinstance(exc, KeyboardInterrupt):
        return "raised KeyboardInterrupt itself (not a Ctrl-C)"
    text = safe_str(exc)
    return f"raised {type(exc).__name__}" + (f": {text}" if text else "") + user_frame(exc)


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Run user code: whatever it raises becomes UserCodeError("{what} {describe(exc)}");
    a real Ctrl-C (recorded by watch_sigint) stays a KeyboardInterrupt."""
    try:
        yield
    except BaseException as e:  # noqa: B036  SystemExit and KeyboardInterrupt from user code included
        if interrupted():
            raise KeyboardInterrupt from None
        raise UserCodeError(f"{what} {describe(e)}") from None


@contextmanager
def session() -> Iterator[None]:
    """One module per user file while this is active (one check); each session loads afresh,
    and restores sys.modules and sys.path after (userpkg.Sandbox). numpy's and Python's global
    generators are reseeded before every user call (dropout draws the same mask every time) and
    restored when the session ends: checking never reseeds the process that asked for it (a
    notebook, a test suite). Saving them once per check, not per call, matters: numpy's
    get_state/set_state cost ~35 µs each, most of a small op's call."""
    box = userpkg.Sandbox()
    token = _SESSION.set({"": box})
    states = np.random.get_state(), random.getstate()
    _guard_os_exit(+1)
    try:
        yield
    finally:
        _guard_os_exit(-1)
        _SESSION.reset(token)
        box.close()
        np.random.set_state(states[0])
        random.setstate(states[1])


#: sessions open in this process (checks on several threads overlap): the process they are of (a
#: --jobs worker forked during a check counts its own), how many, and os._exit before the first
_SESSIONS: dict = {"pid": None, "open": 0, "real": None}
_SESSIONS_LOCK = threading.Lock()


def _guard_os_exit(change: int) -> None:
    """os._exit raises OsExit while any session of this process is open: the first to open
    puts the guard in, the last to close takes it out (threads' sessions interleave)."""
    with _SESSIONS_LOCK:
        if _SESSIONS["pid"] != os.getpid():  # a fresh process, or a child forked meanwhile
            _SESSIONS.update(pid=os.getpid(), open=0, real=None)
        _SESSIONS["open"] += change
        if change > 0 and _SESSIONS["open"] == 1:
            _SESSIONS["real"] = os._exit
            os._exit = _exit_in(os.getpid(), os._exit)
        elif change < 0 and _SESSIONS["open"] <= 0 and _SESSIONS["real"] is not None:
            os._exit = _SESSIONS["real"]
            _SESSIONS.update(open=0, real=None)


def _exit_in(pid: int, real_exit):
    """os._exit while a check runs in process `pid`: raises OsExit in the context that runs the
    check (your code runs there); another thread (a test runner's watchdog ending a hung test)
    and a process forked meanwhile (a worker of --jobs) leave as os._exit always does."""
    def exit_(status):
        if os.getpid() != pid or not in_session():
            real_exit(status)
        raise OsExit(status)
    return exit_


def in_session() -> bool:
    return _SESSION.get(None) is not None


def worker_died() -> None:
    """A --jobs worker process running your code died (parallel.Offload): its pool is broken,
    and on CPython 3.10 Python's own exit can wait for that pool's threads forever."""
    _WORKER_DIED[0] = True


def a_worker_died() -> bool:
    return _WORKER_DIED[0]


def loaded() -> bool:
    """Has this process run a user's file? Its top level may have left threads, open files,
    pools and atexit handlers that Python's own exit finishes (cli.leave)."""
    return _LOADED[0]


def load_source(path: Path, ref: str) -> types.ModuleType:
    """The user's file `path` (absolute) executed from its current source in a fresh module.

    compile() of the source text, not the import system: no bytecode cache is read (a file
    replaced by one of the same size within the same second is not mistaken for the old one) or
    written (nothing appears in the user's folders; sys.dont_write_bytecode covers what the file
    itself imports)."""
    cache = _SESSION.get()
    if cache is None:  # outside a check: a session of its own (the module outlives it)
        with session():
            return load_source(path, ref)
    if path in cache:
        return cache[path]
    if not path.is_file():
        raise UserCodeError(f"{ref}: no such file {str(path)!r}")
    try:
        source = path.read_bytes()
    except OSError as e:
        raise UserCodeError(f"{ref}: cannot read {path.name}: {e.strerror or e}") from None
    box: userpkg.Sandbox = cache[""]
    _LOADED[0] = True
    chain = userpkg.package_chain(path)
    if chain:  # a module of its package: relative imports work
        try:
            with guard(f"{ref}: importing {path.name}"):
                module = box.import_file(path, chain)
        finally:
            box.restore_names()
        cache[path] = module
        return module
    box.add_folder(path.parent)  # `import helpers` beside it
    _COUNT[0] += 1
    name = f"gradverify_user_{_COUNT[0]}_{path.stem}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    module.__dict__["__gradverify_source__"] = source  # what a worker process compiles (parallel.py)
    # registered while it runs (dataclasses and typing look their module up), then dropped: the
    # next check loads the file again
    saved_flag, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    sys.modules[name] = module
    try:
        with guard(f"{ref}: importing {path.name}"):
            code = compile(source, str(path), "exec", dont_inherit=True)
            exec(code, module.__dict__)
    finally:
        sys.modules.pop(name, None)
        sys.dont_write_bytecode = saved_flag
        box.restore_names()  # np.abs = … at its top level changes the judge no more
    cache[path] = module
    return module


class _ToStderr:
    """What sys.stdout is while user code may run: writes go to stderr; closing it does not
    close stderr."""

    def __init__(self, target):
        self._target = target

    def write(self, text) -> int:
        return self._target.write(text)

    def flush(self) -> None:
        self._target.flush()

    def close(self) -> None:
        self.flush()

    def __getattr__(self, name):  # encoding, buffer, fileno, isatty, …: stderr's
        return getattr(self._target, name)


def _real_fd(stream, fd: int) -> bool:
    try:
        return stream is not None and stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # an in-memory stream (a test runner's)
        return False


def _flush(*streams) -> None:
    for s in streams:
        try:
            if s is not None:
                s.flush()
        except Exception:  # a closed or broken stream: nothing left to keep
            pass


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Process-wide, for the duration of a check (user ops may run on worker threads): Python's
    sys.stdout points at stderr, and when sys.stdout is the process's fd 1, fd 1 itself is
    dup2'ed onto fd 2 (for os.write(1, …) and C extensions). Restored after: sys.stdout, sys.stderr
    and the working directory (user code may chdir)."""
    out, err = sys.stdout, sys.stderr
    cwd = _getcwd()
    fd_level = _real_fd(out, 1) and _real_fd(err, 2)
    _flush(out, err)
    saved = None
    if fd_level:
        saved = os.dup(1)
        os.dup2(2, 1)
    sys.stdout = _ToStderr(err)
    try:
        yield
    finally:
        _flush(sys.stdout, sys.__stdout__, out, sys.stderr, err)
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
        sys.stdout, sys.stderr = out, err
        if cwd is not None:
            try:
                os.chdir(cwd)
            except OSError:
                pass


def _getcwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the working directory was removed
        return None
