"""The user's own layers, side by side in one process (not part of the test suite):

  (a) a net of cs231n-style `affine`/`relu` given as `file.py:name` ops, against the same net
      with gradverify's built-ins (every element of every node, both);
  (b) a naive-loop conv (cs231n's conv_forward_naive / conv_backward_naive) through
      `gradverify.check_op`, against cs231n's own `eval_numerical_gradient_array` loop over x, w
      and b (centered differences, h = 1e-5, written out below as the notebook has it) and
      against `torch.autograd.gradcheck` running the same numpy code (a torch.autograd.Function
      around it), torch at one thread, the thread count gradverify's BLAS runs at.

Every figure is the median of `--repeat` runs (default 3); every ratio is from the same run.
gradverify runs in this process (`jobs` 1) unless said otherwise; the `--jobs 2` row runs the
user's ops in two worker processes.

    python bench/custom.py            # writes the markdown tables to stdout
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "cs231n"))

from cs231n import layers as L  # noqa: E402

import gradverify  # noqa: E402

LAYERS = ROOT / "examples" / "cs231n" / "cs231n" / "layers.py"


def median_time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def net(n: int, d: int, h: int, c: int, custom: bool) -> dict:
    """n×d → h (ReLU) → c, softmax cross-entropy, L2: the user's affine/relu, or built-ins."""
    op = {"op": f"{LAYERS}:affine"} if custom else {}
    act = f"{LAYERS}:relu" if custom else "relu"
    return {"seed": 0, "inputs": {"shape": [n, d], "init": "normal"}, "labels": {"classes": c},
            "regularization": 0.001,
            "layers": [{**op, "weights": {"shape": [d, h], "init": "normal", "std": 0.05},
                        "bias": {"shape": [h], "init": "normal", "std": 0.1}, "activation": act},
                       {**op, "weights": {"shape": [h, c], "init": "normal", "std": 0.05},
                        "bias": {"shape": [c], "init": "zeros"}}]}


# ---- cs231n's gradient check, as the notebook's gradient_check.py has it ------------------------


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """cs231n: a centered difference for every element of x, of sum(f(x) * df)."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        oldval = x[ix]
        x[ix] = oldval + h
        pos = f(x).copy()
        x[ix] = oldval - h
        neg = f(x).copy()
        x[ix] = oldval
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
        it.iternext()
    return grad


def conv_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(4, 3, 5, 5)), rng.normal(size=(2, 3, 3, 3)), rng.normal(size=2)
    return x, w, b, {"stride": 1, "pad": 1}


def cs231n_loop(x, w, b, param) -> None:
    dout = np.random.default_rng(1).normal(size=L.conv_forward_naive(x, w, b, param)[0].shape)
    eval_numerical_gradient_array(lambda v: L.conv_forward_naive(v, w, b, param)[0], x.copy(), dout)
    eval_numerical_gradient_array(lambda v: L.conv_forward_naive(x, v, b, param)[0], w.copy(), dout)
    eval_numerical_gradient_array(lambda v: L.conv_forward_naive(x, w, v, param)[0], b.copy(), dout)


def conv_forward(x, w, b):
    return L.conv_forward_naive(x, w, b, {"stride": 1, "pad": 1})


def torch_gradcheck(x, w, b):
    """torch.autograd.gradcheck over the same numpy forward and backward, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)

    class Conv(torch.autograd.Function):
        @staticmethod
        def forward(ctx, tx, tw, tb):
            out, cache = conv_forward(tx.detach().numpy(), tw.detach().numpy(), tb.detach().numpy())
            ctx.cache = cache
            return torch.from_numpy(out)

        @staticmethod
        def backward(ctx, dout):
            return tuple(torch.from_numpy(g) for g in L.conv_backward_naive(dout.numpy(), ctx.cache))

    args = tuple(torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, w, b))
    return torch.autograd.gradcheck(Conv.apply, args, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--medium", action="store_true",
                    help="also the 64×128→256→10 net (its 32,768 weights of w1 each cost your affine a "
                         "full product: minutes)")
    args = ap.parse_args()
    r = args.repeat
    print(f"Machine: {platform.platform()}, {os.cpu_count()} cores (affinity "
          f"{len(os.sched_getaffinity(0))}), Python {platform.python_version()}, numpy {np.__version__}. "
          f"Run: {time.strftime('%Y-%m-%d %H:%M')}, `python bench/custom.py`, median of {r}.\n")
    print("| network | built-in ops | your affine/relu (file.py ops) | custom / built-in | "
          "custom, 2 worker processes |")
    print("|---|---|---|---|---|")
    for shape in ((32, 64, 128, 10),) + (((64, 128, 256, 10),) if args.medium else ()):
        builtin, custom = net(*shape, custom=False), net(*shape, custom=True)
        t_b, rep_b = median_time(lambda: gradverify.check(builtin), r)  # noqa: B023
        t_c, rep_c = median_time(lambda: gradverify.check(custom), r)  # noqa: B023
        with ProcessPoolExecutor(2) as pool:
            t_p, rep_p = median_time(lambda: gradverify.check(custom, executor=pool), r)  # noqa: B023
        n, d, h, c = shape
        print(f"| {n}×{d}→{h}→{c} | {t_b:.2f} s ({rep_b.status}) | {t_c:.2f} s ({rep_c.status}) | "
              f"{t_c / t_b:.1f}× | {t_p:.2f} s ({rep_p.status}) |")
        print(f"done {shape}", file=sys.stderr)
    x, w, b, param = conv_case()
    t_loop, _ = median_time(lambda: cs231n_loop(x, w, b, param), r)
    t_gv, rep = median_time(lambda: gradverify.check_op(conv_forward, L.conv_backward_naive, x, w, b), r)
    t_torch, ok = median_time(lambda: torch_gradcheck(x, w, b), r)
    torch_txt = "torch not installed" if ok is None else f"{t_torch:.2f} s ({'pass' if ok else 'FAIL'})"
    ratio = "—" if ok is None else f"{t_torch / t_gv:.1f}×"
    print("\n| naive conv, x 4×3×5×5, w 2×3×3×3, b 2 | time | / gradverify check_op |")
    print("|---|---|---|")
    print(f"| gradverify.check_op (complex step, error bars, kinks) | {t_gv:.2f} s ({rep.status}) | 1.0× |")
    print(f"| cs231n eval_numerical_gradient_array on x, w, b (h = 1e-5) | {t_loop:.2f} s | "
          f"{t_loop / t_gv:.1f}× |")
    print(f"| torch.autograd.gradcheck on the same numpy code, 1 thread | {torch_txt} | {ratio} |")


if __name__ == "__main__":
    main()
