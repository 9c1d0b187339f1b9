"""Diagnosis: the patterns real backward bugs leave in a failing node's numbers, said in words.

Each recogniser looks at one failing node (analytic a, numeric n, per element) and returns a
plain sentence with numbers, or None when its pattern does not fit. A pattern "fits" only when it
explains every judged element to within that element's own tolerance,

    |a_i − model_i| ≤ atol + rtol·max(|a_i|, |model_i|) + e_i     (e_i: the estimate's error bar)

the same rule that judged the element, so a pattern is never claimed because it is roughly true.
Nothing is said about a node that passes, and when nothing fits nothing is said.

* constant ratio: a = r·n with one r ≠ 1 (least squares r = Σ a n / Σ n², then the rule);
* analytic zero where the numeric is not: a_i = 0 at every failing element;
* transpose: a = nᵀ (the answer for the right matrix, laid out the other way);
* an offset constant along an axis: a − n = f(i_k) (depends on one index only), or for a matrix
  a − n = r_i + c_j (a sum or mean taken over the wrong axis);
* confinement: every failing element lies in a few rows / columns / channels / batch elements /
  time steps, or on the border of an image.
"""
from __future__ import annotations

import numpy as np

from ..results import NodeResult

#: axis names by rank, in the layouts the cs231n code uses: (N, D), (N, T, H), (N, C, H, W)
AXES = {1: ("index",), 2: ("row", "column"), 3: ("batch element", "time step", "feature"),
        4: ("batch element", "channel", "row", "column")}
#: an integer guess for 1/r or r must be this close (relative) to be offered
INTEGER_MATCH = 1e-6


def _judged(n: NodeResult) -> np.ndarray:
    """Elements a pattern must explain: judged (pass or fail, not kinks or the noise floor) and
    finite on both sides."""
    ok = (n.statuses == "pass") | (n.statuses == "fail")
    return ok & np.isfinite(n.analytic) & np.isfinite(n.numeric)


def _fits(n: NodeResult, model: np.ndarray, mask: np.ndarray) -> bool:
    """Does `model` reproduce the analytic gradient at every `mask` element, by the judging rule?"""
    if not mask.any():
        return False
    a, e = n.analytic[mask], n.error[mask]
    m = model[mask]
    e = np.where(np.isfinite(e), e, np.inf)
    return bool(np.all(np.abs(a - m) <= n.atol + n.rtol * np.maximum(np.abs(a), np.abs(m)) + e))


def _full(n: NodeResult) -> bool:
    """Every element of the node was checked (patterns over the tensor's layout need them all)."""
    return n.size == int(np.prod(n.shape, dtype=np.int64)) and n.size > 0


def _grid(n: NodeResult, values: np.ndarray) -> np.ndarray:
    """Per-element values laid out in the node's shape (full checks only)."""
    out = np.empty(n.size, dtype=values.dtype)
    out[n.flat] = values
    return out.reshape(n.shape)


def _g(v: float) -> str:
    return f"{v + 0.0:.3g}"


def _factor_guess(r: float, shape: tuple[int, ...]) -> str:
    """What a ratio r = analytic/numeric suggests: sign, factor 2, or 1/N with N an axis's size."""
    mag = abs(r)
    sign = "the sign is flipped" if r < 0 else ""
    if abs(mag - 1) <= INTEGER_MATCH:  # r ≈ -1 (constant_ratio says r ≈ 1 itself)
        return "the sign is flipped (a minus too many or too few)"
    if abs(mag - 2) <= 2 * INTEGER_MATCH or abs(mag - 0.5) <= INTEGER_MATCH:
        what = "a factor 2 too many" if mag > 1 else "a factor 2 missing"
        hint = f"{what} (the 2 of d(x²)/dx = 2x, a term counted twice, or a 1/p with p = 0.5?)"
        return f"{sign} and {hint}" if sign else hint
    k = 1 / mag if mag < 1 else mag
    if abs(k - round(k)) <= INTEGER_MATCH * k and round(k) >= 2:
        N = int(round(k))
        axes = [i for i, s in enumerate(shape) if s == N]
        where = f" (the size of axis {axes[0]})" if axes else ""
        guess = (f"a missing 1/N with N = {N}?{where}" if mag > 1 else
                 f"a 1/N too many, or a factor N missing, with N = {N}?{where}")
        return f"{sign}, and {guess}" if sign else f"a missing or extra factor — {guess}"
    return f"{sign}, and a missing or extra factor" if sign else "a missing or extra factor"


