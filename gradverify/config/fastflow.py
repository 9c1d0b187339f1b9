"""Large inline arrays without the YAML event stream.

A flow list of plain numbers (`[[0.1, -2e-3], [4, 5]]`) of 2,000,000 numbers costs seconds as YAML
events (one Python object per number), and a 12,000,000-number one would be refused only after
10,000,000 of them. Such a list is found in the raw text instead (a run of the characters
`0-9 e E . + - , [ ]` and blanks, brackets balanced, at least MIN_CHARS long), its values counted
from the text (lists + numbers = `[`s + commas + 1 - empty lists), and read with the json module
only once the count is within the limit. JSON's numbers are a subset of YAML 1.2's, read the
same way: an int without `.`/`e`, else float(text); anything else (`010`, `.5`, `+1`, a trailing
comma, an integer of more than MAX_DIGITS digits) makes json refuse and the events decide.

In the text handed to the YAML parser the list becomes a plain scalar `_`, followed by the list's
line breaks (and by spaces up to its `]` when something follows it on its last line), so every
place after it stays where it was. The replacement is trusted only where the parser confirms
it: the builder must meet `_` as a scalar ending right at the list's `[` (so the `[` did start a
flow list there, not text inside a string, comment or block scalar), every such list in order,
and no other event may reach past that place. Otherwise the whole document is read again from
the events (yaml_reader), as if this module did not exist.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

PLACEHOLDER = "_"
#: lists shorter than this are left to the event stream (already fast enough there)
MIN_CHARS = 512
#: bytes.translate tables (far faster than indexing): 1 for the characters named, else 0
_ALLOWED = bytes(int(chr(b) in "0123456789eE.+-, \t\r\n[]") for b in range(256))
_IN_NUMBER = bytes(int(chr(b) in "0123456789eE.+-") for b in range(256))
_OPEN, _CLOSE = ord("["), ord("]")
_EMPTY = re.compile(r"\[[ \t\r\n]*\]")
#: what may stand before its `[` and after its `]` (anything else: the parser's own rules)
_AFTER = " \t\r\n,]}"
_BEFORE = " \t\r\n[,{:"
CHUNK = 1 << 20
MAX_DIGITS = 300  # as yaml_reader's fast numbers: longer ones take its careful path
_STRUCTURE = re.compile(r"[\[\],]")
_NOT_BLANK = re.compile(r"[^ \t\r\n]")


class Fallback(Exception):
    """The fast reading cannot be trusted here: read the original text the slow way."""


@dataclass
class Region:
    """One inline list: text[start:end] in the original, its `[` at (line, col), 1-based."""

    start: int
    end: int
    line: int
    col: int
    text: str
    values: int  # lists + numbers: what the event path would count
    depth: int  # how deeply its lists nest (1: a flat list)

    def parse(self) -> list:
        """The list as the YAML reader would make it; Fallback when the text is not of the
        strict form (json refuses it, or an integer is too long to be exact)."""
        raw = np.frombuffer(self.text.encode("ascii"), dtype=np.uint8)
        digit = (raw - 48) < 10  # '0'..'9' (uint8 wraps below '0')
        edges = np.flatnonzero(digit[1:] != digit[:-1]) + 1  # where a run of digits starts or ends
        edges = np.concatenate(([0] if digit[0] else [], edges, [len(raw)] if digit[-1] else []))
        if len(edges) and (edges[1::2] - edges[::2]).max() > MAX_DIGITS:
            raise Fallback  # an integer too long to be exact: the events say so, located
        try:
            value = json.loads(self.text)
        except (ValueError, RecursionError):
            raise Fallback from None
        if not isinstance(value, list):
            raise Fallback
        return value

    def place(self, offset: int) -> tuple[int, int]:
        """(line, column) of the character at `offset` in the list's text."""
        newlines = self.text.count("\n", 0, offset)
        if not newlines:
            return self.line, self.col + offset
        return self.line + newlines, offset - self.text.rfind("\n", 0, offset)

    def place_of_value(self, k: int) -> tuple[int, int]:
        """Where the k-th counted value (0-based, in reading order: a `[` or a number) starts;
        counted chunk by chunk, so that finding it never holds an offset per value."""
        raw = np.frombuffer(self.text.encode("ascii"), dtype=np.uint8)
        for lo in range(0, len(raw), CHUNK):
            # a number starts at a number character that does not follow one
            chunk = raw[max(lo - 1, 0):lo + CHUNK]
            number = np.frombuffer(chunk.tobytes().translate(_IN_NUMBER), dtype=bool)
            first = number[1:] & ~number[:-1] if lo else np.concatenate((number[:1], number[1:] & ~number[:-1]))
            events = (chunk[1:] if lo else chunk) == _OPEN
            events |= first
            n = int(np.count_nonzero(events))
            if k < n:
                return self.place(lo + int(np.flatnonzero(events)[k]))
            k -= n
        return self.place(len(raw) - 1)

    def place_of_item(self, indices: tuple) -> tuple[int, int] | None:
        """Where item indices[0] of the list, item indices[1] of that, … starts (None if absent)."""
        at = 0  # the `[` of the list being looked into
        for want in indices:
            if not isinstance(want, int) or self.text[at] != "[":
                return None
            start = self._item_start(at, want)
            if start is None:
                return None
            at = start
        return self.place(at)

    def _item_start(self, at: int, want: int) -> int | None:
        depth, item, after = 0, 0, at + 1
        for m in _STRUCTURE.finditer(self.text, at + 1):
            ch = m.group()
            if item == want and depth == 0:
                break
            if ch == "[":
                depth += 1
            elif ch == "]":
                if depth == 0:
                    return None
                depth -= 1
            elif depth == 0:
                item, after = item + 1, m.end()
        first = _NOT_BLANK.search(self.text, after)
        if first is None or self.text[first.start()] == "]":
            return None
        return first.start()


