"""Benchmarks, side by side in one process on the same networks (not part of the test suite):

  (a) gradverify's full check: every element of every node (input, parameters, intermediates);
  (b) a naive loop: central differences, one element at a time, a full forward pass each
      (cs231n's eval_numerical_gradient), over the same elements;
  (c) torch.autograd.gradcheck over the parameters alone, when torch is installed
      (`pip install -e ".[bench]"`; the CPU build torch==2.13.0), at ONE thread, against
      gradverify's full check also at one thread (one chunk at a time, BLAS single-threaded):
      the same thread count on both sides (torch at 2 threads here took 2-6× as long as at 1).

Times are wall-clock seconds; ratios are against (a) in the same run. gradverify runs as its CLI
does (two chunks of copies in two threads, BLAS single-threaded); the naive loop gets BLAS's
default threads. Where a baseline would take
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


def naive(cfg, per_node: int | None, seed: int = 0):
    """Central differences element by element. Returns (seconds, elements covered, extrapolated)."""
    p = checker.prepare(cfg)
    rng = np.random.default_rng(seed)
    total_time, extrapolated = 0.0, False
    for name in p.graph.nodes:
        base = p.values[name]
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
            (naive_loss(p.graph, p.values, name, up) - naive_loss(p.graph, p.values, name, down)) / (2 * h)
        total_time += (time.perf_counter() - t) * size / len(idx)
    return total_time, extrapolated


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="the notebook and medium networks only")
    ap.add_argument("--naive-sample", type=int, default=200,
                    help="elements per node for the naive loop on networks over 10,000 elements "
                         "(extrapolated by node size)")
    args = ap.parse_args()
    nets = NETWORKS[:2] if args.quick else NETWORKS
    rows = []
    for label, file in nets:
        cfg = config.load(ROOT / "configs" / file)
        with threadpool_limits(1):  # as the CLI runs
            checker.run(cfg, Settings(nodes=("loss",)))  # warm up imports and caches
            t_full, rep = timed(checker.run, cfg, Settings())
            elements = sum(n.total for n in rep.nodes)
            params = sum(n.total for n in rep.nodes if n.kind == "parameter")
            mem = peak_mb(checker.run, cfg, Settings())
            t_fast, _ = timed(checker.run, cfg, Settings(fast=True))
            t_one = one_thread(cfg)
            t_sample, _ = timed(checker.run, cfg, Settings(sample=100))
        per_node = None if elements <= 10_000 else args.naive_sample
        t_naive, extrapolated = naive(cfg, per_node)
        torch_res = torch_gradcheck(cfg) if params <= 50_000 else None
        rss = process_rss_mb(file)
        rows.append((label, elements, params, t_full, (mem, rss), t_fast, t_sample, t_naive, extrapolated,
                     torch_res, rep.status, t_one))
        print(f"done: {label}", file=sys.stderr)

    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}.  Run: {time.strftime('%Y-%m-%d')}, `python bench/run.py"
          f"{' --quick' if args.quick else ''}`.\n")
    print("| network | elements (params) | gradverify full | peak MiB: numpy / process | --fast | "
          "--sample 100 | naive loop | naive / full | gradverify full, 1 thread | "
          "torch gradcheck, 1 thread (params only) | torch / gradverify, both 1 thread |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (label, elements, params, t_full, mem, t_fast, t_sample, t_naive, extrapolated, torch_res,
         status, t_one) in rows:
        naive_txt = f"{t_naive:.1f} s" + (" (extrapolated)" if extrapolated else "")
        if torch_res is None:
            torch_txt, ratio_t = "not run (too slow at this size)" if params > 50_000 else "torch not installed", "—"
        else:
            t_torch, ok, n, version = torch_res
            torch_txt = f"{t_torch:.2f} s (torch {version}, {n:,} params, {'pass' if ok else 'FAIL'})"
            ratio_t = f"{t_torch / t_one:.1f}×"
        print(f"| {label} | {elements:,} ({params:,}) | {t_full:.2f} s ({status}) | {mem[0]:.0f} / {mem[1]:.0f} | "
              f"{t_fast:.2f} s | {t_sample:.2f} s | {naive_txt} | {t_naive / t_full:.1f}× | "
              f"{t_one:.2f} s | {torch_txt} | {ratio_t} |")
    print(f"\nThe whole `gradverify check configs/seed.yaml` process, start-up included: "
          f"{startup_seconds():.2f} s (best of 3).")


if __name__ == "__main__":
    main()
