"""One check's context, built once: the graph after its plain forward and backward passes,
custom ops probed, tolerances resolved, and a way to locate a node in the config."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .. import numeric
from ..build import build, unused_nodes
from ..config import Config
from ..errors import GradverifyError, NumericalError
from ..graph import Graph
from ..numeric import cuts
from ..results import Settings

if TYPE_CHECKING:
    from ..errors import KeyPath

#: what the forward pass's non-finite message suggests when the graph has no hint for the node
SCALE_HINT = "check the scale of the inputs and weights"


@dataclass(frozen=True)
class Run:
    """A network ready to check, and how to check it. Every check function takes one."""

    graph: Graph
    values: dict  # node -> (1, *shape), the plain forward pass
    grads: dict  # node -> d loss / d node, from the backward passes under test
    problems: Mapping[str, str]  # node -> message, for backwards that returned malformed gradients
    trusted: frozenset  # custom op nodes whose complex-step probe agreed with central differences
    warnings: tuple[str, ...]
    settings: Settings
    tolerances: Mapping[str, tuple[float, float]]  # (rtol, atol) per numeric method
    dtype: str
    config_file: str | None
    config_seed: int
    locate: Callable[[KeyPath], int | None] = field(repr=False)  # a config key's line
    #: what the numeric side perturbs: the plain pass itself in float64; for a float32 network,
    #: the same network re-run in float64 from its float32 leaves (so float32 rounding does not
    #: dominate the numeric estimate), whose own backward is `grads64`
    numeric_values: dict | None = None
    grads64: dict | None = None
    #: the numeric gradients complex steps may stop at (numeric/cuts.py), shared by its nodes
    cuts: numeric.Cuts | None = None

    @property
    def nvalues(self) -> dict:
        return self.numeric_values if self.numeric_values is not None else self.values

    def tolerance(self, method: str) -> tuple[float, float]:
        return self.tolerances[method]

    def line(self, node: str) -> int | None:
        key = self.graph.nodes[node].key
        return None if key is None else self.locate(tuple(key))


def _resolve(default: tuple[float, float], config: Config, settings: Settings) -> tuple[float, float]:
    """A default (float32's for a float32 network), then the config's `tolerance:`, then the
    command line's, each overriding the one before."""
    rtol, atol = numeric.FLOAT32_TOLERANCE if config.dtype == "float32" else default
    rtol = config.rtol if config.rtol is not None else rtol
    atol = config.atol if config.atol is not None else atol
    rtol = settings.rtol if settings.rtol is not None else rtol
    atol = settings.atol if settings.atol is not None else atol
    return rtol, atol


def tolerances(config: Config, settings: Settings) -> dict[str, tuple[float, float]]:
    """(rtol, atol) per method, and under "kink" for elements at a kink: left and right are real
    one-sided differences, so a tolerance set tighter than theirs does not apply to them."""
    out = {m.name: _resolve((m.rtol, m.atol), config, settings) for m in numeric.METHODS.values()}
    rtol, atol = _resolve(numeric.KINK_TOLERANCE, config, settings)
    out["kink"] = (max(rtol, numeric.KINK_TOLERANCE[0]), max(atol, numeric.KINK_TOLERANCE[1]))
    return out


def forward_checked(graph: Graph) -> dict:
    """The forward pass, stopping with a NumericalError at the first non-finite node."""

    def finite(name, value):
        if not np.all(np.isfinite(value)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(value[0]))[0]) if value.ndim > 1 else ()
            what = "NaN" if np.isnan(value).any() else "Inf"
            node = graph.nodes[name]
            hint = graph.hints.get(name, SCALE_HINT)
            raise NumericalError(f"the forward pass made {what} at node {name} ({node.op_label}), "
                                 f"index {list(bad)}; {hint}", node.key)

    return graph.forward(check=finite)


def prepare(config: Config, settings: Settings = Settings(), graph: Graph | None = None) -> Run:
    """Build the graph (unless given one), run the plain forward and backward passes, probe
    custom ops, resolve tolerances."""
    try:
        return _prepare(config, settings, graph)
    except GradverifyError as err:
        raise config.source.place(err) from None


def _prepare(config: Config, settings: Settings, graph: Graph | None) -> Run:
    if settings.step is not None:
        problem = numeric.step_problem(settings.method, settings.step)
        if problem:
            raise GradverifyError(problem)
    graph = graph if graph is not None else build(config)
    values = forward_checked(graph)
    if values[graph.loss].shape != (1,):
        raise config.error(f"the loss node {graph.loss!r} must be a scalar, but its shape is "
                           f"{list(values[graph.loss].shape[1:])}", "loss")
    problems: dict[str, str] = {}
    with np.errstate(all="ignore"):
        grads = graph.backward(values, problems)
    values64 = grads64 = None
    if config.dtype == "float32":
        leaves = {n: np.asarray(node.value, dtype=np.float64) for n, node in graph.nodes.items()
                  if node.op is None}
        with np.errstate(all="ignore"):
            values64 = graph.forward(leaves)
            grads64 = graph.backward(values64, {})
    trusted = frozenset(n for n, node in graph.nodes.items()
                        if node.op is not None and not node.op.complex_safe
                        and numeric.complex_probe(graph, values64 or values, n))
    notes = tuple(f"node {n!r} does not reach the loss {graph.loss!r}: its gradient is zero"
                  for n in unused_nodes(graph))
    return Run(graph, values, grads, problems, trusted, notes, settings, tolerances(config, settings),
               config.dtype, config.source.file, config.seed,
               lambda key: config.source.locate(key)[0], values64, grads64,
               numeric.Cuts(graph, values64 or values, trusted) if cuts.ENABLED else None)
