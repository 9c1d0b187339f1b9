"""The user's own ops: cs231n-style function pairs loaded from a file the config names.

Loading a config that names `file.py:name` executes file.py, in this process. Nothing else in a
config ever runs code.

* activation / layer: `name_forward(x, *params, **attrs) -> (out, cache)` and
  `name_backward(dout, cache) -> dx | (dx, dw, …) | {"dx": …, "dw": …}`;
* loss: `name(x, y) -> (loss, dx)` (cs231n's softmax_loss / svm_loss form).

The adapter calls the forward once per perturbed copy, reseeding numpy's and Python's global
generators before every call so a random op (dropout) is deterministic, with fresh copies of its
attrs and its inputs passed as read-only views: a write into an input raises, or (through a view
made writeable again) is seen by comparing the inputs with a snapshot after the chunk; either way
the chunk is run again with fresh copies for that input, as it will be from then on (nothing the
op caches or mutates leaks between calls). Where the perturbed inputs all have a batch axis (the
first of their core shape), all copies are stacked along it into one call; a probe compares that
call with per-copy calls on three copies the first time, and on one copy every later time, and
the op goes back to one call per copy as soon as they differ (batch norm, dropout: an op that
mixes the copies changes every one of them). Every call goes through
usercode.guard: whatever the code raises (sys.exit included) is a UserCodeError, exit 2.

The numeric side assumes the forward is a function of its inputs. So the first call is made twice
on the same inputs; outputs that differ (a call counter, a global, an unseeded generator) make the
op's node FAIL with that problem (rather than exit 2: the report still shows, and every gradient
upstream of the op, which can't be trusted, is marked) instead of being misread as a kink.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import random
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import usercode
from .delta import Delta
from .errors import UserCodeError
from .gradients import normalize_grads
from .ops import BadGradient, Op
from .parallel import SourceFunction

#: two calls of a forward on the same inputs may differ by this much relative to the output's
#: largest entry and still count as the same (a BLAS that sums in another order); a stateful
#: forward differs by far more, and anything below this is far below every method's tolerance
SAME_OUTPUT_RTOL = 1e-12


@contextmanager
def seeded(seed: int):
    """numpy's and Python's global generators seeded for one user call (so a random op such as
    dropout draws the same mask every time). Inside a check's `usercode.session()` the caller's
    generator states are restored when the check ends; outside one, after this call."""
    saved = None if usercode.in_session() else (np.random.get_state(), random.getstate())
    np.random.seed(seed % 2**32)  # numpy's legacy seeds are 32-bit
    random.seed(seed)
    try:
        yield
    finally:
        if saved is not None:
            np.random.set_state(saved[0])
            random.setstate(saved[1])


def load_module(path: Path, ref: str):
    """The user's file, executed from its current source (see usercode.load_source)."""
    return usercode.load_source(path.resolve(), ref)


def find(module, file_name: str, ref: str, *names: str):
    """The functions `names` from the user's module, or a UserCodeError listing what it has."""
    found = []
    for n in names:
        with usercode.guard(f"{ref}: looking up {n} in {file_name}"):  # a module __getattr__ runs
            fn = getattr(module, n, None)
            ok = callable(fn)
        if not ok:
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


def pair_names(name: str) -> tuple[str, str]:
    """The forward and backward a name stands for: a name with `forward` in it is the forward, its
    backward the same name with (the last) `forward` replaced by `backward` (conv_forward_naive ->
    conv_backward_naive); any other name is the stem of name_forward / name_backward."""
    if "forward" in name:
        head, _, tail = name.rpartition("forward")
        return name, f"{head}backward{tail}"
    return f"{name}_forward", f"{name}_backward"


def pair_label(ref: str) -> str:
    """How the op column shows `file.py:name`: as given, or file.py:forward/backward when the
    name is a forward's (so the backward it stands for is seen)."""
    file, name = ref.split(":", 1)
    return f"{file}:{'/'.join(pair_names(name))}" if "forward" in name else ref


def fn_name(fn) -> str:
    return usercode.safe_str(getattr(fn, "__name__", None) or type(fn).__name__)


