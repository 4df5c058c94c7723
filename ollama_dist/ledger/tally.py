"""What a set of ledger rows adds up to: jobs, lanes, escalations and money, defined once.

The run summary (`api.RunReport.totals`, from the rows the run recorded) and `router-status`
(`report.status`, from SQL groups of the same rows) both fold them through `Tally.add`, so the
two cannot disagree on a run, whether it hit the cache or was interrupted.

Jobs (a job is one run_id + job_id; it counts once, by its final attempt):
- jobs: jobs that ended (a job an interrupted run left unfinished has no final attempt: it is
  not counted as a job, but what its attempts cost is);
- local / cloud: jobs answered on that lane (a cache hit by the lane that answered first);
- failed: jobs whose final attempt is no answer; handed_back: given back to the calling Claude;
- cache_hits: jobs served from the ledger;
- routed_local / routed_cloud: jobs routed to that lane that ran, cache hits aside;
- escalated: jobs routed local whose final attempt ran on the cloud, cache hits aside;
- diversion_rate = local / jobs; escalation_rate = escalated / routed_local.

Money (every attempt counts, finished job or not):
- cost_usd: what every attempt cost (failed ones and shadow calls included);
- baseline_cost_usd: what the work done would have cost all on Claude, once per job: the
  answer's tokens at the cloud model's price (a local answer's or the cloud's), plus the cost of
  each failed cloud attempt, which an all-Claude run pays too (cost on both sides); local
  attempts and shadow calls add nothing;
- unanswered_baseline_usd: the estimate for jobs that ended unanswered (failed, handed back)
  with no cloud tokens to price: in the whole run's baseline, never in the savings;
- baseline_all_usd = baseline + unanswered: the whole run on Claude, "baseline (all on Claude)";
- saved_usd = baseline_cost_usd - cost_usd: saved on what was answered. It is negative only when
  escalations or shadow calls cost more than Claude would have for the same work;
- saved_pct = saved_usd / baseline_all_usd: the share of the whole run on Claude that was saved
  (a job that failed is a share not saved, so a run where most jobs failed is far from 100%).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ollama_dist.ledger.reasons import invalid_kind
from ollama_dist.ledger.store import Attempt

ANSWERED = ("ok", "cache_hit")
TIMED = ("ok", "invalid", "error")  # attempts whose latency is a service time
NO_LOCAL_BACKEND = "no_local_backend"


@dataclass
class Tally:
    """Job and attempt counts, and money, of a set of ledger rows (one task's, or all)."""

    jobs: int = 0
    local: int = 0
    cloud: int = 0
    failed: int = 0
    handed_back: int = 0
    escalated: int = 0
    routed_local: int = 0
    routed_cloud: int = 0
    cache_hits: int = 0
    local_answers: int = 0
    local_invalid: int = 0
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    unanswered_baseline_usd: float = 0.0
    tokens_saved: int = 0
    timed: dict[str, int] = field(default_factory=dict)

    def add(self, routed_to: str, lane: str, outcome: str, final: int, n: int, cost: float, baseline: float,
            unanswered: float, tokens: float) -> None:
        """`n` rows alike (routed_to, lane, outcome, final), with what they cost and would have cost."""
        self.cost_usd += cost
        self.baseline_cost_usd += baseline
        self.unanswered_baseline_usd += unanswered
        if outcome in TIMED:
            self.timed[lane] = self.timed.get(lane, 0) + n
        if lane == "local" and outcome in ("ok", "invalid"):
            self.local_answers += n
            self.local_invalid += n if outcome == "invalid" else 0
        if not final:
            return
        self.jobs += n
        if outcome in ANSWERED:
            if lane == "local":
                self.local += n
            else:
                self.cloud += n
        elif outcome == "handed_back":
            self.handed_back += n
        else:
            self.failed += n
        if outcome == "cache_hit":
            self.cache_hits += n
            return
        if routed_to == "local":
            self.routed_local += n
            self.escalated += n if lane == "cloud" else 0
        else:
            self.routed_cloud += n
        if outcome == "ok" and lane == "local":
            self.tokens_saved += int(tokens)

    def add_attempt(self, a: Attempt) -> None:
        self.add(a.routed_to, a.lane, a.outcome, int(a.final), 1, a.cost_usd, a.baseline_cost_usd,
                 a.unanswered_baseline_usd, a.input_tokens + a.output_tokens)

    @classmethod
    def of(cls, attempts: Sequence[Attempt]) -> Tally:
        tally = cls()
        for a in attempts:
            tally.add_attempt(a)
        return tally

    @property
    def answered(self) -> int:
        return self.local + self.cloud

    @property
    def diversion_rate(self) -> float:
        return rate(self.local, self.jobs)

    @property
    def escalation_rate(self) -> float:
        return rate(self.escalated, self.routed_local)

    @property
    def baseline_all_usd(self) -> float:
        return self.baseline_cost_usd + self.unanswered_baseline_usd

    @property
    def saved_usd(self) -> float:
        return self.baseline_cost_usd - self.cost_usd

    @property
    def saved_pct(self) -> float:
        return 100 * self.saved_usd / self.baseline_all_usd if self.baseline_all_usd else 0.0


@dataclass(frozen=True)
class CostlyJob:
    """A job that cost more than the same work on Claude would have, and what did it."""

    run_id: str
    job_id: str
    saved_usd: float  # below zero
    shadow: bool  # a shadow call did it (else an escalation)

    @property
    def cause(self) -> str:
        return "shadow call" if self.shadow else "escalation"

    def as_json(self) -> dict[str, object]:
        return {"run_id": self.run_id, "job": self.job_id, "saved_usd": round(self.saved_usd, 8), "cause": self.cause}


def costly_job(attempts: Sequence[Attempt]) -> CostlyJob | None:
    """The job of these rows (all of one job, shadow calls included) if it cost more than on Claude."""
    if not attempts:
        return None
    saved = sum(a.baseline_cost_usd - a.cost_usd for a in attempts)
    if saved >= -1e-12:
        return None
    shadow = any(a.reason is not None and a.reason.startswith("shadow") and a.cost_usd for a in attempts)
    return CostlyJob(attempts[0].run_id, attempts[0].job_id, saved, shadow)


def escalation_reason(attempts: Sequence[Attempt]) -> str:
    """Why a job left the local lane: the outcome of its last local attempt that did not answer
    (`invalid` by its kind: `ungrounded`, `disagree`, `cut_off`, `invalid`; or the error or skip
    reason: unreachable, timeout, busy, breaker_open...), or
    `no_local_backend` when it had none. `report.status.escalation_reasons` reads the same in SQL."""
    left = [a for a in attempts if a.lane == "local" and a.outcome != "ok"]
    if not left:
        return NO_LOCAL_BACKEND
    last = max(left, key=lambda a: a.attempt)
    return invalid_kind(last.reason) if last.outcome == "invalid" else (last.reason or last.outcome)


def rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
