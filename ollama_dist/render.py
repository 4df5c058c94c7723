"""Rich renderables. Functions here build tables; they print nothing."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from ollama_dist.api import Routed


def route_table(routed: Sequence[Routed]) -> Table:
    table = Table(title=f"{len(routed)} job(s)", show_lines=False, expand=False)
    table.add_column("job", overflow="fold")
    table.add_column("target")
    table.add_column("score", justify="right")
    table.add_column("conf", justify="right")
    table.add_column("why", overflow="fold")
    for r in routed:
        d = r.decision
        colour = "green" if d.target == "local" else "magenta"
        why = f"[{d.rule}] " if d.rule else ""
        table.add_row(r.job.id, Text(d.target, style=colour), f"{d.score:.2f}", f"{d.confidence:.2f}",
                      why + "; ".join(d.reasons))
    local = sum(1 for r in routed if r.decision.target == "local")
    table.caption = f"{local} local, {len(routed) - local} cloud"
    return table


def settings_table(rows: Sequence[tuple[str, str, str]]) -> Table:
    table = Table(title="effective settings")
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    table.add_column("from")
    for key, value, source in rows:
        table.add_row(key, value, source)
    return table
