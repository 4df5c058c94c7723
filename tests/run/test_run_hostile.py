"""Hostile input at run time (issue 14): crashes, unwritable and raced outputs, answer text
in the ledger, file modes, SIGTERM, hand-edited outputs. Real clients, loopback servers."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ollama_dist.backends.base import Completion, Request
from ollama_dist.backends.ollama import OllamaBackend
from ollama_dist.run.dispatch import Dispatcher
from tests.run.test_run import claude, ledger_rows, ollama, run_json, world  # noqa: F401  (world: the fixture)  # noqa: F401  (fixtures world needs)
from tests.servers.ollama import FakeOllama

CITY = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}


def rows_task(folder: Path, count: int, *, write: str = "out/{stem}.json", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"in{i}.txt").write_text(f"Our office moved from Lisbon to A, town number {i}.\n")
    path = folder / "t.yaml"
    path.write_text(f"name: city\nprompt: Extract the city. Reply with JSON only.\n"
                    f"inputs: {{files: ['in*.txt']}}\n"
                    f"output: {{format: json, schema: {json.dumps(CITY)}, write: '{write}'}}\n{extra}")
    return path


def run_row(home: Path, run_id: str) -> dict[str, Any]:
    db = sqlite3.connect(home / "ledger.db")
    db.row_factory = sqlite3.Row
    row = dict(db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone())
    db.close()
    return row


# ------------------------------------------------------------------ 7: a crash is recorded


def test_an_unexpected_error_in_one_job_fails_that_job_only(world: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sending = OllamaBackend.complete

    async def complete(self: OllamaBackend, request: Request) -> Completion:
        if "number 1" in request.messages[0].content:  # what a latin-1 diff once did on sending
            raise UnicodeEncodeError("utf-8", "\udce9", 0, 1, "surrogates not allowed")
        return await sending(self, request)

    monkeypatch.setattr(OllamaBackend, "complete", complete)
    world["ollama"].script([json.dumps({"city": "A"})] * 3)
    code, data, err = run_json(str(rows_task(Path("t"), 3)))
    assert code == 1, err
    jobs = {j["job"]: j for j in data["jobs"]}
    assert [jobs[f"city:t/in{i}.txt"]["status"] for i in range(3)] == ["ok", "failed", "ok"]
    assert "unexpected error: UnicodeEncodeError" in jobs["city:t/in1.txt"]["reason"]
    assert world["claude"].calls("/v1/messages") == []  # an unexpected error does not climb the ladder
    (row,) = [r for r in ledger_rows(world["home"], data["run_id"]) if r["job_id"] == "city:t/in1.txt"]
    assert (row["outcome"], row["reason"], row["final"]) == ("error", "internal_error: UnicodeEncodeError", 1)
    assert run_row(world["home"], data["run_id"])["exit_code"] == 1


def test_a_run_that_dies_is_recorded_as_died_and_says_so(world: dict[str, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: Dispatcher, routed: Any) -> Any:
        raise UnicodeEncodeError("utf-8", "\udce9", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(Dispatcher, "run", broken)
    code, data, err = run_json(str(rows_task(Path("t"), 1)))
    assert code == 1 and list(data) == ["error"]  # --json: only the error, no report
    assert (data["error"]["type"], data["error"]["exit_code"]) == ("RunDied", 1)
    assert "stopped on an unexpected error: UnicodeEncodeError" in err and "Traceback" not in err
    db = sqlite3.connect(world["home"] / "ledger.db")
    ((exit_code, error, finished),) = db.execute("SELECT exit_code, error, finished_at FROM runs").fetchall()
    assert exit_code == 1 and error == "died: UnicodeEncodeError" and finished is not None


# ------------------------------------------------------------------ 10: an unwritable output


@pytest.mark.parametrize("block", ["folder", "too_long"])
def test_an_unwritable_output_fails_its_job_keeps_the_answer_and_the_run_goes_on(
        world: dict[str, Any], block: str) -> None:
    long = "x" * 300
    write = "out/{stem}.json" if block == "folder" else "out/{stem}" + long + ".json"
    path = rows_task(Path("t"), 2, write=write)
    if block == "folder":
        (Path("t/out/in0.json")).mkdir(parents=True)
        (Path("t/out/in0.json/keep")).write_text("a folder in the way\n")
    else:  # only in1's name is cut short enough to fit
        path.write_text(path.read_text().replace("'" + write + "'", "'out/{stem}" + long + "'")
                        .replace("inputs: {files: ['in*.txt']}", "inputs: {files: ['in0.txt']}"))
        (Path("t") / "u.yaml").write_text(path.read_text().replace("name: city", "name: town")
                                          .replace("{stem}" + long, "{stem}.json").replace("in0", "in1"))
    world["ollama"].script([json.dumps({"city": "A"})] * 4)
    code, data, err = run_json("t")
    assert code == 1, err
    failed, ok = sorted(data["jobs"], key=lambda j: j["status"])
    assert ok["status"] == "ok" and failed["status"] == "failed"
    assert "cannot write" in failed["reason"] and "in0" in failed["reason"]
    assert "`output.write` at" in failed["reason"] and "t.yaml:4" in failed["reason"]
    kept = Path(failed["output"])
    assert kept.is_relative_to(world["home"]) and json.loads(kept.read_text()) == {"city": "A"}
    assert run_row(world["home"], data["run_id"])["exit_code"] == 1
    (row,) = [r for r in ledger_rows(world["home"], data["run_id"]) if r["job_id"] == failed["job"]]
    assert row["outcome"] == "ok" and row["output_path"] == str(kept)  # the paid answer is recorded
    if block == "folder":  # fixed: a re-run serves the kept answer, unpaid
        for leftover in Path("t/out/in0.json").iterdir():
            leftover.unlink()
        Path("t/out/in0.json").rmdir()
        sent = len(world["ollama"].requests)
        code, data, err = run_json("t")
        assert code == 0, err
        assert all(j["cache_hit"] for j in data["jobs"]) and len(world["ollama"].requests) == sent
        assert json.loads(Path("t/out/in0.json").read_text()) == {"city": "A"}


# ------------------------------------------------------------------ 11: a symlink race


def test_an_output_folder_swapped_for_a_symlink_mid_run_is_not_followed(world: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    path = rows_task(Path("t"), 1)
    Path("t/out").mkdir()

    def answer(body: dict[str, Any]) -> str:  # between loading and writing, out/ becomes a symlink
        Path("t/out").rename("t/out.real")
        Path("t/out").symlink_to(outside)
        return json.dumps({"city": "A"})

    world["ollama"].script(answer)
    code, data, err = run_json(str(path))
    assert code == 1, err
    (job,) = data["jobs"]
    assert job["status"] == "failed" and "symlink" in job["reason"]
    assert list(outside.iterdir()) == []


# ------------------------------------------------------------------ 14: no answer text in the ledger


def test_answer_text_never_reaches_the_ledger_when_text_is_not_stored(world: dict[str, Any]) -> None:
    canary = "CANARY7f3a"
    world["ollama"].script([f"The city is {canary}, I think.", json.dumps({"city": [canary]})])
    world["claude"].answer("*", [json.dumps([canary]), json.dumps({"city": canary})])
    task = rows_task(Path("t"), 1)
    Path("t/in0.txt").write_text(f"Our office moved to {canary}.\n")  # inputs are never stored either
    code, data, err = run_json(str(task))
    assert code == 0, err
    assert json.loads(Path(data["jobs"][0]["output"]).read_text()) == {"city": canary}  # the user's file has it
    db = sqlite3.connect(world["home"] / "ledger.db")
    tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for row in db.execute(f"SELECT * FROM {table}"):
            assert canary not in json.dumps(row, default=str), (table, row)
    reasons = [r["reason"] for r in ledger_rows(world["home"]) if r["outcome"] == "invalid"]
    assert len(reasons) == 3 and all(reasons)  # the kind of each failure is still there


# ------------------------------------------------------------------ 15: modes, SIGTERM, hand edits


def test_outputs_honour_the_umask(world: dict[str, Any]) -> None:
    world["ollama"].script([json.dumps({"city": "A"})])
    old = os.umask(0o022)
    try:
        code, data, err = run_json(str(rows_task(Path("t"), 1)))
    finally:
        os.umask(old)
    assert code == 0, err
    assert Path(data["jobs"][0]["output"]).stat().st_mode & 0o777 == 0o644


def _ok_rows(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    db = sqlite3.connect(db_path, timeout=10)
    try:
        return int(db.execute("SELECT COUNT(*) FROM attempts WHERE outcome = 'ok'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_run_is_recorded_interrupted_and_prints_its_partial_report(
        isolated_home: Path, sig: signal.Signals) -> None:
    work = Path.cwd()
    (work / "ollama-dist.yaml").write_text("ollama: {embedded: false}\n")
    rows_task(work / "t", 8)
    ledger = isolated_home / "ledger.db"
    with FakeOllama(models=("gemma3:270m",), latency_s=0.3) as server:
        server.script(lambda body: '{"city": "Lisbon"}')
        env = {**os.environ, "OLLAMA_HOST": server.url, "OLLAMA_DIST_HOME": str(isolated_home)}
        env.pop("ANTHROPIC_API_KEY", None)
        proc = subprocess.Popen([sys.executable, "-m", "ollama_dist.cli", "run", "t/t.yaml", "--json", "--quiet"],
                                cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while _ok_rows(ledger) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    report = json.loads(out)
    assert report["interrupted"] is True and 2 <= len(report["jobs"]) < 8
    assert all(j["status"] == "ok" for j in report["jobs"])
    db = sqlite3.connect(ledger)
    ((exit_code, error, finished),) = db.execute("SELECT exit_code, error, finished_at FROM runs").fetchall()
    assert (exit_code, error) == (130, "interrupted") and finished is not None


def test_a_hand_edited_output_is_kept_unless_forced(world: dict[str, Any]) -> None:
    world["ollama"].script([json.dumps({"city": "A"})] * 4)
    path = rows_task(Path("t"), 2)
    assert run_json(str(path))[0] == 0
    edited = Path("t/out/in0.json")
    edited.write_text('{"city": "Mine"}\n')
    # a changed prompt would re-answer every job: the edited file is still kept
    path.write_text(path.read_text().replace("Extract the city.", "Extract the city name."))
    sent = len(world["ollama"].requests)
    code, data, err = run_json(str(path))
    assert code == 0, err
    jobs = {j["job"]: j for j in data["jobs"]}
    kept = jobs["city:t/in0.txt"]
    assert kept["kept_edit"] is True and kept["value"] == {"city": "Mine"} and str(edited.resolve()) in kept["reason"]
    assert "--force" in kept["reason"] and str(edited.resolve()) in err.replace("\n", "")  # on stderr too
    assert edited.read_text() == '{"city": "Mine"}\n'
    assert len(world["ollama"].requests) == sent + 1  # in1 only
    code, data, err = run_json(str(path), "--force")
    assert code == 0, err
    assert json.loads(edited.read_text()) == {"city": "A"} and len(world["ollama"].requests) == sent + 2
