"""Replay evaluation: a policy's scores -> the quality-vs-cloud-share curve and its figures.

Pure: no I/O. The definitions follow RouteLLM (Ong et al., 2024, "Learning to Route
LLMs with Preference Data"; its `routellm/evals/evaluate.py`):

- A policy gives each item a score; the higher, the more it should go to the cloud.
  Sweeping a threshold from above the highest score to below the lowest sends the
  top items to the cloud, one group of equal scores at a time, and draws quality
  (mean over items of the answer each one got) against the share of cloud calls.
  Items with equal scores move together; between groups the curve is a straight
  line, which is the expected curve when ties are broken at random.
- APGR, average performance gap recovered: the area between that curve and the
  local-only line, divided by the cloud-minus-local gap (the area of the cloud-only
  line over the local-only line on the unit share axis). Random routing gives 0.5;
  an oracle that sends exactly the items the cloud answers better gives more than 1
  when the local model is sometimes right where the cloud is wrong.
- CPT(x%), call-performance threshold: the smallest share of cloud calls at which
  the curve recovers x% of the gap.

Calibration picks `router.score_threshold` and `router.confidence_threshold` for a
target regression rate: the share of items whose delivered answer is worse than the
cloud's (a local answer kept although the cloud answer scored higher).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ollama_dist.checks.validate import validate
from ollama_dist.config import RouterSettings
from ollama_dist.errors import ConfigError, InputError
from ollama_dist.evals.replay import ReplayItem, ReplaySet
from ollama_dist.ledger.pricing import PriceTable, Usage
from ollama_dist.routing.router import Decision, Router, estimate_tokens
from ollama_dist.tasks.model import Job, Task

Policy = Literal["router", "router+validator", "random", "oracle"]
POLICIES: tuple[Policy, ...] = ("router", "router+validator", "random", "oracle")
DEFAULT_OUTPUT_TOKENS = 400  # when a replay item has neither token counts nor answer text
VALIDATOR_BOOST = 2.0  # router scores lie in [0, 1]: a failed validation outranks every score
RANDOM_SEEDS = 10
_EPS = 1e-12


# ---------------------------------------------------------------- the curve


@dataclass(frozen=True)
class Point:
    cloud_share: float
    quality: float
    min_cloud_score: float | None  # the lowest score sent to the cloud (None: nothing sent)


@dataclass(frozen=True)
class Figures:
    apgr: float | None
    cpt50: float | None
    cpt80: float | None

    def as_json(self) -> dict[str, float | None]:
        return {"apgr": _r(self.apgr), "cpt50": _r(self.cpt50), "cpt80": _r(self.cpt80)}


@dataclass(frozen=True)
class Curve:
    name: str
    points: tuple[Point, ...]
    local_quality: float
    cloud_quality: float

    @property
    def gap(self) -> float:
        return self.cloud_quality - self.local_quality

    def apgr(self) -> float | None:
        """Area between the curve and the local-only line over the gap; None without a gap."""
        if self.gap <= _EPS:
            return None
        area = 0.0
        for a, b in zip(self.points, self.points[1:]):
            area += (b.cloud_share - a.cloud_share) * ((a.quality + b.quality) / 2 - self.local_quality)
        return area / self.gap

    def cpt(self, fraction: float) -> float | None:
        """The least cloud share at which the curve recovers `fraction` of the gap."""
        if self.gap <= _EPS:
            return None
        target = self.local_quality + fraction * self.gap
        first = self.points[0]
        if first.quality >= target - _EPS:
            return first.cloud_share
        for a, b in zip(self.points, self.points[1:]):
            if b.quality >= target - _EPS:
                if b.quality - a.quality <= _EPS:
                    return b.cloud_share
                return a.cloud_share + (target - a.quality) / (b.quality - a.quality) * (b.cloud_share - a.cloud_share)
        return None

    def quality_at(self, share: float) -> float:
        """The curve's quality at a cloud share (linear between points)."""
        for a, b in zip(self.points, self.points[1:]):
            if a.cloud_share <= share <= b.cloud_share:
                if b.cloud_share - a.cloud_share <= _EPS:
                    return b.quality
                t = (share - a.cloud_share) / (b.cloud_share - a.cloud_share)
                return a.quality + t * (b.quality - a.quality)
        return self.points[-1].quality

    def figures(self) -> Figures:
        return Figures(self.apgr(), self.cpt(0.5), self.cpt(0.8))


