"""The figures `router-status` reports, as values (RouterStatus and its parts, each
with its JSON form), and what they say in words (``warnings``).

No SQL here: ``status`` reads the ledger and builds these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from ollama_dist.ledger.store import TaskHistory
from ollama_dist.routing.learning import advice, distrust

if TYPE_CHECKING:
    from ollama_dist.report.status import Scope

ANSWERED = ("ok", "cache_hit")
REWORK_WINDOW_S = 3600.0
MIN_DAY_JOBS = 5  # a day with fewer local-routed jobs says nothing about a trend
MIN_TASK_SAMPLES = 5


# ----------------------------------------------------------------------------- figures


@dataclass
class Counts:
    """Job and attempt counts of one task (or of all of them)."""

    jobs: int = 0
    local: int = 0
    cloud: int = 0
    failed: int = 0
    escalated: int = 0
    routed_local: int = 0
    routed_cloud: int = 0
    cache_hits: int = 0
    local_answers: int = 0
    local_invalid: int = 0
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    tokens_saved: int = 0
    timed: dict[str, int] = field(default_factory=dict)

    def add(self, routed_to: str, lane: str, outcome: str, final: int, n: int, cost: float, baseline: float,
            tokens: float) -> None:
        self.cost_usd += cost
        self.baseline_cost_usd += baseline
        if outcome in ("ok", "invalid", "error"):
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


@dataclass(frozen=True)
class Day:
    day: date
    jobs: int
    routed_local: int
    escalated: int
    local: int
    cost_usd: float
    baseline_cost_usd: float

    @property
    def escalation_rate(self) -> float:
        return _rate(self.escalated, self.routed_local)

    def as_json(self) -> dict[str, object]:
        return {"day": self.day.isoformat(), "jobs": self.jobs, "routed_local": self.routed_local,
                "escalated": self.escalated, "escalation_rate": round(self.escalation_rate, 4),
                "local": self.local, "cost_usd": round(self.cost_usd, 6),
                "baseline_cost_usd": round(self.baseline_cost_usd, 6)}


@dataclass(frozen=True)
class Opening:
    at: float
    reason: str
    run_id: str


@dataclass(frozen=True)
class BreakerView:
    state: Literal["open", "closed"]
    openings: int
    recent: tuple[Opening, ...]
    cooldown_s: float
    open_until: float | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "openings": self.openings,
            "open_until": _iso(self.open_until) if self.open_until else None,
            "cooldown_s": self.cooldown_s,
            "recent": [{"at": _iso(o.at), "reason": o.reason, "run_id": o.run_id} for o in self.recent],
        }


@dataclass(frozen=True)
class RouterStatus:
    scope: Scope
    totals: Counts
    tasks: dict[str, Counts]
    escalation_reasons: dict[str, int]
    p50_latency_s: dict[str, float]
    p95_latency_s: dict[str, float]
    rework: int
    rework_window_s: float
    breaker: BreakerView
    days: tuple[Day, ...] = ()
    warnings: tuple[str, ...] = ()
    ledger_found: bool = True
    trust: dict[str, TaskHistory] = field(default_factory=dict)  # per task, all runs: what the router uses
    min_local_accuracy: float = 0.7

    @property
    def diversion_rate(self) -> float:
        return _rate(self.totals.local, self.totals.jobs)

    @property
    def escalation_rate(self) -> float:
        return _rate(self.totals.escalated, self.totals.routed_local)

    @property
    def savings_usd(self) -> float:
        return self.totals.baseline_cost_usd - self.totals.cost_usd

    @property
    def savings_pct(self) -> float:
        base = self.totals.baseline_cost_usd
        return 100 * self.savings_usd / base if base else 0.0

    @property
    def cost_per_job_usd(self) -> float:
        return self.totals.cost_usd / self.totals.jobs if self.totals.jobs else 0.0

    def as_json(self) -> dict[str, Any]:
        t = self.totals
        return {
            "scope": self.scope.as_json(),
            "ledger_found": self.ledger_found,
            "jobs": t.jobs,
            "local": t.local,
            "cloud": t.cloud,
            "failed": t.failed,
            "escalated": t.escalated,
            "routed_local": t.routed_local,
            "routed_cloud": t.routed_cloud,
            "diversion_rate": round(self.diversion_rate, 4),
            "escalation_rate": round(self.escalation_rate, 4),
            "escalation_reasons": dict(sorted(self.escalation_reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
            "cost_usd": round(t.cost_usd, 6),
            "baseline_cost_usd": round(t.baseline_cost_usd, 6),
            "savings_usd": round(self.savings_usd, 6),
            "savings_pct": round(self.savings_pct, 1),
            "cost_per_job_usd": round(self.cost_per_job_usd, 6),
            "tokens_saved": t.tokens_saved,
            "p50_latency_s": {k: round(v, 3) for k, v in self.p50_latency_s.items()},
            "p95_latency_s": {k: round(v, 3) for k, v in self.p95_latency_s.items()},
            "cache_hits": t.cache_hits,
            "rework": {"jobs": self.rework, "rate": round(_rate(self.rework, t.jobs), 4),
                       "window_s": self.rework_window_s},
            "breaker": self.breaker.as_json(),
            "warnings": list(self.warnings),
            "days": [d.as_json() for d in self.days],
            "trust": {task: trust_json(h, self.min_local_accuracy) for task, h in sorted(self.trust.items())},
        }


def trust_json(history: TaskHistory, min_accuracy: float) -> dict[str, Any]:
    """One task's measured local trust (all runs), and what it calls for."""
    accuracy = history.accuracy
    return {"local_jobs": history.local_jobs, "right": history.local_right, "wrong": history.local_wrong,
            "cut_off": history.local_cut_off, "failed": history.local_failures, "shadowed": history.shadowed,
            "shadow_differs": history.shadow_differs,
            "accuracy": round(accuracy, 4) if accuracy is not None else None,
            "goes_to_claude": distrust(history, min_accuracy) is not None,
            "advice": advice(history, min_accuracy)}