def constant_ratio(n: NodeResult) -> str | None:
    """analytic ≈ r × numeric at every judged element, r ≠ 1 (at least two clearly nonzero)."""
    mask = _judged(n)
    a, num = n.analytic[mask], n.numeric[mask]
    clear = np.abs(num) > n.atol + n.rtol * np.abs(num) + np.where(np.isfinite(n.error[mask]), n.error[mask], np.inf)
    if clear.sum() < 2:
        return None
    r = float(np.dot(a, num) / np.dot(num, num))
    if not np.isfinite(r) or r == 0 or not _fits(n, r * n.numeric, mask):
        return None
    if _fits(n, n.numeric, mask):
        return None  # r ≈ 1: the elements agree; whatever fails is not a factor
    if abs(r - 1) <= INTEGER_MATCH:  # a ratio too close to 1 for 3 digits to show it
        return (f"analytic ≈ (1 {'+' if r > 1 else '−'} {abs(r - 1):.1e}) × numeric at all {int(mask.sum())} "
                "elements checked: a constant slightly off (rounded, taken in float32, or an ε added on "
                "one side only?)")
    return (f"analytic ≈ {_g(r)} × numeric at all {int(mask.sum())} elements checked: "
            f"{_factor_guess(r, n.shape)}")


def missing_path(n: NodeResult) -> str | None:
    """The analytic gradient is exactly 0 at every failing element, the numeric is not."""
    bad = n.statuses == "fail"
    if not bad.any() or not np.all(n.analytic[bad] == 0):
        return None
    nums = np.abs(n.numeric[bad])
    if not np.all(np.isfinite(nums)):
        return None
    everywhere = bool(np.all(n.analytic[_judged(n)] == 0))
    where = "everywhere" if everywhere else f"at all {int(bad.sum())} failing elements"
    return (f"the analytic gradient is 0 {where} while the numeric one is not (up to "
            f"{_g(float(nums.max()))}): a gradient path is missing (a term never added, or a "
            "gradient never written back)")


def transpose(n: NodeResult) -> str | None:
    """analytic = numericᵀ (square matrices; or a transposed answer reshaped into the shape)."""
    if len(n.shape) != 2 or not _full(n) or 1 in n.shape:
        return None
    mask = _judged(n)
    if not mask.all():
        return None
    flipped = np.ascontiguousarray(_grid(n, n.numeric).T).reshape(-1)  # numericᵀ, read row-major
    model = flipped[n.flat]
    if not _fits(n, model, mask) or _fits(n, n.numeric, mask):
        return None
    rows, cols = n.shape
    layout = "the transpose of the right answer" if rows == cols else (
        f"the right answer transposed ({cols}×{rows}) and reshaped to {rows}×{cols}")
    return f"analytic = numericᵀ: the gradient is {layout} (an operand order swapped, e.g. x.T @ dout vs dout.T @ x)"


def _axis_word(rank: int, axis: int, count: int) -> str:
    names = AXES.get(rank, ())
    word = names[axis] if axis < len(names) else f"index along axis {axis}"
    if count == 1:
        return word
    return {"batch element": "batch elements", "index": "indices"}.get(word, word + "s")


def _which(idx: list[int], size: int) -> tuple[str, str]:
    """The indices as words ("3", "15–19", "0, 4, 7, …") and ", the last" / ", the first" when
    they are the axis's last or first."""
    where = ", the last" if idx[-1] == size - 1 and size > 1 else (", the first" if idx[0] == 0 and size > 1 else "")
    if len(idx) > 2 and idx[-1] - idx[0] == len(idx) - 1:
        return f"{idx[0]}–{idx[-1]}", where
    if len(idx) > 1:
        where = ""
    return ", ".join(map(str, idx[:4])) + (", …" if len(idx) > 4 else ""), where


