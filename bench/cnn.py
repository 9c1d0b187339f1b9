"""The CNN benchmark (issue 15), side by side in one process on configs/cnn.yaml: 8 images
3×16×16 → conv 8 filters 3×3 pad 1 → spatial batchnorm → relu → 2×2 max pool → affine 10 →
softmax cross-entropy, 69,197 elements in all (5,362 of them parameters):

  (a) gradverify's full check: every element of every node, as the CLI runs it (chunks of copies
      on the usable cores, BLAS single-threaded);
  (b) a naive loop: central differences one element at a time, two full forward passes each
      (cs231n's eval_numerical_gradient) over the same elements; timed on a seeded sample of
      elements per node and extrapolated by node size (labelled so);
  (c) torch.autograd.gradcheck on the same network and values, the parameters only (w1, gamma2,
      beta2, w4, b4), torch at gradverify's thread count (`pip install -e ".[bench]"`);
  (d) like for like with (c): gradverify's check of the parameters only (`--nodes`).

Each time is the median of --repeats runs (default 3); every ratio is between medians of this one
invocation. The process keeps freed memory as the `gradverify` command's does (glibc's mmap and
trim thresholds, `cli._keep_freed_memory`): the three columns run under the same allocator.

    python bench/cnn.py                 # prints the markdown rows for bench/RESULTS.md
    python bench/cnn.py --repeats 1     # quicker, noisier
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import naive  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from gradverify import checker, config  # noqa: E402
from gradverify.checker import Settings  # noqa: E402
from gradverify.cli import _keep_freed_memory as keep_freed_memory  # noqa: E402
from gradverify.numeric.estimate import WORKERS  # noqa: E402

CONFIG = ROOT / "configs" / "cnn.yaml"


def median_time(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def torch_network(cfg):
    """The loss of configs/cnn.yaml in torch, and its parameters (leaves requiring grad)."""
    import torch
    import torch.nn.functional as F

    conv, bn, pool, fc = cfg.layers
    x = torch.tensor(cfg.inputs)
    y = torch.tensor(np.asarray(cfg.labels), dtype=torch.long)
    params = tuple(torch.tensor(np.asarray(a), requires_grad=True)
                   for a in (conv.weights, bn.params[0][1], bn.params[1][1], fc.weights, fc.bias))

    def loss(w1, gamma, beta, w4, b4):
        h = F.conv2d(x, w1, stride=conv.attrs["stride"], padding=conv.attrs["pad"])
        h = torch.relu(F.batch_norm(h, None, None, gamma, beta, training=True, eps=bn.attrs["eps"]))
        h = F.max_pool2d(h, pool.attrs["size"], pool.attrs["stride"])
        return F.cross_entropy(h.flatten(1) @ w4 + b4, y)

    return loss, params


def torch_gradcheck(cfg, repeats: int):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(WORKERS)  # gradverify's thread count
    loss, params = torch_network(cfg)
    t, ok = median_time(lambda: torch.autograd.gradcheck(loss, params, eps=1e-6, atol=1e-5, rtol=1e-3,
                                                         raise_exception=False), repeats)
    return t, ok, sum(p.numel() for p in params), torch.__version__, float(loss(*params).detach())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3, help="runs of each timing; the median is reported")
    ap.add_argument("--naive-sample", type=int, default=200, help="elements per node timed by the naive loop")
    args = ap.parse_args()
    keep_freed_memory()  # as the CLI's process runs (glibc's thresholds), for all three alike
    cfg = config.load(CONFIG)
    with threadpool_limits(1):  # as the CLI runs
        checker.run(cfg, Settings(nodes=("loss",)))  # warm up imports and caches
        t_full, rep = median_time(lambda: checker.run(cfg, Settings()), args.repeats)
    elements = sum(n.total for n in rep.nodes)
    params = sum(n.total for n in rep.nodes if n.kind == "parameter")
    names = tuple(n.name for n in rep.nodes if n.kind == "parameter")
    with threadpool_limits(1):  # what torch's gradcheck checks: the parameters alone
        t_params, rep_params = median_time(lambda: checker.run(cfg, Settings(nodes=names)), args.repeats)
    print(f"gradverify: {t_full:.2f} s ({rep.status}); parameters only {t_params:.2f} s", file=sys.stderr)
    naive_runs = [naive(cfg, args.naive_sample, seed=k)[0] for k in range(args.repeats)]
    t_naive = statistics.median(naive_runs)
    print(f"naive: {t_naive:.1f} s (extrapolated)", file=sys.stderr)
    torch_res = torch_gradcheck(cfg, args.repeats)
    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores ({WORKERS} used), Python "
          f"{platform.python_version()}, numpy {np.__version__}.  Run: {time.strftime('%Y-%m-%d')}, "
          f"`python bench/cnn.py --repeats {args.repeats}` (medians of {args.repeats}).\n")
    print("| network | elements (params) | gradverify full | naive loop | naive / full | "
          "torch gradcheck (params only) | torch / full |")
    print("|---|---|---|---|---|---|---|")
    if torch_res is None:
        torch_txt, ratio = "torch not installed", "—"
    else:
        t_torch, ok, n, version, torch_loss = torch_res
        same = abs(torch_loss - float(rep.loss or 0.0)) <= 1e-12 * max(1.0, abs(torch_loss))
        torch_txt = (f"{t_torch:.1f} s (torch {version}, {WORKERS} threads, {n:,} params, "
                     f"{'pass' if ok else 'FAIL'}, loss {'equal' if same else 'DIFFERENT'})")
        ratio = f"{t_torch / t_full:.1f}×"
    print(f"| CNN 8×3×16×16 (cnn.yaml) | {elements:,} ({params:,}) | {t_full:.2f} s ({rep.status}) | "
          f"{t_naive:.1f} s (extrapolated from {args.naive_sample} per node) | {t_naive / t_full:.1f}× | "
          f"{torch_txt} | {ratio} |")
    if torch_res is not None:
        print(f"\nLike for like, the parameters only ({', '.join(names)}): gradverify {t_params:.2f} s "
              f"({rep_params.status}), torch gradcheck {torch_res[0]:.1f} s: {torch_res[0] / t_params:.1f}×.")


if __name__ == "__main__":
    main()
