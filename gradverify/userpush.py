"""A change of a user's op input pushed with fewer calls than one per copy, where a probe shows
the op allows it; otherwise the dense copies, one call each (custom.PythonOp.forward).

* Samples: perturbing x[n, …] of an op separable along the batch axis (affine, ReLU, a conv
  over N) changes sample n of the output alone: the changed samples go through one call.
* Slices: an op whose output slice j along axis 1 depends on one input's slice j along some axis
  alone (an affine's weight columns and bias, a conv's filters and bias) lets one call move an
  element in each of many slices at once: each copy's change is its own slice of that call's
  change (the Curtis–Powell–Reid compression of the Jacobian's columns). On a 64×128 weight,
  8,192 copies cost 64 calls instead of 8,192.

Each shortcut is probed before its first use and compared with the dense copies on the first
chunk that takes it; any disagreement turns it off for that input for good.
"""
from __future__ import annotations

import numpy as np

from .custom import PythonOp, UserCodeError, _same_copy
from .delta import Delta, Kind

#: how many copies the first use of a shortcut compares with their dense copies
VERIFY = 3


def push(op: PythonOp, slot: int, d: Delta, xs, out: np.ndarray) -> Delta | None:
    """The change of op's output for the copies d of input `slot`, or None: dense copies."""
    if type(op) is not PythonOp or not op.shortcuts or op.data or out.ndim < 2 or xs[slot].ndim < 2:
        return None
    res = push_samples(op, slot, d, xs, out)
    if res is None and d.kind in (Kind.ELEM, Kind.COL):
        res = push_slices(op, slot, d, xs, out)
    return res


def _call(op: PythonOp, slot: int, xs, moved: np.ndarray) -> np.ndarray | None:
    """The forward with input `slot` replaced by `moved` (one call), None if the op refuses it."""
    args = [moved if k == slot else np.array(x[0]) for k, x in enumerate(xs)]
    try:
        return op._output(op._call(op._forward, *args, **op._attrs()), op._forward)
    except UserCodeError:
        return None


def _agrees(op: PythonOp, slot: int, d: Delta, xs, out: np.ndarray, change: Delta,
            pick: np.ndarray) -> bool:
    """Copies `pick` of a shortcut's change against the same copies run dense, one call each."""
    some = Delta(d.kind, d.at[pick], d.vals[pick], d.shape)
    dense = op.forward(*[some.dense(x) if k == slot else x for k, x in enumerate(xs)])
    return _same_copy(change.dense(out)[pick], dense)


def changed_samples(d: Delta, x: np.ndarray):
    """(n, samples): the sample each copy changes (the first axis of the node's core shape) and
    the changed samples themselves, (k, *shape[1:]); None for a change that is not one sample
    per copy."""
    if d.kind == "row":
        return d.at, x[0][d.at] + d.vals
    if d.kind != "elem" or len(d.shape) < 2:
        return None
    n = d.at[:, 0]
    samples = x[0][n].astype(np.result_type(x, d.vals))
    samples[(np.arange(d.k),) + tuple(d.at[:, 1:].T)] += d.vals
    return n, samples


def push_samples(op: PythonOp, slot: int, d: Delta, xs, out: np.ndarray) -> Delta | None:
    """The changed samples only, through one call on them. The first time compared with the
    dense copies; None where that disagreed (batch norm) or cannot be done."""
    changed = changed_samples(d, xs[slot])
    if changed is None or op.row_push.get(slot) is False:
        return None
    at, samples = changed
    new = _call(op, slot, xs, samples)
    if new is None or new.shape != (len(at),) + out.shape[2:]:
        op.row_push[slot] = False
        return None
    if out.ndim == 3:
        change = Delta.row(at, new - out[0][at], out.shape[1:])
    else:
        vals = np.zeros((len(at),) + out.shape[1:], dtype=np.result_type(new, out))
        vals[np.arange(len(at)), at] = new - out[0][at]
        change = Delta.full(vals, out.shape[1:])
    if slot not in op.row_push:  # the first time: dense copies must agree, three of those
        # whose sample sits elsewhere than their row among the k (a random op draws its mask
        # for k samples, not for the batch: such a copy's row then differs)
        away = np.flatnonzero(at != np.arange(len(at)))
        if not away.size:
            return None  # not decided yet: the dense copies, this time
        pick = away[np.unique(np.linspace(0, away.size - 1, VERIFY).astype(int))]
        op.row_push[slot] = _agrees(op, slot, d, xs, out, change, pick)
        if not op.row_push[slot]:
            return None
    return change


