"""The command line: the only module that prints and chooses exit codes.

Exit codes: 0 gradients agree (kinks are reported, not failures), 1 a gradient mismatch (or a
kink under --strict), 2 bad input (config, node name, usage), 130 interrupted.
"""
from __future__ import annotations

import os

# gradverify evaluates two chunks of perturbed copies at once, one per core; BLAS threads on top
# of that oversubscribe the cores (measured: 25% slower on 2 cores). Set before numpy loads; a
# value the user set wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import functools  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from enum import Enum  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import List, Optional  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

from . import __version__, output, usercode  # noqa: E402
from .errors import GradverifyError, one_line  # noqa: E402
from .numeric.methods import AUTO, CHOICES  # noqa: E402

app = typer.Typer(add_completion=True, no_args_is_help=True, rich_markup_mode=None,
                  help="Check hand-written backpropagation: analytic vs numeric gradients at every "
                       "node of a network. Exit 0: gradients agree; 1: a mismatch; 2: bad input.")

BUNDLED = Path(__file__).parent / "data" / "seed.yaml"
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


def handled(fn):
    """Turn every error a user can cause into one line on stderr and exit 2; a real Ctrl-C into
    130 (a KeyboardInterrupt that user code raised itself is a UserCodeError: see usercode)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        output.safe_streams()
        try:
            with usercode.watch_sigint():
                return fn(*args, **kwargs)
        except GradverifyError as err:
            _fail(str(err), err.exit_code)
        except KeyboardInterrupt:
            _console(stderr=True).print("gradverify: interrupted", markup=False)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except BaseException as err:  # a bug in gradverify itself: still one line, never a traceback
            if os.environ.get("GRADVERIFY_DEBUG"):
                raise
            what = (f"SystemExit({err.code!r}) from inside gradverify" if isinstance(err, SystemExit)
                    else f"{type(err).__name__}: {err}")
            _fail(f"internal error: {what} (set GRADVERIFY_DEBUG=1 for the traceback, and please "
                  "report it)", 2)

    return wrapper


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
              split=False):
    from .options import settings

    return settings(method=method, step=step, rtol=rtol, atol=atol, strict=strict, nodes=nodes,
                    max_memory=max_memory, sample=sample, seed=seed, fast=fast, split=split, cli=True)


def _max_elements(value) -> Optional[int]:
    from .options import integer, optional

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
FormatOpt = typer.Option(Format.table, "--format", "-f", help="table (rich) or json, on stdout.")
MethodOpt = typer.Option(Method(AUTO), "--method", "-m",
                         help="Numeric method: auto (complex step where every op allows it), "
                              "complex, central, richardson or forward.")
StepOpt = typer.Option(None, "--step", help="Relative step h (times max(|x|, 1)), overriding the method's.")
RtolOpt = typer.Option(None, "--rtol", help="Relative tolerance (default: per method, see README).")
AtolOpt = typer.Option(None, "--atol", help="Absolute tolerance (default: per method).")
StrictOpt = typer.Option(False, "--strict", help="Treat kinks as failures (exit 1).")
MemOpt = typer.Option(256, "--max-memory", help="MiB for the batches of perturbed copies.")
MaxElOpt = typer.Option(None, "--max-elements",
                        help="Refuse arrays (and YAML) larger than this many elements "
                             "(default 10,000,000).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No notes on stderr.")


def _load(path: Path, max_elements, confine: Optional[Path] = None):
    """The config, read before any user code runs; the folder its file.py references are relative
    to made absolute (a user file that chdirs at import must not move the next one)."""
    from .config import DEFAULT_MAX_ELEMENTS, load, paths

    cfg = load(path, max_elements=max_elements or DEFAULT_MAX_ELEMENTS,
               confine=paths.confine_folder(confine, "--confine "))
    cfg.source.base_dir = Path(os.path.abspath(cfg.source.base_dir))
    return cfg


def _command_line(path: Path, method, step, rtol, atol) -> str:
    """The command that probes one node again, with the same settings ({node} is filled in, shell-
    quoted, by render.check_view). The path is shell-quoted, and its braces doubled for format()."""
    quoted = shlex.quote(str(path)).replace("{", "{{").replace("}", "}}")
    cmd = f"gradverify node {{node}} --config {quoted}" if path != BUNDLED else "gradverify node {node}"
    if method.value != AUTO:
        cmd += f" --method {method.value}"
    for flag, value in (("--step", step), ("--rtol", rtol), ("--atol", atol)):
        if value is not None:
            cmd += f" {flag} {value:g}"
    return cmd


def _write(path: Path, text: str, what: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise GradverifyError(f"cannot write the {what} to {path}: {e.strerror or e}") from None


def _report_files(junit, svg, html) -> list:
    """(kind, absolute path, path as given) of each report file asked for, each checked before
    anything runs (a folder that does not exist is exit 2 now, not after the whole check)."""
    asked = (("junit", junit, "JUnit report"), ("svg", svg, "SVG"), ("html", html, "HTML page"))
    return [(kind, output.output_path(p, what), p) for kind, p, what in asked if p is not None]


def _save(files: list, report, command: str, suite: str) -> None:
    """--junit/--svg/--html, after stdout has the report. A file that cannot be written is one
    line on stderr; the exit code stays the verdict's. The pictures are of the table, whatever
    --format printed on stdout."""
    from .formats import junit_xml
    from .render import check_view

    recorder = None
    for kind, path, given in files:
        if kind == "junit":
            text, what = junit_xml(report, suite), "JUnit report"
        else:
            if recorder is None:
                recorder = output.recorder(output.width())
                recorder.print(check_view(report, command))
            text, what = ((recorder.export_svg(title="gradverify check", clear=False), "SVG")
                          if kind == "svg" else (recorder.export_html(clear=False), "HTML page"))
        problem = output.write(path, text)
        if problem:
            _error_line(f"cannot write the {what} to {given}: {problem}")


@app.command()
@handled
def check(config: Optional[Path] = ConfigArg,
          format: CheckFormat = typer.Option(CheckFormat.table, "--format", "-f",
                                             help="table (rich), json, github (Actions annotations) "
                                                  "or markdown, on stdout."),
          method: Method = MethodOpt,
          step: Optional[float] = StepOpt, rtol: Optional[float] = RtolOpt,
          atol: Optional[float] = AtolOpt, strict: bool = StrictOpt,
          nodes: Optional[List[str]] = typer.Option(None, "--nodes", help="Check only nodes matching "
                                                    "this pattern (fnmatch, repeatable)."),
          sample: Optional[int] = typer.Option(None, "--sample", help="Check K random elements per "
                                               "node (every node, every tensor; seeded by --seed)."),
          seed: int = typer.Option(0, "--seed", help="Seed for --sample and --fast."),
          fast: bool = typer.Option(False, "--fast", help="Directional mode: compare the derivative "
                                    "along a few random directions per node; bisect to the bad "
                                    "elements on a mismatch."),
          split: bool = typer.Option(False, "--split", help="Also check every parameter's gradient "
                                     "of loss_data and of loss_reg separately."),
          junit: Optional[Path] = typer.Option(None, "--junit", help="Also write a JUnit XML report "
                                               "(one test case per node) to this file."),
          svg: Optional[Path] = typer.Option(None, "--svg", help="Also save what the terminal shows "
                                             "as an SVG picture."),
          html: Optional[Path] = typer.Option(None, "--html", help="Also save what the terminal "
                                              "shows as an HTML page."),
          max_memory: float = MemOpt, max_elements: Optional[int] = MaxElOpt,
          confine: Optional[Path] = typer.Option(None, "--confine", help="Every file the config names "
                                                 "(arrays, file.py ops) must be inside this folder, "
                                                 "symbolic links resolved: for configs you did not write."),
          quiet: bool = QuietOpt) -> None:
    """Check every node of the network: one row per node."""
    from . import checker as engine

    settings = _settings(method, step, rtol, atol, strict, nodes, max_memory, sample, seed, fast, split)
    max_elements = _max_elements(max_elements)
    machine = format in (CheckFormat.json, CheckFormat.github) or junit is not None
    path = resolve_config(config, machine)
    files = _report_files(junit, svg, html)
    from .progress import Progress

    notify = None if quiet or machine else _note
    progress = Progress(enabled=not quiet and format == CheckFormat.table)
    try:
        with isolated():
            report = engine.run(_load(path, max_elements, confine), settings, notify, progress)
    finally:
        progress.close()
    _notes(report, quiet)
    command = _command_line(path, method, step, rtol, atol)
    _print_check(format, report, str(path), command)
    _save(files, report, command, f"gradverify.{Path(path).stem}")
    raise typer.Exit(report.exit_code)


def _print_check(format: CheckFormat, report, path: str, command: str) -> None:
    """The report on stdout, in the format asked for."""
    from .formats import github_annotations, markdown
    from .render import check_json, check_view

    if format == CheckFormat.json:
        _emit_json(check_json(report))
    elif format == CheckFormat.github:
        sys.stdout.write(github_annotations(report, path))
    elif format == CheckFormat.markdown:
        _console().print(markdown(report), markup=False, highlight=False, soft_wrap=True)
    else:
        _console().print(check_view(report, command))
    sys.stdout.flush()


@app.command()
@handled
def node(name: str = typer.Argument(..., help="The node's name, e.g. l1_relu."),
         config: Optional[Path] = typer.Option(None, "--config", "-c", show_default=False,
                                               help="The network's YAML config (default as for check)."),
         index: Optional[str] = typer.Option(None, "--index", "-i",
                                             help="Only this element, e.g. 0,2."),
         format: Format = FormatOpt, method: Method = MethodOpt, step: Optional[float] = StepOpt,
         rtol: Optional[float] = RtolOpt, atol: Optional[float] = AtolOpt, strict: bool = StrictOpt,
         limit: int = typer.Option(200, "--limit", help="Rows to show in the table (0: all)."),
         max_memory: float = MemOpt, max_elements: Optional[int] = MaxElOpt,
         quiet: bool = QuietOpt) -> None:
    """Check one node, element by element."""
    from . import checker as engine
    from .options import integer
    from .render import node_json, node_view

    settings = _settings(method, step, rtol, atol, strict, None, max_memory)
    max_elements, limit = _max_elements(max_elements), integer(limit, "limit", cli=True)
    path = resolve_config(config, format == Format.json)
    with isolated():
        report = engine.run_node(_load(path, max_elements), name, settings, index)
    result = report.nodes[0]
    if format == Format.json:
        _emit_json(node_json(result, report))
    else:
        _console().print(node_view(result, limit or None))
    raise typer.Exit(report.exit_code)


@app.command()
@handled
def sweep(name: str = typer.Argument(..., help="The node's name, e.g. w1."),
          index: Optional[str] = typer.Option(None, "--index", "-i", help="The element, e.g. 0,2 "
                                              "(default: the one with the largest gradient)."),
          config: Optional[Path] = typer.Option(None, "--config", "-c", show_default=False,
                                                help="The network's YAML config (default as for check)."),
          format: Format = FormatOpt, max_elements: Optional[int] = MaxElOpt,
          quiet: bool = QuietOpt) -> None:
    """Numeric error against the analytic gradient for steps 1e-1 … 1e-14: forward, central,
    Richardson and complex step, as a table and a log-log plot."""
    from . import checker as engine
    from .render import sweep_json, sweep_view

    max_elements = _max_elements(max_elements)
    path = resolve_config(config, format == Format.json)
    with isolated():
        idx, value, analytic, data, chosen = engine.run_sweep(_load(path, max_elements), name, index)
    if format == Format.json:
        _emit_json(sweep_json(name, idx, value, analytic, data, chosen))
    else:
        _console().print(sweep_view(name, idx, value, analytic, data, chosen))


@app.command()
@handled
def graph(config: Optional[Path] = ConfigArg,
          check: bool = typer.Option(False, "--check", help="Run the check and colour each node by "
                                     "its status."),
          dot: bool = typer.Option(False, "--dot", help="Print Graphviz source instead (for `dot -Tpng`)."),
          max_elements: Optional[int] = MaxElOpt, quiet: bool = QuietOpt) -> None:
    """The network as a tree from the loss down to its inputs: each node's op and shape."""
    from . import checker as engine
    from .render import graph_dot, graph_tree

    max_elements = _max_elements(max_elements)
    path = resolve_config(config, dot)
    statuses = None
    exit_code = 0
    with isolated():
        prepared = engine.prepare(_load(path, max_elements))
        if check:
            report = engine.run_prepared(prepared)
            statuses = {n.name: n.status for n in report.nodes}
            exit_code = report.exit_code
    if dot:
        sys.stdout.write(graph_dot(prepared.graph, prepared.values, statuses))
    else:
        _console().print(graph_tree(prepared.graph, prepared.values, statuses))
    raise typer.Exit(exit_code)


