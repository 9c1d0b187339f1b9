"""The user's own ops: cs231n-style function pairs loaded from a file the config names.

Loading a config that names `file.py:name` executes file.py, in this process. Nothing else in a
config ever runs code.

* activation / layer: `name_forward(x, *params, **attrs) -> (out, cache)` and
  `name_backward(dout, cache) -> dx | (dx, dw, …) | {"dx": …, "dw": …}`;
* loss: `name(x, y) -> (loss, dx)` (cs231n's softmax_loss / svm_loss form).

The adapter calls the forward once per perturbed copy with fresh copies of its inputs (so nothing
the op caches leaks between calls), reseeding numpy's and Python's global generators before every
call so a random op (dropout) is deterministic.
"""
from __future__ import annotations

import importlib.util
import inspect
import random
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import UserCodeError
from .ops import BadGradient, Op

_MODULES: dict[Path, object] = {}


@contextmanager
def seeded(seed: int):
    """numpy's and Python's global generators seeded for one user call (so a random op such as
    dropout draws the same mask every time), and the caller's generator states restored after:
    checking never reseeds the process that asked for the check (a notebook, a test suite)."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def load_module(path: Path, ref: str):
    """Import the user's file once per process (by absolute path)."""
    path = path.resolve()
    if path in _MODULES:
        return _MODULES[path]
    if not path.is_file():
        raise UserCodeError(f"{ref}: no such file {str(path)!r}")
    name = f"gradverify_user_{len(_MODULES)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserCodeError(f"{ref}: {path.name} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's file failed to import: quote it
        raise UserCodeError(f"{ref}: importing {path.name} raised {type(e).__name__}: {e}") from None
    _MODULES[path] = module
    return module


def find(module, file_name: str, ref: str, *names: str):
    """The functions `names` from the user's module, or a UserCodeError listing what it has."""
    found = []
    for n in names:
        fn = getattr(module, n, None)
        if not callable(fn):
            have = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
            raise UserCodeError(f"{ref}: {n} not found in {file_name} (it defines: "
                                f"{', '.join(have) or 'no functions'})")
        found.append(fn)
    return found


