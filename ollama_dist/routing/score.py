"""The soft score: where no hard rule fires, markers, size, output check and history weigh in.

`cloud if score > score_threshold or confidence < confidence_threshold`. The error costs
are asymmetric (a reasoning task sent local costs quality, an easy task sent to Claude
costs cents), so when in doubt the answer is cloud. Pure, and every weight is a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ollama_dist.config import RouterSettings
from ollama_dist.ledger.store import TaskHistory
from ollama_dist.routing.learning import failures
from ollama_dist.routing.rules import Instruction, Target
from ollama_dist.tasks.model import Job

BASE_SCORE = 0.30
MARKER_WEIGHT = 0.15
MARKER_CAP = 0.45
QUALITY_WEIGHT = 0.15  # on top of counting as a reasoning marker
DETERMINISM_WEIGHT = 0.12
DETERMINISM_CAP = 0.36
QUESTION_WEIGHT = 0.15


@dataclass(frozen=True)
class Scored:
    target: Target
    score: float
    confidence: float
    reasons: tuple[str, ...]


def soft_score(s: RouterSettings, job: Job, info: Instruction, tokens: int, history: TaskHistory | None) -> Scored:
    out = job.task.output
    score = BASE_SCORE
    reasons: list[str] = []
    evidence = 0

    if info.reasoning:
        delta = min(MARKER_CAP, MARKER_WEIGHT * len(info.reasoning))
        score += delta
        evidence += len(info.reasoning)
        reasons.append(f"+{delta:.2f} reasoning markers: {', '.join(info.reasoning[:4])}")
    if info.quality:
        delta = QUALITY_WEIGHT * len(info.quality)
        score += delta
        reasons.append(f"+{delta:.2f} a qualitative goal needs judgement: {', '.join(info.quality[:3])}")
    if info.determinism:
        delta = min(DETERMINISM_CAP, DETERMINISM_WEIGHT * len(info.determinism))
        score -= delta
        evidence += len(info.determinism)
        reasons.append(f"-{delta:.2f} determinism markers: {', '.join(info.determinism[:4])}")
    if info.question:
        score += QUESTION_WEIGHT
        evidence += 1
        reasons.append(f"+{QUESTION_WEIGHT:.2f} the instruction asks a question: an answer to find, not a rewrite")

    if tokens > s.local_context_tokens:
        score += 0.25
        evidence += 1
        reasons.append(f"+0.25 ~{tokens} input tokens, past the {s.local_context_tokens} local models handle well")
    elif tokens > s.local_context_tokens // 2:
        score += 0.10
        reasons.append(f"+0.10 ~{tokens} input tokens")
    elif tokens < 300:
        score -= 0.05
        reasons.append(f"-0.05 short input (~{tokens} tokens)")

    delta, why = _format_weight(out.format, out.schema_, out.pattern)
    if delta:
        score += delta
        evidence += 1
        reasons.append(f"{delta:+.2f} {why}")

    if info.steps > 2:
        delta = min(0.2, 0.05 * (info.steps - 2))
        score += delta
        reasons.append(f"+{delta:.2f} {info.steps} steps in the instruction")
    if info.words > 250:
        score += 0.15
        reasons.append(f"+0.15 long instruction ({info.words} words)")
    elif info.words > 120:
        score += 0.10
        reasons.append(f"+0.10 longish instruction ({info.words} words)")

    if history and history.local_jobs >= 3:
        rate = history.local_failures / history.local_jobs
        evidence += 1
        if rate > 0.5:
            score += 0.5 * rate
            reasons.append(f"+{0.5 * rate:.2f} history: {failures(history)}")
        elif rate < 0.1:
            score -= 0.10
            reasons.append(f"-0.10 history: {history.local_jobs - history.local_failures}/"
                           f"{history.local_jobs} local answers valid")

    score = min(1.0, max(0.0, score))
    margin = abs(score - s.score_threshold)
    confidence = min(0.95, 0.40 + 1.5 * margin + 0.08 * evidence)
    cloud = score > s.score_threshold or confidence < s.confidence_threshold
    if not cloud:
        verdict = f"local: score {score:.2f} <= {s.score_threshold} with confidence {confidence:.2f}"
    elif score > s.score_threshold:
        verdict = f"cloud: score {score:.2f} > {s.score_threshold}"
    else:
        verdict = f"cloud: confidence {confidence:.2f} < {s.confidence_threshold} (when in doubt, cloud)"
    reasons.append(verdict)
    return Scored("cloud" if cloud else "local", round(score, 3), round(confidence, 3), tuple(reasons))


def _schema_size(schema: Any, depth: int = 0) -> tuple[int, int]:
    """(number of properties, nesting depth) of a JSON Schema, roughly."""
    if not isinstance(schema, dict):
        return 0, depth
    props = schema.get("properties") or {}
    count, deepest = len(props), depth
    children = list(props.values()) if isinstance(props, dict) else []
    if isinstance(schema.get("items"), dict):
        children.append(schema["items"])
    for child in children:
        c, d = _schema_size(child, depth + 1)
        count += c
        deepest = max(deepest, d)
    return count, deepest


def _format_weight(fmt: str, schema: dict[str, Any] | None, pattern: str | None) -> tuple[float, str]:
    """What the output check says about the risk of a local answer. A schema, a pattern or a
    structured format checks the answer's shape, not its substance: alone, they weigh nothing
    toward local. An answer with no check at all, or one hard to produce exactly, weighs toward cloud."""
    if schema is not None:
        props, depth = _schema_size(schema)
        if props > 15 or depth > 3:
            return 0.05, f"complex schema ({props} properties, depth {depth})"
        return 0.0, ""
    if fmt in ("json", "yaml") or pattern:
        return 0.0, ""
    if fmt == "diff":
        return 0.10, "a diff is hard to produce exactly"
    if fmt == "code":
        return 0.05, "code output"
    return 0.10, "free text with no check"
