"""The same layers as correct.py, each with one realistic bug (marked BUG)."""
import numpy as np

GELU_C = np.sqrt(2.0 / np.pi)
KEEP = 0.5


def softmax_forward(x):
    exps = np.exp(x)
    sexps = np.sum(exps, axis=1).reshape(-1, 1)
    divexps = (1 / sexps).reshape(-1, 1)
    mul = exps * divexps
    return mul, {"exps": exps, "sexps": sexps, "divexps": divexps}


def softmax_backward(dout, cache):
    grad = {}
    grad["dexps_0"] = cache["divexps"] * dout
    grad["ddivexps"] = np.sum(cache["exps"] * dout, axis=1).reshape(-1, 1)
    grad["dsexps"] = -1.0 / (cache["sexps"] ** 2) * grad["ddivexps"]
    grad["dexps"] = grad["dexps_0"]  # BUG: the path through the row sum (dexps_1) is missing
    grad["dx"] = cache["exps"] * grad["dexps"]
    return grad


def relu_forward(x):
    out = np.maximum(x, 0) if not np.iscomplexobj(x) else np.where(x.real > 0, x, 0)
    return out, out


def relu_backward(dout, cache):
    out = cache
    return dout * (out.real >= 0)  # BUG: mask from the output, and >= lets x < 0 through


def affine_forward(x, w, b):
    return x @ w + b, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.mean(axis=0)  # BUG: db is a mean, not a sum


def affine_axis_forward(x, w, b):
    return x @ w + b, (x, w, b)


def affine_axis_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=1)  # BUG: the wrong axis (db of shape N)


def sigmoid_forward(x):
    out = 1 / (1 + np.exp(-x))
    return out, out


def sigmoid_backward(dout, cache):
    out = cache
    return dout * out * (out - 1)  # BUG: sign flipped


def tanh_forward(x):
    out = np.tanh(x)
    return out, x


def tanh_backward(dout, cache):
    x = cache
    return dout * (1 - x ** 2)  # BUG: the derivative from the input, not the output


def tanh32_forward(x):
    out = np.tanh(x)
    return out, out.astype(np.complex64 if np.iscomplexobj(out) else np.float32)  # BUG: cache


def tanh32_backward(dout, cache):
    return dout * (1 - cache.astype(dout.dtype) ** 2)  # a float32 cache: off by ~1e-8


def gelu_forward(x):
    t = np.tanh(GELU_C * (x + 0.044715 * x ** 3))
    return 0.5 * x * (1 + t), (x, t)


def gelu_backward(dout, cache):
    x, t = cache
    dt = (1 - t ** 2) * 0.79788 * (1 + 3 * 0.044715 * x ** 2)  # BUG: sqrt(2/pi) to 5 digits
    return dout * (0.5 * (1 + t) + 0.5 * x * dt)


def dropout_forward(x):
    mask = (np.random.rand(*x.shape) < KEEP) / KEEP
    return x * mask, mask


def dropout_backward(dout, cache):
    return dout * (cache > 0)  # BUG: the mask without its 1/keep scaling


def center_forward(x):
    return x - x.mean(axis=0), x.shape[0]


def center_backward(dout, cache):
    return dout  # BUG: forgets that every x also moved the mean


def l2_forward(w, reg=0.0):
    return reg * np.sum(w * w), (w, reg)


def l2_backward(dout, cache):
    w, reg = cache
    return dout * reg * w  # BUG: d(reg·w²) is 2·reg·w


def softmax_loss(x, y):
    shifted = x - np.max(x.real, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    n = x.shape[0]
    loss = -np.sum(log_probs[np.arange(n), y]) / n
    dx = np.exp(log_probs)
    dx[np.arange(n), y] -= 1
    return loss, dx  # BUG: the loss is a mean, but dx is not divided by N


def svm_loss(x, y):
    n = x.shape[0]
    correct = x[np.arange(n), y][:, None]
    margins = np.where((x - correct + 1).real > 0, x - correct + 1, 0)
    margins[np.arange(n), y] = 0
    loss = np.sum(margins) / n
    dx = (margins.real > 0).astype(float)  # BUG: the correct class's column gets nothing
    return loss, dx / n