def push_slices(op: PythonOp, slot: int, d: Delta, xs, out: np.ndarray) -> Delta | None:
    """Copies that each move one element, or one slice along core axis 1 (COL): grouped so
    that no two in a group share a slice of the aligned axis, one call per group, each copy's
    change read off its slice (a COL change of the output). None where the op is not
    separable that way."""
    if out.ndim < 3:
        return None
    if slot not in op.slice_axis:
        op.slice_axis[slot] = aligned_axis(op, slot, xs, out)
    axis = op.slice_axis[slot]
    if axis is None or (d.kind is Kind.COL and axis != 1):
        return None
    j = d.at if d.kind is Kind.COL else d.at[:, axis]
    group = _occurrence(j)
    x = xs[slot]
    moved = np.repeat(x.astype(np.result_type(x, d.vals)), int(group.max()) + 1, axis=0)
    if d.kind is Kind.COL:
        moved[group, :, j] += d.vals
    else:
        moved[(group,) + tuple(d.at.T)] += d.vals
    try:
        new = op.forward(*[moved if k == slot else v for k, v in enumerate(xs)])
    except UserCodeError:  # the dense copies will say what the op has against them
        new = None
    if new is None or new.shape[1:] != out.shape[1:]:
        op.slice_axis[slot] = None
        return None
    by_slice = np.swapaxes(new - out, 1, 2)  # (groups, L, N, …)
    if moved_elsewhere(by_slice, group, j):
        op.slice_axis[slot] = None
        return None
    change = Delta.col(j, by_slice[group, j], out.shape[1:])  # copy b's slice j_b
    if slot not in op.slices_checked:
        pick = np.unique(np.linspace(0, d.k - 1, VERIFY).astype(int))
        if not _agrees(op, slot, d, xs, out, change, pick):
            op.slice_axis[slot] = None
            return None
        op.slices_checked.add(slot)
    return change


def copy_order(op: PythonOp, slot: int, index: np.ndarray, xs, out: np.ndarray) -> np.ndarray | None:
    """The elements `index` of input `slot` with the slices of its aligned axis taken in turn
    (rank 0 of every slice, then rank 1, …), so that a chunk of copies spreads over all slices
    and push_slices moves one element of each per call. In flat order a conv's filters (aligned
    along axis 0) sit one after the other: a chunk holds one filter's elements, a call each.
    None where flat order serves: the aligned axis is the last (an affine's weight columns
    already alternate), there is none, or the input's first axis is the batch's (push_samples
    takes those copies; its aligned axis is not probed for nothing)."""
    shape = xs[slot].shape[1:]
    if type(op) is not PythonOp or not op.shortcuts or op.data or out.ndim < 3 or len(shape) < 2 \
            or shape[0] == out.shape[1]:
        return None
    if slot not in op.slice_axis and all(int(np.prod(shape[a + 1:])) == 1 for a in range(len(shape))
                                         if shape[a] == out.shape[2]):
        return None  # along every axis that could be aligned, flat order takes the slices in turn
    if slot not in op.slice_axis:
        op.slice_axis[slot] = aligned_axis(op, slot, xs, out)
    axis = op.slice_axis[slot]
    if axis is None or axis == xs[slot].ndim - 2:
        return None
    j = np.unravel_index(index, shape)[axis]
    return np.lexsort((j, _occurrence(j)))


