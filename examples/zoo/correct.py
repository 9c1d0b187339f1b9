"""Hand-written layers in the cs231n convention, each right. `buggy.py` has the same functions,
each with one realistic bug; the configs beside them check one of each (`<case>.yaml` buggy,
`<case>_ok.yaml` correct).

    name_forward(x, ...) -> (out, cache)        name_backward(dout, cache) -> dx | (dx, dw, ...) | {"dx": ...}
    name(x, y) -> (loss, dx)                    (losses)
"""
import numpy as np

GELU_C = np.sqrt(2.0 / np.pi)
KEEP = 0.5  # dropout keeps half the units


def softmax_forward(x):
    """The notebook's softmax, piece by piece. x: (N, C) -> (N, C)."""
    exps = np.exp(x)
    sexps = np.sum(exps, axis=1).reshape(-1, 1)
    divexps = (1 / sexps).reshape(-1, 1)
    mul = exps * divexps
    return mul, {"exps": exps, "sexps": sexps, "divexps": divexps}


def softmax_backward(dout, cache):
    """The notebook's backward: a dict of intermediate gradients with "dx" among them."""
    grad = {}
    grad["dexps_0"] = cache["divexps"] * dout
    grad["ddivexps"] = np.sum(cache["exps"] * dout, axis=1).reshape(-1, 1)
    grad["dsexps"] = -1.0 / (cache["sexps"] ** 2) * grad["ddivexps"]
    grad["dexps_1"] = grad["dsexps"] * np.ones(dout.shape)  # the path through the row sum
    grad["dexps"] = grad["dexps_0"] + grad["dexps_1"]
    grad["dx"] = cache["exps"] * grad["dexps"]
    return grad


def relu_forward(x):
    out = np.maximum(x, 0) if not np.iscomplexobj(x) else np.where(x.real > 0, x, 0)
    return out, x


def relu_backward(dout, cache):
    x = cache
    return dout * (x.real > 0)


def affine_forward(x, w, b):
    """x: (N, D), w: (D, M), b: (M,) -> (N, M)."""
    return x @ w + b, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def sigmoid_forward(x):
    out = 1 / (1 + np.exp(-x))
    return out, out


def sigmoid_backward(dout, cache):
    out = cache
    return dout * out * (1 - out)


def tanh_forward(x):
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    return dout * (1 - cache ** 2)


def gelu_forward(x):
    """GELU, tanh approximation: 0.5 x (1 + tanh(c (x + 0.044715 x³)))."""
    t = np.tanh(GELU_C * (x + 0.044715 * x ** 3))
    return 0.5 * x * (1 + t), (x, t)


def gelu_backward(dout, cache):
    x, t = cache
    dt = (1 - t ** 2) * GELU_C * (1 + 3 * 0.044715 * x ** 2)
    return dout * (0.5 * (1 + t) + 0.5 * x * dt)


def dropout_forward(x):
    """Inverted dropout; gradverify reseeds numpy before every call, so the mask is fixed."""
    mask = (np.random.rand(*x.shape) < KEEP) / KEEP
    return x * mask, mask


def dropout_backward(dout, cache):
    return dout * cache


def center_forward(x):
    """Subtract each column's mean over the batch (batch norm without the scaling)."""
    return x - x.mean(axis=0), x.shape[0]


def center_backward(dout, cache):
    return dout - dout.mean(axis=0)


def l2_forward(w, reg=0.0):
    return reg * np.sum(w * w), (w, reg)


def l2_backward(dout, cache):
    w, reg = cache
    return dout * 2 * reg * w


def softmax_loss(x, y):
    """cs231n: mean cross-entropy of softmax(x) and labels y. Returns (loss, dx)."""
    shifted = x - np.max(x.real, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    n = x.shape[0]
    loss = -np.sum(log_probs[np.arange(n), y]) / n
    dx = np.exp(log_probs)
    dx[np.arange(n), y] -= 1
    return loss, dx / n


def svm_loss(x, y):
    """cs231n's multiclass SVM loss with margin 1. Returns (loss, dx)."""
    n = x.shape[0]
    correct = x[np.arange(n), y][:, None]
    margins = np.where((x - correct + 1).real > 0, x - correct + 1, 0)
    margins[np.arange(n), y] = 0
    loss = np.sum(margins) / n
    active = (margins.real > 0).astype(float)
    dx = active.copy()
    dx[np.arange(n), y] -= active.sum(axis=1)
    return loss, dx / n


# the same layers under the names buggy.py uses for its variants
def affine_axis_forward(x, w, b):
    return affine_forward(x, w, b)


def affine_axis_backward(dout, cache):
    return affine_backward(dout, cache)


def tanh32_forward(x):
    return tanh_forward(x)


def tanh32_backward(dout, cache):
    return tanh_backward(dout, cache)
