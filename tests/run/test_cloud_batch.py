"""`run --cloud-batch` against an Anthropic-compatible endpoint without the batches route:
the jobs go through the Messages API, and one note says why."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.ledger.pricing import PriceTable, Usage
from tests.servers.anthropic import AnthropicServer


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[AnthropicServer]:
    """A Messages-only endpoint (batches=False), as ANTHROPIC_BASE_URL, with no local tier."""
    with AnthropicServer(key="test-key", batches=False) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        Path("ollama-dist.yaml").write_text("ollama: {hosts: [], embedded: false}\ncloud: {batch_poll_s: 0.05}\n")
        yield server


def cloud_tasks(count: int) -> None:
    for i in range(count):
        Path(f"why{i}.yaml").write_text(f"name: why{i}\nprompt: Why does design {i} trade latency for safety?\n")


def run_json(*args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(app, ["run", *args, "--json", "--quiet", "--root", str(Path.cwd())])
    return result.exit_code, json.loads(result.stdout), result.stderr


def test_without_a_batches_route_the_jobs_go_through_the_messages_api(
    proxy: AnthropicServer, isolated_home: Path
) -> None:
    cloud_tasks(3)
    code, data, err = run_json(".", "--cloud-batch")
    assert code == 0, err
    assert len(proxy.calls("/v1/messages/batches")) == 1  # tried once, not once per job
    assert len(proxy.calls("/v1/messages")) == 3
    assert [j["status"] for j in data["jobs"]] == ["ok"] * 3
    [note] = [n for n in data["notes"] if "--cloud-batch" in n]
    assert "has no Message Batches route" in note and "3 job(s) went through the Messages API" in note
    assert "model_missing" not in json.dumps(data)
    with sqlite3.connect(isolated_home / "ledger.db") as db:
        rows = db.execute("SELECT backend, outcome, reason, model, input_tokens, output_tokens, cost_usd "
                          "FROM attempts").fetchall()
    assert len(rows) == 3 and all((backend, outcome) == ("claude", "ok") for backend, outcome, *_ in rows)
    _, _, _, model, tokens_in, tokens_out, cost = rows[0]
    assert cost == pytest.approx(PriceTable.load().cost(model, Usage(tokens_in, tokens_out)))  # standard price


def test_the_note_goes_to_stderr_once_without_json(proxy: AnthropicServer) -> None:
    cloud_tasks(2)
    result = CliRunner().invoke(app, ["run", ".", "--cloud-batch", "--quiet", "--root", str(Path.cwd())])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("has no Message Batches route") == 1
