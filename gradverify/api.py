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
from typing import Any

import numpy as np

from . import checker, options, usercode
from . import config as config_mod
from .config import Config, Source
from .config.paths import confine_folder, with_code_dir
from .custom import PythonOp, fn_name, gradient_names
from .errors import GradverifyError
from .graph import Graph, Node
from .results import Report, Settings
from .userops import MultiOp, Pick, Project

__all__ = ["check", "check_op", "check_loss", "check_model", "Report", "GradverifyError"]


def _settings(method, strict, rtol, atol, sample, fast, nodes, seed, split, taylor=False) -> Settings:
    """The arguments checked as the command line checks its options (options.settings)."""
    return options.settings(method=method, strict=strict, rtol=rtol, atol=atol, sample=sample,
                            fast=fast, nodes=nodes, seed=seed, split=split, taylor=taylor)


def _config(cfg, confine=None, code_dir=None) -> Config:
    confine = confine_folder(confine, "confine=")
    if isinstance(cfg, Config):
        return cfg
    if isinstance(cfg, dict):
        loaded = config_mod.validate(_plain(cfg), Source(file="<dict>", confine=confine))
    elif isinstance(cfg, os.PathLike) or (isinstance(cfg, str) and "\n" not in cfg and
                                          Path(cfg).suffix in (".yaml", ".yml", ".json")):
        loaded = config_mod.load(cfg, confine=confine)
    elif isinstance(cfg, str):
        loaded = config_mod.parse(cfg, file="<string>", confine=confine)
    else:
        raise GradverifyError(f"expected a config path, YAML text or a dict, got {type(cfg).__name__}")
    return with_code_dir(loaded, code_dir)


def check(config, *, method: str = "auto", strict: bool = False, rtol: float | None = None,
          atol: float | None = None, sample: int | None = None, fast: bool = False,
          nodes=None, seed: int = 0, split: bool = False, confine=None, code_dir=None,
          taylor: bool = False, executor=None) -> Report:
    """Check every node of a network, as `gradverify check` does.

    config: a path to a YAML file, YAML text, or the config as a dict. Raises GradverifyError
    (with the config key and line) on bad input or bad arguments; returns a Report (`.ok`,
    `.nodes`, `.blame`, `.to_dict()`, `.table()`, `.assert_ok()`). The user's op files are
    executed from their current source on every call (an edit between two calls is seen).
    confine: a folder that every file the config names must be inside (as --confine).
    code_dir: read the config's `file.py:name` references from this folder instead of the
    config's (as --code-dir: one config, many students' code).
    taylor: also run the Taylor remainder test per node (as --taylor): `report.node(n).taylor`.
    executor: a concurrent.futures.Executor (a process pool, Dask's Client.get_executor()) that
    runs the nodes upstream of the user's own ops in pieces (docs/scale.md)."""
    settings = _settings(method, strict, rtol, atol, sample, fast, nodes, seed, split, taylor)
    with usercode.watch_sigint(), usercode.session():
        return checker.run(_config(config, confine, code_dir), settings, executor=executor)


def _function(fn, what: str):
    if not callable(fn):
        raise GradverifyError(f"check_op: {what} must be a function, got {type(fn).__name__}")
    return fn