def sweep(name: str, scores: Sequence[float], local: Sequence[float], cloud: Sequence[float]) -> Curve:
    """The curve of a policy: items sent to the cloud from the highest score down."""
    n = len(scores)
    if n == 0 or len(local) != n or len(cloud) != n:
        raise InputError("the replay set is empty" if n == 0 else "scores and qualities differ in length")
    order = sorted(range(n), key=lambda i: -scores[i])
    total = float(sum(local))
    points = [Point(0.0, total / n, None)]
    i = 0
    while i < n:
        score = scores[order[i]]
        while i < n and scores[order[i]] == score:
            total += cloud[order[i]] - local[order[i]]
            i += 1
        points.append(Point(i / n, total / n, score))
    return Curve(name, tuple(points), sum(local) / n, sum(cloud) / n)


def random_figures(local: Sequence[float], cloud: Sequence[float], seeds: int = RANDOM_SEEDS) -> Figures:
    """Random routing: the mean figures of `seeds` seeded random orders (expected: 0.5, 50%, 80%)."""
    runs = [sweep("random", random_scores(len(local), seed), local, cloud).figures() for seed in range(seeds)]
    return Figures(*(_mean([getattr(f, k) for f in runs]) for k in ("apgr", "cpt50", "cpt80")))


def random_scores(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.random() for _ in range(n)]


def oracle_scores(local: Sequence[float], cloud: Sequence[float]) -> list[float]:
    """The oracle knows both answers: the cloud's gain first, its losses last."""
    return [c - lo for lo, c in zip(local, cloud)]


# ---------------------------------------------------------------- the project's policies


def item_job(item: ReplayItem) -> Job:
    """A one-job task built from a replay item: the dataset's task name, the prompt, text output."""
    if not item.prompt.strip():
        raise InputError(f"replay item {item.id} has no prompt text, so the router cannot score it",
                         hint="ledger replay sets need `ledger.store_text: true` when the jobs run; "
                              "or use --policy random/oracle")
    task = Task.model_validate({"name": item.task, "prompt": item.prompt})
    return Job(id=item.id, task=task, input_text="", input_hash=item.id, prompt=item.prompt)


def decisions(items: Sequence[ReplayItem], router: Router) -> list[Decision]:
    return [router.decide(item_job(item)) for item in items]


def validator_failures(replay: ReplaySet) -> list[bool] | None:
    """Per item, whether its local answer fails the set's validator (None: nothing to check)."""
    known = [item.local_valid for item in replay.items]
    if replay.spec is None and all(v is None for v in known):
        return None
    out: list[bool] = []
    for item, valid in zip(replay.items, known):
        if valid is not None:
            out.append(not valid)
        elif replay.spec is not None and item.local_answer is not None:
            out.append(not validate(item.local_answer, replay.spec).ok)
        else:
            out.append(False)
    return out


def policy_scores(policy: Policy, replay: ReplaySet, routed: Sequence[Decision] | None,
                  failures: Sequence[bool] | None, seed: int = 0) -> list[float]:
    local, cloud = replay.qualities()
    if policy == "random":
        return random_scores(len(local), seed)
    if policy == "oracle":
        return oracle_scores(local, cloud)
    assert routed is not None
    scores = [d.score for d in routed]
    if policy == "router+validator" and failures is not None:
        scores = [s + VALIDATOR_BOOST if failed else s for s, failed in zip(scores, failures)]
    return scores


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class OperatingPoint:
    name: str
    cloud_share: float
    quality: float


