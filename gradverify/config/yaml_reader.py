"""Safe YAML with positions. The only module in gradverify that imports yaml.

The YAML is read from PyYAML's event stream (libyaml's parser when present) straight into plain
lists, mappings and scalars: no node tree is built, so every value is counted as it is read and
the reading stops at the budget (a huge inline array, or a "billion laughs" of aliases, is refused
before it is held in memory), nesting is checked as it opens, and no tag can construct anything
but plain scalars, lists and mappings. Every value keeps its line and column: a list's items in
two compact arrays.

Scalars mean what the YAML 1.2 core schema says, not PyYAML's YAML 1.1 rules:

    1e-8, 5e-2, 1E+3, .5, -1.   floats (YAML 1.1 reads `1e-8` as text, so json.dump output failed)
    .inf, -.Inf, .nan           floats
    010                         the integer 10 (YAML 1.1: octal 8)
    0o17, 0x1F                  octal 15, hexadecimal 31
    true, false (True, TRUE …)  booleans; yes/no/on/off/y/n are text, as in YAML 1.2
    null, ~, (empty)            nothing
    190:20:30, 1_000            text (YAML 1.1: sexagesimal 685230, and 1000)
    <<                          a merge key: refused by name

An explicit tag (`!!int 3`, `!!float 1`, `!!str 12`, `!!bool true`, `!!null ~`) must fit its
text; no other tag is allowed.
"""
from __future__ import annotations

import math
import re
from array import array
from typing import Any

import yaml
import yaml.resolver

from ..errors import ConfigError, KeyPath, key_str
from . import fastflow
from .model import Source
from .places import Positions

MAX_DEPTH = 32
#: values the YAML may hold beyond the array elements allowed (keys, names, small settings)
BUDGET_SLACK = 100_000

_Scalar, _Alias = yaml.ScalarEvent, yaml.AliasEvent
_SeqStart, _MapStart = yaml.SequenceStartEvent, yaml.MappingStartEvent
_SeqEnd, _MapEnd = yaml.SequenceEndEvent, yaml.MappingEndEvent
_NO_KEY = object()

TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, MERGE = (TAG + t for t in ("str", "int", "float", "bool", "null", "merge"))

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
#: a plain decimal integer (group 1 unset) or float (group 1 set): the fast path's numbers
_PLAIN_NUMBER = re.compile(r"[-+]?[0-9]{1,300}\Z|((?=[^.eE]*[.eE])[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)"
                           r"(?:[eE][-+]?[0-9]+)?)\Z").match
#: the most digits an integer may have: 10**309 is beyond the range of a 64-bit float
MAX_DIGITS = 309


class Resolver12(yaml.resolver.BaseResolver):
    """The YAML 1.2 core schema's implicit tags for plain scalars (and `<<`, to refuse it by name)."""


for _tag, _regexp, _first in (
        (BOOL, _BOOL, "tTfF"), (NULL, _NULL, ["~", "n", "N", ""]),
        (INT, _INT, "-+0123456789"), (FLOAT, _FLOAT, "-+0123456789."), (MERGE, re.compile(r"^<<$"), "<")):
    Resolver12.add_implicit_resolver(_tag, _regexp, list(_first))


if yaml.__with_libyaml__:  # libyaml: same events, faster
    import yaml.cyaml

    class Loader12(yaml.cyaml.CParser):
        """The parser whose events the reader turns into data (scalars resolved by Resolver12)."""
else:  # pragma: no cover
    class Loader12(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str):
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


_RESOLVER = Resolver12()


def resolve(value: str, implicit: tuple[bool, bool], tag: str | None) -> str:
    """The tag of a scalar event: its explicit tag, else by the YAML 1.2 core schema."""
    if tag is None or tag == "!":
        return _RESOLVER.resolve(yaml.ScalarNode, value, implicit)
    return tag


def construct(tag: str, value: str) -> Any:
    """The Python value of a scalar with this (resolved) tag; ValueError with the reason."""
    if tag == STR:
        return value
    if tag == FLOAT:
        return _float(value)
    if tag == INT:
        return _int(value)
    if tag == BOOL:
        if not _BOOL.match(value):
            raise ValueError(f"!!bool {value[:40]!r} is not true or false")
        return value[0] in "tT"
    if tag == NULL:
        if not _NULL.match(value):
            raise ValueError(f"!!null {value[:40]!r} is not null or ~")
        return None
    if tag == MERGE:
        raise ValueError("merge keys (<<) are not supported: write the keys out")
    raise ValueError(f"the YAML tag {tag!r} is not allowed (only plain values, lists and mappings)")


