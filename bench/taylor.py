"""The Taylor remainder test's cost next to the full check (not part of the test suite).

On the medium network (64×128→256→10, configs/bench_medium.yaml) and the notebook's, times in one
process, each the median of REPEATS runs (BLAS single-threaded, as the CLI runs):

  (a) the full check: every element of every node (`gradverify check`);
  (b) the Taylor test alone: `--method taylor` (3 directions × 16 steps × 2 signs per node);
  (c) both: `--taylor` (the full check and the order column).

    python bench/taylor.py            # writes a markdown table to stdout
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threadpoolctl import threadpool_limits  # noqa: E402

from gradverify import checker, config  # noqa: E402
from gradverify.checker import Settings  # noqa: E402

NETWORKS = [("notebook (seed.yaml)", "seed.yaml"), ("64×128→256→10 (bench_medium.yaml)", "bench_medium.yaml")]
REPEATS = 5
RUNS = [("full check", Settings()), ("--method taylor", Settings(method="taylor")),
        ("--taylor (full + order)", Settings(taylor=True))]


def medians(cfg) -> list[tuple[float, str]]:
    """Each run's median wall-clock time over REPEATS rounds, and its status. The runs take turns
    within a round, so a busy spell on the shared machine slows all of them alike."""
    times: list[list[float]] = [[] for _ in RUNS]
    status = [""] * len(RUNS)
    for _ in range(REPEATS):
        for k, (_, settings) in enumerate(RUNS):
            start = time.perf_counter()
            report = checker.run(cfg, settings)
            times[k].append(time.perf_counter() - start)
            status[k] = report.status
    return [(statistics.median(t), s) for t, s in zip(times, status)]


def main() -> None:
    print(f"| network | {' | '.join(name for name, _ in RUNS)} | taylor / full |")
    print("|---|" + "---|" * (len(RUNS) + 1))
    for label, file in NETWORKS:
        cfg = config.load(ROOT / "configs" / file)
        with threadpool_limits(1):
            checker.run(cfg, Settings(nodes=("loss",)))  # warm up imports and caches
            found = medians(cfg)
        cells = [f"{t:.3f} s ({status})" for t, status in found]
        print(f"| {label} | {' | '.join(cells)} | {found[1][0] / found[0][0]:.3f}× |")
    print(f"\nmedian of {REPEATS} runs each (taking turns), one process, BLAS single-threaded")


if __name__ == "__main__":
    main()