def confined(n: NodeResult) -> str | None:
    """Every failing element in a few slices along one axis, or on an image's border."""
    if not _full(n) or not n.shape:
        return None
    bad = _grid(n, (n.statuses == "fail") | (n.statuses == "nonfinite"))
    count, total = int(bad.sum()), bad.size
    if count == 0 or count == total:
        return None
    head = f"{count} of {total} elements fail, all"
    best = None
    for axis, size in enumerate(n.shape):
        if size < 2:
            continue
        hit = np.flatnonzero(bad.any(axis=tuple(k for k in range(bad.ndim) if k != axis)))
        if len(hit) <= max(1, size // 4) and (best is None or len(hit) / size < best[2]):
            best = (axis, hit.tolist(), len(hit) / size)
    if best is not None:
        axis, hit, _ = best
        words = _axis_word(len(n.shape), axis, len(hit))
        which, where = _which(hit, n.shape[axis])
        if len(n.shape) == 1:
            return f"{head} at {words} {which}" + (f" ({where[2:]})" if where else "")
        return f"{head} in {words} {which} (axis {axis}{where})"
    if len(n.shape) >= 2 and n.shape[-1] >= 3 and n.shape[-2] >= 3:
        h, w = n.shape[-2:]
        ring = np.zeros((h, w), bool)
        ring[[0, -1], :] = ring[:, [0, -1]] = True
        if not bad[..., ~ring].any():
            return (f"{head} on the border (the first or last row or column of the {h}×{w} "
                    "image): padding, or the edge of a window, handled wrong?")
    return None


def _axis_offset(n: NodeResult, d: np.ndarray, mask: np.ndarray) -> str | None:
    """a − n depends on one index only: f(i_k) for some axis k."""
    for axis, size in enumerate(n.shape):
        if size < 2 or d.size < 2 * size:
            continue  # f(i_k) must be overdetermined: at least two elements per value of i_k
        others = tuple(k for k in range(d.ndim) if k != axis)
        f = d.mean(axis=others, keepdims=True)
        model = (_grid(n, n.numeric) + f).reshape(-1)[n.flat]
        if _fits(n, model, mask):
            word = _axis_word(len(n.shape), axis, 1)
            flat_f = f.reshape(-1)
            if np.ptp(flat_f) <= 1e-12 * max(float(np.abs(flat_f).max()), 1e-300):
                continue  # the same everywhere: said by the caller
            return (f"analytic − numeric is a constant per {word} (axis {axis}, from {_g(float(flat_f.min()))} "
                    f"to {_g(float(flat_f.max()))}): a sum or mean over the wrong axis (a bias's or "
                    "a mean's gradient)?")
    return None


def offset(n: NodeResult) -> str | None:
    """a − n constant, constant along an axis, or (matrices) a row constant plus a column one."""
    if not _full(n) or not n.shape or n.size < 3:
        return None
    mask = _judged(n)
    if (n.statuses == "nonfinite").any() or not (n.statuses == "fail").any():
        return None
    d = _grid(n, np.where(mask, n.analytic - n.numeric, 0.0))
    c = float(d[_grid(n, mask)].mean()) if mask.any() else 0.0
    if c != 0 and _fits(n, n.numeric + c, mask):
        return (f"analytic − numeric = {_g(c)} at every element: a constant added (or not "
                "subtracted) in the backward")
    said = _axis_offset(n, d, mask)
    if said or len(n.shape) != 2 or n.size < 2 * (sum(n.shape) - 1):
        return said  # r_i + c_j has rows + columns − 1 free values: at least twice as many elements
    r = d.mean(axis=1, keepdims=True)
    col = d.mean(axis=0, keepdims=True) - d.mean()
    model = (_grid(n, n.numeric) + r + col).reshape(-1)[n.flat]
    if _fits(n, model, mask):
        return ("analytic − numeric = a constant per row + a constant per column: a sum or mean "
                "taken over the wrong axis (a bias's or a mean's gradient)?")
    return None


#: tried in this order; a node can have several (a missing path confined to one column)
RECOGNISERS = (constant_ratio, missing_path, transpose, offset, confined)


def diagnose(n: NodeResult) -> str | None:
    """The sentences that fit a failing node, joined; None when it passes or nothing fits."""
    if n.status != "fail" or n.problem or not n.size:
        return None
    fail = n.statuses == "fail"
    finite = bool(np.all(np.isfinite(n.analytic[fail])) and np.all(np.isfinite(n.numeric[fail])))
    said: list[str] = []
    for recognise in RECOGNISERS if finite else (confined,):
        if recognise is offset and said:
            continue  # a ratio or a missing path already explains the difference
        with np.errstate(all="ignore"):
            hint = recognise(n)
        if hint:
            said.append(hint)
    return "; ".join(said) or None
