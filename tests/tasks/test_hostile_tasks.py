"""Hostile task files (issue 14): each is one clear error naming file, line and field, or a
job that fails alone; none writes outside the root, runs git options or blows up memory."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.errors import EXIT_BAD_INPUT, InputError
from ollama_dist.integrations.claude_code import mcp_server
from ollama_dist.tasks.loader import load_jobs, load_tasks
from tests.servers.anthropic import AnthropicServer
from tests.servers.ollama import FakeOllama

runner = CliRunner()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load_error(path: Path, root: Path | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        load_jobs([path], root or path.parent)
    assert info.value.exit_code == EXIT_BAD_INPUT
    return info.value


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "T")
    (root / "a.txt").write_bytes(b"caf\xe9\n")  # latin-1, as an old file would be
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    (root / "a.txt").write_bytes(b"caf\xe9\nna\xefve\n")
    git(root, "commit", "-q", "-am", "second")
    return root


# ------------------------------------------------------------ 1. git argument injection


@pytest.mark.parametrize("key", ["log", "diff", "changed"])
@pytest.mark.parametrize("command", [["route"], ["run", "--dry-run"]], ids=["route", "dry-run"])
def test_a_git_option_never_runs(repo: Path, tmp_path: Path, key: str, command: list[str]) -> None:
    target = tmp_path / "written-by-git"
    path = write(repo, "t.yaml", f"name: g\nprompt: P\ninputs: {{git: {{{key}: '--output={target}'}}}}\n")
    result = runner.invoke(app, [*command, str(path), "--root", str(repo)])
    assert result.exit_code == 2, result.output
    assert f"t.yaml:3 field `inputs.git.{key}`" in result.stderr and "cannot start with `-`" in result.stderr
    assert not target.exists()


def test_the_mcp_route_tool_never_runs_a_git_option(repo: Path, tmp_path: Path, isolated_home: Path) -> None:
    target = tmp_path / "written-by-git"
    write(repo, "t.yaml", f"name: g\nprompt: P\ninputs: {{git: {{log: '--output={target}'}}}}\n")
    state = mcp_server.ServerState("s", repo, {"OLLAMA_DIST_HOME": str(isolated_home)})
    with pytest.raises(InputError, match="cannot start with `-`"):
        mcp_server.route_tasks({"path": "t.yaml"}, state)
    assert not target.exists()


def test_git_reads_revisions_after_end_of_options(repo: Path, tmp_path: Path) -> None:
    """Behind the load-time check, git itself is told that the range is no option."""
    from ollama_dist.tasks import inputs
    from ollama_dist.tasks.model import GitInput, Inputs, Task

    target = tmp_path / "written-by-git"
    task = Task(name="g", prompt="P").model_copy(update={"inputs": Inputs.model_construct(
        git=GitInput.model_construct(log=f"--output={target}", diff=None, changed=None))})
    task._file = repo / "t.yaml"
    with pytest.raises(InputError, match="bad revision"):
        inputs.git_text(task)
    assert not target.exists()


# ------------------------------------------------------------ 3. inputs inside the root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("the neighbour's secret\n")
    return secret


def _escape(kind: str, root: Path, secret: Path) -> str:
    if kind == "absolute":
        return str(secret)
    if kind == "dotdot":
        return "../outside/secret.txt"
    if kind == "file-link":
        (root / "link.txt").symlink_to(secret)
        return "link.txt"
    (root / "folder-link").symlink_to(secret.parent, target_is_directory=True)
    return "folder-link/*.txt"


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "file-link", "folder-link"])
def test_inputs_outside_the_root_are_refused(tmp_path: Path, outside: Path, kind: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    glob = _escape(kind, root, outside)
    path = write(root, "t.yaml", f"name: a\nprompt: P\ninputs:\n  files: ['{glob}']\n")
    err = load_error(path, root)
    assert err.field == "inputs.files" and err.line == 4 and "outside the run's root" in str(err)
    assert "--allow-outside-root" in str(err)


def test_reading_outside_the_root_is_an_explicit_flag(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "root"
    path = write(root, "t.yaml", "name: a\nprompt: P\ninputs: {files: ['../outside/*.txt']}\n")
    refused = runner.invoke(app, ["route", str(path), "--root", str(root), "--json"])
    assert refused.exit_code == 2
    allowed = runner.invoke(app, ["route", str(path), "--root", str(root), "--json", "--allow-outside-root"])
    assert allowed.exit_code == 0, allowed.output
    (job,) = json.loads(allowed.stdout)
    assert job["input"] == outside.resolve().as_posix()


def test_the_shipped_example_reads_inside_the_repository(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo_root)
    result = runner.invoke(app, ["route", "tasks/examples/extract-imports.yaml", "--json"])
    assert result.exit_code == 0, result.output
    assert {j["input"] for j in json.loads(result.stdout)} >= {"ollama_dist/run/outputs.py"}


# ------------------------------------------------------------ 5. alias bombs and nesting


def bomb(levels: int, width: int) -> str:
    lines = ["a0: &a0 [" + ",".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "name: bomb\nprompt: P\ndescription: x\nx:\n" + "".join(f"  {line}\n" for line in lines)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(9, 9))
    assert path.stat().st_size < 500
    tracemalloc.start()
    try:
        err = load_error(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "aliases expand" in str(err) and err.file == str(path)
    assert peak < 20 * 1024 * 1024


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", """\
        defaults: &d {max_tokens: 64, output: {format: json}}
        tasks:
          - {name: a, prompt: P, <<: *d}
          - {name: b, prompt: Q, <<: *d}
        """)
    assert [t.max_tokens for t in load_tasks([path])] == [64, 64]


@pytest.mark.parametrize(("text", "words"), [
    ("name: r\nprompt: P\nx: &a [*a]\n", "recursive alias"),
    ("name: r\nprompt: P\nx: &a {k: *a}\n", "recursive alias"),
    ("name: d\nprompt: P\nx: " + "[" * 500 + "]" * 500 + "\n", "nested deeper than"),
    ("name: d\nprompt: P\nx:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 300)), "nested deeper than"),
], ids=["recursive-seq", "recursive-map", "deep-flow", "deep-block"])
def test_recursion_and_deep_nesting_are_clean_errors(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    err = load_error(path)
    assert words in str(err) and err.line is not None and err.line >= 3


def test_a_task_file_past_the_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("name: big\nprompt: P\ndescription: '" + "x" * (1024 * 1024) + "'\n")
    err = load_error(path)
    assert "larger than 1 MiB" in str(err)


# ------------------------------------------------------------ 6. bad values, never a traceback


@pytest.mark.parametrize(("text", "field", "words"), [
    ('name: a\nprompt: "hi\\x01there"\n', "prompt", "control character"),
    ("name: a\nprompt: hi\x01there\n", None, "unacceptable character"),
    ('name: a\nprompt: P\noutput: {write: "out/\\0x"}\n', "output.write", "control character"),
    ('name: a\nprompt: "\\ud800"\n', "prompt", "control character"),
    ('name: a\nprompt: P\ninputs: {files: ["a\\0b"]}\n', "inputs.files[0]", "control character"),
    ("name: a\nprompt: P\noutput: {pattern: 'a{99999999999}'}\n", "output.pattern", "too large"),
    ("name: a\nprompt: P\noutput: {pattern: '" + "(" * 2000 + ")" * 2000 + "'}\n", "output.pattern", "regular"),
    ("name: a\nprompt: P\ndescription: !!timestamp 2001-12-14x\n", None, "timestamp cannot hold"),
    ("name: a\nprompt: P\ndescription: !!bool maybe\n", None, "bool cannot hold"),
], ids=["escaped-control", "raw-control", "nul-in-write", "lone-surrogate", "nul-in-glob", "huge-repeat",
        "deep-regex", "bad-timestamp-tag", "bad-bool-tag"])
def test_bad_values_are_errors_naming_the_field(tmp_path: Path, text: str, field: str | None, words: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["route", str(path), "--root", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert words in result.stderr and f"{path}:" in result.stderr
    if field:
        assert f"field `{field}`" in result.stderr


# ------------------------------------------------------------ 7. bytes that are not UTF-8


def test_a_latin1_diff_is_decoded_with_replacement_and_said_so(repo: Path) -> None:
    path = write(repo, "t.yaml", "name: d\nprompt: P\ninputs: {git: {diff: 'HEAD~1..HEAD'}}\n")
    (job,) = load_jobs([path], repo)
    assert "na\ufffdve" in job.input_text and job.prompt.encode("utf-8")  # no surrogate survives
    assert job.notes and "replaced" in job.notes[0]


# ------------------------------------------------------------ 8. one write target, two jobs


def test_two_jobs_writing_one_file_are_a_load_error(tmp_path: Path) -> None:
    for i in range(20):
        write(tmp_path, f"in/{i}.txt", f"{i}\n")
    path = write(tmp_path, "t.yaml", """\
        name: collide
        prompt: P
        inputs: {files: ['in/*.txt']}
        output:
          format: json
          write: out/collide.json
        """)
    err = load_error(path)
    assert err.field == "output.write" and err.line == 6
    assert "jobs `collide:in/0.txt` and `collide:in/1.txt` both write" in str(err)


def test_two_tasks_writing_one_file_are_a_load_error(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", """\
        tasks:
          - {name: a, prompt: P, output: {write: out/x.txt}}
          - {name: b, prompt: Q, output: {write: out/x.txt}}
        """)
    assert "jobs `a` and `b` both write" in str(load_error(path))


# ------------------------------------------------------------ 9. templates expand in the prompt only


def test_input_text_reaches_the_model_verbatim(tmp_path: Path) -> None:
    write(tmp_path, "src/code.py", 'print(f"{name} {path} {input}")\n')
    path = write(tmp_path, "t.yaml", "name: v\nprompt: 'Explain {path}: {input}'\ninputs: {files: [src/*.py]}\n")
    (job,) = load_jobs([path], tmp_path)
    assert job.prompt == 'Explain src/code.py: print(f"{name} {path} {input}")\n'


def test_a_path_is_not_expanded_in_the_write_template(tmp_path: Path) -> None:
    write(tmp_path, "in/{stem}.txt", "x\n")
    path = write(tmp_path, "t.yaml", "name: w\nprompt: P\ninputs: {files: ['in/*.txt']}\n"
                                     "output: {write: 'out/{path}.out'}\n")
    (job,) = load_jobs([path], tmp_path)
    assert job.write_path == (tmp_path / "out/in/{stem}.txt.out").resolve()


@pytest.mark.parametrize(("field", "text", "hint"), [
    ("prompt", "name: a\nprompt: 'Summarise {inptu}'\ninputs: {text: x}\n", "did you mean `{input}`"),
    ("prompt", "name: a\nprompt: 'For {nmae}'\n", "did you mean `{name}`"),
    ("output.write", "name: a\nprompt: P\noutput: {write: 'out/{stme}.txt'}\n", "did you mean `{stem}`"),
    ("output.write", "name: a\nprompt: P\noutput: {write: 'out/{when}.txt'}\n", "known here: {stem}"),
], ids=["prompt-input", "prompt-name", "write-stem", "write-unknown"])
def test_an_unknown_placeholder_is_a_load_error(tmp_path: Path, field: str, text: str, hint: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    err = load_error(path)
    assert err.field == field and "unknown placeholder" in str(err) and hint in str(err)


def test_braces_that_are_not_placeholders_stay_as_text(tmp_path: Path) -> None:
    prompt = 'Reply like {"a": 1} for GET /users/{id}; keep {{name}} and {placeholders} as they are.'
    path = write(tmp_path, "t.yaml", f"name: b\nprompt: '{prompt}'\ninputs: {{text: DATA}}\n")
    (job,) = load_jobs([path], tmp_path)
    assert job.prompt == prompt + "\n\nDATA"


# ------------------------------------------------------------ 12. an unreadable file fails its job alone


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> Iterator[dict[str, Any]]:
    with FakeOllama(models=("gemma3:270m",)) as ollama, AnthropicServer(key="test-key") as claude:
        monkeypatch.setenv("OLLAMA_HOST", ollama.url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\ncloud: {max_retries: 2}\n")
        yield {"ollama": ollama, "claude": claude, "home": isolated_home}


def _mixed_inputs(folder: Path) -> Path:
    write(folder, "in/a.txt", "Our office moved to Lisbon.\n")
    (folder / "in/b.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    write(folder, "in/c.txt", "Our office moved to Porto.\n")
    return write(folder, "t.yaml", """\
        name: city
        kind: deterministic
        prompt: Extract the city. Reply with JSON only.
        inputs: {files: ['in/*.txt']}
        output: {format: json}
        """)


def test_route_marks_the_job_that_will_fail(tmp_path: Path) -> None:
    path = _mixed_inputs(tmp_path)
    result = runner.invoke(app, ["route", str(path), "--root", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    errors = {j["job"]: j["error"] for j in json.loads(result.stdout)}
    assert errors["city:in/a.txt"] is None and errors["city:in/c.txt"] is None
    assert "in/b.txt is binary" in errors["city:in/b.txt"]
    table = runner.invoke(app, ["route", str(path), "--root", str(tmp_path)])
    assert table.exit_code == 0 and "fails: " in table.stdout and "[kind:deterministic]" in table.stdout


def test_run_fails_only_the_job_with_a_binary_input(world: dict[str, Any]) -> None:
    import sqlite3

    path = _mixed_inputs(Path("t"))
    world["ollama"].script(['{"city": "Lisbon"}', '{"city": "Porto"}'])
    result = runner.invoke(app, ["run", str(path), "--json", "--quiet", "--root", str(Path.cwd())])
    assert result.exit_code == 1, result.output
    jobs = {j["job"]: j for j in json.loads(result.stdout)["jobs"]}
    assert jobs["city:t/in/a.txt"]["status"] == "ok" and jobs["city:t/in/c.txt"]["status"] == "ok"
    failed = jobs["city:t/in/b.txt"]
    assert failed["status"] == "failed" and "t/in/b.txt is binary" in failed["reason"]
    assert failed["attempts"] == 1 and failed["cost_usd"] == 0
    assert len(world["ollama"].requests) == 2  # the binary file was never sent
    db = sqlite3.connect(world["home"] / "ledger.db")
    rows = db.execute("SELECT outcome, final, reason FROM attempts WHERE job_id = 'city:t/in/b.txt'").fetchall()
    db.close()
    assert len(rows) == 1 and rows[0][:2] == ("skipped", 1) and "binary" in rows[0][2]


def test_a_latin1_diff_is_sent_as_text(world: dict[str, Any], repo: Path) -> None:
    path = write(repo, "t.yaml", "name: d\nkind: deterministic\nprompt: Summarise this diff.\n"
                                 "inputs: {git: {diff: 'HEAD~1..HEAD'}}\n")
    world["ollama"].script(["A word was added."])
    result = runner.invoke(app, ["run", str(path), "--json", "--quiet", "--root", str(repo)])
    assert result.exit_code == 0, result.output
    assert "na\ufffdve" in world["ollama"].requests[0]["messages"][-1]["content"]
    assert any("replaced" in note for note in json.loads(result.stdout)["notes"])


# ------------------------------------------------------------ 13. many files, each once


def test_overlapping_globs_and_links_give_each_file_once(tmp_path: Path) -> None:
    for i in range(50):
        write(tmp_path, f"src/f{i:02d}.txt", f"{i}\n")
    os.symlink(tmp_path / "src/f00.txt", tmp_path / "src/zz-link.txt")
    path = write(tmp_path, "t.yaml", "name: m\nprompt: P\ninputs: {files: ['src/*.txt', 'src/f0*.txt']}\n")
    jobs = load_jobs([path], tmp_path)
    assert [j.input_path for j in jobs] == [f"src/f{i:02d}.txt" for i in range(50)]


# ------------------------------------------------------------ 15. duplicate keys


def test_a_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", "name: a\nprompt: P\noutput:\n  format: json\n  format: text\n")
    err = load_error(path)
    assert err.line == 5 and err.field == "output.format" and "first at line 4" in str(err)


def test_a_duplicate_key_in_the_config_file(tmp_path: Path) -> None:
    Path("ollama-dist.yaml").write_text("ollama: {embedded: false}\nollama: {embedded: true}\n")
    path = write(tmp_path, "t.yaml", "name: a\nprompt: P\n")
    result = runner.invoke(app, ["route", str(path), "--root", str(tmp_path)])
    assert result.exit_code == 2 and "duplicate key `ollama`" in result.stderr
    assert "ollama-dist.yaml:2" in result.stderr and "first at line 1" in result.stderr
