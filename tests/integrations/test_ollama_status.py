"""`ollama-dist ollama status` route by route, against servers that answer some routes and not others;
the slots, the other local tiers, and a cloud base URL that is an Ollama server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from tests.servers.ollama import FakeOllama

runner = CliRunner()


def status(*extra: str) -> tuple[int, Any, str, str]:
    result = runner.invoke(app, ["ollama", "status", "--json", *extra])
    table = runner.invoke(app, ["ollama", "status"], env={"COLUMNS": "200"})
    return result.exit_code, json.loads(result.stdout), result.stderr, table.stdout


def test_a_host_without_api_ps_shows_what_the_other_routes_said(
    monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    with FakeOllama(broken_routes={"/api/ps": 404}) as shim:
        monkeypatch.setenv("OLLAMA_HOST", shim.url)
        code, data, err, table = status()
    (host,) = data["hosts"]
    assert code == 0 and host["reachable"] and not host["complete"]
    assert host["version"] == shim.version and [m["name"] for m in host["models"]] == ["gemma3:270m"]
    assert host["routes"]["/api/version"] == {"ok": True, "error": None} and host["routes"]["/api/tags"]["ok"]
    assert host["routes"]["/api/ps"]["ok"] is False
    assert "does not speak the Ollama API at /api/ps" in host["routes"]["/api/ps"]["error"]
    assert host["missing"] == [] and "answered, but not every route: /api/ps:" in err
    assert f"up {shim.version}" in table and "/api/ps:" in table


def test_a_server_that_answers_no_ollama_route_is_exit_1(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    routes = {"/api/version": 404, "/api/tags": 404, "/api/ps": 404}
    with FakeOllama(broken_routes=routes) as other:
        monkeypatch.setenv("OLLAMA_HOST", other.url)
        code, data, err, table = status()
    (host,) = data["hosts"]
    assert code == 1 and host["reachable"] is True and host["version"] is None
    assert not any(r["ok"] for r in host["routes"].values()) and "up, version unknown" in table
    assert "something answers there, but not as Ollama" in err


def test_slots_and_the_other_local_tiers_are_shown(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    with FakeOllama() as gpu:
        (isolated_home / "config.yaml").write_text(
            f"ollama:\n  hosts: ['{gpu.url}']\n  num_parallel:\n    '{gpu.url}': 4\n"
            "  openai_compat: ['http://127.0.0.1:8080/v1']\n  embedded: false\n")
        code, data, _, table = status()
    assert code == 0 and data["hosts"][0]["slots"] == 4
    assert data["openai_compat"] == ["http://127.0.0.1:8080/v1"]
    assert data["embedded"]["enabled"] is False and data["embedded"]["state"].startswith("off")
    assert "embedded tier (last local tier): off" in table and "127.0.0.1:8080/v1" in table


def test_a_cloud_base_url_that_is_ollama_is_named(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    with FakeOllama() as local, FakeOllama() as elsewhere:
        monkeypatch.setenv("OLLAMA_HOST", local.url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", elsewhere.url)  # not :11434, not a configured host
        _, data, err, _ = status()
    assert f"{elsewhere.url} answers Ollama's /api/version" in data["cloud_base_url_is_ollama"]
    assert "cloud.base_url points at Ollama, not Claude" in err