def _arrays(inputs) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """(the differentiable inputs as float64, {slot: data}): integer and boolean arrays are data."""
    if not inputs:
        raise GradverifyError("check_op needs at least one input array")
    arrays, data = [], {}
    for k, a in enumerate(inputs):
        if isinstance(a, np.ndarray) and a.dtype.kind in "biu":
            data[k] = a
            continue
        try:
            arrays.append(np.array(a, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise GradverifyError(f"check_op: input {k} is not an array of real numbers ({e})") from None
        if not np.all(np.isfinite(arrays[-1])):
            raise GradverifyError(f"check_op: input {k} contains NaN or Inf")
    if not arrays:
        raise GradverifyError("check_op: every input is integer or boolean data: nothing to check")
    return arrays, data


def _node_name(fn, default: str) -> str:
    name = usercode.safe_str(getattr(fn, "__name__", default))
    return name if name.isidentifier() else default


def check_op(forward, backward, *inputs, attrs: dict | None = None, outputs: int = 1,
             method: str = "auto", rtol: float | None = None, atol: float | None = None,
             seed: int = 0, executor=None, **more_attrs) -> Report:
    """Check one op in the cs231n convention on the given inputs:
    `forward(*inputs, **attrs) -> (out, cache)` (with outputs=k: (out1, …, outk, cache)),
    `backward(dout, cache) -> dx | (dx, dw, …) | {"dx": …}` (with outputs=k: backward(dout1, …,
    doutk, cache)). Integer and boolean arrays are data: passed as they are, never perturbed, and
    backward returns gradients for the other inputs only. `attrs=` holds keyword arguments of
    forward (other keyword arguments are taken as attrs too, as before). The scalar checked is
    Σ out · R for a fixed random R (seeded by `seed`; over every output), what cs231n's
    eval_numerical_gradient_array estimates by hand — here with the complex step where the op
    allows it, error bars and kinks.

    Nodes: one per differentiable input, named after forward's parameters (x, w, b, …), the op's
    node named after forward (its outputs `name_0`, `name_1`, … with outputs > 1), then `loss`.
    executor: as for check (the functions must pickle: a module's, not a lambda's; else the
    check runs in this process)."""
    settings = _settings(method, False, rtol, atol, None, False, None, seed, False)
    forward, backward = _function(forward, "forward"), _function(backward, "backward")
    arrays, data = _arrays(inputs)
    params = gradient_names(forward, len(inputs))
    names = [n for k, n in enumerate(params) if k not in data]
    node = _node_name(forward, "out")
    ref = f"{fn_name(forward)}/{fn_name(backward)}"  # the op column names the pair used
    graph = Graph(loss="loss")
    for name, a in zip(names, arrays):
        graph.add(Node(name, "input", value=a[None]))
    kw: dict[str, Any] = dict(attrs={**more_attrs, **(attrs or {})}, seed=seed, input_names=tuple(names),
                              node=node)
    multi = MultiOp(ref, forward, backward, outputs=outputs, **kw)
    op = PythonOp(ref, forward, backward, **kw) if outputs == 1 else multi
    op.data = data
    graph.add(Node(node, "intermediate", op=op, inputs=tuple(names), source=ref))
    outs = [node] if outputs == 1 else [f"{node}_{k}" for k in range(outputs)]
    if outputs > 1:
        for k, out in enumerate(outs):
            graph.add(Node(out, "intermediate", op=Pick(multi, k), inputs=(node,), source="pick"))
    graph.add(Node("loss", "loss", op=Project(seed), inputs=tuple(outs), source="project"))
    with usercode.watch_sigint(), usercode.session():  # (os._exit of your op: your error, as in check)
        return checker.run(Config(source=Source(file=None), seed=seed), settings, graph=graph,
                           executor=executor)


def _plain(value, in_data: bool = False):
    """A config dict with numpy arrays as lists (arrays under `data:` stay arrays: their dtype)."""
    if isinstance(value, dict):
        return {k: _plain(v, in_data or k == "data") for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not in_data:
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray) and not in_data:
        return value.tolist()
    return value


def check_loss(fn, *inputs, attrs: dict | None = None, data=(), method: str = "auto",
               rtol: float | None = None, atol: float | None = None, seed: int = 0) -> Report:
    """Check a whole loss `fn(*inputs, **attrs) -> (loss, grads)`, grads for the float inputs in
    order (one array, a tuple or a dict {"dx": …}); integer and boolean inputs are data, and so
    are the inputs whose parameter names are in `data` (svm_loss_naive's X: data=("X",)).
    Nodes: the float inputs, named after fn's parameters, and the loss, named after fn."""
    fn = _function(fn, "fn")
    names = gradient_names(fn, len(inputs))
    values: dict = {}
    consts: dict = {}
    for name, a in zip(names, inputs):
        a = np.asarray(a)
        (consts if a.dtype.kind in "biu" or name in data else values)[name] = a
    node = _node_name(fn, "loss_fn")
    cfg = {"seed": seed, "values": values, "data": consts, "loss": node,
           "graph": [{"name": node, "op": {"loss": fn}, "inputs": list(names), "attrs": dict(attrs or {})}]}
    return check(cfg, method=method, rtol=rtol, atol=atol, seed=seed)


def check_model(model, *inputs, method: str = "auto", rtol: float | None = None, atol: float | None = None,
                seed: int = 0, **kwargs) -> Report:
    """Check a cs231n classifier: `model.loss(*inputs, **kwargs) -> (loss, grads)` over every entry
    of model.params (a node each). The inputs are data (X, y). model.params is restored after."""
    saved = dict(getattr(model, "params", {}) or {})
    cfg = {"seed": seed, "data": {f"input{k}": np.asarray(a) for k, a in enumerate(inputs)},
           "model": {"class": model, "inputs": [f"input{k}" for k in range(len(inputs))], "kwargs": kwargs}}
    try:
        return check(cfg, method=method, rtol=rtol, atol=atol, seed=seed)
    finally:
        model.params.update(saved)
