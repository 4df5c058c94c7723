"""The decision: hard rules first, then the soft score, then the second opinion -> Decision.

Built once from settings; `Router.decide` is pure and cheap. An explicit `kind:` decides
alone; a hard rule (routing/rules.py) decides next; otherwise the soft score
(routing/score.py) does, reviewed by the second opinion when there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from ollama_dist.config import RouterSettings
from ollama_dist.ledger.store import TaskHistory
from ollama_dist.routing.rules import Rules, Target, default_vocabulary, estimate_tokens
from ollama_dist.routing.score import soft_score
from ollama_dist.tasks.model import Job


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    target: Target
    score: float
    confidence: float
    rule: str | None
    reasons: tuple[str, ...]


class Reviewer(Protocol):
    """A second opinion on soft-score decisions (ollama_dist.routing.second_opinion); never sees hard-rule ones."""

    def review(self, job: Job, decision: Decision, tokens: int, history: TaskHistory | None) -> Decision: ...


@dataclass
class Router:
    """Built once from settings; `decide` is pure and cheap."""

    settings: RouterSettings
    vocabulary: Mapping[str, Any] = field(default_factory=default_vocabulary)
    second_opinion: Reviewer | None = None

    def __post_init__(self) -> None:
        self.rules = Rules(self.settings, self.vocabulary)

    def decide(self, job: Job, history: TaskHistory | None = None) -> Decision:
        task = job.task
        if task.kind != "auto":
            target: Target = "cloud" if task.kind == "reasoning" else "local"
            return Decision(target=target, score=1.0 if target == "cloud" else 0.0, confidence=1.0,
                            rule=f"kind:{task.kind}", reasons=(f"task declares kind: {task.kind}",))

        info = self.rules.read(task)
        tokens = estimate_tokens((task.system or "") + job.prompt)
        hard = self.rules.hard(job, info, tokens, history)
        if hard is not None:
            return Decision(target=hard.target, score=1.0 if hard.target == "cloud" else 0.0, confidence=0.9,
                            rule=f"{hard.target}:{hard.rule}", reasons=(hard.reason,))
        scored = soft_score(self.settings, job, info, tokens, history)
        decision = Decision(target="cloud" if scored.target == "cloud" else "local", score=scored.score,
                            confidence=scored.confidence, rule=None, reasons=scored.reasons)
        if self.second_opinion is not None:
            return self.second_opinion.review(job, decision, tokens, history)
        return decision
