"""The built-in ops, grouped by family; everything is importable from `gradverify.ops`.

    base.py         Op (the protocol every op follows), BadGradient, OPS and @register,
                    the broadcasting helpers (core_axes, expand_to, unbroadcast, per_copy)
    complexmath.py  cexp, clog: exact fast complex exp and log for the complex step
    linear.py       matmul, add_bias, add, sub, mul, reciprocal, square, row_sum, sum, mean, batch_mean
    activations.py  identity, relu, leaky_relu, sigmoid, tanh, softmax
    losses.py       exp, neg_log_pick, hinge_margins, sub_const, weighted_sum, l2_penalty

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
# isort: on

__all__ = [
    "OPS", "BadGradient", "Delta", "Kind", "Op", "Structure",
    "cexp", "clog", "core_axes", "expand_to", "per_copy", "register", "unbroadcast",
    "Add", "AddBias", "BatchMean", "MatMul", "Mean", "Mul", "Reciprocal", "RowSum", "Square", "Sub", "Sum",
    "Identity", "LeakyReLU", "ReLU", "Sigmoid", "Softmax", "Tanh",
    "Exp", "HingeMargins", "L2Penalty", "NegLogPick", "SubConst", "WeightedSum",
]
