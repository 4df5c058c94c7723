"""Budget-aware routing: past a five-hour threshold, borderline cloud decisions try local first, and say so."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.config import BudgetSettings, RouterSettings
from ollama_dist.ledger.plan_usage import PlanUsage, Window
from ollama_dist.ledger.store import Ledger
from ollama_dist.routing.budget import Budget, level
from ollama_dist.routing.router import Decision, TaskHistory
from tests.routing.test_router import make_job

NOW = 1_000_000.0
ON = BudgetSettings(five_hour_thresholds=[50, 75, 90])


def soft(confidence: float, score: float = 0.35, target: str = "cloud", rule: str | None = None) -> Decision:
    return Decision(target=target, score=score, confidence=confidence, rule=rule,  # type: ignore[arg-type]
                    reasons=("the router's own reason",))


def budget(used: float | None, settings: BudgetSettings = ON, resets_in: float | None = 3600.0,
           recorded_ago: float = 60.0) -> Budget:
    usage = None
    if used is not None:
        resets = NOW + resets_in if resets_in is not None else None
        usage = PlanUsage(NOW - recorded_ago, "s", Window(used, resets))
    return Budget(RouterSettings(), settings, level(settings, usage, NOW), NOW)


JOB = make_job("Summarize the text in two sentences.", text="The numbers went up.")
LONG = make_job("Summarize the text in two sentences.", text="word " * 20000)
FAILING = TaskHistory(local_jobs=6, local_failures=4)

CASES = [  # (id, budget, decision, job, history, moved)
    ("off-by-default", budget(95, BudgetSettings()), soft(0.48), JOB, None, False),
    ("below-the-first-threshold", budget(49.9), soft(0.48), JOB, None, False),
    ("no-reading", budget(None), soft(0.48), JOB, None, False),
    ("low-confidence-past-50", budget(50), soft(0.48), JOB, None, True),
    ("surer-decision-past-50-stays", budget(60), soft(0.65), JOB, None, False),
    ("surer-decision-past-75-moves", budget(80), soft(0.65), JOB, None, True),
    ("score-within-the-margin", budget(95), soft(0.55, score=0.45), JOB, None, True),
    ("score-past-the-margin", budget(95), soft(0.3, score=0.46), JOB, None, False),
    ("hard-rule-never", budget(99), soft(0.1, rule="cloud:debugging"), JOB, None, False),
    ("declared-kind-never", budget(99), soft(0.1, rule="kind:reasoning"), JOB, None, False),
    ("already-local", budget(99), soft(0.9, score=0.1, target="local"), JOB, None, False),
    ("long-input-stays", budget(99), soft(0.3), LONG, None, False),
    ("failing-task-stays", budget(99), soft(0.3), JOB, FAILING, False),
    ("window-reset-since", budget(99, resets_in=-1), soft(0.3), JOB, None, False),
    ("undated-reading-fresh", budget(60, resets_in=None, recorded_ago=600), soft(0.48), JOB, None, True),
    ("undated-reading-stale", budget(60, resets_in=None, recorded_ago=7200), soft(0.48), JOB, None, False),
]


@pytest.mark.parametrize(("plan", "decision", "job", "history", "moved"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_only_borderline_cloud_decisions_move_and_they_say_why(
        plan: Budget, decision: Decision, job: object, history: TaskHistory | None, moved: bool) -> None:
    after = plan.review(job, decision, history)  # type: ignore[arg-type]
    if not moved:
        assert after == decision
        return
    assert after.target == "local" and after.rule is None
    assert (after.score, after.confidence) == (decision.score, decision.confidence)
    assert after.reasons[:-1] == decision.reasons
    why = after.reasons[-1]
    assert why.startswith("budget: the plan's five-hour usage is ") and "threshold" in why
    assert "still validated and, when it fails, escalated to the cloud model the router chose" in why
    assert after.moved_from == "cloud" and decision.moved_from is None


def test_the_reason_names_the_reading_and_the_threshold() -> None:
    after = budget(82, recorded_ago=240).review(JOB, soft(0.65), None)
    why = after.reasons[-1]
    assert "82% (recorded 4 min ago, resets in 60 min), past the 75% threshold" in why
    assert "confidence 0.65 < 0.7" in why and "score 0.35 <= 0.45" in why


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("budget: {five_hour_thresholds: [75, 50]}", "each higher than the last"),
    ("budget: {five_hour_thresholds: [0, 50]}", "(0, 100]"),
    ("budget: {five_hour_thresholds: [50, 60, 70, 80]}", "one per threshold (4), not 3"),
    ("budget: {confidence_below: [0.8, 0.6]}", "none lower than the one before"),
    ("budget: {thresholds: [50]}", "thresholds"),
], ids=["not-increasing", "out-of-range", "too-few-bars", "bars-decreasing", "unknown-key"])
def test_bad_budget_settings_name_the_file_and_field(yaml_text: str, message: str) -> None:
    Path("ollama-dist.yaml").write_text(yaml_text + "\n")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 2
    assert "ollama-dist.yaml:1" in result.output and "budget" in result.output and message in result.output


TASKS = textwrap.dedent("""\
    tasks:
      - name: summary
        prompt: Summarize the text in two sentences.
        inputs: {text: "The quarterly numbers went up by five percent, driven by sales in Europe."}
        output: {format: text}
      - name: tidy
        prompt: Make this note a bit nicer for the team.
        inputs: {text: "meeting moved to 3pm, bring laptops"}
        output: {format: text}
      - name: fix
        prompt: Debug why this crashes.
        inputs: {text: "Segmentation fault (core dumped)"}
        output: {format: text}
    """)


def route(home: Path) -> dict[str, dict[str, object]]:
    result = CliRunner().invoke(app, ["route", "t.yaml", "--json"])
    assert result.exit_code == 0, result.output
    return {j["task"]: j for j in json.loads(result.stdout)}


def test_route_follows_the_recorded_usage(isolated_home: Path) -> None:
    import time

    Path("t.yaml").write_text(TASKS)
    Path("ollama-dist.yaml").write_text("router: {semantic: false}\nbudget: {five_hour_thresholds: [50, 75, 90]}\n")
    before = route(isolated_home)
    assert {t: j["target"] for t, j in before.items()} == {"summary": "cloud", "tidy": "cloud", "fix": "cloud"}
    ledger = Ledger(isolated_home / "ledger.db")
    ledger.record_plan_usage(PlanUsage(time.time(), "cc-1", Window(62.0, time.time() + 3000)))
    ledger.close()
    after = route(isolated_home)
    assert after["summary"]["target"] == "local" and after["summary"]["moved_from"] == "cloud"
    assert before["summary"]["moved_from"] is None
    assert any(str(r).startswith("budget: the plan's five-hour usage is 62%") for r in after["summary"]["reasons"])
    assert after["tidy"]["target"] == "cloud"  # a clear score: not borderline
    assert after["fix"]["target"] == "cloud" and after["fix"]["rule"] == "cloud:debugging"  # a hard rule, never
    assert not any("budget" in str(r) for j in (after["tidy"], after["fix"]) for r in j["reasons"])  # type: ignore[attr-defined]
    rows = sqlite3.connect(isolated_home / "ledger.db").execute("SELECT COUNT(*) FROM plan_usage").fetchone()
    assert rows == (1,)  # routing wrote nothing


def test_a_job_the_budget_moves_is_answered_locally_or_escalated(
        isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from tests.servers.anthropic import AnthropicServer
    from tests.servers.ollama import FakeOllama

    Path("t.yaml").write_text(TASKS)
    Path("ollama-dist.yaml").write_text("router: {semantic: false}\nollama: {embedded: false}\n"
                                        "budget: {five_hour_thresholds: [50]}\n")
    ledger = Ledger(isolated_home / "ledger.db")
    ledger.record_plan_usage(PlanUsage(time.time(), "cc-1", Window(70.0, time.time() + 3000)))
    ledger.close()
    with FakeOllama(models=("gemma3:270m",)) as ollama, AnthropicServer(key="test-key") as claude:
        monkeypatch.setenv("OLLAMA_HOST", ollama.url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        ollama.script(["Numbers rose five percent. Europe drove it.", ""])
        result = CliRunner().invoke(app, ["run", "t.yaml", "--json", "--quiet"])
        assert result.exit_code == 0, result.output
        jobs = {j["task"]: j for j in json.loads(result.stdout)["jobs"]}
        assert jobs["summary"]["routed_to"] == "local" and jobs["summary"]["actual_model"] == "gemma3:270m"
        assert jobs["tidy"]["routed_to"] == "cloud" and jobs["fix"]["routed_to"] == "cloud"
        # the same job again, its local answers now empty (invalid): escalated to Claude, as any local job
        Path("t.yaml").write_text(TASKS.replace("five percent", "six percent"))
        ollama.script(["", ""])
        again = CliRunner().invoke(app, ["run", "t.yaml", "--json", "--quiet"])
        summary = {j["task"]: j for j in json.loads(again.stdout)["jobs"]}["summary"]
        assert summary["routed_to"] == "local" and summary["escalated"] is True and summary["status"] == "ok"
        # ...to the model the router chose for it (models.cloud), not the escalation model of local tasks
        assert summary["actual_model"] == "claude-sonnet-5-5"
