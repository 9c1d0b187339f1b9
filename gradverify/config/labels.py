"""What the loss compares the network's output with: class labels (one index per input row) or,
for mse, an N×C array of targets."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import KeyPath
from .arrays import ArrayReader
from .checks import check_keys, is_custom, kind, number
from .model import Source


def labels_targets(data: dict[str, Any], src: Source, arrays: ArrayReader, loss: str | None, n_rows: int,
                   n_classes: int | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The layers form's (labels, targets): mse takes targets, every other loss labels."""
    if loss is None:  # a `loss:` mapping without `type:`: build says so first
        return None, None
    if loss == "mse":
        return None, _targets(data, src, arrays, n_rows, n_classes)
    if "targets" in data and not is_custom(loss):
        raise src.error(f"`targets:` belongs to loss mse; loss {loss} takes `labels:`", ("targets",))
    if "labels" not in data:
        raise src.error(f"missing `labels:` (one class index per input row) for loss {loss}")
    return read_labels(data["labels"], src, ("labels",), arrays.rng, n_rows, n_classes), None


def _targets(data: dict[str, Any], src: Source, arrays: ArrayReader, n_rows: int,
             n_classes: int | None) -> np.ndarray:
    if "labels" in data:
        raise src.error("loss mse takes `targets:` (an N×C array), not labels", ("labels",))
    if "targets" not in data:
        raise src.error("missing `targets:` (an N×C array) for loss mse")
    targets = arrays.read(data["targets"], ("targets",), ndim=2, what="the targets")
    want = (n_rows, n_classes)
    if targets.shape != want:
        raise src.error(f"expected shape {list(want)} (rows of the inputs × outputs of the last "
                        f"layer), got {list(targets.shape)}", ("targets",))
    return targets


def read_labels(value: Any, src: Source, path: KeyPath, rng: np.random.Generator, n_rows: int,
                n_classes: int | None) -> np.ndarray:
    """Class indices, one per row: a list of integers, or {classes: C} drawn from the seed."""
    if isinstance(value, dict):
        check_keys(value, ("classes",), src, path, "generated labels")
        c = int(number(value.get("classes"), src, path + ("classes",), integer=True, positive=True))
        if n_classes is not None and c != n_classes:
            raise src.error(f"{c} classes, but the last layer has {n_classes} outputs", path + ("classes",))
        return rng.integers(0, c, size=n_rows)
    if not isinstance(value, list):
        raise src.error(f"expected a list of class indices or {{classes: C}}, got {kind(value)}", path)
    if len(value) != n_rows:
        raise src.error(f"expected {n_rows} labels, one per input row, got {len(value)}", path)
    for i, v in enumerate(value):
        if not isinstance(v, int) or isinstance(v, bool):
            raise src.error(f"expected a class index (an integer), got {kind(v)}", path + (i,))
        if n_classes is not None and not 0 <= v < n_classes:
            raise src.error(f"class {v} is out of range: the last layer has {n_classes} outputs, so "
                            f"labels run from 0 to {n_classes - 1}", path + (i,))
    return np.asarray(value, dtype=np.intp)