@app.command()
@handled
def init(path: Path = typer.Argument(Path(DEFAULT_NAME), help="Where to write it."),
         layers: str = typer.Option("4,16,3", "--layers", help="Widths from input to output."),
         activation: str = typer.Option("relu", "--activation", help="Hidden layers' activation."),
         loss: str = typer.Option("softmax_cross_entropy", "--loss", help="The loss."),
         rows: int = typer.Option(8, "--rows", help="Input rows (the batch)."),
         seed: int = typer.Option(0, "--seed", help="Seed for the random weights.")) -> None:
    """Write a commented starter config with random weights that passes `check`."""
    from .options import integer
    from .starter import starter

    seed, rows = integer(seed, "seed", cli=True), integer(rows, "rows", cli=True, minimum=1)
    try:
        widths = [int(w) for w in layers.split(",")]
    except ValueError:
        raise GradverifyError(f"--layers {layers!r}: expected widths like 4,16,3") from None
    text = starter(widths, activation, loss, rows, seed)
    if path.exists():
        raise GradverifyError(f"{path} exists: not overwriting it (choose another path)")
    _write(path, text, "config")
    if path.suffix in (".yaml", ".yml"):
        _console(stderr=True).print(f"gradverify: wrote {path}; check it with: gradverify check {path}",
                                    markup=False, soft_wrap=True)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config format (for editors: see the README)."""
    from .schema import schema as make

    _emit_json(make())


def _version(value: bool):
    if value:
        typer.echo(f"gradverify {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """gradverify: is your hand-written backward right, and if not, where is it wrong?"""


def run() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # during import or argument parsing
        sys.stderr.write("gradverify: interrupted\n")
        sys.exit(130)
