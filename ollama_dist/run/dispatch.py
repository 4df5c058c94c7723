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
from dataclasses import dataclass, field

from ollama_dist.backends.base import Completion, Message, Request
from ollama_dist.checks.validate import Verdict, feedback, validate
from ollama_dist.config import Settings
from ollama_dist.errors import BackendError, BreakerOpen, LedgerError
from ollama_dist.ledger.pricing import PriceTable
from ollama_dist.ledger.store import Ledger
from ollama_dist.routing.router import Decision
from ollama_dist.run import agreement
from ollama_dist.run.batch import run_batched
from ollama_dist.run.breaker import Breaker
from ollama_dist.run.handback import HandedBack, caller_answer
from ollama_dist.run.ladder import (
    CLOUD_ATTEMPTS,
    LOCAL_ATTEMPTS,
    Refresh as Refresh,  # re-exported: api
    RunContext as RunContext,  # re-exported: api
    Tier,
    models_key,
    shadow_reason,
    verdict_for,
)
from ollama_dist.run.lanes import Lanes
from ollama_dist.run.outcome import (
    Event as Event,  # re-exported: api, render
    Outcome as Outcome,
)
from ollama_dist.run.outputs import edited, read_text
from ollama_dist.run.record import Recorder
from ollama_dist.tasks.model import Job


@dataclass
class _Climb:
    """One job's way up the ladder: its attempt count, the reasons so far, its last ledger row."""

    outcome: Outcome
    key: str
    number: int = 0
    last_row: int | None = None
    reasons: list[str] = field(default_factory=list)
    tier: Tier | None = None  # the tier being tried


