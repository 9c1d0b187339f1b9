"""The Python API, for test suites: check a whole network, or one cs231n-style op.

    import gradverify
    report = gradverify.check("configs/seed.yaml")        # a path, YAML text or a dict
    report.assert_ok()                                     # AssertionError with the table

    report = gradverify.check_op(affine_forward, affine_backward, x, w, b)
    assert report.ok, report.table()
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import checker, options, usercode
from . import config as config_mod
from .config import Config, Source
from .config.paths import confine_folder
from .custom import PythonOp, gradient_names
from .errors import GradverifyError
from .graph import Graph, Node
from .ops import WeightedSum
from .results import Report, Settings

__all__ = ["check", "check_op", "Report", "GradverifyError"]


def _settings(method, strict, rtol, atol, sample, fast, nodes, seed, split) -> Settings:
    """The arguments checked as the command line checks its options (options.settings)."""
    return options.settings(method=method, strict=strict, rtol=rtol, atol=atol, sample=sample,
                            fast=fast, nodes=nodes, seed=seed, split=split)


def _config(cfg, confine=None) -> Config:
    confine = confine_folder(confine, "confine=")
    if isinstance(cfg, Config):
        return cfg
    if isinstance(cfg, dict):
        loaded = config_mod.validate(cfg, Source(file="<dict>", confine=confine))
    elif isinstance(cfg, os.PathLike) or (isinstance(cfg, str) and "\n" not in cfg and
                                          Path(cfg).suffix in (".yaml", ".yml", ".json")):
        loaded = config_mod.load(cfg, confine=confine)
    elif isinstance(cfg, str):
        loaded = config_mod.parse(cfg, file="<string>", confine=confine)
    else:
        raise GradverifyError(f"expected a config path, YAML text or a dict, got {type(cfg).__name__}")
    # file.py references are relative to this folder now, whatever the user's code does to the
    # working directory while it runs
    loaded.source.base_dir = Path(os.path.abspath(loaded.source.base_dir))
    return loaded


def check(config, *, method: str = "auto", strict: bool = False, rtol: float | None = None,
          atol: float | None = None, sample: int | None = None, fast: bool = False,
          nodes=None, seed: int = 0, split: bool = False, confine=None) -> Report:
    """Check every node of a network, as `gradverify check` does.

    config: a path to a YAML file, YAML text, or the config as a dict. Raises GradverifyError
    (with the config key and line) on bad input or bad arguments; returns a Report (`.ok`,
    `.nodes`, `.blame`, `.to_dict()`, `.table()`, `.assert_ok()`). The user's op files are
    executed from their current source on every call (an edit between two calls is seen).
    confine: a folder that every file the config names must be inside (as --confine)."""
    settings = _settings(method, strict, rtol, atol, sample, fast, nodes, seed, split)
    with usercode.watch_sigint(), usercode.session():
        return checker.run(_config(config, confine), settings)


def _function(fn, what: str):
    if not callable(fn):
        raise GradverifyError(f"check_op: {what} must be a function, got {type(fn).__name__}")
    return fn


def _arrays(inputs) -> list[np.ndarray]:
    if not inputs:
        raise GradverifyError("check_op needs at least one input array")
    arrays = []
    for k, a in enumerate(inputs):
        try:
            arrays.append(np.array(a, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise GradverifyError(f"check_op: input {k} is not an array of real numbers ({e})") from None
        if not np.all(np.isfinite(arrays[-1])):
            raise GradverifyError(f"check_op: input {k} contains NaN or Inf")
    return arrays


def check_op(forward, backward, *inputs, method: str = "auto", rtol: float | None = None,
             atol: float | None = None, seed: int = 0, **attrs) -> Report:
    """Check one op in the cs231n convention on the given inputs:
    `forward(*inputs, **attrs) -> (out, cache)`, `backward(dout, cache) -> dx | (dx, dw, …) |
    {"dx": …}`. The scalar checked is Σ out · R for a fixed random R (seeded by `seed`), so every
    input's gradient is d/dinput of ⟨out, R⟩, what cs231n's eval_numerical_gradient_array
    estimates by hand — here with the complex step where the op allows it, error bars and kinks.

    Nodes: one per input, named after forward's parameters (x, w, b, …), then `out` and `loss`."""
    settings = _settings(method, False, rtol, atol, None, False, None, seed, False)
    forward, backward = _function(forward, "forward"), _function(backward, "backward")
    arrays = _arrays(inputs)
    names = list(gradient_names(forward, len(arrays)))
    ref = usercode.safe_str(getattr(forward, "__name__", "forward")).removesuffix("_forward")
    graph = Graph(loss="loss")
    for name, a in zip(names, arrays):
        graph.add(Node(name, "input", value=a[None]))
    op = PythonOp(ref, forward, backward, attrs=attrs, seed=seed, input_names=tuple(names), node="out")
    graph.add(Node("out", "intermediate", op=op, inputs=tuple(names), source=ref))
    with usercode.watch_sigint():
        out = op.forward(*(a[None] for a in arrays))
        cotangent = np.random.default_rng(seed).normal(size=out.shape[1:])
        graph.add(Node("loss", "loss", op=WeightedSum(cotangent), inputs=("out",)))
        return checker.run(Config(source=Source(file=None), seed=seed), settings, graph=graph)
