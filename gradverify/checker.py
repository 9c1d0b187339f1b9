"""Running a check: comparing analytic with numeric gradients, element statuses, blame.
The records it returns are in results.py.

An element passes when |a − n| ≤ atol + rtol·max(|a|, |n|) + e, where e is the numeric estimate's
own error bar. At a kink it is judged against the interval between the left and right one-sided
derivatives instead: inside it (within the same tolerance) the analytic value is a valid
subgradient and the element is a KINK; outside it is a FAIL.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import numpy as np

from . import numeric
from .build import build, unused_nodes
from .config import Config
from .errors import GradverifyError, NumericalError, UnknownNodeError, did_you_mean
from .graph import Graph
from .ops import BadGradient
from .results import Blame, NodeResult, Report, Settings, _max

__all__ = ["run", "run_node", "run_sweep", "prepare", "Settings", "Report", "NodeResult", "Blame"]

#: default (rtol, atol) per numeric method. The complex step is exact to rounding, so its rtol can
#: catch a backward wrong by 1e-9 relative; the real methods are limited by truncation and
#: cancellation, and their error bars carry most of that.
DEFAULT_TOLERANCE = {
    "complex": (1e-10, 1e-13),
    "richardson": (1e-8, 1e-11),
    "central": (1e-6, 1e-9),
    "forward": (1e-4, 1e-7),
}
FLOAT32_TOLERANCE = (1e-4, 1e-6)


# ---------------------------------------------------------------------------------------------


def compare(analytic, est: numeric.Estimate, rtol: float, atol: float):
    """Errors and statuses per element: (abs_error, rel_error, statuses)."""
    a, n = analytic, est.numeric
    scale = np.maximum(np.abs(a), np.abs(n))
    abs_err = np.abs(a - n)
    # at a kink, the distance from the interval [min(left, right), max(left, right)]
    lo, hi = np.fmin(est.left, est.right), np.fmax(est.left, est.right)
    kink_dist = np.maximum(np.maximum(lo - a, a - hi), 0.0)
    kink_scale = np.maximum(np.abs(a), np.fmax(np.abs(lo), np.abs(hi)))
    abs_err = np.where(est.kink, kink_dist, abs_err)
    scale = np.where(est.kink, kink_scale, scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_err = np.where(scale > 0, abs_err / scale, 0.0)
    ok = abs_err <= atol + rtol * scale + est.error
    # both below what the estimate can resolve (and not both exactly 0): no verdict either way
    floor = (scale <= atol + est.error) & (scale > 0) & ~est.kink
    statuses = np.where(ok, np.where(est.kink, "kink", np.where(floor, "floor", "pass")), "fail")
    statuses = np.where(np.isfinite(a), statuses, "fail")
    statuses = np.where(np.isfinite(n) | est.kink, statuses, "nonfinite")
    abs_err = np.where(statuses == "nonfinite", np.nan, abs_err)
    rel_err = np.where(statuses == "nonfinite", np.nan, rel_err)
    return abs_err, rel_err, statuses.astype("<U9")


def tolerance_for(method: str, config: Config, settings: Settings) -> tuple[float, float]:
    rtol, atol = DEFAULT_TOLERANCE[method]
    if config.dtype == "float32":
        rtol, atol = FLOAT32_TOLERANCE
    rtol = config.rtol if config.rtol is not None else rtol
    atol = config.atol if config.atol is not None else atol
    rtol = settings.rtol if settings.rtol is not None else rtol
    atol = settings.atol if settings.atol is not None else atol
    return rtol, atol


def forward_checked(graph: Graph, config: Config) -> dict:
    """The forward pass, stopping with a NumericalError at the first non-finite node."""

    def finite(name, value):
        if not np.all(np.isfinite(value)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(value[0]))[0]) if value.ndim > 1 else ()
            what = "NaN" if np.isnan(value).any() else "Inf"
            node = graph.nodes[name]
            hint = ""
            if name == "exps" and not config.stable:
                hint = "; the logits are too large for e^x: use `loss: {type: softmax_cross_entropy, stable: true}`"
            else:
                hint = "; check the scale of the inputs and weights"
            raise NumericalError(f"the forward pass made {what} at node {name} ({node.op_label}), "
                                 f"index {list(bad)}{hint}", node.key)

    return graph.forward(check=finite)


def select_nodes(graph: Graph, wanted) -> list[str]:
    if not wanted:
        return list(graph.nodes)
    import fnmatch
    names = []
    for pattern in wanted:
        hits = [n for n in graph.nodes if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise UnknownNodeError(f"no node matches {pattern!r}{did_you_mean(pattern, graph.nodes)}; "
                                   f"the nodes are: {', '.join(graph.nodes)}")
        names += [h for h in hits if h not in names]
    return [n for n in graph.nodes if n in names]


def check_node(p: Prepared, name: str, config: Config, settings: Settings, indices=None,
               problem: str | None = None, progress=None) -> NodeResult:
    """Compare one node's analytic gradient with its numeric estimate, element by element
    (every element, the given flat `indices`, or a seeded sample of `settings.sample`)."""
    total = p.values[name][0].size
    mode = "full"
    if indices is None and settings.sample is not None and total > settings.sample:
        rng = np.random.default_rng([settings.seed, zlib.crc32(name.encode())])
        indices = np.sort(rng.choice(total, settings.sample, replace=False))
        mode = "sampled"
    est = numeric.estimate(p.graph, p.nvalues, name, settings.method, settings.step, indices,
                           settings.max_memory, trusted=p.trusted, progress=progress)
    est = _opaque_kinks(p, name, est, config, settings)
    return _result(p, name, config, settings, est, problem, total=total, mode=mode)


#: upstream of a custom op, nodes up to this size have every element tested for kinks from the
#: numbers; larger ones only their failing elements
OPAQUE_KINK_SCAN = 2048


def _opaque_kinks(p: Prepared, name: str, est, config, settings):
    """Elements upstream of code the engine cannot see inside (custom ops declare no kinks) get a
    second look: if their one-sided derivatives stay apart as the step shrinks, they sit on a
    kink and are judged against the interval between them (a steep but smooth function's close
    up). Every element of a small node is looked at; of a large node, the failing ones."""
    opaque = [n for n in p.graph.downstream(name) if getattr(p.graph.nodes[n].op, "opaque", False)]
    if not opaque:
        return est
    rtol, atol = tolerance_for(est.method, config, settings)
    a = np.asarray(p.grads[name], dtype=np.float64).reshape(-1)[est.index]
    _, _, statuses = compare(a, est, rtol, atol)
    if len(est.index) <= OPAQUE_KINK_SCAN:
        bad = np.flatnonzero(~est.kink)
    else:
        bad = np.flatnonzero(statuses == "fail")
    if not bad.size:
        return est
    kink, left, right, err = numeric.detect_kinks(p.graph, p.nvalues, name, est.index[bad])
    if not kink.any():
        return est
    from dataclasses import replace
    arrays = {f: getattr(est, f).copy() for f in ("kink", "left", "right", "error")}
    pos = bad[kink]
    arrays["kink"][pos] = True
    arrays["left"][pos], arrays["right"][pos] = left[kink], right[kink]
    arrays["error"][pos] = err[kink]
    return replace(est, **arrays)


def _result(p: Prepared, name, config, settings, est, problem=None, **extra) -> NodeResult:
    rtol, atol = tolerance_for(est.method, config, settings)
    grads = extra.pop("grads", p.grads)
    full = np.asarray(grads[name], dtype=np.float64).reshape(-1)
    a = full[est.index]
    abs_err, rel_err, statuses = compare(a, est, rtol, atol)
    extra.setdefault("grad_max", _max(np.abs(full)))
    if p.grads64 is not None:  # float32: how much of the error float32 alone explains
        r64, a64 = DEFAULT_TOLERANCE[est.method]
        _, rel64, _ = compare(np.asarray(p.grads64[name]).reshape(-1)[est.index], est, r64, a64)
        extra["float64_rel_error"] = _max(rel64)
    node = p.graph.nodes[name]
    if node.key is not None:
        extra.setdefault("line", config.source.locate(tuple(node.key))[0])
    return NodeResult(name=name, kind=node.kind, op=node.op_label, shape=p.values[name].shape[1:],
                      method=est.method, rtol=rtol, atol=atol, step=est.step, flat=est.index,
                      value=np.real(p.values[name]).reshape(-1)[est.index].astype(np.float64),
                      analytic=a, numeric=est.numeric, error=est.error, left=est.left,
                      right=est.right, abs_error=abs_err, rel_error=rel_err, statuses=statuses,
                      problem=problem, **extra)


#: --fast: random directions per node, and at most this many suspects followed by bisection
FAST_DIRECTIONS = 3
FAST_MAX_SUSPECTS = 64


def check_node_fast(p: Prepared, name: str, config: Config, settings: Settings) -> NodeResult:
    """Directional check: compare vᵀ(analytic gradient) with the numeric derivative along v for
    a few random ±1 directions v (one or two evaluations each, whatever the node's size). On a
    mismatch or a kink, bisect v's support (group testing, about k·log₂ n evaluations for k bad
    elements) and check the elements it isolates one by one."""
    total = p.values[name][0].size
    a = np.asarray(p.grads[name], dtype=np.float64).reshape(-1)
    rng = np.random.default_rng([settings.seed, zlib.crc32(name.encode())])
    rtol, atol = tolerance_for(numeric.node_method(p.graph, name, settings.method, p.trusted),
                               config, settings)

    def judge(vs):
        d, err, kink, _ = numeric.directional(p.graph, p.values, name, vs, settings.method, p.trusted)
        want = vs @ a
        scale = np.abs(vs) @ np.abs(a)  # Σ|v_i a_i|: what rounding in vᵀa is relative to
        off = np.abs(want - d)
        bad = ~(off <= atol + rtol * np.maximum(scale, np.abs(d)) + err) | kink
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(scale > 0, off / scale, 0.0)
        return bad, rel

    v = rng.choice([-1.0, 1.0], size=(FAST_DIRECTIONS, total))
    bad, rel = judge(v)
    count, worst = FAST_DIRECTIONS, float(np.nanmax(rel, initial=0.0))
    suspects: list[np.ndarray] = []
    if bad.any():
        sign = v[int(np.argmax(bad))]
        groups, leaves = [np.arange(total)], []
        while groups:
            halves = [h for g in groups for h in (g[: len(g) // 2], g[len(g) // 2:]) if len(h)]
            vs = np.zeros((len(halves), total))
            for row, h in enumerate(halves):
                vs[row, h] = sign[h]
            hb, _ = judge(vs)
            count += len(halves)
            groups = []
            for h, b in zip(halves, hb):
                if b:
                    (leaves if len(h) == 1 else groups).append(h)
            groups = groups[:FAST_MAX_SUSPECTS]
            if len(leaves) >= FAST_MAX_SUSPECTS:
                break
        suspects = leaves[:FAST_MAX_SUSPECTS]
    index = np.sort(np.concatenate(suspects)) if suspects else np.zeros(0, dtype=np.intp)
    est = numeric.estimate(p.graph, p.values, name, settings.method, settings.step, index,
                           settings.max_memory, trusted=p.trusted)
    res = _result(p, name, config, settings, est, total=total, mode="directional",
                  directions=count, directional_error=worst)
    if bad.any() and not index.size:
        # the directions disagree but no single element could be isolated: still a failure
        res = _replace(res, problem=f"the directional derivative disagrees (relative error "
                                    f"{worst:.1e}) but bisection isolated no single element; "
                                    "run without --fast")
    return res


def edge_disagrees(p: Prepared, name: str, consumer: str, positions, config: Config,
                   settings: Settings) -> bool:
    """Is the share of d loss / d `name` that flows through `consumer` wrong at the given flat
    positions? Analytic: that consumer's backward alone; numeric: perturb `name` as only
    `consumer` sees it."""
    node = p.graph.nodes[consumer]
    xs = [p.values[i] for i in node.inputs]
    with np.errstate(all="ignore"):
        try:
            gs = node.op.backward(p.grads[consumer], p.values[consumer], *xs)
        except BadGradient:
            return True
    share = sum(np.asarray(g, dtype=np.float64) for i, g in zip(node.inputs, gs) if i == name)
    share = np.asarray(share).reshape(-1)[positions]
    est = numeric.estimate(p.graph, p.values, name, settings.method, settings.step, positions,
                           settings.max_memory, via=consumer, trusted=p.trusted)
    rtol, atol = tolerance_for(est.method, config, settings)
    _, _, statuses = compare(share, est, rtol, atol)
    return bool((statuses == "fail").any())


def assign_blame(p: Prepared, results: dict[str, NodeResult], config: Config,
                 settings: Settings):
    """Point at the ops whose backward is wrong.

    A node whose gradient fails while every node consuming it passes was given a wrong gradient
    by a consumer's backward. With one consumer, that is the culprit; with several, each edge's
    share of the gradient is checked on its own (perturbing the node as only that consumer sees
    it) and the consumers whose share disagrees are blamed. A failing node with a failing
    consumer inherits the error: marked, not blamed. An op whose backward returned malformed
    gradients is blamed with that message."""
    graph = p.graph
    blame: list[Blame] = [Blame(n, graph.nodes[n].op_label, m) for n, m in p.problems.items()]
    blamed = set(p.problems)
    marked = dict(results)
    for name, res in results.items():
        if res.status != "fail":
            continue
        consumers = [c for c in graph.consumers(name) if graph.reaches_loss(c)]
        if not consumers or any(c not in results for c in consumers):
            continue  # the loss itself, or consumers not checked: nothing to conclude
        if any(results[c].status == "fail" for c in consumers):
            marked[name] = _replace(res, inherited=True)
            continue
        culprits = consumers
        if len(consumers) > 1:
            bad = np.flatnonzero(res.statuses == "fail")[:8]
            culprits = [c for c in consumers
                        if edge_disagrees(p, name, c, res.flat[bad], config, settings)] or consumers
        for c in culprits:
            if c in blamed:
                continue
            node = graph.nodes[c]
            others = "" if len(culprits) == 1 else (
                f" (or the backward of {', '.join(x for x in culprits if x != c)})")
            blame.append(Blame(c, node.op_label,
                               f"the backward of {c} ({node.op_label}) is wrong: its input's gradient "
                               f"{name} disagrees while {c}'s own agrees{others}"))
            blamed.add(c)
    return marked, tuple(blame)


def _replace(res: NodeResult, **kw) -> NodeResult:
    from dataclasses import replace
    return replace(res, **kw)


@dataclass
class Prepared:
    """A network after its plain forward and backward passes."""

    graph: Graph
    values: dict
    grads: dict
    problems: dict  # node -> message, for backwards that returned malformed gradients
    trusted: frozenset  # custom op nodes whose complex-step probe agreed with central differences
    warnings: tuple
    #: what the numeric side perturbs: the plain pass itself in float64; for a float32 network,
    #: the same network re-run in float64 from its float32 leaves (so float32 rounding does not
    #: dominate the numeric estimate), whose own backward is `grads64`
    numeric_values: dict | None = None
    grads64: dict | None = None

    @property
    def nvalues(self) -> dict:
        return self.numeric_values if self.numeric_values is not None else self.values


def prepare(config: Config, graph: Graph | None = None) -> Prepared:
    """Build the graph (unless given one), run the plain forward and backward passes, probe
    custom ops."""
    try:
        return _prepare(config, graph)
    except GradverifyError as err:
        raise config.source.place(err) from None


def _prepare(config: Config, graph: Graph | None) -> Prepared:
    graph = graph if graph is not None else build(config)
    values = forward_checked(graph, config)
    loss = graph.nodes[graph.loss]
    if values[graph.loss].shape != (1,):
        raise config.error(f"the loss node {graph.loss!r} must be a scalar, but its shape is "
                           f"{list(values[graph.loss].shape[1:])}", "loss")
    problems: dict[str, str] = {}
    with np.errstate(all="ignore"):
        grads = graph.backward(values, problems)
    values64 = grads64 = None
    if config.dtype == "float32":
        leaves = {n: node.value.astype(np.float64) for n, node in graph.nodes.items() if node.op is None}
        with np.errstate(all="ignore"):
            values64 = graph.forward(leaves)
            grads64 = graph.backward(values64, {})
    trusted = frozenset(n for n, node in graph.nodes.items()
                        if node.op is not None and not node.op.complex_safe
                        and numeric.complex_probe(graph, values64 or values, n))
    notes = tuple(f"node {n!r} does not reach the loss {loss.name!r}: its gradient is zero"
                  for n in unused_nodes(graph))
    return Prepared(graph, values, grads, problems, trusted, notes, values64, grads64)


#: element-evaluations (perturbed elements × elements downstream) above which a check is "large"
LARGE_CHECK = 5e9


def estimated_cost(p: Prepared, names) -> float:
    """Elements perturbed × the elements each perturbation recomputes: the numeric side's work."""
    total = 0.0
    for name in names:
        size = p.values[name][0].size
        downstream = sum(p.values[n][0].size for n in p.graph.downstream(name))
        total += size * max(downstream, 1)
    return total


