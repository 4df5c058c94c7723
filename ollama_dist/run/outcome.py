"""What happened to one job in a run: its attempts, its status, where its answer went."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ollama_dist.ledger.store import Attempt
from ollama_dist.ledger.tally import escalation_reason
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
        """The model that answered (`caller` for a job handed back to it); None when none did."""
        for a in reversed(self.attempts):
            if a.outcome in ("ok", "cache_hit", "handed_back"):
                return a.model
        return None

    @property
    def answering(self) -> Attempt | None:
        """The attempt whose answer counts: the accepted one; for a failed job the last invalid
        answer; None when nothing answered at all."""
        answered = [a for a in self.attempts if a.outcome in ("ok", "cache_hit")]
        found = answered or [a for a in self.attempts if a.outcome == "invalid"]
        return found[-1] if found else None

    @property
    def answered_on(self) -> str | None:
        """Which backend and host answered (see `answering`): `ollama http://127.0.0.1:11434`,
        `embedded`, `openai_compat:http://gpu:8000/v1`, `claude api.anthropic.com`."""
        a = self.answering
        if a is None:
            return None
        return a.backend if not a.host or a.host in a.backend else f"{a.backend} {a.host}"

    @property
    def escalated(self) -> bool:
        """Routed local, answered (or last tried) on the cloud in this run."""
        return (self.decision.target == "local" and not self.cache_hit
                and any(a.lane == "cloud" for a in self.attempts))

    @property
    def escalation_reason(self) -> str | None:
        """Why the job left the local lane (`ollama_dist.ledger.tally.escalation_reason`): an invalid
        answer by its kind (ungrounded, disagree, cut_off or invalid)."""
        return escalation_reason(self.attempts) if self.escalated else None


@dataclass(frozen=True)
class Event:
    """Progress for a display: one finished job."""

    outcome: Outcome
