"""Concurrency and the escalation ladder: routed jobs in, Outcomes out.

Two lanes run side by side, each behind its own semaphore: local (Ollama, or the
embedded model) and cloud (Claude). A local job gets at most two attempts, the
second told why the first was invalid; then it climbs to Claude. It climbs at once
when the local backend is unreachable, times out, is busy or lacks the model, or
when the latency breaker is open. Every attempt is recorded in the ledger as it
happens, so a killed run loses nothing already answered.

Failures stay with their job: an unexpected error fails that job (recorded as
`internal_error`, the run goes on); an output that cannot be written fails its job
but its answer is recorded and kept in the run's folder; an output edited by hand
since it was written is kept and nothing is asked (unless `--force`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from ollama_dist.backends.base import Backend, Completion, Message, Request
from ollama_dist.checks.validate import Verdict, feedback, reason_kind, validate
from ollama_dist.config import Settings
from ollama_dist.errors import BackendError, BreakerOpen, LedgerError, OutputError
from ollama_dist.ledger.pricing import PriceTable, Usage
from ollama_dist.ledger.store import Attempt, CachedAnswer, Ledger
from ollama_dist.routing.router import Decision
from ollama_dist.run.breaker import Breaker
from ollama_dist.run.handback import CALLER, HandedBack, caller_answer, estimated_tokens, work
from ollama_dist.run.lanes import Lanes
from ollama_dist.run.outcome import (
    Event as Event,  # re-exported: api, render
    Outcome as Outcome,
)
from ollama_dist.run.outputs import Delivery, deliver, digest, edited, read_text, read_verified, write_atomic
from ollama_dist.tasks.model import Job

TRUNCATED = frozenset({"length", "max_tokens", "model_context_window_exceeded"})
LOCAL_ATTEMPTS = 2
CLOUD_ATTEMPTS = 2


@dataclass(frozen=True)
class RunContext:
    run_id: str
    session: str
    root: Path
    out_dir: Path
    git_head: str | None = None
    store_text: bool = False
    force: bool = False  # overwrite outputs edited since they were written


@dataclass(frozen=True)
class Tier:
    lane: Literal["local", "cloud"]
    backend: Backend
    model: str
    attempts: int
    effort: str | None = None


@dataclass
class _Climb:
    """One job's way up the ladder: its attempt count, the reasons so far, its last ledger row."""

    outcome: Outcome
    key: str
    number: int = 0
    last_row: int | None = None
    reasons: list[str] = field(default_factory=list)
    tier: Tier | None = None  # the tier being tried


