"""`ollama-dist eval` and `ollama-dist calibrate`: prove a routing policy on a replay set.

The Typer functions parse options, call replay/evaluate/judge, render, and set the exit
code; cli.py registers them (wrapped in its error handler). Heavy imports stay inside
the functions so `--help` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ollama_dist.errors import EXIT_JOB_FAILED, InputError

if TYPE_CHECKING:
    from ollama_dist.config import Settings
    from ollama_dist.evals.evaluate import EvalReport
    from ollama_dist.evals.judge import JudgeReport
    from ollama_dist.evals.replay import ReplaySet

PLOT_EXTRA = "plot"  # pip install 'ollama-dist[plot]' brings matplotlib (PNG) and plotext (terminal)

Source = Annotated[Path, typer.Argument(help="A CSV or JSONL file, a ledger (.db), or a folder of RouteLLM's evals.",
                                        metavar="SOURCE")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="csv | jsonl | ledger | routellm (default: "
                                                                "from the name).")]
BenchmarkOpt = Annotated[str | None, typer.Option(help="For routellm: gsm8k | mmlu | mt_bench (default: the "
                                                       "folder's name).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
JudgeOpt = Annotated[bool, typer.Option("--judge", help="Ask the cloud model to compare local and cloud "
                                                        "answers of a sample (tied / local worse / local better).")]
SampleOpt = Annotated[int, typer.Option(help="How many pairs the judge compares.")]


def _column(name: str, what: str) -> Any:
    return typer.Option(f"--{name}", help=f"Column (or JSON key) holding {what}.")


Prompt = Annotated[str, _column("prompt", "the prompt")]
LocalAnswer = Annotated[str, _column("local-answer", "the local answer")]
CloudAnswer = Annotated[str, _column("cloud-answer", "the cloud answer")]
LocalOk = Annotated[str, _column("local-ok", "whether the local answer was good (true/false)")]
CloudOk = Annotated[str, _column("cloud-ok", "whether the cloud answer was good (true/false)")]
LocalScore = Annotated[str, _column("local-score", "the local answer's score (used before --local-ok)")]
CloudScore = Annotated[str, _column("cloud-score", "the cloud answer's score (used before --cloud-ok)")]
TaskColumn = Annotated[str, _column("task-column", "the task name (default: the file's name)")]
IdColumn = Annotated[str, _column("id-column", "an item id (default: file:line)")]
PatternOpt = Annotated[str | None, typer.Option(help="A regex a valid local answer must match (the validator "
                                                     "of router+validator; gsm8k has one built in).")]
AnswerFormatOpt = Annotated[str | None, typer.Option(help="text | json | yaml | code | diff: how a valid local "
                                                          "answer must parse.")]


def eval_command(
    source: Source,
    fmt: FormatOpt = None,
    benchmark: BenchmarkOpt = None,
    policy: Annotated[str, typer.Option(help="router | router+validator | random | oracle")] = "router+validator",
    as_json: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw the curves to this PNG file "
                                                             f"(needs the `{PLOT_EXTRA}` extra).")] = None,
    judge: JudgeOpt = False,
    sample: SampleOpt = 50,
    seeds: Annotated[int, typer.Option(help="Random-routing seeds averaged for the reference.")] = 10,
    prompt: Prompt = "prompt",
    local_answer: LocalAnswer = "local_answer",
    cloud_answer: CloudAnswer = "cloud_answer",
    local_ok: LocalOk = "local_ok",
    cloud_ok: CloudOk = "cloud_ok",
    local_score: LocalScore = "local_score",
    cloud_score: CloudScore = "cloud_score",
    task_column: TaskColumn = "task",
    id_column: IdColumn = "id",
    pattern: PatternOpt = None,
    answer_format: AnswerFormatOpt = None,
) -> None:
    """Replay a set of answered jobs: quality against cloud share, APGR, CPT(50%), CPT(80%)."""
    from ollama_dist.config import load_settings
    from ollama_dist.evals import evaluate
    from ollama_dist.evals.replay import Columns
    from ollama_dist.report import eval_tables

    if policy not in evaluate.POLICIES:
        raise InputError(f"unknown policy {policy!r}", field="--policy", hint="use " + " | ".join(evaluate.POLICIES))
    if seeds < 1:
        raise InputError("--seeds must be at least 1", field="--seeds")
    if plot is not None:
        pyplot()  # fail before the work when the extra is missing
    settings = load_settings()
    columns = Columns(prompt, local_answer, cloud_answer, local_ok, cloud_ok, local_score, cloud_score,
                      task_column, id_column)
    replay_set = load_replay(source, fmt, benchmark, columns, pattern, answer_format)
    report = evaluate.evaluate(replay_set, policy, settings.router, seeds=seeds)  # type: ignore[arg-type,unused-ignore]
    judged = run_judge(replay_set, settings, sample) if judge else None
    if plot is not None:
        write_png(report, plot)
    if as_json:
        _print_json({**report.as_json(), "judge": judged.as_json() if judged else None,
                     "plot": str(plot) if plot else None})
        return
    out = _console()
    out.print(eval_tables.eval_table(report, judged))
    out.print(eval_tables.quality_plot(report))
    if plot is not None:
        _console(stderr=True).print(f"plot written to {plot}")


def calibrate_command(
    source: Source,
    max_regression: Annotated[float, typer.Option(help="The most quality regression to accept: the share of "
                                                       "items whose answer is worse than the cloud's.")] = 0.02,
    write: Annotated[bool, typer.Option("--write", help="Write the suggested thresholds to ./ollama-dist.yaml "
                                                        "(other keys kept).")] = False,
    fmt: FormatOpt = None,
    benchmark: BenchmarkOpt = None,
    as_json: JsonOpt = False,
    judge: Annotated[bool, typer.Option("--judge", help="Calibrate on judge verdicts for a sample instead of "
                                                        "the set's own qualities.")] = False,
    sample: SampleOpt = 200,
    prompt: Prompt = "prompt",
    local_answer: LocalAnswer = "local_answer",
    cloud_answer: CloudAnswer = "cloud_answer",
    local_ok: LocalOk = "local_ok",
    cloud_ok: CloudOk = "cloud_ok",
    local_score: LocalScore = "local_score",
    cloud_score: CloudScore = "cloud_score",
    task_column: TaskColumn = "task",
    id_column: IdColumn = "id",
    pattern: PatternOpt = None,
    answer_format: AnswerFormatOpt = None,
) -> None:
    """Suggest router thresholds that keep quality regression under a target; --write saves them."""
    from ollama_dist.config import PROJECT_FILE, load_settings
    from ollama_dist.evals import calibrate as calibration, evaluate, judge as judging
    from ollama_dist.evals.replay import Columns
    from ollama_dist.ledger.pricing import PriceTable
    from ollama_dist.report import eval_tables

    if not 0 <= max_regression <= 1:
        raise InputError("--max-regression is a share between 0 and 1 (0.02 is 2%)", field="--max-regression")
    settings = load_settings()
    columns = Columns(prompt, local_answer, cloud_answer, local_ok, cloud_ok, local_score, cloud_score,
                      task_column, id_column)
    replay_set = load_replay(source, fmt, benchmark, columns, pattern, answer_format)
    judged = None
    if judge:
        judged = run_judge(replay_set, settings, sample)
        replay_set = judging.judged_set(replay_set, judged)
    prices = PriceTable.load(settings.prices)
    costs = calibration.item_costs(replay_set, prices, settings.models.cloud, settings.models.escalation)
    result = calibration.calibrate(replay_set, settings.router, costs, max_regression=max_regression,
                                failures=evaluate.validator_failures(replay_set))
    from ollama_dist.evals.learning_effect import effect, effect_line

    learnt = effect(replay_set, settings)
    target = Path.cwd() / PROJECT_FILE
    written = None
    if write and result.reached:
        written = write_thresholds(target, result.suggested.score_threshold,
                                   result.suggested.confidence_threshold)
    if as_json:
        _print_json({"dataset": replay_set.name, "items": len(replay_set.items), **result.as_json(),
                     "judge": judged.as_json() if judged else None, "written": str(written) if written else None,
                     "learnt": learnt})
    else:
        table = eval_tables.calibrate_table(result, settings.models.cloud)
        _console().print(table)
        if judged is not None:
            _console().print(eval_tables.judge_line(judged))
    err = _console(stderr=True)
    if learnt is not None and not as_json:
        err.print(effect_line(learnt))
    if written:
        err.print(f"wrote router.score_threshold and router.confidence_threshold to {written}")
    elif write:
        err.print("nothing written: the target is out of reach on this replay set")
    elif result.reached and not as_json:
        err.print(f"to use them: ollama-dist calibrate ... --write (writes {target})")
    if not result.reached:
        raise typer.Exit(EXIT_JOB_FAILED)


# ---------------------------------------------------------------- shared steps


def load_replay(source: Path, fmt: str | None, benchmark: str | None, columns: Any, pattern: str | None,
                answer_format: str | None) -> ReplaySet:
    from dataclasses import replace

    from pydantic import ValidationError

    from ollama_dist.checks.validate import OutputSpec
    from ollama_dist.evals import replay

    if fmt is not None and fmt not in replay.FORMATS:
        raise InputError(f"unknown format {fmt!r}", field="--format", hint="use " + " | ".join(replay.FORMATS))
    if benchmark is not None and benchmark not in replay.BENCHMARKS:
        raise InputError(f"unknown benchmark {benchmark!r}", field="--benchmark",
                         hint="use " + " | ".join(replay.BENCHMARKS))
    loaded = replay.load(source, fmt, columns, benchmark)
    if pattern is None and answer_format is None:
        return loaded
    try:
        spec = OutputSpec.model_validate({"format": answer_format or "text", "pattern": pattern})
    except ValidationError as exc:
        raise InputError(str(exc.errors()[0]["msg"]), field="--pattern" if pattern else "--answer-format",
                         hint="formats: text | json | yaml | code | diff; patterns are Python regexes") from exc
    return replace(loaded, spec=spec)


def run_judge(replay_set: ReplaySet, settings: Settings, size: int) -> JudgeReport:
    import asyncio

    from ollama_dist.backends.claude import ClaudeBackend
    from ollama_dist.evals import judge

    items = judge.sample(replay_set, size)
    key = settings.cloud.api_key.get_secret_value() if settings.cloud.api_key else ""

    async def go() -> JudgeReport:
        backend = ClaudeBackend(api_key=key, base_url=settings.cloud.base_url, max_retries=settings.cloud.max_retries)
        try:
            return await judge.judge(items, backend, settings.models.cloud, concurrency=settings.cloud.concurrency)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend; InputError naming the extra when missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InputError("--plot needs matplotlib, which is not installed",
                         hint=f"pip install 'ollama-dist[{PLOT_EXTRA}]' (or pip install matplotlib)") from exc
    return plt


def write_png(report: EvalReport, path: Path) -> Path:
    """The curves as a PNG (matplotlib, an optional extra)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    try:
        lo, hi = report.curve.local_quality, report.curve.cloud_quality
        for curve, style in ((report.curve, "-"), (report.oracle_curve, ":")):
            ax.plot([100 * p.cloud_share for p in curve.points], [p.quality for p in curve.points], style,
                    label=curve.name)
        ax.plot([0, 100], [lo, hi], "--", color="grey", label="random (expected)")
        ax.axhline(lo, color="grey", linewidth=0.8, label=f"local only ({report.replay.local_label})")
        ax.axhline(hi, color="red", linewidth=0.8, label=f"cloud only ({report.replay.cloud_label})")
        for point in report.operating_points:
            ax.plot([100 * point.cloud_share], [point.quality], "o", label=point.name)
        apgr = report.figures.apgr
        ax.set_title(f"{report.replay.name}: {report.policy}" + (f", APGR {apgr:.3f}" if apgr is not None else ""))
        ax.set_xlabel("cloud calls (%)")
        ax.set_ylabel(f"quality ({report.replay.scale})")
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(path)
    except OSError as exc:
        raise InputError(f"cannot write the plot: {exc.strerror}", file=str(path)) from exc
    finally:
        plt.close(fig)
    return path


