"""`gradverify sweep`: every method's estimate of one element's derivative at every step, and the
Taylor remainder along that element."""
from __future__ import annotations

import numpy as np

from ..graph import Graph
from . import taylor
from .methods import METHODS, one_sided
from .prober import Prober

#: the steps `gradverify sweep` tries, relative to max(|x|, 1)
SWEEP_STEPS = 10.0 ** -np.arange(1, 15)
#: the order of the plot's marks and table's columns
SWEEP_METHODS = ("forward", "central", "richardson", "complex")


def sweep(graph: Graph, values: dict, name: str, index: int) -> dict:
    """Every method's estimate of d loss / d name[index] at every step in SWEEP_STEPS:
    {"steps": (S,), method: (S,), …}; at a kink also "left" and "right" (one-sided), and
    "kink": True."""
    prober = Prober(graph, values, name)
    idx = np.array([index], dtype=np.intp)
    x = prober.base[idx].real.astype(np.float64)
    scale = np.maximum(np.abs(x), 1.0)
    loss = float(np.real(values[graph.loss]).reshape(-1)[0])
    out: dict = {"steps": SWEEP_STEPS * scale[0]}
    with np.errstate(all="ignore"):
        for name_ in SWEEP_METHODS:
            est = METHODS[name_].estimate
            out[name_] = np.array([est(prober, idx, x, scale, h, loss)[0][0] for h in SWEEP_STEPS])
        _, _, crossed = METHODS["complex"].estimate(prober, idx, x, scale, METHODS["complex"].step, loss)
        out["kink"] = bool(crossed[0])
        if out["kink"]:
            sides = [one_sided(prober, idx, x, scale, loss, rel_step=h) for h in SWEEP_STEPS]
            out["left"] = np.array([s[0][0] for s in sides])
            out["right"] = np.array([s[1][0] for s in sides])
    return out


#: the remainder plot's ladder: relative steps 2^-1 … 2^-34 (past the rounding floor, to show it)
REMAINDER_START = 0.5
REMAINDER_STEPS = 34


def remainder_sweep(graph: Graph, values: dict, name: str, index: int, grad: np.ndarray) -> dict:
    """The Taylor remainder R(h) = |L(x + h·e_i) − L(x) − h·g_i| along element `index` alone, on
    a long ladder: {"steps", "remainder", "clean" (the steps the order is fitted on), "order",
    "verdict", "reason"}. grad: the analytic gradient, flat."""
    grad = np.asarray(grad, dtype=np.float64).reshape(-1)
    v = np.zeros(grad.size)
    v[index] = 1.0
    scale = max(abs(float(np.real(values[name]).reshape(-1)[index])), 1.0)
    h = taylor.ladder_steps(scale, REMAINDER_START, REMAINDER_STEPS)
    lad = taylor.ladder(graph, values, name, grad, v, h)
    judged = taylor.judge(lad)
    clean = taylor.fit_window(lad.h, taylor.clean_steps(lad, lad.remainder, lad.floor))
    return {"steps": h, "remainder": lad.remainder, "clean": clean, "order": taylor.remainder_order(judged),
            "verdict": judged.verdict, "reason": judged.reason}
