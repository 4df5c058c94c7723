"""Hard rules, then a soft score -> Decision. Pure: no I/O once built.

`target = cloud if score > score_threshold or confidence < confidence_threshold`.
The error costs are asymmetric (a reasoning task sent local costs quality, an
easy task sent to Claude costs cents), so when in doubt the answer is cloud.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict

from ollama_dist.config import RouterSettings
from ollama_dist.ledger.store import TaskHistory as TaskHistory  # re-exported: it lived here
from ollama_dist.routing.learning import distrust, failures
from ollama_dist.tasks.model import Job, Task

Target = Literal["local", "cloud"]

BASE_SCORE = 0.30
MARKER_WEIGHT = 0.15
MARKER_CAP = 0.45
QUALITY_WEIGHT = 0.15  # on top of counting as a reasoning marker
DETERMINISM_WEIGHT = 0.12
DETERMINISM_CAP = 0.36


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


def estimate_tokens(text: str) -> int:
    """About four characters a token: the usual rule of thumb for English and code."""
    return math.ceil(len(text) / 4)


def default_vocabulary() -> dict[str, Any]:
    text = resources.files("ollama_dist").joinpath("data/router.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


_LOG_LEVEL = re.compile(r"\b(DEBUG|TRACE|INFO|WARN|WARNING|ERROR|FATAL)\b")


def _words(*parts: str | None) -> str:
    """The text the vocabulary is matched against: lower case, log levels marked as such."""
    text = "\n".join(p for p in parts if p)
    return _LOG_LEVEL.sub(lambda m: "loglevel_" + m.group(1), text).lower()


class _Pattern:
    """A compiled vocabulary pattern with a cheap literal pre-check.

    Patterns are matched against lower-cased text without IGNORECASE (several times
    faster), and skipped at C speed when none of the literal prefixes a match must
    start with occurs in the text.
    """

    __slots__ = ("regex", "triggers")

    def __init__(self, pattern: str) -> None:
        self.regex = re.compile(pattern)
        self.triggers = _prefixes(pattern)

    def search(self, text: str) -> re.Match[str] | None:
        triggers = self.triggers
        if triggers is not None:
            for trigger in triggers:
                if trigger in text:
                    break
            else:
                return None
        return self.regex.search(text)


def _prefixes(pattern: str) -> tuple[str, ...] | None:
    """Literal strings one of which every match starts with; None when unknown."""
    try:
        parser = importlib.import_module("re._parser")  # the stdlib's own; a surprise disables the pre-check
        found = _literal_starts(list(parser.parse(pattern)), parser)
    except Exception:  # noqa: BLE001 - an optimisation, never a failure
        return None
    if not found or any(len(f) < 2 for f in found):
        return None
    return tuple(found)


def _literal_starts(items: list[Any], _parser: Any) -> list[str] | None:
    out = [""]
    for op, arg in items:
        if op is _parser.AT:
            continue
        if op is _parser.LITERAL:
            out = [o + chr(arg) for o in out]
            continue
        if op in (_parser.SUBPATTERN, _parser.BRANCH):
            branches = [list(arg[3])] if op is _parser.SUBPATTERN else [list(b) for b in arg[1]]
            tails: list[str] = []
            for branch in branches:
                sub = _literal_starts(branch, _parser)
                if not sub:
                    return out if out != [""] else None
                tails.extend(sub)
            return [o + t for o in out for t in tails]
        break
    return out if out != [""] else None


def _compile(patterns: list[str]) -> list[_Pattern]:
    return [_Pattern(p) for p in patterns]


def _first(patterns: list[_Pattern], text: str) -> re.Match[str] | None:
    for pattern in patterns:
        m = pattern.search(text)
        if m:
            return m
    return None


@dataclass(frozen=True)
class _LocalRule:
    name: str
    patterns: list[_Pattern]
    requires_structured_output: bool = False


@dataclass(frozen=True)
class _Instruction:
    """What the router reads from a task's words; computed once per task."""

    cloud_rule: str | None
    cloud_match: str | None
    local_rule: str | None
    local_match: str | None
    reasoning: tuple[str, ...]
    determinism: tuple[str, ...]
    quality: tuple[str, ...]
    steps: int
    words: int
    wants_reply: bool


