"""Rich renderables. Functions here build tables; they print nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ollama_dist.api import Estimate, Routed, RunReport
from ollama_dist.routing.learning import verdict
from ollama_dist.run.dispatch import Event

if TYPE_CHECKING:
    from ollama_dist.evals.calibrate import Calibration, Setting
    from ollama_dist.evals.evaluate import EvalReport
    from ollama_dist.evals.judge import JudgeReport
    from ollama_dist.integrations.ollama_control.probe import HostReport
    from ollama_dist.report.figures import Day, RouterStatus


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
        if r.job.error is not None:  # it will fail without a model call
            why = f"fails: {r.job.error}; "
        # Text, not markup: a file name or a rule in brackets must show as it is
        table.add_row(Text(r.job.id), Text(d.target, style=colour), f"{d.score:.2f}", f"{d.confidence:.2f}",
                      Text(why + "; ".join(d.reasons)))
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
    table.add_column("checks passed", overflow="fold")
    table.add_column("output / reason", overflow="fold")
    for o in report.outcomes:
        cached = o.cache_hit and o.status == "ok"
        shown = "ok (your edit kept)" if o.kept_edit else "ok (cached)" if cached else o.status
        status = Text(shown, style="green" if o.status == "ok" else "red")
        detail = o.output_path or (o.reason or "")
        table.add_row(o.job.id, o.decision.target, o.actual_model or "-", status, str(len(o.attempts)),
                      ", ".join(o.checks) if o.status == "ok" else "-", detail[:300])
    table.caption = ("ok: the answer passed the checks shown (format: it parses; schema; pattern; grounded: "
                     "its values occur in the input; agree: most local samples gave it), not more")
    return table


def summary_table(report: RunReport) -> Table:
    t = report.totals()
    table = Table(title="summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("jobs", f"{t['jobs']} ({t['ok']} ok, {t['failed']} failed)")
    table.add_row("routed local / cloud", f"{t['routed_local']} / {t['routed_cloud']}")
    table.add_row("answered locally", str(t["answered_local"]))
    checked = ", ".join(f"{name} {n}" for name, n in t["checks"].items()) or "none"
    table.add_row("ok jobs that passed", checked)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(t["escalation_reasons"].items())) or "none"
    table.add_row("escalated", f"{t['escalated']} ({reasons})")
    table.add_row("cache hits", str(t["cache_hits"]))
    table.add_row("tokens in / out", f"{t['input_tokens']:,} / {t['output_tokens']:,}")
    table.add_row("cost", _money(t["cost_usd"]))
    table.add_row("baseline (all on Claude)", _money(t["baseline_cost_usd"]))
    table.add_row("saved", f"{_money(t['saved_usd'])} ({t['saved_pct']:.1f}%)")
    return table


def dry_run_table(estimates: Sequence[Estimate]) -> Table:
    table = Table(title="dry run: nothing was sent")
    table.add_column("job", overflow="fold")
    table.add_column("target")
    table.add_column("~tokens in", justify="right")
    table.add_column("max out", justify="right")
    table.add_column("cloud cost at most", justify="right")
    for e in estimates:
        table.add_row(e.routed.job.id, e.routed.decision.target, f"{e.input_tokens:,}", f"{e.max_output_tokens:,}",
                      _money(e.cloud_cost_usd_at_most))
    total = sum(e.cloud_cost_usd_at_most for e in estimates)
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


# ---------------------------------------------------------------- eval and calibrate (replay sets)



def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def eval_table(report: EvalReport, judged: JudgeReport | None = None) -> Table:
    """APGR and CPT of the policy beside the random and oracle references."""
    r = report.replay
    table = Table(title=f"{r.name}: {len(r.items)} items ({r.scale})", caption_justify="left")
    table.add_column("routing")
    table.add_column("APGR", justify="right")
    table.add_column("CPT(50%)", justify="right")
    table.add_column("CPT(80%)", justify="right")
    table.add_row(Text(report.policy, style="bold"), _num(report.figures.apgr), _pct(report.figures.cpt50),
                  _pct(report.figures.cpt80))
    table.add_row(f"random (mean of {report.random_seeds} seeds)", _num(report.random.apgr),
                  _pct(report.random.cpt50), _pct(report.random.cpt80))
    table.add_row("oracle", _num(report.oracle.apgr), _pct(report.oracle.cpt50), _pct(report.oracle.cpt80))
    caption = [f"local only: {_num(report.curve.local_quality)} ({r.local_label}); "
               f"cloud only: {_num(report.curve.cloud_quality)} ({r.cloud_label})"]
    caption += [f"{p.name}: {_pct(p.cloud_share)} cloud -> quality {_num(p.quality)}" for p in report.operating_points]
    if judged is not None:
        caption.append(judge_line(judged))
    caption += [f"note: {n}" for n in report.notes + r.notes]
    table.caption = "\n".join(caption)
    return table


def judge_line(judged: JudgeReport) -> str:
    c, ci = judged.counts, judged.interval()
    band = f" (95% CI {_pct(ci[0])}-{_pct(ci[1])})" if ci else ""
    errors = f", {judged.errors} not judged" if judged.errors else ""
    return (f"judge {judged.model}: {judged.judged} pairs: {c['tied']} tied, {c['local_worse']} local worse, "
            f"{c['local_better']} local better{errors}; quality-regression rate "
            f"{_pct(judged.regression_rate)}{band}")


def quality_plot(report: EvalReport, width: int = 64, height: int = 16) -> Text:
    """Quality against the share of cloud calls: plotext (6.x) when installed, else characters."""
    try:
        import plotext
    except ImportError:
        return ascii_quality_plot(report, width, height)
    try:
        return Text.from_ansi(_plotext_plot(plotext.figure, report, width, height))
    except (AttributeError, TypeError):  # a plotext with another API (5.x): the plain plot will do
        return ascii_quality_plot(report, width, height)


def _plotext_plot(fig: Any, report: EvalReport, width: int, height: int) -> str:
    fig.clear()
    fig.plot_size(width + 12, height + 4)
    lo, hi = report.curve.local_quality, report.curve.cloud_quality
    series = [("random (expected)", [0.0, 100.0], [lo, hi], "."), (
        "oracle", [100 * p.cloud_share for p in report.oracle_curve.points],
        [p.quality for p in report.oracle_curve.points], "o"), (
        report.policy, [100 * p.cloud_share for p in report.curve.points],
        [p.quality for p in report.curve.points], "*")]
    for label, xs, ys, marker in series:
        signal = fig.signal(xs, ys, marker=marker)
        signal.lines()
        signal.label(label)
        fig.draw(signal)
    fig.label("cloud calls (%)", axis="x")
    fig.label("quality", axis="y")
    return str(fig.build().string())


def ascii_quality_plot(report: EvalReport, width: int = 64, height: int = 16) -> Text:
    """A character plot: `*` the policy, `o` the oracle, `.` random routing, `-` local only, `=` cloud only."""
    lo_q, hi_q = report.curve.local_quality, report.curve.cloud_quality
    values = [p.quality for c in (report.curve, report.oracle_curve) for p in c.points] + [lo_q, hi_q]
    bottom, top = min(values), max(values)
    span = (top - bottom) or 1.0
    grid = [[" "] * width for _ in range(height)]

    def row(q: float) -> int:
        return height - 1 - round((q - bottom) / span * (height - 1))

    def share(col: int) -> float:
        return col / (width - 1)

    for col in range(width):
        grid[row(lo_q)][col] = "-"
        grid[row(hi_q)][col] = "="
        grid[row(lo_q + share(col) * (hi_q - lo_q))][col] = "."
    for curve, mark in ((report.oracle_curve, "o"), (report.curve, "*")):
        for col in range(width):
            grid[row(curve.quality_at(share(col)))][col] = mark
    label = max(len(_num(top)), len(_num(bottom)))
    lines = []
    for i, cells in enumerate(grid):
        axis = _num(top) if i == 0 else _num(bottom) if i == height - 1 else ""
        lines.append(f"{axis:>{label}} |{''.join(cells)}")
    lines.append(" " * label + " +" + "-" * width)
    lines.append(" " * label + "  0%" + "cloud calls".center(width - 8) + "100%")
    lines.append(f"{'':{label}}  * {report.policy}  o oracle  . random  - local only  = cloud only")
    return Text("\n".join(lines))


def calibrate_table(cal: Calibration, cloud_model: str) -> Table:
    """The configured and the suggested thresholds side by side, with what each gives."""
    table = Table(title=f"calibrate: at most {_pct(cal.target)} quality regression", caption_justify="left")
    table.add_column("")
    table.add_column("configured", justify="right")
    table.add_column("suggested", justify="right")

    def both(label: str, show: Callable[[Setting], str]) -> None:
        table.add_row(label, show(cal.current), show(cal.suggested))

    both("router.score_threshold", lambda s: f"{s.score_threshold:g}")
    both("router.confidence_threshold", lambda s: f"{s.confidence_threshold:g}")
    both("answered locally (diversion)", lambda s: _pct(s.local_share))
    both("escalated by validators", lambda s: _pct(s.escalated_share))
    both("quality", lambda s: _num(s.quality))
    both("quality regression", lambda s: _pct(s.regression))
    both(f"cloud cost ({cloud_model})", lambda s: _money(s.cost_usd))
    both("saved vs all-cloud", lambda s: f"{_money(cal.saved_usd(s))} ({cal.saved_pct(s):.1f}%)")
    notes = [f"all cloud: quality {_num(cal.all_cloud_quality)}, {_money(cal.all_cloud_cost_usd)}; "
             f"all local: quality {_num(cal.all_local_quality)}",
             f"{cal.candidates} threshold pairs screened" + ("; validators escalate invalid local answers"
                                                              if cal.uses_validator else "")]
    if not cal.reached:
        notes.append(f"the target is out of reach: the least regression found is {_pct(cal.suggested.regression)} "
                     "(hard local rules ignore the thresholds)")
    table.caption = "\n".join(notes)
    return table



# ---------------------------------------------------------------- router-status and ollama status



def _share(x: float) -> str:
    return f"{100 * x:.1f}%"


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def router_status_table(st: RouterStatus) -> Table:
    """router-status: does routing pay, and is it healthy."""
    t = st.totals
    table = Table(title=f"router status: {st.scope.label}", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("jobs", f"{t.jobs:,} (local {t.local:,}, cloud {t.cloud:,}, failed {t.failed:,})")
    table.add_row("answered locally", _share(st.diversion_rate))
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(st.escalation_reasons.items(), key=lambda kv: -kv[1]))
    table.add_row("escalated", f"{t.escalated:,} of {t.routed_local:,} routed local ({_share(st.escalation_rate)})"
                  + (f": {reasons}" if reasons else ""))
    table.add_row("cost / baseline (all on Claude)", f"{_money(t.cost_usd)} / {_money(t.baseline_cost_usd)}")
    saved = Text(f"{_money(st.savings_usd)} ({st.savings_pct:.1f}%)", style="green" if st.savings_usd >= 0 else "red")
    table.add_row("saved", saved)
    table.add_row("cost per job", _money(st.cost_per_job_usd))
    table.add_row("tokens kept off the cloud", f"{t.tokens_saved:,}")
    for lane in ("local", "cloud"):
        if lane in st.p95_latency_s:
            table.add_row(f"latency {lane} p50 / p95",
                          f"{st.p50_latency_s.get(lane, 0.0):.2f} s / {st.p95_latency_s[lane]:.2f} s")
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
                          f"disagree, or Claude's shadow answer different; cut: cut off at max_tokens; acc.: "
                          f"right / (right + wrong). Below {st.min_local_accuracy:.0%} over 3 judged jobs a task "
                          "goes to Claude; the warnings say why.")
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
    """ollama status: one row per configured host."""
    table = Table(title="Ollama")
    table.add_column("host", overflow="fold")
    table.add_column("state")
    table.add_column("models pulled", overflow="fold")
    table.add_column("loaded now (context, memory)", overflow="fold")
    table.add_column("missing → fix", overflow="fold")
    for r in reports:
        s = r.status
        if not s.reachable:
            state = Text("down", style="red")
        elif s.error:
            state = Text(f"error: {s.error}", style="red")
        else:
            state = Text(f"up {s.version}", style="green")
        pulled = ", ".join(m.name for m in s.models) or "-"
        loaded = "\n".join(f"{m.name} ({m.context_length or '?'} ctx, {_gib(m.size)})" for m in s.loaded) or "-"
        missing = "\n".join(f"{m} → ollama pull {m}" for m in r.missing) or "-"
        table.add_row(s.host, state, pulled, loaded, Text(missing, style="yellow" if r.missing else "default"))
    return table
