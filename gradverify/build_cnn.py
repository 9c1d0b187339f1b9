"""The layers form's CNN layer builders (build.LAYERS' entries beyond affine). For layer i:

    conv       l{i}_conv = conv2d(prev, w{i}[, b{i}])    (your `op: file.py:name`: l{i}_name)
    max_pool   l{i}_pool = max_pool2d(prev)              avg_pool: avg_pool2d
    batchnorm  l{i}_bn = batchnorm(prev, gamma{i}, beta{i})   spatial_batchnorm after images
    layernorm  l{i}_ln = layernorm(prev, gamma{i}, beta{i})
    dropout    l{i}_drop = dropout(prev)                 (its mask's seed in the op's label)
    flatten    l{i}_flat = flatten(prev)                 (also made by an affine layer after images)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import custom
from .config import Layer
from .errors import KeyPath
from .ops import AvgPool2d, BatchNorm, Conv2d, Dropout, Flatten, LayerNorm, MaxPool2d, SpatialBatchNorm

if TYPE_CHECKING:
    from .build import Net


def _key(i: int) -> KeyPath:
    return ("layers", i - 1)


def conv(net: Net, i: int, layer: Layer, prev: str) -> str:
    """l{i}_conv = conv2d(prev, w{i}, b{i}) (b{i} only with `bias:`), or the user's
    l{i}_name(prev, w{i}, b{i}, *params, stride=, pad=) for `op: file.py:name`."""
    assert layer.weights is not None, "config validation requires a conv's weights"
    key = _key(i)
    inputs = [prev, net.param(f"w{i}", layer.weights, key + ("weights",))]
    if layer.bias is not None:
        inputs.append(net.param(f"b{i}", layer.bias, key + ("bias",)))
    if layer.op:
        return _custom_conv(net, i, layer, inputs)
    op = Conv2d(stride=layer.attrs["stride"], pad=layer.attrs["pad"])
    return net.op(f"l{i}_conv", op, inputs, key)


def _custom_conv(net: Net, i: int, layer: Layer, inputs: list[str]) -> str:
    key, ref, c = _key(i), str(layer.op), net.config
    extra = [net.param(f"{pname}{i}", value, key + ("params", pname)) for pname, value in layer.params]
    node = f"l{i}_{custom.split_ref(ref)[1]}"
    names = ("x", "w", "b")[:len(inputs)] + tuple(pname for pname, _ in layer.params)
    user = net.user(key + ("op",), lambda: custom.layer(ref, c.source.base_dir, c.seed, node, names, layer.attrs))
    return net.op(node, user, inputs + extra, key + ("op",), user.label)


def pool(net: Net, i: int, layer: Layer, prev: str) -> str:
    """l{i}_pool: max_pool2d or avg_pool2d over size×size windows."""
    cls = MaxPool2d if layer.type == "max_pool" else AvgPool2d
    return net.op(f"l{i}_pool", cls(size=layer.attrs["size"], stride=layer.attrs["stride"]), [prev], _key(i))


def _norm_params(net: Net, i: int, layer: Layer) -> list[str]:
    return [net.param(f"{name}{i}", value, _key(i) + (name,)) for name, value in layer.params]


def batchnorm(net: Net, i: int, layer: Layer, prev: str) -> str:
    """l{i}_bn: batchnorm over rows, spatial_batchnorm (per channel) over images."""
    cls = SpatialBatchNorm if len(layer.in_shape) == 4 else BatchNorm
    return net.op(f"l{i}_bn", cls(eps=layer.attrs["eps"]), [prev] + _norm_params(net, i, layer), _key(i))


def layernorm(net: Net, i: int, layer: Layer, prev: str) -> str:
    return net.op(f"l{i}_ln", LayerNorm(eps=layer.attrs["eps"]), [prev] + _norm_params(net, i, layer), _key(i))


def dropout(net: Net, i: int, layer: Layer, prev: str) -> str:
    """l{i}_drop: the mask drawn once from its seed, the same for every perturbed copy."""
    op = Dropout(keep=layer.attrs["keep"], seed=layer.attrs["seed"])
    return net.op(f"l{i}_drop", op, [prev], _key(i))


def flatten(net: Net, i: int, layer: Layer, prev: str) -> str:
    return net.op(f"l{i}_flat", Flatten(), [prev], _key(i))


CNN_LAYERS = {"conv": conv, "max_pool": pool, "avg_pool": pool, "batchnorm": batchnorm,
              "layernorm": layernorm, "dropout": dropout, "flatten": flatten}
