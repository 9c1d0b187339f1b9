"""The numeric methods: one table, one estimator per row.

For an element x with scale s = max(|x|, 1), each estimator perturbs x by multiples of a step
h = rel_step·s and turns the loss changes into a derivative and an error bar:

* complex:    Im f(x + ih) / h, h = 1e-20·s (at most 1e-8·|x| for a tiny non-zero x). No
              subtraction, so no cancellation: exact to rounding. Needs every op downstream to be
              complex-analytic (all built-ins are).
* central:    (f(x+h) - f(x-h)) / 2h, h = ε^(1/3)·s; error bar from the same at 2h.
* richardson: central differences at h, h/2, h/4 extrapolated twice (error O(h⁶)), h = 1e-3·s.
* forward:    (f(x+h) - f(x)) / h, h = √ε·s (the notebook's method, for comparison).
* taylor:     not per element but per node (numeric/taylor.py): the order of the remainder
              |L(x + hv) − L(x) − h⟨g, v⟩| on a ladder of steps along a few random directions;
              where an element estimate is still needed under it (`node`'s table, --split's parts,
              blame's edge probes) it falls back to central differences.

A new method is one estimator and one row of METHODS.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .prober import Prober

EPS = float(np.finfo(np.float64).eps)

#: an estimator: (prober, flat indices, x, scale, relative step, loss) -> (derivative, error bar,
#: crossed a kink), one entry per index
Estimator = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Method:
    """One numeric method: how it estimates, its step, its cost and how it is judged."""

    name: str
    estimate: Estimator
    step: float  # relative step: h = step·max(|x|, 1)
    evals: int  # copies of the node each element costs (for sizing chunks)
    rtol: float  # default tolerances: the complex step is exact to rounding, so its rtol can
    atol: float  # catch a backward wrong by 1e-9; the real methods' error bars carry the rest
    step_rule: str  # the step, as the report prints it
    title: str  # "complex step"
    mark: str  # its letter in `gradverify sweep`'s plot
    #: the largest relative step (--step) whose truncation error the error bar still bounds:
    #: measured on the bundled networks, where every larger power of 10 made a correct op fail
    max_step: float = 1e-3


def _points(x: np.ndarray, h: np.ndarray, multiples) -> list[np.ndarray]:
    return [x + m * h for m in multiples]


def _rounding(loss: float, h: np.ndarray, factor: float) -> np.ndarray:
    """A real difference's rounding error: factor·ε·|loss| / h."""
    return factor * EPS * (np.abs(loss) + 1e-300) / h


def central(prober: Prober, idx, x, scale, rel_step, loss):
    """Central difference at h and 2h: estimate D(h), error bar |D(2h) - D(h)| + rounding.
    D(h) - f' = c h² + O(h⁴), so D(2h) - D(h) = 3c h² + O(h⁴): three times D(h)'s truncation error
    where h² dominates, and more than it where h⁴ does (a step too large for the asymptotics)."""
    h = rel_step * scale
    pts = _points(x, h, (1, -1, 2, -2))
    f, crossed = prober.run(idx, pts)
    d1 = (f[0] - f[1]) / (pts[0] - pts[1])
    d2 = (f[2] - f[3]) / (pts[2] - pts[3])
    return d1, np.abs(d2 - d1) + _rounding(loss, h, 4), crossed


def richardson(prober: Prober, idx, x, scale, rel_step, loss):
    """Central differences at h, h/2, h/4, extrapolated: O(h²) -> O(h⁴) -> O(h⁶); error bar the
    change of the last extrapolation (an upper bound on the result's error, as for central)."""
    h = rel_step * scale
    pts = _points(x, h, (1, -1, 0.5, -0.5, 0.25, -0.25))
    f, crossed = prober.run(idx, pts)
    d = [(f[2 * i] - f[2 * i + 1]) / (pts[2 * i] - pts[2 * i + 1]) for i in range(3)]
    r1 = (4 * d[1] - d[0]) / 3
    r2 = (4 * d[2] - d[1]) / 3
    r = (16 * r2 - r1) / 15
    return r, np.abs(r2 - r1) + _rounding(loss, h, 16), crossed


def forward(prober: Prober, idx, x, scale, rel_step, loss):
    """(f(x+h) - f(x)) / h, error bar from the same at h/2 (first order: twice the change)."""
    h = rel_step * scale
    pts = _points(x, h, (1, 0.5))
    f, crossed = prober.run(idx, pts)
    d1 = f[0] / (pts[0] - x)  # f holds changes of the loss: f(x + h) - f(x)
    d2 = f[1] / (pts[1] - x)
    return d1, 2 * np.abs(d1 - d2) + _rounding(loss, h, 4), crossed


#: below this relative step the complex step's truncation error, h²·f'''/6, is below rounding
COMPLEX_EXACT_BELOW = 1e-9
#: a second complex step this many times larger, where imaginary parts may underflow
UNDERFLOW_PROBE = 1e10


