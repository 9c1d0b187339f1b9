"""How long loading a config with a 2,000,000-number inline array takes, and its peak memory.

    python bench/config_load.py [N]

Not run by the tests. Prints seconds and peak resident memory (MiB) for gradverify.config.parse.
"""
from __future__ import annotations

import random
import resource
import sys
import time

from gradverify.config import parse


def text(n: int, cols: int = 1000) -> str:
    rng = random.Random(0)
    rows = n // cols
    matrix = ", ".join("[" + ", ".join(f"{rng.uniform(-1, 1):.6f}" for _ in range(cols)) + "]"
                       for _ in range(rows))
    return (f"inputs: [{matrix}]\nlabels: {{classes: 2}}\n"
            f"layers: [{{weights: {{shape: [{cols}, 2]}}, bias: [0, 0]}}]\n")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    source = text(n)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    cfg = parse(source, file="bench.yaml")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert cfg.inputs is not None and cfg.inputs.size == n
    print(f"{n:,} numbers ({len(source) / 2**20:.1f} MiB of YAML): {seconds:.2f} s, "
          f"peak RSS {peak / 1024:.0f} MiB ({(peak - before) / 1024:.0f} MiB more than before parsing)")


if __name__ == "__main__":
    main()
