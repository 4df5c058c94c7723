"""The judge: the cloud model compares a local and a cloud answer to the same prompt.

Most real tasks have no ground truth, so the number to watch is the quality-regression
rate: the share of compared pairs where the local answer is worse. The judge sees the
two answers as "candidate" (the local one) and "reference" (the cloud one), never which
model wrote which, and in an order drawn per pair so that a preference for the first
(or the second) answer does not lean one way. Verdicts come back as structured output
(`JUDGE_SCHEMA`) and are checked by the validator before they count.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from ollama_dist.backends.base import Backend, Message, Request
from ollama_dist.checks.validate import OutputSpec, validate
from ollama_dist.errors import AuthError, BackendError, InputError
from ollama_dist.evals.replay import ReplayItem, ReplaySet

Verdict = Literal["tied", "local_worse", "local_better"]
VERDICTS: tuple[Verdict, ...] = ("tied", "local_worse", "local_better")
JUDGE_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": list(VERDICTS)}},
    "required": ["verdict"],
    "additionalProperties": False,
}
MAX_ANSWER_CHARS = 12_000
SYSTEM = (
    "You compare two answers to the same request. Judge correctness first, then completeness "
    "and whether the answer does what was asked; ignore length and style unless the request asks "
    "for them. Reply with the verdict only: \"local_worse\" if the CANDIDATE answer is worse than the "
    "REFERENCE answer, \"local_better\" if it is better, \"tied\" if they are equally good (or equally bad)."
)


@dataclass(frozen=True)
class Judgement:
    item_id: str
    verdict: Verdict | None
    error: str | None = None


@dataclass(frozen=True)
class JudgeReport:
    model: str
    judgements: tuple[Judgement, ...]

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(j.verdict for j in self.judgements if j.verdict is not None)
        return {v: found.get(v, 0) for v in VERDICTS}

    @property
    def judged(self) -> int:
        return sum(self.counts.values())

    @property
    def errors(self) -> int:
        return sum(1 for j in self.judgements if j.verdict is None)

    @property
    def regression_rate(self) -> float | None:
        """The share of judged pairs where the local answer is worse."""
        return self.counts["local_worse"] / self.judged if self.judged else None

    def interval(self, z: float = 1.96) -> tuple[float, float] | None:
        """A 95% Wilson interval for the regression rate."""
        n = self.judged
        if not n:
            return None
        p = self.counts["local_worse"] / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    def as_json(self) -> dict[str, object]:
        ci = self.interval()
        rate = self.regression_rate
        return {"model": self.model, "sampled": len(self.judgements), "judged": self.judged,
                "errors": self.errors, **self.counts,
                "regression_rate": None if rate is None else round(rate, 4),
                "regression_95ci": None if ci is None else [round(ci[0], 4), round(ci[1], 4)]}


def sample(replay: ReplaySet, size: int, seed: int = 0) -> list[ReplayItem]:
    """Up to `size` items that have both answers, drawn with a seeded generator."""
    if size <= 0:
        raise InputError("--sample must be at least 1")
    both = [i for i in replay.items if i.local_answer and i.cloud_answer and i.prompt]
    if not both:
        raise InputError(f"no item of {replay.name} has a prompt and both answers to compare",
                         hint="the judge needs answer text: a CSV/JSONL with answer columns, or a ledger "
                              "written with `ledger.store_text: true`")
    return random.Random(seed).sample(both, min(size, len(both)))


def request(item: ReplayItem, model: str, candidate_first: bool) -> Request:
    candidate = f"<candidate>\n{_clip(item.local_answer)}\n</candidate>"
    reference = f"<reference>\n{_clip(item.cloud_answer)}\n</reference>"
    first, second = (candidate, reference) if candidate_first else (reference, candidate)
    text = f"<request>\n{_clip(item.prompt)}\n</request>\n\n{first}\n\n{second}"
    return Request(model=model, system=SYSTEM, messages=(Message(role="user", content=text),),
                   max_tokens=1024, output_format="json", schema_=JUDGE_SCHEMA, timeout_s=120.0)


async def judge(items: Sequence[ReplayItem], backend: Backend, model: str, *, concurrency: int = 4,
                seed: int = 0) -> JudgeReport:
    """Ask `model` for a verdict on each item. A failed call is recorded, not raised,
    except a refused key, which no other call would get past."""
    rng = random.Random(seed)
    orders = [rng.random() < 0.5 for _ in items]
    gate = asyncio.Semaphore(max(1, concurrency))
    spec = OutputSpec(format="json", schema_=JUDGE_SCHEMA)

    async def one(item: ReplayItem, candidate_first: bool) -> Judgement:
        async with gate:
            try:
                done = await backend.complete(request(item, model, candidate_first))
            except AuthError:
                raise
            except BackendError as exc:
                return Judgement(item.id, None, f"{exc.reason}: {exc.message}")
        verdict = validate(done.text, spec)
        if not verdict.ok or not isinstance(verdict.value, dict):
            return Judgement(item.id, None, f"invalid verdict: {verdict.reason}")
        value = verdict.value["verdict"]
        return Judgement(item.id, value if value in VERDICTS else None)

    judged = await asyncio.gather(*(one(item, first) for item, first in zip(items, orders)))
    return JudgeReport(model, tuple(judged))


def judged_set(replay: ReplaySet, report: JudgeReport) -> ReplaySet:
    """The judged items, with the verdicts as qualities: tied 1/1, local worse 0/1, local better 1/0."""
    verdicts = {j.item_id: j.verdict for j in report.judgements if j.verdict is not None}
    quality = {"tied": (1.0, 1.0), "local_worse": (0.0, 1.0), "local_better": (1.0, 0.0)}
    items = tuple(replace(i, local_quality=quality[verdicts[i.id]][0], cloud_quality=quality[verdicts[i.id]][1])
                  for i in replay.items if i.id in verdicts)
    if not items:
        raise InputError("the judge gave no verdict", hint="see the errors above; check the API key and model")
    return replace(replay, name=f"{replay.name} (judged)", items=items, scale="judge: not worse than the cloud",
                   notes=replay.notes + (f"qualities from {len(items)} judge verdicts ({report.model})",))


def _clip(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= MAX_ANSWER_CHARS else text[:MAX_ANSWER_CHARS] + "\n[... cut ...]"
