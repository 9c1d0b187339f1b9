"""`gradverify check`: every node of a network, one row per node."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from .. import output
from . import runs
from .common import (
    AtolOpt,
    CheckFormat,
    ConfigsArg,
    MaxElOpt,
    MemOpt,
    Method,
    MethodOpt,
    RtolOpt,
    StepOpt,
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

#: report files and where each may come from: the --flag, the [tool.gradverify] key
REPORT_FILES = (("junit", "JUnit report"), ("svg", "SVG"), ("html", "HTML page"), ("json", "JSON report"),
                ("markdown", "markdown report"))


def _report_files(resolved) -> list:
    """(kind, absolute path, path as given) of each report file asked for (flag or settings), each
    checked before anything runs (a folder that does not exist is exit 2 now, not after the whole
    check)."""
    return [(kind, output.output_path(resolved[kind], what), resolved[kind])
            for kind, what in REPORT_FILES if resolved[kind] is not None]


def _file_text(kind: str, outcomes: list) -> str:
    """A report file's text: for one run exactly what --format (or --junit) gives for it."""
    from ..formats import junit_xml, markdown
    from ..render import check_json

    if len(outcomes) == 1 and outcomes[0].error is not None and kind == "json":
        return json.dumps(runs.error_doc(outcomes[0]), indent=2) + "\n"
    if len(outcomes) == 1 and outcomes[0].error is None:
        report, config = outcomes[0].report, outcomes[0].run.config
        if kind == "junit":
            return junit_xml(report, f"gradverify.{Path(config).stem}")
        if kind == "json":
            return json.dumps(check_json(report), indent=2, allow_nan=False) + "\n"
        return markdown(report)
    return {"junit": runs.junit_doc, "markdown": runs.markdown_doc,
            "json": lambda o: json.dumps(runs.json_doc(o), indent=2, allow_nan=False) + "\n"}[kind](outcomes)


def _picture(kind: str, outcomes: list, command: str, recorder: list[Any]) -> str:
    """The table(s) as an SVG or HTML page; `recorder` holds the console that printed them once."""
    from ..render import check_view

    if kind == "html":  # the report page: one run's, or each run's in turn
        from ..report_html import html_page, report_body
        reports = [o.report for o in outcomes if o.error is None]
        return html_page(reports[0]) if len(outcomes) == 1 and reports else html_page(None, "".join(
            report_body(r) for r in reports))
    if recorder[0] is None:  # the terminal's view at a fixed width, whatever the terminal
        console = output.recorder(output.PICTURE_WIDTH)
        for o in outcomes:
            if o.error is None:
                console.print(check_view(o.report, command if len(outcomes) == 1 else None, output.PICTURE_WIDTH))
        recorder[0] = console
    return recorder[0].export_svg(title="gradverify check", clear=False)


def _save(files: list, outcomes: list, command: str) -> None:
    """--junit/--json/--markdown/--svg/--html, after stdout has the report. A file that cannot be
    written is one line on stderr; the exit code stays the verdict's. The SVG is of the table,
    whatever --format printed on stdout; the HTML page is the report (html_page)."""
    recorder: list[Any] = [None]
    for kind, path, given in files:
        what = dict(REPORT_FILES)[kind]
        text = (_picture(kind, outcomes, command, recorder) if kind in ("svg", "html")
                else _file_text(kind, outcomes))
        problem = output.write(path, text)
        if problem:
            _error_line(f"cannot write the {what} to {given}: {problem}")


def _resolve(configs, method, step, rtol, atol, strict, sample, seed, junit, svg, html, json_file,
             markdown_file, github):
    from .. import settings as project

    flags = {"configs": tuple(configs or ()), "method": None if method is None else method.value, "step": step,
             "rtol": rtol, "atol": atol, "strict": strict, "sample": sample, "seed": seed, "junit": junit,
             "svg": svg, "html": html, "json": json_file, "markdown": markdown_file, "github": github or None}
    return project.resolve(flags)


CheckFormatOpt = typer.Option(CheckFormat.table, "--format", "-f", help="table (rich), json, github (Actions "
                              "annotations) or markdown, on stdout.")
CheckMethodOpt = typer.Option(None, "--method", "-m", help=MethodOpt.help)
CheckStrictOpt = typer.Option(None, "--strict/--no-strict", show_default=False, help="Treat kinks as failures "
                              "(exit 1); --no-strict overrides strict = true in the settings.")
NodesOpt = typer.Option(None, "--nodes", help="Check only nodes matching this pattern (fnmatch, repeatable).")
SampleOpt = typer.Option(None, "--sample", help="Check K random elements per node (every node, every tensor; "
                         "seeded by --seed).")
SeedOpt = typer.Option(None, "--seed", help="Seed for --sample and --fast (default 0).")
FastOpt = typer.Option(False, "--fast", help="Directional mode: compare the derivative along a few random "
                       "directions per node; bisect to the bad elements on a mismatch.")
