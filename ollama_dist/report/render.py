"""Rich renderables. Functions here build tables; they print nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ollama_dist.api import Estimate, Routed, RunReport
from ollama_dist.report.cells import Fit, Line, money as _money
from ollama_dist.report.figures import baseline_words, escalated_words, saved_words
from ollama_dist.routing.learning import verdict
from ollama_dist.run.dispatch import Event
from ollama_dist.run.totals import costly_jobs

if TYPE_CHECKING:
    from ollama_dist.integrations.ollama_control.probe import HostReport
    from ollama_dist.ledger.plan_usage import PlanUsage
    from ollama_dist.report.figures import Day, RouterStatus


def _compact(title: str) -> Table:
    """A table that reads at 80 columns: no side borders, one rule under the header."""
    return Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, expand=False)


def _id(text: str, verbose: bool) -> Line:
    return Line(text, "wrap" if verbose else "tail")


def _reason(text: str, verbose: bool, style: str = "") -> Line:
    return Line(text, "wrap" if verbose else "head", style)


def _path(path: str) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def route_table(routed: Sequence[Routed], verbose: bool = False) -> Table:
    """Two lines per job, the id and why (cut to one line), or every reason in full with `verbose`."""
    table = _compact(f"{len(routed)} job(s)")
    table.add_column("job / why")
    table.add_column("target", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("conf", justify="right", no_wrap=True)
    for r in routed:
        d = r.decision
        colour = "green" if d.target == "local" else "magenta"
        why = f"[{d.rule}] " if d.rule else ""
        if r.job.error is not None:  # it will fail without a model call
            why = f"fails: {r.job.error}; "
        # Text, not markup: a file name or a rule in brackets must show as it is
        cell = Fit(_id(r.job.id, verbose), _reason(why + "; ".join(d.reasons), verbose, "dim"))
        table.add_row(cell, Text(d.target, style=colour), f"{d.score:.2f}", f"{d.confidence:.2f}")
    local = sum(1 for r in routed if r.decision.target == "local")
    table.caption = f"{local} local, {len(routed) - local} cloud" + ("" if verbose else "; --verbose for every reason")
    return table


def settings_table(rows: Sequence[tuple[str, str, str]]) -> Table:
    table = Table(title="effective settings")
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    table.add_column("from")
    for key, value, source in rows:
        table.add_row(key, value, source)
    return table


def jobs_table(report: RunReport, verbose: bool = False) -> Table:
    """One or two lines per job: the id, then where its answer went or why it failed (cut to one
    line; all of it with `verbose`, and under an ok status the checks its answer passed)."""
    table = _compact(f"run {report.run_id}")
    table.add_column("job / output or reason")
    table.add_column("routed", no_wrap=True)
    table.add_column("answered by", no_wrap=not verbose)
    table.add_column("status", no_wrap=True)  # and under ok, the checks the answer passed
    table.add_column("tries", justify="right", no_wrap=True)
    for o in report.outcomes:
        cached = o.cache_hit and o.status == "ok"
        shown = "ok (your edit kept)" if o.kept_edit else "ok (cached)" if cached else o.status
        status = Line(shown, style="green" if o.status == "ok" else "red")
        escalated = f"after escalation ({o.escalation_reason}) " if o.escalation_reason else ""
        if o.output_path:
            detail = Line(escalated + "→ " + _path(o.output_path), "wrap" if verbose else "tail", "dim")
        else:
            detail = _reason(escalated + (o.reason or ""), verbose, "dim" if o.status == "ok" else "yellow")
        answering = o.answering
        model = Line(answering.model if answering else o.actual_model or "not answered", "wrap" if verbose else "tail")
        # which tier and host, not only the model; in the compact table it takes the model's width
        host = Line(f"on {o.answered_on}" if o.answered_on else "", "wrap" if verbose else "head", "dim",
                    sizes=verbose)
        # the checks passed, with --verbose (the compact table keeps its width for ids and paths)
        checks = Line(f"passed {', '.join(o.checks)}" if verbose and o.status == "ok" and o.checks else "",
                      "wrap", "dim")
        table.add_row(Fit(_id(o.job.id, verbose), detail, checks), o.decision.target, Fit(model, host),
                      Fit(status), str(len(o.attempts)))
    table.caption = ("ok proves the checks its answer passed, no more: format (it parses), schema, pattern, "
                     "grounded (its values occur in the input), agree (most local samples gave it). "
                     + ("Each ok job says which it passed." if verbose
                        else "--verbose shows them and every reason in full."))
    return table


def summary_table(report: RunReport) -> Table:
    t, tally = report.totals(), report.tally()
    table = Table(title="summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right", overflow="fold")
    table.add_row("jobs", f"{t['jobs']} ({t['ok']} ok, {t['failed']} failed"
                  + (f", {t['handed_back']} handed back)" if t["handed_back"] else ")"))
    table.add_row("routed local / cloud", f"{t['routed_local']} / {t['routed_cloud']}")
    table.add_row("answered locally", f"{t['answered_local']} ({_share(tally.diversion_rate)})")
    checked = ", ".join(f"{name} {n}" for name, n in t["checks"].items()) or "none"
    table.add_row("ok jobs that passed", checked)
    table.add_row("escalated", escalated_words(tally, t["escalation_reasons"]))
    table.add_row("cache hits", str(t["cache_hits"]))
    table.add_row("tokens in / out", f"{t['input_tokens']:,} / {t['output_tokens']:,}")
    table.add_row("cost", _money(t["cost_usd"]))
    table.add_row("baseline (all on Claude)", baseline_words(tally))
    table.add_row("saved", saved_words(tally, costly_jobs(report.outcomes)))
    return table


def dry_run_table(estimates: Sequence[Estimate]) -> Table:
    table = _compact("dry run: nothing was sent")
    table.add_column("job")
    table.add_column("target")
    table.add_column("~tokens in", justify="right")
    table.add_column("max out", justify="right")
    table.add_column("Claude at most", justify="right")
    for e in estimates:
        table.add_row(Fit(Line(e.routed.job.id)), e.routed.decision.target, f"{e.input_tokens:,}",
                      f"{e.max_output_tokens:,}",
                      _money(e.cloud_cost_usd_at_most))
    total = sum(e.cloud_cost_usd_at_most for e in estimates)
    expected = sum(e.baseline_usd for e in estimates)
    table.caption = f"if every job went to Claude: at most {_money(total)}, about {_money(expected)} (the baseline)"
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
        self.saved += sum(a.baseline_cost_usd - a.cost_usd for a in o.attempts if a.outcome != "handed_back")
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Text:
        finished = sum(self.done.values())
        return Text(f"{finished}/{self.total} jobs · local {self.done['local']} · cloud {self.done['cloud']} · "
                    f"failed {self.failed} · escalated {self.escalated} · saved {_money(self.saved)}")


# ---------------------------------------------------------------- router-status and ollama status



def _share(x: float) -> str:
    return f"{100 * x:.1f}%"


def _plan(st: RouterStatus) -> str:
    """Five-hour and weekly usage: the last reading in scope (from its first, when it moved), else the
    latest of all, and when it was taken."""
    from datetime import datetime

    p = st.plan
    last = p.last or p.latest
    assert last is not None

    def pct(usage: PlanUsage | None, window: str) -> str:
        found = getattr(usage, window) if usage is not None else None
        return f"{found.used_pct:.0f}%" if found is not None else "-"

    shown = []
    for window, label in (("five_hour", "five-hour"), ("seven_day", "weekly")):
        start, now = pct(p.first, window), pct(last, window)
        shown.append(f"{label} {start} -> {now}" if p.first is not None and start != now else f"{label} {now}")
    return ", ".join(shown) + f" ({'this scope' if p.last else 'latest'}, read {datetime.fromtimestamp(last.ts):%H:%M})"


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def router_status_table(st: RouterStatus) -> Table:
    """router-status: does routing pay, and is it healthy."""
    t = st.totals
    table = Table(title=f"router status: {st.scope.label}", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("jobs", f"{t.jobs:,} (local {t.local:,}, cloud {t.cloud:,}, failed {t.failed:,}"
                  + (f", handed back {t.handed_back:,})" if t.handed_back else ")"))
    table.add_row("answered locally", _share(st.diversion_rate))
    table.add_row("escalated", escalated_words(t, st.escalation_reasons))
    table.add_row("cost / baseline (all on Claude)", f"{_money(t.cost_usd)} / {baseline_words(t)}")
    table.add_row("saved", Text(saved_words(t, st.costly), style="green" if st.savings_usd >= 0 else "red"))
    table.add_row("cost per job", _money(st.cost_per_job_usd))
    table.add_row("tokens kept off the cloud", f"{t.tokens_saved:,}")
    if st.plan.latest is not None:
        table.add_row("plan usage (status line)", _plan(st))
    for lane in ("local", "cloud"):
        if lane in st.p95_latency_s:
            table.add_row(f"latency {lane} p50 / p95",
                          f"{st.p50_latency_s.get(lane, 0.0):.2f} s / {st.p95_latency_s[lane]:.2f} s")
        if lane in st.p95_wait_s:
            table.add_row(f"queued for a {lane} slot p50 / p95",
                          f"{st.p50_wait_s.get(lane, 0.0):.2f} s / {st.p95_wait_s[lane]:.2f} s")
    table.add_row("cache hits", f"{t.cache_hits:,}")
    table.add_row(f"re-run within {st.rework_window_s / 3600:g} h (rework)",
                  f"{st.rework:,} ({_share(st.rework / t.jobs if t.jobs else 0.0)})")
    b = st.breaker
    state = Text(b.state, style="red" if b.state == "open" else "green")
    if b.recent:
        latest = b.recent[0]
        from datetime import datetime

        when = datetime.fromtimestamp(latest.at).strftime("%Y-%m-%d %H:%M")
        state.append(f" · {b.openings:,} opening(s), latest {when}: {latest.reason}", style="default")
    table.add_row("latency breaker", state)
    return table


def trust_table(st: RouterStatus) -> Table:
    """Per task, over all runs: how its local answers ended, and what that calls for."""
    table = Table(title="local answers per task (all runs: what the router uses)", caption_justify="left",
                  caption=f"right: accepted and not contradicted; wrong: a value not in the input, samples that "
                          f"disagree, an answer that loops, or Claude's shadow answer different; cut: cut off at "
                          f"max_tokens; acc.: right / (right + wrong). Below {st.min_local_accuracy:.0%} over 3 "
                          "judged jobs a task goes to Claude; the warnings say why.")
    table.add_column("task", no_wrap=True)
    for name in ("jobs", "right", "wrong", "cut", "acc."):
        table.add_column(name, justify="right")
    table.add_column("advice")
    for task, h in sorted(st.trust.items()):
        accuracy = "-" if h.accuracy is None else f"{h.accuracy:.0%}"
        table.add_row(Text(task), str(h.local_jobs), str(h.local_right), str(h.local_wrong), str(h.local_cut_off),
                      accuracy, Text(verdict(h, st.min_local_accuracy)))
    return table


def router_days_chart(days: Sequence[Day], width: int = 32) -> Table:
    """Per day: cost against the all-Claude baseline, and the escalation rate, as bars."""
    table = Table(title="per day", caption="cost ▇ against baseline ░ (all on Claude); escalations ▇ per "
                  "job routed local", caption_justify="left")
    table.add_column("day")
    table.add_column("cost vs baseline")
    table.add_column("$", justify="right")
    table.add_column("escalation rate")
    table.add_column("", justify="right")
    top = max((max(d.cost_usd, d.baseline_cost_usd) for d in days), default=0.0) or 1.0
    for d in days:
        money = Text("▇" * round(width * d.cost_usd / top), style="cyan")
        money.append("\n" + "░" * round(width * d.baseline_cost_usd / top), style="dim")
        rate = d.escalation_rate
        bar = Text("▇" * round(width / 2 * rate), style="red" if rate >= 0.3 else "yellow")
        table.add_row(d.day.isoformat(), money, f"{_money(d.cost_usd)}\n{_money(d.baseline_cost_usd)}", bar,
                      _share(rate) if d.routed_local else "-")
    return table


def ollama_status_table(reports: Sequence[HostReport]) -> Table:
    """ollama status: one row per configured host; a route that failed is named in its state."""
    table = Table(title="Ollama")
    table.add_column("host", overflow="fold")
    table.add_column("state", overflow="fold")
    table.add_column("slots", justify="right")
    table.add_column("models pulled", overflow="fold")
    table.add_column("loaded now (context, memory)", overflow="fold")
    table.add_column("missing → fix", overflow="fold")
    for r in reports:
        s = r.status
        if not s.reachable:
            state = Text("down", style="red")
        else:
            state = Text(f"up {s.version}" if s.version else "up, version unknown",
                         style="green" if s.complete else "yellow")
            for route in s.routes:
                if not route.ok:
                    state.append(f"\n{route.route}: {route.error}", style="red")
        pulled = ", ".join(m.name for m in s.models) or ("-" if s.answered("/api/tags") else "?")
        loaded = "\n".join(f"{m.name} ({m.context_length or '?'} ctx, {_gib(m.size)})" for m in s.loaded)
        loaded = loaded or ("-" if s.answered("/api/ps") else "?")
        missing = "\n".join(f"{m} → ollama pull {m}" for m in r.missing) or "-"
        table.add_row(s.host, state, str(r.slots), pulled, loaded,
                      Text(missing, style="yellow" if r.missing else "default"))
    return table
