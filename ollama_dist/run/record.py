"""Every attempt as a ledger row, as it happens: answers, failures, cache hits, hand-backs.

The Recorder turns what the ladder saw (a tier, a completion, a verdict) into `Attempt` rows:
cost and the all-Claude baseline priced here, the answer written to its target before its
row is recorded, reasons kept without answer text unless the user stores text.

The baseline of a job is what it would have cost all on Claude, counted once whatever its
attempts (the definitions are in `ollama_dist.ledger.tally`): the answer's row carries its
tokens at the cloud model's price; a failed cloud attempt carries its own cost on both sides;
a job that ends unanswered with no cloud tokens to price carries, on its final row, the
estimate of its tokens (`unanswered_baseline_usd`). Latency is the service time; the time an
attempt queued for its lane's slot is `wait_s`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ollama_dist.backends.base import Completion
from ollama_dist.checks.validate import Verdict, reason_kind
from ollama_dist.errors import OutputError
from ollama_dist.ledger.pricing import PriceTable, Usage
from ollama_dist.ledger.store import Attempt, CachedAnswer, Ledger
from ollama_dist.run.breaker import Breaker
from ollama_dist.run.handback import CALLER, estimated_tokens, work
from ollama_dist.run.ladder import RunContext, Tier, checked
from ollama_dist.run.outcome import Outcome
from ollama_dist.run.outputs import Delivery, deliver, digest, read_verified, write_atomic
from ollama_dist.tasks.model import Job


class Recorder:
    def __init__(self, ledger: Ledger, prices: PriceTable, run: RunContext,
                 cloud_model: Callable[[Job], str]) -> None:
        self.ledger = ledger
        self.prices = prices
        self.run_ctx = run
        self.cloud_model = cloud_model  # the model the baseline prices a job's work at
        self._openings_seen = 0
        self._touched: dict[int, Outcome] = {}  # every job a row was recorded for, in that order

    def touched(self) -> list[Outcome]:
        """The jobs this run recorded rows for (an interrupted run's report counts what they cost)."""
        return list(self._touched.values())

    def _keep(self, outcome: Outcome, attempt: Attempt, *, shadow: bool = False) -> None:
        self._touched.setdefault(id(outcome), outcome)
        (outcome.shadow if shadow else outcome.attempts).append(attempt)

    def unanswered(self, outcome: Outcome) -> float:
        """What a job that ended unanswered would have cost on Claude: its estimated tokens at the
        cloud model's price, unless a cloud attempt used tokens (those are its baseline already)."""
        if any(a.lane == "cloud" and not a.tokens_estimated and a.input_tokens + a.output_tokens
               for a in outcome.attempts):
            return 0.0
        local_out = [a.output_tokens for a in outcome.attempts if a.lane == "local" and a.output_tokens]
        tokens_in, tokens_out = estimated_tokens(outcome.job, local_out[-1] if local_out else None)
        return self.prices.baseline(self.cloud_model(outcome.job), Usage(tokens_in, tokens_out))

    def reuse(self, outcome: Outcome, hit: CachedAnswer, key: str) -> bool:
        """A cached answer whose file is intact and still valid answers the job again for free."""
        job = outcome.job
        text = read_verified(hit.output_path, hit.output_hash)
        if text is None:
            return False  # the answer's file is gone or changed: answer again
        verdict = checked(job, text)  # the checks of today, grounding included, on the answer of then
        if not verdict.ok:
            return False
        path, failed = hit.output_path, None
        if job.write_path is not None and Path(path or "") != job.write_path:
            try:
                path = str(write_atomic(job.write_path, verdict.text, self.run_ctx.root))
            except OutputError as exc:  # still unwritable: the job fails, the answer stays where it is
                failed = Delivery(Path(path) if path else None, exc)
        cloud = hit.backend.startswith("claude") or hit.backend == CALLER
        attempt = self.attempt(outcome, key, lane="cloud" if cloud else "local",
                               backend=hit.backend, model=hit.model, number=1, result="cache_hit",
                               reason="write_failed" if failed else f"same input answered in job {hit.job_id}",
                               final=True, baseline=hit.baseline_cost_usd, output_path=path,
                               output_hash=hit.output_hash)
        self.ledger.record(attempt)
        self._keep(outcome, attempt)
        outcome.status, outcome.cache_hit, outcome.output_path, outcome.value = "ok", True, path, verdict.value
        outcome.checks = verdict.checks
        if failed is not None:
            outcome.status, outcome.reason = "failed", failed.failure(job)
        return True

    def accept(self, outcome: Outcome, key: str, tier: Tier, number: int, completion: Completion,
               verdict: Verdict, *, batch: bool = False, wait: float | None = None) -> None:
        """A valid answer: written, then recorded. A target that cannot be written fails the job, but the
        answer is recorded (and kept in the run's folder), so a re-run after the fix does not pay again."""
        job = outcome.job
        delivery = deliver(job, verdict.text, root=self.run_ctx.root, out_dir=self.run_ctx.out_dir)
        path = str(delivery.path) if delivery.path else None
        self.record(outcome, key, tier, number, "ok", "write_failed" if delivery.error else None, completion,
                    fallback=verdict.fallback, final=True, output_path=path, output_hash=digest(verdict.text),
                    answer=verdict.text, batch=batch, wait=wait)
        outcome.status, outcome.output_path, outcome.value = "ok", path, verdict.value
        outcome.checks = verdict.checks
        if delivery.error is not None:
            outcome.status, outcome.reason = "failed", delivery.failure(job)

    def refuse(self, outcome: Outcome, key: str, model: str) -> None:
        """A job whose input could not be read fails alone, with no model call, and says why."""
        job = outcome.job
        attempt = self.attempt(outcome, key, lane=outcome.decision.target, backend="none", model=model,
                               number=1, result="skipped", reason=f"input: {job.error}", final=True)
        self.ledger.record(attempt)  # no baseline: not even Claude could do a job whose input is unreadable
        self._keep(outcome, attempt)
        outcome.status, outcome.reason = "failed", job.error

    def hand_back(self, outcome: Outcome, key: str, number: int, reasons: list[str]) -> None:
        """The cloud lane is the caller: record the job as handed back (no cost, estimated tokens;
        the estimate of what Claude would charge is in the run's baseline, not in its savings)."""
        local_out = [a.output_tokens for a in outcome.attempts if a.lane == "local" and a.output_tokens]
        tokens_in, tokens_out = estimated_tokens(outcome.job, local_out[-1] if local_out else None)
        estimate = self.unanswered(outcome)
        attempt = self.attempt(outcome, key, lane="cloud", backend=CALLER, model=CALLER, number=number,
                               result="handed_back", reason="; ".join(reasons) or None, final=True,
                               usage=Usage(tokens_in, tokens_out))
        attempt = replace(attempt, tokens_estimated=True, unanswered_baseline_usd=estimate)
        self.ledger.record(attempt)
        self._keep(outcome, attempt)
        outcome.status, outcome.reason = "handed_back", "handed back to the caller"
        outcome.handed_back = work(outcome.job, reasons, self.run_ctx.root, input_tokens=tokens_in,
                                   estimated_cost_usd=estimate)

    def record(self, outcome: Outcome, key: str, tier: Tier, number: int, result: str, reason: str | None,
               completion: Completion | None, *, fallback: str | None = None, final: bool = False,
               latency: float = 0.0, wait: float | None = None, output_path: str | None = None,
               output_hash: str | None = None, answer: str | None = None, batch: bool = False,
               shadow: bool = False, backend: str | None = None) -> int:
        usage = Usage()
        cost = baseline = 0.0
        if completion is not None:
            usage = Usage(completion.input_tokens, completion.output_tokens,
                          completion.cache_creation_tokens, completion.cache_read_tokens)
            cost = self.prices.cost(completion.model, usage, batch=batch)
            if shadow:
                pass  # asked for comparison only: an all-Claude run would not have made it
            elif result == "ok":  # the answer: its tokens at the cloud model's price
                baseline = self.prices.baseline(self.cloud_model(outcome.job), usage)
            elif tier.lane == "cloud":  # a failed cloud attempt: an all-Claude run pays it too
                baseline = cost
        attempt = self.attempt(
            outcome, key, lane=tier.lane,
            backend=backend or (completion.backend if completion else tier.backend.name),
            model=completion.model if completion else tier.model, number=number, result=result, reason=reason,
            final=final, baseline=baseline, output_path=output_path, output_hash=output_hash,
            fallback=fallback, usage=usage, cost=cost,
            latency=completion.latency_s if completion else latency,
            host=completion.host if completion else None, answer=answer,
        )
        attempt = replace(attempt, wait_s=None if wait is None else round(wait, 4))
        if completion is not None and completion.reported_cost_usd is not None:
            attempt = replace(attempt, reported_cost_usd=completion.reported_cost_usd)
        if completion is not None and completion.thinking_tokens:
            attempt = replace(attempt, thinking_tokens=completion.thinking_tokens)
        self._keep(outcome, attempt, shadow=shadow)
        if final and result != "ok" and not shadow:  # the job ends here, unanswered
            attempt = replace(attempt, unanswered_baseline_usd=self.unanswered(outcome))
            outcome.attempts[-1] = attempt
        return self.ledger.record(attempt)

    def attempt(self, outcome: Outcome, key: str, *, lane: str, backend: str, model: str, number: int,
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

    def mark_final(self, outcome: Outcome, row: int) -> None:
        """The job ended unanswered on its last row: final, with its all-Claude estimate if it needs one."""
        estimate = self.unanswered(outcome)
        self.ledger.mark_final(row, estimate)
        outcome.attempts[-1] = replace(outcome.attempts[-1], final=True, unanswered_baseline_usd=estimate)

    def kept(self, reason: str | None) -> str | None:
        """An invalid answer's reason as the ledger keeps it: without answer text unless text is stored."""
        return reason if self.run_ctx.store_text else reason_kind(reason)

    def breaker_openings(self, breaker: Breaker) -> None:
        """Each new opening of the breaker, once, as a ledger event."""
        openings = breaker.openings
        for opening in openings[self._openings_seen:]:
            self.ledger.breaker_event(self.run_ctx.run_id, time.time(), "open", opening.reason)
        self._openings_seen = len(openings)
