"""YAML documents that remember where each key stood, so errors can name file and line."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ollama_dist.errors import InputError, InputErrors

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


MAX_BYTES = 1024 * 1024  # a task or config file larger than this is refused before parsing
MAX_DEPTH = 100  # nesting levels (a schema rarely needs a tenth of this)
ALIAS_BUDGET = 10_000  # nodes that aliases may add when expanded (an alias bomb adds billions)
_MERGE = "tag:yaml.org,2002:merge"
_SATURATED = 10**9  # past any 1 MiB document's own node count plus the budget


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses nesting deeper than MAX_DEPTH (it recurses per level)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """An explicit tag on a value it cannot hold (`!!timestamp soon`) fails inside PyYAML
        with a bare KeyError, ValueError or AttributeError; here it is a YAML error at that node."""
        try:
            return super().construct_object(node, deep)
        except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.tag.rsplit(':', 1)[-1]} cannot hold {str(node.value)[:40]!r}",
                node.start_mark) from exc


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_graph(root: yaml.Node, path: Path) -> None:
    """Refuse a recursive alias, and aliases that would expand past ALIAS_BUDGET nodes.

    The composed graph shares each anchored node between its aliases; this counts the
    expanded tree's size without building it (each node once, iteratively).
    """
    size: dict[int, int] = {}
    unique = 0
    big: yaml.Node | None = None
    open_ids: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_ids.discard(key)
            size[key] = min(1 + sum(size[id(c)] for c in _children(node)), _SATURATED)
            if big is None and size[key] > ALIAS_BUDGET:
                big = node  # the innermost node past the budget: in a bomb, where it takes off
            continue
        if key in size:
            continue
        if key in open_ids:
            raise InputError("a recursive alias (an anchor used inside itself)", file=str(path),
                             line=node.start_mark.line + 1, hint="YAML aliases must not refer to an enclosing anchor")
        open_ids.add(key)
        unique += 1
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)
    if size[id(root)] - unique > ALIAS_BUDGET:
        raise InputError(f"aliases expand this document past {ALIAS_BUDGET:,} extra nodes", file=str(path),
                         line=big.start_mark.line + 1 if big is not None else None,
                         hint="an alias bomb? write the repeated part out, or repeat it fewer times")


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], path: Path, problems: list[InputError]) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE:
                first = seen.get((key_node.tag, key))
                if first is not None:
                    problems.append(InputError(
                        f"duplicate key `{key}` (first at line {first}, again at line {line})",
                        file=str(path), line=line, field=dotted(loc + (key,)),
                        hint="a key may appear once in a mapping; YAML would keep only the last"))
                    continue
                seen[(key_node.tag, key)] = line
            lines[loc + (key,)] = line
            _walk(value_node, loc + (key,), lines, path, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[loc + (i,)] = item.start_mark.line + 1
            _walk(item, loc + (i,), lines, path, problems)


def parse_yaml(text: str, path: Path) -> YamlDoc:
    """Parse one YAML document; a syntax error becomes an InputError with its line.

    Bounded: nesting past MAX_DEPTH, a recursive alias, aliases expanding past
    ALIAS_BUDGET nodes and a key given twice in one mapping (every such key named) are errors too.
    """
    try:
        loader = _BoundedLoader(text)  # the reader refuses control characters here
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, path) from exc
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDoc(path, None, {})
        _check_graph(node, path)
        lines: dict[Loc, int] = {}
        problems: list[InputError] = []
        _walk(node, (), lines, path, problems)  # before constructing: merge keys (`<<`) rewrite the nodes
        if problems:
            raise InputErrors.of(problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(
            f"not valid YAML: {exc.problem or exc}", file=str(path), line=line,
            hint="check the indentation and quoting on that line",
        ) from exc
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, path) from exc
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", file=str(path)) from exc
    finally:
        loader.dispose()
    return YamlDoc(path, data, lines)


def _reader_error(exc: yaml.reader.ReaderError, text: str, path: Path) -> InputError:
    line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
    what = f"character #x{exc.character:04x}" if isinstance(exc.character, int) else "character"
    return InputError(f"not valid YAML: unacceptable {what} ({exc.reason})", file=str(path), line=line,
                      hint="a control character cannot stand in a YAML file; write it as an escape "
                           "in a double-quoted string if it is meant")


def load_yaml(path: Path, max_bytes: int = MAX_BYTES) -> YamlDoc:
    try:
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from exc
    if len(raw) > max_bytes:
        raise InputError(f"larger than {max_bytes // 1024 // 1024} MiB; not read", file=str(path),
                         hint="a task or config file is a declaration: keep data in input files")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=str(path)) from exc
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


def validation_errors(
    exc: ValidationError, doc: YamlDoc, model: type[BaseModel], prefix: Loc | Callable[[Loc], Loc] = ()
) -> list[InputError]:
    """Every pydantic error as an InputError naming file, line, field and a hint, in line order.

    `prefix` places the model in the document: a location, or a function of each error's location
    (a task's field that came from `defaults:` is reported where it stands). A required field that
    is missing because it is misspelt is reported once, as the unknown field with its suggestion."""
    errors = [e for e in exc.errors() if e["type"] != "missing" or not _misspelt(e, exc.errors(), model)]
    found = [_one(err, doc, model, prefix(_loc(err)) if callable(prefix) else prefix) for err in errors]
    return sorted(found, key=lambda e: e.line or 0)


def validation_error(
    exc: ValidationError, doc: YamlDoc, model: type[BaseModel], prefix: Loc = ()
) -> InputError:
    """The first pydantic error as an InputError (an unknown field first: usually a typo)."""
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    return _one(err, doc, model, prefix)


def _loc(err: ErrorDetails) -> Loc:
    return tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))


def _misspelt(missing: ErrorDetails, errors: list[ErrorDetails], model: type[BaseModel]) -> bool:
    """Whether an unknown field beside the missing one is its misspelling (`promt` for `prompt`)."""
    loc = _loc(missing)
    for err in errors:
        other = _loc(err)
        if err["type"] == "extra_forbidden" and other[:-1] == loc[:-1]:
            close = difflib.get_close_matches(str(other[-1]), _known_fields(model, other), n=1, cutoff=0.6)
            if close and close[0] == loc[-1]:
                return True
    return False


def _one(err: ErrorDetails, doc: YamlDoc, model: type[BaseModel], prefix: Loc) -> InputError:
    loc = _loc(err)
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
        msg = str(err["msg"]).removeprefix("Value error, ")
        message = f"{msg} (got {shown[:60]})"
    return InputError(message, file=str(doc.path), line=line, field=field_name, hint=hint)
