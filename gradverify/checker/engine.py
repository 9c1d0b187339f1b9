"""Running a check: every selected node, blame, the --split parts, and the report."""
from __future__ import annotations

import fnmatch
import time
from dataclasses import replace

import numpy as np

from .. import numeric, parallel
from ..config import Config
from ..errors import UnknownNodeError, did_you_mean
from ..graph import Graph
from ..numeric.sweep import remainder_sweep
from ..results import NodeResult, Report, RunInfo, Settings
from . import reference
from .blame import assign_blame
from .diagnosis import diagnose
from .nodes import check_node, check_node_fast
from .prepare import Run, prepare
from .taylor import adjoint_checks, check_node_taylor, resolved_blame, taylor_of

#: element-evaluations (perturbed elements × elements downstream) above which a check is "large"
LARGE_CHECK = 5e9


def select_nodes(graph: Graph, wanted) -> list[str]:
    """The nodes matching any of the fnmatch patterns `wanted` (all when none), in graph order."""
    if not wanted:
        return list(graph.nodes)
    names: list[str] = []
    for pattern in wanted:
        hits = [n for n in graph.nodes if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise UnknownNodeError(f"no node matches {pattern!r}{did_you_mean(pattern, graph.nodes)}; "
                                   f"the nodes are: {', '.join(graph.nodes)}")
        names += [h for h in hits if h not in names]
    return [n for n in graph.nodes if n in names]


def estimated_cost(run: Run, names) -> float:
    """Elements perturbed × the elements each perturbation recomputes: the numeric side's work."""
    total = 0.0
    for name in names:
        size = run.values[name][0].size
        downstream = sum(run.values[n][0].size for n in run.graph.downstream(name))
        total += size * max(downstream, 1)
    return total


def run(config: Config, settings: Settings = Settings(), notify=None, progress=None,
        graph: Graph | None = None, executor=None, jobs: int = 1) -> Report:
    """Build the network (or take `graph`), run forward and backward, and check every (selected)
    node. `notify(message)` hears about a large check before it starts; `progress(node, done,
    total)` after every batch of perturbed copies. Nodes upstream of a user's op are estimated on
    `executor` (any concurrent.futures.Executor) or on `jobs` processes (parallel.offloading);
    numpy's BLAS runs single-threaded throughout (parallel.blas_single_thread)."""
    with parallel.blas_single_thread(), parallel.offloading(executor, jobs):
        return run_prepared(prepare(config, settings, graph), notify, progress)


def run_prepared(run_: Run, notify=None, progress=None) -> Report:
    """`run` on a network already prepared."""
    s = run_.settings
    names = select_nodes(run_.graph, s.nodes)
    cost = estimated_cost(run_, names)
    if notify and cost > LARGE_CHECK and not s.fast and s.sample is None and s.method != "taylor":
        elements = sum(run_.values[n][0].size for n in names)
        notify(f"this check perturbs {elements:,} elements ({cost:.1e} element-evaluations "
               "downstream); it may take a while. To check less: --sample K (K elements per node), "
               "--nodes PATTERN, or --fast (directional)")
    results = {}
    for name in reversed(names):  # nearest the loss first: their estimates are the cuts upstream
        start = time.perf_counter()
        if s.method == "taylor":
            res = check_node_taylor(run_, name)
        elif s.fast:
            res = check_node_fast(run_, name)
        else:
            step = (lambda done, total, name=name: progress(name, done, total)) if progress else None
            res = check_node(run_, name, progress=step)
        if s.taylor and res.taylor is None:  # --taylor: the second opinion, in its own column
            res = replace(res, taylor=taylor_of(run_, name))
        results[name] = replace(res, seconds=time.perf_counter() - start)
    results = {n: results[n] for n in names}
    results = reference.attach(run_, results)  # a forward unlike its reference: FAIL, blamed
    results, blame = assign_blame(run_, results)
    if s.method == "taylor":
        resolved = resolved_blame(results, blame)
        results, blame = resolved["results"], resolved["blame"]
    if s.taylor or s.method == "taylor":  # user ops' adjoint identities, each blaming its own op
        adjoint = adjoint_checks(run_, results, {b.node for b in blame})
        results, blame = adjoint["results"], blame + adjoint["blame"]
    for name, msg in run_.problems.items():
        if name in results:
            results[name] = replace(results[name], problem=msg)
    rows = [results[n] for n in names]
    if s.split:
        rows += split_parts(run_, names)
    return report(run_, rows, blame)


def split_parts(run_: Run, names) -> list[NodeResult]:
    """Every parameter's gradient of each part of the loss (loss_data and loss_reg), checked
    separately: a large L2 term cannot hide a data-loss bug (the cs231n notes' advice,
    automated)."""
    out = []
    for part in run_.graph.parts:
        sub = Graph(nodes=run_.graph.nodes, loss=part)
        with np.errstate(all="ignore"):
            grads = sub.backward(run_.values, {})
        sub_run = replace(run_, graph=sub, grads=grads, problems={}, warnings=(), grads64=None)
        for name in names:
            if run_.graph.nodes[name].kind == "parameter":
                out.append(replace(check_node(sub_run, name), of=part))
    return out


def _known_node(run_: Run, name: str) -> None:
    if name not in run_.graph.nodes:
        raise UnknownNodeError(f"no node {name!r}{did_you_mean(name, run_.graph.nodes)}; the nodes "
                               f"are: {', '.join(run_.graph.nodes)}")


def run_node(config: Config, name: str, settings: Settings = Settings(),
             index: str | None = None) -> Report:
    """Check one node (every element, or the one at `index`, e.g. "0,2")."""
    run_ = prepare(config, settings)
    _known_node(run_, name)
    indices = None
    if index is not None:
        indices = [parse_index(index, run_.values[name].shape[1:], name)]
    if settings.method == "taylor":  # the element table by `auto`, the node's order beside it
        element_run = replace(run_, settings=replace(settings, method=numeric.AUTO))
        result = check_node(element_run, name, indices, problem=run_.problems.get(name))
        result = replace(result, taylor=taylor_of(run_, name))
    else:
        result = check_node(run_, name, indices, problem=run_.problems.get(name))
    result = reference.attach(run_, {name: result})[name]
    return report(run_, [result], ())


def parse_index(text: str, shape: tuple, name: str) -> int:
    """"0,2" -> the flat index of element [0, 2] of a node of `shape`."""
    try:
        idx = tuple(int(p) for p in text.replace("[", "").replace("]", "").split(",") if p.strip())
    except ValueError:
        raise UnknownNodeError(f"--index {text!r}: expected integers separated by commas, e.g. 0,2") from None
    if len(idx) != len(shape) or any(not 0 <= i < s for i, s in zip(idx, shape)):
        raise UnknownNodeError(f"--index {text!r} is not an element of {name}, whose shape is "
                               f"{list(shape)}")
    return int(np.ravel_multi_index(idx, shape)) if shape else 0


def run_info(run_: Run, methods) -> RunInfo:
    """How the check ran, as the report prints it."""
    s = run_.settings
    rules = {m: (f"h = {s.step:g}·max(|x|, 1)" if s.step is not None else numeric.METHODS[m].step_rule)
             for m in methods}
    rules["kink"] = numeric.ONE_SIDED_RULE
    judged = list(methods) + ["kink"]
    return RunInfo(method=s.method, methods_used=tuple(methods), step=s.step, step_rule=rules,
                   rtol={m: run_.tolerance(m)[0] for m in judged},
                   atol={m: run_.tolerance(m)[1] for m in judged},
                   dtype=run_.dtype, seed=run_.config_seed, config=run_.config_file,
                   mode="taylor" if s.method == "taylor" else
                  "directional" if s.fast else ("sampled" if s.sample else "full"),
                   sample=s.sample, sample_seed=s.seed)


def report(run_: Run, results, blame) -> Report:
    """The Report of a run: the loss and its parts, how it ran, the nodes and the blame."""
    values = run_.values

    def scalar(n):
        return float(np.real(values[n]).reshape(-1)[0]) if n in values and values[n].ndim == 1 else None

    parts = run_.graph.parts
    return Report(loss=scalar(run_.graph.loss),
                  loss_data=scalar("loss_data") if "loss_data" in parts else None,
                  loss_reg=scalar("loss_reg") if "loss_reg" in parts else None,
                  info=run_info(run_, sorted({r.method for r in results})),
                  nodes=tuple(replace(r, diagnosis=diagnose(r)) for r in results),
                  blame=blame, strict=run_.settings.strict, warnings=run_.warnings,
                  edges=tuple((i, n) for n, node in run_.graph.nodes.items() for i in node.inputs))


def run_sweep(config: Config, name: str, index: str | None = None):
    """The data of `gradverify sweep`: (index tuple, value, analytic, sweep data, chosen steps).
    Without `index`, the element with the largest |analytic| gradient."""
    run_ = prepare(config)
    _known_node(run_, name)
    shape = run_.values[name].shape[1:]
    a = np.asarray(run_.grads[name], dtype=np.float64).reshape(-1)
    flat = parse_index(index, shape, name) if index is not None else int(np.argmax(np.abs(a)))
    data = numeric.sweep(run_.graph, run_.nvalues, name, flat)
    data["taylor"] = remainder_sweep(run_.graph, run_.nvalues, name, flat, run_.grads[name])
    value = float(np.real(run_.values[name]).reshape(-1)[flat])
    scale = max(abs(value), 1.0)
    chosen = {m: numeric.METHODS[m].step * scale for m in numeric.SWEEP_METHODS}
    chosen["complex"] = max(chosen["complex"], float(data["steps"][-1]))  # 1e-20 is off the plot
    idx = tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()
    return idx, value, float(a[flat]), data, chosen
