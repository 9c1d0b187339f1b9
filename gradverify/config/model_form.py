"""The model form: `model: {class: file.py:Class, args: {…}, inputs: [X, y], kwargs: {…}}` with
`data:`, the cs231n classifier pattern `Class(**args).loss(*inputs, **kwargs) -> (loss, grads)`
checked over every entry of `model.params` (build makes the graph)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import did_you_mean
from .checks import check_keys, is_custom, kind, mapping
from .model import ModelSpec, Source

MODEL_KEYS = ("class", "args", "inputs", "kwargs")


def read_model(value: Any, src: Source, data: dict[str, np.ndarray]) -> ModelSpec:
    path = ("model",)
    spec = mapping(value, src, path, "class:, args:, inputs:, kwargs:")
    check_keys(spec, MODEL_KEYS, src, path, "model")
    if "class" not in spec:
        raise src.error("missing `class:` (file.py:ClassName)", path)
    cls = spec["class"]
    if not (is_custom(cls) or callable(cls) or hasattr(cls, "loss")):
        raise src.error(f"expected file.py:ClassName, got {kind(cls)}", path + ("class",))
    args = mapping(spec.get("args", {}), src, path + ("args",), "the constructor's keyword arguments")
    kwargs = mapping(spec.get("kwargs", {}), src, path + ("kwargs",), "keyword arguments of model.loss")
    inputs = spec.get("inputs", [])
    if not isinstance(inputs, list) or not all(isinstance(n, str) for n in inputs):
        raise src.error(f"expected a list of names from data:, got {kind(inputs)}", path + ("inputs",))
    for k, name in enumerate(inputs):
        if name not in data:
            raise src.error(f"{name!r} is not in data:{did_you_mean(name, data)}", path + ("inputs", k))
    return ModelSpec(cls, dict(args), tuple(inputs), dict(kwargs), path)