def difference(a: np.ndarray, b: np.ndarray) -> float | None:
    """How far apart two outputs of the same call are: None when they count as the same (equal
    up to SAME_OUTPUT_RTOL of their largest entry, NaN where the other has NaN), else the largest
    difference (inf for different shapes or NaN patterns)."""
    if a.shape != b.shape:
        return float("inf")
    a, b = (np.asarray(v, dtype=np.result_type(v, np.float64)) for v in (a, b))
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    with np.errstate(all="ignore"):
        ok = ~np.isnan(a)
        diff = np.abs(a[ok] - b[ok])
        scale = max(float(np.max(np.abs(a[ok]), initial=0.0)), float(np.max(np.abs(b[ok]), initial=0.0)))
    worst = float(np.max(diff, initial=0.0)) if diff.size else 0.0
    if worst != worst:  # inf - inf: the same infinity in both
        worst = float(np.max(np.where(a[ok] == b[ok], 0.0, np.inf)))
    return None if worst <= SAME_OUTPUT_RTOL * scale else worst


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
        self.problem: str | None = None  # the forward is not deterministic: said by backward
        self._first = True
        self.data: dict[int, np.ndarray] = {}  # positional slot -> a constant argument (userops)
        self.written: set[int] = set()  # input slots the forward was seen to write into: copied
        self.stacks: dict[tuple[int, ...], bool] = {}  # perturbed slots -> may their copies stack?
        self.row_push: dict[int, bool] = {}  # input slot -> may its changed rows go alone? (push)
        self.slice_axis: dict[int, int | None] = {}  # input slot -> its axis aligned with out's 1
        self.slices_checked: set[int] = set()  # input slots whose slice push met the dense copies
        # userpush may push changes in fewer calls (off: one call per copy); never for the
        # subclasses (several outputs, losses, models), which the checker then need not recheck
        self.shortcuts = type(self) is PythonOp

    @property
    def label(self):
        return self.ref

    def __getstate__(self) -> dict:
        """For a worker process (parallel.py): the user's functions from a file gradverify
        loaded travel as that file's source text, compiled again over there."""
        state = dict(self.__dict__)
        for attr in ("_forward", "_backward"):
            state[attr] = SourceFunction.of(state[attr])
        return state

    def __setstate__(self, state: dict) -> None:
        for attr in ("_forward", "_backward"):
            if isinstance(state.get(attr), SourceFunction):
                state[attr] = state[attr].load()
        self.__dict__.update(state)

    def _where(self, fn) -> str:
        return f"{self.node} ({self.ref}): {fn_name(fn)}"

    def _call(self, fn, *args, **kw):
        """fn(*args, **kw), seeded, its warnings silenced, whatever it raises a UserCodeError."""
        with seeded(self.seed), usercode.guard(self._where(fn)), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kw)

    def _output(self, res, fn) -> np.ndarray:
        """The forward's output (the first of (out, cache)) as an array of numbers."""
        with usercode.guard(f"{self._where(fn)}'s output"):  # __array__ is user code too
            out = np.asarray(res[0] if isinstance(res, tuple) else res)
        if not (np.issubdtype(out.dtype, np.number) or out.dtype == bool):
            raise UserCodeError(f"{self._where(fn)} returned {type(res).__name__} of {out.dtype}, "
                                "not an array of numbers")
        return out.astype(np.float64) if out.dtype == bool else out  # a mask: 0 and 1

    def _one(self, xs, b, views: frozenset = frozenset(), owned: frozenset = frozenset()):
        """Copy b of every argument, with the data arguments at their slots: fresh copies,
        read-only views for the input slots in `views`, x[b] itself for those in `owned`."""
        args = iter([x[b] if k in owned else _read_only(x[b if x.shape[0] > 1 else 0]) if k in views
                     else np.array(x[b if x.shape[0] > 1 else 0]) for k, x in enumerate(xs)])
        return [np.array(self.data[k]) if k in self.data else next(args)
                for k in range(len(xs) + len(self.data))]

    def _attrs(self) -> dict:
        return copy.deepcopy(self.attrs) if self.attrs else {}

    def _run_forward(self, xs, b) -> np.ndarray:
        return self._run_shared(xs, b)

    def _run_shared(self, xs, b, views: frozenset = frozenset(), owned: frozenset = frozenset()):
        """The forward on copy b, with the input slots `views` and `owned` not copied (_one)."""
        return self._output(self._call(self._forward, *self._one(xs, b, views, owned), **self._attrs()),
                            self._forward)

    def forward(self, *xs):
        copies = max(x.shape[0] for x in xs)
        stacked = self._stacked(xs, copies)
        if stacked is not None:
            return stacked
        outs = self._looped(xs, copies)
        if any(o.shape != outs[0].shape for o in outs):
            raise UserCodeError(f"{self._where(self._forward)} returned outputs of different shapes "
                                f"({list(outs[0].shape)}, …) for inputs of the same shape")
        if self._first:
            self._first = False
            self.check_deterministic(outs[0], lambda: self._run_forward(xs, 0), self._forward)
        return np.stack(outs)

    def _looped(self, xs, copies) -> list[np.ndarray]:
        """One call per copy. The perturbed inputs (B copies) are copied once per chunk, so each
        call gets memory of its own; the shared ones (one copy for all calls, the plain pass's
        values) are passed as read-only views unless the op was seen to write into them, and
        compared with a snapshot after the chunk: a write (or an error while views were passed)
        runs the chunk again with a fresh copy per call for them, as from now on."""
        if type(self)._run_forward is not PythonOp._run_forward:  # (ModelOp sets model.params)
            return [self._run_forward(xs, b) for b in range(copies)]
        if copies == 1:
            return [self._run_forward(xs, 0)]
        own = [np.array(x) if x.shape[0] > 1 else x for x in xs]
        owned = frozenset(k for k, x in enumerate(xs) if x.shape[0] > 1)
        views = frozenset(k for k, x in enumerate(xs) if x.shape[0] == 1) - self.written
        snaps = {k: np.array(xs[k]) for k in views}
        try:
            outs: list[np.ndarray] | None = [self._run_shared(own, b, views, owned)
                                             for b in range(copies)]
        except UserCodeError:  # perhaps a write into a read-only view: once more with copies
            if not views:  # no view was passed: it is your code's own error
                raise
            outs = None
            self.written.update(views)
        for k, snap in snaps.items():
            if not np.array_equal(xs[k], snap):  # (NaN != NaN: a NaN input counts as written)
                self.written.add(k)
                with contextlib.suppress(ValueError):  # put back what the op overwrote
                    np.copyto(xs[k], snap)
        if outs is None or not views.isdisjoint(self.written):
            return self._looped(xs, copies)
        return outs

    def _stacked(self, xs, copies) -> np.ndarray | None:
        """All copies in one call, stacked along the batch axis of the perturbed inputs (those
        with copies: (B, N, …) -> (B·N, …)), when the op has been seen to allow it (None when
        not): the first time compared with a call on each of three copies, later on one."""
        key = tuple(k for k, x in enumerate(xs) if x.shape[0] > 1)
        known = self.stacks.get(key)
        if copies == 1 or known is False or type(self) is not PythonOp or self.data:
            return None
        n = xs[key[0]].shape[1] if xs[key[0]].ndim > 1 else 0
        if n == 0 or any(xs[k].ndim < 2 or xs[k].shape[1] != n for k in key):
            self.stacks[key] = False
            return None
        args = [np.array(x.reshape((copies * n,) + x.shape[2:])) if k in key else np.array(x[0])
                for k, x in enumerate(xs)]
        try:
            out = self._output(self._call(self._forward, *args, **self._attrs()), self._forward)
        except UserCodeError:  # (B·N, …) is not what it takes
            out = None
        if out is None or out.ndim < 1 or out.shape[0] != copies * n:
            self.stacks[key] = False
            return None
        out = out.reshape((copies, n) + out.shape[1:])
        for b in sorted({0, copies // 2, copies - 1}) if known is None else (copies - 1,):
            if not _same_copy(self._run_forward(xs, b), out[b]):
                self.stacks[key] = False
                return None
        self.stacks[key] = True
        return out

    def push(self, slot: int, d: Delta, xs, out: np.ndarray) -> Delta | None:
        """Changes that need fewer calls than one per copy, where probes show the op allows them
        (userpush: a changed sample alone, many changed slices in one call); None: dense copies."""
        from . import userpush  # (userpush leans on this module)
        return userpush.push(self, slot, d, xs, out)

    def copy_order(self, slot: int, index: np.ndarray, xs, out: np.ndarray) -> np.ndarray | None:
        """The slices of input `slot` taken in turn where one call moves many (userpush)."""
        from . import userpush
        return userpush.copy_order(self, slot, index, xs, out)

    def check_deterministic(self, first: np.ndarray, again, fn) -> None:
        """The same call once more (`again()`): a different output is the op's problem."""
        diff = difference(first, again())
        if diff is not None:
            self.problem = (f"{fn_name(fn)} is not deterministic: two calls on the same inputs "
                            f"differ by {diff:.1e} (a call counter, a global, or randomness not "
                            "drawn from np.random?)")

    def run_backward(self, g, xs):
        """The user's raw backward output for copy 0 (before checking its shapes)."""
        res = self._call(self._forward, *self._one(xs, 0), **self._attrs())
        cache = res[1] if isinstance(res, tuple) and len(res) == 2 else None
        return self._call(self._backward, np.array(g[0]), cache)

    def backward(self, g, out, *xs):
        if self.problem:
            raise BadGradient(self.problem)
        raw = self.run_backward(g, xs)
        grads = normalize_grads(raw, self.input_names, [x.shape[1:] for x in xs], self.ref,
                                [np.iscomplexobj(x) for x in xs])
        return tuple(gi[None] for gi in grads)


class PythonLoss(PythonOp):
    """cs231n's `loss(x, y) -> (loss, dx)` as an op of one input; y is a constant."""

    def __init__(self, ref: str, fn, labels, seed: int = 0, node: str = "loss_data"):
        super().__init__(ref, fn, None, seed=seed, node=node)
        self.labels = labels

    def _run_loss(self, x) -> np.ndarray:
        out = self._output(self._call(self._forward, np.array(x), np.array(self.labels)), self._forward)
        if out.size != 1:
            raise UserCodeError(f"{self._where(self._forward)} returned a loss of shape "
                                f"{list(out.shape)}, not a scalar")
        return out.reshape(())

    def forward(self, x):
        outs = [self._run_loss(x[b]) for b in range(x.shape[0])]
        if self._first:
            self._first = False
            self.check_deterministic(outs[0], lambda: self._run_loss(x[0]), self._forward)
        return np.stack(outs)

    def backward(self, g, out, x):
        if self.problem:
            raise BadGradient(self.problem)
        res = self._call(self._forward, np.array(x[0]), np.array(self.labels))
        if not isinstance(res, tuple) or len(res) != 2:
            raise BadGradient(f"it must return (loss, dx), got {type(res).__name__}")
        grads = normalize_grads((res[1],), ("x",), [x.shape[1:]], self.ref, [np.iscomplexobj(x)])
        return (g.reshape(-1)[0] * grads[0][None],)


def _same_copy(one: np.ndarray, stacked: np.ndarray) -> bool:
    """A copy from its own call and from the stacked call agree: real and imaginary parts each
    to SAME_OUTPUT_RTOL of their own largest entry (the complex step's imaginary parts, 1e-20
    of the real ones, carry the derivative: an op mixing the copies, batch norm, changes them
    at their own scale)."""
    if np.iscomplexobj(one) or np.iscomplexobj(stacked):
        return (difference(np.real(one), np.real(stacked)) is None
                and difference(np.imag(one), np.imag(stacked)) is None)
    return difference(one, stacked) is None


def _read_only(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


def activation(ref: str, base_dir: Path, seed: int, node: str) -> PythonOp:
    file, name = ref.split(":", 1)
    module = load_module(base_dir / file, ref)
    fwd, bwd = find(module, file, ref, *pair_names(name))
    return PythonOp(pair_label(ref), fwd, bwd, seed=seed, input_names=("x",), node=node)


def gradient_names(forward, count: int) -> tuple[str, ...]:
    """The names a backward's dict uses for its inputs ("dx", "dw", …): forward's own
    positional parameter names, else x (one input) or x0, x1, …"""
    try:
        params = [p.name for p in inspect.signature(forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except Exception:  # a builtin without a signature, or a callable whose __signature__ raises
        params = []
    if len(params) >= count:
        return tuple(params[:count])
    return ("x",) if count == 1 else tuple(f"x{k}" for k in range(count))


def layer(ref: str, base_dir: Path, seed: int, node: str, input_names, attrs,
          n_inputs: int | None = None) -> PythonOp:
    """A layer or graph-form op; input_names None: taken from forward's parameters."""
    file, name = ref.split(":", 1)
    module = load_module(base_dir / file, ref)
    fwd, bwd = find(module, file, ref, *pair_names(name))
    if input_names is None:
        input_names = gradient_names(fwd, n_inputs or 1)
    return PythonOp(pair_label(ref), fwd, bwd, attrs=attrs, seed=seed, input_names=tuple(input_names), node=node)


def loss(ref: str, base_dir: Path, seed: int, labels) -> PythonLoss:
    file, name = ref.split(":", 1)
    module = load_module(base_dir / file, ref)
    (fn,) = find(module, file, ref, name)
    return PythonLoss(ref, fn, labels, seed=seed)
