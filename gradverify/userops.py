"""The user's code in the shapes real cs231n code has, as ops (see custom.PythonOp for how a
user call is made: fresh copies, seeded, guarded, checked for determinism):

* MultiOp: a forward returning (out1, out2, …, cache), its backward called as
  backward(dout1, dout2, …, cache). Its node holds the outputs packed into one flat vector; a
  `Pick` node per output unpacks it, so each output is a node of its own.
* LossFn: `name(*inputs, **attrs) -> (loss, grads)`, grads one array, a tuple or a dict for the
  differentiable inputs in order (softmax_loss, temporal_softmax_loss, svm_loss_naive).
* ModelOp: the cs231n classifier, `model.loss(*data, **kwargs) -> (loss, grads)` over
  `model.params`, each parameter an input of the op (set into model.params before each call).
* Project: Σ_k Σ x_k · R_k, each R_k fixed and random from the seed: a non-scalar node (or several)
  made into the scalar that is checked.

Data arguments (integer indices, masks, labels, a model's inputs) are constants held by the op, at
their positional slots (PythonOp.data): never perturbed, never checked, passed in their own dtype.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import usercode
from .custom import PythonOp, normalize_grads
from .delta import Delta
from .errors import UserCodeError
from .ops import BadGradient, Op
from .ops.base import core_axes, per_copy


class MultiOp(PythonOp):
    """forward(*xs) -> (out1, …, outK, cache); backward(dout1, …, doutK, cache)."""

    def __init__(self, *args: Any, outputs: int = 2, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.outputs = outputs
        self.shapes: list[tuple[int, ...]] = []

    def _output(self, res, fn) -> np.ndarray:
        k = self.outputs
        if not isinstance(res, tuple) or len(res) != k + 1:
            got = f"a tuple of {len(res)}" if isinstance(res, tuple) else type(res).__name__
            raise UserCodeError(f"{self._where(fn)} returned {got}, expected {k} outputs and the cache")
        outs = [super(MultiOp, self)._output((o,), fn) for o in res[:k]]
        self.shapes = [o.shape for o in outs]
        return np.concatenate([o.reshape(-1) for o in outs])

    def run_backward(self, g, xs):
        res = self._call(self._forward, *self._one(xs, 0), **copy.deepcopy(self.attrs))
        douts, start = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            douts.append(np.array(g[0][start:start + size]).reshape(shape))
            start += size
        return self._call(self._backward, *douts, res[-1])


class Pick(Op):
    """Output k of a MultiOp's packed value, in its own shape."""

    name = "pick"

    def __init__(self, source: MultiOp, k: int) -> None:
        self.source, self.k = source, k

    def _span(self) -> tuple[int, int, tuple[int, ...]]:
        sizes = [int(np.prod(s)) for s in self.source.shapes]
        start = sum(sizes[: self.k])
        return start, start + sizes[self.k], self.source.shapes[self.k]

    def forward(self, packed: np.ndarray) -> np.ndarray:
        a, b, shape = self._span()
        return packed[:, a:b].reshape((packed.shape[0], *shape))

    def backward(self, g: np.ndarray, out: np.ndarray, packed: np.ndarray) -> tuple[np.ndarray, ...]:
        a, b, _ = self._span()
        full = np.zeros((g.shape[0], packed.shape[1]), dtype=np.result_type(g, packed))
        full[:, a:b] = g.reshape(g.shape[0], -1)
        return (full,)


def scalar_loss(op: PythonOp, res, fn) -> np.ndarray:
    """The loss of a `(loss, grads)` result, as a 0-d array."""
    if not isinstance(res, tuple) or len(res) != 2:
        raise UserCodeError(f"{op._where(fn)} returned {type(res).__name__}, expected (loss, grads)")
    out = PythonOp._output(op, res, fn)
    if out.size != 1:
        raise UserCodeError(f"{op._where(fn)} returned a loss of shape {list(out.shape)}, not a scalar")
    return out.reshape(())


