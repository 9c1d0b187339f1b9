"""The graph form's user nodes, its loss and the model form (build's part for real cs231n code):

* a user op node `op: file.py:name`, `{forward:, backward:}` or `{loss:}`, whose `data:` inputs
  are constants of the op (userops), and whose `name: [a, b]` makes a packed node `a+b` with a
  `pick` node per output;
* `loss:` naming one scalar node (the loss as it is), or a non-scalar node or a list of nodes: a
  `project` node (named `loss`, or `projected_loss` when the config has a `loss` already);
* `model:`: a parameter node per entry of model.params, and the loss node `loss` (ModelOp).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import custom, usercode
from .config import Config, GraphNode, is_custom
from .config.paths import code_folder
from .errors import ConfigError, KeyPath, UserCodeError
from .graph import Graph, Node
from .userops import LossFn, ModelOp, MultiOp, Pick, Project

PROJECTED = ("loss", "projected_loss")


def is_user(op: Any) -> bool:
    return is_custom(op) or isinstance(op, dict)


def _function(c: Config, ref: Any, key: KeyPath):
    """(the function, its file's name or None) for `file.py:name` or a Python callable."""
    if callable(ref):
        return ref, None
    file, name = ref.split(":", 1)
    try:
        module = custom.load_module(code_folder(c.source) / file, ref)
        (fn,) = custom.find(module, file, ref, name)
    except UserCodeError as err:
        err.key = err.key or key
        raise
    return fn, file


def _pair(c: Config, op: Any, key: KeyPath):
    """(forward, backward, label) of `file.py:name` or {forward:, backward:}."""
    if not isinstance(op, dict):
        file, name = op.split(":", 1)
        fwd_name, bwd_name = custom.pair_names(name)
        fwd, _ = _function(c, f"{file}:{fwd_name}", key)
        bwd, _ = _function(c, f"{file}:{bwd_name}", key)
        return fwd, bwd, custom.pair_label(op)
    fwd, ffile = _function(c, op["forward"], key + ("forward",))
    back = op.get("backward")
    if back is None:
        back = custom.pair_names(custom.fn_name(fwd))[1] if ffile is None else \
            f"{ffile}:{custom.pair_names(op['forward'].split(':', 1)[1])[1]}"
        if ffile is None:
            raise ConfigError("give `backward:` with a Python function as `forward:`", key)
    bwd, bfile = _function(c, back, key + ("backward",))
    fname, bname = custom.fn_name(fwd), custom.fn_name(bwd)
    where = f"{ffile}:" if ffile else ""
    label = f"{where}{fname}/{bname}" if bfile == ffile else f"{where}{fname}/{bfile}:{bname}"
    return fwd, bwd, label


def user_op(c: Config, spec: GraphNode):
    """The op of a user node (its data inputs held as constants) and its differentiable inputs."""
    key = tuple(spec.path) + ("op",)
    slots = {k: c.data[n] for k, n in enumerate(spec.inputs) if n in c.data}
    diff = tuple(n for n in spec.inputs if n not in c.data)
    if not diff:
        raise ConfigError("every input is data: the op has nothing to check", tuple(spec.path) + ("inputs",))
    if isinstance(spec.op, dict) and "loss" in spec.op:
        fwd, file = _function(c, spec.op["loss"], key + ("loss",))
        bwd, label = None, spec.op["loss"] if file else custom.fn_name(fwd)
    else:
        fwd, bwd, label = _pair(c, spec.op, key)
    names = custom.gradient_names(fwd, len(spec.inputs))
    grad_names = tuple(n for k, n in enumerate(names) if k not in slots)
    args: dict[str, Any] = dict(attrs=dict(spec.attrs), seed=c.seed, input_names=grad_names, node=spec.name)
    if bwd is None:
        op: custom.PythonOp = LossFn(label, fwd, None, **args)
    elif spec.outputs:
        op = MultiOp(label, fwd, bwd, outputs=len(spec.outputs), **args)
    else:
        op = custom.PythonOp(label, fwd, bwd, **args)
    op.data = slots
    return op, diff


def add_user_node(g: Graph, c: Config, spec: GraphNode) -> None:
    op, diff = user_op(c, spec)
    if not spec.outputs:
        g.add(Node(spec.name, "intermediate", op=op, inputs=diff, key=spec.path, source=op.ref))
        return
    packed = "+".join(spec.outputs)
    g.add(Node(packed, "intermediate", op=op, inputs=diff, key=spec.path, source=op.ref))
    assert isinstance(op, MultiOp)
    for k, name in enumerate(spec.outputs):
        g.add(Node(name, "intermediate", op=Pick(op, k), inputs=(packed,), key=spec.path, source="pick"))


def _loss_names(c: Config) -> tuple[str, ...]:
    return c.loss_nodes or (str(c.loss),)


def set_loss(g: Graph, c: Config) -> None:
    """Make g.loss the scalar checked: the one scalar node named, else a projection."""
    names = _loss_names(c)
    for k, name in enumerate(names):
        if name not in g.nodes or g.nodes[name].op is None:
            key = ("loss", k) if c.loss_nodes else ("loss",)
            what = "a node of the graph" if name not in c.data else "a node (it is data)"
            raise ConfigError(f"the loss {name!r} is not {what}", key)
    g.finish()
    if len(names) == 1 and _scalar(g, names[0]):
        g.loss = names[0]
        g.nodes[names[0]].kind = "loss"
        return
    target = next(n for n in (*PROJECTED, *(f"projected_loss_{i}" for i in range(2, 99)))
                  if n not in g.nodes and n not in c.data)
    g.add(Node(target, "loss", op=Project(c.seed), inputs=names, key=("loss",), source="project"))
    g.loss = target
    g.finish()


def _scalar(g: Graph, name: str) -> bool:
    """Is node `name` a scalar? (One forward pass; user ops are left as if never called.)"""
    with np.errstate(all="ignore"):
        values = g.forward()
    for node in g.nodes.values():
        if isinstance(node.op, custom.PythonOp):
            node.op._first, node.op.problem = True, None
    return values[name].shape == (1,)


def build_model(c: Config) -> Graph:
    """The model form: a parameter node per model.params entry, then the loss node."""
    spec = c.model
    assert spec is not None
    model, label = _instantiate(c)
    with usercode.guard(f"{label}: reading model.params"):
        params = {k: np.array(v) for k, v in dict(model.params).items()}
    if not params or not all(isinstance(k, str) and k.isidentifier() for k in params):
        raise UserCodeError(f"{label}: model.params must be a dict of named arrays, has "
                            f"{', '.join(map(usercode.safe_str, params)) or 'nothing'}", spec.path)
    name = next(n for n in ("loss", "model_loss", "model_loss_") if n not in params)
    g = Graph(loss=name)
    for k, v in params.items():
        if not np.issubdtype(v.dtype, np.floating):
            raise UserCodeError(f"{label}: model.params[{k!r}] holds {v.dtype}, not floats", spec.path)
        g.add(Node(k, "parameter", value=v.astype(np.float64)[None], key=spec.path))
    op = ModelOp(label, model, tuple(params), [c.data[n] for n in spec.inputs], spec.kwargs, c.seed, name)
    g.add(Node(name, "loss", op=op, inputs=tuple(params), key=spec.path, source=label))
    g.finish()
    return g


def _instantiate(c: Config):
    spec = c.model
    assert spec is not None
    cls = spec.cls
    if hasattr(cls, "loss") and not isinstance(cls, type):
        return cls, custom.fn_name(type(cls))  # an instance, from the Python API
    label = cls if isinstance(cls, str) else custom.fn_name(cls)
    if isinstance(cls, str):
        cls, _ = _function(c, cls, spec.path + ("class",))
    with custom.seeded(c.seed), usercode.guard(f"{label}: creating the model"):
        return cls(**spec.args), label
