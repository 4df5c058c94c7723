"""Cloud-routed jobs through the Message Batches API (`run --cloud-batch`): half price, answers within 24 h.

Results are validated and recorded like any answer; a failed result is a failed job (nothing
escalates further from a batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ollama_dist.backends.base import Completion, Request
from ollama_dist.errors import BackendError
from ollama_dist.routing.router import Decision
from ollama_dist.run.ladder import Tier, models_key, verdict_for
from ollama_dist.run.outcome import Outcome
from ollama_dist.tasks.model import Job

if TYPE_CHECKING:
    from ollama_dist.run.dispatch import Dispatcher


async def run_batched(dispatcher: Dispatcher, routed: Sequence[tuple[Job, Decision]]) -> list[Outcome]:
    from ollama_dist.backends.claude import ClaudeBackend
    from ollama_dist.backends.claude_batch import run_batch

    d, rec = dispatcher, dispatcher.recorder
    outcomes = [Outcome(job, decision) for job, decision in routed]
    pending: list[tuple[str, Outcome, str, Tier, Request]] = []
    for i, outcome in enumerate(outcomes):
        key = models_key(*d.models(outcome.job))
        hit = d.ledger.cached(outcome.job.task.fingerprint(), outcome.job.input_hash, key)
        if hit is not None and rec.reuse(outcome, hit, key):
            d.emit(outcome)
            continue
        tier = d.ladder(outcome.job, outcome.decision)[0]
        pending.append((f"job-{i}", outcome, key, tier, d.request(outcome.job, tier, ())))
    if not pending:
        return outcomes
    backend = d.lanes.cloud
    if not isinstance(backend, ClaudeBackend):
        raise TypeError("--cloud-batch needs the Claude backend")
    results: dict[str, object]
    try:
        results = dict(await run_batch(backend, [(cid, req) for cid, _, _, _, req in pending],
                                       first_poll_s=d.batch_poll_s))
    except BackendError as exc:
        results = {cid: exc for cid, *_ in pending}
    for cid, outcome, key, tier, _ in pending:
        result = results[cid]
        if isinstance(result, BackendError):
            row = rec.record(outcome, key, tier, 1, "error", result.reason, None, backend="claude-batch")
            outcome.reason = f"cloud batch {tier.model}: {result.reason}: {result.message}"
        else:
            assert isinstance(result, Completion)
            completion = result.model_copy(update={"backend": "claude-batch"})
            verdict = verdict_for(outcome.job, completion)
            if verdict.ok:
                rec.accept(outcome, key, tier, 1, completion, verdict, batch=True)
                d.emit(outcome)
                continue
            row = rec.record(outcome, key, tier, 1, "invalid", rec.kept(verdict.reason), completion,
                             fallback=verdict.fallback, batch=True)
            outcome.reason = f"cloud batch {completion.model}: invalid: {verdict.reason}"
        rec.mark_final(outcome, row)
        d.emit(outcome)
    return outcomes
