"""A linear classifier's softmax loss, with loops (assignment 1 style)."""
import numpy as np


def softmax_loss_naive(W, X, y, reg):
    """
    Softmax (cross-entropy) loss of a linear classifier, with loops:

        loss = -Σ_i log softmax(X[i]·W)[y_i] / N + reg · ΣW²

    Inputs:
    - W: weights, shape (D, C)
    - X: a minibatch of data, shape (N, D)
    - y: labels, shape (N,), integers in [0, C)
    - reg: regularization strength

    Returns a tuple of:
    - loss: a scalar
    - dW: gradient of the loss with respect to W, shape (D, C)
    """
    num_train, num_classes = X.shape[0], W.shape[1]
    loss = 0.0
    dW = np.zeros_like(W)
    for i in range(num_train):
        scores = X[i] @ W
        scores = scores - np.max(scores)  # the softmax is unchanged; exp cannot overflow
        probs = np.exp(scores) / np.sum(np.exp(scores))
        loss -= np.log(probs[y[i]])
        for j in range(num_classes):
            if j == y[i]:
                dW[:, j] += (probs[j] - 1) * X[i]  # ∂(-log p_y)/∂s_y = p_y - 1
            else:
                dW[:, j] += probs[j] * X[i]        # ∂(-log p_y)/∂s_j = p_j
    loss /= num_train
    dW /= num_train

    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return loss, dW
