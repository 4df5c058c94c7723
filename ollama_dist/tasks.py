"""Task files (see TASKFILE.md) and the jobs they expand into.

Loading is strict: every problem is one InputError naming file, line and field.
A job is (task, one input) with a stable id, so a later run can tell what is done.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ollama_dist.errors import InputError
from ollama_dist.validate import OutputSpec, check_pattern, check_schema
from ollama_dist.yamlfile import YamlDoc, load_yaml, parse_yaml, validation_error

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
TASK_SUFFIXES = (".yaml", ".yml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class GitInput(_Strict):
    diff: str | None = None
    log: str | None = None
    changed: str | None = None

    @model_validator(mode="after")
    def _one(self) -> GitInput:
        given = [k for k in ("diff", "log", "changed") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of `diff`, `log` or `changed` with a revision range")
        return self

    @property
    def what(self) -> tuple[str, str]:
        for key in ("diff", "log", "changed"):
            value = getattr(self, key)
            if value:
                return key, value
        raise AssertionError("validated to hold one")


class Inputs(_Strict):
    text: str | None = None
    files: list[str] | None = None
    each: bool = True
    git: GitInput | None = None


class Output(_Strict):
    format: Literal["text", "json", "yaml", "code", "diff"] = "text"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    pattern: str | None = None
    write: str | None = None
    language: str | None = None

    def spec(self) -> OutputSpec:
        return OutputSpec(format=self.format, schema_=self.schema_, pattern=self.pattern, language=self.language)


class Models(_Strict):
    local: str | None = None
    cloud: str | None = None


class Task(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    kind: Literal["auto", "deterministic", "reasoning"] = "auto"
    prompt: str = Field(min_length=1)
    system: str | None = None
    inputs: Inputs = Field(default_factory=Inputs)
    output: Output = Field(default_factory=Output)
    models: Models = Field(default_factory=Models)
    max_tokens: int = Field(1024, gt=0)
    temperature: float = Field(0.0, ge=0, le=2)
    timeout_s: float = Field(120.0, gt=0)

    _file: Path = PrivateAttr(default=Path("<inline>"))
    _line: int = PrivateAttr(default=1)
    _doc: YamlDoc | None = PrivateAttr(default=None)
    _prefix: tuple[str | int, ...] = PrivateAttr(default=())

    @property
    def file(self) -> Path:
        return self._file

    @property
    def line(self) -> int:
        return self._line

    def line_of(self, *field: str) -> int:
        """The line where `field` (or the nearest enclosing key) stands in the task file."""
        if self._doc is None:
            return self._line
        return self._doc.line_of(self._prefix + field) or self._line

    @property
    def folder(self) -> Path:
        return self._file.parent

    def fingerprint(self) -> str:
        """A hash of what defines the answer: a changed prompt or schema makes old answers stale."""
        data = self.model_dump(mode="json", by_alias=True, exclude={"description", "timeout_s"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class Job(_Strict):
    """One unit of work: a task applied to one input."""

    id: str
    task: Task
    input_text: str
    input_path: str | None = None  # relative to the root, for files
    input_hash: str
    prompt: str
    write_path: Path | None = None

    @property
    def stem(self) -> str:
        return Path(self.input_path).stem if self.input_path else self.task.name


# ---------------------------------------------------------------- loading files


@dataclass(frozen=True)
class InlineTasks:
    """A task file's text given directly (the MCP tools' `task_yaml`). It loads as if it
    stood at `path`, which is never read: relative paths resolve in `path`'s folder."""

    text: str
    path: Path

    def __str__(self) -> str:
        return str(self.path)


TaskSource = Path | InlineTasks


