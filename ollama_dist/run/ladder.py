"""The escalation ladder's parts: the run's context, a tier (lane, backend, model, attempts), and the
verdict on one completion (a cut-off answer is never accepted)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ollama_dist.backends.base import Backend, Completion
from ollama_dist.checks import grounding, repetition
from ollama_dist.checks.agreement import COMPARED, same
from ollama_dist.checks.validate import Verdict, validate
from ollama_dist.errors import InputError
from ollama_dist.ledger.reasons import CUT_OFF, SHADOW, SHADOW_DIFFERS, SHADOW_SAME
from ollama_dist.tasks.model import Job

TRUNCATED = frozenset({"length", "max_tokens", "model_context_window_exceeded"})
LOCAL_ATTEMPTS = 2
CLOUD_ATTEMPTS = 2


@dataclass(frozen=True)
class Refresh:
    """Whose cached answers a run discards and asks again (`run --refresh`, `--refresh-task TASK`).
    The ledger keeps the old attempts; it only stops serving them."""

    every: bool = False
    tasks: frozenset[str] = frozenset()

    def covers(self, task: str) -> bool:
        return self.every or task in self.tasks

    def check(self, names: Iterable[str]) -> None:
        """An InputError for a named task the run does not have (a typo would refresh nothing)."""
        known = sorted(set(names))
        unknown = sorted(self.tasks - set(known))
        if unknown:
            raise InputError(f"refresh names `{unknown[0]}`, which is not a task of this run",
                             hint="tasks here: " + ", ".join(known))


@dataclass(frozen=True)
class RunContext:
    run_id: str
    session: str
    root: Path
    out_dir: Path
    git_head: str | None = None
    store_text: bool = False
    force: bool = False  # overwrite outputs edited since they were written
    refresh: Refresh = field(default_factory=Refresh)  # cached answers to discard and ask again


@dataclass(frozen=True)
class Tier:
    lane: Literal["local", "cloud"]
    backend: Backend
    model: str
    attempts: int
    effort: str | None = None


def models_key(local: str, escalation: str, cloud: str) -> str:
    return hashlib.sha256(f"{local}|{escalation}|{cloud}".encode()).hexdigest()[:16]


def verdict_for(job: Job, completion: Completion) -> Verdict:
    """Check one completion against its job: never cut off, then every check of `checked`."""
    if completion.stop_reason in TRUNCATED:
        # a cut-off answer may still parse (json-repair closes brackets): never accept it
        unit = repetition.repeated_unit(completion.text)
        if unit is not None:  # a loop, not a short budget
            return Verdict(ok=False, reason=repetition.reason(unit, job.task.max_tokens), failed="looped")
        return Verdict(ok=False, reason=f"{CUT_OFF} ({job.task.max_tokens}); "
                                        "answer more briefly", failed="cut_off")
    return checked(job, completion.text)


def checked(job: Job, text: str) -> Verdict:
    """`text` as an answer to `job`: format, schema and pattern (validate), then grounding in its input."""
    verdict = validate(text, job.task.output.spec())
    plan = grounding_plan(job)
    return verdict if plan is None else grounding.check(verdict, plan)


def grounding_plan(job: Job) -> grounding.Plan | None:
    out = job.task.output
    return grounding.plan(out.grounded, out.format, job.task.instruction, job.input_text, job.prompt, out.schema_)


def shadow_reason(fmt: str, local: Verdict, cloud: Verdict) -> str:
    """A valid shadow answer's ledger reason: the same value as the local answer, or not (json, yaml)."""
    if fmt not in COMPARED:
        return SHADOW
    return SHADOW_SAME if same(local, cloud) else SHADOW_DIFFERS