def run(config: Config, settings: Settings = Settings(), notify=None, progress=None,
        graph: Graph | None = None) -> Report:
    """Build the network (or take `graph`), run forward and backward, and check every (selected)
    node. `notify(message)` hears about a large check before it starts; `progress(node, done,
    total)` after every batch of perturbed copies."""
    p = prepare(config, graph)
    names = select_nodes(p.graph, settings.nodes)
    cost = estimated_cost(p, names)
    if notify and cost > LARGE_CHECK and not settings.fast and settings.sample is None:
        elements = sum(p.values[n][0].size for n in names)
        notify(f"this check perturbs {elements:,} elements ({cost:.1e} element-evaluations "
               "downstream); it may take a while. To check less: --sample K (K elements per node), "
               "--nodes PATTERN, or --fast (directional)")
    results = {}
    for name in names:
        start = time.perf_counter()
        if settings.fast:
            res = check_node_fast(p, name, config, settings)
        else:
            step = (lambda done, total, name=name: progress(name, done, total)) if progress else None
            res = check_node(p, name, config, settings, progress=step)
        results[name] = _replace(res, seconds=time.perf_counter() - start)
    results, blame = assign_blame(p, results, config, settings)
    for name, msg in p.problems.items():
        if name in results:
            results[name] = _replace(results[name], problem=msg)
    rows = [results[n] for n in names]
    if settings.split:
        rows += split_parts(p, names, config, settings)
    return _report(p, config, settings, rows, blame)


