"""The numeric side: derivatives of the loss estimated from the forward code alone (complex step
or finite differences through the graph), never from derivative rules.

* `methods`: the table of methods (estimator, step, cost, tolerances, how each is printed);
* `prober`: perturbed copies of a node pushed to the loss, and the kinks they cross;
* `estimate`: element-by-element estimates with error bars and kinks, in chunks on the cores;
* `kinks`: kinks of your code seen from the numbers, and smaller stencils for one near x;
* `cuts`: the loss beyond a node linearized by that node's estimate, so complex steps stop there;
* `directional`: derivatives along directions, and bisection to the bad elements (`--fast`);
* `sweep`: every method at every step, for `gradverify sweep`.
"""
from .cuts import Cuts
from .directional import bisect, directional
from .estimate import WORKERS, Estimate, estimate, usable_cores
from .kinks import clear_of_kinks, detect_kinks, moved_together
from .methods import (
                      AUTO,
                      CHOICES,
                      EPS,
                      FLOAT32_TOLERANCE,
                      KINK_TOLERANCE,
                      METHODS,
                      ONE_SIDED_RULE,
                      ONE_SIDED_STEP,
                      Method,
                      one_sided,
                      step_problem,
)
from .prober import Prober, complex_probe, crossings, node_method
from .sweep import SWEEP_METHODS, SWEEP_STEPS, sweep

__all__ = ["AUTO", "Cuts", "CHOICES", "EPS", "FLOAT32_TOLERANCE", "KINK_TOLERANCE", "METHODS", "ONE_SIDED_RULE",
           "ONE_SIDED_STEP", "SWEEP_METHODS", "SWEEP_STEPS", "WORKERS", "Estimate", "Method",
           "Prober", "bisect", "clear_of_kinks", "complex_probe", "crossings", "detect_kinks", "directional",
           "estimate", "moved_together", "node_method", "one_sided", "step_problem", "sweep", "usable_cores"]
