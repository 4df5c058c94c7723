"""Table cells that read at any width: ids and paths are never broken mid-word, and a long reason
takes one line unless all of it was asked for (`--verbose`).

`Fit` holds a cell's lines. Each is shown at whatever width the table gives the column:

- `tail`: one line; when too wide it loses its middle, keeping a `task:` prefix and the end
  (`extract-contacts:…/amara.txt`), so an id keeps its task and an id or a path its file name;
- `head`: one line; when too wide it loses its end (`no answer: the server…`), so a reason keeps its
  first words;
- `wrap`: all of it, broken at spaces and after `/`, `:` and `-` (a word longer than the line, and
  only such a word, is cut where it must be).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.text import Text

Cut = Literal["tail", "head", "wrap"]
ELLIPSIS = "…"
MIN_WIDTH = 12  # a column may shrink this far before the others must
TAIL_MIN = 8  # what must stay of an id's end beside its task name
_SPACES = re.compile(r"\s+")
_PIECES = re.compile(r"[^\s/:-]*[/:-]+|[^\s/:-]+|\s+")  # words; path steps and parts of a name, each
# with the separator after it


def money(x: float) -> str:
    return f"${x:,.4f}" if x < 1 else f"${x:,.2f}"


@dataclass(frozen=True)
class Line:
    text: str
    cut: Cut = "tail"
    style: str = ""
    sizes: bool = True  # False: it widens its column only up to a fifth of the terminal (a detail)


class Fit:
    """A table cell of one or more lines, each fitted to the column's width (see the module)."""

    def __init__(self, *lines: Line) -> None:
        # one line each: a newline or a tab in a reason must not make the cell taller
        self.lines = [Line(_SPACES.sub(" ", ln.text).strip(), ln.cut, ln.style, ln.sizes) for ln in lines if ln.text]

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        detail = console.width // 5  # the terminal, not this pass of the table's layout
        widest = max((cell_len(ln.text) if ln.sizes else min(cell_len(ln.text), detail) for ln in self.lines),
                     default=0)
        return Measurement(min(widest, MIN_WIDTH), widest).clamp(max_width=options.max_width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(options.max_width, 1)
        for line in self.lines:
            shown = wrap(line.text, width) if line.cut == "wrap" else [fit(line.text, width, line.cut)]
            for part in shown:
                yield Text(part, style=line.style, no_wrap=True, overflow="crop")


def fit(text: str, width: int, cut: Cut) -> str:
    """`text` in one line of at most `width` cells, cut as `cut` says (never wrapped)."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    if cut == "head":
        kept = set_cell_size(text, width - 1)
        space = kept.rfind(" ")
        at_word_end = text[len(kept)].isspace()
        if not at_word_end and space >= width // 3:  # end at a word unless that loses most of the line
            kept = kept[:space]
        return kept.rstrip() + ELLIPSIS
    colon = text.find(":")
    prefix = text[: colon + 1] if colon > 0 else ""
    rest = text[len(prefix):]
    room = width - cell_len(prefix) - 1
    if "/" not in text:  # a name, or a task and a hash: the task stays, the hash may be cut
        if prefix and room >= TAIL_MIN:
            return prefix + ELLIPSIS + _last_cells(rest, room)
        return fit(text, width, "head")
    if prefix and room >= TAIL_MIN and (tail := _from_step(rest, room)):
        return prefix + ELLIPSIS + tail  # extract-contacts:…/amara.txt
    tail = _from_step(text, width - 1)
    return ELLIPSIS + (tail or _from_part(text, width - 1))


def _from_part(text: str, width: int) -> str:
    """The end of a file name too long for `width`, from a part of it (after `-`, `_` or `.`) when one fits."""
    tail = _last_cells(text, width)
    if len(tail) == len(text) or text[len(text) - len(tail) - 1] in "-_.":
        return tail  # it already starts at a part
    cut = next((i + 1 for i, char in enumerate(tail) if char in "-_."), 0)
    return tail[cut:] if 0 < cut < len(tail) else tail


def _from_step(text: str, width: int) -> str | None:
    """The longest end of a path that fits `width` and starts at a `/` (the file name at least)."""
    tail = _last_cells(text, width)
    if len(tail) == len(text) or text[len(text) - len(tail) - 1] == "/":
        return tail  # it already starts at a step
    step = tail.find("/")
    return tail[step:] if step >= 0 else None


def _last_cells(text: str, width: int) -> str:
    kept: list[str] = []
    used = 0
    for char in reversed(text):
        used += cell_len(char)
        if used > width:
            break
        kept.append(char)
    return "".join(reversed(kept))


def wrap(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` cells, broken at spaces and after `/`, `:` and `-`."""
    lines: list[str] = []
    current = ""
    for piece in _PIECES.findall(text):
        if cell_len(current + piece) <= width:
            current += piece
            continue
        if current.strip():
            lines.append(current.rstrip())
        current = "" if piece.isspace() else piece
        while cell_len(current) > width:  # a word longer than the line: the one place it is cut
            head = set_cell_size(current, width)
            lines.append(head)
            current = current[len(head):]
    if current.strip():
        lines.append(current.rstrip())
    return lines or [""]
