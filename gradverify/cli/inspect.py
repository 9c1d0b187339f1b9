"""`gradverify node`, `sweep` and `graph`: one node element by element, one element over steps,
the network's shape."""
from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .. import output
from .common import (
    AtolOpt,
    ConfigArg,
    Format,
    FormatOpt,
    MaxElOpt,
    MemOpt,
    Method,
    MethodOpt,
    QuietOpt,
    RtolOpt,
    StepOpt,
    StrictOpt,
    _console,
    _emit_json,
    _error_line,
    _load,
    _max_elements,
    _settings,
    app,
    handled,
    isolated,
    resolve_config,
)


class NodeSort(str, Enum):
    status = "status"
    error = "error"
    by_index = "index"


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
         failing: bool = typer.Option(False, "--failing", help="Only the elements that do not pass "
                                      "(fail, nonfinite, kink)."),
         sort: NodeSort = typer.Option(NodeSort.status, "--sort", help="status: failing elements "
                                       "first (the default); error: the largest relative error "
                                       "first; index: index order."),
         max_memory: float = MemOpt, max_elements: Optional[int] = MaxElOpt,
         code_dir: Optional[Path] = typer.Option(None, "--code-dir", help="Read the config's file.py:name "
                                                 "references from this folder (as check --code-dir)."),
         quiet: bool = QuietOpt) -> None:
    """Check one node, element by element."""
    from .. import checker as engine
    from ..options import integer
    from ..render import node_json, node_view

    settings = _settings(method, step, rtol, atol, strict, None, max_memory)
    max_elements, limit = _max_elements(max_elements), integer(limit, "limit", cli=True)
    path = resolve_config(config, format == Format.json)
    with isolated():
        report = engine.run_node(_load(path, max_elements, code_dir=code_dir), name, settings, index)
    result = report.nodes[0]
    if format == Format.json:
        _emit_json(node_json(result, report))
    else:
        _console().print(node_view(result, limit or None, sort.value, failing))
    raise typer.Exit(report.exit_code)


@app.command()
@handled
def sweep(name: str = typer.Argument(..., help="The node's name, e.g. w1."),
          index: Optional[str] = typer.Option(None, "--index", "-i", help="The element, e.g. 0,2 "
                                              "(default: the one with the largest gradient)."),
          config: Optional[Path] = typer.Option(None, "--config", "-c", show_default=False,
                                                help="The network's YAML config (default as for check)."),
          format: Format = FormatOpt, max_elements: Optional[int] = MaxElOpt,
          html: Optional[Path] = typer.Option(None, "--html", help="Also write the sweep as a "
                                              "self-contained page with a log-log plot."),
          quiet: bool = QuietOpt) -> None:
    """Numeric error against the analytic gradient for steps 1e-1 … 1e-14: forward, central,
    Richardson and complex step, as a table and a log-log plot."""
    from .. import checker as engine
    from ..render_sweep import sweep_json, sweep_view

    max_elements = _max_elements(max_elements)
    page = output.output_path(html, "HTML page")
    path = resolve_config(config, format == Format.json)
    with isolated():
        idx, value, analytic, data, chosen = engine.run_sweep(_load(path, max_elements), name, index)
    if page is not None:
        from ..report_html import sweep_page
        problem = output.write(page, sweep_page(name, idx, value, analytic, data, chosen))
        if problem:
            _error_line(f"cannot write the HTML page to {html}: {problem}")
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
    from .. import checker as engine
    from ..render_graph import graph_dot, graph_tree

    max_elements = _max_elements(max_elements)
    path = resolve_config(config, dot)
    statuses, blame = None, ()  # type: tuple[dict | None, tuple]
    exit_code = 0
    with isolated():
        prepared = engine.prepare(_load(path, max_elements))
        if check:
            report = engine.run_prepared(prepared)
            statuses = {n.name: n.status for n in report.nodes}
            blame, exit_code = report.blame, report.exit_code
    if dot:
        sys.stdout.write(graph_dot(prepared.graph, prepared.values, statuses, blame))
    else:
        _console().print(graph_tree(prepared.graph, prepared.values, statuses, blame))
    raise typer.Exit(exit_code)
