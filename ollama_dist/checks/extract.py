"""Pieces of an answer's text, found before any parsing: Markdown code fences,
top-level bracket spans, whether an answer is cut off inside JSON, json_repair's
reading of near-JSON when it is believable (never of a cut-off one), and short
excerpts for a reason.

Pure: no I/O, no state. ``validate`` tries these in order (see its ``Fallback``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

OPENER = re.compile(r"[{\[]")
_CLOSER = {"{": "}", "[": "]"}
_MAX_SPANS = 32  # bracket positions tried by the balanced scan, so it stays linear
EXCERPT = 60


# --- fences -------------------------------------------------------------------------


@dataclass(frozen=True)
class Fence:
    tag: str  # first word of the info string, lower case ("" if none)
    body: str
    first: int  # line index of the opening fence
    last: int  # line index of the closing fence (the last line if unclosed)


_OPEN_FENCE = re.compile(r"^( *)(`{3,}|~{3,})[ \t]*(.*?)[ \t]*$")


def fences(text: str, max_indent: int = 3) -> list[Fence]:
    """Markdown code fences in order. A closing fence uses the same character, at least
    as many, indented no deeper than the opening; an unclosed fence runs to the end."""
    raw = text.split("\n")  # not splitlines(), which also splits on \u2028 and friends
    lines = [line.rstrip("\r") for line in raw]  # for matching; bodies keep their \r
    fences: list[Fence] = []
    index = 0
    while index < len(lines):
        opened = _OPEN_FENCE.match(lines[index])
        if not opened or len(opened[1]) > max_indent or (opened[2][0] == "`" and "`" in opened[3]):
            index += 1
            continue
        indent, marker, info = len(opened[1]), opened[2], opened[3].split()
        close = re.compile(rf" {{0,{indent}}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*")
        end = next((j for j in range(index + 1, len(raw)) if close.fullmatch(lines[j])), len(raw))
        body = "\n".join(_unindent(line, indent) for line in raw[index + 1 : end])
        tag = info[0].lower() if info else ""
        fences.append(Fence(tag, body, index, min(end, len(lines) - 1)))
        index = end + 1
    return fences


def _unindent(line: str, indent: int) -> str:
    return line[min(indent, len(line) - len(line.lstrip(" "))) :]


def wrapping_fence(text: str) -> Fence | None:
    """The one fence that spans all of ``text`` (already stripped), if there is one."""
    found = fences(text)
    if len(found) == 1 and found[0].first == 0 and found[0].last == text.count("\n"):
        return found[0]
    return None


# --- bracket spans ------------------------------------------------------------------


def balanced_spans(text: str) -> Iterator[str]:
    """Top-level ``{...}`` / ``[...]`` spans in order; brackets in strings are skipped."""
    position = 0
    for _ in range(_MAX_SPANS):
        found = OPENER.search(text, position)
        if found is None:
            return
        end = _span_end(text, found.start())
        if end is not None:
            yield text[found.start() : end]
        position = found.start() + 1 if end is None else end


def _span_end(text: str, start: int) -> int | None:
    """The index after the bracket that closes the one at ``start``, or None."""
    end, _ = _scan(text, start)
    return end


def open_at_end(text: str) -> bool:
    """Whether ``text`` (from its first bracket) ends inside a string or an unclosed bracket: cut off."""
    found = OPENER.search(text)
    return found is not None and _scan(text, found.start())[1]


def _scan(text: str, start: int) -> tuple[int | None, bool]:
    """(the index after the bracket that closes the one at ``start`` or None, whether the text
    ends inside a string or an open bracket)."""
    stack: list[str] = []
    quote, escaped = "", False
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":  # single quotes too: near-JSON uses them
            quote = char
        elif char in _CLOSER:
            stack.append(_CLOSER[char])
        elif char in "}]":
            if not stack or char != stack.pop():
                return None, False
            if not stack:
                return index + 1, False
    return None, bool(quote or stack)


# --- near-JSON ----------------------------------------------------------------------


def repair(source: str) -> dict[str, Any] | list[Any] | None:
    """json_repair's reading of ``source`` (which opens with a bracket), if believable.

    json_repair never fails: prose becomes "" or {}, "{ prose }" a list of strings,
    several objects one list, "[the docs]" ["the docs"]. A repair counts only as a
    non-empty container of the kind the source opens with, without NaN/Infinity, and
    with more than bare words: a quote in the source, a colon in an object's source,
    or a leaf that is not a string. Never for a source that ends inside a string or an
    open bracket: closing a cut-off answer invents its end (`"gender": "` becomes `""`).
    """
    if open_at_end(source):
        return None
    import json_repair

    try:
        value = json_repair.repair_json(source, return_objects=True, skip_json_loads=True)
        json.dumps(value, allow_nan=False)
    except Exception:  # noqa: BLE001 - heuristic; deep nesting raises ValueError, RecursionError
        return None
    is_object = source[0] == "{"
    if not isinstance(value, dict if is_object else list) or not value:
        return None
    syntax = r"[\"':]" if is_object else r"[\"']"
    if not re.search(syntax, source) and all(isinstance(leaf, str) for leaf in _leaves(value)):
        return None
    return value


def _leaves(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list)):
            stack.extend(node.values() if isinstance(node, dict) else node)
        else:
            yield node


# --- excerpts -----------------------------------------------------------------------


def excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= EXCERPT else flat[: EXCERPT - 3] + "...")


def short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."
