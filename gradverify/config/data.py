"""`data:`: named constant arguments of the user's code (word indices, masks, labels, a model's
inputs), never perturbed and never checked, kept in their own dtype: inline integers stay
integers, true/false are booleans, `{shape, init: integers, high, low}` draws integers in
[low, high) from the seed, `{file: x.npy}` keeps the file's dtype; any other array form is that of
`values:` (float64). From the Python API, a numpy array is taken as it is."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import KeyPath
from .arrays import ArrayReader
from .checks import check_keys, kind, mapping, number


def read_data(value: Any, arrays: ArrayReader) -> dict[str, np.ndarray]:
    src = arrays.src
    spec = mapping(value, src, ("data",), "name: array for every data argument")
    out = {}
    for name, v in spec.items():
        out[name] = read_datum(v, arrays, ("data", name))
    return out


def read_datum(value: Any, arrays: ArrayReader, path: KeyPath) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, dict) and value.get("init") == "integers":
        return _integers(value, arrays, path)
    if isinstance(value, dict) and "file" in value:
        check_keys(value, ("file",), arrays.src, path, "a file array")
        return _file(value["file"], arrays, path + ("file",))
    if isinstance(value, (list, bool, int)) and _leaves_exact(value):
        arr = np.array(value)
        if arr.dtype.kind not in "bi" or arr.size == 0:
            raise arrays.src.error(f"expected an array of integers or booleans, got {kind(value)}", path)
        arrays._count(arr.size, path)
        return arr
    return arrays.read(value, path, what="the data")


def _leaves_exact(value: Any) -> bool:
    """Every leaf an int or every leaf a bool (a list of numbers with a float goes to arrays.read)."""
    if isinstance(value, list):
        return bool(value) and all(_leaves_exact(v) for v in value) and \
            len({isinstance(v, bool) for v in _flat(value)}) == 1
    return isinstance(value, int)


def _flat(value: Any):
    if isinstance(value, list):
        for v in value:
            yield from _flat(v)
    else:
        yield value


def _integers(spec: dict[str, Any], arrays: ArrayReader, path: KeyPath) -> np.ndarray:
    src = arrays.src
    check_keys(spec, ("shape", "init", "high", "low"), src, path, "generated integers")
    if "high" not in spec:
        raise src.error("`init: integers` needs `high:` (integers are drawn from [low, high))", path)
    shape = spec.get("shape")
    if not isinstance(shape, list) or not shape or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise src.error(f"expected a list of positive integers, got {kind(shape)}", path + ("shape",))
    high = int(number(spec["high"], src, path + ("high",), integer=True))
    low = int(number(spec.get("low", 0), src, path + ("low",), integer=True))
    if high <= low:
        raise src.error(f"expected high > low ({low}), got {high}", path + ("high",))
    n = 1
    for s in shape:
        n *= s
    arrays._count(n, path + ("shape",))
    return arrays.rng.integers(low, high, size=shape)


def _file(name: Any, arrays: ArrayReader, path: KeyPath) -> np.ndarray:
    """A .npy file in its own dtype, read as every array file is (a regular file, bounded, inside
    --confine's folder, never quoted in a message)."""
    arr = arrays._file(name, path, keep_dtype=True)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise arrays.src.error(f"{name}: every value must be finite", path)
    return arr
