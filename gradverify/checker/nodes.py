"""Checking one node: every element (or a seeded sample) against its numeric estimate, or along
a few random directions (`--fast`)."""
from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np

from .. import numeric
from ..numeric.kinks import kink_candidates
from ..results import NodeResult, max_finite
from .compare import Comparison, compare
from .prepare import Run
from .together import judge_together

#: --fast: random directions per node, and at most this many suspects followed by bisection
FAST_DIRECTIONS = 3
FAST_MAX_SUSPECTS = 64


def _node_rng(run: Run, name: str) -> np.random.Generator:
    """A generator seeded by --seed and the node's name: the same draw for a node in every run."""
    return np.random.default_rng([run.settings.seed, zlib.crc32(name.encode())])


def check_node(run: Run, name: str, indices=None, problem: str | None = None,
               progress=None) -> NodeResult:
    """Compare one node's analytic gradient with its numeric estimate, element by element
    (every element, the given flat `indices`, or a seeded sample of `settings.sample`)."""
    s = run.settings
    total = run.values[name][0].size
    mode = "full"
    if indices is None and s.sample is not None and total > s.sample:
        indices = np.sort(_node_rng(run, name).choice(total, s.sample, replace=False))
        mode = "sampled"
    est = numeric.estimate(run.graph, run.nvalues, name, s.method, s.step, indices, s.max_memory,
                           trusted=run.trusted, progress=progress, cuts=run.cuts)
    est, note = _second_look(run, name, _recheck_shortcuts(run, name, est))
    return node_result(run, name, est, problem, total=total, mode=mode, more_notes=note)


#: failing elements estimated again without the user ops' shortcuts (at most this many)
RECHECK = 64


def _recheck_shortcuts(run: Run, name: str, est: numeric.Estimate) -> numeric.Estimate:
    """A user's op may have taken this node's copies in fewer calls than one per copy (userpush:
    probes and checks on every call allowed it). Failing elements (up to RECHECK, evenly spread)
    are estimated again with one call per copy; if an estimate moves by more than the two error
    bars, the shortcut misread the op (a coupling the probes missed): shortcuts go off for good
    and the whole node is estimated again."""
    ops = [op for n in run.graph.downstream(name) if (op := run.graph.nodes[n].fn).shortcuts]
    if not ops:
        return est
    s = run.settings
    a = np.asarray(run.grads[name], dtype=np.float64).reshape(-1)[est.index]
    bad = np.flatnonzero(compare(a, est, run.tolerance(est.method), run.tolerance("kink")).statuses != "pass")
    if not bad.size:
        return est
    pick = bad[np.unique(np.linspace(0, bad.size - 1, RECHECK).astype(int))]
    for op in ops:
        op.shortcuts = False
    again = numeric.estimate(run.graph, run.nvalues, name, s.method, s.step, est.index[pick], s.max_memory,
                             trusted=run.trusted)
    old, new = est.numeric[pick], again.numeric
    with np.errstate(invalid="ignore"):
        moved = np.abs(old - new) > 2 * (est.error[pick] + again.error) + 1e-12 * np.fmax(np.abs(old), np.abs(new))
    if not np.any(moved | (np.isnan(old) != np.isnan(new))):
        for op in ops:
            op.shortcuts = True
        return est
    if run.cuts is not None:  # cuts estimated through those shortcuts may have misread the op too
        run.cuts.forget_opaque()
    return numeric.estimate(run.graph, run.nvalues, name, s.method, s.step, est.index, s.max_memory,
                            trusted=run.trusted)


#: failing elements whose complex estimate central differences look at again (at most)
CONFIRM = 8


def _second_look(run: Run, name: str, est: numeric.Estimate) -> tuple[numeric.Estimate, tuple[str, ...]]:
    """What every estimate through code of yours gets before it is judged: its complex step
    confirmed (_confirm_complex), its kinks looked for (_opaque_kinks); (estimate, notes)."""
    est, note = _confirm_complex(run, name, est)
    return _opaque_kinks(run, name, est), note


