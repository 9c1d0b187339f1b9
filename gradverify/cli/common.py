"""What every command shares: the app, error handling, config discovery, options, loading."""
from __future__ import annotations

import functools
import gc
import json
import os
import shlex
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console

from .. import output, usercode
from ..errors import GradverifyError, one_line
from ..numeric.methods import AUTO, CHOICES
from .coercion import PlainGroup
from .leave import UNDELIVERED

app = typer.Typer(cls=PlainGroup, add_completion=True, no_args_is_help=True, rich_markup_mode=None,
                  help="Check hand-written backpropagation: analytic vs numeric gradients at every "
                       "node of a network. Exit 0: gradients agree; 1: a mismatch; 2: bad input.")

BUNDLED = Path(__file__).parent.parent / "data" / "seed.yaml"
DEFAULT_NAME = "gradverify.yaml"
#: the config a command finds in the working directory when given none, in this order
DEFAULT_NAMES = (DEFAULT_NAME, "gradverify.yml")


class Format(str, Enum):
    table = "table"
    json = "json"


class CheckFormat(str, Enum):
    table = "table"
    json = "json"
    github = "github"
    markdown = "markdown"


#: --method's choices: "auto" and every row of the numeric methods' table
Method = Enum("Method", {name: name for name in CHOICES}, type=str)  # type: ignore[misc]


def _console(stderr: bool = False) -> Console:
    return output.console(stderr)


