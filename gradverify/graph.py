"""A graph of named nodes: forward, backward, and recomputing what lies downstream of a node.

Values carry the leading perturbation axis of `ops`: a node of core shape (N, D) holds (1, N, D)
in the plain pass and (B, N, D) while B perturbed copies are pushed through.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .delta import Delta, Kind, Ray, push, push_ray, push_rows
from .errors import ConfigError, KeyPath
from .ops import BadGradient, Op
from .span import Span


@dataclass
class Node:
    """One named value. Leaves (inputs, parameters) have no op and hold their value."""

    name: str
    kind: str
    op: Op | None = None
    inputs: tuple[str, ...] = ()
    value: np.ndarray | None = None  # leaves only, with the leading axis: (1, *shape)
    key: KeyPath | None = None  # the config key that defines it, for messages and annotations
    source: str | None = None  # "file.py:name" for a custom op

    @property
    def fn(self) -> Op:
        """The op of an op node (a leaf has none)."""
        if self.op is None:
            raise TypeError(f"{self.name} is a leaf: it has no op")
        return self.op

    @property
    def op_label(self) -> str:
        if self.op is None:
            return self.kind
        return self.source or self.op.label


def topological_order(deps: dict[str, tuple[str, ...]]) -> list[str]:
    """Order names so that each comes after everything it depends on (stable: ties keep the
    insertion order). Raises ConfigError naming a cycle."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in deps:
        if state.get(root) == 2:
            continue
        stack = [(root, iter(deps.get(root, ())))]
        state[root] = 1
        while stack:
            name, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                state[name] = 2
                order.append(name)
            elif state.get(nxt) == 1:
                cycle = [n for n, _ in stack]
                cycle = cycle[cycle.index(nxt):] + [nxt]
                raise ConfigError("the graph has a cycle: " + " -> ".join(reversed(cycle)), ("graph",))
            elif state.get(nxt) is None and nxt in deps:
                state[nxt] = 1
                stack.append((nxt, iter(deps[nxt])))
    return order


def _check_gradients(node: Node, gs, xs) -> None:
    if not isinstance(gs, (tuple, list)) or len(gs) != len(xs):
        count = len(gs) if isinstance(gs, (tuple, list)) else 1
        raise BadGradient(f"it returned {count} gradient(s) for {len(xs)} input(s)")
    for inp, g, x in zip(node.inputs, gs, xs):
        if np.shape(g) != x.shape:
            raise BadGradient(f"it returned a gradient of shape {list(np.shape(g)[1:])} for {inp} "
                              f"of shape {list(x.shape[1:])}")