TaylorOpt = typer.Option(False, "--taylor", help="Also the Taylor test's order per node (a second opinion "
                         "that needs no tolerance).")
SplitOpt = typer.Option(False, "--split", help="Also check every parameter's gradient of loss_data and of "
                        "loss_reg separately.")
JunitOpt = typer.Option(None, "--junit", help="Also write a JUnit XML report (one test case per node, one suite "
                        "per run) to this file.")
JsonOpt = typer.Option(None, "--json", help="Also write the JSON report to this file.")
MarkdownOpt = typer.Option(None, "--markdown", help="Also write the markdown report to this file (for "
                           "$GITHUB_STEP_SUMMARY).")
GithubOpt = typer.Option(False, "--github", help="Also print GitHub Actions annotations on stdout, after the table.")
SvgOpt = typer.Option(None, "--svg", help="Also save the table as an SVG picture (120 columns, whatever the "
                      "terminal).")
HtmlOpt = typer.Option(None, "--html", help="Also write a self-contained HTML report: blame, hints, the graph, "
                       "heat maps.")
CheckQuietOpt = typer.Option(False, "--quiet", "-q", help="Only the rows that do not pass (all when every node "
                             "passes), the verdict, blame and hints; no notes on stderr, no footer.")
CodeDirOpt = typer.Option(None, "--code-dir", help="Read the config's file.py:name references from this folder "
                          "instead of the config's; a glob ('students/*/') or several folders: one run per "
                          "folder, one line each.")
ShowSettingsOpt = typer.Option(False, "--show-settings", help="Print the resolved settings ([tool.gradverify] in "
                               "pyproject.toml, flags) and where each came from, and exit.")
ConfineOpt = typer.Option(None, "--confine", help="Every file the config names (arrays, file.py ops) must be "
                          "inside this folder, symbolic links resolved: for configs you did not write.")
JobsOpt = typer.Option(None, "--jobs", "-j", help="Processes for the nodes upstream of your own file.py "
                       "ops (default: the usable cores; 1: this process only).")


