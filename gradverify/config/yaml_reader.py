"""Safe YAML with positions. The only module in gradverify that imports yaml.

The YAML is composed with PyYAML's safe loader into a node tree, then turned into Python data by
hand so that every value keeps its line and column, aliases are expanded under a budget ("billion
laughs" stops early), and no tag can construct anything but plain scalars, lists and mappings.
"""
from __future__ import annotations

from typing import Any

import yaml

from ..errors import ConfigError, KeyPath
from .model import Source

MAX_DEPTH = 32
#: values the YAML may expand to beyond the array elements allowed (keys, names, small settings)
BUDGET_SLACK = 100_000

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: same rules, faster


def read_yaml(text: str, source: Source, max_elements: int) -> Any:
    """Parse YAML text safely into plain data, filling `source.positions`."""
    try:
        _check_depth(text, source)
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = (e.problem or e.context or "invalid YAML").strip()
        raise ConfigError(f"invalid YAML: {problem}", file=source.file,
                          line=mark.line + 1 if mark else None,
                          col=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {str(e).splitlines()[0]}", file=source.file) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", file=source.file) from None
    if node is None:
        raise ConfigError("the config is empty: expected a mapping with `layers:` or `graph:`",
                          file=source.file, line=1)
    budget = max_elements + BUDGET_SLACK
    if _expanded_size(node, {}, budget) > budget:
        raise ConfigError(f"the YAML expands to more than {budget:,} values (aliases repeated too "
                          "often?); raise --max-elements if this is intended", file=source.file,
                          line=1)
    return _Reader(source, budget).read(node)


def _check_depth(text: str, source: Source) -> None:
    """Refuse nesting deeper than MAX_DEPTH from the event stream, before building any tree
    (PyYAML's composer recurses once per level)."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", file=source.file,
                                  line=mark.line + 1, col=mark.column + 1)
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def _expanded_size(node: yaml.Node, memo: dict[int, int], budget: int) -> int:
    """How many values the node tree holds once every alias is expanded, counted without
    expanding (an alias is the same node object, so each is counted once and multiplied)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = budget + 1  # a node met again while being counted: treat as too large
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            total += _expanded_size(item, memo, budget)
            if total > budget:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, memo, budget) + _expanded_size(v, memo, budget)
            if total > budget:
                break
    memo[key] = min(total, budget + 1)
    return memo[key]


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Reader:
    """Turns a composed YAML node tree into plain data, recording each path's position. Aliases
    are expanded, so the depth is checked again here (an alias can nest an anchored tree deeper
    than the text shows)."""

    _SCALAR_TAGS = {"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null")}

    def __init__(self, source: Source, budget: int):
        self.source = source
        self.budget = budget
        self.seen = 0
        self.constructor = yaml.SafeLoader("")

    def read(self, node: yaml.Node, path: KeyPath = (), depth: int = 0) -> Any:
        self.seen += 1
        if self.seen > self.budget:
            raise self.source.error(
                f"the YAML expands to more than {self.budget:,} values (aliases repeated too often?); "
                "raise --max-elements if this is intended", path)
        if depth > MAX_DEPTH:
            raise self.source.error(f"nested more than {MAX_DEPTH} levels deep", path)
        self.source.positions.setdefault(path, _mark(node))
        if isinstance(node, yaml.ScalarNode):
            if node.tag not in self._SCALAR_TAGS:
                raise self.source.error(f"the YAML tag {node.tag!r} is not allowed "
                                        "(only plain values, lists and mappings)", path)
            return self.constructor.construct_object(node)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise self.source.error(f"the YAML tag {node.tag!r} is not allowed", path)
            return [self.read(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        raise self.source.error("unreadable YAML node", path)  # pragma: no cover

    def _mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> dict[str, Any]:
        if node.tag != "tag:yaml.org,2002:map":
            raise self.source.error(f"the YAML tag {node.tag!r} is not allowed", path)
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode) or knode.tag not in self._SCALAR_TAGS:
                raise self.source.error("mapping keys must be plain names", path)
            key = str(self.constructor.construct_object(knode))
            self.source.positions[path + (key,)] = _mark(knode)
            if key in out:
                raise self.source.error("this key is given twice", path + (key,))
            out[key] = self.read(vnode, path + (key,), depth + 1)
        return out