def find_task_files(paths: Iterable[TaskSource]) -> list[TaskSource]:
    """Task files named directly, or found (recursively) in named folders."""
    found: list[TaskSource] = []
    for path in paths:
        if isinstance(path, InlineTasks):
            found.append(path)
        elif path.is_dir():
            found.extend(
                p for p in sorted(path.rglob("*"))
                if p.suffix in TASK_SUFFIXES and p.is_file() and not _skipped(p, path)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise InputError("no such file or folder", file=str(path), hint="give a task file or a folder of them")
    if not found:
        raise InputError("no task files (*.yaml, *.yml) found in " + ", ".join(str(p) for p in paths))
    return found


def _skipped(path: Path, top: Path) -> bool:
    if path.name == "ollama-dist.yaml":  # the project's config file, not a task
        return True
    rel = path.relative_to(top).parts
    return any(part.startswith(".") or part in ("out", "node_modules") for part in rel[:-1])


def _merge(defaults: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in task.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_file(source: TaskSource) -> list[Task]:
    doc = parse_yaml(source.text, source.path) if isinstance(source, InlineTasks) else load_yaml(source)
    path = doc.path
    data = doc.data
    if not isinstance(data, dict):
        raise InputError("a task file holds one task (a mapping) or `tasks:` (a list)", file=str(path), line=1)
    if "tasks" in data:
        extra = sorted(set(data) - {"tasks", "defaults"})
        if extra:
            raise InputError("unknown field beside `tasks:`", file=str(path), line=doc.line_of((extra[0],)),
                             field=extra[0], hint="only `defaults:` and `tasks:` go at the top of a list file")
        items = data["tasks"]
        defaults = data.get("defaults") or {}
        if not isinstance(items, list) or not items:
            raise InputError("`tasks` must be a non-empty list of tasks", file=str(path),
                             line=doc.line_of(("tasks",)), field="tasks")
        if not isinstance(defaults, dict):
            raise InputError("`defaults` must be a mapping", file=str(path), line=doc.line_of(("defaults",)),
                             field="defaults")
        tasks = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise InputError("each entry of `tasks` must be a mapping", file=str(path),
                                 line=doc.line_of(("tasks", i)), field=f"tasks[{i}]")
            tasks.append(_task(_merge(defaults, item), doc, ("tasks", i), frozenset(defaults) - frozenset(item)))
        return tasks
    return [_task(data, doc, ())]


def _task(data: dict[str, Any], doc: YamlDoc, prefix: tuple[str | int, ...],
          from_defaults: frozenset[str] = frozenset()) -> Task:
    try:
        task = Task.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        loc = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])["loc"]
        # a field that came from `defaults:` is reported where it stands
        where = ("defaults",) if loc and loc[0] in from_defaults else prefix
        raise validation_error(exc, doc, Task, where) from exc
    task._file = doc.path
    task._line = doc.line_of(prefix) or 1
    task._doc = doc
    task._prefix = prefix
    _check_output(task, doc, prefix)
    return task


def _check_output(task: Task, doc: YamlDoc, prefix: tuple[str | int, ...]) -> None:
    out = task.output
    if out.pattern is not None:
        problem = check_pattern(out.pattern)
        if problem:
            raise InputError(f"not a valid regular expression: {problem}", file=str(doc.path),
                             line=doc.line_of(prefix + ("output", "pattern")), field="output.pattern",
                             hint="regexes follow Python's `re`; quote the YAML string with single quotes")
    if out.schema_ is not None:
        problem = check_schema(out.schema_)
        if problem:
            raise InputError(f"not a valid JSON Schema: {problem}", file=str(doc.path),
                             line=doc.line_of(prefix + ("output", "schema")), field="output.schema")
        if out.format not in ("json", "yaml"):
            raise InputError("a schema needs `format: json` or `format: yaml`", file=str(doc.path),
                             line=doc.line_of(prefix + ("output", "format")) or doc.line_of(prefix + ("output",)),
                             field="output.format", hint="set `format: json`")
    inp = task.inputs
    if not (inp.text or inp.files or inp.git) and "{input}" in task.prompt:
        raise InputError("the prompt uses {input} but the task has no inputs", file=str(doc.path),
                         line=doc.line_of(prefix + ("prompt",)), field="inputs",
                         hint="add `inputs: {text: ...}` or `inputs: {files: [...]}`")


def load_tasks(paths: Iterable[TaskSource]) -> list[Task]:
    tasks: list[Task] = []
    seen: dict[str, Task] = {}
    for path in find_task_files(paths):
        for task in load_file(path):
            if task.name in seen:
                first = seen[task.name]
                raise InputError(f"duplicate task name `{task.name}` (first at {first.file}:{first.line})",
                                 file=str(task.file), line=task.line, field="name",
                                 hint="task names must be unique within one run")
            seen[task.name] = task
            tasks.append(task)
    return tasks


