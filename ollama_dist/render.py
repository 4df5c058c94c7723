"""Rich renderables. Functions here build tables; they print nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ollama_dist.api import Routed, RunReport
from ollama_dist.dispatch import Event


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


def _money(x: float) -> str:
    return f"${x:,.4f}" if x < 1 else f"${x:,.2f}"


def jobs_table(report: RunReport) -> Table:
    table = Table(title=f"run {report.run_id}")
    table.add_column("job", overflow="fold")
    table.add_column("routed")
    table.add_column("answered by", overflow="fold")
    table.add_column("status")
    table.add_column("tries", justify="right")
    table.add_column("output / reason", overflow="fold")
    for o in report.outcomes:
        status = Text(o.status if not o.cache_hit else "ok (cached)", style="green" if o.status == "ok" else "red")
        detail = o.output_path or (o.reason or "")
        table.add_row(o.job.id, o.decision.target, o.actual_model or "-", status, str(len(o.attempts)),
                      detail[:300])
    return table


def summary_table(report: RunReport) -> Table:
    t = report.totals()
    table = Table(title="summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("jobs", f"{t['jobs']} ({t['ok']} ok, {t['failed']} failed)")
    table.add_row("routed local / cloud", f"{t['routed_local']} / {t['routed_cloud']}")
    table.add_row("answered locally", str(t["answered_local"]))
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(t["escalation_reasons"].items())) or "none"
    table.add_row("escalated", f"{t['escalated']} ({reasons})")
    table.add_row("cache hits", str(t["cache_hits"]))
    table.add_row("tokens in / out", f"{t['input_tokens']:,} / {t['output_tokens']:,}")
    table.add_row("cost", _money(t["cost_usd"]))
    table.add_row("baseline (all on Claude)", _money(t["baseline_cost_usd"]))
    table.add_row("saved", f"{_money(t['saved_usd'])} ({t['saved_pct']:.1f}%)")
    return table


def dry_run_table(routed: Sequence[Routed], estimate: Callable[[Routed], tuple[int, int, float]]) -> Table:
    table = Table(title="dry run: nothing was sent")
    table.add_column("job", overflow="fold")
    table.add_column("target")
    table.add_column("~tokens in", justify="right")
    table.add_column("max out", justify="right")
    table.add_column("cloud cost at most", justify="right")
    total = 0.0
    for r in routed:
        tokens_in, max_out, cost = estimate(r)
        total += cost
        table.add_row(r.job.id, r.decision.target, f"{tokens_in:,}", f"{max_out:,}", _money(cost))
    table.caption = f"if every job went to Claude: at most {_money(total)}"
    return table


class Progress:
    """A one-line live display on stderr: jobs done per lane, escalations, money saved."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.total = total
        self.done = {"local": 0, "cloud": 0}
        self.failed = 0
        self.escalated = 0
        self.saved = 0.0
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, event: Event) -> None:
        o = event.outcome
        lane = o.attempts[-1].lane if o.attempts else o.decision.target
        self.done[lane] = self.done.get(lane, 0) + 1
        self.failed += o.status == "failed"
        self.escalated += o.escalated
        self.saved += sum(a.baseline_cost_usd - a.cost_usd for a in o.attempts)
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Text:
        finished = sum(self.done.values())
        return Text(f"{finished}/{self.total} jobs · local {self.done['local']} · cloud {self.done['cloud']} · "
                    f"failed {self.failed} · escalated {self.escalated} · saved {_money(self.saved)}")
