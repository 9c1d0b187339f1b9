"""Benchmarks, side by side in one process on the same networks (not part of the test suite):

  (a) gradverify's full check: every element of every node (input, parameters, intermediates);
  (b) a naive loop: central differences, one element at a time, a full forward pass each
      (cs231n's eval_numerical_gradient), over the same elements;
  (b') the same loop recomputing only what lies downstream of the perturbed node, against the
      whole `gradverify check` process (start-up included, median of 3);
  (c) torch.autograd.gradcheck over the parameters alone, when torch is installed
      (`pip install -e ".[bench]"`; the CPU build torch==2.13.0), at ONE thread, against
      gradverify's full check also at one thread (one chunk at a time, BLAS single-threaded):
      the same thread count on both sides (torch at 2 threads here took 2-6× as long as at 1).

Times are wall-clock seconds, (a) the median of 3; ratios are against (a) in the same run. The
process keeps freed memory as the `gradverify` command does; gradverify runs as its CLI does (two
chunks of copies in two threads, BLAS single-threaded); the naive loops get BLAS's default
threads. Where a baseline would take
too long, it is timed on a seeded sample of elements per node and extrapolated by node size (the
table says so). Peak memory of (a) is numpy's peak allocation under tracemalloc, in a second,
untimed run, and the peak resident size of a whole `gradverify check` process.

    python bench/run.py            # every network; writes the markdown table to stdout
    python bench/run.py --quick    # the notebook and the medium network only
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threadpoolctl import threadpool_limits  # noqa: E402

from gradverify import checker, config  # noqa: E402
from gradverify.checker import Settings  # noqa: E402
from gradverify.cli import _keep_freed_memory as keep_freed_memory  # noqa: E402

NETWORKS = [("notebook (seed.yaml)", "seed.yaml"), ("64×128→256→10 (bench_medium.yaml)", "bench_medium.yaml"),
            ("128×784→512→10 (bench_large.yaml)", "bench_large.yaml")]


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t, out


def peak_mb(fn, *args, **kw) -> float:
    tracemalloc.start()
    fn(*args, **kw)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


# ---- (b) the naive loop -------------------------------------------------------------------


def naive_loss(graph, values, name, new_value) -> float:
    """A full forward pass with node `name` set to `new_value`: every node is recomputed."""
    vals = {}
    for n, node in graph.nodes.items():
        if n == name:
            vals[n] = new_value
        elif node.op is None:
            vals[n] = node.value
        else:
            vals[n] = node.op.forward(*(vals[i] for i in node.inputs))
    return float(vals[graph.loss][0])


def naive(cfg, per_node: int | None, seed: int = 0, recompute=None):
    """Central differences element by element, each evaluation a forward pass: the whole graph
    (naive_loss), or with `recompute="downstream"` only what lies downstream of the perturbed
    node (downstream_loss). Returns (seconds, extrapolated)."""
    p = checker.prepare(cfg)
    rng = np.random.default_rng(seed)
    total_time, extrapolated = 0.0, False
    for name in p.graph.nodes:
        base, after = p.values[name], p.graph.downstream(name)

        def loss(value, name=name, after=after):
            if recompute == "downstream":
                return downstream_loss(p.graph, p.values, name, value, after)
            return naive_loss(p.graph, p.values, name, value)

        size = base[0].size
        idx = np.arange(size)
        if per_node is not None and size > per_node:
            idx = rng.choice(size, per_node, replace=False)
            extrapolated = True
        t = time.perf_counter()
        for i in idx:
            h = 1e-6 * max(abs(base.flat[i]), 1.0)
            up, down = base.copy(), base.copy()
            up.flat[i] += h
            down.flat[i] -= h
            (loss(up) - loss(down)) / (2 * h)
        total_time += (time.perf_counter() - t) * size / len(idx)
    return total_time, extrapolated


def downstream_loss(graph, values, name, new_value, after) -> float:
    """(b') A forward pass that recomputes only the nodes downstream of `name` (`after`, in the
    graph's order), reading every other node from the plain pass (issue 14's baseline for the
    whole process)."""
    vals = dict(values)
    vals[name] = new_value
    for n in after:
        node = graph.nodes[n]
        vals[n] = node.op.forward(*(vals[i] for i in node.inputs))
    return float(np.real(vals[graph.loss]).reshape(-1)[0])


def process_seconds(file: str, repeats: int = 3) -> float:
    """A whole `gradverify check FILE -q` process, start-up included (median of `repeats`)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gradverify", "check", str(ROOT / "configs" / file), "-q"],
                       stdout=subprocess.DEVNULL, check=False, cwd=ROOT)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


# ---- (c) torch.autograd.gradcheck ---------------------------------------------------------


def one_thread(cfg) -> float:
    """gradverify's full check with one chunk at a time (no worker threads)."""
    import importlib

    est_module = importlib.import_module("gradverify.numeric.estimate")  # (the package exports a function of that name)

    saved = est_module.WORKERS
    est_module.WORKERS = 1
    try:
        return timed(checker.run, cfg, Settings())[0]
    finally:
        est_module.WORKERS = saved