def _confirm_complex(run: Run, name: str, est: numeric.Estimate) -> tuple[numeric.Estimate, tuple[str, ...]]:
    """The complex step goes through code of yours once its probe agreed with central
    differences (prepare's `trusted`), on a few entries and to ~1e-5; the complex step is then
    judged to ~1e-10. Code that carries the imaginary part only in part (np.real where the
    probe saw only zero derivatives: a ReLU's negative entries, inputs at its kink) made a right
    backward FAIL. So failing elements' complex estimates are looked at again (up to CONFIRM):
    where central differences at two steps 100× apart agree with each other and not with the
    complex step (`_apart`), it is not your code's derivative, and the whole node is estimated
    by central differences, with a note. Central differences that change with their step (a
    feature of your code narrower than it, a kink within it) decide nothing."""
    s = run.settings
    if est.method != "complex" or s.method != "auto" or not run.trusted.intersection(run.graph.downstream(name)):
        return est, ()
    a = np.asarray(run.grads[name], dtype=np.float64).reshape(-1)[est.index]
    bad = np.flatnonzero(compare(a, est, run.tolerance("complex"), run.tolerance("kink")).statuses == "fail")
    if not bad.size:
        return est, ()
    pick = bad[np.unique(np.linspace(0, bad.size - 1, CONFIRM).astype(int))]
    apart, c = _apart(run, name, est, pick)
    if not apart.any():
        return est, ()
    if run.cuts is not None:  # cuts estimated through that code's complex step are no better
        run.cuts.forget_opaque()
    users = sorted({run.graph.nodes[n].op_label for n in run.graph.downstream(name) if n in run.trusted})
    at = int(np.flatnonzero(apart)[0])
    note = (f"{name}: the complex step through your code ({', '.join(users)}) gives {est.numeric[pick][at]:.6g} "
            f"at element {int(est.index[pick][at])}, central differences {c[at]:.6g} at two steps: your "
            "forward carries the imaginary part only in part (np.real, np.abs, np.var of complex "
            "numbers), so the node is estimated by central differences")
    return numeric.estimate(run.graph, run.nvalues, name, "central", s.step, est.index, s.max_memory), (note,)


