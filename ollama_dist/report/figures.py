"""The figures `router-status` reports, as values (RouterStatus and its parts, each
with its JSON form), and what they say in words (``warnings``; the escalation, baseline and
savings lines, which the run summary shares).

The counts themselves are `ollama_dist.ledger.tally.Tally`: one definition for a run and for
router-status.

No SQL here: ``status`` reads the ledger and builds these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from ollama_dist.ledger.plan_usage import PlanUsage
from ollama_dist.ledger.store import TaskHistory
from ollama_dist.ledger.tally import CostlyJob, Tally, rate as _rate
from ollama_dist.routing.learning import advice, distrust

if TYPE_CHECKING:
    from ollama_dist.report.scope import Scope

REWORK_WINDOW_S = 3600.0
MIN_DAY_JOBS = 5  # a day with fewer local-routed jobs says nothing about a trend
MIN_TASK_SAMPLES = 5
COSTLY_SHOWN = 5  # jobs named when savings are negative


# ----------------------------------------------------------------------------- figures


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
class PlanView:
    """The plan's usage as the status line recorded it (ledger.plan_usage): the first and last reading
    in scope, and the latest of all (the plan is the account's, whatever the scope)."""

    first: PlanUsage | None = None
    last: PlanUsage | None = None
    latest: PlanUsage | None = None

    def as_json(self) -> dict[str, object] | None:
        if self.latest is None:
            return None
        return {"first_in_scope": self.first.as_json() if self.first else None,
                "last_in_scope": self.last.as_json() if self.last else None, "latest": self.latest.as_json()}


@dataclass(frozen=True)
class RouterStatus:
    scope: Scope
    totals: Tally
    tasks: dict[str, Tally]
    escalation_reasons: dict[str, int]
    p50_latency_s: dict[str, float]
    p95_latency_s: dict[str, float]
    rework: int
    rework_window_s: float
    breaker: BreakerView
    days: tuple[Day, ...] = ()
    warnings: tuple[str, ...] = ()
    ledger_found: bool = True
    p50_wait_s: dict[str, float] = field(default_factory=dict)  # queued for a slot (the queue signal)
    p95_wait_s: dict[str, float] = field(default_factory=dict)
    costly: tuple[CostlyJob, ...] = ()  # named when the savings are negative
    plan: PlanView = PlanView()
    trust: dict[str, TaskHistory] = field(default_factory=dict)  # per task, all runs: what the router uses
    min_local_accuracy: float = 0.7

    @property
    def diversion_rate(self) -> float:
        return self.totals.diversion_rate

    @property
    def escalation_rate(self) -> float:
        return self.totals.escalation_rate

    @property
    def savings_usd(self) -> float:
        return self.totals.saved_usd

    @property
    def savings_pct(self) -> float:
        return self.totals.saved_pct

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
            "handed_back": t.handed_back,
            "escalated": t.escalated,
            "routed_local": t.routed_local,
            "routed_cloud": t.routed_cloud,
            "diversion_rate": round(self.diversion_rate, 4),
            "escalation_rate": round(self.escalation_rate, 4),
            "escalation_reasons": dict(sorted(self.escalation_reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
            "cost_usd": round(t.cost_usd, 6),
            "baseline_cost_usd": round(t.baseline_all_usd, 6),
            "answered_baseline_usd": round(t.baseline_cost_usd, 6),
            "unanswered_baseline_usd": round(t.unanswered_baseline_usd, 6),
            "savings_usd": round(self.savings_usd, 6),
            "savings_pct": round(self.savings_pct, 1),
            "cost_per_job_usd": round(self.cost_per_job_usd, 6),
            "tokens_saved": t.tokens_saved,
            "plan_usage": self.plan.as_json(),
            "p50_latency_s": {k: round(v, 3) for k, v in self.p50_latency_s.items()},
            "p95_latency_s": {k: round(v, 3) for k, v in self.p95_latency_s.items()},
            "p50_wait_s": {k: round(v, 3) for k, v in self.p50_wait_s.items()},
            "p95_wait_s": {k: round(v, 3) for k, v in self.p95_wait_s.items()},
            "cost_more_than_claude": [c.as_json() for c in self.costly],
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
    return RouterStatus(scope, Tally(), {}, {}, {}, {}, 0, REWORK_WINDOW_S,
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


# ----------------------------------------------------------------------------- words


def escalated_words(t: Tally, reasons: dict[str, int]) -> str:
    """The escalation line, the same in the run summary and router-status."""
    text = f"{t.escalated:,} of {t.routed_local:,} routed local ({100 * t.escalation_rate:.1f}%)"
    if t.cache_hits:
        text += f", {t.cache_hits:,} from the cache aside"
    shown = ", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return text + (f": {shown}" if shown else "")


def baseline_words(t: Tally) -> str:
    """What the whole run would have cost on Claude, and how much of it is an estimate."""
    text = money(t.baseline_all_usd)
    unanswered = t.failed + t.handed_back
    if t.unanswered_baseline_usd and unanswered:
        text += f" ({money(t.unanswered_baseline_usd)} of it estimated for {unanswered:,} job(s) not answered)"
    return text


def saved_words(t: Tally, costly: tuple[CostlyJob, ...] | list[CostlyJob] = ()) -> str:
    """Saved on what was answered, never on what failed; the jobs that cost more, when that made it negative."""
    if not t.answered:
        text = "nothing: no job was answered"
    else:
        text = f"{money(t.saved_usd)} ({t.saved_pct:.1f}%) on the {t.answered:,} answered job(s)"
    left = [f"{n:,} {what}" for n, what in ((t.failed, "failed"), (t.handed_back, "handed back")) if n]
    if left:
        text += f"; {', '.join(left)} of {t.jobs:,}: not counted"
    if t.saved_usd < 0 and costly:
        named = ", ".join(f"{c.job_id} ({c.cause}, {money(c.saved_usd)})" for c in costly[:COSTLY_SHOWN])
        more = f" and {len(costly) - COSTLY_SHOWN} more" if len(costly) > COSTLY_SHOWN else ""
        text += f"; cost more than on Claude: {named}{more}"
    return text


def money(x: float) -> str:
    sign = "-" if x < 0 else ""
    return f"{sign}${abs(x):,.4f}" if abs(x) < 1 else f"{sign}${abs(x):,.2f}"


# ----------------------------------------------------------------------------- helpers


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