def split_ref(ref: str) -> tuple[str, str]:
    file, name = ref.split(":", 1)
    for suffix in ("_forward", "_backward"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return file, name


class PythonOp(Op):
    """A user's forward/backward pair as an op. Not complex-safe until a probe says so."""

    name = "custom"
    arity = None
    complex_safe = False
    opaque = True  # declares no kinks: they are looked for in the numbers (numeric.detect_kinks)

    def __init__(self, ref: str, forward, backward, attrs: dict | None = None, seed: int = 0,
                 input_names: tuple[str, ...] = ("x",), node: str = ""):
        self.ref, self._forward, self._backward = ref, forward, backward
        self.attrs = dict(attrs or {})
        self.seed = seed
        self.input_names = input_names  # gradient keys: "dx", "dw", "db", …
        self.node = node

    @property
    def label(self):
        return self.ref

    def _call(self, fn, *args, **kw):
        with seeded(self.seed):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return fn(*args, **kw)
            except Exception as e:
                raise UserCodeError(f"{self.node} ({self.ref}): {fn.__name__} raised "
                                    f"{type(e).__name__}: {e}") from None

    def _one(self, xs, b):
        return [np.array(x[b if x.shape[0] > 1 else 0]) for x in xs]  # fresh copies

    def forward(self, *xs):
        copies = max(x.shape[0] for x in xs)
        outs = []
        for b in range(copies):
            res = self._call(self._forward, *self._one(xs, b), **self.attrs)
            out = res[0] if isinstance(res, tuple) else res
            outs.append(np.asarray(out))
        return np.stack(outs)

    def run_backward(self, g, xs):
        """The user's raw backward output for copy 0 (before checking its shapes)."""
        res = self._call(self._forward, *self._one(xs, 0), **self.attrs)
        cache = res[1] if isinstance(res, tuple) and len(res) == 2 else None
        return self._call(self._backward, np.array(g[0]), cache)

    def backward(self, g, out, *xs):
        raw = self.run_backward(g, xs)
        grads = normalize_grads(raw, self.input_names, [x.shape[1:] for x in xs], self.ref)
        return tuple(gi[None] for gi in grads)


class PythonLoss(PythonOp):
    """cs231n's `loss(x, y) -> (loss, dx)` as an op of one input; y is a constant."""

    def __init__(self, ref: str, fn, labels, seed: int = 0, node: str = "loss_data"):
        super().__init__(ref, fn, None, seed=seed, node=node)
        self.labels = labels

    def forward(self, x):
        outs = []
        for b in range(x.shape[0]):
            res = self._call(self._forward, np.array(x[b]), np.array(self.labels))
            outs.append(np.asarray(res[0] if isinstance(res, tuple) else res).reshape(()))
        return np.stack(outs)

    def backward(self, g, out, x):
        res = self._call(self._forward, np.array(x[0]), np.array(self.labels))
        if not isinstance(res, tuple) or len(res) != 2:
            raise BadGradient(f"it must return (loss, dx), got {type(res).__name__}")
        grads = normalize_grads((res[1],), ("x",), [x.shape[1:]], self.ref)
        return (g.reshape(-1)[0] * grads[0][None],)


def normalize_grads(raw, names, shapes, ref) -> list[np.ndarray]:
    """An array, a tuple/list (one per input) or a dict {"dx": …} -> a list in input order,
    each checked against its input's shape."""
    if isinstance(raw, dict):
        missing = [f"d{n}" for n in names if f"d{n}" not in raw]
        if missing:
            raise BadGradient(f"the dict it returned has no {', '.join(missing)} "
                              f"(it has: {', '.join(map(str, raw)) or 'nothing'})")
        grads = [raw[f"d{n}"] for n in names]
    elif isinstance(raw, (tuple, list)):
        grads = list(raw)
    else:
        grads = [raw]
    if len(grads) != len(names):
        raise BadGradient(f"it returned {len(grads)} gradient(s) for {len(names)} "
                          f"input(s) ({', '.join('d' + n for n in names)})")
    out = []
    for n, gi, shape in zip(names, grads, shapes):
        gi = np.asarray(gi)
        if gi.shape != tuple(shape):
            raise BadGradient(f"it returned d{n} of shape {list(gi.shape)}, "
                              f"but {n} has shape {list(shape)}")
        if not np.issubdtype(gi.dtype, np.number):
            raise BadGradient(f"it returned d{n} of type {gi.dtype}, not numbers")
        out.append(gi)
    return out


def activation(ref: str, base_dir: Path, seed: int, node: str) -> PythonOp:
    file, name = split_ref(ref)
    module = load_module(base_dir / file, ref)
    fwd, bwd = find(module, file, ref, f"{name}_forward", f"{name}_backward")
    return PythonOp(ref, fwd, bwd, seed=seed, input_names=("x",), node=node)


def gradient_names(forward, count: int) -> tuple[str, ...]:
    """The names a backward's dict uses for its inputs ("dx", "dw", …): forward's own
    positional parameter names, else x (one input) or x0, x1, …"""
    try:
        params = [p.name for p in inspect.signature(forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) >= count:
        return tuple(params[:count])
    return ("x",) if count == 1 else tuple(f"x{k}" for k in range(count))


def layer(ref: str, base_dir: Path, seed: int, node: str, input_names, attrs,
          n_inputs: int | None = None) -> PythonOp:
    """A layer or graph-form op; input_names None: taken from forward's parameters."""
    file, name = split_ref(ref)
    module = load_module(base_dir / file, ref)
    fwd, bwd = find(module, file, ref, f"{name}_forward", f"{name}_backward")
    if input_names is None:
        input_names = gradient_names(fwd, n_inputs or 1)
    return PythonOp(ref, fwd, bwd, attrs=attrs, seed=seed, input_names=tuple(input_names), node=node)


def loss(ref: str, base_dir: Path, seed: int, labels) -> PythonLoss:
    file, name = ref.split(":", 1)
    module = load_module(base_dir / file, ref)
    (fn,) = find(module, file, ref, name)
    return PythonLoss(ref, fn, labels, seed=seed)