def _apart(run: Run, name: str, est: numeric.Estimate, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At est's elements `at`: do central differences at their step and 100× smaller, both
    clear of kinks (one-sided gaps within their noise: an element at a kink reads the mean of
    its one-sided slopes at every step), agree with each other, beyond both error bars from
    the complex estimate? (mask, central estimate)"""
    step, scale = numeric.METHODS["central"].step, max_finite(np.abs(est.numeric))
    wide, narrow = (numeric.estimate(run.graph, run.nvalues, name, "central", h, est.index[at],
                                     run.settings.max_memory) for h in (step, step / 100))
    z, c = est.numeric[at], narrow.numeric
    smooth = ~(wide.kink | narrow.kink | kink_candidates(wide, scale) | kink_candidates(narrow, scale))
    with np.errstate(invalid="ignore"):
        steady = np.abs(wide.numeric - c) <= 2 * (wide.error + narrow.error) + 1e-6 * np.abs(c)
        apart = np.abs(z - c) > 3 * (est.error[at] + narrow.error) + 1e-6 * np.abs(c)
    return smooth & steady & apart, c


def _opaque_kinks(run: Run, name: str, est: numeric.Estimate) -> numeric.Estimate:
    """Elements upstream of code the engine cannot see inside (custom ops declare no kinks) get a
    second look. Under real steps, a stencil may cross a kink near x: smaller ones first, and an
    element whose smaller stencil is clear of it takes that estimate (numeric.clear_of_kinks).
    Then, if an element's one-sided derivatives stay apart as the step shrinks, it sits on a
    kink and is judged against the interval between them (a steep but smooth function's close
    up). The failing elements are looked at, and in a small node those whose one-sided gap
    calls for it (numeric.kinks.kink_candidates). Under the complex step, a kink the scan finds
    with the complex estimate outside its interval is looked at again (_no_kink_after_all)."""
    if not any(run.graph.nodes[n].fn.opaque for n in run.graph.downstream(name)):
        return est
    a = np.asarray(run.grads[name], dtype=np.float64).reshape(-1)[est.index]
    judged = compare(a, est, run.tolerance(est.method), run.tolerance("kink"))
    node_scale = max_finite(np.abs(est.numeric))
    look = judged.statuses == "fail"
    if est.kink_gap is not None:
        look |= ~est.kink & kink_candidates(est, node_scale)
    bad = np.flatnonzero(look)
    if not bad.size:
        return est
    arrays = {f: getattr(est, f).copy() for f in ("numeric", "kink", "left", "right", "error", "crossings")}
    if est.method != "complex":
        d, err, clear = numeric.clear_of_kinks(run.graph, run.nvalues, name, est.index[bad], est.method,
                                               est.step, node_scale)
        arrays["numeric"][bad[clear]], arrays["error"][bad[clear]] = d[clear], err[clear]
        bad = bad[~clear]
    if bad.size:
        kink, left, right, err = numeric.detect_kinks(run.graph, run.nvalues, name, est.index[bad], node_scale)
        if est.method == "complex":
            kink &= ~_no_kink_after_all(run, name, est, bad, (kink, left, right, err), node_scale)
        pos = bad[kink]
        arrays["kink"][pos] = True
        arrays["crossings"][pos] = np.maximum(arrays["crossings"][pos], 1)
        arrays["left"][pos], arrays["right"][pos] = left[kink], right[kink]
        arrays["error"][pos] = err[kink]
    return replace(est, **arrays)


def _no_kink_after_all(run: Run, name: str, est: numeric.Estimate, bad: np.ndarray, scan: tuple,
                       node_scale: float) -> np.ndarray:
    """The kink scan's steps are relative to |x|: over values 1e5 ± 1 (a max pool's, 3×3 windows
    at stride 1) they are 100 wide and cross the neighbours' kinks, and a complex estimate equal
    to the analytic value fell outside the [left, right] they measured: FAIL. Where the scan
    puts the complex estimate outside its interval, central differences at shrinking steps
    (numeric.clear_of_kinks) look again: clear of kinks and agreeing with the complex estimate,
    the element is no kink. Returns that mask over `bad`."""
    kink, left, right, err = scan
    z = est.numeric[bad]
    with np.errstate(invalid="ignore"):
        outside = kink & ((z < np.fmin(left, right) - err) | (z > np.fmax(left, right) + err))
    look = np.flatnonzero(outside)
    none = np.zeros(len(bad), bool)
    if not look.size:
        return none
    d, derr, clear = numeric.clear_of_kinks(run.graph, run.nvalues, name, est.index[bad[look]], "central",
                                            numeric.METHODS["central"].step, node_scale)
    with np.errstate(invalid="ignore"):
        none[look] = clear & (np.abs(d - z[look]) <= 3 * (derr + est.error[bad[look]]) + 1e-6 * np.abs(d))
    return none


def node_result(run: Run, name: str, est: numeric.Estimate, problem: str | None = None,
                more_notes: tuple[str, ...] = (), **extra) -> NodeResult:
    """The record of one node's check from its estimate: errors and statuses per element
    (`more_notes`: what the estimate's second look found)."""
    rtol, atol = run.tolerance(est.method)
    full = np.asarray(run.grads[name], dtype=np.float64).reshape(-1)
    a = full[est.index]
    judged = compare(a, est, (rtol, atol), run.tolerance("kink"))
    extra.setdefault("grad_max", max_finite(np.abs(full)))
    rounded: tuple[str, ...] = ()
    if run.grads64 is not None:  # float32: how much of the error float32 alone explains
        m = numeric.METHODS[est.method]
        a64 = np.asarray(run.grads64[name], dtype=np.float64).reshape(-1)[est.index]
        in64 = compare(a64, est, (m.rtol, m.atol), numeric.KINK_TOLERANCE)
        extra["float64_rel_error"] = max_finite(in64.rel_error)
        judged, rounded = _float32_rounding(run, name, a, a64, est, judged, (rtol, atol), in64)
    judged, together = judge_together(run, name, est, a, judged)
    node = run.graph.nodes[name]
    extra.setdefault("line", run.line(name))
    notes, undecided = _undecided(name, a, est, judged, atol, extra.get("mode", "full"))
    notes += rounded + together + more_notes
    return NodeResult(name=name, kind=node.kind, op=node.op_label, shape=run.values[name].shape[1:],
                      method=est.method, rtol=rtol, atol=atol, step=est.step, flat=est.index,
                      value=np.real(run.values[name]).reshape(-1)[est.index].astype(np.float64),
                      analytic=a, numeric=est.numeric, error=est.error, left=est.left,
                      right=est.right, abs_error=judged.abs_error, rel_error=judged.rel_error,
                      statuses=judged.statuses, problem=problem, notes=notes, undecided=undecided,
                      **extra)


def _float32_rounding(run: Run, name: str, a: np.ndarray, a64: np.ndarray, est: numeric.Estimate,
                      judged: Comparison, tolerance: tuple[float, float],
                      in64: Comparison) -> tuple[Comparison, tuple[str, ...]]:
    """A float32 network's elements that FAIL only in float32: the same backward, run in float64
    on the same values, passes at float32's tolerance. Where every backward on the way from the
    loss is gradverify's own (dtype-agnostic code), their miss is float32's rounding of a right
    gradient — a small difference of large terms, a conv's weights before a batchnorm — and they
    PASS, with a note. Through your code it may as well be code that runs otherwise in float32
    (a cast, a float16 round trip): they stay FAILs, and the note says what the float64 re-run
    found."""
    # in float64 it passes, or both sides are below what the estimate resolves (a gradient that
    # is 0 in exact arithmetic, as a bias's before a batchnorm, estimated as rounding-sized)
    status64 = compare(a64, est, tolerance, numeric.KINK_TOLERANCE).statuses
    rounding = (judged.statuses == "fail") & np.isin(status64, ("pass", "floor")) & ~est.kink & np.isfinite(a)
    if not rounding.any():
        return judged, ()
    count, worst = int(rounding.sum()), float(np.max(np.abs(a - a64)[rounding]))
    in64_err = f"{max_finite(in64.rel_error[rounding]):.1e}"
    users = [run.graph.nodes[n].source for n in run.graph.downstream(name)
             if run.graph.nodes[n].source is not None]
    if users:
        return judged, (f"{count} failing element(s) of {name} pass when the same backward runs in "
                        f"float64 (relative error {in64_err}; float32 moves them by up to "
                        f"{worst:.1e}): float32 rounding of a right gradient, or code of yours "
                        f"({users[0]}) that runs otherwise in float32; dtype: float64 tells them apart",)
    statuses = np.where(rounding, status64, judged.statuses).astype(judged.statuses.dtype)
    note = (f"{count} element(s) of {name} miss only by float32 rounding: the same backward in "
            f"float64 passes (float32 moves them by up to {worst:.1e}, in float64 {in64_err} "
            "relative error); they pass" + (" or, as in float64, are below the floor"
                                           if np.any(status64[rounding] == "floor") else ""))
    return replace(judged, statuses=statuses), (note,)


def _undecided(name: str, a: np.ndarray, est: numeric.Estimate, judged, atol: float,
               mode: str) -> tuple[tuple[str, ...], bool]:
    """What the numbers could not decide about a node: (notes, no verdict for the whole node).
    A node none of whose elements was checked, or whose gradient is zero everywhere in both the
    analytic and the numeric sense (the loss does not depend on it to first order: a wrong
    backward that returns zeros there would agree too), gets no verdict; kink elements that
    cross several kinks at once and lie outside [left, right] get a note."""
    notes = []
    several = int(judged.undecided.sum())
    if several:
        notes.append(f"{several} element(s) of {name} cross several kinks at once: the analytic value "
                     "is outside [left, right], which bounds the valid subgradients only when one kink "
                     "is crossed; no verdict for them (KINK)")
    if not len(a):
        if mode != "directional":
            notes.append(f"no element of {name} was checked: no verdict")
        return tuple(notes), mode != "directional"
    if np.all(judged.statuses == "floor"):
        notes.append(f"every element of {name} is below what its estimate resolves (a gradient "
                     "that is 0 in exact arithmetic, as a bias's before a batchnorm, or error bars as "
                     "large as the values: float64 underflow or overflow on the way to the loss?); "
                     "no verdict")
        return tuple(notes), True
    zero = bool(np.all(a == 0) and np.all(np.abs(est.numeric) <= atol + est.error))
    if zero:
        notes.append(f"d loss / d {name} is zero everywhere, analytic and numeric: the loss does not "
                     "depend on it to first order, so this check cannot tell a right backward from a "
                     "wrong one; no verdict")
    return tuple(notes), zero


def check_node_fast(run: Run, name: str) -> NodeResult:
    """Directional check: compare vᵀ(analytic gradient) with the numeric derivative along v for
    a few random ±1 directions v (one or two evaluations each, whatever the node's size). On a
    mismatch or a kink, bisect v's support (numeric.bisect) and check the elements it isolates
    one by one."""
    s = run.settings
    total = run.values[name][0].size
    a = np.asarray(run.grads[name], dtype=np.float64).reshape(-1)
    rtol, atol = run.tolerance(numeric.node_method(run.graph, name, s.method, run.trusted))

    def judge(vs: np.ndarray):
        d, err, kink, _ = numeric.directional(run.graph, run.nvalues, name, vs, s.method, run.trusted)
        want = vs @ a
        scale = np.abs(vs) @ np.abs(a)  # Σ|v_i a_i|: what rounding in vᵀa is relative to
        off = np.abs(want - d)
        bad = ~(off <= atol + rtol * np.maximum(scale, np.abs(d)) + err) | kink
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(scale > 0, off / scale, 0.0)
        return bad, rel

    v = _node_rng(run, name).choice([-1.0, 1.0], size=(FAST_DIRECTIONS, total))
    bad, rel = judge(v)
    count, worst = FAST_DIRECTIONS, float(np.nanmax(rel, initial=0.0))
    suspects: list[np.ndarray] = []
    if bad.any():
        suspects, judged = numeric.bisect(lambda vs: judge(vs)[0], v[int(np.argmax(bad))],
                                          FAST_MAX_SUSPECTS)
        count += judged
    index = np.sort(np.concatenate(suspects)) if suspects else np.zeros(0, dtype=np.intp)
    est = numeric.estimate(run.graph, run.nvalues, name, s.method, s.step, index, s.max_memory,
                           trusted=run.trusted)
    est, note = _second_look(run, name, est)
    res = node_result(run, name, est, total=total, mode="directional", directions=count,
                      directional_error=worst, more_notes=note)
    if bad.any() and not index.size:
        # the directions disagree but no single element could be isolated: still a failure
        res = replace(res, problem=f"the directional derivative disagrees (relative error "
                                   f"{worst:.1e}) but bisection isolated no single element; "
                                   "run without --fast")
    return res