def _runs(raw: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of allowed characters at least MIN_CHARS long."""
    allowed = np.frombuffer(b"\0" + raw.tobytes().translate(_ALLOWED) + b"\0", dtype=np.int8)
    edges = np.flatnonzero(np.diff(allowed))
    starts, ends = edges[::2], edges[1::2]
    keep = ends - starts >= MIN_CHARS
    return list(zip(starts[keep].tolist(), ends[keep].tolist()))


def _regions(text: str, raw: np.ndarray, start: int, end: int) -> list[Region]:
    """The large balanced lists at the top level of a run of allowed characters raw[start:end]:
    found from the bracket depth at the brackets alone, so a run costs its length once however
    many lists it holds."""
    at = np.flatnonzero((raw[start:end] == _OPEN) | (raw[start:end] == _CLOSE))
    if not len(at):
        return []
    step = np.where(raw[start + at] == _OPEN, 1, -1)
    depth = np.cumsum(step)  # after each bracket
    below = np.flatnonzero(depth < 0)
    if len(below):  # a `]` closing a list opened before the run: what follows is not at its top
        at, step, depth = at[:below[0]], step[:below[0]], depth[:below[0]]
    zeros = np.flatnonzero(depth == 0)
    found = []
    for k in np.flatnonzero((step == 1) & (depth == 1)):  # a `[` at the top level
        z = np.searchsorted(zeros, k)
        if z == len(zeros):
            break
        first, last = start + int(at[k]), start + int(at[zeros[z]])
        if last + 1 - first >= MIN_CHARS:
            r = _region(text, first, last + 1, int(depth[k:zeros[z] + 1].max()))
            if r is not None:
                found.append(r)
    return found


def _region(text: str, start: int, end: int, depth: int) -> Region | None:
    if end < len(text) and text[end] not in _AFTER or start and text[start - 1] not in _BEFORE:
        return None  # the `_` must stand alone (`*a[…]` is not an alias `a_`)
    body = text[start:end]
    if body.count("\r") != body.count("\r\n"):
        return None  # a lone carriage return is a line break to YAML: keep places simple
    # values as the events count them: every list, and every number (in a list of k > 0 items
    # k - 1 commas; summed over the lists, numbers = commas + 1 - empty lists)
    empty = len(_EMPTY.findall(body))
    values = body.count("[") + body.count(",") + 1 - empty
    return Region(start, end, 0, 0, body, values, depth)


def _blank(text: str, r: Region) -> str:
    """The placeholder and what keeps every later place where it was: the list's line breaks,
    and, when something follows the list on its last line, spaces up to its `]`."""
    breaks = r.text.count("\n")
    newline = "\r\n" if breaks and r.text.count("\r\n") == breaks else "\n"
    eol = text.find("\n", r.end, r.end + 4096)
    rest = text[r.end:eol if eol >= 0 else r.end + 4096]
    pad = "" if not rest.strip() else " " * (len(r.text) - 1 - (r.text.rfind("\n") + 1 if breaks else 0))
    return PLACEHOLDER + newline * breaks + pad


def prescan(text: str) -> tuple[str, dict[tuple[int, int], Region]]:
    """(the text with each large inline list replaced, those lists by the (line, col) of their
    `[`). Text without such lists comes back as it is."""
    regions: dict[tuple[int, int], Region] = {}
    if len(text) < MIN_CHARS:
        return text, regions
    # one byte per character (any other character is `?`, not allowed), so offsets agree
    raw = np.frombuffer(text.encode("latin-1", errors="replace"), dtype=np.uint8)
    parts: list[str] = []
    done = counted = 0
    line = 1  # the line of text[counted]
    for start, end in _runs(raw):
        for r in _regions(text, raw, start, end):
            line += text.count("\n", counted, r.start)
            counted = r.start
            r.line, r.col = line, r.start - text.rfind("\n", 0, r.start)
            regions[(r.line, r.col)] = r
            parts += [text[done:r.start], _blank(text, r)]
            done = r.end
    if not regions:
        return text, regions
    parts.append(text[done:])
    return "".join(parts), regions


#: characters that continue a number-like token (a key such as w1 is a token too: keys count)
_IN_TOKEN = bytes(int(chr(b).isalnum() or chr(b) in "_.+-") for b in range(256))
_DIGIT = bytes(int(chr(b).isdigit()) for b in range(256))


def numbers_beyond(text: str, budget: int) -> int | None:
    """The character offset of the first number-like token past `budget` tokens, or None. A
    token is a run of letters, digits and `_ . + -` holding a digit: every number of the YAML is
    one (a block list's `- 1.5` as much as a flow list's), so a text with more than `budget` of
    them holds more values than the reader allows, and is refused before any YAML is parsed (a
    96 MB block list of 12,000,000 numbers: in a second, not after 70 s and 3 GB). Tokens in
    comments count too: only a text that is almost all numbers comes near the budget."""
    if len(text) <= 2 * budget:  # each value takes a character and a separator at least
        return None
    raw = text.encode("utf-8", "surrogatepass")
    inside = np.frombuffer(raw.translate(_IN_TOKEN), np.uint8)
    starts = np.flatnonzero(np.diff(inside, prepend=np.uint8(0)) == 1)  # 0 → 1: a token begins
    if starts.size <= budget:
        return None
    # a token holds a digit when the largest digit flag from its start to the next start is 1
    # (every digit lies inside a token, so the gap after it adds none)
    numeric = starts[np.maximum.reduceat(np.frombuffer(raw.translate(_DIGIT), np.uint8), starts) > 0]
    if numeric.size <= budget:
        return None
    return len(raw[: int(numeric[budget])].decode("utf-8", "surrogatepass"))