@dataclass
class _Timing:
    """Where one call's time went: queued for its lane's slot (wait), then served (service)."""

    wait_s: float | None = None
    service_s: float = 0.0


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
        self.recorder = Recorder(ledger, prices, run, lambda job: self.models(job)[2])
        self.finished: list[Outcome] = []  # in the order they finished: an interrupted run's report
        self.notes: list[str] = []  # said once for the run (the report's notes)
        self.refreshed = 0  # cached answers discarded by --refresh

    async def run(self, routed: Sequence[tuple[Job, Decision]]) -> list[Outcome]:
        self.refreshed = self._refresh([job for job, _ in routed])
        if not self.cloud_batch:
            return list(await asyncio.gather(*(self.run_job(job, decision) for job, decision in routed)))
        batched = [i for i, (j, d) in enumerate(routed) if d.target == "cloud" and j.error is None]
        direct = [i for i in range(len(routed)) if i not in set(batched)]
        results = await asyncio.gather(
            asyncio.gather(*(self.run_job(*routed[i]) for i in direct)),
            run_batched(self, [routed[i] for i in batched]),
        )
        by_index = dict(zip(direct, results[0])) | dict(zip(batched, results[1]))
        return [by_index[i] for i in range(len(routed))]

    def _refresh(self, jobs: Sequence[Job]) -> int:
        """Discard the cached answers `--refresh` names, before any job looks: they are asked again."""
        keys = [(job.task.fingerprint(), job.input_hash, models_key(*self.models(job)))
                for job in jobs if self.run_ctx.refresh.covers(job.task.name)]
        return self.ledger.discard(self.run_ctx.run_id, keys) if keys else 0

    # ------------------------------------------------------------ one job

    def models(self, job: Job) -> tuple[str, str, str]:
        m = self.settings.models
        return (job.task.models.local or m.local, job.task.models.cloud or m.escalation,
                job.task.models.cloud or m.cloud)

    def ladder(self, job: Job, decision: Decision) -> list[Tier]:
        local_model, escalation_model, cloud_model = self.models(job)
        cloud_for_local = Tier("cloud", self.lanes.cloud, escalation_model, CLOUD_ATTEMPTS,
                               self.settings.cloud.effort_escalated)
        if decision.moved_from == "cloud":  # the router chose Claude; the budget tried local first
            cloud_for_local = Tier("cloud", self.lanes.cloud, cloud_model, CLOUD_ATTEMPTS)
        if decision.target == "cloud":
            return [Tier("cloud", self.lanes.cloud, cloud_model, CLOUD_ATTEMPTS)]
        tiers = [cloud_for_local]
        if self.lanes.local is not None:
            tiers.insert(0, Tier("local", self.lanes.local, local_model, LOCAL_ATTEMPTS))
        return tiers

    async def run_job(self, job: Job, decision: Decision) -> Outcome:
        """One job up its ladder (also for batched jobs whose endpoint has no batches route)."""
        climb = _Climb(Outcome(job, decision), models_key(*self.models(job)))
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
        self.emit(climb.outcome)
        return climb.outcome

    async def _answer(self, climb: _Climb) -> None:
        job, decision = climb.outcome.job, climb.outcome.decision
        hit = self.ledger.cached(job.task.fingerprint(), job.input_hash, climb.key) or caller_answer(
            self.ledger, job, climb.key)  # a job handed back before and answered by the caller: done
        if hit is None or not self.recorder.reuse(climb.outcome, hit, climb.key):
            for tier in self.ladder(job, decision):
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
        tier = climb.tier or self.ladder(outcome.job, outcome.decision)[0]
        # the ledger gets the error's kind only: its message may quote the prompt or the answer
        try:
            self.recorder.record(outcome, climb.key, tier, climb.number + 1, "error",
                         f"internal_error: {type(exc).__name__}", None, final=True)
        except LedgerError:
            raise
        except Exception:  # the row could not be written either (the same bad text): the job still fails
            pass

    def _refuse(self, climb: _Climb) -> None:
        """A job whose input could not be read fails alone, with no model call, and says why."""
        outcome = climb.outcome
        model = self.models(outcome.job)[0 if outcome.decision.target == "local" else 2]
        self.recorder.refuse(outcome, climb.key, model)
        self.emit(outcome)

    def _admitted(self, climb: _Climb, tier: Tier) -> bool:
        """The breaker's word before a job joins the local queue (never without a cloud to go to)."""
        if tier.lane != "local" or not self.lanes.cloud_ready:
            return True
        allowed, why = self.breaker.allow(self.lanes.local_waiting, self.lanes.local_slots)
        self.recorder.breaker_openings(self.breaker)
        if not allowed:
            climb.number += 1
            climb.last_row = self.recorder.record(climb.outcome, climb.key, tier, climb.number, "skipped", why, None)
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
            timing = _Timing()
            request = self.request(job, tier, history)
            try:
                completion = await self._call(tier, request, timing)
            except BreakerOpen as exc:
                climb.last_row = self.recorder.record(outcome, key, tier, climb.number, "skipped", exc.reason, None,
                                                      wait=timing.wait_s)
                climb.reasons.append(f"local skipped: {exc.message}")
                return False
            except HandedBack:
                self._hand_back(climb)
                return True
            except BackendError as exc:  # the breaker and the latency read the service time, never the wait
                if tier.lane == "local":
                    self.breaker.record(timing.service_s, ok=False)
                    self.recorder.breaker_openings(self.breaker)
                climb.last_row = self.recorder.record(outcome, key, tier, climb.number, "error", exc.reason, None,
                                                      latency=timing.service_s, wait=timing.wait_s)
                climb.reasons.append(f"{tier.lane} {tier.model}: {exc.reason}: {exc.message}")
                return False
            if tier.lane == "local":
                self.breaker.record(completion.latency_s, ok=True)
                self.recorder.breaker_openings(self.breaker)
                self._spill()
            verdict = verdict_for(job, completion)
            if verdict.ok and tier.lane == "local" and job.task.output.agree > 1:
                completion, verdict = await self._agree(climb, tier, request, completion, verdict)
            if verdict.ok:
                self.recorder.accept(outcome, key, tier, climb.number, completion, verdict, wait=timing.wait_s)
                if tier.lane == "local" and self._shadowed(job):
                    await self._shadow(outcome, key, climb.number + 1, verdict)
                return True
            climb.last_row = self.recorder.record(outcome, key, tier, climb.number, "invalid",
                                                  self.recorder.kept(verdict.reason), completion,
                                                  fallback=verdict.fallback, wait=timing.wait_s)
            climb.reasons.append(f"{tier.lane} {completion.model}: invalid: {verdict.reason}")
            if verdict.failed == "agree":
                return False  # told it disagrees with itself, a model is no more right: escalate
            history = (Message(role="assistant", content=completion.text[:4000]),
                       Message(role="user", content=feedback(verdict, job.task.output.spec())))
        return False

    async def _agree(self, climb: _Climb, tier: Tier, request: Request, first: Completion,
                     verdict: Verdict) -> tuple[Completion, Verdict]:
        """`output.agree: N`: N-1 more local samples (run.agreement); each is a ledger row, the chosen last."""
        outcome = climb.outcome
        poll = await agreement.poll(request, first, verdict, outcome.job.task.output.agree,
                                    lambda sample: self._call(tier, sample),
                                    lambda completion: verdict_for(outcome.job, completion), self.clock)
        for sample, result, reason in poll.others():
            kept = reason if result != "invalid" else self.recorder.kept(reason)
            climb.last_row = self.recorder.record(outcome, climb.key, tier, climb.number, result, kept,
                                                  sample.completion, latency=sample.latency_s,
                                                  fallback=sample.verdict.fallback)
            climb.number += 1
        outcome.agreement = poll.as_json()
        chosen = poll.chosen.completion
        assert chosen is not None  # the winner, or the first answer: both were answered
        return chosen, poll.verdict

    def _hand_back(self, climb: _Climb) -> None:
        self.recorder.hand_back(climb.outcome, climb.key, climb.number, climb.reasons)

    def _fail(self, climb: _Climb) -> None:
        outcome = climb.outcome
        outcome.status = "failed"
        outcome.reason = "; ".join(climb.reasons) or "no tier could answer"
        if climb.last_row is not None:
            self.recorder.mark_final(outcome, climb.last_row)

    def _shadowed(self, job: Job) -> bool:
        """A stable share of local answers is also asked of the cloud (same job, same choice)."""
        if self.shadow_rate <= 0 or not self.lanes.cloud_ready:
            return False
        draw = int(hashlib.sha256(job.input_hash.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return draw < self.shadow_rate

    async def _shadow(self, outcome: Outcome, key: str, number: int, local: Verdict) -> None:
        """Ask the cloud too and record its answer beside the local one (and whether they are the same
        value, for json and yaml); the user keeps the local answer."""
        job = outcome.job
        tier = Tier("cloud", self.lanes.cloud, self.models(job)[1], 1, self.settings.cloud.effort_escalated)
        timing = _Timing()
        try:
            completion = await self._call(tier, self.request(job, tier, ()), timing)
        except BackendError as exc:
            self.recorder.record(outcome, key, tier, number, "error", f"shadow: {exc.reason}", None,
                                 latency=timing.service_s, wait=timing.wait_s, shadow=True)
            return
        verdict = verdict_for(job, completion)
        self.recorder.record(outcome, key, tier, number, "ok" if verdict.ok else "invalid",
                     shadow_reason(job.task.output.format, local, verdict) if verdict.ok
                     else f"shadow: {self.recorder.kept(verdict.reason)}", completion,
                     fallback=verdict.fallback, answer=verdict.text if verdict.ok else None, shadow=True,
                     wait=timing.wait_s)

    async def _call(self, tier: Tier, request: Request, timing: _Timing | None = None) -> Completion:
        """One call on the tier's lane: queued for a slot, then served; `timing` gets both apart."""
        timing = timing if timing is not None else _Timing()
        queued = self.clock()
        if tier.lane == "cloud":
            async with self.lanes.cloud_sem:
                timing.wait_s = self.clock() - queued
                completion = await self._served(tier, request, timing)
        else:
            queue = self.lanes.local_queue
            admitted = await queue.enter()
            timing.wait_s = self.clock() - queued
            if not admitted:
                raise BreakerOpen("the expected wait for a local slot is past the breaker's threshold")
            try:
                completion = await self._served(tier, request, timing)
            finally:
                queue.leave()
        # let the job that takes the freed slot send its request before this one's bookkeeping
        # (validation, the output file, the ledger row): the lane never idles on it
        await asyncio.sleep(0)
        return completion

    async def _served(self, tier: Tier, request: Request, timing: _Timing) -> Completion:
        started = self.clock()
        try:
            return await tier.backend.complete(request)
        finally:
            timing.service_s = self.clock() - started

    def _spill(self) -> None:
        """Jobs queued so deep that their expected wait passes the threshold go to the cloud."""
        queue = self.lanes.local_queue
        if not self.lanes.cloud_ready:
            return  # with nowhere to go, waiting is the best a job can do

        def too_long(position: int) -> bool:
            wait = self.breaker.expected_wait(position, queue.slots)
            return wait is not None and wait > self.settings.breaker.p95_threshold_s

        queue.review(too_long)

    def request(self, job: Job, tier: Tier, history: tuple[Message, ...]) -> Request:
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

    def unfinished(self) -> list[Outcome]:
        """Jobs that recorded attempts but never ended (an interrupted run): what they cost still counts."""
        done = {id(o) for o in self.finished}
        return [o for o in self.recorder.touched() if id(o) not in done]

    def emit(self, outcome: Outcome) -> None:
        self.finished.append(outcome)
        if self.on_event is not None:
            self.on_event(Event(outcome))