def _int(value: str) -> int:
    if not _INT.match(value):
        raise ValueError(f"!!int {value[:40]!r} is not an integer")
    if len(value) > MAX_DIGITS + 1:
        raise ValueError(f"the integer {value[:20]}… is too large (beyond the range of a 64-bit float)")
    if value.startswith(("0o", "0x")):
        n = int(value[2:], 8 if value[1] == "o" else 16)
    else:
        n = int(value, 10)
    if abs(n) > 1.7976931348623157e308:
        raise ValueError(f"the integer {value[:20]}… is too large (beyond the range of a 64-bit float)")
    return n


def _float(value: str) -> float:
    if _INT.match(value):  # `!!float 1`, `!!float 0x1F`
        return float(_int(value))
    if not _FLOAT.match(value):
        raise ValueError(f"!!float {value[:40]!r} is not a number")
    low = value.lower()
    if low.endswith("inf"):
        return -math.inf if low.startswith("-") else math.inf
    if low.endswith("nan"):
        return math.nan
    return float(value)


def read_yaml(text: str, source: Source, max_elements: int) -> Any:
    """Parse YAML text safely into plain data, filling `source.positions`. Large inline lists of
    numbers are read from the raw text (fastflow); where that cannot be trusted, all is read again
    from the events."""
    fast_text, regions = fastflow.prescan(text)
    if regions:
        try:
            return _read(fast_text, source, max_elements, regions)
        except fastflow.Fallback:
            pass
    # before the events: a text with more numbers than the budget (a huge block list) is refused
    # from a count of its tokens, not after building millions of objects
    over = fastflow.numbers_beyond(text, max_elements + BUDGET_SLACK)
    if over is not None:
        raise _too_many_numbers(text, over, source, max_elements)
    return _read(text, source, max_elements, {})


_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)[ \t]*:", re.M)


