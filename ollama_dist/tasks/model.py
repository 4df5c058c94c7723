"""The task-file model (see TASKFILE.md): Task, its inputs and output, and the Job it expands into.

Loading (strict, every problem one InputError naming file, line and field) is ``tasks.loader``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ollama_dist.checks.validate import OutputSpec
from ollama_dist.tasks import inputs as inputs_io
from ollama_dist.yamlfile import YamlDoc

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class GitInput(_Strict):
    diff: str | None = None
    log: str | None = None
    changed: str | None = None

    @field_validator("diff", "log", "changed")
    @classmethod
    def _revision(cls, value: str | None) -> str | None:
        return None if value is None else inputs_io.check_revision(value)

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
    # values must occur in the input: true, false, or the field names to check; unset: on for
    # extraction-like jobs (checks.grounding)
    grounded: bool | list[Annotated[str, Field(min_length=1)]] | None = None
    agree: int = Field(1, ge=1, le=9)  # ask the local model N times; keep only a value most samples give

    @field_validator("grounded", mode="before")
    @classmethod
    def _grounded(cls, value: object) -> object:
        if (isinstance(value, list) and not value) or not isinstance(value, (bool, list, type(None))):
            raise ValueError("write true, false, or a list of the fields whose values must occur in the input "
                             "(`grounded: [name, email]`)")
        return value

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
    def instruction(self) -> str:
        """What the task asks, in its own words: name, description, system and prompt."""
        return "\n".join(p for p in (self.name.replace("-", " "), self.description, self.system, self.prompt) if p)

    @property
    def folder(self) -> Path:
        return self._file.parent

    def fingerprint(self) -> str:
        """A hash of what defines the answer: a changed prompt or schema makes old answers stale."""
        data = self.model_dump(mode="json", by_alias=True, exclude={"description", "timeout_s"})
        for key, default in (("grounded", None), ("agree", 1)):  # unset, they leave older answers current
            if data["output"][key] == default:
                del data["output"][key]
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
    error: str | None = None  # why this job cannot run (its input file is binary, say): it fails alone
    notes: tuple[str, ...] = ()  # what was done to its input on the way (bytes replaced, say)

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