def models_key(local: str, escalation: str, cloud: str) -> str:
    return hashlib.sha256(f"{local}|{escalation}|{cloud}".encode()).hexdigest()[:16]


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        lanes: Lanes,
        ledger: Ledger,
        prices: PriceTable,
        breaker: Breaker,
        run: RunContext,
        *,
        on_event: Callable[[Event], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        shadow_rate: float = 0.0,
        cloud_batch: bool = False,
        batch_poll_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.lanes = lanes
        self.ledger = ledger
        self.prices = prices
        self.breaker = breaker
        self.run_ctx = run
        self.on_event = on_event
        self.clock = clock
        self.shadow_rate = shadow_rate
        self.cloud_batch = cloud_batch
        self.batch_poll_s = batch_poll_s
        self._openings_seen = 0
        self.finished: list[Outcome] = []  # in the order they finished: an interrupted run's report

    async def run(self, routed: Sequence[tuple[Job, Decision]]) -> list[Outcome]:
        if not self.cloud_batch:
            return list(await asyncio.gather(*(self._job(job, decision) for job, decision in routed)))
        batched = [i for i, (j, d) in enumerate(routed) if d.target == "cloud" and j.error is None]
        direct = [i for i in range(len(routed)) if i not in set(batched)]
        results = await asyncio.gather(
            asyncio.gather(*(self._job(*routed[i]) for i in direct)),
            self._batch([routed[i] for i in batched]),
        )
        by_index = dict(zip(direct, results[0])) | dict(zip(batched, results[1]))
        return [by_index[i] for i in range(len(routed))]

    # ------------------------------------------------------------ one job

    def _models(self, job: Job) -> tuple[str, str, str]:
        m = self.settings.models
        return (job.task.models.local or m.local, job.task.models.cloud or m.escalation,
                job.task.models.cloud or m.cloud)

    def _ladder(self, job: Job, decision: Decision) -> list[Tier]:
        local_model, escalation_model, cloud_model = self._models(job)
        cloud_for_local = Tier("cloud", self.lanes.cloud, escalation_model, CLOUD_ATTEMPTS,
                               self.settings.cloud.effort_escalated)
        if decision.target == "cloud":
            return [Tier("cloud", self.lanes.cloud, cloud_model, CLOUD_ATTEMPTS)]
        tiers = [cloud_for_local]
        if self.lanes.local is not None:
            tiers.insert(0, Tier("local", self.lanes.local, local_model, LOCAL_ATTEMPTS))
        return tiers

    async def _job(self, job: Job, decision: Decision) -> Outcome:
        climb = _Climb(Outcome(job, decision), models_key(*self._models(job)))
        if job.error is not None:
            self._refuse(climb)
            return climb.outcome
        try:
            if not self._kept_edit(climb.outcome):
                await self._answer(climb)
        except LedgerError:
            raise  # nothing can be recorded: the run stops
        except Exception as exc:  # an unexpected error in one job fails that job, not the run
            self._crashed(climb, exc)
        self._emit(climb.outcome)
        return climb.outcome

    async def _answer(self, climb: _Climb) -> None:
        job, decision = climb.outcome.job, climb.outcome.decision
        hit = self.ledger.cached(job.task.fingerprint(), job.input_hash, climb.key) or caller_answer(
            self.ledger, job, climb.key)  # a job handed back before and answered by the caller: done
        if hit is None or not self._reuse(climb.outcome, hit, climb.key):
            for tier in self._ladder(job, decision):
                if await self._try_tier(climb, tier):
                    break
            else:
                self._fail(climb)

    def _kept_edit(self, outcome: Outcome) -> bool:
        """An output changed since it was written is the user's: keep it, ask nothing (unless --force)."""
        path = outcome.job.write_path
        if self.run_ctx.force or path is None or not edited(path, self.ledger.written(str(path))):
            return False
        text = read_text(path)
        verdict = validate(text, outcome.job.task.output.spec()) if text is not None else None
        outcome.status, outcome.kept_edit, outcome.output_path = "ok", True, str(path)
        outcome.value = verdict.value if verdict is not None and verdict.ok else None
        outcome.reason = (f"kept {path}: it changed since ollama-dist wrote it, so nothing was asked; "
                          "run with --force to answer again and overwrite it")
        return True

    def _crashed(self, climb: _Climb, exc: Exception) -> None:
        """Record and report an unexpected error in one job; the rest of the run goes on."""
        outcome = climb.outcome
        what = f"stopped on an unexpected error: {type(exc).__name__}: {exc}"
        outcome.reason = "; ".join([*climb.reasons, what])
        if outcome.status == "ok":
            return  # the answer was written and recorded (the error came after, e.g. in a shadow call)
        outcome.status = "failed"
        tier = climb.tier or self._ladder(outcome.job, outcome.decision)[0]
        # the ledger gets the error's kind only: its message may quote the prompt or the answer
        try:
            self._record(outcome, climb.key, tier, climb.number + 1, "error",
                         f"internal_error: {type(exc).__name__}", None, final=True)
        except LedgerError:
            raise
        except Exception:  # the row could not be written either (the same bad text): the job still fails
            pass

    def _refuse(self, climb: _Climb) -> None:
        """A job whose input could not be read fails alone, with no model call, and says why."""
        outcome, job = climb.outcome, climb.outcome.job
        model = self._models(job)[0 if outcome.decision.target == "local" else 2]
        attempt = self._attempt(outcome, climb.key, lane=outcome.decision.target, backend="none", model=model,
                                number=1, result="skipped", reason=f"input: {job.error}", final=True)
        self.ledger.record(attempt)
        outcome.attempts.append(attempt)
        outcome.status, outcome.reason = "failed", job.error
        self._emit(outcome)

    def _admitted(self, climb: _Climb, tier: Tier) -> bool:
        """The breaker's word before a job joins the local queue (never without a cloud to go to)."""
        if tier.lane != "local" or not self.lanes.cloud_ready:
            return True
        allowed, why = self.breaker.allow(self.lanes.local_waiting, self.lanes.local_slots)
        self._note_breaker()
        if not allowed:
            climb.number += 1
            climb.last_row = self._record(climb.outcome, climb.key, tier, climb.number, "skipped", why, None)
            climb.reasons.append(f"local skipped: {why}")
        return allowed

    async def _try_tier(self, climb: _Climb, tier: Tier) -> bool:
        """Up to `tier.attempts` tries on one tier, each told why the last was invalid. True once valid."""
        climb.tier = tier
        if not self._admitted(climb, tier):
            return False
        job, outcome, key = climb.outcome.job, climb.outcome, climb.key
        history: tuple[Message, ...] = ()
        for _ in range(tier.attempts):
            climb.number += 1
            started = self.clock()
            try:
                completion = await self._call(tier, self._request(job, tier, history))
            except BreakerOpen as exc:
                climb.last_row = self._record(outcome, key, tier, climb.number, "skipped", exc.reason, None)
                climb.reasons.append(f"local skipped: {exc.message}")
                return False
            except HandedBack:
                self._hand_back(climb)
                return True
            except BackendError as exc:
                elapsed = self.clock() - started
                if tier.lane == "local":
                    self.breaker.record(elapsed, ok=False)
                    self._note_breaker()
                climb.last_row = self._record(outcome, key, tier, climb.number, "error", exc.reason, None,
                                              latency=elapsed)
                climb.reasons.append(f"{tier.lane} {tier.model}: {exc.reason}: {exc.message}")
                return False
            if tier.lane == "local":
                self.breaker.record(completion.latency_s, ok=True)
                self._note_breaker()
                self._spill()
            verdict = self._verdict(job, completion)
            if verdict.ok:
                self._accept(outcome, key, tier, climb.number, completion, verdict)
                if tier.lane == "local" and self._shadowed(job):
                    await self._shadow(outcome, key, climb.number + 1)
                return True
            climb.last_row = self._record(outcome, key, tier, climb.number, "invalid", self._kept(verdict.reason),
                                          completion, fallback=verdict.fallback)
            climb.reasons.append(f"{tier.lane} {completion.model}: invalid: {verdict.reason}")
            history = (Message(role="assistant", content=completion.text[:4000]),
                       Message(role="user", content=feedback(verdict, job.task.output.spec())))
        return False

    def _hand_back(self, climb: _Climb) -> None:
        """The cloud lane is the caller: record the job as handed back (no cost, estimated tokens, and
        its estimate as its baseline: the caller pays about that, so it is never counted as saved)."""
        outcome = climb.outcome
        local_out = [a.output_tokens for a in outcome.attempts if a.lane == "local" and a.output_tokens]
        tokens_in, tokens_out = estimated_tokens(outcome.job, local_out[-1] if local_out else None)
        estimate = self.prices.baseline(self._models(outcome.job)[2], Usage(tokens_in, tokens_out))
        attempt = self._attempt(outcome, climb.key, lane="cloud", backend=CALLER, model=CALLER,
                                number=climb.number, result="handed_back", reason="; ".join(climb.reasons) or None,
                                final=True, usage=Usage(tokens_in, tokens_out), baseline=estimate)
        attempt = replace(attempt, tokens_estimated=True)
        self.ledger.record(attempt)
        outcome.attempts.append(attempt)
        outcome.status, outcome.reason = "handed_back", "handed back to the caller"
        outcome.handed_back = work(outcome.job, climb.reasons, self.run_ctx.root, input_tokens=tokens_in,
                                   estimated_cost_usd=estimate)

    def _fail(self, climb: _Climb) -> None:
        outcome = climb.outcome
        outcome.status = "failed"
        outcome.reason = "; ".join(climb.reasons) or "no tier could answer"
        if climb.last_row is not None:
            self.ledger.mark_final(climb.last_row)
            outcome.attempts[-1] = replace(outcome.attempts[-1], final=True)

    def _shadowed(self, job: Job) -> bool:
        """A stable share of local answers is also asked of the cloud (same job, same choice)."""
        if self.shadow_rate <= 0 or not self.lanes.cloud_ready:
            return False
        draw = int(hashlib.sha256(job.input_hash.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return draw < self.shadow_rate

    async def _shadow(self, outcome: Outcome, key: str, number: int) -> None:
        """Ask the cloud too and record its answer beside the local one; the user keeps the local answer."""
        job = outcome.job
        tier = Tier("cloud", self.lanes.cloud, self._models(job)[1], 1, self.settings.cloud.effort_escalated)
        try:
            completion = await self._call(tier, self._request(job, tier, ()))
        except BackendError as exc:
            self._record(outcome, key, tier, number, "error", f"shadow: {exc.reason}", None)
            return
        verdict = self._verdict(job, completion)
        self._record(outcome, key, tier, number, "ok" if verdict.ok else "invalid",
                     "shadow" if verdict.ok else f"shadow: {self._kept(verdict.reason)}", completion,
                     fallback=verdict.fallback, answer=verdict.text if verdict.ok else None, shadow=True)

    async def _batch(self, routed: Sequence[tuple[Job, Decision]]) -> list[Outcome]:
        """Cloud-routed jobs through the Message Batches API: half price, answers within 24 h.

        Results are validated and recorded like any answer; a failed result is a failed job
        (nothing escalates further from a batch).
        """
        from ollama_dist.backends.claude import ClaudeBackend
        from ollama_dist.backends.claude_batch import run_batch

        outcomes = [Outcome(job, decision) for job, decision in routed]
        pending: list[tuple[str, Outcome, str, Tier, Request]] = []
        for i, outcome in enumerate(outcomes):
            key = models_key(*self._models(outcome.job))
            hit = self.ledger.cached(outcome.job.task.fingerprint(), outcome.job.input_hash, key)
            if hit is not None and self._reuse(outcome, hit, key):
                self._emit(outcome)
                continue
            tier = self._ladder(outcome.job, outcome.decision)[0]
            pending.append((f"job-{i}", outcome, key, tier, self._request(outcome.job, tier, ())))
        if not pending:
            return outcomes
        backend = self.lanes.cloud
        if not isinstance(backend, ClaudeBackend):
            raise TypeError("--cloud-batch needs the Claude backend")
        results: dict[str, object]
        try:
            results = dict(await run_batch(backend, [(cid, req) for cid, _, _, _, req in pending],
                                           first_poll_s=self.batch_poll_s))
        except BackendError as exc:
            results = {cid: exc for cid, *_ in pending}
        for cid, outcome, key, tier, _ in pending:
            result = results[cid]
            if isinstance(result, BackendError):
                row = self._record(outcome, key, tier, 1, "error", result.reason, None, backend="claude-batch")
                outcome.reason = f"cloud batch {tier.model}: {result.reason}: {result.message}"
            else:
                assert isinstance(result, Completion)
                completion = result.model_copy(update={"backend": "claude-batch"})
                verdict = self._verdict(outcome.job, completion)
                if verdict.ok:
                    self._accept(outcome, key, tier, 1, completion, verdict, batch=True)
                    self._emit(outcome)
                    continue
                row = self._record(outcome, key, tier, 1, "invalid", self._kept(verdict.reason), completion,
                                   fallback=verdict.fallback, batch=True)
                outcome.reason = f"cloud batch {completion.model}: invalid: {verdict.reason}"
            self.ledger.mark_final(row)
            outcome.attempts[-1] = replace(outcome.attempts[-1], final=True)
            self._emit(outcome)
        return outcomes

    @staticmethod
    def _verdict(job: Job, completion: Completion) -> Verdict:
        if completion.stop_reason in TRUNCATED:
            # a cut-off answer may still parse (json-repair closes brackets): never accept it
            return Verdict(ok=False, reason=f"the answer was cut off at max_tokens ({job.task.max_tokens}); "
                                            "answer more briefly")
        return validate(completion.text, job.task.output.spec())

    async def _call(self, tier: Tier, request: Request) -> Completion:
        if tier.lane == "cloud":
            async with self.lanes.cloud_sem:
                completion = await tier.backend.complete(request)
        else:
            queue = self.lanes.local_queue
            if not await queue.enter():
                raise BreakerOpen("the expected wait for a local slot is past the breaker's threshold")
            try:
                completion = await tier.backend.complete(request)
            finally:
                queue.leave()
        # let the job that takes the freed slot send its request before this one's bookkeeping
        # (validation, the output file, the ledger row): the lane never idles on it
        await asyncio.sleep(0)
        return completion

    def _spill(self) -> None:
        """Jobs queued so deep that their expected wait passes the threshold go to the cloud."""
        queue = self.lanes.local_queue
        if not self.lanes.cloud_ready:
            return  # with nowhere to go, waiting is the best a job can do

        def too_long(position: int) -> bool:
            wait = self.breaker.expected_wait(position, queue.slots)
            return wait is not None and wait > self.settings.breaker.p95_threshold_s

        queue.review(too_long)

    def _request(self, job: Job, tier: Tier, history: tuple[Message, ...]) -> Request:
        # the schema travels as `format` / structured outputs, not in the prompt: pasted
        # into a small model's prompt it is echoed back instead of followed (measured)
        task = job.task
        schema = task.output.schema_
        return Request(
            model=tier.model, system=task.system,
            messages=(Message(role="user", content=job.prompt), *history),
            max_tokens=task.max_tokens, temperature=task.temperature, timeout_s=task.timeout_s,
            output_format=task.output.format, schema_=schema, effort=tier.effort,
        )

    # ------------------------------------------------------------ bookkeeping

    def _reuse(self, outcome: Outcome, hit: CachedAnswer, key: str) -> bool:
        job = outcome.job
        text = read_verified(hit.output_path, hit.output_hash)
        if text is None:
            return False  # the answer's file is gone or changed: answer again
        verdict = validate(text, job.task.output.spec())
        if not verdict.ok:
            return False
        path, failed = hit.output_path, None
        if job.write_path is not None and Path(path or "") != job.write_path:
            try:
                path = str(write_atomic(job.write_path, verdict.text, self.run_ctx.root))
            except OutputError as exc:  # still unwritable: the job fails, the answer stays where it is
                failed = Delivery(Path(path) if path else None, exc)
        cloud = hit.backend.startswith("claude") or hit.backend == CALLER
        attempt = self._attempt(outcome, key, lane="cloud" if cloud else "local",
                                backend=hit.backend, model=hit.model, number=1, result="cache_hit",
                                reason="write_failed" if failed else f"same input answered in job {hit.job_id}",
                                final=True, baseline=hit.baseline_cost_usd, output_path=path,
                                output_hash=hit.output_hash)
        self.ledger.record(attempt)
        outcome.attempts.append(attempt)
        outcome.status, outcome.cache_hit, outcome.output_path, outcome.value = "ok", True, path, verdict.value
        if failed is not None:
            outcome.status, outcome.reason = "failed", failed.failure(job)
        return True

    def _accept(self, outcome: Outcome, key: str, tier: Tier, number: int, completion: Completion,
                verdict: Verdict, *, batch: bool = False) -> None:
        """A valid answer: written, then recorded. A target that cannot be written fails the job, but the
        answer is recorded (and kept in the run's folder), so a re-run after the fix does not pay again."""
        job = outcome.job
        delivery = deliver(job, verdict.text, root=self.run_ctx.root, out_dir=self.run_ctx.out_dir)
        path = str(delivery.path) if delivery.path else None
        self._record(outcome, key, tier, number, "ok", "write_failed" if delivery.error else None, completion,
                     fallback=verdict.fallback, final=True, output_path=path, output_hash=digest(verdict.text),
                     answer=verdict.text, batch=batch)
        outcome.status, outcome.output_path, outcome.value = "ok", path, verdict.value
        if delivery.error is not None:
            outcome.status, outcome.reason = "failed", delivery.failure(job)

    def _record(self, outcome: Outcome, key: str, tier: Tier, number: int, result: str, reason: str | None,
                completion: Completion | None, *, fallback: str | None = None, final: bool = False,
                latency: float = 0.0, output_path: str | None = None, output_hash: str | None = None,
                answer: str | None = None, batch: bool = False, shadow: bool = False,
                backend: str | None = None) -> int:
        usage = Usage()
        cost = baseline = 0.0
        if completion is not None:
            usage = Usage(completion.input_tokens, completion.output_tokens,
                          completion.cache_creation_tokens, completion.cache_read_tokens)
            cost = self.prices.cost(completion.model, usage, batch=batch)
            if result == "ok" and not shadow:
                baseline = self.prices.baseline(self._models(outcome.job)[2], usage)
        attempt = self._attempt(
            outcome, key, lane=tier.lane,
            backend=backend or (completion.backend if completion else tier.backend.name),
            model=completion.model if completion else tier.model, number=number, result=result, reason=reason,
            final=final, baseline=baseline, output_path=output_path, output_hash=output_hash,
            fallback=fallback, usage=usage, cost=cost,
            latency=completion.latency_s if completion else latency,
            host=completion.host if completion else None, answer=answer,
        )
        if completion is not None and completion.reported_cost_usd is not None:
            attempt = replace(attempt, reported_cost_usd=completion.reported_cost_usd)
        (outcome.shadow if shadow else outcome.attempts).append(attempt)
        return self.ledger.record(attempt)

    def _attempt(self, outcome: Outcome, key: str, *, lane: str, backend: str, model: str, number: int,
                 result: str, reason: str | None, final: bool, baseline: float = 0.0,
                 output_path: str | None = None, output_hash: str | None = None, fallback: str | None = None,
                 usage: Usage = Usage(), cost: float = 0.0, latency: float = 0.0, host: str | None = None,
                 answer: str | None = None) -> Attempt:
        job, ctx = outcome.job, self.run_ctx
        store = ctx.store_text
        return Attempt(
            run_id=ctx.run_id, session=ctx.session, job_id=job.id, task=job.task.name,
            task_fingerprint=job.task.fingerprint(), input_hash=job.input_hash, models_key=key,
            routed_to=outcome.decision.target, lane=lane, backend=backend, model=model, attempt=number,
            outcome=result, reason=reason, fallback=fallback, final=final, host=host,
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cache_creation_tokens=usage.cache_write_tokens, cache_read_tokens=usage.cache_read_tokens,
            latency_s=round(latency, 4), cost_usd=cost, baseline_cost_usd=baseline, git_head=ctx.git_head,
            output_path=output_path, output_hash=output_hash,
            prompt_text=job.prompt if store else None, answer_text=answer if store else None,
            ts=time.time(),
        )

    def _kept(self, reason: str | None) -> str | None:
        """An invalid answer's reason as the ledger keeps it: without answer text unless text is stored."""
        return reason if self.run_ctx.store_text else reason_kind(reason)

    def _note_breaker(self) -> None:
        openings = self.breaker.openings
        for opening in openings[self._openings_seen:]:
            self.ledger.breaker_event(self.run_ctx.run_id, time.time(), "open", opening.reason)
        self._openings_seen = len(openings)

    def _emit(self, outcome: Outcome) -> None:
        self.finished.append(outcome)
        if self.on_event is not None:
            self.on_event(Event(outcome))