def complex_step(prober: Prober, idx, x, scale, rel_step, loss):
    """Im f(x + ih) / h: one evaluation, no cancellation; at the default h = 1e-20 rounding is the
    only error. h stays below 1e-8·|x| so that even a tiny x (1e-300, inside a log) is linearized.

    Two things can spoil it, and then the error bar says by how much: a step chosen large enough
    for truncation to matter (D(h) = f' - h² f'''/6 + …; D(2h) is evaluated too, and |D(2h) - D(h)|
    joins the error bar, as for central differences), and values downstream so tiny (near
    float64's underflow) that the imaginary parts 1e-20 times smaller underflow to zero or lose
    their digits (D at a step 1e10 larger is evaluated too, and the difference joins the bar).
    Each extra estimate adds twice its difference from D(h): it is not exact either."""
    h = rel_step * scale
    tiny = (x != 0) & (np.abs(x) < 1e-12)
    h = np.where(tiny, np.copysign(np.maximum(1e-8 * np.abs(x), 1e-307), rel_step), h)  # -h stays -h
    steps = [h]
    if rel_step >= COMPLEX_EXACT_BELOW:
        steps.append(2 * h)
    if prober.underflow_risk or tiny.any():
        steps.append(h * UNDERFLOW_PROBE)
    if len(steps) == 1 and prober.cuts:  # linear in the step: may stop at the cuts
        f, crossed, carried = prober.run_linear(idx, x + 1j * h)
        d = f[0].imag / h
        return d, 4 * EPS * np.abs(d) + carried / h, crossed
    f, crossed = prober.run(idx, [x + 1j * s for s in steps], mode="complex")
    d = f[0].imag / h
    err = 4 * EPS * np.abs(d)
    for k, s in enumerate(steps[1:], 1):  # twice the change: the other estimate has errors too
        err = err + 2 * np.abs(f[k].imag / s - d)
    return d, err, crossed


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("complex", complex_step, 1e-20, 1, 1e-10, 1e-13,
           "h = 1e-20·max(|x|, 1), Im f(x + ih)/h", "complex step", "i", 1e-2),
    Method("central", central, EPS ** (1 / 3), 4, 1e-6, 1e-9,
           "h = ε^(1/3)·max(|x|, 1), error bar from 2h", "central differences", "c", 3e-3),
    Method("richardson", richardson, 1e-3, 6, 1e-8, 1e-11,
           "h, h/2, h/4 with h = 1e-3·max(|x|, 1), extrapolated to O(h⁶)", "Richardson extrapolation", "r",
           1e-2),
    Method("forward", forward, EPS ** 0.5, 2, 1e-4, 1e-7,
           "h = √ε·max(|x|, 1), error bar from h/2", "forward differences", "f", 1e-4),
    Method("taylor", central, 1e-2, 4, 1e-6, 1e-9,
           "order of R(h) = |L(x+hv) − L(x) − h⟨g,v⟩| on h = 1e-2·max(|x|, 1)·2^-k, k < 16, along 3 "
           "Gaussian directions v per node: PASS at order ≥ 1.75, FAIL at ≤ 1.25", "Taylor test", "t",
           1e-1),
)}
#: methods judged per node rather than per element (not in `gradverify sweep`'s error plot)
PER_NODE = ("taylor",)
#: `auto`: the complex step where every op downstream allows it, central differences elsewhere
AUTO = "auto"
CHOICES = (AUTO,) + tuple(METHODS)


def step_problem(method: str, step: float) -> str | None:
    """Why a user's relative step cannot be judged with `method` (None when it can)."""
    used = ("complex", "central") if method == AUTO else (method,)
    limit = min(METHODS[m].max_step for m in used)
    if step > limit:
        return (f"--step {step:g} is larger than {method} can be judged at (at most {limit:g}): "
                "the error bar no longer bounds the truncation error there; `gradverify sweep NODE` "
                "shows how each method's error grows with the step")
    return None
#: a float32 network's tolerance, whatever the method: float32 rounding dominates
FLOAT32_TOLERANCE = (1e-4, 1e-6)

#: one-sided differences at a kink: relative step, and the rule as printed; left and right are
#: real differences, so an element at a kink is judged with their tolerance (central
#: differences'), whatever method estimated the rest of its node
ONE_SIDED_STEP = EPS ** (1 / 3)
KINK_TOLERANCE = (1e-6, 1e-9)
ONE_SIDED_RULE = "one-sided second-order differences at h = ε^(1/3)·max(|x|, 1) and h/2"


def one_sided(prober: Prober, idx, x, scale, loss, rel_step=ONE_SIDED_STEP):
    """Left and right derivatives by second-order one-sided differences at h and h/2:
    D₊(h) = (-3f(x) + 4f(x+h) - f(x+2h)) / 2h, and the mirror image for the left.
    Returns left, right and an error bar for each."""
    h = rel_step * scale
    pts = _points(x, h, (0.5, 1, 2, -0.5, -1, -2))
    f, _ = prober.run(idx, pts)
    out = []
    for s, (a, b, c) in ((1, (0, 1, 2)), (-1, (3, 4, 5))):
        coarse = (4 * f[b] - f[c]) / (2 * s * h)  # f holds changes: f(x) itself is 0
        fine = (4 * f[a] - f[b]) / (s * h)
        out.append((fine, np.abs(fine - coarse) / 3 + _rounding(loss, h, 8)))
    (right, rerr), (left, lerr) = out
    return left, right, np.maximum(lerr, rerr)
