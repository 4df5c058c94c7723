"""Task files (see TASKFILE.md) and the jobs they expand into.

Loading is strict: every problem is an InputError naming file, line and field, and all the
problems found are reported at once (InputErrors), file by file in line order.
A job is (task, one input) with a stable id, so a later run can tell what is done.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ollama_dist.checks.validate import check_pattern, check_schema
from ollama_dist.errors import InputError, InputErrors
from ollama_dist.tasks import inputs as inputs_io
from ollama_dist.tasks.model import (  # re-exported: a script may import them from here
    NAME_PATTERN as NAME_PATTERN,
    GitInput as GitInput,
    InlineTasks as InlineTasks,
    Inputs as Inputs,
    Job as Job,
    Models as Models,
    Output as Output,
    Task as Task,
    TaskSource as TaskSource,
)
from ollama_dist.tasks.placeholders import check_placeholders, fill, placeholders
from ollama_dist.yamlfile import MAX_BYTES, YamlDoc, dotted, load_yaml, parse_yaml, validation_errors

TASK_SUFFIXES = (".yaml", ".yml")
# control characters (tab, newline and carriage return aside), DEL, C1 and lone surrogates
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


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
    """The tasks of one file; every problem in it is reported at once, in line order."""
    tasks, errors = _file_tasks(source)
    if errors:
        raise InputErrors.of(errors)
    return tasks


def _file_tasks(source: TaskSource) -> tuple[list[Task], list[InputError]]:
    """The file's valid tasks and the problems found in it (a YAML error stops at itself)."""
    if isinstance(source, InlineTasks):
        if len(source.text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
            raise InputError(f"the task text is larger than {MAX_BYTES:,} bytes", file=str(source.path),
                             hint="split the work into several task files")
        doc = parse_yaml(source.text, source.path)
    else:
        doc = load_yaml(source)
    path = doc.path
    data = doc.data
    if not isinstance(data, dict):
        raise InputError("a task file holds one task (a mapping) or `tasks:` (a list)", file=str(path), line=1)
    if "tasks" not in data:
        task, errors = _task(data, doc, ())
        return [task] if task else [], errors
    errors = [InputError("unknown field beside `tasks:`", file=str(path), line=doc.line_of((key,)), field=key,
                         hint="only `defaults:` and `tasks:` go at the top of a list file")
              for key in sorted(set(data) - {"tasks", "defaults"}, key=lambda k: doc.line_of((k,)) or 0)]
    items = data["tasks"]
    defaults = data.get("defaults") or {}
    if not isinstance(items, list) or not items:
        errors.append(InputError("`tasks` must be a non-empty list of tasks", file=str(path),
                                 line=doc.line_of(("tasks",)), field="tasks"))
    if not isinstance(defaults, dict):
        errors.append(InputError("`defaults` must be a mapping", file=str(path), line=doc.line_of(("defaults",)),
                                 field="defaults"))
    if errors:
        return [], errors
    tasks = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(InputError("each entry of `tasks` must be a mapping", file=str(path),
                                     line=doc.line_of(("tasks", i)), field=f"tasks[{i}]"))
            continue
        task, problems = _task(_merge(defaults, item), doc, ("tasks", i), frozenset(defaults) - frozenset(item))
        tasks.extend([task] if task else [])
        errors.extend(problems)
    return tasks, errors


def _task(data: dict[str, Any], doc: YamlDoc, prefix: tuple[str | int, ...],
          from_defaults: frozenset[str] = frozenset()) -> tuple[Task | None, list[InputError]]:
    """The task, or None, and every problem found in it."""
    errors = _check_characters(data, doc, prefix, from_defaults)
    try:
        task = Task.model_validate(data)
    except ValidationError as exc:
        # a field that came from `defaults:` is reported where it stands
        errors += validation_errors(exc, doc, Task, lambda loc: ("defaults",) if loc and loc[0] in from_defaults
                                    else prefix)
        return None, errors + _check_output(*_parts(data), doc, prefix)
    errors += _check_output(task.prompt, task.output, task.inputs, doc, prefix)
    if errors:
        return None, errors
    task._file = doc.path
    task._line = doc.line_of(prefix) or 1
    task._doc = doc
    task._prefix = prefix
    return task, []


def _parts(data: dict[str, Any]) -> tuple[str | None, Output | None, Inputs | None]:
    """The parts of an invalid task that are valid on their own, so their own checks still run
    (their own validation errors are already among the task's)."""
    prompt = data.get("prompt")
    parts: list[Output | Inputs | None] = []
    for key, model in (("output", Output), ("inputs", Inputs)):
        try:
            parts.append(model.model_validate(data.get(key) or {}))
        except ValidationError:
            parts.append(None)
    output, inputs = parts
    assert output is None or isinstance(output, Output)
    assert inputs is None or isinstance(inputs, Inputs)
    return (prompt if isinstance(prompt, str) else None), output, inputs


def _check_characters(data: dict[str, Any], doc: YamlDoc, prefix: tuple[str | int, ...],
                      from_defaults: frozenset[str]) -> list[InputError]:
    """No control character, DEL or lone surrogate in any string of a task (keys included):
    none has a use in a declaration, and a lone surrogate cannot even be sent."""
    errors: list[InputError] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while stack:
        loc, value = stack.pop()
        items: Iterable[tuple[str | int, Any]] = ()
        if isinstance(value, dict):
            items = [(k if isinstance(k, (str, int)) else str(k), v) for k, v in value.items()]
            strings = [k for k in value if isinstance(k, str)]
        elif isinstance(value, list):
            items, strings = enumerate(value), []
        else:
            strings = [value] if isinstance(value, str) else []
        for text in strings:
            found = _CONTROL.search(text)
            if found:
                where = ("defaults",) + loc if loc and loc[0] in from_defaults else prefix + loc
                errors.append(InputError(
                    f"a control character {found.group()!r} in the text", file=str(doc.path),
                    line=doc.line_of(where), field=dotted(prefix + loc) or None,
                    hint="only tab, newline and carriage return may stand in a task's text; "
                         "put other bytes in an input file"))
        stack.extend((loc + (k,), v) for k, v in items)
    return errors


def _check_output(prompt: str | None, out: Output | None, inp: Inputs | None, doc: YamlDoc,
                  prefix: tuple[str | int, ...]) -> list[InputError]:
    """What the model cannot say: placeholders, the pattern, the schema and the inputs the prompt needs."""
    errors = check_placeholders(prompt, out.write if out else None, doc, prefix)

    def problem(message: str, *field: str, line: int | None = None, hint: str | None = None) -> None:
        errors.append(InputError(message, file=str(doc.path), line=line or doc.line_of(prefix + field),
                                 field=dotted(prefix + field), hint=hint))

    if out is not None and out.pattern is not None and (bad := check_pattern(out.pattern)):
        problem(f"not a valid regular expression: {bad}", "output", "pattern",
                hint="regexes follow Python's `re`; quote the YAML string with single quotes")
    if out is not None and out.schema_ is not None:
        if bad := check_schema(out.schema_):
            problem(f"not a valid JSON Schema: {bad}", "output", "schema")
        if out.format not in ("json", "yaml"):
            problem("a schema needs `format: json` or `format: yaml`", "output", "format",
                    line=doc.line_of(prefix + ("output", "format")) or doc.line_of(prefix + ("output",)),
                    hint="set `format: json`")
    if inp is not None and prompt and not (inp.text or inp.files or inp.git) and "input" in placeholders(prompt):
        problem("the prompt uses {input} but the task has no inputs", "inputs",
                line=doc.line_of(prefix + ("prompt",)), hint="add `inputs: {text: ...}` or `inputs: {files: [...]}`")
    return errors


def _in_order(errors: list[InputError], files: list[TaskSource]) -> InputError:
    """All the problems as one error, file by file (in the order the files were found), then by line."""
    rank = {str(source): i for i, source in enumerate(files)}
    return InputErrors.of(sorted(errors, key=lambda e: (rank.get(e.file or "", len(rank)), e.line or 0)))


def _all_tasks(paths: Iterable[TaskSource]) -> tuple[list[Task], list[InputError], list[TaskSource]]:
    """The valid tasks, every problem found in the files, and the files in the order found."""
    tasks: list[Task] = []
    errors: list[InputError] = []
    seen: dict[str, Task] = {}
    files = find_task_files(paths)
    for path in files:
        try:
            found, problems = _file_tasks(path)
        except InputError as exc:  # the file as a whole: not YAML, too large, not a mapping
            errors.append(exc)
            continue
        errors.extend(problems)
        for task in found:
            if task.name in seen:
                first = seen[task.name]
                errors.append(InputError(f"duplicate task name `{task.name}` (first at {first.file}:{first.line})",
                                         file=str(task.file), line=task.line, field="name",
                                         hint="task names must be unique within one run"))
                continue
            seen[task.name] = task
            tasks.append(task)
    return tasks, errors, files


def load_tasks(paths: Iterable[TaskSource]) -> list[Task]:
    """Every task of the task files under `paths`; every problem in them is reported at once."""
    tasks, errors, files = _all_tasks(paths)
    if errors:
        raise _in_order(errors, files)
    return tasks


# ---------------------------------------------------------------- expanding jobs


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def render_prompt(task: Task, input_text: str, path: str | None) -> str:
    """The prompt with its placeholders filled; the input is inserted, never itself expanded."""
    prompt = fill(task.prompt, {"input": input_text, "path": path or "", "name": task.name})
    if "input" not in placeholders(task.prompt) and input_text:
        prompt = f"{prompt.rstrip()}\n\n{input_text}"
    return prompt


def _write_path(task: Task, path: str | None, stem: str, root: Path) -> Path | None:
    template = task.output.write
    if not template:
        return None
    rendered = fill(template, {"stem": stem, "name": task.name, "path": path or stem})
    target = (task.folder / rendered).resolve()
    if not target.is_relative_to(root):
        raise InputError(f"`{template}` writes to {target}, outside the run's root {root}",
                         file=str(task.file), line=task.line_of("output", "write"), field="output.write",
                         hint="write templates must stay inside --root (no `..` out of it, no absolute paths)")
    return target


def _job(task: Task, text: str, path: str | None, root: Path, ident: str, *,
         error: InputError | None = None, notes: tuple[str, ...] = ()) -> Job:
    stem = Path(path).stem if path else task.name
    prompt = render_prompt(task, text, path)
    reason = None if error is None else error.message + (f" ({error.hint})" if error.hint else "")
    seed = prompt if reason is None else "input error\x00" + reason  # a failed job never matches a cached answer
    return Job(
        id=ident, task=task, input_text=text, input_path=path,
        input_hash=_hash((task.system or "") + "\x00" + seed)[:32],
        prompt=prompt, write_path=_write_path(task, path, stem, root), error=reason, notes=notes,
    )


def expand(task: Task, root: Path, *, allow_outside_root: bool = False) -> Iterator[Job]:
    """The jobs of one task: one per matched file with `each`, else one.

    A file that cannot be read as text fails its own job (the job carries the error),
    not the load; a file outside `root` is refused for the whole load.
    """
    root = root.resolve()
    inp = task.inputs
    pieces: list[str] = []
    notes: list[str] = []
    if inp.text:
        pieces.append(inp.text)
    if inp.git:
        text, notes = inputs_io.git_text(task)
        pieces.append(text)
    files = inputs_io.matched_files(task, root, allow_outside_root=allow_outside_root) if inp.files else []
    if files and inp.each:
        extra = "\n\n".join(pieces)
        for file in files:
            rel = inputs_io.rel(file, root)
            rel_shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            try:
                text = inputs_io.read_text(file, task, rel)
            except InputError as exc:
                yield _job(task, "", rel_shown, root, f"{task.name}:{rel_shown}", error=exc, notes=tuple(notes))
                continue
            yield _job(task, f"{extra}\n\n{text}" if extra else text, rel, root, f"{task.name}:{rel}",
                       notes=tuple(notes))
        return
    error: InputError | None = None
    for file in files:
        try:
            rel = inputs_io.rel(file, root)
            pieces.append(f"--- {rel} ---\n{inputs_io.read_text(file, task, rel)}")
        except InputError as exc:
            error = error or exc
    text = "" if error else "\n\n".join(pieces)
    ident = f"{task.name}:{_hash(text)[:12]}" if text else task.name
    yield _job(task, text, None, root, ident, error=error, notes=tuple(notes))


def _check_targets(jobs: list[Job]) -> list[InputError]:
    """Two jobs writing one file would keep one answer and pay for the other on every run."""
    writers: dict[Path, Job] = {}
    errors = []
    for job in jobs:
        if job.write_path is None:
            continue
        first = writers.setdefault(job.write_path, job)
        if first is not job:
            task = job.task
            errors.append(InputError(
                f"jobs `{first.id}` and `{job.id}` both write {job.write_path}",
                file=str(task.file), line=task.line_of("output", "write"), field="output.write",
                hint="put `{stem}` or `{path}` in the write template so each job writes its own file"))
    return errors


def load_jobs(paths: Iterable[TaskSource], root: Path, *, allow_outside_root: bool = False) -> list[Job]:
    """Every job of the task files under `paths`; inputs and outputs stay inside `root`
    (inputs may leave it with `allow_outside_root`, for users who mean it). Every problem
    found, in the files or in what their tasks read and write, is reported at once."""
    tasks, errors, files = _all_tasks(paths)
    jobs: list[Job] = []
    for task in tasks:
        try:
            jobs.extend(expand(task, root, allow_outside_root=allow_outside_root))
        except InputError as exc:
            errors.append(exc)
    errors += _check_targets(jobs)
    if errors:
        raise _in_order(errors, files)
    return jobs