@dataclass(frozen=True)
class EvalReport:
    replay: ReplaySet
    policy: Policy
    curve: Curve
    figures: Figures
    random: Figures
    random_seeds: int
    oracle_curve: Curve
    oracle: Figures
    operating_points: tuple[OperatingPoint, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, object]:
        r = self.replay
        return {
            "dataset": r.name, "source": r.source, "items": len(r.items), "dropped": r.dropped,
            "quality": r.scale,
            "local": {"label": r.local_label, "quality": _r(self.curve.local_quality)},
            "cloud": {"label": r.cloud_label, "quality": _r(self.curve.cloud_quality)},
            "policy": {"name": self.policy, **self.figures.as_json(),
                       "curve": [{"cloud_share": _r(p.cloud_share), "quality": _r(p.quality),
                                  "min_cloud_score": p.min_cloud_score} for p in self.curve.points]},
            "random": {**self.random.as_json(), "seeds": self.random_seeds},
            "oracle": self.oracle.as_json(),
            "operating_points": [{"name": p.name, "cloud_share": _r(p.cloud_share), "quality": _r(p.quality)}
                                 for p in self.operating_points],
            "notes": list(self.notes + r.notes),
        }


def evaluate(replay: ReplaySet, policy: Policy, settings: RouterSettings | None = None, *,
             seeds: int = RANDOM_SEEDS) -> EvalReport:
    """The curve and figures of `policy` on `replay`, with the random and oracle references."""
    settings = settings or RouterSettings.model_validate({})
    local, cloud = replay.qualities()
    notes: list[str] = []
    routed = failures = None
    points: list[OperatingPoint] = []
    if policy in ("router", "router+validator"):
        routed = decisions(replay.items, Router(settings))
        failures = validator_failures(replay) if policy == "router+validator" else None
        if policy == "router+validator" and failures is None:
            notes.append("no validator applies to this replay set: router+validator is the router alone")
        points.append(_configured(routed, failures, local, cloud, settings))
        if failures is not None:
            share = sum(failures) / len(failures)
            quality = sum(c if f else lo for f, lo, c in zip(failures, local, cloud)) / len(local)
            points.insert(0, OperatingPoint("validator only", share, quality))
    if policy == "random":
        curve = sweep("random (seed 0)", random_scores(len(local), 0), local, cloud)
    else:
        curve = sweep(policy, policy_scores(policy, replay, routed, failures), local, cloud)
    oracle_curve = sweep("oracle", oracle_scores(local, cloud), local, cloud)
    if curve.gap <= _EPS:
        notes.append("the cloud answers are not better than the local ones here: APGR and CPT are undefined")
    return EvalReport(replay, policy, curve, curve.figures(), random_figures(local, cloud, seeds), seeds,
                      oracle_curve, oracle_curve.figures(), tuple(points), tuple(notes))


def _configured(routed: Sequence[Decision], failures: Sequence[bool] | None, local: Sequence[float],
                cloud: Sequence[float], settings: RouterSettings) -> OperatingPoint:
    """Where the router lands with the configured thresholds (plus the validator's escalations)."""
    to_cloud = [d.target == "cloud" or bool(failures and failures[i]) for i, d in enumerate(routed)]
    quality = sum(c if sent else lo for sent, lo, c in zip(to_cloud, local, cloud)) / len(local)
    name = f"configured thresholds (score {settings.score_threshold:g}, confidence {settings.confidence_threshold:g})"
    return OperatingPoint(name, sum(to_cloud) / len(to_cloud), quality)


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# ---------------------------------------------------------------- calibration


@dataclass(frozen=True)
class ItemCost:
    cloud: float  # USD when the item is routed to the cloud model
    escalation: float  # USD when its local answer fails and climbs to the escalation model


