"""Frozen result records: how a check is asked to run (Settings) and how it ran (RunInfo), and
what it found per element, per node (NodeResult), per op (Blame) and in all (Report).

Records only; turning them into text is render.py's and formats.py's job. The one dependency the
other way: `Report.to_dict()` and `Report.table()` (the Python API's conveniences) call render,
imported when called.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import UnknownNodeError, did_you_mean

#: node statuses: "undecided" where the numbers could not decide (no element checked, or a
#: gradient zero everywhere: see the node's notes). Elements have "pass", "kink", "fail" and two
#: more: "floor" where analytic and numeric are both below the noise floor (atol + the estimate's
#: error bar), so they agree only in being too small to judge (not a failure); and "nonfinite"
#: where the numeric estimate itself is NaN or Inf (the element cannot be checked; its node
#: fails, its numbers stay out of the node's maxima)
STATUSES = ("pass", "kink", "fail", "undecided")


def shape_text(shape: tuple[int, ...]) -> str:
    """(2, 3) -> "2×3"; () -> "scalar"."""
    return "×".join(map(str, shape)) or "scalar"


@dataclass(frozen=True)
class Settings:
    """How a check runs. None means the default for the method (or the config's tolerance)."""

    method: str = "auto"
    step: float | None = None
    rtol: float | None = None
    atol: float | None = None
    max_memory: int = 256 * 2**20
    strict: bool = False
    nodes: tuple[str, ...] | None = None
    sample: int | None = None  # check this many random elements per node (all when fewer)
    seed: int = 0  # for --sample and --fast
    fast: bool = False  # directional: a few random directions per node, bisect on a mismatch
    split: bool = False  # also check each parameter's gradient of loss_data and of loss_reg
    taylor: bool = False  # also run the Taylor remainder test per node (a second opinion)


@dataclass(frozen=True)
class RunInfo:
    """How a check ran, as reports print it: the JSON report's `settings`."""

    method: str  # as asked for ("auto", …)
    methods_used: tuple[str, ...]
    step: float | None  # the --step override, or None
    step_rule: Mapping[str, str]  # per method used, and "kink"
    rtol: Mapping[str, float]  # per method used
    atol: Mapping[str, float]
    dtype: str
    seed: int  # the config's
    config: str | None  # the config file
    mode: str  # "full", "sampled" or "directional"
    sample: int | None
    sample_seed: int

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["methods_used"] = list(self.methods_used)
        return doc


@dataclass(frozen=True)
class Element:
    """One element of one node."""

    index: tuple[int, ...]
    value: float
    analytic: float | None  # None: not finite
    numeric: float | None
    error: float | None
    left: float | None  # at a kink only
    right: float | None
    abs_error: float | None
    rel_error: float | None
    status: str

    def to_dict(self) -> dict:
        return {"index": list(self.index), "value": self.value, "analytic": self.analytic,
                "numeric": self.numeric, "numeric_error": self.error, "left": self.left,
                "right": self.right, "abs_error": self.abs_error, "rel_error": self.rel_error,
                "status": self.status}


def _f(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def max_finite(values: np.ndarray) -> float:
    """The largest finite value (NaN when there are values but none is finite)."""
    finite = values[np.isfinite(values)]
    if finite.size:
        return float(finite.max())
    return float("nan") if values.size else 0.0


@dataclass(frozen=True)
class Taylor:
    """A node's Taylor remainder test (numeric/taylor.py): its verdict ("pass", "fail", "kink" or
    "undecided"), the order of R(h) = |L(x + hv) − L(x) − h⟨g, v⟩| as h → 0 (2 right, 1 wrong;
    None where no order was fitted), its odd part's order (3 right, 1 wrong), the reason, each
    direction's order, and the resolution: the smallest directional gradient error, relative to
    Σ|g_i v_i|, that would have shown."""

    verdict: str
    order: float | None
    odd_order: float | None
    reason: str
    orders: tuple[float | None, ...]
    resolution: float
    error: float = float("nan")  # a FAIL's directional error seen, relative to Σ|g_i v_i|

    def to_dict(self) -> dict:
        def r(v):
            return None if v is None or not np.isfinite(v) else round(float(v), 4)

        def g(v):
            return None if not np.isfinite(v) else float(f"{v:.3g}")

        return {"verdict": self.verdict, "order": r(self.order), "odd_order": r(self.odd_order),
                "reason": self.reason, "orders": [r(o) for o in self.orders],
                "resolution": g(self.resolution), "error": g(self.error)}


@dataclass(frozen=True)
class Adjoint:
    """The adjoint (dot-product) identity of a user op: ⟨J·u, v⟩ from its forward (`jvp`, by the
    complex step or central differences: `method`) against ⟨u, backward(v)⟩ (`vjp`) for random
    u and v, their relative error, and the verdict ("pass", "fail", "kink", "undecided") and why."""

    verdict: str
    jvp: float | None
    vjp: float | None
    rel_error: float | None
    method: str
    reason: str

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "jvp": _f(self.jvp) if self.jvp is not None else None,
                "vjp": _f(self.vjp) if self.vjp is not None else None,
                "rel_error": _f(self.rel_error) if self.rel_error is not None else None,
                "method": self.method, "reason": self.reason}


@dataclass(frozen=True, eq=False)
class NodeResult:
    """Every checked element of one node, as arrays over flat indices (`flat`)."""

    name: str
    kind: str
    op: str
    shape: tuple[int, ...]
    method: str
    rtol: float
    atol: float
    step: float
    flat: np.ndarray
    value: np.ndarray
    analytic: np.ndarray
    numeric: np.ndarray
    error: np.ndarray
    left: np.ndarray
    right: np.ndarray
    abs_error: np.ndarray
    rel_error: np.ndarray
    statuses: np.ndarray  # of str
    problem: str | None = None  # a malformed backward's message
    inherited: bool = False  # fails only because a gradient downstream of it is wrong
    total: int = -1  # elements in the node (size is how many were checked)
    mode: str = "full"  # "full", "sampled", or "directional" (--fast)
    directions: int = 0  # --fast: directional comparisons made (bisection included)
    directional_error: float = 0.0  # --fast: the largest |vᵀa − D_v f| / (Σ|v_i a_i|)
    grad_max: float = 0.0  # max |analytic| over the whole node, checked or not
    of: str = "loss"  # the scalar differentiated: "loss", or with --split "loss_data"/"loss_reg"
    float64_rel_error: float | None = None  # float32 networks: the same check's error in float64
    line: int | None = None  # the config line that defines the node (its layer, op or value)
    seconds: float = 0.0  # time spent checking it
    notes: tuple[str, ...] = ()  # what the numbers could not decide, said in words
    undecided: bool = False  # no verdict for the node as a whole (see notes)
    taylor: Taylor | None = None  # the Taylor test (--taylor, or the verdict itself with mode "taylor")
    adjoint: Adjoint | None = None  # a user op's node, with --taylor: its adjoint identity
    diagnosis: str | None = None  # a failing node: the pattern its numbers show, in words

    @property
    def label(self) -> str:
        """The node's name, and with --split the part of the loss it is the gradient of."""
        return self.name if self.of == "loss" else f"{self.name} (∂{self.of})"

    @property
    def shape_text(self) -> str:
        return shape_text(self.shape)

    @property
    def status(self) -> str:
        if self.mode == "taylor" and self.taylor is not None:
            return "fail" if self.problem else self.taylor.verdict
        if (self.statuses == "fail").any() or (self.statuses == "nonfinite").any() or self.problem:
            return "fail"
        if (self.statuses == "kink").any():
            return "kink"
        return "undecided" if self.undecided else "pass"

    @property
    def size(self) -> int:
        return len(self.flat)

    @property
    def max_analytic(self) -> float:
        """max |analytic| over the whole node (not only the elements checked)."""
        return self.grad_max if self.total >= 0 else max_finite(np.abs(self.analytic))

    @property
    def max_abs_error(self) -> float:
        return max_finite(self.abs_error)

    @property
    def max_rel_error(self) -> float:
        return max_finite(self.rel_error)

    @property
    def worst(self) -> int | None:
        """Position (into the arrays) of the worst element: among the failing ones (else nonfinite,
        else kinks, else the rest) the one with the largest relative error, the number the row
        shows as `max rel err`."""
        if not self.size:
            return None
        rank = np.select([self.statuses == "fail", self.statuses == "nonfinite", self.statuses == "kink"],
                         [3, 2, 1], 0)
        rel = np.where(np.isfinite(self.rel_error), self.rel_error, -1.0)
        return int(np.lexsort((-np.arange(self.size), rel, rank))[-1])  # ties: the first element

    @property
    def worst_index(self) -> tuple[int, ...] | None:
        w = self.worst
        return None if w is None else self.index_of(w)

    def index_of(self, pos: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(int(self.flat[pos]), self.shape)) if self.shape else ()

    def element(self, pos: int) -> Element:
        kink = self.statuses[pos] == "kink" or np.isfinite(self.left[pos])
        return Element(self.index_of(pos), float(self.value[pos]), _f(self.analytic[pos]),
                       _f(self.numeric[pos]), _f(self.error[pos]),
                       _f(self.left[pos]) if kink else None, _f(self.right[pos]) if kink else None,
                       _f(self.abs_error[pos]), _f(self.rel_error[pos]), str(self.statuses[pos]))

    def _repr_html_(self) -> str:
        """Jupyter: the node's counts, hint, heat map, scatter and its worst elements."""
        from .report_html import node_section
        return node_section(self, elements=20)

    def __repr__(self) -> str:
        return (f"<NodeResult {self.label}: {self.status}, {self.size} elements, "
                f"max rel err {self.max_rel_error:.1e}>")

    def elements(self, only_failing_or_kink: bool = False) -> list[Element]:
        pos = np.arange(self.size)
        if only_failing_or_kink:
            pos = np.flatnonzero((self.statuses != "pass") & (self.statuses != "floor"))
        return [self.element(int(p)) for p in pos]


@dataclass(frozen=True)
class Blame:
    """An op whose backward is wrong: `node` (its output), its `op` label, the sentence that says
    why, and `input`, the input whose gradient disagrees (None for a malformed backward)."""

    node: str
    op: str
    message: str
    input: str | None = None
    function: str | None = None  # a user op: the function to look at, its file and `def` line
    file: str | None = None
    line: int | None = None

    @property
    def where(self) -> str | None:
        """"conv_backward_naive (layers.py:412)": where to look, for a user op."""
        if self.function is None or self.file is None:
            return None
        return f"{self.function} ({self.file.replace(chr(92), '/').rsplit('/', 1)[-1]}:{self.line})"

    def to_dict(self) -> dict:
        return {"node": self.node, "op": self.op, "message": self.message, "function": self.function,
                "file": self.file, "line": self.line}


@dataclass(frozen=True)
class Report:
    loss: float
    loss_data: float | None
    loss_reg: float | None
    info: RunInfo
    nodes: tuple[NodeResult, ...]
    blame: tuple[Blame, ...] = ()
    strict: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)
    edges: tuple[tuple[str, str], ...] = ()  # (input, node) of the graph, for the HTML report's picture

    @property
    def status(self) -> str:
        """The worst node's: fail, else kink, else undecided (some node could not be judged),
        else pass."""
        statuses = {n.status for n in self.nodes}
        for s in ("fail", "kink", "undecided"):
            if s in statuses:
                return s
        return "pass"

    @property
    def settings(self) -> dict:
        """How the check ran, as the JSON report's `settings`."""
        return self.info.to_dict()

    @property
    def exit_code(self) -> int:
        statuses = {n.status for n in self.nodes}
        if "fail" in statuses or statuses <= {"undecided"}:  # deciding nothing is no pass either
            return 1
        return 1 if self.strict and statuses & {"kink", "undecided"} else 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def node(self, name: str) -> NodeResult:
        for n in self.nodes:
            if n.name == name:
                return n
        raise UnknownNodeError(f"no node {name!r}{did_you_mean(name, [n.name for n in self.nodes])}")

    def counts(self) -> dict:
        return {s: sum(n.status == s for n in self.nodes) for s in STATUSES}

    def to_dict(self) -> dict:
        """The same document as `gradverify check --format json`."""
        from .render import check_json
        return check_json(self)

    def table(self, width: int = 160) -> str:
        """The check table as plain text (what the terminal shows, without colour)."""
        from .render import as_text, check_view
        return as_text(check_view(self, width=width), width)

    def assert_ok(self) -> None:
        """Raise AssertionError, with the table as its message, unless the gradients agree."""
        if not self.ok:
            raise AssertionError("gradients disagree\n" + self.table())

    def _repr_html_(self) -> str:
        """Jupyter: the HTML report's content (summary, blame, hints, graph, heat maps)."""
        from .report_html import report_body
        return report_body(self)

    def __repr__(self) -> str:
        c = self.counts()
        return (f"<Report {self.status}: {len(self.nodes)} nodes, {c['pass']} pass, {c['kink']} kink, "
                f"{c['fail']} fail, blame={[b.node for b in self.blame]}>")
