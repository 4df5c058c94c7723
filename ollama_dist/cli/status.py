"""`router-status`: the command; the figures are ``report.status`` (queries) and ``report.figures`` (values)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from ollama_dist.exits import handled


class By(str, Enum):
    day = "day"


@handled
def router_status_command(
    session: Annotated[str | None, typer.Option(help="Summarise this session.")] = None,
    since: Annotated[str | None, typer.Option(help="Summarise what ran since: 7d, 12h, 30m or a date.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Summarise the whole ledger.")] = False,
    by: Annotated[By | None, typer.Option("--by", help="Also draw the trend per day.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
) -> None:
    """Does routing pay, and is it healthy? Savings, escalations, latency, breaker, from the ledger.

    Scope: the current session (OLLAMA_DIST_SESSION or CLAUDE_CODE_SESSION_ID), else the
    latest run's; or --session ID, --since 7d, --all.
    """
    import json
    import sys

    from rich.console import Console

    from ollama_dist.config import load_settings
    from ollama_dist.report import render
    from ollama_dist.report.status import router_status

    settings = load_settings()
    status = router_status(settings, session=session, since=since, all_=all_, by_day=by is By.day)
    err = Console(stderr=True)
    if not status.ledger_found:
        err.print(f"no ledger yet at {settings.ledger_path}: run `ollama-dist run` first", highlight=False)
    elif status.totals.jobs == 0:
        err.print(f"no jobs in {status.scope.label or 'this scope'} (try --all)", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(status.as_json(), indent=2) + "\n")
    elif status.totals.jobs:
        out = Console()
        out.print(render.router_status_table(status))
        if status.trust:
            out.print(render.trust_table(status))
        if status.days:
            out.print(render.router_days_chart(status.days))
    if not as_json:
        for warning in status.warnings:
            err.print(f"warning: {warning}", highlight=False)