def split_parts(p: Prepared, names, config: Config, settings: Settings) -> list[NodeResult]:
    """Every parameter's gradient of loss_data and of loss_reg, checked separately: a large L2
    term cannot hide a data-loss bug (the cs231n notes' advice, automated)."""
    out = []
    for part in ("loss_data", "loss_reg"):
        if part not in p.graph.nodes:
            continue
        sub = Graph(nodes=p.graph.nodes, loss=part)
        with np.errstate(all="ignore"):
            grads = sub.backward(p.values, {})
        sp = Prepared(sub, p.values, grads, {}, p.trusted, (), p.numeric_values, None)
        for name in names:
            if p.graph.nodes[name].kind != "parameter":
                continue
            res = check_node(sp, name, config, settings)
            out.append(_replace(res, of=part))
    return out


def run_node(config: Config, name: str, settings: Settings = Settings(),
             index: str | None = None) -> Report:
    """Check one node (every element, or the one at `index`, e.g. "0,2")."""
    p = prepare(config)
    if name not in p.graph.nodes:
        raise UnknownNodeError(f"no node {name!r}{did_you_mean(name, p.graph.nodes)}; the nodes "
                               f"are: {', '.join(p.graph.nodes)}")
    indices = None
    if index is not None:
        indices = [parse_index(index, p.values[name].shape[1:], name)]
    result = check_node(p, name, config, settings, indices, problem=p.problems.get(name))
    return _report(p, config, settings, [result], ())


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