def _fail(message: str, code: int) -> None:
    _console(stderr=True).print(f"gradverify: error: {one_line(message)}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def _error_line(message: str) -> None:
    """An error that does not decide the exit code (an output file that could not be written)."""
    _console(stderr=True).print(f"gradverify: error: {one_line(message)}", markup=False, soft_wrap=True)


#: set by `run()`: the cyclic garbage collector is off from start-up until the command begins
gc_paused = False


def resume_gc() -> None:
    """The collector back on, start-up's objects frozen first (they live as long as the process:
    no pass need scan them again). Only where `run()` paused it: CliRunner and the API leave the
    collector as the caller set it."""
    global gc_paused
    if gc_paused:
        gc_paused = False
        gc.freeze()
        gc.enable()


def handled(fn):
    """Turn every error a user can cause into one line on stderr and exit 2; a real Ctrl-C into
    130 (a KeyboardInterrupt that user code raised itself is a UserCodeError: see usercode)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        resume_gc()
        output.safe_streams()
        try:
            return _guarded(fn, args, kwargs)
        except output.Undelivered:  # stdout could not take the report: said at exit (cli.leave)
            raise typer.Exit(UNDELIVERED) from None

    return wrapper


def _guarded(fn, args, kwargs):
    """fn(*args, **kwargs), every error as `handled` says. (In the command line's process, lines
    on stderr never raise: a stderr nobody can read only loses them, output.StandardStream.)"""
    try:
        with usercode.watch_sigint():
            return fn(*args, **kwargs)
    except GradverifyError as err:
        _fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        _console(stderr=True).print("gradverify: interrupted", markup=False)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort, output.Undelivered):
        raise
    except BaseException as err:  # a bug in gradverify itself: still one line, never a traceback
        if os.environ.get("GRADVERIFY_DEBUG"):
            raise
        what = (f"SystemExit({err.code!r}) from inside gradverify" if isinstance(err, SystemExit)
                else f"{type(err).__name__}: {err}")
        _fail(f"internal error: {what} (set GRADVERIFY_DEBUG=1 for the traceback, and please "
              "report it)", 2)


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def interactive(machine: bool) -> bool:
    """Is a person watching? Not for a machine format or report file, a pipe, or under CI."""
    return not machine and _stdout_is_terminal() and not os.environ.get("CI")


def resolve_config(config: Optional[Path], machine: bool) -> Path:
    """CONFIG, else ./gradverify.yaml or ./gradverify.yml, else — only when a person is watching
    (see `interactive`), and said on stderr even with -q — the bundled notebook network. A CI job
    without a config is bad input, not a check of the demo that passes."""
    if config is not None:
        return config
    for name in DEFAULT_NAMES:
        p = Path(name)
        if p.is_symlink() and not p.exists():
            raise GradverifyError(f"./{name} is a symbolic link to {os.readlink(p)!r}, which does not exist")
        if p.exists():  # a directory is reported by the loader
            return p
    if not interactive(machine):
        raise GradverifyError(f"no config given, and no ./{DEFAULT_NAME} or ./{DEFAULT_NAMES[1]} in "
                              f"{os.getcwd()}: name one (gradverify check path/to/net.yaml), or write a "
                              "starter with `gradverify init`")
    _console(stderr=True).print(f"gradverify: no config given and no ./{DEFAULT_NAME}: using the bundled "
                                f"notebook network ({BUNDLED})", markup=False, soft_wrap=True)
    return BUNDLED


def _settings(method, step, rtol, atol, strict, nodes, max_memory, sample=None, seed=0, fast=False,
              split=False, taylor=False):
    from ..options import settings

    return settings(method=method, step=step, rtol=rtol, atol=atol, strict=strict, nodes=nodes,
                    max_memory=max_memory, sample=sample, seed=seed, fast=fast, split=split,
                    taylor=taylor, cli=True)


def _max_elements(value) -> Optional[int]:
    from ..options import integer, optional

    return optional(integer, value, "max_elements", cli=True, minimum=1)


@contextmanager
def isolated():
    """While the config loads and the check runs: user code's stdout goes to stderr, its modules
    are loaded afresh for this check, and the working directory is restored after."""
    with usercode.stdout_to_stderr(), usercode.session():
        yield


def _note(message: str) -> None:
    _console(stderr=True).print(f"gradverify: note: {one_line(message)}", markup=False, soft_wrap=True)


def _notes(report, quiet: bool) -> None:
    if not quiet:
        for w in report.warnings:
            _console(stderr=True).print(f"gradverify: warning: {one_line(w)}", markup=False, soft_wrap=True)


def _emit_json(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")


ConfigArg = typer.Argument(None, help="The network's YAML config (default: ./gradverify.yaml, "
                                      "else the bundled notebook network).", show_default=False)
ConfigsArg = typer.Argument(None, help="The network's YAML config(s), or folders of them (default: the "
                                       "settings' configs, else ./gradverify.yaml, else the bundled "
                                       "notebook network).", show_default=False)
FormatOpt = typer.Option(Format.table, "--format", "-f", help="table (rich) or json, on stdout.")
MethodOpt = typer.Option(Method(AUTO), "--method", "-m",
                         help="Numeric method: auto (complex step where every op allows it), "
                              "complex, central, richardson, forward, or taylor (the order of the "
                              "Taylor remainder per node).")
StepOpt = typer.Option(None, "--step", help="Relative step h (times max(|x|, 1)), overriding the method's.")
RtolOpt = typer.Option(None, "--rtol", help="Relative tolerance (default: per method, see README).")
AtolOpt = typer.Option(None, "--atol", help="Absolute tolerance (default: per method).")
StrictOpt = typer.Option(False, "--strict", help="Treat kinks as failures (exit 1).")
MemOpt = typer.Option(256, "--max-memory", help="MiB for the batches of perturbed copies.")
MaxElOpt = typer.Option(None, "--max-elements",
                        help="Refuse arrays (and YAML) larger than this many elements "
                             "(default 10,000,000).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No notes on stderr.")


def _load(path: Path, max_elements, confine: Optional[Path] = None, code_dir: Optional[Path] = None):
    """The config, read before any user code runs; the folder its file.py references are relative
    to made absolute (a user file that chdirs at import must not move the next one), or with
    --code-dir that folder."""
    from ..config import DEFAULT_MAX_ELEMENTS, load, paths

    cfg = load(path, max_elements=max_elements or DEFAULT_MAX_ELEMENTS,
               confine=paths.confine_folder(confine, "--confine "))
    return paths.with_code_dir(cfg, code_dir)


def _quoted(path) -> str:
    """A path shell-quoted, its braces doubled for format()."""
    return shlex.quote(str(path)).replace("{", "{{").replace("}", "}}")


def _command_line(path: Path, method, step, rtol, atol, code_dir: Optional[Path] = None) -> str:
    """The command that probes one node again, with the same settings and code ({node} is filled
    in, shell-quoted, by render.check_view)."""
    cmd = f"gradverify node {{node}} --config {_quoted(path)}" if path != BUNDLED else "gradverify node {node}"
    if code_dir is not None:
        cmd += f" --code-dir {_quoted(code_dir)}"
    method = getattr(method, "value", method)  # the CLI's Enum, or the settings' string
    if method != AUTO:
        cmd += f" --method {method}"
    for flag, value in (("--step", step), ("--rtol", rtol), ("--atol", atol)):
        if value is not None:
            cmd += f" {flag} {value:g}"
    return cmd


def _write(path: Path, text: str, what: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise GradverifyError(f"cannot write the {what} to {path}: {e.strerror or e}") from None


