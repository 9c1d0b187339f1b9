"""Backward bugs made for docs/diagnosis.md: each leaves one pattern that gradverify names."""
import numpy as np


def matmul_forward(x, w):
    return x @ w, (x, w)


def matmul_backward(dout, cache):
    x, w = cache
    dw = np.zeros_like(w)
    dw[:, :-1] = x.T @ dout[:, :-1]  # BUG: the last column of dw is never filled
    return dout @ w.T, dw


def swapped_forward(x, w):
    return x @ w, (x, w)


def swapped_backward(dout, cache):
    x, w = cache
    return dout @ w.T, dout.T @ x  # BUG: operands swapped: (x.T @ dout).T


def steps_forward(x):
    return np.tanh(x), x


def steps_backward(dout, x):
    dx = dout * (1 - np.tanh(x) ** 2)
    dx[:, -1] = dout[:, -1]  # BUG: the last time step skips the tanh's derivative
    return dx


def conv_like_forward(x):
    return np.sin(x), x


def conv_like_backward(dout, x):
    dx = dout * np.cos(x)
    dx[:, :, 1:-1, 1:-1] = dx[:, :, 1:-1, 1:-1]
    dx[:, :, [0, -1], :] = 0.0  # BUG: the padded border rows dropped
    dx[:, :, :, [0, -1]] = 0.0  # and the border columns
    return dx


def center_forward(x):
    return x - x.mean(axis=0) - x.mean(axis=1, keepdims=True), None


def center_backward(dout, cache):
    return dout  # BUG: both means' paths missing
