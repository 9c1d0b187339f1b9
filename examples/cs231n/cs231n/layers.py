"""Layers in the cs231n convention, written by hand, each backward right.

    *_forward(inputs..., params) -> (out, cache)
    *_backward(dout, cache)      -> the gradients of the forward's differentiable inputs, in order
    *_loss(x, y)                 -> (loss, dx)
"""
import numpy as np


def affine_forward(x, w, b):
    """
    Fully connected layer: out = x·w + b, each of the N examples flattened to a row of
    D = d_1 * ... * d_k numbers.

    Inputs:
    - x: input batch, shape (N, d_1, ..., d_k)
    - w: weights, shape (D, M)
    - b: biases, shape (M,)

    Returns a tuple of:
    - out: shape (N, M)
    - cache: (x, w, b)
    """
    x_rows = x.reshape(x.shape[0], -1)  # (N, D)
    out = x_rows @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    """
    Gradients of the fully connected layer.

    Inputs:
    - dout: gradient of the loss with respect to out, shape (N, M)
    - cache: (x, w, b) from affine_forward

    Returns a tuple of:
    - dx: shape (N, d_1, ..., d_k), like x
    - dw: shape (D, M)
    - db: shape (M,)
    """
    x, w, b = cache
    x_rows = x.reshape(x.shape[0], -1)
    dx = (dout @ w.T).reshape(x.shape)  # out = x·w + b  =>  dx = dout·wᵀ
    dw = x_rows.T @ dout                # dw = xᵀ·dout
    db = dout.sum(axis=0)               # b is added to every row
    return dx, dw, db


def relu_forward(x):
    """
    Rectified linear unit, elementwise: out = max(0, x).

    Inputs:
    - x: any shape

    Returns a tuple of:
    - out: same shape as x
    - cache: x
    """
    return np.maximum(0, x), x


def relu_backward(dout, cache):
    """
    Gradient of the ReLU.

    Inputs:
    - dout: gradient with respect to out, any shape
    - cache: x from relu_forward, same shape

    Returns:
    - dx: same shape as x
    """
    x = cache
    return dout * (x > 0)  # the gradient passes where the input was positive


def _normalize(x, axis, eps):
    """x_hat = (x - mean) / std over `axis` (kept as size-1 dimensions); returns (x_hat, std)."""
    mean = x.mean(axis=axis, keepdims=True)
    std = np.sqrt(x.var(axis=axis, keepdims=True) + eps)
    return (x - mean) / std, std


def _normalize_backward(dx_hat, x_hat, std, axis):
    """Backward of _normalize over `axis`. With x_hat = (x - μ) / σ, μ and σ² the mean and variance of m values:

        dx = (dx_hat - mean(dx_hat) - x_hat · mean(dx_hat · x_hat)) / σ

    the first term the direct path, the second the path through μ, the third the path through σ.
    """
    mean_dx_hat = dx_hat.mean(axis=axis, keepdims=True)
    mean_dx_hat_x_hat = (dx_hat * x_hat).mean(axis=axis, keepdims=True)
    return (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat) / std


def batchnorm_forward(x, gamma, beta, bn_param):
    """
    Batch normalization: out = gamma · (x - mean) / √(var + eps) + beta, per feature.

    In 'train' mode mean and var are the batch's own (var uncorrected, dividing by N), and the
    running averages used in 'test' mode are updated:

        running_mean = momentum · running_mean + (1 - momentum) · mean
        running_var  = momentum · running_var  + (1 - momentum) · var

    Inputs:
    - x: batch, shape (N, D)
    - gamma: scale, shape (D,)
    - beta: shift, shape (D,)
    - bn_param: dict with
      - mode: 'train' or 'test' (required)
      - eps: added to the variance (default 1e-5)
      - momentum: of the running averages (default 0.9)
      - running_mean, running_var: shape (D,), zeros when absent; written back on every call

    Returns a tuple of:
    - out: shape (N, D)
    - cache: dict with mode, x_hat (N, D), gamma (D,), std (D,)
    """
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    D = x.shape[1]
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))

    if mode == "train":
        sample_mean = x.mean(axis=0)
        sample_var = x.var(axis=0)
        std = np.sqrt(sample_var + eps)
        x_hat = (x - sample_mean) / std
        running_mean = momentum * running_mean + (1 - momentum) * sample_mean
        running_var = momentum * running_var + (1 - momentum) * sample_var
    elif mode == "test":
        std = np.sqrt(running_var + eps)  # fixed statistics: x_hat is affine in x
        x_hat = (x - running_mean) / std
    else:
        raise ValueError(f'Invalid forward batchnorm mode "{mode}"')
    out = gamma * x_hat + beta

    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, {"mode": mode, "x_hat": x_hat, "gamma": gamma, "std": std}


