"""The router's vocabulary and its hard rules: what a task's words say, read once per task.

Pure: no I/O once built. `Rules.read` turns a task's words (name, description, system,
prompt; never the input) into an `Instruction`; `Rules.hard` names the hard rule that
decides a job, if one does. The soft score (routing/score.py) and the combination
(routing/decision.py) read the same `Instruction`.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import yaml

from ollama_dist.config import RouterSettings
from ollama_dist.errors import ConfigError
from ollama_dist.ledger.store import TaskHistory
from ollama_dist.routing.learning import distrust
from ollama_dist.routing.sentences import asking_sentences, governing_lead, sentence_leads
from ollama_dist.tasks.model import Job, Task

Target = Literal["local", "cloud"]


def estimate_tokens(*texts: str) -> int:
    """About four characters a token: the usual rule of thumb for English and code."""
    return math.ceil(sum(map(len, texts)) / 4)


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


def _cloud_rule(name: str, spec: Any) -> tuple[list[_Pattern], list[_Pattern]]:
    """A cloud rule's (work, topic) patterns: a plain list names the work (never overturned)."""
    field = f"router.vocabulary.cloud_rules.{name}"
    parts = spec if isinstance(spec, dict) else {"work": spec}
    unknown = sorted(set(parts) - {"work", "topic"})
    if unknown or not all(isinstance(v, list) and all(isinstance(p, str) for p in v) for v in parts.values()):
        raise ConfigError(f"expected a list of patterns, or `work:` and `topic:` lists (found {unknown or spec!r})",
                          field=field, hint="see the cloud_rules of ollama_dist/data/router.yaml")
    try:
        return _compile(parts.get("work", [])), _compile(parts.get("topic", []))
    except re.error as exc:
        raise ConfigError(f"not a regular expression: {exc}", field=field) from exc


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
class Instruction:
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
    lead: str | None = None  # the verb that governs the instruction (routing/sentences.py governing_lead)
    judgement: str | None = None  # a judgement verb leading one of its sentences
    question: bool = False  # one of its sentences asks a question
    modal: str | None = None  # a modal in a sentence that asks ("which line should move?"): what ought to be
    mechanical: bool = False  # a mechanical verb governs it, no judgement verb leads, nothing is asked
    cloud_topic: bool = False  # the cloud rule fired on a topic word, not on a pattern naming the work

    @property
    def governed(self) -> bool:
        """A judgement verb governs the instruction (leads its first sentence)."""
        return self.judgement is not None and self.judgement == self.lead


@dataclass(frozen=True)
class Hard:
    """A hard rule that decides a job: its target, its name and why."""

    target: Target
    rule: str
    reason: str
    reviewable: bool = False  # the second opinion may overturn it (routing/decision.py says when)


