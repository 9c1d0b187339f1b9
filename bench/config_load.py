"""How long reading a config with large inline arrays takes, and its peak memory.

    python bench/config_load.py [N] [--baseline]

Not run by the tests. Three measurements, each the median of 3 runs (wall-clock and CPU seconds;
on a shared machine the CPU time is the steadier of the two):

  load      a config whose `inputs:` holds N numbers (default 2,000,000) inline, within the limits;
  refuse    a 12,000,000-number config, refused by the default limit of 10,000,000 elements;
  refuse    a 3,000,000-number config under `max_elements=1000`.

`--baseline` also times the load with the fast reading of inline lists turned off (every number
a YAML event, as before), for the ratio. Peak resident memory is of the whole process.
"""
from __future__ import annotations

import random
import resource
import statistics
import sys
import time

from gradverify.config import fastflow, parse
from gradverify.errors import ConfigError


def text(n: int, cols: int = 1000) -> str:
    rng = random.Random(0)
    rows = n // cols
    matrix = ", ".join("[" + ", ".join(f"{rng.uniform(-1, 1):.6f}" for _ in range(cols)) + "]"
                       for _ in range(rows))
    return (f"inputs: [{matrix}]\nlabels: {{classes: 2}}\n"
            f"layers: [{{weights: {{shape: [{cols}, 2]}}, bias: [0, 0]}}]\n")


def ones(n: int, cols: int = 1000) -> str:
    """n inline numbers written as `1`: 2 bytes each (12,000,000 of them: a 23 MiB config)."""
    row = "[" + ",".join(["1"] * cols) + "]"
    return (f"inputs: [{','.join([row] * (n // cols))}]\nlabels: {{classes: 2}}\n"
            f"layers: [{{weights: {{shape: [{cols}, 2]}}, bias: [0, 0]}}]\n")


def timed(source: str, **kw) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, what happened) of one parse."""
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        cfg = parse(source, file="bench.yaml", **kw)
        what = f"loaded, inputs {cfg.inputs.shape}" if cfg.inputs is not None else "loaded"
    except ConfigError as e:
        what = "refused: " + str(e)[:110] + "…"
    return time.perf_counter() - wall, time.process_time() - cpu, what


def median3(label: str, source: str, **kw) -> float:
    runs = [timed(source, **kw) for _ in range(3)]
    wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    print(f"{label} ({len(source) / 2**20:.1f} MiB of YAML): {wall:.2f} s wall, {cpu:.2f} s CPU "
          f"(median of 3) — {runs[0][2]}")
    return wall


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 2_000_000
    fast = median3(f"load {n:,} numbers", text(n))
    median3("refuse 12,000,000 numbers", ones(12_000_000))
    median3("refuse 3,000,000 numbers under max_elements=1000", ones(3_000_000), max_elements=1000)
    if "--baseline" in sys.argv:
        prescan = fastflow.prescan
        fastflow.prescan = lambda t: (t, {})  # every number as a YAML event
        try:
            slow = median3(f"load {n:,} numbers, events only", text(n))
        finally:
            fastflow.prescan = prescan
        print(f"events only / fast: {slow / fast:.1f}×")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS of this process: {peak / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
