"""Arrays in a config: given inline as nested lists, generated from the seed ({shape, init, std}),
or read from a .npy file ({file}), all under one element budget checked before allocating."""
from __future__ import annotations

from typing import Any, BinaryIO

import numpy as np

from ..errors import ConfigError, KeyPath, did_you_mean
from .checks import check_keys, is_number, kind, number
from .model import Source
from .paths import NotRegularFile, open_regular, resolve_path

#: the most elements any one array, and all arrays together, may have (override: --max-elements)
DEFAULT_MAX_ELEMENTS = 10_000_000
INITS = ("normal", "uniform", "zeros", "ones")


class ArrayReader:
    """Reads every array of one config, counting their elements against `max_elements`."""

    def __init__(self, src: Source, rng: np.random.Generator, max_elements: int):
        self.src, self.rng, self.max_elements = src, rng, max_elements
        self.total = 0

    def read(self, value: Any, path: KeyPath, ndim: int | None = None, what: str = "array") -> np.ndarray:
        if isinstance(value, dict):
            arr = self._special(value, path)
        elif isinstance(value, list) or is_number(value):
            arr = self._inline(value, path)
        else:
            raise self.src.error(f"expected {what} (a nested list of numbers, "
                                 "{shape: …, init: …} or {file: ….npy}), got " + kind(value), path)
        if ndim is not None and arr.ndim != ndim:
            shape_hint = {1: "a list of numbers", 2: "a list of rows"}.get(ndim, f"{ndim}-D")
            raise self.src.error(f"expected {what} as {shape_hint} ({ndim}-D), got {arr.ndim}-D with "
                                 f"shape {list(arr.shape)}", path)
        if arr.size == 0:  # a zero-row .npy batch: a loss of 0 that checks nothing
            raise self.src.error(f"{what} has no elements (shape {list(arr.shape)}): arrays need at "
                                 "least one element", path)
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise self.src.error(f"contains {arr[where]} at index {list(where)}: every value must be "
                                 "finite", path + where)
        return arr

    def _count(self, n: int, path: KeyPath) -> None:
        if n > self.max_elements:
            raise self.src.error(f"{n:,} elements is more than the limit of {self.max_elements:,} "
                                 "(raise it with --max-elements)", path)
        self.total += n
        if self.total > self.max_elements:
            raise self.src.error(f"the arrays add up to more than the limit of {self.max_elements:,} "
                                 "elements (raise it with --max-elements)", path)

    def _shape_of(self, value: Any, path: KeyPath) -> tuple[int, ...]:
        """The shape of a nested list of numbers, refusing empty lists, ragged rows and non-numbers."""
        if isinstance(value, list):
            if not value:
                raise self.src.error("empty list: arrays need at least one element", path)
            shapes = [self._shape_of(item, path + (i,)) for i, item in enumerate(value)]
            for i, s in enumerate(shapes[1:], 1):
                if s != shapes[0]:
                    raise self.src.error(f"ragged array: item {i} has shape {list(s)} but item 0 "
                                         f"has {list(shapes[0])}", path + (i,))
            return (len(value),) + shapes[0]
        if not is_number(value):
            raise self.src.error(f"expected a number, got {kind(value)}", path)
        return ()

    def _inline(self, value: Any, path: KeyPath) -> np.ndarray:
        shape = _plain_shape(value)
        if shape is None:  # not a plain 1-D or 2-D list of numbers: find and name what is wrong
            shape = self._shape_of(value, path)
        self._count(int(np.prod(shape)), path)
        try:
            return np.array(value, dtype=np.float64)
        except OverflowError:  # an integer beyond the floats' range (possible from Python data)
            index, item = next(_huge_ints(value))
            raise self.src.error(f"the integer {str(item)[:20]}… is beyond the range of a 64-bit "
                                 "float", path + index) from None

    def _special(self, spec: dict[str, Any], path: KeyPath) -> np.ndarray:
        if "file" in spec:
            check_keys(spec, ("file",), self.src, path, "a file array")
            return self._file(spec["file"], path + ("file",))
        return self._generated(spec, path)

    def _generated(self, spec: dict[str, Any], path: KeyPath) -> np.ndarray:
        check_keys(spec, ("shape", "init", "std"), self.src, path, "a generated array")
        if "shape" not in spec:
            raise self.src.error("a generated array needs `shape:` (e.g. {shape: [4, 3], init: normal})", path)
        shape = spec["shape"]
        if not isinstance(shape, list) or not shape or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
            raise self.src.error(f"expected a list of positive integers, got {kind(shape)}", path + ("shape",))
        init = spec.get("init", "normal")
        if init not in INITS:
            raise self.src.error(f"unknown init {init!r}{did_you_mean(init, INITS)}; "
                                 f"valid: {', '.join(INITS)}", path + ("init",))
        std = number(spec.get("std", 0.1), self.src, path + ("std",), nonneg=True)
        n = 1
        for s in shape:  # Python integers: a huge shape cannot overflow into a small count
            n *= s
        self._count(n, path + ("shape",))  # before allocating anything
        if init == "normal":
            return self.rng.normal(0.0, std, size=shape)
        if init == "uniform":
            return self.rng.uniform(-std, std, size=shape)
        return np.zeros(shape) if init == "zeros" else np.ones(shape)

    def _file(self, name: Any, path: KeyPath, keep_dtype: bool = False) -> np.ndarray:
        """A .npy file's array (float64, or its own dtype for `data:`): a regular file only, under
        --confine inside the folder, its size counted before its data is read."""
        if not isinstance(name, str):
            raise self.src.error(f"expected a file name, got {kind(name)}", path)
        try:
            full = resolve_path(self.src.base_dir, name, self.src.confine)
        except ConfigError as e:
            raise self.src.error(e.message, path) from None
        try:
            with open_regular(full) as fh:
                return self._npy(fh, name, path, keep_dtype)
        except NotRegularFile as e:
            raise self.src.error(f"{name} is {e.what}, not a .npy file", path) from None
        except OSError as e:
            raise self.src.error(f"cannot read {name}: {e.strerror or e}", path) from None
        except (ValueError, EOFError):  # never quote the file: it may be anything (/etc/passwd)
            raise self.src.error(f"{name} is not a .npy file (or it is damaged)", path) from None

    def _npy(self, fh: BinaryIO, name: str, path: KeyPath, keep_dtype: bool = False) -> np.ndarray:
        version = np.lib.format.read_magic(fh)
        reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)
        shape, _, dtype = reader(fh)
        if dtype.hasobject or dtype.kind not in "biuf":
            raise self.src.error(f"{name}: expected numbers, the file holds {dtype}", path)
        self._count(int(np.prod(shape)), path)  # before reading the data
        fh.seek(0)
        arr = np.load(fh, allow_pickle=False)
        return np.array(arr) if keep_dtype else np.asarray(arr, dtype=np.float64)

_NUMBER_TYPES = {int, float}
_FLOAT_MAX = float(np.finfo(np.float64).max)


def _plain_shape(value: Any) -> tuple[int, ...] | None:
    """The shape of a non-empty list of numbers or of equally long such lists (what inline arrays
    almost always are), checked at C speed; None for anything else."""
    if not isinstance(value, list) or not value:
        return None
    if set(map(type, value)) <= _NUMBER_TYPES:
        return (len(value),)
    if not all(type(row) is list for row in value):
        return None
    width = len(value[0])
    if width == 0 or any(len(row) != width for row in value):
        return None
    if not all(set(map(type, row)) <= _NUMBER_TYPES for row in value):
        return None
    return (len(value), width)


def _huge_ints(value: Any, index: KeyPath = ()) -> Any:
    """(index, integer) of each integer too large to be a float (possible from Python data)."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _huge_ints(item, index + (i,))
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > _FLOAT_MAX:
        yield index, value

