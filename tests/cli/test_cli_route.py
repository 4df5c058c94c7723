"""`ollama-dist route` and `config` through the CLI: exit codes, JSON contract, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ollama_dist.cli import app

runner = CliRunner()


def test_route_json_contract(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: conv\nprompt: Convert this CSV to JSON.\ninputs: {text: 'a,b'}\n"
                                     "output: {format: json}\n")
    (tmp_path / "b.yaml").write_text("name: dbg\nprompt: Why does this test fail intermittently?\n")
    result = runner.invoke(app, ["route", str(tmp_path), "--json", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["task"] for r in rows] == ["conv", "dbg"]
    for row in rows:
        assert set(row) >= {"task", "job", "target", "score", "confidence", "rule", "reasons"}
        assert row["target"] in ("local", "cloud")
        assert isinstance(row["score"], float) and isinstance(row["confidence"], float)
        assert isinstance(row["reasons"], list) and all(isinstance(r, str) for r in row["reasons"])
    assert rows[0]["target"] == "local" and rows[0]["rule"] == "local:conversion"
    assert rows[1]["target"] == "cloud" and rows[1]["rule"] == "cloud:debugging"


def test_route_table_for_people(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: conv\nprompt: Convert this CSV to JSON.\ninputs: {text: 'a,b'}\n")
    result = runner.invoke(app, ["route", str(tmp_path / "a.yaml"), "--root", str(tmp_path)])
    assert result.exit_code == 0
    assert "conv" in result.stdout and "local" in result.stdout


def test_route_bad_input_exits_2_with_file_line_field_and_hint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: a\npromt: hi\n")
    result = runner.invoke(app, ["route", str(bad), "--json"])
    assert result.exit_code == 2
    assert f"{bad}:2" in result.stderr and "promt" in result.stderr and "did you mean `prompt`" in result.stderr
    assert "Traceback" not in result.output
    error = json.loads(result.stdout)["error"]  # --json: the same error, for a script
    assert (error["type"], error["file"], error["line"], error["exit_code"]) == ("InputError", str(bad), 2, 2)


def test_route_the_shipped_examples(repo_root: Path) -> None:
    result = runner.invoke(app, ["route", str(repo_root / "tasks/examples/csv-to-json.yaml"),
                                 str(repo_root / "tasks/examples/license-question.yaml"),
                                 "--json", "--root", str(repo_root)])
    assert result.exit_code == 0, result.stderr
    targets = {r["task"]: r["target"] for r in json.loads(result.stdout)}
    assert targets == {"csv-to-json": "local", "license-question": "cloud"}


def test_config_never_prints_the_key(monkeypatch: object, tmp_path: Path) -> None:
    import pytest

    mp = pytest.MonkeyPatch()
    mp.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-value-123")
    mp.setenv("OLLAMA_HOST", "gpu-box:11434")
    try:
        result = runner.invoke(app, ["config", "--json"])
    finally:
        mp.undo()
    assert result.exit_code == 0
    assert "sk-ant-secret-value-123" not in result.output
    data = json.loads(result.stdout)
    assert data["cloud.api_key"] == {"value": "set (hidden)", "source": "env:ANTHROPIC_API_KEY"}
    assert data["ollama.hosts"]["value"] == "['http://gpu-box:11434']"
    assert data["ollama.hosts"]["source"] == "env:OLLAMA_HOST"


def test_config_file_values_and_errors(tmp_path: Path) -> None:
    (Path.cwd() / "ollama-dist.yaml").write_text("router:\n  score_threshold: 0.5\n  confidense: 1\n")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 2
    assert "ollama-dist.yaml:3" in result.stderr and "confidence_threshold" in result.stderr
    (Path.cwd() / "ollama-dist.yaml").write_text("router:\n  score_threshold: 0.5\n")
    data = json.loads(runner.invoke(app, ["config", "--json"]).stdout)
    assert data["router.score_threshold"]["value"] == "0.5"
    assert data["router.score_threshold"]["source"].endswith("ollama-dist.yaml")


def test_help_does_not_import_the_sdks() -> None:
    code = ("import sys; from ollama_dist.cli import app; "
            "from typer.testing import CliRunner; CliRunner().invoke(app, ['--help']); "
            "print(','.join(m for m in ('anthropic', 'ollama', 'llama_cpp', 'git', 'jsonschema') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_route_reads_the_tasks_history_from_the_ledger(tmp_path: Path, isolated_home: Path) -> None:
    from ollama_dist.ledger.store import Attempt, Ledger

    path = tmp_path / "t.yaml"
    path.write_text("name: notes\nprompt: Summarise the notes.\ninputs: {text: n}\n"
                    "output: {format: json, schema: {type: object, properties: {x: {type: string}}}}\n")
    before = json.loads(runner.invoke(app, ["route", str(path), "--json"]).stdout)[0]
    assert before["target"] == "local"
    assert not (isolated_home / "ledger.db").exists()
    ledger = Ledger(isolated_home / "ledger.db")
    for job in range(4):
        for attempt in (1, 2):
            ledger.record(Attempt(run_id="r", session="s", job_id=f"j{job}", task="notes", task_fingerprint="f",
                                  input_hash="h", models_key="m", routed_to="local", lane="local",
                                  backend="ollama", model="gemma3:270m", attempt=attempt, outcome="invalid"))
    ledger.close()
    after = json.loads(runner.invoke(app, ["route", str(path), "--json"]).stdout)[0]
    assert after["target"] == "cloud" and any("history: 4/4" in r for r in after["reasons"])


def test_help_does_not_import_the_mcp_server_the_ledger_or_the_task_loader() -> None:
    heavy = ("ollama_dist.integrations.claude_code.mcp_server", "ollama_dist.ledger.store", "ollama_dist.tasks.loader")
    code = ("import sys; from ollama_dist.cli import app; "
            "from typer.testing import CliRunner; CliRunner().invoke(app, ['--help']); "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
