"""`gradverify sweep`: every method's estimate of one element's derivative at every step."""
from __future__ import annotations

import numpy as np

from ..graph import Graph
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