# ---------------------------------------------------------------- expanding jobs


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _read_input(path: Path, task: Task, root: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc.strerror}", file=str(task.file),
                         line=task.line_of("inputs", "files"), field="inputs.files") from exc
    if b"\x00" in raw[:8192]:
        raise InputError(f"input file {_rel(path, root)} is binary", file=str(task.file),
                         line=task.line_of("inputs", "files"), field="inputs.files",
                         hint="narrow the glob to text files")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"input file {_rel(path, root)} is not UTF-8 text", file=str(task.file),
                         line=task.line_of("inputs", "files"), field="inputs.files", hint="narrow the glob to text files") from exc


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _glob(task: Task) -> list[Path]:
    matched: list[Path] = []
    for pattern in task.inputs.files or []:
        hits = sorted(Path(p) for p in globlib.glob(str(task.folder / pattern), recursive=True))
        hits = [h for h in hits if h.is_file()]
        if not hits:
            raise InputError(f"the glob `{pattern}` matches no file (relative to {task.folder})",
                             file=str(task.file), line=task.line_of("inputs", "files"), field="inputs.files",
                             hint="paths in a task file are relative to the task file's folder")
        matched.extend(h for h in hits if h not in matched)
    return matched


def _git_text(task: Task) -> str:
    from git import Repo
    from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

    assert task.inputs.git is not None
    what, rev = task.inputs.git.what
    try:
        repo = Repo(task.folder, search_parent_directories=True)
        if what == "diff":
            return str(repo.git.diff(rev))
        if what == "log":
            return str(repo.git.log(rev, "--format=%s%n%n%b%n---"))
        return str(repo.git.diff(rev, "--name-only"))
    except (InvalidGitRepositoryError, NoSuchPathError) as exc:
        raise InputError("git input, but the task file is not inside a git repository", file=str(task.file),
                         line=task.line_of("inputs", "git", what), field=f"inputs.git.{what}") from exc
    except GitCommandError as exc:
        detail = (exc.stderr or "").strip().splitlines()
        raise InputError(f"git {what} {rev!r} failed: {_git_reason(detail)}", file=str(task.file),
                         line=task.line_of("inputs", "git", what), field=f"inputs.git.{what}", hint="check the revision range") from exc


def _git_reason(stderr_lines: list[str]) -> str:
    for line in stderr_lines:
        if "fatal:" in line:
            return line.split("fatal:", 1)[1].strip(" '")
    return stderr_lines[-1].strip("' ") if stderr_lines else "git failed"


def render_prompt(task: Task, input_text: str, path: str | None) -> str:
    values = {"input": input_text, "path": path or "", "name": task.name}
    prompt = task.prompt
    for key, value in values.items():
        prompt = prompt.replace("{" + key + "}", value)
    if "{input}" not in task.prompt and input_text:
        prompt = f"{prompt.rstrip()}\n\n{input_text}"
    return prompt


def _write_path(task: Task, path: str | None, stem: str, root: Path) -> Path | None:
    template = task.output.write
    if not template:
        return None
    rendered = template.replace("{stem}", stem).replace("{name}", task.name).replace("{path}", path or stem)
    target = (task.folder / rendered).resolve()
    if not target.is_relative_to(root.resolve()):
        raise InputError(f"`{template}` writes to {target}, outside the run's root {root.resolve()}",
                         file=str(task.file), line=task.line_of("output", "write"), field="output.write",
                         hint="write templates must stay inside --root (no `..` out of it, no absolute paths)")
    return target


def _job(task: Task, text: str, path: str | None, root: Path, ident: str) -> Job:
    stem = Path(path).stem if path else task.name
    prompt = render_prompt(task, text, path)
    return Job(
        id=ident, task=task, input_text=text, input_path=path,
        input_hash=_hash((task.system or "") + "\x00" + prompt)[:32],
        prompt=prompt, write_path=_write_path(task, path, stem, root),
    )


def expand(task: Task, root: Path) -> Iterator[Job]:
    """The jobs of one task: one per matched file with `each`, else one."""
    inp = task.inputs
    pieces: list[str] = []
    if inp.text:
        pieces.append(inp.text)
    if inp.git:
        pieces.append(_git_text(task))
    files = _glob(task) if inp.files else []
    if files and inp.each:
        extra = "\n\n".join(pieces)
        for file in files:
            rel = _rel(file, root)
            text = _read_input(file, task, root)
            yield _job(task, f"{extra}\n\n{text}" if extra else text, rel, root, f"{task.name}:{rel}")
        return
    for file in files:
        pieces.append(f"--- {_rel(file, root)} ---\n{_read_input(file, task, root)}")
    text = "\n\n".join(pieces)
    ident = f"{task.name}:{_hash(text)[:12]}" if text else task.name
    yield _job(task, text, None, root, ident)


def load_jobs(paths: Iterable[TaskSource], root: Path) -> list[Job]:
    jobs: list[Job] = []
    for task in load_tasks(paths):
        jobs.extend(expand(task, root))
    return jobs
