"""How long checking real cs231n-style code of realistic size takes (issue #12's sizes):

  conv      conv_forward_naive / conv_backward_naive, x 2×3×5×5, w 3×3×3×3, stride 1, pad 1
  lstm      lstm_forward / lstm_backward, N=2, T=3, D=4, H=5
  fc_net    FullyConnectedNet, X 5×15, hidden [10, 7], 4 classes, batchnorm (a whole model)

plus every other config of examples/cs231n/configs. Each is a whole `gradverify check CONFIG`
process (start-up included), timed three times: the median wall-clock seconds and the median CPU
seconds of the process (user + system; steadier than wall-clock on a shared machine).

    python bench/realcode.py          # the three of the issue
    python bench/realcode.py --all    # every example config
"""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "examples" / "cs231n" / "configs"
ISSUE = ("conv", "lstm", "fc_net")


def once(config: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit code) of one `gradverify check`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "gradverify", "check", str(config), "-q"],
                         capture_output=True, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, res.returncode


def main() -> None:
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml")) if "--all" in sys.argv else ISSUE
    print("| config | wall s (median of 3) | CPU s (median of 3) | exit |")
    print("|---|---|---|---|")
    for name in names:
        runs = [once(CONFIGS / f"{name}.yaml") for _ in range(3)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {runs[0][2]} |")


if __name__ == "__main__":
    main()