def batchnorm_backward(dout, cache):
    """
    Gradients of batch normalization, one node of the computational graph at a time:

        mean = Σx / N,  xc = x - mean,  var = Σxc² / N,  std = √(var + eps),  x_hat = xc / std,
        out = gamma · x_hat + beta

    Inputs:
    - dout: gradient with respect to out, shape (N, D)
    - cache: from batchnorm_forward

    Returns a tuple of:
    - dx: shape (N, D)
    - dgamma: shape (D,)
    - dbeta: shape (D,)
    """
    x_hat, gamma, std = cache["x_hat"], cache["gamma"], cache["std"]
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    if cache["mode"] == "test":
        return dx_hat / std, dgamma, dbeta

    xc = x_hat * std
    dstd = -(dx_hat * xc).sum(axis=0) / std**2  # x_hat = xc / std
    dvar = dstd / (2 * std)                      # std = √(var + eps)
    dxc = dx_hat / std + dvar * 2 * xc / N      # directly, and through var = Σxc² / N
    dmean = -dxc.sum(axis=0)                     # xc = x - mean
    dx = dxc + dmean / N                         # mean = Σx / N
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    """
    Gradients of batch normalization, the graph's chain rule simplified on paper to one line:

        dx = gamma / (N · std) · (N · dout - Σdout - x_hat · Σ(dout · x_hat))     (sums over the batch)

    Inputs and returns as batchnorm_backward.
    """
    x_hat, gamma, std = cache["x_hat"], cache["gamma"], cache["std"]
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    if cache["mode"] == "test":
        return dout * gamma / std, dgamma, dbeta

    dx = gamma / (N * std) * (N * dout - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    """
    Layer normalization: each data point is normalized over its own D features, then scaled and
    shifted per feature. Training and test time are the same (no running averages).

    Inputs:
    - x: batch, shape (N, D)
    - gamma: scale, shape (D,)
    - beta: shift, shape (D,)
    - ln_param: dict with eps, added to the variance (default 1e-5)

    Returns a tuple of:
    - out: shape (N, D)
    - cache: (x_hat (N, D), gamma (D,), std (N, 1))
    """
    eps = ln_param.get("eps", 1e-5)
    x_hat, std = _normalize(x, axis=1, eps=eps)  # std: (N, 1), one per data point
    out = gamma * x_hat + beta
    return out, (x_hat, gamma, std)


def layernorm_backward(dout, cache):
    """
    Gradients of layer normalization.

    Inputs:
    - dout: gradient with respect to out, shape (N, D)
    - cache: from layernorm_forward

    Returns a tuple of:
    - dx: shape (N, D)
    - dgamma: shape (D,)
    - dbeta: shape (D,)
    """
    x_hat, gamma, std = cache
    dbeta = dout.sum(axis=0)  # gamma and beta are shared by the data points
    dgamma = (dout * x_hat).sum(axis=0)
    dx = _normalize_backward(dout * gamma, x_hat, std, axis=1)  # statistics over the features
    return dx, dgamma, dbeta


def dropout_forward(x, dropout_param):
    """
    Inverted dropout: in training each unit is kept with probability p and the kept ones are
    divided by p, so that the expected output is x and test time is the identity.

    Inputs:
    - x: any shape
    - dropout_param: dict with
      - p: the probability of KEEPING a unit
      - mode: 'train' (drop) or 'test' (identity)
      - seed: optional; when present np.random.seed(seed) is called first, so that every call
        draws the same mask (what a gradient check needs)

    Returns a tuple of:
    - out: same shape as x
    - cache: (dropout_param, mask), mask the kept units (booleans, same shape as x; None in test
      mode)
    """
    p, mode = dropout_param["p"], dropout_param["mode"]
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])

    mask = None
    if mode == "train":
        mask = np.random.rand(*x.shape) < p  # each unit kept with probability p
        out = x * mask / p                    # inverted: scaled now so that test time needs nothing
    elif mode == "test":
        out = x
    else:
        raise ValueError(f'Invalid forward dropout mode "{mode}"')
    return out.astype(x.dtype, copy=False), (dropout_param, mask)


def dropout_backward(dout, cache):
    """
    Gradient of inverted dropout.

    Inputs:
    - dout: gradient with respect to out, any shape
    - cache: (dropout_param, mask) from dropout_forward

    Returns:
    - dx: same shape as dout
    """
    dropout_param, mask = cache
    p = dropout_param["p"]
    if dropout_param["mode"] == "train":
        return dout * mask / p  # out = x · mask / p
    return dout


