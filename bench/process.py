"""Whole `gradverify check` processes, with and without the CLI keeping freed memory (not part of
the test suite).

`gradverify check CFG` (the console script: `cli.run()` sets glibc's mmap and trim thresholds
before the check, `cli._keep_freed_memory`) against the same check started through `cli.app()`,
which skips that and leaves glibc's defaults (every freed block over 128 KB back to the kernel).
Each line is the median of N runs, the two taking turns, wall-clock and system CPU time (the
kernel's share: page faults on memory mapped afresh) of the child process.

    python bench/process.py [N]        # N runs each (default 3); markdown rows on stdout
"""
from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ["seed.yaml", "bench_medium.yaml", "cnn.yaml"]


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, system CPU) seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime - before


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    script = shutil.which("gradverify") or str(Path(sys.executable).with_name("gradverify"))
    env_note = [v for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_") if v in os.environ]
    if env_note:
        sys.exit(f"unset {', '.join(env_note)} first: they override both sides")
    print(f"`python bench/process.py {runs}`, {time.strftime('%Y-%m-%d %H:%M')}, median of {runs}, "
          "the two kinds taking turns\n")
    print("| config | `gradverify check` (keeps freed memory) | through `cli.app()` (glibc defaults) | ratio |")
    print("|---|---|---|---|")
    for name in CONFIGS:
        cfg = f"configs/{name}"
        kinds = {"cli": [script, "check", cfg, "-q"],
                 "app": [sys.executable, "-c", "from gradverify.cli import app; app()", "check", cfg, "-q"]}
        found: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
        for _ in range(runs):
            for k, cmd in kinds.items():
                found[k].append(timed(cmd))
        (w1, s1), (w2, s2) = ((statistics.median(t[0] for t in found[k]), statistics.median(t[1] for t in found[k]))
                              for k in kinds)
        print(f"| {name} | {w1:.2f} s (system {s1:.2f} s) | {w2:.2f} s (system {s2:.2f} s) | {w2 / w1:.2f}× |")


if __name__ == "__main__":
    main()