def _too_many_numbers(text: str, offset: int, source: Source, max_elements: int) -> ConfigError:
    """The error of a text with too many numbers, at the first one over, named by the top-level
    key above it (as the reader's own count says it)."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    keys = [m.group(1) for m in _TOP_KEY.finditer(text, 0, offset)]
    return ConfigError(f"the YAML holds more than {max_elements + BUDGET_SLACK:,} values (the limit of "
                       f"{max_elements:,} array elements, plus {BUDGET_SLACK:,} for keys and settings); raise "
                       "--max-elements if this is intended", keys[-1] if keys else None,
                       file=source.file, line=line, col=col)


def _read(text: str, source: Source, max_elements: int, regions: dict) -> Any:
    source.positions = Positions()
    builder = _Builder(source, max_elements + BUDGET_SLACK, max_elements, regions)
    try:
        builder.run(yaml.parse(text, Loader=Loader12))
        builder.all_regions_read()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        builder.regions_before(mark.line + 1 if mark else None, mark.column + 1 if mark else None)
        problem = (e.problem or e.context or "invalid YAML").strip()
        raise ConfigError(f"invalid YAML: {problem}", file=source.file,
                          line=mark.line + 1 if mark else None,
                          col=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as e:
        builder.regions_before(None, None)
        raise ConfigError(f"invalid YAML: {str(e).splitlines()[0]}", file=source.file) from None
    if builder.root is _NO_KEY:
        raise ConfigError("the config is empty: expected a mapping with `layers:` or `graph:`",
                          file=source.file, line=1)
    return builder.root


class _Frame:
    """A list or mapping being read: its path, and (mapping) the key whose value comes next."""

    __slots__ = ("value", "path", "key", "lines", "cols", "count0", "height", "anchor", "mark")

    def __init__(self, value: Any, path: KeyPath, count0: int, ev: Any):
        self.value, self.path, self.count0, self.anchor = value, path, count0, ev.anchor
        self.mark = (ev.start_mark.line + 1, ev.start_mark.column + 1)
        self.key: Any = _NO_KEY
        self.height = 1
        self.lines: array = array("i")
        self.cols: array = array("i")


class _Builder:
    """Plain data from the events of one YAML document, counting values against the budget."""

    def __init__(self, source: Source, budget: int, max_elements: int, regions: dict):
        self.source, self.budget, self.max_elements = source, budget, max_elements
        self.regions: dict[tuple[int, int], fastflow.Region] = regions  # the lists read fast
        self.unread = sorted(regions)  # their places, in the order the parser must meet them
        self.positions: Positions = source.positions  # type: ignore[assignment]
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int, int]] = {}  # name -> (value, values in it, height)
        self.count = 0
        self.root: Any = _NO_KEY
        self.documents = 0

    def run(self, events: Any) -> None:
        it = iter(events)
        ev = next(it, None)
        while ev is not None:
            cls = ev.__class__
            if self.unread and (ev.end_mark.line + 1, ev.end_mark.column) >= self.unread[0] \
                    and not (cls is _Scalar and ev.value == fastflow.PLACEHOLDER):
                raise fastflow.Fallback  # the next fast list's place was passed: it is not a list
            if cls is _SeqStart:
                self._open(ev, [])
                ev = self._numbers(it)  # the plain numbers that open the list, quickly
                continue
            if cls is _Scalar and self.unread and ev.value == fastflow.PLACEHOLDER:
                self._fast_list(ev)
            elif cls is _Scalar:
                self.count += 1
                if self.count > self.budget:
                    raise self._too_many(ev)
                value = self._scalar(ev)
                if ev.anchor is not None:
                    self.anchors[ev.anchor] = (value, 1, 0)
                self._add(value, ev, 0)
            elif cls is _MapStart:
                self._open(ev, {})
            elif cls is _SeqEnd or cls is _MapEnd:
                self._close(self.stack.pop(), ev)
            elif cls is _Alias:
                self._alias(ev)
            elif cls is yaml.DocumentStartEvent:
                self.documents += 1
                if self.documents > 1:
                    raise self._error_at(ev, "expected one YAML document, found a second (---)")
            ev = next(it, None)

    def _numbers(self, it: Any) -> Any:
        """The fast path of an inline array: plain (untagged, unanchored) numbers in the list just
        opened go straight into it, with their places, without the resolver. Returns the first
        event that is not one (it and all after it take the general path), None at the end."""
        top = self.stack[-1]
        append, lines, cols = top.value.append, top.lines.append, top.cols.append
        count, budget = self.count, self.budget
        for ev in it:
            if ev.__class__ is not _Scalar or ev.tag is not None or ev.anchor is not None \
                    or not ev.implicit[0]:
                self.count = count
                return ev
            m = _PLAIN_NUMBER(ev.value)
            if m is None:
                self.count = count
                return ev
            count += 1
            if count > budget:
                self.count = count
                raise self._too_many(ev)
            append(float(ev.value) if m.lastindex else int(ev.value))
            mark = ev.start_mark
            lines(mark.line + 1)
            cols(mark.column + 1)
        self.count = count
        return None

    def _fast_list(self, ev: Any) -> None:
        """A list read by fastflow, met where its `[` was: counted, then parsed and added."""
        place = (ev.end_mark.line + 1, ev.end_mark.column)  # its `_` (after any &anchor or !tag)
        if place != self.unread[0] or ev.tag not in (None, "!", TAG + "seq"):
            raise fastflow.Fallback  # not the list expected here: read everything from the events
        del self.unread[0]
        region = self.regions[place]
        if self.count + region.values > self.budget:
            raise self._too_many(ev, at=region.place_of_value(self.budget - self.count))
        if len(self.stack) + region.depth > MAX_DEPTH:
            raise fastflow.Fallback  # the events say exactly where
        value = region.parse()
        self.count += region.values
        if ev.anchor is not None:
            self.anchors[ev.anchor] = (value, region.values, region.depth)
        if self.stack:
            self.stack[-1].height = max(self.stack[-1].height, region.depth + 1)
        self.positions.fast[self._here()] = region
        self._add(value, ev, region.depth)

    def all_regions_read(self) -> None:
        if self.unread:
            raise fastflow.Fallback

    def regions_before(self, line: int | None, col: int | None) -> None:
        """An error at (line, col) stands only if every fast list before it was met as expected."""
        if self.unread and (line is None or self.unread[0] <= (line, col or 0)):
            raise fastflow.Fallback

    def _error_at(self, ev: Any, message: str) -> ConfigError:
        mark = ev.start_mark
        return ConfigError(message, file=self.source.file, line=mark.line + 1, col=mark.column + 1)

    def _here(self) -> KeyPath:
        """The path of the value being read (its container's, and the mapping key's)."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            return top.path + (len(top.value),)
        if top.key is not _NO_KEY:
            return top.path + (top.key,)
        return top.path

    def _too_many(self, ev: Any, aliases: bool = False, at: tuple[int, int] | None = None) -> ConfigError:
        why = ("aliases repeated too often?" if aliases else
               f"the limit of {self.max_elements:,} array elements, plus {BUDGET_SLACK:,} for "
               "keys and settings")
        verb = "expands to" if aliases else "holds"
        line, col = at or (ev.start_mark.line + 1, ev.start_mark.column + 1)
        # at the value that goes over, named by its top-level key
        return ConfigError(f"the YAML {verb} more than {self.budget:,} values ({why}); raise "
                           "--max-elements if this is intended", key_str(self._here()[:1]) or None,
                           file=self.source.file, line=line, col=col)

    def _fail(self, message: str, ev: Any) -> ConfigError:
        """An error about the value at this event: located at its key when it is a mapping's
        value (as every error about a keyed value is), else at the value itself."""
        path = self._here()
        top = self.stack[-1] if self.stack else None
        if top is not None and isinstance(top.value, dict) and top.key is not _NO_KEY:
            return self.source.error(message, path)
        mark = ev.start_mark
        return ConfigError(message, key_str(path) or None, file=self.source.file, line=mark.line + 1,
                           col=mark.column + 1)

    def _scalar(self, ev: Any) -> Any:
        tag = resolve(ev.value, ev.implicit, ev.tag)
        try:
            return construct(tag, ev.value)
        except ValueError as e:
            raise self._fail(str(e), ev) from None

    def _open(self, ev: Any, value: Any) -> None:
        self.count += 1
        if self.count > self.budget:
            raise self._too_many(ev)
        if ev.tag not in (None, "!") and ev.tag != ("tag:yaml.org,2002:seq" if isinstance(value, list)
                                                   else "tag:yaml.org,2002:map"):
            raise self._fail(f"the YAML tag {ev.tag!r} is not allowed (only plain values, lists and "
                             "mappings)", ev)
        if len(self.stack) >= MAX_DEPTH:
            raise self._error_at(ev, f"nested more than {MAX_DEPTH} levels deep")
        self.stack.append(_Frame(value, self._child_path(ev), self.count, ev))

    def _child_path(self, ev: Any) -> KeyPath:
        """The path of a list or mapping that opens here; a list or mapping as a key is refused."""
        if not self.stack:
            self.positions[()] = (ev.start_mark.line + 1, ev.start_mark.column + 1)
            return ()
        top = self.stack[-1]
        if isinstance(top.value, dict):
            if top.key is _NO_KEY:
                raise self.source.error("mapping keys must be plain names", top.path)
            return top.path + (top.key,)
        return top.path + (len(top.value),)

    def _close(self, frame: _Frame, ev: Any) -> None:
        if isinstance(frame.value, list) and frame.lines:
            self.positions.lists[frame.path] = (frame.lines, frame.cols)
        if frame.anchor is not None:
            self.anchors[frame.anchor] = (frame.value, self.count - frame.count0 + 1, frame.height)
        if self.stack:
            self.stack[-1].height = max(self.stack[-1].height, frame.height + 1)
        self._add(frame.value, ev, frame.height, opened=frame)

    def _alias(self, ev: Any) -> None:
        if ev.anchor not in self.anchors:
            raise self._fail(f"the alias *{ev.anchor} names no anchor before it (or names the list or "
                             "mapping it is inside)", ev)
        value, size, height = self.anchors[ev.anchor]
        self.count += size
        if self.count > self.budget:
            raise self._too_many(ev, aliases=True)
        if len(self.stack) + height > MAX_DEPTH:
            raise self._error_at(ev, f"nested more than {MAX_DEPTH} levels deep (through the alias "
                                 f"*{ev.anchor})")
        if self.stack:
            self.stack[-1].height = max(self.stack[-1].height, height + 1)
        # the anchored value itself, not a copy: validation never changes the data it reads, and
        # copying would cost as much as the expansion the budget allows (seconds for a "billion laughs")
        self._add(value, ev, height)

    def _add(self, value: Any, ev: Any, height: int, opened: _Frame | None = None) -> None:
        """Put a finished value into the list or mapping around it (or make it the document)."""
        if not self.stack:
            if opened is None:
                self.positions.setdefault((), (ev.start_mark.line + 1, ev.start_mark.column + 1))
            self.root = value
            return
        top = self.stack[-1]
        if isinstance(top.value, list):
            if opened is None:
                top.lines.append(ev.start_mark.line + 1)
                top.cols.append(ev.start_mark.column + 1)
            else:
                top.lines.append(opened.mark[0])
                top.cols.append(opened.mark[1])
            top.value.append(value)
        elif top.key is _NO_KEY:
            self._key(top, value, ev)
        else:
            top.value[top.key] = value
            top.key = _NO_KEY

    def _key(self, top: _Frame, value: Any, ev: Any) -> None:
        if isinstance(value, (list, dict)):
            raise self.source.error("mapping keys must be plain names", top.path)
        key = str(value)
        path = top.path + (key,)
        self.positions[path] = (ev.start_mark.line + 1, ev.start_mark.column + 1)
        if key in top.value:
            raise self.source.error("this key is given twice", path)
        top.key = key
