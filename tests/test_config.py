"""Settings from the home's config, the project's on top, then the environment; a project file
(which comes with a cloned repository) never decides where the API key goes; every bad value
is one clear error (exit 2) naming where it stands."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.config import load_settings
from ollama_dist.errors import ConfigError, ConfigErrors
from tests.servers.anthropic import AnthropicServer

runner = CliRunner()
KEY = "test-canary-key-0123456789abcdef"  # made up; it must reach no server a project file names
WHY = "name: why\nprompt: Why does this design trade latency for safety?\n"


@pytest.fixture
def canary() -> Iterator[AnthropicServer]:
    """A loopback Anthropic API that records every request (and whether it carried a key)."""
    with AnthropicServer(key=KEY) as server:
        yield server


def fails(args: list[str], *words: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (args, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for word in words:
        assert word in result.stderr, result.stderr
    return result.stderr


@pytest.mark.parametrize(("section", "line"), [
    ("cloud:\n  max_retries: 0\n  base_url: {url}\n", 3),
    ("cloud: {{api_key: {key}}}\n", 1),
], ids=["base_url", "api_key"])
def test_a_project_file_cannot_take_the_key(canary: AnthropicServer, isolated_home: Path,
                                            monkeypatch: pytest.MonkeyPatch, section: str, line: int) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    Path("why.yaml").write_text(WHY)
    field = "cloud.base_url" if "base_url" in section else "cloud.api_key"
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\n" + section.format(url=canary.url, key=KEY))
    project = Path.cwd() / "ollama-dist.yaml"
    for args in (["run", "why.yaml"], ["route", "why.yaml"], ["config"]):
        err = fails(args, f"{project}:{line + 1} field `{field}`", "not allowed in a project file",
                    str(isolated_home / "config.yaml"))
        assert KEY not in err
    assert canary.requests == []  # nothing was sent, with the key or without


def test_the_home_config_may_name_the_endpoint_and_the_project_file_local_hosts(
        canary: AnthropicServer, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    Path("why.yaml").write_text(WHY)
    (isolated_home / "config.yaml").write_text(f"cloud: {{base_url: {canary.url}, max_retries: 0}}\n"
                                               "models: {local: home-model}\n")
    # local endpoints get no Anthropic key: a project file may set them
    Path("ollama-dist.yaml").write_text("ollama:\n  embedded: false\n  hosts: ['http://127.0.0.1:9']\n"
                                        "  openai_compat: ['http://127.0.0.1:9/v1']\nmodels: {local: project-model}\n")
    result = runner.invoke(app, ["run", "why.yaml", "--json"])
    assert result.exit_code == 0, result.output
    (call,) = canary.calls("/v1/messages")
    assert call.auth in ("x-api-key", "bearer")  # the user's own endpoint got the key
    data = json.loads(runner.invoke(app, ["config", "--json"]).stdout)
    home_file, project_file = isolated_home / "config.yaml", Path.cwd() / "ollama-dist.yaml"
    assert data["cloud.base_url"] == {"value": canary.url, "source": f"file:{home_file}"}
    assert data["models.local"] == {"value": "project-model", "source": f"file:{project_file}"}
    assert data["ollama.hosts"]["source"] == f"file:{project_file}"
    assert data["cloud.api_key"] == {"value": "set (hidden)", "source": "env:ANTHROPIC_API_KEY"}
    assert load_settings().config_files == (home_file, project_file)


@pytest.mark.parametrize(("text", "env", "field"), [
    ("cloud: x\n", {"ANTHROPIC_API_KEY": KEY}, "cloud"),
    ("cloud: [1, 2]\n", {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}, "cloud"),
    ("ollama: 5\n", {"OLLAMA_HOST": "127.0.0.1:11434"}, "ollama"),
    ("router: {score_threshold: 0.5}\nollama: 5\n", {"OLLAMA_HOST": "gpu-box"}, "ollama"),
], ids=["cloud-str-with-key", "cloud-list-with-url", "ollama-int-with-host", "second-line"])
@pytest.mark.parametrize("where", ["project", "home"])
def test_a_section_that_is_not_a_mapping_is_named_even_with_env_overrides(
        isolated_home: Path, monkeypatch: pytest.MonkeyPatch, text: str, env: dict[str, str], field: str,
        where: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = Path.cwd() / "ollama-dist.yaml" if where == "project" else isolated_home / "config.yaml"
    path.write_text(text)
    line = text.splitlines().index(next(t for t in text.splitlines() if t.startswith(field))) + 1
    for args in (["config"], ["router-status"]):
        fails(args, f"{path}:{line} field `{field}`", "valid dictionary")


@pytest.mark.parametrize("value", ["http://[::1", "gpu-box:99999", "http://host:port"])
def test_an_unreadable_ollama_host_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OLLAMA_HOST", value)
    for args in (["config"], ["router-status"]):
        fails(args, f"OLLAMA_HOST={value!r} is not a host or URL", "hint:")


def test_a_home_that_is_a_file_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    monkeypatch.setenv("OLLAMA_DIST_HOME", str(home))
    Path("why.yaml").write_text(WHY)
    for args in (["config"], ["router-status"], ["route", "why.yaml"], ["run", "why.yaml"]):
        fails(args, f"OLLAMA_DIST_HOME={home} is not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder: there is no unreadable home to test")
def test_an_unreadable_home_is_one_clear_error(isolated_home: Path) -> None:
    isolated_home.chmod(0)
    try:
        for args in (["config"], ["router-status"]):
            fails(args, f"cannot read OLLAMA_DIST_HOME={isolated_home}", "chmod")
    finally:
        isolated_home.chmod(0o755)


def test_a_missing_home_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_DIST_HOME", str(tmp_path / "not-yet"))
    result = runner.invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["home"]["value"] == str(tmp_path / "not-yet")


def test_a_config_file_with_several_mistakes_names_each_in_line_order(isolated_home: Path) -> None:
    Path("ollama-dist.yaml").write_text("router:\n  cloud_threshold: high\n  confidnce: 0.5\nollama:\n  hosts: 7\n")
    with pytest.raises(ConfigErrors) as caught:
        load_settings()
    assert [(e.line, e.field) for e in caught.value.errors] == [
        (2, "router.cloud_threshold"), (3, "router.confidnce"), (5, "ollama.hosts")]
    assert isinstance(caught.value, ConfigError)  # callers that catch ConfigError still do
    result = CliRunner().invoke(app, ["route", "--json", "."])
    assert result.exit_code == 2
    errors = json.loads(result.stdout)["error"]["errors"]
    assert [e["field"] for e in errors] == ["router.cloud_threshold", "router.confidnce", "ollama.hosts"]
    assert "did you mean `score_threshold`?" in result.stderr and "Traceback" not in result.stderr
