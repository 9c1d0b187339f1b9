"""`gradverify check`: every node of a network, one row per node."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .. import output
from .common import (
    AtolOpt,
    CheckFormat,
    ConfigArg,
    MaxElOpt,
    MemOpt,
    Method,
    MethodOpt,
    QuietOpt,
    RtolOpt,
    StepOpt,
    StrictOpt,
    _command_line,
    _console,
    _emit_json,
    _error_line,
    _load,
    _max_elements,
    _note,
    _notes,
    _settings,
    app,
    handled,
    isolated,
    resolve_config,
)


def _report_files(junit, svg, html) -> list:
    """(kind, absolute path, path as given) of each report file asked for, each checked before
    anything runs (a folder that does not exist is exit 2 now, not after the whole check)."""
    asked = (("junit", junit, "JUnit report"), ("svg", svg, "SVG"), ("html", html, "HTML page"))
    return [(kind, output.output_path(p, what), p) for kind, p, what in asked if p is not None]


def _save(files: list, report, command: str, suite: str) -> None:
    """--junit/--svg/--html, after stdout has the report. A file that cannot be written is one
    line on stderr; the exit code stays the verdict's. The pictures are of the table, whatever
    --format printed on stdout."""
    from ..formats import junit_xml
    from ..render import check_view

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


JobsOpt = typer.Option(None, "--jobs", "-j", help="Processes for the nodes upstream of your own file.py "
                       "ops (default: the usable cores; 1: this process only).")


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
          jobs: Optional[int] = JobsOpt, quiet: bool = QuietOpt) -> None:
    """Check every node of the network: one row per node."""
    from .. import checker as engine

    settings = _settings(method, step, rtol, atol, strict, nodes, max_memory, sample, seed, fast, split)
    max_elements = _max_elements(max_elements)
    machine = format in (CheckFormat.json, CheckFormat.github) or junit is not None
    path = resolve_config(config, machine)
    files = _report_files(junit, svg, html)
    from ..progress import Progress

    notify = None if quiet or machine else _note
    progress = Progress(enabled=not quiet and format == CheckFormat.table)
    try:
        with isolated():
            report = engine.run(_load(path, max_elements, confine), settings, notify, progress, jobs=_jobs(jobs))
    finally:
        progress.close()
    _notes(report, quiet)
    command = _command_line(path, method, step, rtol, atol)
    _print_check(format, report, str(path), command)
    _save(files, report, command, f"gradverify.{Path(path).stem}")
    raise typer.Exit(report.exit_code)


def _jobs(jobs: Optional[int]) -> int:
    """--jobs: at least 1; by default the cores this process may run on."""
    from ..parallel import usable_cores

    if jobs is not None and jobs < 1:
        raise typer.BadParameter(f"--jobs must be at least 1, got {jobs}", param_hint="--jobs")
    return usable_cores() if jobs is None else jobs


def _print_check(format: CheckFormat, report, path: str, command: str) -> None:
    """The report on stdout, in the format asked for."""
    from ..formats import github_annotations, markdown
    from ..render import check_json, check_view

    if format == CheckFormat.json:
        _emit_json(check_json(report))
    elif format == CheckFormat.github:
        sys.stdout.write(github_annotations(report, path))
    elif format == CheckFormat.markdown:
        _console().print(markdown(report), markup=False, highlight=False, soft_wrap=True)
    else:
        _console().print(check_view(report, command))
    sys.stdout.flush()