def conv_forward_naive(x, w, b, conv_param):
    """
    Convolutional layer, with loops: every filter is slid over every zero-padded input.

    Inputs:
    - x: input, shape (N, C, H, W)
    - w: filters, shape (F, C, HH, WW)
    - b: biases, shape (F,)
    - conv_param: dict with
      - stride: pixels between neighbouring windows, in both directions
      - pad: zeros added on each of the four sides of every input (x itself is not changed)

    Returns a tuple of:
    - out: shape (N, F, H', W') with H' = 1 + (H + 2 * pad - HH) // stride,
      W' = 1 + (W + 2 * pad - WW) // stride
    - cache: (x, w, b, conv_param)
    """
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, _, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))

    out = np.zeros((N, F, H_out, W_out), dtype=np.result_type(x, w, b))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    window = x_pad[n, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache):
    """
    Gradients of the convolutional layer, with loops.

    Inputs:
    - dout: gradient with respect to out, shape (N, F, H', W')
    - cache: (x, w, b, conv_param) from conv_forward_naive

    Returns a tuple of:
    - dx: shape (N, C, H, W)
    - dw: shape (F, C, HH, WW)
    - db: shape (F,)
    """
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    _, _, H, W = x.shape
    N, F, H_out, W_out = dout.shape
    _, _, HH, WW = w.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))

    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    rows = slice(i * stride, i * stride + HH)
                    cols = slice(j * stride, j * stride + WW)
                    # out[n, f, i, j] = Σ window · w[f] + b[f]: each factor's gradient is the other one
                    dx_pad[n, :, rows, cols] += w[f] * dout[n, f, i, j]
                    dw[f] += x_pad[n, :, rows, cols] * dout[n, f, i, j]
    db = dout.sum(axis=(0, 2, 3))
    dx = dx_pad[:, :, pad:pad + H, pad:pad + W]  # the padding is not part of x
    return dx, dw, db


def max_pool_forward_naive(x, pool_param):
    """
    Max pooling, with loops: the largest value of each window, channel by channel.

    Inputs:
    - x: input, shape (N, C, H, W)
    - pool_param: dict with pool_height, pool_width (the window) and stride

    Returns a tuple of:
    - out: shape (N, C, H', W') with H' = 1 + (H - pool_height) // stride,
      W' = 1 + (W - pool_width) // stride
    - cache: (x, pool_param)
    """
    pool_height, pool_width = pool_param["pool_height"], pool_param["pool_width"]
    stride = pool_param["stride"]
    N, C, H, W = x.shape
    H_out = 1 + (H - pool_height) // stride
    W_out = 1 + (W - pool_width) // stride

    out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    window = x[n, c, i * stride:i * stride + pool_height, j * stride:j * stride + pool_width]
                    out[n, c, i, j] = window.max()
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):
    """
    Gradient of max pooling, with loops: each window's gradient goes to its largest element
    (windows that overlap add up).

    Inputs:
    - dout: gradient with respect to out, shape (N, C, H', W')
    - cache: (x, pool_param) from max_pool_forward_naive

    Returns:
    - dx: shape (N, C, H, W)
    """
    x, pool_param = cache
    pool_height, pool_width = pool_param["pool_height"], pool_param["pool_width"]
    stride = pool_param["stride"]
    N, C, H_out, W_out = dout.shape

    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    top, left = i * stride, j * stride
                    window = x[n, c, top:top + pool_height, left:left + pool_width]
                    r, q = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, top + r, left + q] += dout[n, c, i, j]
    return dx


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """
    Spatial batch normalization: batch normalization of each channel over the batch and over all
    pixels, i.e. the (N, C, H, W) input seen as N·H·W data points of C features.

    Inputs:
    - x: input, shape (N, C, H, W)
    - gamma: scale, shape (C,)
    - beta: shift, shape (C,)
    - bn_param: dict as in batchnorm_forward (mode, eps, momentum, running_mean, running_var)

    Returns a tuple of:
    - out: shape (N, C, H, W)
    - cache: from batchnorm_forward
    """
    N, C, H, W = x.shape
    x_rows = x.transpose(0, 2, 3, 1).reshape(-1, C)  # (N·H·W, C): channels last, then flatten
    out_rows, cache = batchnorm_forward(x_rows, gamma, beta, bn_param)
    out = out_rows.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return out, cache


