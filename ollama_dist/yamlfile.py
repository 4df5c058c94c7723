"""YAML documents that remember where each key stood, so errors can name file and line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ollama_dist.errors import InputError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDoc:
    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of the longest known prefix of `loc` (1-based)."""
        parts = tuple(loc)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get((), None)

    def sub(self, prefix: Loc, data: Any) -> YamlDoc:
        """A view of a sub-document whose locations are relative to `prefix`."""
        n = len(prefix)
        lines = {loc[n:]: ln for loc, ln in self.lines.items() if loc[:n] == prefix}
        return YamlDoc(self.path, data, lines)


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            lines[loc + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, loc + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[loc + (i,)] = item.start_mark.line + 1
            _walk(item, loc + (i,), lines)


def parse_yaml(text: str, path: Path) -> YamlDoc:
    """Parse one YAML document; a syntax error becomes an InputError with its line."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDoc(path, None, {})
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(
            f"not valid YAML: {exc.problem or exc}", file=str(path), line=line,
            hint="check the indentation and quoting on that line",
        ) from exc
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", file=str(path)) from exc
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    _walk(node, (), lines)
    return YamlDoc(path, data, lines)


def load_yaml(path: Path) -> YamlDoc:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=str(path)) from exc
    return parse_yaml(text, path)


def _known_fields(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names allowed at `loc`'s parent in `model`, following nested models."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        info = current.model_fields.get(str(part))
        if info is None:
            info = next((f for f in current.model_fields.values() if f.alias == part), None)
        if info is None:
            return []
        current = _model_in(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_error(
    exc: ValidationError, doc: YamlDoc, model: type[BaseModel], prefix: Loc = ()
) -> InputError:
    """The first pydantic error as an InputError naming file, line, field and a hint."""
    errors = exc.errors()
    # an unknown field is usually a typo of a missing one: report it first
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    field_name = dotted(prefix + loc)
    line = doc.line_of(prefix + loc)
    kind = err["type"]
    hint: str | None = None
    if kind == "extra_forbidden":
        known = _known_fields(model, loc)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`?" if close else f"known fields here: {', '.join(sorted(known))}"
        message = "unknown field"
    elif kind == "missing":
        message = "required field is missing"
        line = doc.line_of(prefix + loc[:-1])
        hint = f"add `{loc[-1]}:`"
    else:
        value = err.get("input")
        shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
        message = f"{err['msg']} (got {shown[:60]})"
    return InputError(message, file=str(doc.path), line=line, field=field_name, hint=hint)
