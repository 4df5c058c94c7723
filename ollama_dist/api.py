"""The library facade: what the CLI and Python callers both call."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollama_dist.backends.base import Backend
from ollama_dist.breaker import Breaker
from ollama_dist.config import Settings, load_settings
from ollama_dist.dispatch import Dispatcher, Event, Outcome, RunContext
from ollama_dist.lanes import Lanes
from ollama_dist.errors import EXIT_INTERRUPTED, EXIT_JOB_FAILED, EXIT_OK
from ollama_dist.ledger import Ledger
from ollama_dist.pricing import PriceTable, Usage
from ollama_dist.router import Decision, Router, TaskHistory, estimate_tokens
from ollama_dist.tasks import Job, load_jobs


@dataclass(frozen=True)
class Routed:
    job: Job
    decision: Decision

    def as_json(self) -> dict[str, object]:
        d = self.decision
        return {
            "task": self.job.task.name,
            "job": self.job.id,
            "input": self.job.input_path,
            "target": d.target,
            "score": d.score,
            "confidence": d.confidence,
            "rule": d.rule,
            "reasons": list(d.reasons),
        }


def route(
    paths: Sequence[Path],
    *,
    root: Path | None = None,
    settings: Settings | None = None,
    history: dict[str, TaskHistory] | None = None,
) -> list[Routed]:
    """Load the task files under `paths` and decide a lane for every job."""
    from ollama_dist.semantic import second_opinion

    settings = settings or load_settings()
    root = (root or Path.cwd()).resolve()
    jobs = load_jobs(paths, root)
    ledger = Ledger(settings.ledger_path) if settings.ledger_path.exists() else None  # routing never creates one
    try:
        if history is None:
            history = ledger.history({j.task.name for j in jobs}) if ledger else {}
        router = Router(settings.router, second_opinion=second_opinion(settings, ledger))
        return [Routed(job, router.decide(job, history.get(job.task.name))) for job in jobs]
    finally:
        if ledger is not None:
            ledger.close()


@dataclass(frozen=True)
class Estimate:
    """What a job would send, and the most it could cost if it went to Claude."""

    routed: Routed
    input_tokens: int
    max_output_tokens: int
    cloud_cost_usd_at_most: float

    def as_json(self) -> dict[str, object]:
        return {**self.routed.as_json(), "estimate": {
            "input_tokens": self.input_tokens, "max_output_tokens": self.max_output_tokens,
            "cloud_cost_usd_at_most": self.cloud_cost_usd_at_most}}


def estimate(routed: Sequence[Routed], settings: Settings) -> list[Estimate]:
    """`--dry-run`: token and cost estimates, with no model called."""
    prices = PriceTable.load(settings.prices)
    out = []
    for r in routed:
        task = r.job.task
        tokens = estimate_tokens((task.system or "") + r.job.prompt)
        model = task.models.cloud or settings.models.cloud
        out.append(Estimate(r, tokens, task.max_tokens, prices.cost(model, Usage(tokens, task.max_tokens))))
    return out


# ---------------------------------------------------------------------- run


@dataclass
class RunReport:
    run_id: str
    session: str
    outcomes: list[Outcome]
    interrupted: bool = False
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK if all(o.status == "ok" for o in self.outcomes) else EXIT_JOB_FAILED

    def totals(self) -> dict[str, Any]:
        attempts = [a for o in self.outcomes for a in o.attempts + o.shadow]
        cost = sum(a.cost_usd for a in attempts)
        baseline = sum(a.baseline_cost_usd for a in attempts)
        escalations: dict[str, int] = {}
        for o in self.outcomes:
            reason = o.escalation_reason
            if reason is not None:
                escalations[reason] = escalations.get(reason, 0) + 1
        return {
            "jobs": len(self.outcomes),
            "ok": sum(o.status == "ok" for o in self.outcomes),
            "failed": sum(o.status == "failed" for o in self.outcomes),
            "routed_local": sum(o.decision.target == "local" for o in self.outcomes),
            "routed_cloud": sum(o.decision.target == "cloud" for o in self.outcomes),
            "answered_local": sum(o.answered_locally for o in self.outcomes),
            "escalated": sum(o.escalated for o in self.outcomes),
            "escalation_reasons": escalations,
            "cache_hits": sum(o.cache_hit for o in self.outcomes),
            "input_tokens": sum(a.input_tokens for a in attempts),
            "output_tokens": sum(a.output_tokens for a in attempts),
            "cost_usd": round(cost, 6),
            "baseline_cost_usd": round(baseline, 6),
            "saved_usd": round(baseline - cost, 6),
            "saved_pct": round(100 * (baseline - cost) / baseline, 1) if baseline else 0.0,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "session": self.session,
            "dry_run": self.dry_run,
            "jobs": [job_json(o) for o in self.outcomes],
            "totals": self.totals(),
            "notes": self.notes,
        }


def job_json(o: Outcome) -> dict[str, Any]:
    return {
        "task": o.job.task.name,
        "job": o.job.id,
        "routed_to": o.decision.target,
        "actual_model": o.actual_model,
        "status": o.status,
        "attempts": len(o.attempts),
        "escalated": o.escalated,
        "cache_hit": o.cache_hit,
        "reason": o.reason,
        "output": o.output_path,
        "value": o.value,
        "input_tokens": sum(a.input_tokens for a in o.attempts),
        "output_tokens": sum(a.output_tokens for a in o.attempts),
        "cost_usd": round(sum(a.cost_usd for a in o.attempts), 8),
        "baseline_cost_usd": round(sum(a.baseline_cost_usd for a in o.attempts), 8),
        "shadow": [{"model": a.model, "outcome": a.outcome, "cost_usd": round(a.cost_usd, 8)} for a in o.shadow],
    }


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def session_id(explicit: str | None, env: Mapping[str, str]) -> str | None:
    return explicit or env.get("OLLAMA_DIST_SESSION") or env.get("CLAUDE_CODE_SESSION_ID") or None


def git_head(root: Path) -> str | None:
    try:
        from git import Repo
        from git.exc import GitError

        try:
            return str(Repo(root, search_parent_directories=True).head.commit.hexsha)
        except (GitError, ValueError):
            return None
    except ImportError:
        return None


def build_lanes(settings: Settings) -> Lanes:
    from ollama_dist.backends import embedded
    from ollama_dist.backends.claude import ClaudeBackend
    from ollama_dist.backends.local import FallbackBackend
    from ollama_dist.backends.ollama import OllamaBackend
    from ollama_dist.backends.openai_compat import OpenAICompatBackend

    o = settings.ollama
    local: list[Backend] = []
    if o.hosts:
        local.append(OllamaBackend(o.hosts, keep_alive=o.keep_alive))
    local.extend(OpenAICompatBackend(url, name=f"openai_compat:{url}") for url in o.openai_compat)
    if o.embedded and embedded.available():
        path = Path(o.embedded_model_path).expanduser() if o.embedded_model_path else None
        local.append(embedded.EmbeddedBackend(path, home=settings.home / "cache"))
    key = settings.cloud.api_key.get_secret_value() if settings.cloud.api_key else ""
    cloud = ClaudeBackend(api_key=key, base_url=settings.cloud.base_url, max_retries=settings.cloud.max_retries)
    if key:
        cloud.client()  # import the SDK now (about a second), not in the middle of the first cloud job
    slots = o.concurrency_per_host * max(1, len(o.hosts) + len(o.openai_compat))
    return Lanes(FallbackBackend(local) if local else None, cloud, local_slots=slots,
                 cloud_slots=settings.cloud.concurrency, cloud_ready=bool(key))


async def _close(lanes: Lanes) -> None:
    for backend in (lanes.local, lanes.cloud):
        close = getattr(backend, "aclose", None)
        if close is not None:
            await close()


async def run_async(
    paths: Sequence[Path],
    *,
    root: Path,
    settings: Settings,
    session: str | None = None,
    dry_run: bool = False,
    on_start: Callable[[list[Routed]], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    lanes: Lanes | None = None,
    env: Mapping[str, str] | None = None,
    batch_id: str | None = None,
    shadow_rate: float = 0.0,
    cloud_batch: bool = False,
) -> RunReport:
    """Load, route and run every job; every attempt lands in the ledger as it happens."""
    env = os.environ if env is None else env
    root = root.resolve()
    jobs = load_jobs(paths, root)
    run_id = new_run_id()
    session = session_id(session, env) or run_id
    ledger = Ledger(settings.ledger_path)
    try:
        history = ledger.history({j.task.name for j in jobs})
        from ollama_dist.semantic import second_opinion

        router = Router(settings.router, second_opinion=second_opinion(settings, ledger))
        routed = [Routed(job, router.decide(job, history.get(job.task.name))) for job in jobs]
        if on_start is not None:
            on_start(routed)
        if dry_run:
            return RunReport(run_id, session, [Outcome(r.job, r.decision) for r in routed], dry_run=True)
        prices = PriceTable.load(settings.prices)
        prices.baseline(settings.models.cloud, Usage())  # fail early on an unpriced cloud model
        head = git_head(root)
        ledger.start_run(run_id, session, str(root), head, len(jobs), batch_id)
        lanes = lanes or build_lanes(settings)
        ctx = RunContext(run_id, session, root, settings.home / "runs" / run_id, head, settings.ledger.store_text)
        dispatcher = Dispatcher(settings, lanes, ledger, prices, Breaker(settings.breaker), ctx, on_event=on_event,
                                shadow_rate=shadow_rate, cloud_batch=cloud_batch,
                                batch_poll_s=settings.cloud.batch_poll_s)
        report = RunReport(run_id, session, [])
        try:
            report.outcomes = await dispatcher.run([(r.job, r.decision) for r in routed])
        except asyncio.CancelledError:
            report.interrupted = True
            raise
        finally:
            await _close(lanes)
            ledger.finish_run(run_id, report.exit_code)
            from ollama_dist import telemetry

            telemetry.export_run(ledger.connection, run_id)  # nothing unless OpenTelemetry is set up
        if settings.cloud.api_key is None and any(o.status == "failed" and any(
                a.reason == "auth" for a in o.attempts) for o in report.outcomes):
            report.notes.append("jobs that need Claude failed: set ANTHROPIC_API_KEY to let them run "
                                "(and to escalate invalid local answers)")
        return report
    finally:
        ledger.close()


def run(paths: Sequence[Path], **kwargs: Any) -> RunReport:
    """Synchronous wrapper: the one `asyncio.run` at the edge."""
    return asyncio.run(run_async(paths, **kwargs))
