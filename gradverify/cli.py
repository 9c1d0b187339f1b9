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
import sys  # noqa: E402
from enum import Enum  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, List, Optional  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

from . import __version__  # noqa: E402
from .errors import GradverifyError, one_line  # noqa: E402
from .numeric.methods import AUTO, CHOICES  # noqa: E402

app = typer.Typer(add_completion=True, no_args_is_help=True, rich_markup_mode=None,
                  help="Check hand-written backpropagation: analytic vs numeric gradients at every "
                       "node of a network. Exit 0: gradients agree; 1: a mismatch; 2: bad input.")

BUNDLED = Path(__file__).parent / "data" / "seed.yaml"
DEFAULT_NAME = "gradverify.yaml"


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
    width = None
    stream = sys.stderr if stderr else sys.stdout
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 200  # a pipe or a CI log: don't squeeze the table into 80 columns
    return Console(stderr=stderr, width=width, highlight=False)


def _fail(message: str, code: int) -> None:
    _console(stderr=True).print(f"gradverify: error: {one_line(message)}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def handled(fn):
    """Turn every error a user can cause into one line on stderr and exit 2; Ctrl-C into 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GradverifyError as err:
            _fail(str(err), err.exit_code)
        except KeyboardInterrupt:
            _console(stderr=True).print("gradverify: interrupted", markup=False)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as err:  # a bug in gradverify itself: still one line, never a traceback
            if os.environ.get("GRADVERIFY_DEBUG"):
                raise
            _fail(f"internal error: {type(err).__name__}: {err} (set GRADVERIFY_DEBUG=1 for the "
                  "traceback, and please report it)", 2)

    return wrapper


def resolve_config(config: Optional[Path], quiet: bool) -> Path:
    """CONFIG, else ./gradverify.yaml, else the bundled notebook network (said on stderr)."""
    if config is not None:
        return config
    if Path(DEFAULT_NAME).is_file():
        return Path(DEFAULT_NAME)
    if not quiet:
        _console(stderr=True).print(f"gradverify: no config given and no ./{DEFAULT_NAME}: using the "
                                    f"bundled notebook network ({BUNDLED})", markup=False, soft_wrap=True)
    return BUNDLED


def _settings(method, step, rtol, atol, strict, nodes, max_memory, sample=None, seed=0, fast=False,
              split=False):
    from .checker import Settings
    from .errors import GradverifyError

    if sample is not None and sample < 1:
        raise GradverifyError("--sample takes a positive number of elements per node")
    if max_memory <= 0:
        raise GradverifyError("--max-memory takes a positive number of MiB")
    return Settings(method=method.value, step=step, rtol=rtol, atol=atol, strict=strict,
                    nodes=tuple(nodes) if nodes else None, max_memory=int(max_memory * 2**20),
                    sample=sample, seed=seed, fast=fast, split=split)


class _Progress:
    """A progress bar on stderr for checks that take more than about a second; none when stderr
    is not a terminal."""

    def __init__(self, enabled: bool):
        import time

        self.enabled = enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self.bar: Any = None  # a rich Progress, made once the check has run for a second
        self.task: Any = None
        self.node: str | None = None

    def __call__(self, node: str, done: int, total: int) -> None:
        import time

        if not self.enabled:
            return
        if self.bar is None:
            if time.monotonic() - self.start < 1.0:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=_console(stderr=True), transient=True)
            self.bar.start()
        if node != self.node:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(f"checking {node}", total=total)
            self.node = node
        self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _note(message: str) -> None:
    _console(stderr=True).print(f"gradverify: note: {message}", markup=False, soft_wrap=True)


def _notes(report, quiet: bool) -> None:
    if not quiet:
        for w in report.warnings:
            _console(stderr=True).print(f"gradverify: warning: {w}", markup=False, soft_wrap=True)


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


def _load(path: Path, max_elements):
    from .config import DEFAULT_MAX_ELEMENTS, load

    return load(path, max_elements=max_elements or DEFAULT_MAX_ELEMENTS)


def _command_line(path: Path, method, step, rtol, atol) -> str:
    """The command that probes one node again, with the same settings ({node} is filled in)."""
    cmd = f"gradverify node {{node}} --config {path}" if path != BUNDLED else "gradverify node {node}"
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
          quiet: bool = QuietOpt) -> None:
    """Check every node of the network: one row per node."""
    from . import checker as engine
    from .formats import github_annotations, junit_xml, markdown
    from .render import check_json, check_view

    machine = format in (CheckFormat.json, CheckFormat.github)
    path = resolve_config(config, quiet or machine)
    cfg = _load(path, max_elements)
    notify = None if quiet or machine else _note
    settings = _settings(method, step, rtol, atol, strict, nodes, max_memory, sample, seed, fast, split)
    progress = _Progress(enabled=not quiet and format == CheckFormat.table)
    try:
        report = engine.run(cfg, settings, notify, progress)
    finally:
        progress.close()
    _notes(report, quiet)
    if junit is not None:
        _write(junit, junit_xml(report, f"gradverify.{Path(path).stem}"), "JUnit report")
    console = _console()
    if svg is not None or html is not None:
        console.record = True
    if format == CheckFormat.json:
        _emit_json(check_json(report))
    elif format == CheckFormat.github:
        sys.stdout.write(github_annotations(report, str(path)))
    elif format == CheckFormat.markdown:
        console.print(markdown(report), markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(check_view(report, _command_line(path, method, step, rtol, atol)))
    if svg is not None:
        _write(svg, console.export_svg(title="gradverify check", clear=False), "SVG")
    if html is not None:
        _write(html, console.export_html(clear=False), "HTML page")
    raise typer.Exit(report.exit_code)


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
    from .render import node_json, node_view

    path = resolve_config(config, quiet or format == Format.json)
    cfg = _load(path, max_elements)
    settings = _settings(method, step, rtol, atol, strict, None, max_memory)
    report = engine.run_node(cfg, name, settings, index)
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

    path = resolve_config(config, quiet or format == Format.json)
    cfg = _load(path, max_elements)
    idx, value, analytic, data, chosen = engine.run_sweep(cfg, name, index)
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

    path = resolve_config(config, quiet or dot)
    cfg = _load(path, max_elements)
    prepared = engine.prepare(cfg)
    statuses = None
    exit_code = 0
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
    from .starter import starter

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
