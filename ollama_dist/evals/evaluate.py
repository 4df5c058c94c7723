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

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ollama_dist.checks.validate import validate
from ollama_dist.config import RouterSettings
from ollama_dist.errors import InputError
from ollama_dist.evals.replay import ReplayItem, ReplaySet
from ollama_dist.routing.router import Decision, Router
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