class Rules:
    """The vocabulary compiled; `read` is cached per task object."""

    def __init__(self, settings: RouterSettings, vocabulary: Mapping[str, Any]) -> None:
        self.settings = settings
        vocab = dict(vocabulary)
        vocab.update(settings.vocabulary)
        self._cloud = [(name, *_cloud_rule(name, spec)) for name, spec in vocab["cloud_rules"].items()]
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
        self._mechanical = frozenset(vocab.get("mechanical_verbs", []))
        self._judgement = frozenset(vocab.get("judgement_verbs", []))
        self._verbs = self._mechanical | self._judgement | frozenset(vocab.get("instruction_verbs", []))
        self._negated = _compile(list(vocab.get("negated_judgement", [])))
        self._safety = frozenset(vocab.get("safety_rules", []))
        self._modals = _compile(list(vocab.get("inference_modals", [])))
        self._cache: dict[int, tuple[Task, Instruction]] = {}

    def read(self, task: Task) -> Instruction:
        key = id(task)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is task:
            return hit[1]
        text = _words(task.name.replace("-", " ").replace("_", " "), task.description, task.system, task.prompt)
        cloud_rule, cloud_match, cloud_topic = self._cloud_rule(text)
        local_rule = local_match = None
        structured = task.output.format in ("json", "yaml") or task.output.schema_ is not None
        for rule in self._local:
            if rule.requires_structured_output and not structured:
                continue
            m = _first(rule.patterns, text)
            if m:
                local_rule, local_match = rule.name, m.group(0)
                break
        asked = self._unnegated(text)  # "do not judge whether we are exposed" asks for no judgement
        reasoning = tuple(m.group(0).lower() for p in self._reasoning if (m := p.search(asked)))
        quality = tuple(m.group(0).lower() for p in self._quality if (m := p.search(asked)))
        determinism = tuple(m.group(0).lower() for p in self._determinism if (m := p.search(text))) + \
            tuple(m.group(0).lower() for p in self._negated if (m := p.search(text)))
        leads = sentence_leads(task.prompt)
        lead = governing_lead(task.prompt, self._verbs)
        judgement = next((w for w, _ in leads if w in self._judgement), None)
        question = any(q for _, q in leads)
        modal = self._modal(task.prompt) if question else None
        info = Instruction(
            cloud_rule, cloud_match, local_rule, local_match, reasoning + quality, determinism, quality,
            steps=len(self._steps.findall(task.prompt)), words=len(task.prompt.split()),
            wants_reply=bool(self._reply.search(task.prompt.lower())),
            lead=lead, judgement=judgement, question=question, modal=modal,
            mechanical=lead in self._mechanical and judgement is None and not question, cloud_topic=cloud_topic,
        )
        self._cache[key] = (task, info)  # the task is held, so its id is not reused
        return info

    def _unnegated(self, text: str) -> str:
        """The text with every negated judgement ("do not assess", "don't interpret") blanked out."""
        for p in self._negated:
            if p.search(text):
                text = p.regex.sub(" ", text)
        return text

    def _modal(self, prompt: str) -> str | None:
        """The first inference modal in a sentence of the prompt that asks a question."""
        for sentence in asking_sentences(prompt):
            m = _first(self._modals, sentence)
            if m:
                return m.group(0)
        return None

    def _cloud_rule(self, text: str) -> tuple[str | None, str | None, bool]:
        """(rule, what it matched, on a topic word): a pattern naming the work, in any rule, wins
        over a topic word, so a topic word decides only where nothing names the work."""
        for name, work, _ in self._cloud:
            m = _first(work, text)
            if m:
                return name, m.group(0), False
        for name, _, topic in self._cloud:
            m = _first(topic, text)
            if m:
                return name, m.group(0), True
        return None, None, False

    def hard(self, job: Job, info: Instruction, tokens: int, history: TaskHistory | None) -> Hard | None:
        """The hard rule that decides `job`, checked in order; None leaves it to the score."""
        plain = info.mechanical and not info.quality
        if info.cloud_rule:
            return Hard("cloud", info.cloud_rule, f"{info.cloud_rule}: the instruction says {info.cloud_match!r}",
                        reviewable=plain and info.cloud_topic and info.cloud_rule not in self._safety)
        if info.wants_reply and job.input_text:
            m = _first(self._angry, job.input_text.lower())
            if m:
                return Hard("cloud", "complaint", f"complaint: a reply to an upset message ({m.group(0)!r})")
        limit = self.settings.max_local_tokens
        if tokens > limit:
            return Hard("cloud", "long-context", f"long context: ~{tokens} tokens is past the local limit of {limit}")
        untrusted = distrust(history, self.settings.min_local_accuracy)
        if untrusted is not None:
            return Hard("cloud", "local-accuracy", f"history: {untrusted}")
        if info.local_rule and not info.reasoning and not info.governed and not failing(history):
            return Hard("local", info.local_rule, f"{info.local_rule}: the instruction says {info.local_match!r}",
                        reviewable=not plain)
        return None


def failing(history: TaskHistory | None) -> bool:
    """A task whose local answers mostly fail has lost its claim to a local hard rule."""
    return bool(history and history.local_jobs >= 3 and history.local_failures / history.local_jobs > 0.5)
