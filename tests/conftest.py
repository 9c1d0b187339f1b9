from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


def vjp_central(f, x, g, h=1e-6):
    """Independent check: d/dx Σ f(x)·g by central differences, element by element (plain loop,
    no gradverify code)."""
    x = np.array(x, dtype=np.float64)
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        out[i] = (np.sum(f(xp) * g) - np.sum(f(xm) * g)) / (2 * h)
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
