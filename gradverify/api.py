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

from . import checker
from . import config as config_mod
from .config import Config, Source
from .custom import PythonOp, gradient_names
from .errors import GradverifyError
from .graph import Graph, Node
from .ops import WeightedSum
from .results import Report, Settings

__all__ = ["check", "check_op", "Report", "GradverifyError"]


def _settings(method, strict, rtol, atol, sample, fast, nodes, seed, split) -> Settings:
    return Settings(method=method, strict=strict, rtol=rtol, atol=atol, sample=sample, fast=fast,
                    nodes=tuple(nodes) if nodes else None, seed=seed, split=split)


def _config(cfg) -> Config:
    if isinstance(cfg, Config):
        return cfg
    if isinstance(cfg, dict):
        return config_mod.validate(cfg, Source(file="<dict>"))
    if isinstance(cfg, os.PathLike) or (isinstance(cfg, str) and "\n" not in cfg and
                                        Path(cfg).suffix in (".yaml", ".yml", ".json")):
        return config_mod.load(cfg)
    if isinstance(cfg, str):
        return config_mod.parse(cfg, file="<string>")
    raise GradverifyError(f"expected a config path, YAML text or a dict, got {type(cfg).__name__}")


def check(config, *, method: str = "auto", strict: bool = False, rtol: float | None = None,
          atol: float | None = None, sample: int | None = None, fast: bool = False,
          nodes=None, seed: int = 0, split: bool = False) -> Report:
    """Check every node of a network, as `gradverify check` does.

    config: a path to a YAML file, YAML text, or the config as a dict. Raises GradverifyError
    (with the config key and line) on bad input; returns a Report (`.ok`, `.nodes`, `.blame`,
    `.to_dict()`, `.table()`, `.assert_ok()`)."""
    return checker.run(_config(config), _settings(method, strict, rtol, atol, sample, fast, nodes,
                                                  seed, split))


def check_op(forward, backward, *inputs, method: str = "auto", rtol: float | None = None,
             atol: float | None = None, seed: int = 0, **attrs) -> Report:
    """Check one op in the cs231n convention on the given inputs:
    `forward(*inputs, **attrs) -> (out, cache)`, `backward(dout, cache) -> dx | (dx, dw, …) |
    {"dx": …}`. The scalar checked is Σ out · R for a fixed random R (seeded by `seed`), so every
    input's gradient is d/dinput of ⟨out, R⟩, what cs231n's eval_numerical_gradient_array
    estimates by hand — here with the complex step where the op allows it, error bars and kinks.

    Nodes: one per input, named after forward's parameters (x, w, b, …), then `out` and `loss`."""
    if not inputs:
        raise GradverifyError("check_op needs at least one input array")
    arrays = [np.array(a, dtype=np.float64) for a in inputs]
    names = list(gradient_names(forward, len(arrays)))
    ref = getattr(forward, "__name__", "forward").removesuffix("_forward")
    graph = Graph(loss="loss")
    for name, a in zip(names, arrays):
        graph.add(Node(name, "input", value=a[None], key=("inputs", name)))
    op = PythonOp(ref, forward, backward, attrs=attrs, seed=seed, input_names=tuple(names), node="out")
    graph.add(Node("out", "intermediate", op=op, inputs=tuple(names), source=ref))
    out = op.forward(*(a[None] for a in arrays))
    cotangent = np.random.default_rng(seed).normal(size=out.shape[1:])
    graph.add(Node("loss", "loss", op=WeightedSum(cotangent), inputs=("out",)))
    cfg = Config(source=Source(file=None), seed=seed)
    return checker.run(cfg, _settings(method, False, rtol, atol, None, False, None, seed, False),
                       graph=graph)