def _report(p: Prepared, config, settings, results, blame) -> Report:
    graph, values = p.graph, p.values
    loss = float(np.real(values[graph.loss]).reshape(-1)[0])

    def part(n):
        return float(np.real(values[n]).reshape(-1)[0]) if n in values and values[n].ndim == 1 else None

    methods = sorted({r.method for r in results})
    settings_out = {
        "method": settings.method, "methods_used": methods,
        "step": settings.step, "step_rule": step_rule(settings, methods),
        "rtol": {m: tolerance_for(m, config, settings)[0] for m in methods},
        "atol": {m: tolerance_for(m, config, settings)[1] for m in methods},
        "dtype": config.dtype, "seed": config.seed, "config": config.source.file,
        "mode": "directional" if settings.fast else ("sampled" if settings.sample else "full"),
        "sample": settings.sample, "sample_seed": settings.seed,
    }
    return Report(loss=loss, loss_data=part("loss_data"), loss_reg=part("loss_reg"),
                  settings=settings_out, nodes=tuple(results), blame=blame, strict=settings.strict,
                  warnings=p.warnings)


STEP_RULES = {
    "complex": "h = 1e-20·max(|x|, 1), Im f(x + ih)/h",
    "central": "h = ε^(1/3)·max(|x|, 1), error bar from 2h",
    "richardson": "h, h/2, h/4 with h = 1e-3·max(|x|, 1), extrapolated to O(h⁶)",
    "forward": "h = √ε·max(|x|, 1), error bar from h/2",
}