def torch_gradcheck(cfg):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)  # as gradverify's one-thread run it is compared with
    x = torch.tensor(cfg.inputs, dtype=torch.float64)
    y = torch.tensor(np.asarray(cfg.labels), dtype=torch.long)
    params = []
    for layer in cfg.layers:
        params += [torch.tensor(layer.weights, dtype=torch.float64, requires_grad=True),
                   torch.tensor(layer.bias, dtype=torch.float64, requires_grad=True)]
    reg = cfg.reg_strength

    def loss(*ps):
        h = x
        for i in range(0, len(ps), 2):
            h = h @ ps[i] + ps[i + 1]
            if i + 2 < len(ps):
                h = torch.relu(h)
        data = torch.nn.functional.cross_entropy(h, y)
        return data + reg * sum((p * p).sum() for p in ps)

    t, ok = timed(torch.autograd.gradcheck, loss, tuple(params), eps=1e-6, atol=1e-5, rtol=1e-3,
                  raise_exception=False)
    return t, ok, sum(p.numel() for p in params), torch.__version__


# ---- the run -------------------------------------------------------------------------------


def process_rss_mb(file: str) -> float:
    """Peak resident memory of a whole `gradverify check FILE` process (its own child, measured
    by a wrapper so each run is counted alone)."""
    code = ("import resource, subprocess, sys; subprocess.run([sys.executable, '-m', 'gradverify', "
            f"'check', {str(ROOT / 'configs' / file)!r}, '-q'], stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    return int(out.stdout.strip() or 0) / 1024


def startup_seconds() -> float:
    """The whole `gradverify check configs/seed.yaml` process, start-up included (best of 3)."""
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gradverify", "check", str(ROOT / "configs" / "seed.yaml"),
                        "-q"], stdout=subprocess.DEVNULL, check=False, cwd=ROOT)
        best = min(best, time.perf_counter() - t)
    return best


def median_timed(fn, *args, repeats: int = 3):
    """(median seconds, last result) of `repeats` calls."""
    runs = [timed(fn, *args) for _ in range(repeats)]
    return sorted(t for t, _ in runs)[len(runs) // 2], runs[-1][1]


def measure(label: str, file: str, naive_sample: int) -> dict:
    """Every column of one network's row."""
    cfg = config.load(ROOT / "configs" / file)
    with threadpool_limits(1):  # as the CLI runs
        checker.run(cfg, Settings(nodes=("loss",)))  # warm up imports and caches
        t_full, rep = median_timed(checker.run, cfg, Settings())
        row = {"label": label, "full": t_full, "status": rep.status,
               "elements": sum(n.total for n in rep.nodes),
               "params": sum(n.total for n in rep.nodes if n.kind == "parameter"),
               "mem": peak_mb(checker.run, cfg, Settings()),
               "fast": timed(checker.run, cfg, Settings(fast=True))[0], "one": one_thread(cfg),
               "sample": timed(checker.run, cfg, Settings(sample=100))[0]}
    per_node = None if row["elements"] <= 10_000 else naive_sample
    row["naive"], row["extrapolated"] = naive(cfg, per_node)
    row["downstream"] = naive(cfg, per_node, recompute="downstream")[0]
    row["process"] = process_seconds(file)
    row["torch"] = torch_gradcheck(cfg) if row["params"] <= 50_000 else None
    row["rss"] = process_rss_mb(file)
    return row


def print_row(r: dict) -> None:
    naive_txt = f"{r['naive']:.1f} s" + (" (extrapolated)" if r["extrapolated"] else "")
    if r["torch"] is None:
        torch_txt, ratio_t = "not run (too slow at this size)" if r["params"] > 50_000 else "torch not installed", "—"
    else:
        t_torch, ok, n, version = r["torch"]
        torch_txt = f"{t_torch:.2f} s (torch {version}, {n:,} params, {'pass' if ok else 'FAIL'})"
        ratio_t = f"{t_torch / r['one']:.1f}×"
    print(f"| {r['label']} | {r['elements']:,} ({r['params']:,}) | {r['full']:.2f} s ({r['status']}) | "
          f"{r['mem']:.0f} / {r['rss']:.0f} | {r['fast']:.2f} s | {r['sample']:.2f} s | {naive_txt} | "
          f"{r['naive'] / r['full']:.1f}× | {r['process']:.2f} s | {r['downstream']:.1f} s | "
          f"{r['downstream'] / r['process']:.1f}× | {r['one']:.2f} s | {torch_txt} | {ratio_t} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the notebook and medium networks only")
    ap.add_argument("--naive-sample", type=int, default=200,
                    help="elements per node for the naive loops on networks over 10,000 elements "
                         "(extrapolated by node size)")
    args = ap.parse_args()
    keep_freed_memory()  # as the `gradverify` command's process runs (glibc's thresholds)
    rows = []
    for label, file in (NETWORKS[:2] if args.quick else NETWORKS):
        rows.append(measure(label, file, args.naive_sample))
        print(f"done: {label}", file=sys.stderr)
    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}.  Run: {time.strftime('%Y-%m-%d')}, `python bench/run.py"
          f"{' --quick' if args.quick else ''}`.\n")
    print("| network | elements (params) | gradverify full | peak MiB: numpy / process | --fast | "
          "--sample 100 | naive loop | naive / full | whole process | downstream loop | "
          "downstream / process | gradverify full, 1 thread | torch gradcheck, 1 thread (params only) | "
          "torch / gradverify, both 1 thread |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print_row(r)
    print(f"\nThe whole `gradverify check configs/seed.yaml` process, start-up included: "
          f"{startup_seconds():.2f} s (best of 3).")


if __name__ == "__main__":
    main()
