"""Task files load strictly: every bad input is one clear error with file, line and field."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from ollama_dist.errors import EXIT_BAD_INPUT, InputError
from ollama_dist.tasks.loader import load_jobs, load_tasks


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


def test_single_task_with_defaults_applied(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", """\
        name: hello
        prompt: Say hello to {name}.
        """)
    (task,) = load_tasks([path])
    assert task.kind == "auto" and task.max_tokens == 1024 and task.temperature == 0
    assert task.timeout_s == 120 and task.output.format == "text"
    (job,) = load_jobs([path], tmp_path)
    assert job.prompt == "Say hello to hello."
    assert job.id == "hello"


def test_task_list_merges_defaults_under_each(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", """\
        defaults:
          output: {format: json}
          max_tokens: 99
        tasks:
          - name: a
            prompt: A
          - name: b
            prompt: B
            output: {pattern: 'x'}
        """)
    a, b = load_tasks([path])
    assert a.max_tokens == 99 and a.output.format == "json"
    assert b.output.format == "json" and b.output.pattern == "x"


def test_input_is_appended_without_placeholder_and_filled_with_it(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: a\nprompt: Do it.\ninputs: {text: DATA}\n")
    write(tmp_path, "b.yaml", "name: b\nprompt: 'Before {input} after'\ninputs: {text: DATA}\n")
    jobs = {j.task.name: j for j in load_jobs([tmp_path], tmp_path)}
    assert jobs["a"].prompt == "Do it.\n\nDATA"
    assert jobs["b"].prompt == "Before DATA after"


def test_files_fan_out_one_job_per_file_with_stable_ids(tmp_path: Path) -> None:
    write(tmp_path, "src/one.py", "x = 1\n")
    write(tmp_path, "src/two.py", "y = 2\n")
    path = write(tmp_path, "tasks/t.yaml", """\
        name: fan
        prompt: 'File {path}: {input}'
        inputs: {files: ["../src/*.py"]}
        output: {write: 'out/{stem}.txt'}
        """)
    jobs = load_jobs([path], tmp_path)
    assert [j.id for j in jobs] == ["fan:src/one.py", "fan:src/two.py"]
    assert jobs[0].prompt == "File src/one.py: x = 1\n"
    assert jobs[0].write_path == (tmp_path / "tasks/out/one.txt").resolve()
    again = load_jobs([path], tmp_path)
    assert [j.input_hash for j in again] == [j.input_hash for j in jobs]


def test_files_joined_under_headers_when_each_is_false(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", "AAA\n")
    write(tmp_path, "b.txt", "BBB\n")
    path = write(tmp_path, "t.yaml", "name: j\nprompt: P\ninputs: {files: ['*.txt'], each: false}\n")
    (job,) = load_jobs([path], tmp_path)
    assert "--- a.txt ---\nAAA" in job.input_text and "--- b.txt ---\nBBB" in job.input_text
    assert job.id.startswith("j:") and len(job.id) == len("j:") + 12


def test_text_job_id_is_a_content_hash(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", "name: t\nprompt: P\ninputs: {text: one}\n")
    first = load_jobs([path], tmp_path)[0].id
    path.write_text("name: t\nprompt: P\ninputs: {text: two}\n")
    assert load_jobs([path], tmp_path)[0].id != first


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "T")
    for i in range(3):
        (tmp_path / f"f{i}.txt").write_text(f"v{i}\n")
        git(tmp_path, "add", ".")
        git(tmp_path, "commit", "-q", "-m", f"commit number {i}")
    return tmp_path


@pytest.mark.parametrize(("key", "expect"), [
    ("log", "commit number 2"),
    ("diff", "+v2"),
    ("changed", "f2.txt"),
], ids=["log", "diff", "changed"])
def test_git_inputs(git_repo: Path, key: str, expect: str) -> None:
    path = write(git_repo, "t.yaml", f"name: g\nprompt: P\ninputs: {{git: {{{key}: 'HEAD~1..HEAD'}}}}\n")
    (job,) = load_jobs([path], git_repo)
    assert expect in job.input_text
    if key != "log":
        assert "commit number 1" not in job.input_text


# --------------------------------------------------------------- errors


@pytest.mark.parametrize(("text", "line", "field", "words"), [
    ("name: a\npromt: hi\n", 2, "promt", "did you mean `prompt`"),
    ("name: a\nprompt: hi\noutput:\n  formt: json\n", 4, "output.formt", "did you mean `format`"),
    ("prompt: hi\n", None, "name", "required"),
    ("name: a\n", None, "prompt", "required"),
    ("name: a\nprompt: hi\nmax_tokens: lots\n", 3, "max_tokens", "integer"),
    ("name: Bad Name\nprompt: hi\n", 1, "name", "pattern"),
    ("name: a\nprompt: hi\nkind: clever\n", 3, "kind", "auto"),
    ("name: a\nprompt: hi\noutput:\n  format: json\n  pattern: '(unclosed'\n", 5, "output.pattern", "regular expression"),
    ("name: a\nprompt: hi\noutput:\n  format: json\n  schema: {type: objekt}\n", 5, "output.schema", "JSON Schema"),
    ("name: a\nprompt: hi\noutput:\n  schema: {type: object}\n", None, "output.format", "format: json"),
    ("name: a\nprompt: hi\ninputs: {git: {}}\n", 3, "inputs.git", "exactly one"),
    ("name: a\nprompt: 'x {input}'\n", 2, "inputs", "no inputs"),
    ("name: a\nprompt: hi\n  bad: indent\n", 3, None, "not valid YAML"),
    ("- just\n- a list\n", 1, None, "one task"),
    ("name: a\nprompt: hi\noutput:\n  format: json\n  grounded: name\n", 5, "output.grounded", "[name, email]"),
    ("name: a\nprompt: hi\noutput:\n  format: json\n  grounded: []\n", 5, "output.grounded", "true, false"),
    ("name: a\nprompt: hi\noutput:\n  format: json\n  agree: 12\n", 5, "output.agree", "less than or equal to 9"),
], ids=["typo-top", "typo-nested", "missing-name", "missing-prompt", "wrong-type", "bad-name",
        "bad-kind", "bad-regex", "bad-schema", "schema-without-json", "git-empty", "input-without-inputs",
        "yaml-syntax", "not-a-mapping", "grounded-word", "grounded-empty", "agree-too-many"])
def test_load_errors_name_file_line_and_field(tmp_path: Path, text: str, line: int | None,
                                               field: str | None, words: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    err = load_error(path)
    assert err.file == str(path)
    if line is not None:
        assert err.line == line
    if field is not None:
        assert err.field == field
    assert words in str(err)


def test_grounded_and_agree_left_out_keep_the_task_fingerprint(tmp_path: Path) -> None:
    base = "name: a\nprompt: Extract the city.\ninputs: {text: Lisbon}\noutput:\n  format: json\n"
    plain = load_tasks([write(tmp_path / "1", "t.yaml", base)])[0]
    again = load_tasks([write(tmp_path / "2", "t.yaml", base + "  grounded: [city]\n  agree: 3\n")])[0]
    assert plain.output.grounded is None and plain.output.agree == 1
    assert again.output.grounded == ["city"] and again.output.agree == 3
    assert plain.fingerprint() != again.fingerprint()  # what counts as valid changed: answers are stale
    assert plain.fingerprint() == load_tasks([write(tmp_path / "3", "t.yaml", base + "  agree: 1\n")])[0].fingerprint()


def test_unknown_field_in_defaults_names_the_defaults_line(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", "defaults:\n  max_tokenz: 3\ntasks:\n  - name: a\n    prompt: P\n")
    err = load_error(path)
    assert err.line == 2 and "max_tokens" in str(err)


def test_unknown_field_in_a_list_task(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", "tasks:\n  - name: a\n    prompt: P\n  - name: b\n    promt: P\n")
    err = load_error(path)
    assert err.line == 5 and err.field == "tasks[1].promt"


def test_glob_matching_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", "name: a\nprompt: P\ninputs: {files: ['nothing/*.py']}\n")
    err = load_error(path)
    assert err.field == "inputs.files" and "matches no file" in str(err)


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: same\nprompt: P\n")
    write(tmp_path, "b.yaml", "name: same\nprompt: Q\n")
    with pytest.raises(InputError) as info:
        load_tasks([tmp_path])
    assert "duplicate task name `same`" in str(info.value) and info.value.field == "name"


def test_binary_input_file_fails_its_own_job(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02abc")
    (tmp_path / "text.bin").write_text("fine\n")
    path = write(tmp_path, "t.yaml", "name: a\nprompt: P\ninputs: {files: ['*.bin']}\n")
    blob, text = load_jobs([path], tmp_path)
    assert blob.id == "a:blob.bin" and blob.error is not None
    assert "binary" in blob.error and "field `inputs.files`" in blob.error and f"{path}:3" in blob.error
    assert text.error is None and text.input_text == "fine\n"


def test_non_utf8_input_file_fails_its_own_job(tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    path = write(tmp_path, "t.yaml", "name: a\nprompt: P\ninputs: {files: ['*.txt']}\n")
    (job,) = load_jobs([path], tmp_path)
    assert job.error is not None and "not UTF-8" in job.error


def test_unreadable_file_fails_the_joined_job(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("AAA\n")
    (tmp_path / "b.txt").write_bytes(b"\x00")
    path = write(tmp_path, "t.yaml", "name: j\nprompt: P\ninputs: {files: ['*.txt'], each: false}\n")
    (job,) = load_jobs([path], tmp_path)
    assert job.error is not None and "b.txt is binary" in job.error and job.input_text == ""


@pytest.mark.parametrize("template", ["../../escape.txt", "/tmp/abs.txt", "out/../../x.txt"],
                         ids=["dotdot", "absolute", "sneaky"])
def test_write_template_escaping_the_root(tmp_path: Path, template: str) -> None:
    root = tmp_path / "root"
    path = write(root, "t.yaml", f"name: a\nprompt: P\noutput: {{write: '{template}'}}\n")
    err = load_error(path, root)
    assert err.field == "output.write" and "outside the run's root" in str(err)


def test_git_input_outside_a_repository(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yaml", "name: a\nprompt: P\ninputs: {git: {log: 'HEAD~1..HEAD'}}\n")
    err = load_error(path)
    assert err.field == "inputs.git.log"


def test_git_bad_range(git_repo: Path) -> None:
    path = write(git_repo, "t.yaml", "name: a\nprompt: P\ninputs: {git: {diff: 'nope..HEAD'}}\n")
    err = load_error(path)
    assert err.field == "inputs.git.diff" and "failed" in str(err)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_tasks([tmp_path / "absent.yaml"])


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no task files"):
        load_tasks([tmp_path])
