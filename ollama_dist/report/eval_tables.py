"""Rich renderables for `eval` and `calibrate` (replay sets): tables and the quality plot. They print nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from ollama_dist.report.cells import money as _money

if TYPE_CHECKING:
    from ollama_dist.evals.calibrate import Calibration, Setting
    from ollama_dist.evals.evaluate import EvalReport
    from ollama_dist.evals.judge import JudgeReport


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
