"""The built-in ops, grouped by family; everything is importable from `gradverify.ops`.

    base.py         Op (the protocol every op follows), BadGradient, OPS and @register,
                    the broadcasting helpers (core_axes, expand_to, unbroadcast, per_copy)
    complexmath.py  cexp, clog: exact fast complex exp and log for the complex step
    linear.py       matmul, add_bias, add, sub, mul, reciprocal, square, row_sum, sum, mean, batch_mean
    activations.py  identity, relu, leaky_relu, sigmoid, tanh, softmax
    losses.py       exp, neg_log_pick, hinge_margins, sub_const, weighted_sum, l2_penalty
    conv.py         conv2d (and the sliding windows the pools share)
    pool.py         max_pool2d, avg_pool2d, max
    norm.py         batchnorm, layernorm, spatial_batchnorm, groupnorm
    shape.py        flatten, reshape, transpose, concat, embedding
    elementwise.py  abs, elu, gelu, softplus, log_softmax, dropout

Each op registers itself (`@register`) beside its class; importing this package fills `OPS` in
the order above, which is the order error messages and the schema list them in.
"""
from ..delta import Delta, Kind, Structure
from .base import OPS, BadGradient, Op, core_axes, expand_to, per_copy, register, unbroadcast
from .complexmath import cexp, clog

# The families register their ops as they are imported: this order is OPS's order.
# isort: off
from .linear import Add, AddBias, BatchMean, MatMul, Mean, Mul, Reciprocal, RowSum, Square, Sub, Sum
from .activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .losses import Exp, HingeMargins, L2Penalty, NegLogPick, SubConst, WeightedSum
from .conv import Conv2d
from .pool import AvgPool2d, Max, MaxPool2d
from .norm import BatchNorm, GroupNorm, LayerNorm, SpatialBatchNorm
from .shape import Concat, Embedding, Flatten, Reshape, Transpose
from .elementwise import ELU, GELU, Abs, Dropout, LogSoftmax, Softplus
# isort: on

__all__ = [
    "OPS", "BadGradient", "Delta", "Kind", "Op", "Structure",
    "cexp", "clog", "core_axes", "expand_to", "per_copy", "register", "unbroadcast",
    "Add", "AddBias", "BatchMean", "MatMul", "Mean", "Mul", "Reciprocal", "RowSum", "Square", "Sub", "Sum",
    "Identity", "LeakyReLU", "ReLU", "Sigmoid", "Softmax", "Tanh",
    "Exp", "HingeMargins", "L2Penalty", "NegLogPick", "SubConst", "WeightedSum",
    "Conv2d", "AvgPool2d", "Max", "MaxPool2d", "BatchNorm", "GroupNorm", "LayerNorm", "SpatialBatchNorm",
    "Concat", "Embedding", "Flatten", "Reshape", "Transpose", "ELU", "GELU", "Abs", "Dropout", "LogSoftmax", "Softplus",
]
