"""Messages for MCP callers: what the CLI's messages say with flags, said with the MCP tools' arguments.

The loader, the report and the dispatcher word their errors and hints for the command line
(`--root`, `--since`, `--allow-outside-root`, `--force`). An MCP caller has no flags: it
has the tools' arguments (`path`, `root`, `since`), and no way to read outside the project
or to overwrite an edited output. `for_caller` rewrites one message; every phrase it
rewrites is pinned by a test to a message the package still says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ollama_dist.tasks.inputs import OUTSIDE_HINT

PROJECT = "the project directory (with `path`, inside `root`)"

# (what the CLI says, what an MCP caller reads), most specific first
REWRITES: tuple[tuple[str, str], ...] = (
    (OUTSIDE_HINT, f"inputs stay inside {PROJECT}; an MCP caller cannot read outside it"),
    ("write templates must stay inside --root", f"write templates must stay inside {PROJECT}"),
    ("run with --force to answer again and overwrite it",
     "delete the file, or restore what ollama-dist wrote, to have it answered again"),
    (" (or --all for the whole ledger)", ""),
    ("cannot read --since", "argument `since`: cannot read"),
    ("--since", "argument `since`:"),
    ("--root", "the run's root (`root`)"),
)
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")


def for_caller(text: str) -> str:
    """`text` with the CLI's flags replaced by what an MCP caller can do."""
    for said, meant in REWRITES:
        text = text.replace(said, meant)
    return text


def flags(text: str) -> list[str]:
    """The CLI flags still named in `text` (none should reach an MCP caller)."""
    return _FLAG.findall(text)


def reworded(data: Any, keys: Sequence[str] = ("reason", "error", "notes", "instructions")) -> Any:
    """`data` (a tool's JSON) with `for_caller` applied to the message fields, at any depth."""
    if isinstance(data, Mapping):
        return {k: (_strings(v) if k in keys else reworded(v, keys)) for k, v in data.items()}
    if isinstance(data, list):
        return [reworded(v, keys) for v in data]
    return data


def _strings(value: Any) -> Any:
    if isinstance(value, str):
        return for_caller(value)
    if isinstance(value, list):
        return [for_caller(v) if isinstance(v, str) else v for v in value]
    return value
