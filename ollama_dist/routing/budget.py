"""Budget-aware routing: as the plan's five-hour usage passes thresholds, borderline jobs try local first.

A Claude Pro/Max plan allots tokens per rolling five-hour window. `ollama-dist statusline`
records the window's used share as Claude Code reports it (``ledger.plan_usage``); this
module reads the latest reading and, once it passes one of `budget.five_hour_thresholds`,
revisits the router's decisions after the fact (it never changes how the router scores):

- Only a *borderline* cloud decision moves: decided by the soft score (and the second
  opinion), never by a hard rule or a declared `kind`; less sure than the level's
  `confidence_below`; its score at most `score_margin` past `router.score_threshold`;
  its input within `router.local_context_tokens`; and its task not one whose local
  answers mostly failed.
- It moves to `local`: the ladder is the local one, so the answer is still validated
  and, when invalid, escalated to Claude (handed back to the caller inside Claude Code).
- Every moved decision says so in its reasons, with the reading and the threshold.

A reading vouches for the usage until its window resets (the share only grows within a
window); without a reset time, for `budget.max_age_s`. No reading, an old one, or
`five_hour_thresholds: []` (the default) leaves every decision as the router made it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ollama_dist.config import BudgetSettings, RouterSettings, Settings
from ollama_dist.ledger.plan_usage import PlanUsage
from ollama_dist.routing.router import Decision, TaskHistory, estimate_tokens

if TYPE_CHECKING:
    from ollama_dist.ledger.store import Ledger
    from ollama_dist.tasks.model import Job

FAILING_SHARE = 0.5  # as the router's own rule: a task whose local answers mostly fail stays on Claude
MIN_HISTORY = 3


@dataclass(frozen=True)
class Level:
    """The highest threshold the recorded five-hour usage has passed."""

    used_pct: float
    threshold: float
    confidence_below: float
    recorded_at: float
    resets_at: float | None

    def describe(self, now: float) -> str:
        age = _span(max(0.0, now - self.recorded_at))
        resets = f", resets in {_span(self.resets_at - now)}" if self.resets_at and self.resets_at > now else ""
        return (f"the plan's five-hour usage is {self.used_pct:.0f}% (recorded {age} ago{resets}), "
                f"past the {self.threshold:g}% threshold")


def level(settings: BudgetSettings, usage: PlanUsage | None, now: float) -> Level | None:
    """Where the reading stands against the thresholds; None below the first, or with no usable reading."""
    if usage is None or not settings.five_hour_thresholds:
        return None
    used = usage.five_hour_now(now, settings.max_age_s)
    if used is None:
        return None
    passed = [i for i, threshold in enumerate(settings.five_hour_thresholds) if used >= threshold]
    if not passed:
        return None
    i = passed[-1]
    window = usage.five_hour
    return Level(used, settings.five_hour_thresholds[i], settings.confidence_below[i], usage.ts,
                 window.resets_at if window else None)


@dataclass(frozen=True)
class Budget:
    """The budget's word on the router's decisions for one run (or one `route`)."""

    router: RouterSettings
    settings: BudgetSettings
    level: Level | None = None
    now: float = 0.0

    @classmethod
    def load(cls, settings: Settings, ledger: Ledger | None, now: float | None = None) -> Budget:
        """The latest reading in `ledger` against `settings.budget` (no ledger: nothing moves)."""
        from ollama_dist.ledger import plan_usage

        now = time.time() if now is None else now
        found = None
        if ledger is not None and settings.budget.five_hour_thresholds:
            found = level(settings.budget, ledger.read(plan_usage.latest), now)
        return cls(settings.router, settings.budget, found, now)

    def review(self, job: Job, decision: Decision, history: TaskHistory | None) -> Decision:
        """`decision`, or the same decision moved to `local` when the budget calls it borderline."""
        lvl = self.level
        if lvl is None or decision.target != "cloud" or decision.rule is not None:
            return decision  # below every threshold, already local, or a hard rule: as decided
        ceiling = round(self.router.score_threshold + self.settings.score_margin, 9)  # 0.35 + 0.1 is 0.45
        if decision.confidence >= lvl.confidence_below or decision.score > ceiling:
            return decision
        if estimate_tokens((job.task.system or "") + job.prompt) > self.router.local_context_tokens:
            return decision
        if history and history.local_jobs >= MIN_HISTORY and (
                history.local_failures > FAILING_SHARE * history.local_jobs):
            return decision
        why = (f"budget: {lvl.describe(self.now)}: a borderline cloud decision (confidence "
               f"{decision.confidence:.2f} < {lvl.confidence_below:g}, score {decision.score:.2f} <= {ceiling:.2f}) "
               "tries local first; its answer is still validated and, when it fails, escalated to the cloud model "
               "the router chose")
        return decision.model_copy(update={"target": "local", "moved_from": "cloud",
                                           "reasons": (*decision.reasons, why)})


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