@app.command()
@handled
def check(configs: Optional[List[Path]] = ConfigsArg, format: CheckFormat = CheckFormatOpt,
          method: Optional[Method] = CheckMethodOpt, step: Optional[float] = StepOpt,
          rtol: Optional[float] = RtolOpt, atol: Optional[float] = AtolOpt,
          strict: Optional[bool] = CheckStrictOpt, nodes: Optional[List[str]] = NodesOpt,
          sample: Optional[int] = SampleOpt, seed: Optional[int] = SeedOpt, fast: bool = FastOpt,
          split: bool = SplitOpt, taylor: bool = TaylorOpt, jobs: Optional[int] = JobsOpt,
          junit: Optional[Path] = JunitOpt, json_file: Optional[Path] = JsonOpt,
          markdown_file: Optional[Path] = MarkdownOpt, github: bool = GithubOpt, svg: Optional[Path] = SvgOpt,
          html: Optional[Path] = HtmlOpt, code_dir: Optional[List[str]] = CodeDirOpt,
          show_settings: bool = ShowSettingsOpt, max_memory: float = MemOpt,
          max_elements: Optional[int] = MaxElOpt, confine: Optional[Path] = ConfineOpt,
          quiet: bool = CheckQuietOpt) -> None:
    """Check every node of the network: one row per node. Several configs (or folders of
    configs): each checked, one summary, the exit code the worst."""
    from .. import settings as project

    resolved = _resolve(configs, method, step, rtol, atol, strict, sample, seed, junit, svg, html,
                        json_file, markdown_file, github)
    r = resolved.values
    s = _settings(r["method"], r["step"], r["rtol"], r["atol"], r["strict"], nodes, max_memory, r["sample"],
                  r["seed"], fast, split, taylor)  # flags checked before they are shown, too
    if show_settings:
        _console().print(project.show(resolved), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(0)
    max_elements = _max_elements(max_elements)
    files = _report_files(resolved)
    machine = format in (CheckFormat.json, CheckFormat.github) or bool(files) or r["github"]
    planned = _plan(list(r["configs"]), code_dir or [], machine, quiet)
    _refuse_overwriting(files, planned)
    from ..progress import Progress

    notify = None if quiet or machine else _note
    progress = Progress(enabled=not quiet and format == CheckFormat.table)
    try:
        outcomes = [_execute(p, len(planned) == 1 and not machine, s, max_elements, confine, notify, progress,
                             _jobs(jobs)) for p in planned]
    finally:
        progress.close()
    for o in outcomes:
        if o.error is None:
            _notes(o.report, quiet)
    command = _command_line(planned[0].config, r["method"], r["step"], r["rtol"], r["atol"],
                            planned[0].code_dir if len(planned) == 1 else None)
    try:
        _print_check(format, outcomes, command, r["github"], quiet)
    finally:  # the files too when stdout's reader left before the report ended (exit 120)
        _save(files, outcomes, command)
    raise typer.Exit(runs.worst_exit(outcomes))


def _refuse_overwriting(files: list, planned: list) -> None:
    """A report file that is one of the configs being checked would replace it: bad input."""
    from ..errors import GradverifyError

    configs = {os.path.realpath(p.config) for p in planned}  # never raises (Path.resolve does on a symlink loop)
    for kind, path, given in files:
        if os.path.realpath(path) in configs:
            raise GradverifyError(f"--{kind} {given}: that is a config being checked; write the "
                                  f"{dict(REPORT_FILES)[kind]} somewhere else")


def _plan(configs: list, code_dirs: list, machine: bool, quiet: bool) -> list:
    """The runs: the configs given (or the settings', or ./gradverify.yaml), folders expanded,
    times each --code-dir folder."""
    folders, configs = runs.expand_code_dirs(code_dirs, configs)
    if not configs:  # ./gradverify.yaml (a folder of that name is the loader's error) or the demo
        return runs.plan([resolve_config(None, machine)], folders)
    configs, notes = runs.expand_configs(configs)
    for n in notes:
        if not quiet:
            _note(n)
    return runs.plan(configs, folders)


def _execute(p, alone: bool, settings, max_elements, confine, notify, progress, jobs: int = 1):
    """One run. Alone and for a person (the table only), its bad input ends the command (exit 2,
    one line); otherwise it is that run's error line and an error in every report (JSON's error
    object, an ::error annotation, an errored JUnit case), and the other runs still run."""
    from .. import checker as engine
    from ..errors import GradverifyError, key_str

    try:
        with isolated():
            report = engine.run(_load(p.config, max_elements, confine, p.code_dir), settings, notify, progress,
                                jobs=jobs)
        return runs.Outcome(p, report)
    except GradverifyError as err:
        if alone:
            raise
        where = "" if p.code_dir is None and str(err).startswith(str(p.config)) else f"{p.label}: "
        _error_line(f"{where}{err}")
        key = err.key if err.key is None or isinstance(err.key, str) else key_str(err.key)
        return runs.Outcome(p, error=str(err), error_line=err.line,
                            error_where={"file": err.file, "line": err.line, "column": err.col, "key": key})


def _jobs(jobs: Optional[int]) -> int:
    """--jobs: at least 1; by default the cores this process may run on."""
    from ..options import integer
    from ..parallel import usable_cores

    return usable_cores() if jobs is None else integer(jobs, "jobs", cli=True, minimum=1)


def _print_check(format: CheckFormat, outcomes: list, command: str, github: bool, quiet: bool = False) -> None:
    """The report(s) on stdout, in the format asked for; with --github the annotations after."""
    from ..formats import github_annotations, markdown
    from ..render import check_json, check_view

    one = outcomes[0] if len(outcomes) == 1 and outcomes[0].error is None else None
    if format == CheckFormat.json:
        _emit_json(check_json(one.report) if one else runs.json_doc(outcomes) if len(outcomes) > 1
                   else runs.error_doc(outcomes[0]))
    elif format == CheckFormat.github:
        sys.stdout.write(github_annotations(one.report, str(one.run.config)) if one else runs.github_doc(outcomes))
    elif format == CheckFormat.markdown:
        text = markdown(one.report) if one else runs.markdown_doc(outcomes)
        _console().print(text, markup=False, highlight=False, soft_wrap=True)
    elif one:
        console = _console()
        console.print(check_view(one.report, command, console.width, quiet))
    elif len(outcomes) > 1:
        _print_runs(outcomes, command, quiet)
    if github and format != CheckFormat.github:
        sys.stdout.flush()
        sys.stdout.write(github_annotations(one.report, str(one.run.config)) if one else runs.github_doc(outcomes))
    sys.stdout.flush()


def _print_runs(outcomes: list, command: str, quiet: bool = False) -> None:
    """Several configs: each one's table under its name, then one line per run. With --code-dir
    (a teacher's students): one line per run only."""
    from ..render import check_view

    console = _console()
    if not any(o.run.code_dir is not None for o in outcomes):
        for o in outcomes:
            console.print(f"── {o.run.label}", markup=False, highlight=False, soft_wrap=True)
            if o.error is None:
                console.print(check_view(o.report, None, console.width, quiet))
    for o, label in zip(outcomes, runs.labels(outcomes)):
        console.print(runs.one_line_summary(o, label), markup=False, highlight=False, soft_wrap=True)
    worst = runs.worst_exit(outcomes)
    console.print(f"{len(outcomes)} runs: {sum(o.exit_code == 0 for o in outcomes)} ok, "
                  f"{sum(o.exit_code == 1 for o in outcomes)} failed, {sum(o.exit_code == 2 for o in outcomes)} "
                  f"bad input · exit {worst}", markup=False, highlight=False, soft_wrap=True)