@dataclass
class Router:
    """Built once from settings; `decide` is pure and cheap."""

    settings: RouterSettings
    vocabulary: Mapping[str, Any] = field(default_factory=default_vocabulary)
    second_opinion: Reviewer | None = None

    def __post_init__(self) -> None:
        vocab = dict(self.vocabulary)
        vocab.update(self.settings.vocabulary)
        self._cloud = [(name, _compile(list(pats))) for name, pats in vocab["cloud_rules"].items()]
        self._local: list[_LocalRule] = []
        for name, spec in vocab["local_rules"].items():
            if isinstance(spec, dict):
                self._local.append(_LocalRule(name, _compile(list(spec["patterns"])),
                                              bool(spec.get("requires_structured_output"))))
            else:
                self._local.append(_LocalRule(name, _compile(list(spec))))
        self._reasoning = _compile(vocab["reasoning_markers"])
        self._determinism = _compile(vocab["determinism_markers"])
        self._quality = _compile(vocab.get("quality_markers", []))
        complaint = vocab.get("complaint_input") or {}
        self._reply = re.compile(complaint.get("reply", r"(?!x)x"))
        self._angry = _compile(list(complaint.get("markers", [])))
        self._steps = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S|\b(?:then|after that|finally|next)\b",
                                 re.IGNORECASE | re.MULTILINE)
        self._cache: dict[int, tuple[Task, _Instruction]] = {}

    # ------------------------------------------------------------ reading a task

    def _instruction(self, task: Task) -> _Instruction:
        key = id(task)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is task:
            return hit[1]
        text = _words(task.name.replace("-", " ").replace("_", " "), task.description, task.system, task.prompt)
        cloud_rule = cloud_match = None
        for name, patterns in self._cloud:
            m = _first(patterns, text)
            if m:
                cloud_rule, cloud_match = name, m.group(0)
                break
        local_rule = local_match = None
        structured = task.output.format in ("json", "yaml") or task.output.schema_ is not None
        for rule in self._local:
            if rule.requires_structured_output and not structured:
                continue
            m = _first(rule.patterns, text)
            if m:
                local_rule, local_match = rule.name, m.group(0)
                break
        reasoning = tuple(m.group(0).lower() for p in self._reasoning if (m := p.search(text)))
        quality = tuple(m.group(0).lower() for p in self._quality if (m := p.search(text)))
        determinism = tuple(m.group(0).lower() for p in self._determinism if (m := p.search(text)))
        info = _Instruction(
            cloud_rule, cloud_match, local_rule, local_match, reasoning + quality, determinism, quality,
            steps=len(self._steps.findall(task.prompt)), words=len(task.prompt.split()),
            wants_reply=bool(self._reply.search(task.prompt.lower())),
        )
        self._cache[key] = (task, info)  # the task is held, so its id is not reused
        return info

    # ------------------------------------------------------------ deciding

    def decide(self, job: Job, history: TaskHistory | None = None) -> Decision:
        task = job.task
        s = self.settings
        if task.kind != "auto":
            target: Target = "cloud" if task.kind == "reasoning" else "local"
            return Decision(target=target, score=1.0 if target == "cloud" else 0.0, confidence=1.0,
                            rule=f"kind:{task.kind}", reasons=(f"task declares kind: {task.kind}",))

        info = self._instruction(task)
        tokens = estimate_tokens((task.system or "") + job.prompt)
        if info.cloud_rule:
            return _hard("cloud", info.cloud_rule, f"{info.cloud_rule}: the instruction says {info.cloud_match!r}")
        if info.wants_reply and job.input_text:
            m = _first(self._angry, job.input_text.lower())
            if m:
                return _hard("cloud", "complaint", f"complaint: a reply to an upset message ({m.group(0)!r})")
        if tokens > s.max_local_tokens:
            return _hard("cloud", "long-context",
                         f"long context: ~{tokens} tokens is past the local limit of {s.max_local_tokens}")
        untrusted = distrust(history, s.min_local_accuracy)
        if untrusted is not None:
            return _hard("cloud", "local-accuracy", f"history: {untrusted}")
        if info.local_rule and not info.reasoning and not _failing(history):
            return _hard("local", info.local_rule, f"{info.local_rule}: the instruction says {info.local_match!r}")
        decision = self._score(job, info, tokens, history)
        if self.second_opinion is not None:
            return self.second_opinion.review(job, decision, tokens, history)
        return decision

    def _score(self, job: Job, info: _Instruction, tokens: int, history: TaskHistory | None) -> Decision:
        s = self.settings
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
        return Decision(target="cloud" if cloud else "local", score=round(score, 3),
                        confidence=round(confidence, 3), rule=None, reasons=tuple(reasons))


def _failing(history: TaskHistory | None) -> bool:
    """A task whose local answers mostly fail has lost its claim to a local hard rule."""
    return bool(history and history.local_jobs >= 3 and history.local_failures / history.local_jobs > 0.5)


def _hard(target: Target, rule: str, reason: str) -> Decision:
    return Decision(target=target, score=1.0 if target == "cloud" else 0.0, confidence=0.9,
                    rule=f"{target}:{rule}", reasons=(reason,))


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
    if schema is not None:
        props, depth = _schema_size(schema)
        if props > 15 or depth > 3:
            return 0.05, f"complex schema ({props} properties, depth {depth})"
        if '"enum"' in str(schema).replace("'", '"'):
            return -0.15, "strict schema with an enum: a checkable answer"
        return -0.10, "strict JSON Schema: a checkable answer"
    if fmt in ("json", "yaml"):
        return -0.05, f"{fmt} output"
    if pattern:
        return -0.05, "answer must match a pattern"
    if fmt == "diff":
        return 0.10, "a diff is hard to produce exactly"
    if fmt == "code":
        return 0.05, "code output"
    return 0.10, "free text with no check"
