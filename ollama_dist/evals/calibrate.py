"""Calibration: the router thresholds that keep the quality regression on a replay set within
a bound at the least cost (`ollama-dist calibrate`). The curve and the report are ``evals.evaluate``."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from ollama_dist.config import RouterSettings
from ollama_dist.errors import ConfigError, InputError
from ollama_dist.evals.evaluate import _EPS, DEFAULT_OUTPUT_TOKENS, _r, item_job
from ollama_dist.evals.replay import ReplaySet
from ollama_dist.ledger.pricing import PriceTable, Usage
from ollama_dist.routing.router import Router, estimate_tokens
from ollama_dist.tasks.model import Job


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