def write_thresholds(path: Path, score_threshold: float, confidence_threshold: float) -> Path:
    """Set router.score_threshold and router.confidence_threshold in a YAML config, keeping
    every other key (and, where the file allows a line edit, its comments and layout)."""
    import yaml

    from ollama_dist.run.outputs import write_atomic
    from ollama_dist.yamlfile import load_yaml

    values = {"score_threshold": round(score_threshold, 4), "confidence_threshold": round(confidence_threshold, 4)}
    if not path.exists():
        return write_atomic(path, yaml.safe_dump({"router": values}, sort_keys=False))
    doc = load_yaml(path)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict) or not isinstance(data.get("router", {}) or {}, dict):
        raise InputError("the config is not a mapping with a `router:` mapping; not touching it", file=str(path))
    wanted = {**data, "router": {**(data.get("router") or {}), **values}}
    text = _edit_lines(path.read_text(encoding="utf-8"), doc.line_of, values)
    try:
        edited_ok = text is not None and yaml.safe_load(text) == wanted
    except yaml.YAMLError:
        edited_ok = False
    if text is None or not edited_ok:
        text = yaml.safe_dump(wanted, sort_keys=False)  # a layout the line edit cannot follow: rewrite
    return write_atomic(path, text)


def _edit_lines(text: str, line_of: Any, values: dict[str, float]) -> str | None:
    """Replace or add the keys under a block-style `router:`; None when that is not possible."""
    import re

    lines = text.splitlines()
    if not re.search(r"(?m)^router\s*:", text):
        return "\n".join(lines + ["router:"] + [f"  {k}: {v}" for k, v in values.items()]) + "\n"
    router_line = line_of(("router",))
    if router_line is None or not re.fullmatch(r"router\s*:\s*(#.*)?", lines[router_line - 1]):
        return None  # a flow mapping (router: {...}) or a value on the same line
    child = next((ln for ln in lines[router_line:] if ln.strip() and not ln.lstrip().startswith("#")), "")
    indent = re.match(r"\s*", child).group(0) or "  "  # type: ignore[union-attr]
    missing = []
    for key, value in values.items():
        at = line_of(("router", key))
        if at is None or at == router_line:
            missing.append(f"{indent}{key}: {value}")
            continue
        match = re.fullmatch(rf"(\s+){key}\s*:\s*[^#]*?(\s*#.*)?", lines[at - 1])
        if match is None:
            return None
        lines[at - 1] = f"{match.group(1)}{key}: {value}{match.group(2) or ''}"
    lines[router_line:router_line] = missing
    return "\n".join(lines) + "\n"


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)
