"""The files a config names: which may be read, and reading them without hanging.

A path in a config (an array's `file:`, the file of a `file.py:name` op) is relative to the
config's folder; an absolute path and `..` are allowed. Under `confine` (`gradverify check
--confine DIR`, `gradverify.check(…, confine=DIR)`) every such path must resolve, with symbolic
links followed, to a file inside DIR: for a CI job that checks configs it did not write.

Only regular files are read: a FIFO, a device (/dev/zero) or a directory is refused without
blocking on it, and reads are bounded.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from ..errors import ConfigError


class NotRegularFile(OSError):
    """The path is something other than a regular file; `what` says what ("a FIFO", …)."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def _what(mode: int) -> str:
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a regular file for reading. Opening never blocks (O_NONBLOCK: a FIFO with no writer
    would hang a plain open), and anything but a regular file is a NotRegularFile."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(_what(mode))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """A regular file's bytes; ValueError when it has more than `limit` (read: at most limit+1,
    whatever its size claims)."""
    with open_regular(path) as fh:
        raw = fh.read(limit + 1)
    if len(raw) > limit:
        raise ValueError(f"the file is more than the {limit:,} bytes a config may be")
    return raw


def resolve_path(base_dir: Path, text: str, confine: Path | None) -> Path:
    """The file that `text`, as written in a config, names: relative to `base_dir` (the config's
    folder) unless absolute. Under `confine` it must resolve (symbolic links followed) inside
    that folder, else a ConfigError (without a place: the caller knows the key)."""
    full = Path(base_dir) / text
    if confine is None:
        return full
    root = os.path.realpath(confine)
    real = os.path.realpath(full)
    if os.path.commonpath([root, real]) != root:
        raise ConfigError(f"{text} is outside {confine}, the only folder this check may read "
                          "(--confine)")
    return full


def confine_folder(confine: str | os.PathLike[str] | None, name: str) -> Path | None:
    """`confine` as an absolute folder (user code may change the working directory later), or
    a ConfigError naming it (`name`: "--confine " or "confine=") when it is not a folder."""
    if confine is None:
        return None
    folder = Path(os.path.abspath(confine))
    if not folder.is_dir():
        raise ConfigError(f"{name}{confine}: not a folder")
    return folder


def code_folder(source) -> Path:
    """The folder a config's `file.py:name` references are read from: --code-dir's (`code_dir=`)
    when given, else the config's own (array files stay relative to the config)."""
    return source.code_dir if source.code_dir is not None else source.base_dir


def with_code_dir(cfg, code_dir: str | os.PathLike[str] | None):
    """`cfg` ready to run user code: its `file.py:name` references anchored to an absolute folder
    (the config's, whatever user code later does to the working directory), or read from
    `code_dir` (absolute, checked to be a folder, and under --confine inside it like every other
    file)."""
    cfg.source.base_dir = Path(os.path.abspath(cfg.source.base_dir))
    if code_dir is None:
        return cfg
    folder = Path(os.path.abspath(code_dir))
    if not folder.is_dir():
        raise ConfigError(f"code_dir {code_dir}: not a folder")
    cfg.source.code_dir = folder
    from .toplevel import _confined

    return _confined(cfg)
