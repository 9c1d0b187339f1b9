"""A fully connected network of any depth, built from the layers in layers.py."""
# ruff: noqa: F405  (the layers come from the star imports, as in the course's file)
import numpy as np

from ..layer_utils import *  # noqa: F403
from ..layers import *  # noqa: F403


class FullyConnectedNet:
    """
    A fully connected network with L - 1 hidden layers and a softmax loss:

        {affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax

    The learnable parameters are in self.params: W1, b1, ..., WL, bL, and gamma1, beta1, ...,
    gamma(L-1), beta(L-1) with normalization.
    """

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout_keep_ratio=1,
                 normalization=None, reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None):
        """
        Inputs:
        - hidden_dims: the size of each hidden layer, a list of integers
        - input_dim: the size of an input
        - num_classes: the number of classes
        - dropout_keep_ratio: the probability that dropout keeps a unit; 1 means no dropout
        - normalization: None, "batchnorm" or "layernorm", after every hidden affine layer
        - reg: L2 regularization strength; the loss gains 0.5 · reg · ΣW² over every W
        - weight_scale: the standard deviation of the random initial weights
        - dtype: of every parameter and computation; float64 for gradient checks
        - seed: when given, dropout is deterministic (the same mask on every call)
        """
        self.normalization = normalization
        self.use_dropout = dropout_keep_ratio != 1
        self.reg = reg
        self.num_layers = 1 + len(hidden_dims)
        self.dtype = dtype

        dims = [input_dim, *hidden_dims, num_classes]
        self.params = {}
        for layer in range(1, self.num_layers + 1):
            fan_in, fan_out = dims[layer - 1], dims[layer]
            self.params[f"W{layer}"] = weight_scale * np.random.randn(fan_in, fan_out)
            self.params[f"b{layer}"] = np.zeros(fan_out)
            if normalization is not None and layer < self.num_layers:
                self.params[f"gamma{layer}"] = np.ones(fan_out)
                self.params[f"beta{layer}"] = np.zeros(fan_out)
        for name, value in self.params.items():
            self.params[name] = value.astype(dtype)

        self.dropout_param = {}
        if self.use_dropout:
            self.dropout_param = {"mode": "train", "p": dropout_keep_ratio}
            if seed is not None:
                self.dropout_param["seed"] = seed
        # one parameter dict per hidden layer: batchnorm keeps its running averages in it
        self.bn_params = []
        if normalization == "batchnorm":
            self.bn_params = [{"mode": "train"} for _ in range(self.num_layers - 1)]
        elif normalization == "layernorm":
            self.bn_params = [{} for _ in range(self.num_layers - 1)]

    def loss(self, X, y=None):
        """
        Inputs:
        - X: data, shape (N, d_1, ..., d_k)
        - y: labels, shape (N,), integers in [0, num_classes); None for test time

        Returns:
        - without y: the class scores, shape (N, num_classes)
        - with y: (loss, grads), grads a dict keyed like self.params
        """
        X = X.astype(self.dtype)
        mode = "test" if y is None else "train"
        self.dropout_param["mode"] = mode
        for bn_param in self.bn_params:
            bn_param["mode"] = mode

        h, caches = X, []
        for layer in range(1, self.num_layers):
            h, cache = self._hidden_forward(h, layer)
            caches.append(cache)
        L = self.num_layers
        scores, scores_cache = affine_forward(h, self.params[f"W{L}"], self.params[f"b{L}"])
        if mode == "test":
            return scores

        loss, dscores = softmax_loss(scores, y)
        weights = [self.params[f"W{layer}"] for layer in range(1, L + 1)]
        loss += 0.5 * self.reg * sum(np.sum(W * W) for W in weights)

        grads = {}
        dh, grads[f"W{L}"], grads[f"b{L}"] = affine_backward(dscores, scores_cache)
        for layer in reversed(range(1, L)):
            dh = self._hidden_backward(dh, caches[layer - 1], layer, grads)
        for layer in range(1, L + 1):
            grads[f"W{layer}"] += self.reg * self.params[f"W{layer}"]  # d(0.5 · reg · W²)/dW = reg · W
        return loss, grads

    def _hidden_forward(self, h, layer):
        """affine - [norm] - relu - [dropout] for hidden layer `layer` (1-based); returns (out, caches)."""
        caches = {}
        a, caches["affine"] = affine_forward(h, self.params[f"W{layer}"], self.params[f"b{layer}"])
        if self.normalization == "batchnorm":
            a, caches["norm"] = batchnorm_forward(
                a, self.params[f"gamma{layer}"], self.params[f"beta{layer}"], self.bn_params[layer - 1])
        elif self.normalization == "layernorm":
            a, caches["norm"] = layernorm_forward(
                a, self.params[f"gamma{layer}"], self.params[f"beta{layer}"], self.bn_params[layer - 1])
        out, caches["relu"] = relu_forward(a)
        if self.use_dropout:
            out, caches["dropout"] = dropout_forward(out, self.dropout_param)
        return out, caches

    def _hidden_backward(self, dout, caches, layer, grads):
        """The backward of _hidden_forward, in reverse order; writes the layer's grads, returns dh."""
        if self.use_dropout:
            dout = dropout_backward(dout, caches["dropout"])
        da = relu_backward(dout, caches["relu"])
        if self.normalization == "batchnorm":
            da, grads[f"gamma{layer}"], grads[f"beta{layer}"] = batchnorm_backward(da, caches["norm"])
        elif self.normalization == "layernorm":
            da, grads[f"gamma{layer}"], grads[f"beta{layer}"] = layernorm_backward(da, caches["norm"])
        dh, grads[f"W{layer}"], grads[f"b{layer}"] = affine_backward(da, caches["affine"])
        return dh
