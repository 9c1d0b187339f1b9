"""`gradverify graph`: the network as a tree (rich) or as Graphviz source, each node coloured by
its status after a check, the blamed op marked and the edge whose gradient disagrees drawn red."""
from __future__ import annotations

from rich.text import Text

from .errors import one_line
from .render import STYLE, plain


def _blamed(blame) -> tuple[set, set]:
    """(blamed op nodes, (input, op) edges whose gradient disagrees)."""
    return {b.node for b in blame}, {(b.input, b.node) for b in blame if b.input}


def _node_text(graph, values, name, statuses, blamed=frozenset()) -> Text:
    node = graph.nodes[name]
    shape = "×".join(map(str, values[name].shape[1:])) or "scalar"
    text = plain(name, style=STYLE.get(statuses.get(name), "bold") if statuses else "bold")
    text.append(f"  {node.op_label if node.op else node.kind}  {shape}", style="dim")
    if statuses and name in statuses:
        text.append("  ")
        text.append(statuses[name].upper(), style=STYLE[statuses[name]])
    if name in blamed:
        text.append("  ✗ BLAMED: its backward is wrong", style="bold red")
    return text


def graph_tree(graph, values, statuses: dict | None = None, blame=()):
    """The network as a tree from the loss down to the inputs; a node reached again (shared
    weights, skip connections) is shown once in full and then as "↑ name". A blamed op says so,
    and the input whose gradient it gets wrong is marked on that edge."""
    from rich.tree import Tree

    ops, edges = _blamed(blame)
    root = Tree(_node_text(graph, values, graph.loss, statuses, ops))
    seen = {graph.loss}
    stack = [(root, graph.loss)]
    while stack:
        branch, name = stack.pop()
        for inp in graph.nodes[name].inputs:
            again = inp in seen
            seen.add(inp)
            label = plain(f"↑ {inp}", style="dim") if again else _node_text(graph, values, inp, statuses, ops)
            if (inp, name) in edges:
                label.append(f"  ← the gradient {name} sends here disagrees", style="bold red")
            sub = branch.add(label)
            if not again:
                stack.append((sub, inp))
    return root


def _dot(text: str) -> str:
    """Text inside a Graphviz double-quoted string: backslashes and quotes escaped, line breaks
    and other control characters spelled out."""
    return one_line(text).replace("\\", "\\\\").replace('"', '\\"')


def graph_dot(graph, values, statuses: dict | None = None, blame=()) -> str:
    """Graphviz source: leaves as boxes, ops as ellipses, edges along the forward pass; a blamed
    op with a thick red outline, the edge whose gradient disagrees thick and red."""
    colour = {"pass": "palegreen", "kink": "gold", "fail": "salmon", "undecided": "lightblue"}
    ops, edges = _blamed(blame)
    lines = ["digraph gradverify {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for name, node in graph.nodes.items():
        shape = "×".join(map(str, values[name].shape[1:])) or "scalar"
        label = f"{_dot(name)}\\n{_dot(node.op_label if node.op else node.kind)} {shape}"
        if name in ops:
            label += "\\nBLAMED: backward wrong"
        attrs = [f'label="{label}"', f'shape={"box" if node.op is None else "ellipse"}']
        if statuses and name in statuses:
            attrs.append(f'style=filled, fillcolor="{colour[statuses[name]]}"')
        if name in ops:
            attrs.append('color="red", penwidth=3')
        lines.append(f'  "{_dot(name)}" [{", ".join(attrs)}];')
    for name, node in graph.nodes.items():
        for inp in node.inputs:
            extra = ' [color="red", penwidth=3, label="gradient disagrees"]' if (inp, name) in edges else ""
            lines.append(f'  "{_dot(inp)}" -> "{_dot(name)}"{extra};')
    lines.append("}")
    return "\n".join(lines) + "\n"