def spatial_batchnorm_backward(dout, cache):
    """
    Gradients of spatial batch normalization.

    Inputs:
    - dout: gradient with respect to out, shape (N, C, H, W)
    - cache: from spatial_batchnorm_forward

    Returns a tuple of:
    - dx: shape (N, C, H, W)
    - dgamma: shape (C,)
    - dbeta: shape (C,)
    """
    N, C, H, W = dout.shape
    x_hat, gamma, std = cache["x_hat"], cache["gamma"], cache["std"]
    dout_rows = dout.transpose(0, 2, 3, 1).reshape(-1, C)  # the forward's layout: (N·H·W, C)
    dbeta = dout_rows.sum(axis=0)
    dgamma = (dout_rows * x_hat).sum(axis=0)
    if cache["mode"] == "train":
        dx_rows = _normalize_backward(dout_rows * gamma, x_hat, std, axis=0)
    else:
        dx_rows = dout_rows * gamma / std
    dx = dx_rows.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return dx, dgamma, dbeta


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """
    Spatial group normalization: the C channels of each data point are split into G groups of C // G
    consecutive channels, each group normalized over its channels and pixels, then every channel is
    scaled and shifted.

    Inputs:
    - x: input, shape (N, C, H, W)
    - gamma: scale, shape (1, C, 1, 1)
    - beta: shift, shape (1, C, 1, 1)
    - G: the number of groups, a divisor of C
    - gn_param: dict with eps, added to the variance (default 1e-5)

    Returns a tuple of:
    - out: shape (N, C, H, W)
    - cache: (x_hat (N, C, H, W), gamma, std (N, G, 1, 1, 1), G)
    """
    eps = gn_param.get("eps", 1e-5)
    N, C, H, W = x.shape
    x_groups = x.reshape(N, G, C // G, H, W)
    x_hat_groups, std = _normalize(x_groups, axis=(2, 3, 4), eps=eps)  # over each group's channels and pixels
    x_hat = x_hat_groups.reshape(N, C, H, W)
    out = gamma * x_hat + beta
    return out, (x_hat, gamma, std, G)


def spatial_groupnorm_backward(dout, cache):
    """
    Gradients of spatial group normalization.

    Inputs:
    - dout: gradient with respect to out, shape (N, C, H, W)
    - cache: from spatial_groupnorm_forward

    Returns a tuple of:
    - dx: shape (N, C, H, W)
    - dgamma: shape (1, C, 1, 1)
    - dbeta: shape (1, C, 1, 1)
    """
    x_hat, gamma, std, G = cache
    N, C, H, W = dout.shape
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)  # one per channel, shared by data points and pixels
    dgamma = (dout * x_hat).sum(axis=(0, 2, 3), keepdims=True)
    dx_hat_groups = (dout * gamma).reshape(N, G, C // G, H, W)
    x_hat_groups = x_hat.reshape(N, G, C // G, H, W)
    dx_groups = _normalize_backward(dx_hat_groups, x_hat_groups, std, axis=(2, 3, 4))
    return dx_groups.reshape(N, C, H, W), dgamma, dbeta


def svm_loss(x, y):
    """
    Multiclass SVM (hinge) loss, averaged over the batch:

        loss = Σ_i Σ_{j ≠ y_i} max(0, x[i, j] - x[i, y_i] + 1) / N

    Inputs:
    - x: class scores, shape (N, C)
    - y: labels, shape (N,), integers in [0, C)

    Returns a tuple of:
    - loss: a scalar
    - dx: gradient of the loss with respect to x, shape (N, C)
    """
    N = x.shape[0]
    rows = np.arange(N)
    margins = np.maximum(0, x - x[rows, y][:, None] + 1)
    margins[rows, y] = 0  # the correct class is not a margin
    loss = margins.sum() / N

    positive = (margins > 0).astype(x.dtype)  # each violated margin: +1 for its class ...
    dx = positive
    dx[rows, y] -= positive.sum(axis=1)       # ... and -1 for the correct class
    return loss, dx / N


def softmax_loss(x, y):
    """
    Softmax (cross-entropy) loss, averaged over the batch: loss = -Σ_i log p[i, y_i] / N with
    p[i] = softmax(x[i]).

    Inputs:
    - x: class scores, shape (N, C)
    - y: labels, shape (N,), integers in [0, C)

    Returns a tuple of:
    - loss: a scalar
    - dx: gradient of the loss with respect to x, shape (N, C)
    """
    N = x.shape[0]
    rows = np.arange(N)
    shifted = x - x.max(axis=1, keepdims=True)  # the softmax is unchanged; exp cannot overflow
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[rows, y].sum() / N

    dx = np.exp(log_probs)  # the probabilities: ∂(-log p_y)/∂x_j = p_j - [j = y]
    dx[rows, y] -= 1
    return loss, dx / N
