"""How a built-in check scales, and how far it is from the work limit (not part of the test suite).

Work limit: the least work a full check can do, counted per perturbed element as the entries its
change must recompute downstream (a change to w1[i, j] moves column j of the first layer's N
outputs, then N·C products of the second layer; one to x[n, i] moves row n: H products, then H·C;
and so on: `least_macs` below) times 2 (the complex step carries a real and an imaginary part),
at numpy's throughput for the same products measured in this run (a (N, H) @ (H, C) matmul,
median of 5). It is the floor of a check that pushes every element's change to the loss.

A check through cuts (numeric/cuts.py) stops each change at the node right after it, so its
floor is smaller and of another kind: `cut_entries` below, times 2 (a product to make each
changed entry, a multiply-add against the cut's gradient), at numpy's rate for that kind of
work (an elementwise product summed along rows, memory-bound, not a matmul), measured in the
same run. Both floors and both ratios are printed.

The scaling table: the whole in-process check of an MLP (ReLU, softmax cross-entropy, L2) as the
batch N, the width H and the depth L grow, median of `--repeat` runs each, with the least work
of each (`least_macs`, general in the depth) and the rate the check achieves against it: the
least work itself grows faster than the elements with depth (an early weight's change is dense
through every later layer), so time per element cannot stay flat there; a flat rate is the
check keeping pace with its work.

    python bench/scale.py
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# in process as the `gradverify` command's process runs: BLAS at one thread from before numpy
# loads (the command's own setting; the Python API only limits it once loaded, and OpenBLAS's
# idle threads still cost a few ms per check), freed memory kept (main())
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gradverify  # noqa: E402
from gradverify.cli import _keep_freed_memory as keep_freed_memory  # noqa: E402


def mlp(n: int, d: int, widths: list[int], c: int) -> dict:
    sizes = [d, *widths, c]
    layers = [{"weights": {"shape": [a, b], "init": "normal", "std": 0.05},
               "bias": {"shape": [b], "init": "normal", "std": 0.1}, "activation": "relu"}
              for a, b in zip(sizes[:-1], sizes[1:])]
    layers[-1].pop("activation")
    return {"seed": 0, "inputs": {"shape": [n, d], "init": "normal"}, "labels": {"classes": c},
            "regularization": 0.001, "layers": layers}


def least_macs(n: int, d: int, widths: list[int], c: int) -> float:
    """Multiply-adds a perfect sparse propagation needs for every element of an MLP
    n×d → widths… → c (relu between layers, softmax cross-entropy). Sizes s = [d, *widths, c],
    layers 0…L. A changed weight or bias of layer l moves one column of its output (n products),
    the next layer by a rank-one change (n·s[l+2]), every later one densely (n·s[m]·s[m+1]), and
    the loss (n·c); an element of x or of a hidden layer's output moves one row, s[l+1] products
    and a row through every later layer, and the loss (c); the logits and softmax nodes one row
    of c each."""
    s = [d, *widths, c]
    top = len(s) - 2  # the last layer's index

    def column(i: int) -> int:  # a changed column of layer i's output, to the loss
        rest = n * s[i + 2] if i < top else 0
        return n + rest + sum(n * s[m] * s[m + 1] for m in range(i + 2, top + 1)) + n * c

    def row(i: int) -> int:  # a changed element of layer i's input (x for i = 0), to the loss
        return sum(s[m] * s[m + 1] for m in range(i, top + 1)) - s[i] * s[i + 1] + s[i + 1] + c

    total = n * d * row(0) + 4 * n * c * c
    for i in range(top + 1):
        total += (s[i] * s[i + 1] + s[i + 1]) * column(i)
        if i < top:
            total += 2 * n * s[i + 1] * row(i + 1)
    return float(total)


def cut_entries(n: int, d: int, widths: list[int], c: int) -> float:
    """Entries a check through cuts must make, summed over every element of the same MLP: each
    element's change stops at the node right after it (numeric/cuts.py), so x[n, i] makes one row
    of the first layer's output (s[1] entries), w_l[i, j] one column of its layer's output (n),
    b_l[j] one column (n), a matmul's or add_bias's output element one entry of the next node, a
    hidden ReLU's output element one row of the next layer's output (s[l+2]); the loss's own
    nodes a row of c each; every weight one entry of the L2 penalty."""
    s = [d, *widths, c]
    top = len(s) - 2
    total = n * d * s[1] + 4 * n * c * c
    for i in range(top + 1):
        total += (s[i] * s[i + 1] + s[i + 1]) * n + s[i] * s[i + 1]  # weights, bias; the L2 term
        total += 2 * n * s[i + 1]  # w_out -> lin -> relu (or -> the loss's first node)
        if i < top:
            total += n * s[i + 1] * s[i + 2]  # a hidden unit -> a row of the next layer
    return float(total)


def rowdot_per_second(k: int = 8192, m: int = 256) -> float:
    """numpy's rate for the work a cut does, one product per changed entry and one multiply-add
    against the cut's gradient: an elementwise product of (k, m) arrays summed along rows, median
    of 5 (einsum, as graph.linear_change)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(k, m)), rng.normal(size=(k, m))
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10):
            np.einsum("kn,kn->k", a * b, b)
        times.append((time.perf_counter() - t) / 10)
    return k * m / statistics.median(times)