@dataclass
class Graph:
    """Named nodes in topological order, with `loss` naming the scalar output.

    `parts` names the scalar nodes the loss is the sum of (loss_data, loss_reg), checked one by
    one with --split; `hints` says, per node, what to do when the forward pass makes NaN or Inf
    there. Both are the builder's knowledge of its names, so the checker needs none."""

    nodes: dict[str, Node] = field(default_factory=dict)
    loss: str = "loss"
    parts: tuple[str, ...] = ()
    hints: dict[str, str] = field(default_factory=dict)
    _downstream: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _spans: dict[str, bool] = field(default_factory=dict, repr=False)  # spans_onward, per node

    def add(self, node: Node) -> Node:
        if node.name in self.nodes:
            raise ConfigError(f"node name {node.name!r} is used twice", node.key)
        self.nodes[node.name] = node
        self._downstream.clear()
        self._spans.clear()
        return node

    def finish(self) -> None:
        """Put the nodes in topological order (after the graph form added them in any order):
        each op after its inputs, each leaf just before its first consumer."""
        ops_first = sorted(self.nodes, key=lambda n: self.nodes[n].op is None)
        order = topological_order({n: self.nodes[n].inputs for n in ops_first})
        self.nodes = {n: self.nodes[n] for n in order}
        self._downstream.clear()
        self._spans.clear()

    # -- structure ---------------------------------------------------------------------------

    def consumers(self, name: str) -> list[str]:
        """Nodes that take `name` as an input, in graph order."""
        return [n for n, node in self.nodes.items() if name in node.inputs]

    def downstream(self, name: str) -> list[str]:
        """Nodes whose value depends on `name` (not `name` itself), in graph order."""
        if name not in self._downstream:
            reach = {name}
            for n, node in self.nodes.items():
                if any(i in reach for i in node.inputs):
                    reach.add(n)
            self._downstream[name] = [n for n in self.nodes if n in reach and n != name]
        return self._downstream[name]

    def spans_onward(self, name: str) -> bool:
        """Does a `span.Span` at node `name` pay: every consumer takes it as its first and only
        input, and every path of such consumers ends at one that turns it into a Delta."""
        if name not in self._spans:
            cons = self.consumers(name)
            self._spans[name] = bool(cons) and all(self._takes_span(name, c) for c in cons)
        return self._spans[name]

    def _takes_span(self, name: str, consumer: str) -> bool:
        node = self.nodes[consumer]
        role = node.fn.span_role
        return node.inputs[:1] == (name,) and node.inputs.count(name) == 1 and \
            (role == "end" or (role == "through" and self.spans_onward(consumer)))

    def reaches_loss(self, name: str) -> bool:
        return name == self.loss or self.loss in self.downstream(name)

    # -- passes ------------------------------------------------------------------------------

    def forward(self, leaves: dict[str, np.ndarray] | None = None,
                check: Callable[[str, np.ndarray], None] | None = None) -> dict[str, np.ndarray]:
        """Every node's value, (1, *shape) each. `leaves` overrides leaf values; `check(name,
        value)` sees each value as it is made (to stop at the first non-finite one)."""
        values: dict[str, np.ndarray] = {}
        for name, node in self.nodes.items():
            if node.op is None:
                value = leaves[name] if leaves and name in leaves else node.value
                assert value is not None, f"leaf {name} has no value"
                values[name] = value
            else:
                xs = [values[i] for i in node.inputs]
                try:
                    with np.errstate(all="ignore"):
                        values[name] = node.op.forward(*xs)
                except (ValueError, IndexError) as e:  # shapes that do not fit the op
                    shapes = " and ".join(str(list(x.shape[1:])) for x in xs)
                    raise ConfigError(f"{node.op_label} cannot take {', '.join(node.inputs)} of "
                                      f"shape {shapes}: {e}", node.key) from None
            if check:
                check(name, values[name])
        return values

    def backward(self, values: dict[str, np.ndarray],
                 problems: dict[str, str] | None = None) -> dict[str, np.ndarray]:
        """d loss / d node for every node, same shapes as `values` (zeros off the loss's path).

        An op whose backward returns the wrong number or shapes of gradients gets NaN gradients
        for its inputs (so they fail, and blame lands on it) and a message in `problems`."""
        grads: dict[str, np.ndarray] = {self.loss: np.ones_like(values[self.loss])}
        for name in reversed(list(self.nodes)):
            node = self.nodes[name]
            if node.op is None or name not in grads:
                continue
            xs = [values[i] for i in node.inputs]
            try:
                gs = node.op.backward(grads[name], values[name], *xs)
                _check_gradients(node, gs, xs)
            except BadGradient as e:
                if problems is not None:
                    problems[name] = f"the backward of {name} ({node.op_label}) is malformed: {e}"
                gs = tuple(np.full_like(x, np.nan, dtype=np.result_type(x, float)) for x in xs)
            for inp, gi in zip(node.inputs, gs):
                grads[inp] = grads[inp] + gi if inp in grads else gi
        for name in self.nodes:
            if name not in grads:
                grads[name] = np.zeros_like(values[name])
        return grads

    def apply(self, name: str, live: dict, values: dict, on_kink=None):
        """Node `name`'s perturbed copies, from its inputs' (a Ray or a Delta where it can stay
        sparse, else dense copies (B, *shape)). `live` holds the perturbed nodes, `values` the
        plain pass."""
        node = self.nodes[name]
        op = node.fn
        xs = [values[i] for i in node.inputs]
        slots = [k for k, i in enumerate(node.inputs) if i in live]
        kink = (lambda dist, base: on_kink(name, dist, base)) if on_kink else None
        mine = {i: live[i] for i in node.inputs if i in live}
        if len(slots) == 1 and isinstance(mine[node.inputs[slots[0]]], Ray):
            res = push_ray(op, slots[0], mine[node.inputs[slots[0]]], xs, values[name], kink)
            if res is not None:
                return res
        if any(isinstance(v, Ray) for v in mine.values()):  # no rule for the ray: its copies
            mine = {i: v.materialize() if isinstance(v, Ray) else v for i, v in mine.items()}
        if len(slots) == 1:
            spanned = self._push_span(name, slots[0], mine[node.inputs[slots[0]]], xs, values[name], kink)
            if spanned is not None:
                return spanned
        if any(isinstance(v, Span) for v in mine.values()):  # no rule for the span: its copies
            mine = {i: v.materialize() if isinstance(v, Span) else v for i, v in mine.items()}
        if len(slots) == 1 and isinstance(mine[node.inputs[slots[0]]], Delta):
            res = push(op, slots[0], mine[node.inputs[slots[0]]], xs, values[name], kink)
            if res is not None:
                return res
        elif len(slots) > 1 and all(isinstance(mine[node.inputs[k]], Delta) for k in slots) \
                and not op.kinked:
            res = push_rows(op, {k: mine[node.inputs[k]] for k in slots}, xs, values[name])
            if res is not None:
                return res
        dense = [as_dense(mine[i], values[i]) if i in mine else values[i] for i in node.inputs]
        if on_kink is not None and op.kinked:
            on_kink(name, op.kink_distance(*dense), op.kink_distance(*xs))
        return op.forward(*dense)

    def _push_span(self, name: str, slot: int, v, xs: list, out: np.ndarray, kink) -> Span | Delta | None:
        """Node `name`'s change as a Span (span.py), or the Delta that ends one, where its op
        has the rule and what follows takes it; else None."""
        op = self.nodes[name].fn
        if isinstance(v, Span):
            if op.span_role == "end" or (op.span_role == "through" and self.spans_onward(name)):
                return op.push_span(slot, v, xs, out, kink)
        elif isinstance(v, Delta) and op.span_from_delta and self.spans_onward(name):
            return op.push_span(slot, v, xs, out, kink)
        return None

    def propagate(self, values: dict[str, np.ndarray], changed: dict,
                  on_kink: Callable[[str, np.ndarray, np.ndarray], None] | None = None,
                  stats: dict | None = None, cuts: dict | None = None) -> np.ndarray:
        """How much the loss changes, (B,), when the nodes in `changed` are replaced by perturbed
        copies (a Delta, or dense copies (B, *shape)): only the nodes downstream of them are
        recomputed, sparse changes are pushed through the ops that allow it, the rest is read
        from `values`. `on_kink(name, distance, plain_distance)` sees the kink distances of
        every op with kinks on the way. `stats["peak_bytes"]` records the most bytes the perturbed
        copies held at once.

        `cuts` {node: CutGradient} (numeric/cuts.py, complex steps only): a change reaching such
        a node stops there, and adds i·⟨∇L, Im change⟩ to the loss's change (the loss beyond it,
        linearized); `stats["cut_error"]` then gets (Σ (|Im change|·bound)²)^½ per copy (the cuts'
        errors, in quadrature, one cut's to the next's)."""
        live = dict(changed)
        todo = set()
        for name in changed:
            todo.update(self.downstream(name))
        order = [n for n in self.nodes if n in todo]
        last_use: dict[str, int] = {}
        for pos, name in enumerate(order):
            for i in self.nodes[name].inputs:
                last_use[i] = pos
        absorbed: list[tuple[np.ndarray, np.ndarray]] = []
        for pos, name in enumerate(order):
            if cuts is None or any(i in live for i in self.nodes[name].inputs):
                live[name] = self.apply(name, live, values, on_kink)
                if stats is not None:
                    held = sum(_nbytes(v) for v in live.values())
                    stats["peak_bytes"] = max(stats.get("peak_bytes", 0), held)
                if cuts is not None and name in cuts and not isinstance(live[name], Span):  # a Span
                    # goes on to the matmul that ends it: cheaper than its copies made dense here
                    absorbed.append(linear_change(live.pop(name), values[name], cuts[name]))
            for i in self.nodes[name].inputs:  # drop what no later node reads: bounded memory
                if last_use.get(i) == pos and i != self.loss and i not in changed:
                    live.pop(i, None)
        if cuts is not None:
            return self._cut_total(live, values, absorbed, stats)
        if self.loss not in live:
            raise ValueError("the loss is not downstream of the changed nodes")
        return self._loss_change(live[self.loss], values)

    def _loss_change(self, loss, values: dict[str, np.ndarray]) -> np.ndarray:
        if isinstance(loss, (Ray, Span)):
            loss = loss.materialize()
        if isinstance(loss, Delta):
            return loss.vals.reshape(-1)  # the change itself, never rounded against the loss
        return loss - values[self.loss]

    def _cut_total(self, live: dict, values: dict, absorbed: list, stats: dict | None) -> np.ndarray:
        """The loss's change with cuts: what reached the loss, plus every cut's ⟨∇L, change⟩."""
        if self.loss not in live and not absorbed:
            raise ValueError("the loss is not downstream of the changed nodes")
        total = self._loss_change(live[self.loss], values) if self.loss in live else 0
        error = 0
        for change, err in absorbed:
            total, error = total + change, error + err * err
        if stats is not None:
            stats["cut_error"] = np.sqrt(error)
        return np.asarray(total)


