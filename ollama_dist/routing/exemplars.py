"""The exemplar bank: labelled instructions the router's second opinion compares a task with.

The package ships one (data/exemplars/bank.yaml, written blind to the router; its
provenance beside it). Users add their own in `$OLLAMA_DIST_HOME/exemplars/*.yaml`, in the
same format: a YAML list of items

    - id: my-001
      label: deterministic        # or reasoning
      name: csv-to-json
      prompt: Convert the CSV to a JSON array of objects.
      output: {format: json, schema: false, pattern: false}
      ecosystem: data             # optional
      why: a fixed mapping        # optional

Loading is strict: every problem is one InputError naming file, line and field. Only the
instruction is compared (name, description, system, prompt, output spec), never an input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ollama_dist.errors import InputError, InputErrors
from ollama_dist.tasks.model import Task
from ollama_dist.yamlfile import YamlDoc, load_yaml, parse_yaml, validation_errors

Label = Literal["deterministic", "reasoning"]
SHIPPED = "data/exemplars/bank.yaml"
USER_FOLDER = "exemplars"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExemplarOutput(_Strict):
    format: str = "text"
    schema_: bool = Field(False, alias="schema")
    pattern: bool = False


class ExemplarItem(_Strict):
    id: str = Field(min_length=1)
    label: Label
    name: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    description: str | None = None
    system: str | None = None
    output: ExemplarOutput = Field(default_factory=lambda: ExemplarOutput.model_validate({}))
    ecosystem: str | None = None
    why: str | None = None


_ITEMS = TypeAdapter(list[ExemplarItem])


@dataclass(frozen=True)
class Exemplar:
    """One labelled instruction, as the classifier sees it."""

    id: str
    label: Label
    text: str
    source: str  # file:line, for reasons and errors

    @property
    def local(self) -> bool:
        return self.label == "deterministic"


def instruction_text(name: str, description: str | None, system: str | None, prompt: str,
                     fmt: str, schema: bool, pattern: bool) -> str:
    """The words compared: one canonical rendering shared by tasks and exemplars."""
    spec = f"output: {fmt}" + (", checked by a JSON schema" if schema else "") + \
        (", must match a pattern" if pattern else "")
    parts = [name.replace("-", " ").replace("_", " "), description, system, prompt.strip(), spec]
    return "\n".join(p.strip() for p in parts if p and p.strip())


def task_text(task: Task) -> str:
    out = task.output
    return instruction_text(task.name, task.description, task.system, task.prompt, out.format,
                            out.schema_ is not None, out.pattern is not None)


def text_key(text: str) -> str:
    """The instruction's fingerprint: what the embedding cache is keyed by (with the model id)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def bank_key(exemplars: Sequence[Exemplar], model_id: str) -> str:
    """Names one set of bank vectors: the model and every exemplar text, in order."""
    h = hashlib.sha256(model_id.encode())
    for e in exemplars:
        h.update(b"\0" + e.text.encode("utf-8"))
    return h.hexdigest()[:24]


def parse_bank(doc: YamlDoc) -> list[Exemplar]:
    """A parsed bank file's exemplars; any problem is an InputError naming file, line and field."""
    if doc.data is None:
        return []
    if not isinstance(doc.data, list):
        raise InputError("an exemplar file must be a YAML list of items", file=str(doc.path), line=1,
                         hint="start each item with `- id: ...`")
    try:
        items = _ITEMS.validate_python(doc.data)
    except ValidationError as exc:
        raise _located(exc, doc) from exc
    seen: dict[str, int] = {}
    out: list[Exemplar] = []
    repeated: list[InputError] = []
    for i, item in enumerate(items):
        line = doc.line_of((i,)) or 1
        if item.id in seen:
            repeated.append(InputError(f"duplicate exemplar id {item.id!r} (first on line {seen[item.id]})",
                                       file=str(doc.path), line=doc.line_of((i, "id")) or line, field=f"[{i}].id",
                                       hint="give every exemplar its own id"))
            continue
        seen[item.id] = line
        o = item.output
        text = instruction_text(item.name, item.description, item.system, item.prompt, o.format,
                                o.schema_, o.pattern)
        out.append(Exemplar(item.id, item.label, text, f"{doc.path}:{line}"))
    if repeated:
        raise InputErrors.of(repeated)
    return out


def _located(exc: ValidationError, doc: YamlDoc) -> InputError:
    """Every problem of every item, each named as `[index].field` with its line, in line order."""
    found: list[InputError] = []
    for index in dict.fromkeys(e["loc"][0] for e in exc.errors() if e["loc"] and isinstance(e["loc"][0], int)):
        try:
            ExemplarItem.model_validate(doc.data[index])
        except ValidationError as inner:
            found += validation_errors(inner, doc, ExemplarItem, prefix=(index,))
    if not found:
        return InputError(str(exc.errors()[0]["msg"]), file=str(doc.path), line=1)
    return InputErrors.of(sorted(found, key=lambda e: e.line or 0))


def shipped_bank() -> list[Exemplar]:
    """The bank in the package."""
    ref = resources.files("ollama_dist").joinpath(SHIPPED)
    text = ref.read_text(encoding="utf-8")
    return parse_bank(parse_yaml(text, Path(str(ref))))


def user_files(home: Path) -> list[Path]:
    folder = home / USER_FOLDER
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def user_bank(home: Path) -> list[Exemplar]:
    """The user's own exemplars from `home/exemplars/*.yaml`; ids must not repeat across files."""
    return _unique(e for path in user_files(home) for e in parse_bank(load_yaml(path)))


def _unique(exemplars: Iterable[Exemplar]) -> list[Exemplar]:
    seen: dict[str, str] = {}
    out = []
    for e in exemplars:
        if e.id in seen:
            file, _, line = e.source.rpartition(":")
            raise InputError(f"exemplar id {e.id!r} is already used at {seen[e.id]}", file=file,
                             line=int(line) if line.isdigit() else None, field="id",
                             hint="give every exemplar its own id")
        seen[e.id] = e.source
        out.append(e)
    return out