def step_rule(settings: Settings, methods=None) -> dict:
    """The step each method used, as text; kinks add their one-sided rule."""
    rules = {}
    for m in methods or STEP_RULES:
        rules[m] = (f"h = {settings.step:g}·max(|x|, 1)" if settings.step is not None else STEP_RULES[m])
    rules["kink"] = "one-sided second-order differences at h = ε^(1/3)·max(|x|, 1) and h/2"
    return rules


def run_sweep(config: Config, name: str, index: str | None = None):
    """The data of `gradverify sweep`: (index tuple, value, analytic, sweep data, chosen steps).
    Without `index`, the element with the largest |analytic| gradient."""
    p = prepare(config)
    if name not in p.graph.nodes:
        raise UnknownNodeError(f"no node {name!r}{did_you_mean(name, p.graph.nodes)}; the nodes "
                               f"are: {', '.join(p.graph.nodes)}")
    shape = p.values[name].shape[1:]
    a = np.asarray(p.grads[name], dtype=np.float64).reshape(-1)
    flat = parse_index(index, shape, name) if index is not None else int(np.argmax(np.abs(a)))
    data = numeric.sweep(p.graph, p.nvalues, name, flat)
    value = float(np.real(p.values[name]).reshape(-1)[flat])
    scale = max(abs(value), 1.0)
    chosen = {m: numeric.STEPS[m] * scale for m in ("forward", "central", "richardson", "complex")}
    chosen["complex"] = max(chosen["complex"], float(data["steps"][-1]))  # 1e-20 is off the plot
    idx = tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()
    return idx, value, float(a[flat]), data, chosen
