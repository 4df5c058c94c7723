"""A task file with several mistakes names every one, in line order, each as file:line field: what
to do; several files, file by file. The exit code stays 2."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.errors import EXIT_BAD_INPUT, InputError, InputErrors
from ollama_dist.tasks.loader import load_jobs

BAD = """\
    name: Bad Name
    promt: 'Summarise {input}'
    kind: sometimes
    inputs: {text: hello}
    output:
      format: json
      pattern: '(['
      write: 'out/{stme}.json'
    max_tokens: -5
    """


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path | list[Path], root: Path) -> list[InputError]:
    with pytest.raises(InputError) as info:
        load_jobs(path if isinstance(path, list) else [path], root)
    assert info.value.exit_code == EXIT_BAD_INPUT
    err = info.value
    return list(err.errors) if isinstance(err, InputErrors) else [err]


def where(errors: list[InputError]) -> list[tuple[str | None, int | None, str | None]]:
    return [(Path(e.file).name if e.file else None, e.line, e.field) for e in errors]


def test_every_mistake_of_one_file_in_line_order(tmp_path: Path) -> None:
    errors = problems(write(tmp_path, "bad.yaml", BAD), tmp_path)
    assert where(errors) == [("bad.yaml", 1, "name"), ("bad.yaml", 2, "promt"), ("bad.yaml", 3, "kind"),
                             ("bad.yaml", 7, "output.pattern"), ("bad.yaml", 8, "output.write"),
                             ("bad.yaml", 9, "max_tokens")]
    assert "did you mean `prompt`?" in str(errors[1])  # the misspelt field, not also "prompt is missing"
    assert not any("required field is missing" in str(e) for e in errors)
    assert "not a valid regular expression" in str(errors[3])  # checked although the task is invalid
    assert "did you mean `{stem}`?" in str(errors[4])


def test_the_cli_prints_each_as_an_error_line_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", BAD)
    result = CliRunner().invoke(app, ["route", str(path), "--root", str(tmp_path), "--json"])
    assert result.exit_code == EXIT_BAD_INPUT
    error = json.loads(result.stdout)["error"]  # --json: the error as JSON on stdout, each one listed
    assert error["type"] == "InputErrors" and error["line"] == 1
    assert [(e["line"], e["field"]) for e in error["errors"]] == [
        (1, "name"), (2, "promt"), (3, "kind"), (7, "output.pattern"), (8, "output.write"), (9, "max_tokens")]
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert [ln.split()[1] for ln in lines] == [f"{path}:{n}" for n in (1, 2, 3, 7, 8, 9)]
    assert "Traceback" not in result.stderr
    assert "  hint: did you mean `prompt`?" in result.stderr.splitlines()


def test_a_list_file_names_each_task_and_a_shared_default_once(tmp_path: Path) -> None:
    path = write(tmp_path, "list.yaml", """\
        defaults:
          output: {format: jsn}
        tasks:
          - name: a
            prompt: ok
          - "just a string"
          - name: b
            prompt: 'x {nmae}'
            temperature: 9
        """)
    errors = problems(path, tmp_path)
    assert where(errors) == [("list.yaml", 2, "defaults.output.format"), ("list.yaml", 6, "tasks[1]"),
                             ("list.yaml", 8, "tasks[2].prompt"), ("list.yaml", 9, "tasks[2].temperature")]


def test_every_duplicate_key(tmp_path: Path) -> None:
    path = write(tmp_path, "dup.yaml", """\
        name: a
        prompt: one
        output: {format: json, format: text}
        prompt: two
        """)
    errors = problems(path, tmp_path)
    assert where(errors) == [("dup.yaml", 3, "output.format"), ("dup.yaml", 4, "prompt")]
    assert all("duplicate key" in str(e) for e in errors)


def test_several_files_file_by_file_and_what_jobs_would_write(tmp_path: Path) -> None:
    first = write(tmp_path, "a/one.yaml", "name: one\nprompt: P\nmax_tokens: 0\n")
    second = write(tmp_path, "b/two.yaml", """\
        tasks:
          - name: two
            prompt: P
            output: {write: ../../../elsewhere.txt}
          - {name: two, prompt: P}
        """)
    broken = write(tmp_path, "c/three.yaml", "name: [unclosed\n")
    errors = problems([tmp_path], tmp_path)
    assert where(errors) == [("one.yaml", 3, "max_tokens"), ("two.yaml", 4, "output.write"),
                             ("two.yaml", 5, "name"), ("three.yaml", 2, None)]
    assert "outside the run's root" in str(errors[1]) and "duplicate task name `two`" in str(errors[2])
    assert "not valid YAML" in str(errors[3])
    assert {e.file for e in errors} == {str(first), str(second), str(broken)}


def test_one_mistake_is_one_plain_error(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", "name: a\nprompt: 'For {nmae}'\n")
    with pytest.raises(InputError) as info:
        load_jobs([path], tmp_path)
    assert not isinstance(info.value, InputErrors)
    assert (info.value.line, info.value.field) == (2, "prompt")