def with_trust(status: RouterStatus, trust: dict[str, TaskHistory], min_accuracy: float) -> RouterStatus:
    """`status` with each task's trust, and the warnings it calls for."""
    notes = {task: f"task {task}: {text}" for task, h in sorted(trust.items()) if (text := advice(h, min_accuracy))}
    # the trust advice replaces the generic "mostly invalid" line of the same task (it may be cut-offs)
    kept = tuple(w for w in status.warnings if not any(w.startswith(f"task {task}: ") for task in notes))
    return replace(status, trust=trust, min_local_accuracy=min_accuracy, warnings=kept + tuple(notes.values()))


def empty_status(scope: Scope, *, cooldown_s: float, ledger_found: bool) -> RouterStatus:
    return RouterStatus(scope, Counts(), {}, {}, {}, {}, 0, REWORK_WINDOW_S,
                        BreakerView("closed", 0, (), cooldown_s), ledger_found=ledger_found)


# ----------------------------------------------------------------------------- warnings


def warnings(status: RouterStatus, recent_days: tuple[Day, ...]) -> list[str]:
    """What the numbers say, in words a user can act on."""
    found: list[str] = []
    rising = _rising(recent_days)
    if rising is not None:
        before, after, span = rising
        found.append(f"escalation rate rising: {before:.0%} -> {after:.0%} over the last {span} days; "
                     "see the reasons above and check `ollama-dist ollama status`")
    failing = [(task, c) for task, c in sorted(status.tasks.items())
               if c.local_answers >= MIN_TASK_SAMPLES and c.local_invalid * 2 > c.local_answers]
    for task, c in failing:
        found.append(f"task {task}: {c.local_invalid:,} of {c.local_answers:,} local answers were invalid; "
                     "set `kind: reasoning` in its task file to send it to Claude directly")
    cloud_only = [f"{task} ({c.routed_cloud:,})" for task, c in sorted(status.tasks.items())
                  if c.routed_cloud >= MIN_TASK_SAMPLES and c.routed_local == 0 and c.failed == 0]
    if cloud_only:
        shown = ", ".join(cloud_only[:5]) + (f" and {len(cloud_only) - 5} more" if len(cloud_only) > 5 else "")
        found.append(f"every job of task(s) {shown} went to Claude and none failed: if the work is routine, "
                     "try `kind: deterministic` to run it locally")
    reasons = status.escalation_reasons
    if reasons.get("unreachable"):
        found.append(f"{reasons['unreachable']:,} job(s) escalated because Ollama was unreachable: "
                     "start it with `ollama-dist ollama on`")
    if reasons.get("model_missing"):
        found.append(f"{reasons['model_missing']:,} job(s) escalated because the local model is missing: "
                     "see `ollama-dist ollama status` for the `ollama pull` to run")
    if status.breaker.state == "open":
        found.append("the latency breaker is open: local-bound jobs go to Claude until it cools down")
    return found


def _rising(recent: tuple[Day, ...]) -> tuple[float, float, int] | None:
    """(earlier rate, later rate, days) when the later half of the recent days escalates
    clearly more often than the earlier half."""
    usable = [d for d in recent if d.routed_local >= MIN_DAY_JOBS]
    if len(usable) < 3:
        return None
    half = len(usable) // 2
    early, late = usable[:half], usable[half:]
    before = _rate(sum(d.escalated for d in early), sum(d.routed_local for d in early))
    after = _rate(sum(d.escalated for d in late), sum(d.routed_local for d in late))
    if after - before >= 0.10 and after >= 0.15:
        return before, after, (usable[-1].day - usable[0].day).days + 1
    return None


# ----------------------------------------------------------------------------- helpers


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
