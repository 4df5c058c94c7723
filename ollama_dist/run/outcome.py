"""What happened to one job in a run: its attempts, its status, where its answer went."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ollama_dist.ledger.reasons import invalid_kind
from ollama_dist.ledger.store import Attempt
from ollama_dist.routing.router import Decision
from ollama_dist.tasks.model import Job

Status = Literal["ok", "failed", "handed_back"]


@dataclass
class Outcome:
    job: Job
    decision: Decision
    status: Status = "failed"
    attempts: list[Attempt] = field(default_factory=list)
    reason: str | None = None
    output_path: str | None = None
    value: object = None
    cache_hit: bool = False
    kept_edit: bool = False  # the output was edited by hand: kept, nothing asked
    shadow: list[Attempt] = field(default_factory=list)  # cloud answers asked for comparison only
    handed_back: dict[str, Any] | None = None  # instructions and output_spec for the caller (handback.work)
    checks: tuple[str, ...] = ()  # what the answer passed (checks.verdict.Check): what "ok" proved
    agreement: dict[str, Any] | None = None  # `output.agree`: samples asked, votes, local seconds (run.agreement)

    @property
    def actual_model(self) -> str | None:
        for a in reversed(self.attempts):
            if a.outcome in ("ok", "cache_hit"):
                return a.model
        return self.attempts[-1].model if self.attempts else None

    @property
    def escalated(self) -> bool:
        """Routed local, answered (or last tried) on the cloud in this run."""
        return (self.decision.target == "local" and not self.cache_hit
                and any(a.lane == "cloud" for a in self.attempts))

    @property
    def escalation_reason(self) -> str | None:
        """Why the job left the local lane: the outcome of its last local attempt (an invalid one by its
        kind: ungrounded, disagree, cut_off or invalid)."""
        if not self.escalated:
            return None
        local = [a for a in self.attempts if a.lane == "local"]
        if not local:
            return "no_local_backend"
        last = local[-1]
        return invalid_kind(last.reason) if last.outcome == "invalid" else (last.reason or last.outcome)

    @property
    def answered_locally(self) -> bool:
        return self.status == "ok" and bool(self.attempts) and self.attempts[-1].lane == "local"


@dataclass(frozen=True)
class Event:
    """Progress for a display: one finished job."""

    outcome: Outcome
