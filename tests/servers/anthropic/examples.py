"""Claude's answers to the shipped examples (`tests/data/cloud_answers.yaml`), for tests that
run `tasks/examples` and need the cloud lane to answer each task rightly, not with a minimal
instance of its schema."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ollama_dist.tasks.loader import load_tasks

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "tasks" / "examples"


def cloud_responder() -> Callable[[dict[str, Any]], str]:
    """An answer function for `AnthropicServer.answer`: it finds the task by its prompt's first
    line and, where answers differ per input, the answer whose key the message names."""
    answers = yaml.safe_load((REPO / "tests/data/cloud_answers.yaml").read_text())
    openings = {task.prompt.strip().splitlines()[0]: task.name for task in load_tasks([EXAMPLES])}

    def respond(body: dict[str, Any]) -> str:
        content = body["messages"][0]["content"]
        text = content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)
        name = next(n for opening, n in openings.items() if opening in text)
        answer = answers[name]
        if isinstance(answer, dict):
            return str(next(a for key, a in answer.items() if key in text))
        return str(answer)

    return respond
