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
from ollama_dist.ledger.tally import Tally
from ollama_dist.routing.budget import Budget
from ollama_dist.routing.router import Decision, Router, TaskHistory, estimate_tokens
from ollama_dist.run.breaker import Breaker
from ollama_dist.run.dispatch import Dispatcher, Event, Outcome, Refresh as Refresh, RunContext
from ollama_dist.run.lanes import Lanes
from ollama_dist.run.totals import job_json, rows, totals
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
            # the second opinion, when it was asked: P(local) and the labelled instructions nearest this one
            "p_local": d.p_local,
            "nearest": [n.model_dump() for n in d.nearest],
            "moved_from": d.moved_from,  # "cloud" when the budget moved a borderline cloud decision local
            "error": self.job.error,  # the job will fail without a model call (its input is unreadable)
            "notes": list(self.job.notes),
        }


def decide(jobs: Sequence[Job], router: Router, history: Mapping[str, TaskHistory], budget: Budget) -> list[Routed]:
    """The router's decision for each job, then the budget's word on it (routing.budget)."""
    routed = []
    for job in jobs:
        past = history.get(job.task.name)
        routed.append(Routed(job, budget.review(job, router.decide(job, past), past)))
    return routed


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
        return decide(jobs, router, history, Budget.load(settings, ledger))
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
    baseline_usd: float = 0.0  # about what it costs on Claude: what a run counts for a job it cannot answer

    def as_json(self) -> dict[str, object]:
        return {**self.routed.as_json(), "estimate": {
            "input_tokens": self.input_tokens, "max_output_tokens": self.max_output_tokens,
            "cloud_cost_usd_at_most": self.cloud_cost_usd_at_most, "baseline_usd": self.baseline_usd}}


def estimate(routed: Sequence[Routed], settings: Settings) -> list[Estimate]:
    """`--dry-run`: token and cost estimates, with no model called. `baseline_usd` is the estimate
    a run's baseline counts for a job that ends unanswered (none for one whose input is unreadable)."""
    from ollama_dist.run.handback import estimated_tokens

    prices = PriceTable.load(settings.prices)
    out = []
    for r in routed:
        task = r.job.task
        tokens = estimate_tokens((task.system or "") + r.job.prompt)
        model = task.models.cloud or settings.models.cloud
        expected = 0.0 if r.job.error is not None else prices.cost(model, Usage(*estimated_tokens(r.job, None)))
        out.append(Estimate(r, tokens, task.max_tokens, prices.cost(model, Usage(tokens, task.max_tokens)),
                            expected))
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
    unfinished: list[Outcome] = field(default_factory=list)  # begun by an interrupted run, never ended

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK if all(o.status in ("ok", "handed_back") for o in self.outcomes) else EXIT_JOB_FAILED

    def totals(self) -> dict[str, Any]:
        return totals(self.outcomes, self.unfinished)

    def tally(self) -> Tally:
        """The run's figures as `router-status` defines them (`ollama_dist.ledger.tally`)."""
        return Tally.of(rows([*self.outcomes, *self.unfinished]))

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
    """`cloud.backend` when set; else `api` with a key, `claude-code` with a logged-in `claude` on the
    PATH (or one too old to say), else `api` (whose missing key the run's note names)."""
    from ollama_dist.backends import claude_code

    if settings.cloud.backend is not None:
        return settings.cloud.backend
    if settings.cloud.api_key is not None and settings.cloud.api_key.get_secret_value():
        return "api"
    return "claude-code" if claude_code.available(env) and claude_code.logged_in(env) is not False else "api"


