"""A linear classifier's multiclass SVM loss, with loops (assignment 1 style). The same as
../../../cs231n/classifiers/linear_svm.py, except for one realistic bug, marked `# BUG:`.
"""
import numpy as np


def svm_loss_naive(W, X, y, reg):
    """
    Multiclass SVM loss of a linear classifier, with loops:

        loss = Σ_i Σ_{j ≠ y_i} max(0, s_ij - s_iy_i + 1) / N + reg · ΣW²,   s_i = X[i]·W

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
        correct_class_score = scores[y[i]]
        for j in range(num_classes):
            if j == y[i]:
                continue
            margin = scores[j] - correct_class_score + 1
            if margin > 0:
                loss += margin
                dW[:, j] += X[i]     # ∂margin/∂W[:, j] = X[i]
            dW[:, y[i]] -= X[i]  # BUG: indented out of the `if`: subtracted for the margins that are not violated too
    loss /= num_train
    dW /= num_train

    loss += reg * np.sum(W * W)
    dW += 2 * reg * W
    return loss, dW
