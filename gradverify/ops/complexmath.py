"""Exact fast complex exp and log for the complex step: with an imaginary part of ~1e-20, the
complex functions reduce to real ones plus a first-order term that is exact in float64."""
from __future__ import annotations

import numpy as np

#: below this |Im z| / scale, cos(Im z) rounds to 1 and sin(Im z) to Im z in float64: the complex
#: exp and log reduce exactly to real ones (the complex step's imaginary parts are ~1e-20)
_TINY_IMAG = 1e-9


def cexp(z: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    """np.exp(z - shift) for a real shift, faster for complex z with tiny imaginary parts:
    e^(a+ib) = e^a (1 + ib) exactly in float64 when |b| < 1e-9 (cos b = 1 and sin b = b to the
    last bit)."""
    if not np.iscomplexobj(z) or not z.size or not (-_TINY_IMAG < z.imag.min() and z.imag.max() < _TINY_IMAG):
        return np.exp(z if shift is None else z - shift)
    out = z - shift if shift is not None else z.copy()  # a new array, filled in place
    e = np.exp(out.real)
    out.real = e
    out.imag *= e
    return out


def clog(z: np.ndarray) -> np.ndarray:
    """np.log, faster for complex z = a + ib with a > 0 and |b| < 1e-9·a: log z = log a + ib/a
    exactly in float64 (the dropped terms are (b/a)² relative)."""
    if not np.iscomplexobj(z) or not z.size:
        return np.log(z)
    low = z.real.min()
    if not (low > 0 and -_TINY_IMAG * low < z.imag.min() and z.imag.max() < _TINY_IMAG * low):
        return np.log(z)
    out = np.empty(z.shape, dtype=np.complex128)
    out.real = np.log(z.real)
    out.imag = z.imag / z.real
    return out


def cmatmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b, faster where one side is complex and the other real: numpy casts the real side to
    complex and multiplies complex by complex (four real products a term); here each part of
    the complex side goes through one real product, and only the imaginary part where the real
    part is 0 (a complex step's change: one real product). The same values, up to the order in
    which BLAS sums them."""
    if np.iscomplexobj(a) == np.iscomplexobj(b):
        return a @ b
    if np.iscomplexobj(a):
        imag = a.imag @ b
        real = None if not a.real.any() else a.real @ b
    else:
        imag = a @ b.imag
        real = None if not b.real.any() else a @ b.real
    out = np.zeros(imag.shape, dtype=np.result_type(a, b)) if real is None else \
        np.empty(imag.shape, dtype=np.result_type(a, b))
    if real is not None:
        out.real = real
    out.imag = imag
    return out