def build_lanes(settings: Settings, *, hand_back: bool = False) -> Lanes:
    from ollama_dist.backends import embedded
    from ollama_dist.backends.claude import ClaudeBackend
    from ollama_dist.backends.claude_endpoint import check_not_ollama
    from ollama_dist.backends.local import FallbackBackend
    from ollama_dist.backends.ollama import OllamaBackend
    from ollama_dist.backends.openai_compat import OpenAICompatBackend

    o = settings.ollama
    local: list[Backend] = []
    if o.hosts:
        local.append(OllamaBackend(o.hosts, slots={h: o.slots_for(h) for h in o.hosts}, keep_alive=o.keep_alive))
    local.extend(OpenAICompatBackend(url, name=f"openai_compat:{url}") for url in o.openai_compat)
    if o.embedded and embedded.available():
        path = Path(o.embedded_model_path).expanduser() if o.embedded_model_path else None
        local.append(embedded.EmbeddedBackend(path, home=settings.home / "cache"))
    slots = sum(o.slots_for(h) for h in o.hosts) + o.concurrency_per_host * len(o.openai_compat)
    slots = slots or o.concurrency_per_host  # the embedded tier alone
    if hand_back:  # the caller is Claude: nothing goes to the API (see ollama_dist.run.handback)
        from ollama_dist.run.handback import CallerBackend

        return Lanes(FallbackBackend(local) if local else None, CallerBackend(), local_slots=slots,
                     cloud_slots=settings.cloud.concurrency, cloud_ready=False)
    key = settings.cloud.api_key.get_secret_value() if settings.cloud.api_key else ""
    check_not_ollama(settings.cloud.base_url, [*o.hosts, *o.openai_compat], source=settings.source_of("cloud.base_url"))
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
    refresh: Refresh | None = None,
) -> RunReport:
    """Load, route and run every job; every attempt lands in the ledger as it happens.

    Cancelled (Ctrl-C, SIGTERM at the CLI), the run is recorded as interrupted and
    `on_interrupt` gets the report of the jobs that finished before CancelledError goes on.
    An unexpected error is recorded as the run's death and raised as RunDied. `force`
    overwrites outputs edited since they were written (else they are kept, unasked); `refresh`
    discards the cached answers of the tasks it covers, so they are asked again.
    """
    env = os.environ if env is None else env
    root = root.resolve()
    jobs = load_jobs(paths, root, allow_outside_root=allow_outside_root)
    refresh = refresh or Refresh()
    refresh.check(j.task.name for j in jobs)
    notes = [f"{job.id}: {note}" for job in jobs for note in job.notes]
    run_id = new_run_id()
    session = session_id(session, env) or run_id
    ledger = Ledger(settings.ledger_path)
    try:
        history = ledger.history({j.task.name for j in jobs})
        from ollama_dist.routing.second_opinion import second_opinion

        router = Router(settings.router, second_opinion=second_opinion(settings, ledger))
        routed = decide(jobs, router, history, Budget.load(settings, ledger))
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
                         force=force, refresh=refresh)
        report = RunReport(run_id, session, [], notes=notes)
        await _dispatch(report, routed, _Run(settings, ledger, prices, ctx, lanes, on_event, on_interrupt,
                                             shadow_rate, cloud_batch, hand_back))
        if settings.cloud.api_key is None and any(o.status == "failed" and any(
                a.reason == "auth" for a in o.attempts) for o in report.outcomes):
            from ollama_dist.backends import claude_code

            found = (" (the `claude` on the PATH is not logged in: `claude auth status`)"
                     if settings.cloud.backend is None and claude_code.available() else "")
            report.notes.append("jobs that need Claude failed: set ANTHROPIC_API_KEY to let them run "
                                "(and to escalate invalid local answers), or log in to Claude Code (`claude`, "
                                f"then /login) for `cloud.backend: claude-code`{found}")
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
        report.notes.extend(dispatcher.notes)
        if dispatcher.refreshed:
            report.notes.append(f"--refresh: {dispatcher.refreshed} cached answer(s) discarded and asked again")
    except asyncio.CancelledError:
        report.interrupted, error = True, "interrupted"
        report.outcomes = list(dispatcher.finished) if dispatcher else []
        report.notes.extend(dispatcher.notes if dispatcher else [])
        report.unfinished = dispatcher.unfinished() if dispatcher else []
        report.notes.append(f"interrupted: {len(report.outcomes)} of {len(routed)} job(s) finished; "
                            "a re-run reuses their answers")
        if run.on_interrupt is not None:
            run.on_interrupt(report)
        raise
    except Exception as exc:
        report.outcomes = list(dispatcher.finished) if dispatcher else []
        report.unfinished = dispatcher.unfinished() if dispatcher else []
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
