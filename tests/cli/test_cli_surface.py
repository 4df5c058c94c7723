"""What a script or a reader sees of a failing or a --help command: a JSON error on stdout
under --json, and usage lines that read `PATH...`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app

REPO = Path(__file__).resolve().parents[2]
FAKE_BIN = REPO / "tests" / "fake_bin"
runner = CliRunner()


def python_only_path(tmp_path: Path) -> str:
    folder = tmp_path / "pybin"
    folder.mkdir()
    (folder / "python3").symlink_to(sys.executable)
    return str(folder)


def test_ollama_on_json_without_ollama_prints_the_error_as_json(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", python_only_path(tmp_path))
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:1")
    result = runner.invoke(app, ["ollama", "on", "--json"])
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "InputError" and error["exit_code"] == 2
    assert "`ollama` program is not installed" in error["message"] and "install Ollama" in error["hint"]
    assert "not installed" in result.stderr  # the words for a person stay on stderr


def test_ollama_on_json_when_serve_crashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           isolated_home: Path) -> None:
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{python_only_path(tmp_path)}")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:1")  # nothing listens on port 1
    monkeypatch.setenv("FAKE_OLLAMA_SERVE_EXIT", "3")
    result = runner.invoke(app, ["ollama", "on", "--json", "--timeout", "5"])
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["exit_code"] == 1 and "exited (status 3)" in error["message"]
    assert not (isolated_home / "ollama.pid").exists()


def test_run_json_on_a_missing_task_file_prints_the_error_as_json() -> None:
    result = runner.invoke(app, ["run", "nope.yaml", "--json"])
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert (error["type"], error["file"]) == ("InputError", "nope.yaml")


def test_without_json_stdout_stays_empty_on_an_error() -> None:
    result = runner.invoke(app, ["run", "nope.yaml"])
    assert result.exit_code == 2 and result.stdout == "" and "nope.yaml" in result.stderr


@pytest.mark.parametrize(("command", "usage", "row"), [
    (["run"], "run [OPTIONS] PATH...", "PATH...  Task files, or folders of them."),
    (["route"], "route [OPTIONS] PATH...", "PATH...  Task files, or folders of them."),
    (["eval"], "eval [OPTIONS] SOURCE", "SOURCE  A CSV or JSONL file"),
])
def test_usage_lines_name_the_arguments(command: list[str], usage: str, row: str) -> None:
    result = runner.invoke(app, [*command, "--help"], terminal_width=120)
    assert result.exit_code == 0
    assert usage in result.stdout and row in result.stdout
    assert "{" not in result.stdout.splitlines()[0] and "<list[" not in result.stdout


def test_a_missing_argument_is_named_by_its_metavar() -> None:
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 2 and "Missing argument 'PATH'" in result.stderr
