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
from ollama_dist.config import Settings, load_settings
from ollama_dist.errors import EXIT_INTERRUPTED, EXIT_JOB_FAILED, EXIT_OK, InputError, OllamaDistError, RunDied
from ollama_dist.ledger.pricing import PriceTable, Usage
from ollama_dist.ledger.store import Ledger
from ollama_dist.routing.router import Decision, Router, TaskHistory, estimate_tokens
from ollama_dist.run.breaker import Breaker
from ollama_dist.run.dispatch import Dispatcher, Event, Outcome, RunContext
from ollama_dist.run.lanes import Lanes
from ollama_dist.tasks.loader import load_jobs
from ollama_dist.tasks.model import Job, TaskSource


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
            "error": self.job.error,  # the job will fail without a model call (its input is unreadable)
            "notes": list(self.job.notes),
        }


def route(
    paths: Sequence[TaskSource],
    *,
    root: Path | None = None,
    settings: Settings | None = None,
    history: dict[str, TaskHistory] | None = None,
    allow_outside_root: bool = False,
) -> list[Routed]:
    """Load the task files under `paths` and decide a lane for every job (inputs stay inside
    `root` unless `allow_outside_root`). Routing writes nothing: the ledger is opened read-only."""
    from ollama_dist.routing.second_opinion import second_opinion

    settings = settings or load_settings()
    root = (root or Path.cwd()).resolve()
    jobs = load_jobs(paths, root, allow_outside_root=allow_outside_root)
    ledger = Ledger(settings.ledger_path, read_only=True) if settings.ledger_path.exists() else None
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
        return EXIT_OK if all(o.status in ("ok", "handed_back") for o in self.outcomes) else EXIT_JOB_FAILED

    def totals(self) -> dict[str, Any]:
        attempts = [a for o in self.outcomes for a in o.attempts + o.shadow]
        cost = sum(a.cost_usd for a in attempts)
        # a handed-back job costs the caller about what it would have cost here: in the baseline
        # (the whole run on Claude), never in the savings (what the local lane did)
        handed = sum(o.handed_back["estimated_cost_usd"] for o in self.outcomes if o.handed_back)
        baseline = sum(a.baseline_cost_usd for a in attempts)
        checks: dict[str, int] = {}
        for o in self.outcomes:
            for name in o.checks if o.status == "ok" else ():
                checks[name] = checks.get(name, 0) + 1
        escalations: dict[str, int] = {}
        for o in self.outcomes:
            reason = o.escalation_reason
            if reason is not None:
                escalations[reason] = escalations.get(reason, 0) + 1
        return {
            "jobs": len(self.outcomes),
            "ok": sum(o.status == "ok" for o in self.outcomes),
            "failed": sum(o.status == "failed" for o in self.outcomes),
            "handed_back": sum(o.status == "handed_back" for o in self.outcomes),
            "routed_local": sum(o.decision.target == "local" for o in self.outcomes),
            "routed_cloud": sum(o.decision.target == "cloud" for o in self.outcomes),
            "answered_local": sum(o.answered_locally for o in self.outcomes),
            "checks": checks,  # ok jobs per check passed: what "ok" proved across the run
            "agree_local_s": round(sum(o.agreement["local_s"] for o in self.outcomes if o.agreement), 3),
            "escalated": sum(o.escalated for o in self.outcomes),
            "escalation_reasons": escalations,
            "cache_hits": sum(o.cache_hit for o in self.outcomes),
            "input_tokens": sum(a.input_tokens for a in attempts),
            "output_tokens": sum(a.output_tokens for a in attempts),
            "cost_usd": round(cost, 6),
            "handed_back_cost_usd_estimated": round(handed, 6),
            "baseline_cost_usd": round(baseline + handed, 6),
            "saved_usd": round(baseline - cost, 6),
            "saved_pct": round(100 * (baseline - cost) / (baseline + handed), 1) if baseline + handed else 0.0,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "session": self.session,
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
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
        "escalation_reason": o.escalation_reason,  # ungrounded, disagree, cut_off, invalid, unreachable, ...
        "cache_hit": o.cache_hit,
        "kept_edit": o.kept_edit,
        "reason": o.reason,
        "output": o.output_path,
        "value": o.value,
        "checks": list(o.checks),  # what "ok" proved: format, schema, pattern, grounded, agree
        "local_s": round(sum(a.latency_s for a in o.attempts if a.lane == "local"), 3),
        **({"agreement": o.agreement} if o.agreement is not None else {}),
        "input_tokens": sum(a.input_tokens for a in o.attempts),
        "output_tokens": sum(a.output_tokens for a in o.attempts),
        "cost_usd": round(sum(a.cost_usd for a in o.attempts), 8),
        "baseline_cost_usd": round(sum(a.baseline_cost_usd for a in o.attempts), 8),
        "shadow": [{"model": a.model, "outcome": a.outcome, "cost_usd": round(a.cost_usd, 8)} for a in o.shadow],
        **({"handed_back": o.handed_back} if o.handed_back is not None else {}),
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


def cloud_backend(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """`cloud.backend` when set; else `api` with a key, `claude-code` with `claude` on the PATH, else `api`."""
    from ollama_dist.backends import claude_code

    if settings.cloud.backend is not None:
        return settings.cloud.backend
    if settings.cloud.api_key is not None and settings.cloud.api_key.get_secret_value():
        return "api"
    return "claude-code" if claude_code.available(env) else "api"


def build_lanes(settings: Settings, *, hand_back: bool = False) -> Lanes:
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
    slots = o.concurrency_per_host * max(1, len(o.hosts) + len(o.openai_compat))
    if hand_back:  # the caller is Claude: nothing goes to the API (see ollama_dist.run.handback)
        from ollama_dist.run.handback import CallerBackend

        return Lanes(FallbackBackend(local) if local else None, CallerBackend(), local_slots=slots,
                     cloud_slots=settings.cloud.concurrency, cloud_ready=False)
    key = settings.cloud.api_key.get_secret_value() if settings.cloud.api_key else ""
    if cloud_backend(settings) == "claude-code":  # a Claude Code log-in (subscription): `claude -p`
        from ollama_dist.backends.claude_code import ClaudeCodeBackend

        return Lanes(FallbackBackend(local) if local else None, ClaudeCodeBackend(
            max_budget_usd=settings.cloud.max_budget_usd), local_slots=slots,
            cloud_slots=settings.cloud.concurrency, cloud_ready=True)
    cloud = ClaudeBackend(api_key=key, base_url=settings.cloud.base_url, max_retries=settings.cloud.max_retries)
    if key:
        cloud.client()  # import the SDK now (about a second), not in the middle of the first cloud job
    return Lanes(FallbackBackend(local) if local else None, cloud, local_slots=slots,
                 cloud_slots=settings.cloud.concurrency, cloud_ready=bool(key))


async def _close(lanes: Lanes) -> None:
    for backend in (lanes.local, lanes.cloud):
        close = getattr(backend, "aclose", None)
        if close is not None:
            await close()


async def run_async(
    paths: Sequence[TaskSource],
    *,
    root: Path,
    settings: Settings,
    session: str | None = None,
    dry_run: bool = False,
    on_start: Callable[[list[Routed]], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    on_interrupt: Callable[[RunReport], None] | None = None,
    lanes: Lanes | None = None,
    env: Mapping[str, str] | None = None,
    batch_id: str | None = None,
    shadow_rate: float = 0.0,
    cloud_batch: bool = False,
    allow_outside_root: bool = False,
    force: bool = False,
    hand_back: bool = False,
) -> RunReport:
    """Load, route and run every job; every attempt lands in the ledger as it happens.

    Cancelled (Ctrl-C, SIGTERM at the CLI), the run is recorded as interrupted and
    `on_interrupt` gets the report of the jobs that finished before CancelledError goes on.
    An unexpected error is recorded as the run's death and raised as RunDied. `force`
    overwrites outputs edited since they were written (else they are kept, unasked).
    """
    env = os.environ if env is None else env
    root = root.resolve()
    jobs = load_jobs(paths, root, allow_outside_root=allow_outside_root)
    notes = [f"{job.id}: {note}" for job in jobs for note in job.notes]
    run_id = new_run_id()
    session = session_id(session, env) or run_id
    ledger = Ledger(settings.ledger_path)
    try:
        history = ledger.history({j.task.name for j in jobs})
        from ollama_dist.routing.second_opinion import second_opinion

        router = Router(settings.router, second_opinion=second_opinion(settings, ledger))
        routed = [Routed(job, router.decide(job, history.get(job.task.name))) for job in jobs]
        if on_start is not None:
            on_start(routed)
        if dry_run:
            return RunReport(run_id, session, [Outcome(r.job, r.decision) for r in routed], dry_run=True,
                             notes=notes)
        prices = PriceTable.load(settings.prices)
        prices.baseline(settings.models.cloud, Usage())  # fail early on an unpriced cloud model
        head = git_head(root)
        ledger.start_run(run_id, session, str(root), head, len(jobs), batch_id)
        ctx = RunContext(run_id, session, root, settings.home / "runs" / run_id, head, settings.ledger.store_text,
                         force=force)
        report = RunReport(run_id, session, [], notes=notes)
        await _dispatch(report, routed, _Run(settings, ledger, prices, ctx, lanes, on_event, on_interrupt,
                                             shadow_rate, cloud_batch, hand_back))
        if settings.cloud.api_key is None and any(o.status == "failed" and any(
                a.reason == "auth" for a in o.attempts) for o in report.outcomes):
            report.notes.append("jobs that need Claude failed: set ANTHROPIC_API_KEY to let them run "
                                "(and to escalate invalid local answers), or log in to Claude Code (`claude`, "
                                "then /login) for `cloud.backend: claude-code`")
        report.notes.extend(o.reason for o in report.outcomes if o.kept_edit and o.reason)
        return report
    finally:
        ledger.close()


@dataclass(frozen=True)
class _Run:
    """What the dispatch of one started run needs."""

    settings: Settings
    ledger: Ledger
    prices: PriceTable
    ctx: RunContext
    lanes: Lanes | None
    on_event: Callable[[Event], None] | None
    on_interrupt: Callable[[RunReport], None] | None
    shadow_rate: float
    cloud_batch: bool
    hand_back: bool = False


async def _dispatch(report: RunReport, routed: Sequence[Routed], run: _Run) -> None:
    """Run the jobs of a started run and record how it ended: finished, interrupted or died."""
    lanes: Lanes | None = None
    dispatcher: Dispatcher | None = None
    code: int | None = None  # set when the run ends early
    error: str | None = None
    try:
        lanes = run.lanes or build_lanes(run.settings, hand_back=run.hand_back)
        if run.cloud_batch and lanes.cloud.name != "claude":
            raise InputError(f"--cloud-batch needs the API backend (cloud.backend: api), not {lanes.cloud.name}")
        dispatcher = Dispatcher(run.settings, lanes, run.ledger, run.prices, Breaker(run.settings.breaker), run.ctx,
                                on_event=run.on_event, shadow_rate=run.shadow_rate, cloud_batch=run.cloud_batch,
                                batch_poll_s=run.settings.cloud.batch_poll_s)
        report.outcomes = await dispatcher.run([(r.job, r.decision) for r in routed])
    except asyncio.CancelledError:
        report.interrupted, error = True, "interrupted"
        report.outcomes = list(dispatcher.finished) if dispatcher else []
        report.notes.append(f"interrupted: {len(report.outcomes)} of {len(routed)} job(s) finished; "
                            "a re-run reuses their answers")
        if run.on_interrupt is not None:
            run.on_interrupt(report)
        raise
    except Exception as exc:
        report.outcomes = list(dispatcher.finished) if dispatcher else []
        code = exc.exit_code if isinstance(exc, OllamaDistError) else EXIT_JOB_FAILED
        error = f"died: {type(exc).__name__}"  # the kind only: a message may quote prompts or answers
        if isinstance(exc, OllamaDistError):
            raise
        raise RunDied(f"run {run.ctx.run_id} stopped on an unexpected error: {type(exc).__name__}: {exc}",
                      hint="the ledger records the run as died; answers recorded before it are kept and a "
                           "re-run reuses them. This is a bug in ollama-dist: please report it") from exc
    finally:
        if lanes is not None:
            await _close(lanes)
        run.ledger.finish_run(run.ctx.run_id, report.exit_code if code is None else code, error)
        from ollama_dist.run import telemetry

        telemetry.export_run(run.ledger.connection, run.ctx.run_id)  # nothing unless OpenTelemetry is set up


def run(paths: Sequence[TaskSource], **kwargs: Any) -> RunReport:
    """Synchronous wrapper: the one `asyncio.run` at the edge."""
    return asyncio.run(run_async(paths, **kwargs))