class LossFn(PythonOp):
    """`fn(*inputs, **attrs) -> (loss, grads)` for the differentiable inputs, in order."""

    def _output(self, res, fn) -> np.ndarray:
        return scalar_loss(self, res, fn)

    def backward(self, g, out, *xs):
        if self.problem:
            raise BadGradient(self.problem)
        res = self._call(self._forward, *self._one(xs, 0), **copy.deepcopy(self.attrs))
        raw = res[1] if isinstance(res, tuple) and len(res) == 2 else res
        grads = normalize_grads(raw, self.input_names, [x.shape[1:] for x in xs], self.ref,
                                [np.iscomplexobj(x) for x in xs])
        return tuple(g.reshape(-1)[0] * gi[None] for gi in grads)


class ModelOp(PythonOp):
    """`model.loss(*data, **kwargs) -> (loss, grads)`; its inputs are model.params[key] for each
    key, set into model.params before every call."""

    blames_each_input = True  # a wrong gradient is blamed on each parameter it is wrong for

    def __init__(self, ref: str, model, keys: tuple[str, ...], data: Sequence[np.ndarray],
                 kwargs: dict, seed: int = 0, node: str = "loss") -> None:
        with usercode.guard(f"{ref}: reading model.loss"):
            fn = model.loss
        super().__init__(ref, fn, None, attrs=kwargs, seed=seed, input_names=keys, node=node)
        self.model, self.keys, self.args = model, keys, list(data)

    def _set(self, xs, b) -> None:
        with usercode.guard(f"{self.ref}: setting model.params"):
            for key, x in zip(self.keys, xs):
                self.model.params[key] = np.array(x[b if x.shape[0] > 1 else 0])

    def _loss_call(self, xs, b):
        self._set(xs, b)
        return self._call(self._forward, *(np.array(d) for d in self.args), **copy.deepcopy(self.attrs))

    def _run_forward(self, xs, b) -> np.ndarray:
        return scalar_loss(self, self._loss_call(xs, b), self._forward)

    def backward(self, g, out, *xs):
        if self.problem:
            raise BadGradient(self.problem)
        res = self._loss_call(xs, 0)
        grads = res[1] if isinstance(res, tuple) and len(res) == 2 else None
        if not isinstance(grads, dict):
            raise BadGradient(f"it must return (loss, grads) with grads a dict, got {type(grads).__name__}")
        missing = [k for k in self.keys if k not in grads]
        extra = [usercode.safe_str(k) for k in grads if k not in self.keys]
        if missing or extra:
            raise BadGradient("its grads " + "; ".join(
                part for part in (f"lack {', '.join(missing)}" if missing else "",
                                  f"have keys that are not parameters: {', '.join(extra)}" if extra else "")
                if part) + f" (model.params has {', '.join(self.keys)})")
        raw = tuple(grads[k] for k in self.keys)
        gs = normalize_grads(raw, self.keys, [x.shape[1:] for x in xs], self.ref,
                             [np.iscomplexobj(x) for x in xs])
        return tuple(g.reshape(-1)[0] * gi[None] for gi in gs)


class Project(Op):
    """out = Σ_k Σ x_k · R_k, R_k ~ N(0, 1) of x_k's core shape, drawn in order from a stream of
    its own, default_rng([seed, STREAM]), when the shapes are first seen (so fixed for the whole
    check). Not default_rng(seed): the config's generated values come from that stream, and an R
    equal to an input x makes the upstream gradient equal x, so a backward that mixes up dout and
    x would pass."""

    name, arity = "project", None
    STREAM = 0x70726F6A  # "proj": the projection's own random stream under the config's seed

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.weights: list[np.ndarray] | None = None

    def _w(self, xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.weights is None:
            rng = np.random.default_rng([self.seed, self.STREAM])
            self.weights = [rng.normal(size=x.shape[1:]) for x in xs]
        return self.weights

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        total: Any = 0.0
        for x, w in zip(xs, self._w(xs)):
            total = total + (x * w[None]).sum(axis=core_axes(x))
        return total

    def backward(self, g: np.ndarray, out: np.ndarray, *xs: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(per_copy(g, x) * w[None] for x, w in zip(xs, self._w(xs)))

    def push(self, slot: int, d: Delta, xs: Sequence[np.ndarray], out: np.ndarray) -> Delta | None:
        w = d.gather(self._w(xs)[slot][None])
        return Delta.full((d.vals * w).reshape(d.k, -1).sum(axis=1), ())
