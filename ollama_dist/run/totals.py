"""A run's totals and each job's JSON form, counted from the rows the run recorded.

The figures are `ollama_dist.ledger.tally`'s, the same that `router-status` reads back from
the ledger: a run and router-status over that run agree, cache hits and interruptions included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ollama_dist.ledger.store import Attempt
from ollama_dist.ledger.tally import CostlyJob, Tally, costly_job
from ollama_dist.run.outcome import Outcome


def rows(outcomes: Sequence[Outcome]) -> list[Attempt]:
    """Every row these jobs recorded, shadow calls included."""
    return [a for o in outcomes for a in o.attempts + o.shadow]


def costly_jobs(outcomes: Sequence[Outcome]) -> list[CostlyJob]:
    """The jobs that cost more than the same work on Claude, the costliest first."""
    found = [c for o in outcomes if (c := costly_job(o.attempts + o.shadow)) is not None]
    return sorted(found, key=lambda c: c.saved_usd)


def totals(outcomes: Sequence[Outcome], unfinished: Sequence[Outcome] = ()) -> dict[str, Any]:
    """The run's figures. `unfinished`: jobs an interrupted run had begun (what they cost counts,
    they do not count as jobs: they never ended)."""
    t = Tally.of(rows([*outcomes, *unfinished]))
    attempts = rows([*outcomes, *unfinished])
    escalations = Counter(o.escalation_reason for o in outcomes if o.escalation_reason is not None)
    handed = sum(o.handed_back["estimated_cost_usd"] for o in outcomes if o.handed_back)
    checks = Counter(name for o in outcomes if o.status == "ok" for name in o.checks)
    return {
        "jobs": len(outcomes),
        "ok": sum(o.status == "ok" for o in outcomes),
        "failed": sum(o.status == "failed" for o in outcomes),
        "handed_back": sum(o.status == "handed_back" for o in outcomes),
        "kept_edits": sum(o.kept_edit for o in outcomes),
        "unfinished": len(unfinished),
        "routed_local": t.routed_local,  # cache hits aside, as router-status counts them
        "routed_cloud": t.routed_cloud,
        "answered_local": t.local,
        "answered_cloud": t.cloud,
        "escalated": t.escalated,
        "checks": dict(checks),  # ok jobs per check passed: what "ok" proved across the run
        "agree_local_s": round(sum(o.agreement["local_s"] for o in outcomes if o.agreement), 3),
        "diversion_rate": round(t.diversion_rate, 4),
        "escalation_rate": round(t.escalation_rate, 4),
        "escalation_reasons": dict(sorted(escalations.items())),
        "cache_hits": t.cache_hits,
        "input_tokens": sum(a.input_tokens for a in attempts),
        "output_tokens": sum(a.output_tokens for a in attempts),
        "cost_usd": round(t.cost_usd, 6),
        "handed_back_cost_usd_estimated": round(handed, 6),
        # the whole run on Claude; the part for jobs that ended unanswered is an estimate
        "baseline_cost_usd": round(t.baseline_all_usd, 6),
        "answered_baseline_usd": round(t.baseline_cost_usd, 6),
        "unanswered_baseline_usd": round(t.unanswered_baseline_usd, 6),
        # saved on what was answered: never on a job that failed or was handed back
        "saved_usd": round(t.saved_usd, 6),
        "saved_pct": round(t.saved_pct, 1),
        "cost_more_than_claude": [c.as_json() for c in costly_jobs(outcomes)],
    }


def job_json(o: Outcome) -> dict[str, Any]:
    """One job in `run --json`: where it went, who answered (a model only if one did), why it escalated."""
    mine = o.attempts
    return {
        "task": o.job.task.name,
        "job": o.job.id,
        "routed_to": o.decision.target,
        "actual_model": o.actual_model,
        "answered_on": o.answered_on,
        "status": o.status,
        "attempts": len(mine),
        "escalated": o.escalated,
        "escalation_reason": o.escalation_reason,
        "cache_hit": o.cache_hit,
        "kept_edit": o.kept_edit,
        "reason": o.reason,
        "output": o.output_path,
        "value": o.value,
        "checks": list(o.checks),  # what "ok" proved: format, schema, pattern, grounded, agree
        "local_s": round(sum(a.latency_s for a in mine if a.lane == "local"), 3),
        **({"agreement": o.agreement} if o.agreement is not None else {}),
        "input_tokens": sum(a.input_tokens for a in mine),
        "output_tokens": sum(a.output_tokens for a in mine),
        "thinking_tokens": sum(a.thinking_tokens for a in mine),
        "cost_usd": round(sum(a.cost_usd for a in mine), 8),
        "baseline_cost_usd": round(sum(a.baseline_cost_usd + a.unanswered_baseline_usd for a in mine), 8),
        "tries": [try_json(a) for a in mine],
        "shadow": [{"model": a.model, "outcome": a.outcome, "cost_usd": round(a.cost_usd, 8)} for a in o.shadow],
        **({"handed_back": o.handed_back} if o.handed_back is not None else {}),
    }


def try_json(a: Attempt) -> dict[str, Any]:
    """One attempt: its lane, model, outcome and reason, and where its time went."""
    return {"attempt": a.attempt, "lane": a.lane, "backend": a.backend, "model": a.model, "host": a.host,
            "outcome": a.outcome, "reason": a.reason, "wait_s": a.wait_s, "latency_s": a.latency_s,
            "cost_usd": round(a.cost_usd, 8)}