@dataclass(frozen=True)
class Setting:
    """What a pair of thresholds gives on the replay set."""

    score_threshold: float
    confidence_threshold: float
    local_share: float  # answered locally: the diversion
    cloud_share: float  # routed to the cloud, or escalated there
    escalated_share: float
    quality: float
    regression: float  # share of items whose answer is worse than the cloud's
    cost_usd: float

    def as_json(self) -> dict[str, float | None]:
        return {k: _r(v, 6) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Calibration:
    target: float
    reached: bool
    current: Setting
    suggested: Setting
    all_cloud_cost_usd: float
    all_cloud_quality: float
    all_local_quality: float
    uses_validator: bool
    candidates: int

    def saved_usd(self, setting: Setting) -> float:
        return self.all_cloud_cost_usd - setting.cost_usd

    def saved_pct(self, setting: Setting) -> float:
        return 100 * self.saved_usd(setting) / self.all_cloud_cost_usd if self.all_cloud_cost_usd else 0.0

    def as_json(self) -> dict[str, object]:
        def one(s: Setting) -> dict[str, object]:
            return {**s.as_json(), "saved_usd": _r(self.saved_usd(s), 6), "saved_pct": _r(self.saved_pct(s), 2)}

        return {"max_regression": self.target, "reached": self.reached, "current": one(self.current),
                "suggested": one(self.suggested), "all_cloud": {"cost_usd": _r(self.all_cloud_cost_usd, 6),
                                                                "quality": _r(self.all_cloud_quality)},
                "all_local": {"quality": _r(self.all_local_quality)}, "uses_validator": self.uses_validator,
                "candidates": self.candidates}


def item_costs(replay: ReplaySet, prices: PriceTable, cloud_model: str, escalation_model: str,
               output_tokens: int = DEFAULT_OUTPUT_TOKENS) -> list[ItemCost]:
    """Per item, what its answer costs on the cloud model (and on the escalation model):
    the ledger's token counts when known, else about four characters a token of the
    prompt and the cloud answer, else `output_tokens` for the answer."""
    for model in (cloud_model, escalation_model):
        if not prices.is_priced(model):
            raise ConfigError(f"no price for {model}", field=f"prices.{model}",
                              hint="add `prices: {MODEL: {input: X, output: Y}}` to the config")
    out = []
    for item in replay.items:
        tokens_in = item.input_tokens or estimate_tokens(item.prompt)
        tokens_out = item.output_tokens or (estimate_tokens(item.cloud_answer) if item.cloud_answer else output_tokens)
        usage = Usage(tokens_in, tokens_out)
        out.append(ItemCost(prices.cost(cloud_model, usage), prices.cost(escalation_model, usage)))
    return out


_Totals = tuple[float, float, float, float, float]  # quality, regression, cost, local, escalated


def calibrate(replay: ReplaySet, settings: RouterSettings, costs: Sequence[ItemCost], *,
              max_regression: float, failures: Sequence[bool] | None = None,
              score_grid: Sequence[float] | None = None, confidence_grid: Sequence[float] | None = None,
              ) -> Calibration:
    """The thresholds that keep the most items local with at most `max_regression` regressions.

    Local answers that fail `failures` (the validators) climb to the cloud, as in a run.
    Candidates are screened with one routing pass per score threshold (the confidence
    threshold only compares), then the winner is checked by routing again with exactly
    its settings, so the figures shown are the router's own.
    """
    local, cloud = replay.qualities()
    fails = list(failures) if failures is not None else [False] * len(local)
    jobs = [item_job(item) for item in replay.items]
    work = settings.model_copy(deep=True)
    router = Router(work)
    measure = _Measure(local, cloud, fails, costs)
    first = [router.decide(job) for job in jobs]  # reads each task's words once; later passes hit the cache
    current = measure.setting([d.target == "local" for d in first], settings.score_threshold,
                              settings.confidence_threshold)
    soft = [d.score for d in first if d.rule is None]
    sgrid = list(score_grid) if score_grid is not None else _score_grid(soft)
    cgrid = list(confidence_grid) if confidence_grid is not None else [round(0.05 * i, 2) for i in range(21)]
    screened: list[tuple[_Totals, float, float]] = []
    work.confidence_threshold = 0.0  # with 0, only the score decides a soft decision
    for st in sgrid:
        work.score_threshold = st
        screened.extend((totals, st, ct) for totals, ct in measure.screen(router, jobs, cgrid))
    n = len(local)
    feasible = [c for c in screened if c[0][1] / n <= max_regression + _EPS]

    def closeness(c: tuple[_Totals, float, float]) -> float:
        return abs(c[1] - settings.score_threshold) + abs(c[2] - settings.confidence_threshold)

    feasible.sort(key=lambda c: (-c[0][3], -c[0][0], c[0][2], closeness(c)))
    for _, st, ct in feasible[:20]:
        checked = _exact(router, jobs, measure, st, ct)
        if checked.regression <= max_regression + _EPS:
            return _calibration(max_regression, True, current, checked, measure, fails, failures, len(screened))
    fallback = min(screened, key=lambda c: (c[0][1], -c[0][3], closeness(c)))
    checked = _exact(router, jobs, measure, fallback[1], fallback[2])
    return _calibration(max_regression, False, current, checked, measure, fails, failures, len(screened))


def _calibration(target: float, reached: bool, current: Setting, suggested: Setting, measure: _Measure,
                 fails: Sequence[bool], failures: Sequence[bool] | None, candidates: int) -> Calibration:
    n = len(measure.local)
    return Calibration(target, reached, current, suggested, sum(c.cloud for c in measure.costs),
                       sum(measure.cloud) / n, sum(measure.local) / n, failures is not None and any(fails),
                       candidates)


def _exact(router: Router, jobs: Sequence[Job], measure: _Measure, st: float, ct: float) -> Setting:
    router.settings.score_threshold, router.settings.confidence_threshold = st, ct
    return measure.setting(_local_targets(router, jobs), st, ct)


def _local_targets(router: Router, jobs: Sequence[Job]) -> list[bool]:
    return [router.decide(job).target == "local" for job in jobs]


def _score_grid(soft: Sequence[float]) -> list[float]:
    """Score thresholds 0.01 apart, from just below the lowest soft score to the highest."""
    if not soft:
        return [0.0]
    low, high = max(0, round(min(soft) * 100) - 1), min(100, round(max(soft) * 100))
    return [i / 100 for i in range(low, high + 1)]


class _Measure:
    """Per-item effects of keeping an item local rather than sending it to the cloud."""

    def __init__(self, local: Sequence[float], cloud: Sequence[float], fails: Sequence[bool],
                 costs: Sequence[ItemCost]) -> None:
        if len(costs) != len(local):
            raise InputError("one cost per replay item is needed")
        self.local, self.cloud, self.fails, self.costs = local, cloud, fails, costs
        # delta of (quality, regression, cost, local, escalated) when item i stays local
        self.delta: list[_Totals] = []
        for lo, c, failed, cost in zip(local, cloud, fails, costs):
            if failed:
                self.delta.append((0.0, 0.0, cost.escalation - cost.cloud, 0.0, 1.0))
            else:
                self.delta.append((lo - c, 1.0 if lo < c - _EPS else 0.0, -cost.cloud, 1.0, 0.0))
        self.base: _Totals = (float(sum(cloud)), 0.0, sum(c.cloud for c in costs), 0.0, 0.0)

    def totals(self, kept_local: Sequence[int]) -> _Totals:
        out = list(self.base)
        for i in kept_local:
            for k, v in enumerate(self.delta[i]):
                out[k] += v
        return (out[0], out[1], out[2], out[3], out[4])

    def setting(self, targets_local: Sequence[bool], st: float, ct: float) -> Setting:
        q, reg, cost, kept, esc = self.totals([i for i, t in enumerate(targets_local) if t])
        n = len(self.local)
        return Setting(st, ct, kept / n, 1 - kept / n, esc / n, q / n, reg / n, cost)

    def screen(self, router: Router, jobs: Sequence[Job], cgrid: Sequence[float]) -> list[tuple[_Totals, float]]:
        """Totals for each confidence threshold, from one routing pass (prefix sums by confidence)."""
        fixed: list[int] = []
        eligible: list[tuple[float, int]] = []
        for i, job in enumerate(jobs):
            d = router.decide(job)
            if d.target != "local":
                continue
            if d.rule is not None:
                fixed.append(i)  # a hard local rule ignores both thresholds
            else:
                eligible.append((d.confidence, i))
        eligible.sort()
        confidences = [conf for conf, _ in eligible]
        base = self.totals(fixed)
        suffix: list[_Totals] = [(0.0, 0.0, 0.0, 0.0, 0.0)]
        for _, i in reversed(eligible):
            prev, step = suffix[-1], self.delta[i]
            suffix.append((prev[0] + step[0], prev[1] + step[1], prev[2] + step[2], prev[3] + step[3],
                           prev[4] + step[4]))
        out: list[tuple[_Totals, float]] = []
        for ct in cgrid:
            kept = len(eligible) - bisect.bisect_left(confidences, ct)  # confidence >= ct stays local
            s = suffix[kept]
            out.append(((base[0] + s[0], base[1] + s[1], base[2] + s[2], base[3] + s[3], base[4] + s[4]), ct))
        return out