def macs_per_second(n: int, h: int, c: int) -> float:
    a, b = np.random.default_rng(0).normal(size=(n, h)), np.random.default_rng(1).normal(size=(h, c))
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(50):
            a @ b
        times.append((time.perf_counter() - t) / 50)
    return n * h * c / statistics.median(times)


def median_check(cfg: dict, repeat: int):
    """(median seconds, elements checked, status) of the whole check."""
    times, rep = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        rep = gradverify.check(cfg)
        times.append(time.perf_counter() - t)
    assert rep is not None
    return statistics.median(times), sum(n.total for n in rep.nodes), rep.status


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    r = ap.parse_args().repeat
    keep_freed_memory()  # as the `gradverify` command's process runs (glibc's thresholds)
    print(f"numpy {np.__version__}; median of {r}; in process (`gradverify.check`, freed memory kept as the "
          "command keeps it); "
          f"{time.strftime('%Y-%m-%d %H:%M')}.\n")
    print("| network | elements | full check | work limit (MACs ×2 at numpy's rate) | check / limit | "
          "limit through cuts (entries ×2 at numpy's row-dot rate) | check / that limit |")
    print("|---|---|---|---|---|---|---|")
    rowdot = rowdot_per_second()
    gradverify.check(mlp(16, 8, [8], 4))  # the first check in a process loads modules: not timed
    for n, d, h, c in ((64, 128, 256, 10), (128, 784, 512, 10)):
        t, elements, status = median_check(mlp(n, d, [h], c), r)
        limit = 2 * least_macs(n, d, [h], c) / macs_per_second(n, h, c)
        cut = 2 * cut_entries(n, d, [h], c) / rowdot
        print(f"| {n}×{d}→{h}→{c} | {elements:,} | {t:.3f} s ({status}) | {limit:.3f} s | {t / limit:.1f}× | "
              f"{cut:.3f} s | {t / cut:.1f}× |")
    print(f"\nnumpy's row-dot rate here: {rowdot / 1e9:.2f} G entries/s (one thread).")
    big = macs_per_second(512, 512, 512) / 1e9
    print(f"\nThe rate column: the least work (MACs ×2, as above) over the check's time. For scale, numpy's "
          f"rate on a 512×512 @ 512×512 product here: {big:.1f} GMAC/s per thread (the check runs two).\n")
    print("| scaling | elements | full check | seconds per 1,000 elements | least work to the loss (MACs ×2) | "
          "rate against it | entries through cuts (×2) |")
    print("|---|---|---|---|---|---|---|")
    cases = [("batch N", (n, 64, [128], 10)) for n in (16, 32, 64)]
    cases += [("width H", (32, 64, [h], 10)) for h in (64, 128, 256)]
    cases += [("depth L", (32, 64, [64] * depth, 10)) for depth in (1, 2, 4, 8)]
    for what, (n, d, widths, c) in cases:
        t, elements, _ = median_check(mlp(n, d, widths, c), r)
        work = 2 * least_macs(n, d, widths, c)
        label = f"{what}: {n}×{d}→{'→'.join(map(str, widths))}→{c}"
        print(f"| {label} | {elements:,} | {t:.3f} s | {1000 * t / elements:.4f} | {work / 1e9:.2f} G | "
              f"{work / t / 1e9:.1f} GMAC/s | {2 * cut_entries(n, d, widths, c) / 1e6:.1f} M |")


if __name__ == "__main__":
    main()