@dataclass
class CutGradient:
    """A cut's numeric gradient ∇L and the bound on its error (each of the node's core shape,
    real), with the layout a column change reads them in, made once when first needed."""

    grad: np.ndarray
    bound: np.ndarray
    _by_col: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.top = float(np.abs(self.grad).max(initial=0.0))  # its largest |entry|

    def at(self, d: Delta) -> tuple[np.ndarray, np.ndarray]:
        """∇L and the bound at the places `d` changes, shaped like its changes (k, …)."""
        if d.kind is Kind.ELEM:
            where = tuple(d.at.T)
            return self.grad[where], self.bound[where]
        if d.kind in (Kind.ROW, Kind.COL):
            grad, bound = self._slices(d.kind)
            return grad[d.at], bound[d.at]
        return self.grad[None], self.bound[None]

    def _slices(self, kind: Kind) -> tuple[np.ndarray, np.ndarray]:
        """∇L and the bound as the slices a ROW or COL change indexes, whole rows first."""
        if kind is Kind.ROW:
            return self.grad, self.bound
        if self._by_col is None:  # columns as rows: contiguous gathers
            self._by_col = (np.ascontiguousarray(np.swapaxes(self.grad, 0, 1)),
                            np.ascontiguousarray(np.swapaxes(self.bound, 0, 1)))
        return self._by_col

    def scaled_change(self, d: Delta, step: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """linear_change for a scaled change whose Im part is rows·step (rows source[pick[b]],
        real, in slice at[b]): i·step·Σ rows·∇L and |step|·(Σ (rows·bound)²)^½ per copy. A
        chunk's copies are few picks × few slices (consecutive elements of a weight: one row of
        it, every column); then every (pick, slice) pair's sums are the entries of one product,
        source[picks] · ∇L[slices]ᵀ — each entry the very sum the copy's own gathered rows would
        give, in BLAS's order. None where those sums could overflow before the step comes in."""
        assert d.source is not None and d.pick is not None
        grad, bound = self._slices(d.kind)
        picks, which_pick = _compact(d.pick, d.source.shape[0])
        src = d.source[picks]
        if not np.abs(src).max(initial=0.0) * self.top < 1e300:
            return None
        slices, which_slice = _compact(d.at, len(grad))
        if len(picks) * len(slices) > 4 * len(d.pick):
            rows, g = src[which_pick], grad[d.at]
            return 1j * step * np.einsum("kn,kn->k", rows, g), _norms(rows * bound[d.at], np.abs(step))
        g, b = grad[slices], bound[slices]
        # (Σ (rows·bound)²)^½ with each row and bound scaled to a largest entry of 1 first: the
        # squares neither overflow nor underflow where their sum's root does not
        top_src, top_b = _largest(src), _largest(b)
        unit = np.sqrt(np.square(src / top_src[:, None]) @ np.square(b / top_b[:, None]).T)
        error = unit[which_pick, which_slice] * (np.abs(step) * top_src[which_pick]) * top_b[which_slice]
        return 1j * step * (src @ g.T)[which_pick, which_slice], error


def _largest(rows: np.ndarray) -> np.ndarray:
    """Each row's largest |entry|, 1 for a row of zeros."""
    top = np.abs(rows).max(axis=1, initial=0.0)
    return np.where(top > 0, top, 1.0)


def _norms(rows: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """scale · (Σ rows²)^½ per row, each row scaled to a largest entry of 1 first."""
    top = _largest(rows)
    return np.sqrt(np.einsum("kn,kn->k", rows / top[:, None], rows / top[:, None])) * (scale * top)


def _compact(ids: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of `ids` (ints below `size`), sorted, and where each id is among them
    (np.unique's, without its sort)."""
    seen = np.zeros(size, dtype=bool)
    seen[ids] = True
    distinct = np.flatnonzero(seen)
    where = np.empty(size, dtype=np.intp)
    where[distinct] = np.arange(len(distinct))
    return distinct, where[ids]


def linear_change(v, base: np.ndarray, cut: CutGradient) -> tuple[np.ndarray, np.ndarray]:
    """i·⟨∇L, Im change⟩ per copy for a node's change `v` under a complex step (a Delta, Ray, Span
    or dense copies of a node whose plain value is `base`; the step reads only the imaginary
    part), and its error (Σ (|Im change|·bound)²)^½. The terms' errors are roundings of
    independent sums: they add in quadrature, as rounding errors do (a sum of |terms| would
    compound with every cut on the way, ~4× per layer of a deep network, far beyond any error
    the numbers show)."""
    if isinstance(v, (Ray, Span)):
        v = v.materialize()
    if isinstance(v, Delta) and v.source is not None and v.factor is not None and not np.iscomplexobj(v.source):
        scaled = cut.scaled_change(v, np.imag(v.factor))  # rows real times factor f: Im change
        if scaled is not None:  # = rows · Im f, and Im f comes out of both sums
            return scaled
    if isinstance(v, Delta):
        moved, (grad, bound) = np.imag(v.vals), cut.at(v)
    else:
        moved, grad, bound = np.imag(v - base), cut.grad[None], cut.bound[None]
    k = moved.shape[0]
    moved = moved.reshape(k, -1)
    grad, bound = (np.broadcast_to(a, (k,) + a.shape[1:]).reshape(k, -1) for a in (grad, bound))
    spread = moved * bound
    return 1j * np.einsum("kn,kn->k", moved, grad), np.sqrt(np.einsum("kn,kn->k", spread, spread))


def _nbytes(v) -> int:
    if isinstance(v, Ray):
        return v.d.nbytes
    if isinstance(v, Span):
        return v.nbytes
    return v.nbytes if isinstance(v, Delta) else getattr(v, "nbytes", 0)


def as_dense(v, base: np.ndarray) -> np.ndarray:
    if isinstance(v, Span):
        v = v.materialize()
    return v.dense(base) if isinstance(v, Delta) else v
