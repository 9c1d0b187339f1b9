"""Right copies of the backwards that the buggy package's composites build on (the sandwiches in
layer_utils.py, rnn_backward and lstm_backward, FullyConnectedNet), so that each buggy function has one
bug, its own. Copied verbatim from ../../cs231n/layers.py and ../../cs231n/rnn_layers.py
(tests/test_cs231n_examples.py checks that they stay the same).
"""
import numpy as np


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


def _normalize_backward(dx_hat, x_hat, std, axis):
    """Backward of _normalize over `axis`. With x_hat = (x - μ) / σ, μ and σ² the mean and variance of m values:

        dx = (dx_hat - mean(dx_hat) - x_hat · mean(dx_hat · x_hat)) / σ

    the first term the direct path, the second the path through μ, the third the path through σ.
    """
    mean_dx_hat = dx_hat.mean(axis=axis, keepdims=True)
    mean_dx_hat_x_hat = (dx_hat * x_hat).mean(axis=axis, keepdims=True)
    return (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat) / std


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


def rnn_step_backward(dnext_h, cache):
    """
    Gradients of one timestep of a vanilla RNN.

    Inputs:
    - dnext_h: gradient with respect to next_h, shape (N, H)
    - cache: from rnn_step_forward

    Returns a tuple of:
    - dx: shape (N, D)
    - dprev_h: shape (N, H)
    - dWx: shape (D, H)
    - dWh: shape (H, H)
    - db: shape (H,)
    """
    x, prev_h, Wx, Wh, next_h = cache
    dpre = dnext_h * (1 - next_h**2)  # tanh'(a) = 1 - tanh(a)², a = x·Wx + prev_h·Wh + b
    dx = dpre @ Wx.T
    dprev_h = dpre @ Wh.T
    dWx = x.T @ dpre
    dWh = prev_h.T @ dpre
    db = dpre.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


def lstm_step_backward(dnext_h, dnext_c, cache):
    """
    Gradients of one timestep of an LSTM.

    Inputs:
    - dnext_h: gradient with respect to next_h, shape (N, H)
    - dnext_c: gradient with respect to next_c, shape (N, H)
    - cache: from lstm_step_forward

    Returns a tuple of:
    - dx: shape (N, D)
    - dprev_h: shape (N, H)
    - dprev_c: shape (N, H)
    - dWx: shape (D, 4H)
    - dWh: shape (H, 4H)
    - db: shape (4H,)
    """
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_next_c = cache
    dc = dnext_c + dnext_h * o * (1 - tanh_next_c**2)  # next_c reaches the loss directly and through next_h
    do = dnext_h * tanh_next_c
    di, df, dg = dc * g, dc * prev_c, dc * i
    dprev_c = dc * f
    da = np.hstack([
        di * i * (1 - i),  # σ' = σ(1 - σ)
        df * f * (1 - f),
        do * o * (1 - o),
        dg * (1 - g**2),   # tanh' = 1 - tanh²
    ])
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db