def moved_elsewhere(by_slice: np.ndarray, group: np.ndarray, j: np.ndarray) -> bool:
    """Did a call change a slice that none of its copies moved? (A coupling between slices that
    the probes missed; one into a moved slice makes that copy's change wrong, and the checker's
    recheck of failing elements sees it.) With the complex step, the imaginary part must be 0
    there exactly; with real steps, the change itself."""
    untouched = np.ones(by_slice.shape[:2], bool)
    untouched[group, j] = False
    rest = by_slice[untouched]
    return bool(np.any(rest.imag != 0) if np.iscomplexobj(rest) else np.any(rest != 0))


def _occurrence(j: np.ndarray) -> np.ndarray:
    """For each entry, how many earlier entries have the same value: copies with equal slices
    go to different groups, copies of distinct slices share one."""
    order = np.argsort(j, kind="stable")
    sj = j[order]
    first = np.flatnonzero(np.r_[True, sj[1:] != sj[:-1]])
    runs = np.diff(np.r_[first, len(sj)])
    rank = np.arange(len(sj)) - np.repeat(first, runs)
    out = np.empty_like(rank)
    out[order] = rank
    return out


def aligned_axis(op: PythonOp, slot: int, xs, out: np.ndarray) -> int | None:
    """The axis a of input `slot` whose slice j moves only the output's slice j along its axis 1
    (None if no axis does), probed by group testing over every pair of slices: each slice gets
    a random move of its own, and for each bit of the slice index one call moves the slices
    whose bit is 1, another those whose bit is 0, each once forward and once backward. Every
    slice not moved in a call must come out as in the plain pass, and every moved slice alike in
    all the calls that move it the same way, bit for bit. Two slices differ in some bit, so a
    coupling from either into the other shows: 4·⌈log₂ L⌉ calls for all L² pairs."""
    x = xs[slot][0]
    length = out.shape[2]
    rng = np.random.default_rng(0)
    bits = max(int(length - 1).bit_length(), 1)
    member = (np.arange(length)[None, :] >> np.arange(bits)[:, None]) & 1 == 1  # (bits, L)
    moved = np.concatenate([member, ~member] * 2)  # (4·bits, L): the slices each call moves
    sign = np.repeat([1.0, -1.0], 2 * bits)  # every call once each way: a coupling through a tie
    # (a max of slices sitting level) shows on one side only
    for axis in [a for a in range(x.ndim) if x.shape[a] == length and length >= 2][::-1]:
        scale = 1e-3 * (float(np.abs(x).max(initial=0.0)) + 1.0)
        step = np.moveaxis(rng.normal(size=x.shape) * scale, axis, 0)  # one move per slice
        moves = (moved * sign[:, None]).reshape(moved.shape + (1,) * (x.ndim - 1)) * step[None]
        moves = np.moveaxis(moves, 1, axis + 1)
        try:
            new = op.forward(*[x[None] + moves if k == slot else v for k, v in enumerate(xs)])
        except UserCodeError:
            return None
        if new.shape[1:] == out.shape[1:] and _separable(new, out[0], moved):
            return axis
    return None


def _separable(new: np.ndarray, plain: np.ndarray, moved: np.ndarray) -> bool:
    """new (calls, N, L, …) from the calls that moved the slices `moved` (calls, L), the first
    half forward and the second backward: each slice not moved as in plain (N, L, …), each moved
    one the same in every call that moved it the same way."""
    by_slice = np.swapaxes(new, 1, 2)  # (calls, L, N, …)
    base = np.swapaxes(plain, 0, 1)[None]
    if not np.array_equal(by_slice[~moved], np.broadcast_to(base, by_slice.shape)[~moved]):
        return False
    half = len(moved) // 2
    slices = np.arange(moved.shape[1])
    for way in (slice(0, half), slice(half, None)):
        outs, moves = by_slice[way], moved[way].copy()  # (calls, L, N, …), (calls, L)
        first = np.argmax(moves, axis=0)  # each slice against the first call moving it
        moves[first, slices] = False  # (not against itself: a NaN is unequal even to itself)
        same = (outs == outs[first, slices][None]).reshape(outs.shape[:2] + (-1,)).all(axis=2)
        if not np.all(same | ~moves):
            return False
    return True
