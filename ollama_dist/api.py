"""The library facade: what the CLI and Python callers both call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ollama_dist.config import Settings, load_settings
from ollama_dist.router import Decision, Router, TaskHistory
from ollama_dist.tasks import Job, load_jobs


@dataclass(frozen=True)
class Routed:
    job: Job
    decision: Decision

    def as_json(self) -> dict[str, object]:
        d = self.decision
        return {
            "task": self.job.task.name,
            "job": self.job.id,
            "input": self.job.input_path,
            "target": d.target,
            "score": d.score,
            "confidence": d.confidence,
            "rule": d.rule,
            "reasons": list(d.reasons),
        }


def route(
    paths: Sequence[Path],
    *,
    root: Path | None = None,
    settings: Settings | None = None,
    history: dict[str, TaskHistory] | None = None,
) -> list[Routed]:
    """Load the task files under `paths` and decide a lane for every job."""
    settings = settings or load_settings()
    root = (root or Path.cwd()).resolve()
    router = Router(settings.router)
    history = history or {}
    return [Routed(job, router.decide(job, history.get(job.task.name))) for job in load_jobs(paths, root)]
