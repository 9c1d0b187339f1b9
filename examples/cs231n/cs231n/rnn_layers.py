"""Recurrent layers in the cs231n convention, written by hand, each backward right: a vanilla (tanh)
RNN, an LSTM, word embeddings, a per-timestep affine layer and a masked per-timestep softmax loss.

Shapes: N data points, T timesteps, D input features, H hidden units, V words, M outputs.
"""
import numpy as np


def sigmoid(x):
    """A numerically stable logistic sigmoid: exp is only ever taken of a non-positive number."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """
    One timestep of a vanilla RNN: next_h = tanh(x·Wx + prev_h·Wh + b).

    Inputs:
    - x: input, shape (N, D)
    - prev_h: hidden state of the previous timestep, shape (N, H)
    - Wx: input-to-hidden weights, shape (D, H)
    - Wh: hidden-to-hidden weights, shape (H, H)
    - b: biases, shape (H,)

    Returns a tuple of:
    - next_h: shape (N, H)
    - cache: (x, prev_h, Wx, Wh, next_h)
    """
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


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


def rnn_forward(x, h0, Wx, Wh, b):
    """
    A vanilla RNN over a whole sequence, the same weights at every timestep.

    Inputs:
    - x: inputs, shape (N, T, D)
    - h0: initial hidden state, shape (N, H)
    - Wx: shape (D, H)
    - Wh: shape (H, H)
    - b: shape (H,)

    Returns a tuple of:
    - h: hidden states of every timestep, shape (N, T, H)
    - cache: the steps' caches, a list of length T
    """
    N, T, _ = x.shape
    h = np.zeros((N, T, h0.shape[1]), dtype=np.result_type(x, h0))
    step_caches = []
    prev_h = h0
    for t in range(T):
        prev_h, step_cache = rnn_step_forward(x[:, t], prev_h, Wx, Wh, b)
        h[:, t] = prev_h
        step_caches.append(step_cache)
    return h, step_caches


def rnn_backward(dh, cache):
    """
    Gradients of a vanilla RNN over a whole sequence.

    Inputs:
    - dh: upstream gradients of every hidden state, shape (N, T, H): the loss's own, not including
      what flows back from later timesteps
    - cache: from rnn_forward

    Returns a tuple of:
    - dx: shape (N, T, D)
    - dh0: shape (N, H)
    - dWx: shape (D, H)
    - dWh: shape (H, H)
    - db: shape (H,)
    """
    N, T, _ = dh.shape
    x0, _, Wx, Wh, _ = cache[0]
    dx = np.zeros((N, T, x0.shape[1]), dtype=dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[0], dtype=dh.dtype)
    dprev_h = np.zeros_like(dh[:, 0])
    for t in reversed(range(T)):
        dh_t = dh[:, t] + dprev_h  # h[t] feeds the loss and the next timestep
        dx[:, t], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh_t, cache[t])
        dWx += dWx_t  # the weights are shared by every timestep: their gradients add up
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


def word_embedding_forward(x, W):
    """
    Word embeddings: each word index is replaced by its row of W.

    Inputs:
    - x: word indices, shape (N, T), integers in [0, V)
    - W: one vector per word, shape (V, D)

    Returns a tuple of:
    - out: shape (N, T, D)
    - cache: (x, W)
    """
    return W[x], (x, W)


def word_embedding_backward(dout, cache):
    """
    Gradient of the word embeddings. The indices are integers, so only W has a gradient.

    Inputs:
    - dout: gradient with respect to out, shape (N, T, D)
    - cache: from word_embedding_forward

    Returns:
    - dW: shape (V, D)
    """
    x, W = cache
    dW = np.zeros_like(W)
    np.add.at(dW, x, dout)  # a word that occurs several times collects every occurrence's gradient
    return dW


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """
    One timestep of an LSTM. The 4H activations a = x·Wx + prev_h·Wh + b are, in order, the input,
    forget and output gates i, f, o (sigmoids) and the candidate g (tanh):

        next_c = f · prev_c + i · g,   next_h = o · tanh(next_c)

    Inputs:
    - x: input, shape (N, D)
    - prev_h: previous hidden state, shape (N, H)
    - prev_c: previous cell state, shape (N, H)
    - Wx: input-to-hidden weights, shape (D, 4H)
    - Wh: hidden-to-hidden weights, shape (H, 4H)
    - b: biases, shape (4H,)

    Returns a tuple of:
    - next_h: shape (N, H)
    - next_c: shape (N, H)
    - cache: (x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_next_c)
    """
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H:2 * H])
    o = sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    tanh_next_c = np.tanh(next_c)
    next_h = o * tanh_next_c
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_next_c)


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


def lstm_forward(x, h0, Wx, Wh, b):
    """
    An LSTM over a whole sequence; the initial cell state is zero.

    Inputs:
    - x: inputs, shape (N, T, D)
    - h0: initial hidden state, shape (N, H)
    - Wx: shape (D, 4H)
    - Wh: shape (H, 4H)
    - b: shape (4H,)

    Returns a tuple of:
    - h: hidden states of every timestep, shape (N, T, H)
    - cache: the steps' caches, a list of length T
    """
    N, T, _ = x.shape
    h = np.zeros((N, T, h0.shape[1]), dtype=np.result_type(x, h0))
    step_caches = []
    prev_h, prev_c = h0, np.zeros_like(h0)
    for t in range(T):
        prev_h, prev_c, step_cache = lstm_step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
        h[:, t] = prev_h
        step_caches.append(step_cache)
    return h, step_caches


def lstm_backward(dh, cache):
    """
    Gradients of an LSTM over a whole sequence.

    Inputs:
    - dh: upstream gradients of every hidden state, shape (N, T, H) (the loss's own only)
    - cache: from lstm_forward

    Returns a tuple of:
    - dx: shape (N, T, D)
    - dh0: shape (N, H)
    - dWx: shape (D, 4H)
    - dWh: shape (H, 4H)
    - db: shape (4H,)
    """
    N, T, _ = dh.shape
    x0, _, _, Wx, Wh = cache[0][:5]
    dx = np.zeros((N, T, x0.shape[1]), dtype=dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[1], dtype=dh.dtype)
    dprev_h, dprev_c = np.zeros_like(dh[:, 0]), np.zeros_like(dh[:, 0])
    for t in reversed(range(T)):
        dh_t = dh[:, t] + dprev_h  # h[t] feeds the loss and the next timestep; c[t] only the next timestep
        dx[:, t], dprev_h, dprev_c, dWx_t, dWh_t, db_t = lstm_step_backward(dh_t, dprev_c, cache[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


def temporal_affine_forward(x, w, b):
    """
    The same affine layer applied at every timestep.

    Inputs:
    - x: inputs, shape (N, T, D)
    - w: weights, shape (D, M)
    - b: biases, shape (M,)

    Returns a tuple of:
    - out: shape (N, T, M)
    - cache: (x, w, b)
    """
    N, T, D = x.shape
    out = (x.reshape(N * T, D) @ w + b).reshape(N, T, -1)
    return out, (x, w, b)


def temporal_affine_backward(dout, cache):
    """
    Gradients of the per-timestep affine layer.

    Inputs:
    - dout: gradient with respect to out, shape (N, T, M)
    - cache: from temporal_affine_forward

    Returns a tuple of:
    - dx: shape (N, T, D)
    - dw: shape (D, M)
    - db: shape (M,)
    """
    x, w, b = cache
    N, T, D = x.shape
    M = w.shape[1]
    x_rows = x.reshape(N * T, D)  # one row per (data point, timestep), batch-major
    dout_rows = dout.reshape(N * T, M)
    dx = (dout_rows @ w.T).reshape(N, T, D)
    dw = x_rows.T @ dout_rows
    db = dout_rows.sum(axis=0)
    return dx, dw, db


def temporal_softmax_loss(x, y, mask, verbose=False):
    """
    Softmax loss at every timestep, summed over the timesteps that the mask keeps and averaged over
    the batch (not over the timesteps):

        loss = -Σ_{n,t} mask[n, t] · log softmax(x[n, t])[y[n, t]] / N

    Inputs:
    - x: scores, shape (N, T, V)
    - y: target words, shape (N, T), integers in [0, V)
    - mask: which timesteps count, shape (N, T), booleans
    - verbose: print the shape of dx

    Returns a tuple of:
    - loss: a scalar
    - dx: gradient of the loss with respect to x, shape (N, T, V)
    """
    N, T, V = x.shape
    x_rows, y_rows, mask_rows = x.reshape(N * T, V), y.reshape(N * T), mask.reshape(N * T)
    rows = np.arange(N * T)
    shifted = x_rows - x_rows.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -(mask_rows * log_probs[rows, y_rows]).sum() / N

    dx_rows = np.exp(log_probs)  # p - onehot(y), at the kept timesteps only
    dx_rows[rows, y_rows] -= 1
    dx_rows *= mask_rows[:, None] / N
    if verbose:
        print("dx:", dx_rows.shape)
    return loss, dx_rows.reshape(N, T, V)
