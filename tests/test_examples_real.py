"""The shipped examples, run end to end: the real local model (Gemma 3 270M behind the
Ollama-protocol server) and the Anthropic-protocol server standing in for Claude.

Every job must end valid; some are answered locally, and wrong local answers escalate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.tasks.loader import load_tasks
from tests.servers.anthropic import AnthropicServer
from tests.servers.ollama import FakeOllama

pytestmark = pytest.mark.real_model
pytest_plugins = ["tests.servers.fixtures"]

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "tasks" / "examples"


def cloud_responder() -> Any:
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


def checkout_copy(dest: Path) -> Path:
    """The checkout as it stands, in `dest`: a clone that shares its history (the changelog example
    reads `git log`), with the working tree's examples, package and pyproject copied over it. The
    run writes its outputs there, never into the user's `tasks/examples/out/`."""
    try:
        subprocess.run(["git", "clone", "-q", "--shared", str(REPO), str(dest)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the examples read git history, and {REPO} cannot be cloned: {exc}")
    ignore = shutil.ignore_patterns("__pycache__", "out")
    for name in ("tasks", "ollama_dist"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore, dirs_exist_ok=True)
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_shipped_examples_end_to_end(real_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    with AnthropicServer(key="test-key") as claude:
        claude.answer("*", cloud_responder())
        monkeypatch.setenv("OLLAMA_HOST", real_ollama.url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        # no breaker spill-over here: this test is about the local model's own answers
        Path("ollama-dist.yaml").write_text(textwrap.dedent("""\
            ollama: {embedded: false}
            breaker: {p95_threshold_s: 100000}
            """))
        root = checkout_copy(tmp_path / "repo")
        result = CliRunner().invoke(app, ["run", str(root / "tasks/examples"), "--root", str(root),
                                          "--json", "--quiet"])
    assert result.exit_code == 0, result.stdout[-3000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    jobs = report["jobs"]
    assert len(jobs) >= 16 and all(j["status"] == "ok" for j in jobs)
    local = [j for j in jobs if j["routed_to"] == "local"]
    answered_locally = [j for j in local if not j["escalated"]]
    escalated = [j for j in local if j["escalated"]]
    assert answered_locally, "the real model answered nothing valid"
    assert escalated, "no wrong local answer was caught and escalated"
    # span extraction is what a 270M model does right (LOCAL-MODEL.md): the cities are in the text
    cities = {Path(j["output"]).stem: json.loads(Path(j["output"]).read_text())["city"]
              for j in jobs if j["task"] == "extract-contacts" and not j["escalated"]}
    expected = {"amara": "Lagos", "kenji": "Osaka", "maria": "Lisbon"}
    assert cities and all(expected[k] in v for k, v in cities.items())
    print(f"\n{len(answered_locally)} answered locally, {len(escalated)} escalated, "
          f"{len(jobs) - len(local)} routed to the cloud; saved {report['totals']['saved_pct']}%")
