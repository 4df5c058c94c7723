"""A task's inputs, read from disk and git: files kept inside the run's root, text only,
git revisions that can never be read as options.

Every refusal is an InputError naming the task file, the line and the field.
"""

from __future__ import annotations

import glob as globlib
from pathlib import Path
from typing import TYPE_CHECKING

from ollama_dist.errors import InputError

if TYPE_CHECKING:
    from ollama_dist.tasks.model import Task

BINARY_SNIFF = 8192  # a NUL byte in this many leading bytes marks a binary file
OUTSIDE_HINT = "inputs stay inside --root; pass --allow-outside-root to read outside it on purpose"


def _error(task: Task, message: str, *field: str, hint: str | None = None) -> InputError:
    return InputError(message, file=str(task.file), line=task.line_of(*field), field=".".join(field), hint=hint)


def rel(resolved: Path, root: Path) -> str:
    """A resolved path relative to the (resolved) root, or absolute when outside it."""
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else resolved.as_posix()


def matched_files(task: Task, root: Path, *, allow_outside_root: bool = False) -> list[Path]:
    """The files the task's globs match, resolved, in glob order, each once (linear in the
    number of files: two links to one file are one input).

    A match that resolves outside `root` (an absolute path, `..` out of it, a symlinked
    file or folder pointing out) is refused unless `allow_outside_root`.
    """
    matched: dict[Path, None] = {}  # ordered, with O(1) membership
    for pattern in task.inputs.files or []:
        hits = sorted(Path(p) for p in globlib.glob(str(task.folder / pattern), recursive=True))
        hits = [h for h in hits if h.is_file()]
        if not hits:
            raise _error(task, f"the glob `{pattern}` matches no file (relative to {task.folder})",
                         "inputs", "files", hint="paths in a task file are relative to the task file's folder")
        for hit in hits:
            resolved = hit.resolve()
            if not allow_outside_root and not resolved.is_relative_to(root):
                raise _error(task, f"`{pattern}` reads {resolved}, outside the run's root {root}",
                             "inputs", "files", hint=OUTSIDE_HINT)
            matched[resolved] = None
    return list(matched)


def read_text(path: Path, task: Task, shown: str) -> str:
    """One input file (shown as `shown`) as text; an unreadable, binary or non-UTF-8 file
    is an InputError for its job."""
    if shown.encode("utf-8", "surrogateescape").decode("utf-8", "replace") != shown:
        raise _error(task, f"input file name {shown.encode('utf-8', 'surrogateescape')!r} is not UTF-8",
                     "inputs", "files", hint="rename the file, or narrow the glob")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _error(task, f"cannot read input file {shown}: {exc.strerror}", "inputs", "files") from exc
    if b"\x00" in raw[:BINARY_SNIFF]:
        raise _error(task, f"input file {shown} is binary", "inputs", "files", hint="narrow the glob to text files")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(task, f"input file {shown} is not UTF-8 text (byte {exc.start})", "inputs", "files",
                     hint="narrow the glob to text files, or convert the file to UTF-8") from exc


def check_revision(value: str) -> str:
    """A pydantic validator for a git revision range: never something git would parse as an option."""
    if value.lstrip().startswith("-"):
        raise ValueError("a revision range cannot start with `-` (git would read it as an option); "
                         "give revisions such as `HEAD~3..HEAD`")
    return value


def git_text(task: Task) -> tuple[str, list[str]]:
    """The git input's text and any notes about it (bytes that were not UTF-8 are replaced)."""
    from git import Repo
    from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

    assert task.inputs.git is not None
    what, rev = task.inputs.git.what
    # options first, then --end-of-options: nothing after it is read as an option, whatever it says
    args = {"diff": ["diff", "--no-ext-diff", "--no-textconv"],
            "log": ["log", "--format=%s%n%n%b%n---"],
            "changed": ["diff", "--name-only", "--no-ext-diff"]}[what]
    try:
        repo = Repo(task.folder, search_parent_directories=True)
        raw = repo.git.execute(["git", *args, "--end-of-options", rev, "--"], stdout_as_string=False)
    except (InvalidGitRepositoryError, NoSuchPathError) as exc:
        raise _error(task, "git input, but the task file is not inside a git repository",
                     "inputs", "git", what) from exc
    except GitCommandError as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        detail = stderr.strip().splitlines()
        raise _error(task, f"git {what} {rev!r} failed: {_git_reason(detail)}", "inputs", "git", what,
                     hint="check the revision range") from exc
    assert isinstance(raw, bytes)
    text = raw.decode("utf-8", "replace")
    notes = []
    if "\ufffd" in text and "\ufffd".encode() not in raw:
        notes.append(f"git {what} {rev}: bytes that are not UTF-8 were replaced with U+FFFD")
    return text, notes


def _git_reason(stderr_lines: list[str]) -> str:
    for line in stderr_lines:
        if "fatal:" in line:
            return line.split("fatal:", 1)[1].strip(" '")
    return stderr_lines[-1].strip("' ") if stderr_lines else "git failed"
