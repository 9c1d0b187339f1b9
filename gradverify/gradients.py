"""The gradients a user's backward returned, checked and put in input order: an array, a tuple
or list (one per input), or a dict {"dx": …}; each of its input's shape, numbers, and real for a
real input."""
from __future__ import annotations

import numpy as np

from . import usercode
from .errors import UserCodeError
from .ops import BadGradient


def normalize_grads(raw, names, shapes, ref, complex_inputs=None) -> list[np.ndarray]:
    """An array, a tuple/list (one per input) or a dict {"dx": …} -> a list in input order,
    each checked against its input's shape and type: numbers, and real for a real input (the
    gradient of a real loss with respect to a real input is real; a complex one is a bug whose
    imaginary part the comparison would silently drop)."""
    if isinstance(raw, dict):
        missing = [f"d{n}" for n in names if f"d{n}" not in raw]
        if missing:
            raise BadGradient(f"the dict it returned has no {', '.join(missing)} "
                              f"(it has: {', '.join(map(usercode.safe_str, raw)) or 'nothing'})")
        grads = [raw[f"d{n}"] for n in names]
    elif isinstance(raw, (tuple, list)):
        grads = list(raw)
    else:
        grads = [raw]
    if len(grads) != len(names):
        raise BadGradient(f"it returned {len(grads)} gradient(s) for {len(names)} "
                          f"input(s) ({', '.join('d' + n for n in names)})")
    complex_inputs = complex_inputs or [False] * len(names)
    return [_gradient(n, gi, shape, c) for n, gi, shape, c in zip(names, grads, shapes, complex_inputs)]


def _gradient(n: str, gi, shape, complex_input: bool) -> np.ndarray:
    try:
        with usercode.guard(f"converting d{n}"):  # ragged lists; __array__ is user code
            gi = np.asarray(gi)
    except UserCodeError as e:
        raise BadGradient(f"it returned d{n} that is not an array ({e})") from None
    if gi.dtype == object:  # numpy < 1.24 makes ragged lists object arrays instead of raising
        raise BadGradient(f"it returned d{n} that is not an array (a ragged or mixed sequence)")
    if gi.shape != tuple(shape):
        raise BadGradient(f"it returned d{n} of shape {list(gi.shape)}, "
                          f"but {n} has shape {list(shape)}")
    if not np.issubdtype(gi.dtype, np.number):
        raise BadGradient(f"it returned d{n} of type {gi.dtype}, not numbers")
    if np.iscomplexobj(gi) and not complex_input:
        imag = float(np.max(np.abs(gi.imag), initial=0.0))
        raise BadGradient(f"it returned d{n} of complex type {gi.dtype} (largest imaginary part "
                          f"{imag:.1e}) for the real input {n}: its gradient must be real")
    return gi
