"""Parse and check a model's answer: ``validate(answer, spec) -> Verdict``.

Pure: no I/O; its only state is two small memos (schema checks, compiled validators).
A bad answer is a value (``Verdict(ok=False, reason=...)``), never an exception;
``reason`` is short and specific so it can go back to the model (see ``feedback``).

Formats are read in stages and ``Verdict.fallback`` names the one that was needed:
``None`` (the raw answer), ``"fence"`` (a Markdown code fence), ``"balanced"`` (JSON
found inside chatter) or ``"repair"`` (near-JSON fixed by ``json_repair``).
"""

from __future__ import annotations

import json
import math
import re
import textwrap
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ollama_dist.errors import InputError

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

Format = Literal["text", "json", "yaml", "code", "diff"]
Fallback = Literal["fence", "balanced", "repair"]

PYTHON = frozenset({"python", "python3", "py", "py3"})
_MAX_ERRORS = 3  # schema errors named in a reason
_MAX_SPANS = 32  # bracket positions tried by the balanced scan, so it stays linear
_MAX_NODES = 100_000  # YAML nodes walked: aliases can expand hugely or refer to themselves
_EXCERPT = 60
_OPENER = re.compile(r"[{\[]")
_CLOSER = {"{": "}", "[": "]"}
_BLANK_LINES = re.compile(r"\A(?:[ \t]*\r?\n)+")


class OutputSpec(BaseModel):
    """What a valid answer is; the task loader builds one from a task's ``output``.

    ``format``: text | json | yaml | code | diff. ``schema`` (attribute ``schema_``): a
    JSON Schema the parsed json/yaml value must satisfy (other formats ignore it).
    ``pattern``: a regex that must ``re.search`` the normalized answer text.
    ``language``: for ``code``; python (or a ```python fence) means it must compile.
    An invalid schema or pattern is rejected here, so ``validate`` never meets one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    format: Format = "text"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    pattern: str | None = None
    language: str | None = None

    @model_validator(mode="after")
    def _check(self) -> OutputSpec:
        problem = check_schema(self.schema_) if self.schema_ is not None else None
        if problem is None and self.pattern is not None:
            problem = check_pattern(self.pattern)
        if problem is not None:
            raise ValueError(problem)
        return self


class Verdict(BaseModel):
    """The outcome of ``validate``. When not ``ok``: ``value`` is None, ``text`` is "",
    ``reason`` says why, and ``fallback`` is the stage that parsed the answer if
    parsing got that far (a schema or pattern failure)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    value: Any = None
    text: str = ""
    fallback: Fallback | None = None
    reason: str | None = None


def validate(answer: str, spec: OutputSpec) -> Verdict:
    """Read ``answer`` as ``spec.format``, then check the schema and the pattern.

    ``text`` of a valid verdict is what to write out: pretty JSON (2-space indent),
    the YAML or code without fences (dedented, no trailing newline), the diff as
    ``unidiff`` re-serializes it (ending in a newline), or the stripped text.
    Raises InputError only for a schema ``$ref`` that cannot be resolved, which
    ``check_schema`` reports at load time unless a nested ``$id`` hides it.
    """
    answer = answer.removeprefix("\ufeff")
    if not answer.strip():
        return _invalid("the answer is empty")
    match spec.format:
        case "json":
            verdict = _validate_json(answer, spec)
        case "yaml":
            verdict = _validate_yaml(answer, spec)
        case "code":
            verdict = _validate_code(answer, spec)
        case "diff":
            verdict = _validate_diff(answer)
        case _:
            verdict = _validate_text(answer)
    if verdict.ok and spec.pattern is not None and not re.search(spec.pattern, verdict.text):
        return _invalid(f"answer does not match pattern {spec.pattern!r}", verdict.fallback)
    return verdict


_INSTRUCTIONS: dict[str, str] = {
    "json": "Reply with only the JSON, no prose, no fences.",
    "yaml": "Reply with only the YAML document, no prose, no fences.",
    "code": "Reply with only the code, no prose.",
    "diff": "Reply with only a unified diff (--- a/FILE, +++ b/FILE, then @@ hunks whose "
    "line counts match), no prose.",
    "text": "Reply with only the answer.",
}


def feedback(verdict: Verdict, spec: OutputSpec | None = None) -> str:
    """The sentence to add to a retry prompt ("" for a valid verdict)."""
    if verdict.ok:
        return ""
    reason = (verdict.reason or "it could not be parsed").rstrip(". ")
    instruction = _INSTRUCTIONS[spec.format if spec else "text"]
    if spec and spec.format == "code" and spec.language:
        instruction = f"Reply with only the {spec.language} code, no prose."
    if spec and spec.schema_ is not None and spec.format in ("json", "yaml"):
        instruction += " It must satisfy the JSON Schema you were given."
    return f"Your previous answer was invalid: {reason}. {instruction}"


def check_pattern(pattern: str) -> str | None:
    """An error message if ``pattern`` is not a valid Python regex, else None."""
    try:
        re.compile(pattern)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        return f"invalid regex {pattern!r}: {exc.msg}{where}"
    return None


def check_schema(schema: object) -> str | None:
    """An error message if ``schema`` is not a usable JSON Schema, else None.

    It must be a mapping of plain JSON values with a known ``$schema`` (default Draft
    2020-12), valid against that meta-schema, and each ``$ref`` must resolve within
    the schema (never over the network; skipped below a nested ``$id``).
    """
    if not isinstance(schema, dict):
        return f"schema must be a mapping (a JSON Schema object), not {_kind(schema)}"
    try:
        canonical = _canonical(schema)
    except (TypeError, ValueError) as exc:
        return f"schema is not plain JSON ({exc}); quote dates and other YAML-only values"
    return _schema_problem(canonical)


@lru_cache(maxsize=64)
def _schema_problem(canonical: str) -> str | None:
    """check_schema's verdict on a schema, once per schema (keyed by canonical JSON)."""
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    schema = json.loads(canonical)
    dialect = schema.get("$schema")
    if dialect is not None and validator_for(schema, default=None) is None:
        return f"unknown $schema {dialect!r}; use a JSON Schema draft URI (default: 2020-12)"
    try:
        _validator_class(schema).check_schema(schema)
    except SchemaError as exc:
        return f"invalid JSON Schema at {exc.json_path}: {_short(exc.message)}"
    return _check_refs(schema)


# --- text, code, diff -------------------------------------------------------------


def _validate_text(answer: str) -> Verdict:
    text = answer.strip()
    fence = _wrapping_fence(text)
    fallback: Fallback | None = None if fence is None else "fence"
    text = text if fence is None else fence.body.strip()
    if not text:
        return _invalid("the answer is empty", fallback)
    return Verdict(ok=True, value=text, text=text, fallback=fallback)


def _validate_code(answer: str, spec: OutputSpec) -> Verdict:
    """The fenced code (the first that compiles, fences tagged with the language
    first), or the whole answer when it has no fence."""
    language = (spec.language or "").lower()
    fences = _fences(answer)
    if not fences:
        return _check_code(_trim_code(answer), language, None)
    preferred = [f for f in fences if not language or f.tag in (language, "")]
    ordered = preferred + [f for f in fences if f not in preferred]
    verdicts = [_check_code(_trim_code(f.body), language or f.tag, "fence") for f in ordered]
    return next((v for v in verdicts if v.ok), verdicts[0])


def _check_code(code: str, language: str, fallback: Fallback | None) -> Verdict:
    if not code:
        return _invalid("the code is empty", fallback)
    problem = _python_error(code) if language in PYTHON else None
    if problem:
        return _invalid(problem, fallback)
    return Verdict(ok=True, value=code, text=code, fallback=fallback)


def _python_error(code: str) -> str | None:
    try:
        with warnings.catch_warnings():  # e.g. invalid escapes warn; they are not errors
            warnings.simplefilter("ignore")
            compile(code, "<answer>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        source = (exc.text or "").strip()
        shown = f" in {_short(source, _EXCERPT)!r}" if source else ""
        line = f" at line {exc.lineno}" if exc.lineno else ""
        return f"Python syntax error{line}: {exc.msg}{shown}"
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes; absurd nesting
        return f"Python code does not compile: {_short(str(exc))}"
    return None


def _trim_code(code: str) -> str:
    return _BLANK_LINES.sub("", textwrap.dedent(code)).rstrip()


def _validate_diff(answer: str) -> Verdict:
    from unidiff.errors import UnidiffParseError
    from unidiff.patch import PatchSet

    fences = _fences(answer, max_indent=0)  # " ```" is a diff context line, not a fence
    diffs = [f for f in fences if f.tag in ("diff", "patch", "udiff", "")] or fences
    fallback: Fallback | None = "fence" if diffs else None
    source = diffs[0].body if diffs else answer
    # Only newlines come off the end: " " alone is an empty context line.
    source = _BLANK_LINES.sub("", source).rstrip("\r\n") + "\n"
    try:
        patch = PatchSet(source)
    except UnidiffParseError as exc:
        return _invalid(f"not a valid unified diff: {_short(str(exc).strip())}", fallback)
    if len(patch) == 0:
        return _invalid("no unified diff found (expected --- a/FILE and +++ b/FILE)", fallback)
    if not any(len(file) for file in patch):
        return _invalid("the diff has no hunks (expected @@ -l,n +l,n @@)", fallback)
    text = str(patch)
    return Verdict(ok=True, value=text, text=text, fallback=fallback)


# --- json ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    value: Any
    fallback: Fallback | None


def _validate_json(answer: str, spec: OutputSpec) -> Verdict:
    parsed = _parse_json(answer, _expects_container(spec.schema_))
    if isinstance(parsed, str):
        return _invalid(parsed)
    return _against_schema(parsed, json.dumps(parsed.value, indent=2, ensure_ascii=False), spec)


def _parse_json(answer: str, container: bool) -> _Parsed | str:
    """The first acceptable value from raw, fences, balanced spans, repair; or a reason."""
    stages: list[tuple[Fallback | None, list[str]]] = [
        (None, [answer.strip()]),
        ("fence", [f.body.strip() for f in _fences(answer)]),
        ("balanced", list(_balanced_spans(answer))),
    ]
    first_error: str | None = None
    for fallback, candidates in stages:
        for candidate in candidates:
            ok, value = _loads(candidate)
            if ok and (not container or isinstance(value, (dict, list))):
                return _Parsed(value, fallback)
            if not ok and first_error is None and _OPENER.match(candidate):
                first_error = value
    sources = [*stages[1][1], *stages[2][1], _unclosed_tail(answer)]
    for source in dict.fromkeys(s for s in sources if _OPENER.match(s)):
        repaired = _repair(source)
        if repaired is not None:
            return _Parsed(repaired, "repair")
    return _json_reason(answer, first_error)


def _loads(text: str) -> tuple[bool, Any]:
    """(True, value) or (False, a reason). NaN and Infinity are not JSON."""
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return False, f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    except ValueError as exc:  # NaN, an int too long to convert
        return False, f"invalid JSON: {_short(str(exc))}"
    except RecursionError:
        return False, "invalid JSON: nested too deeply"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _repair(source: str) -> dict[str, Any] | list[Any] | None:
    """json_repair's reading of ``source`` (which opens with a bracket), if believable.

    json_repair never fails: prose becomes "" or {}, "{ prose }" a list of strings,
    several objects one list, "[the docs]" ["the docs"]. A repair counts only as a
    non-empty container of the kind the source opens with, without NaN/Infinity, and
    with more than bare words: a quote in the source, a colon in an object's source,
    or a leaf that is not a string.
    """
    import json_repair

    try:
        value = json_repair.repair_json(source, return_objects=True, skip_json_loads=True)
        json.dumps(value, allow_nan=False)
    except Exception:  # noqa: BLE001 - heuristic; deep nesting raises ValueError, RecursionError
        return None
    is_object = source[0] == "{"
    if not isinstance(value, dict if is_object else list) or not value:
        return None
    syntax = r"[\"':]" if is_object else r"[\"']"
    if not re.search(syntax, source) and all(isinstance(leaf, str) for leaf in _leaves(value)):
        return None
    return value


def _leaves(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list)):
            stack.extend(node.values() if isinstance(node, dict) else node)
        else:
            yield node


def _unclosed_tail(text: str) -> str:
    """From the first bracket to the end, if that bracket is never closed (a cut-off
    answer); "" otherwise."""
    found = _OPENER.search(text)
    if found is None or _span_end(text, found.start()) is not None:
        return ""
    return text[found.start() :].strip()


def _json_reason(answer: str, first_error: str | None) -> str:
    ok, value = _loads(answer.strip())
    if ok:  # a scalar where an object or array is wanted
        return f"expected a JSON object or array, got {_kind(value)}"
    if first_error is not None:
        return first_error
    if _OPENER.search(answer) is None:
        return f"no JSON found; the answer is prose: {_excerpt(answer)}"
    return "no complete JSON object or array found"


def _balanced_spans(text: str) -> Iterator[str]:
    """Top-level ``{...}`` / ``[...]`` spans in order; brackets in strings are skipped."""
    position = 0
    for _ in range(_MAX_SPANS):
        found = _OPENER.search(text, position)
        if found is None:
            return
        end = _span_end(text, found.start())
        if end is not None:
            yield text[found.start() : end]
        position = found.start() + 1 if end is None else end


def _span_end(text: str, start: int) -> int | None:
    """The index after the bracket that closes the one at ``start``, or None."""
    stack: list[str] = []
    quote, escaped = "", False
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":  # single quotes too: near-JSON uses them
            quote = char
        elif char in _CLOSER:
            stack.append(_CLOSER[char])
        elif char in "}]":
            if char != stack.pop():
                return None
            if not stack:
                return index + 1
    return None


# --- yaml ---------------------------------------------------------------------------

# SafeLoader without the timestamp resolver: dates stay strings, values stay JSON.
_YamlLoader: Any = type(
    "_YamlLoader",
    (yaml.SafeLoader,),
    {
        "yaml_implicit_resolvers": {
            first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
    },
)


def _validate_yaml(answer: str, spec: OutputSpec) -> Verdict:
    container = _expects_container(spec.schema_)
    candidates: list[tuple[Fallback | None, str]] = [(None, answer)]
    candidates += [("fence", f.body) for f in _fences(answer)]
    reasons: list[str] = []
    for fallback, candidate in candidates:
        source = textwrap.dedent(candidate).strip()
        ok, value = _yaml_load(source)
        if ok and (not container or isinstance(value, (dict, list))):
            return _against_schema(_Parsed(value, fallback), source, spec)
        reasons.append(value if not ok else f"expected a YAML mapping or list, got {_kind(value)}")
    return _invalid(reasons[1] if len(reasons) > 1 else reasons[0])  # a fence's says more


def _yaml_load(source: str) -> tuple[bool, Any]:
    """(True, a JSON-compatible value) or (False, a reason)."""
    try:
        value = yaml.load(source, Loader=_YamlLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        message = ": ".join(part for part in (exc.context, exc.problem) if part)
        return False, f"invalid YAML: {message}{where}"
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        return False, f"invalid YAML: {_short(str(exc)) or 'nested too deeply'}"
    problem = _not_json(value)
    return (False, problem) if problem else (True, value)


_Path = tuple[Any, str | int] | None  # (parent path, key or index); None is the root


def _not_json(value: Any) -> str | None:
    """Why a YAML value is not plain JSON (path and problem), or None. Iterative and
    bounded, as aliases can make a small text expand hugely or contain itself; paths
    are (parent, key) links, rendered only for the reason."""
    stack: list[tuple[Any, _Path]] = [(value, None)]
    for _ in range(_MAX_NODES):
        if not stack:
            return None
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str):
                    return f"{_render(path)}: key {key!r} is not a string (quote it)"
                stack.append((item, (path, key)))
        elif isinstance(node, list):
            stack.extend((item, (path, index)) for index, item in enumerate(node))
        elif isinstance(node, float) and not math.isfinite(node):
            return f"{_render(path)}: {node} is not allowed (JSON has no NaN or infinity)"
        elif node is not None and not isinstance(node, (str, int, float)):
            kind = type(node).__name__
            return f"{_render(path)}: YAML type {kind} is not allowed (use plain values)"
    return "the YAML is too large or contains itself (check anchors and aliases)"


def _render(path: _Path) -> str:
    parts: list[str] = []
    while path is not None:
        path, key = path
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "$" + "".join(reversed(parts))


# --- schema -------------------------------------------------------------------------


def _expects_container(schema: dict[str, Any] | None) -> bool:
    """An object or array is wanted unless a schema allows a bare scalar."""
    if schema is None:
        return True
    declared = schema.get("type")
    if isinstance(declared, (str, list)):
        types = {declared} if isinstance(declared, str) else set(declared)
        return bool(types) and types <= {"object", "array"}
    return any(key in schema for key in ("properties", "required", "items", "prefixItems"))


def _against_schema(parsed: _Parsed, text: str, spec: OutputSpec) -> Verdict:
    problem = None if spec.schema_ is None else _schema_errors(spec.schema_, parsed.value)
    if problem:
        return _invalid(problem, parsed.fallback)
    return Verdict(ok=True, value=parsed.value, text=text, fallback=parsed.fallback)


def _schema_errors(schema: dict[str, Any], value: Any) -> str | None:
    """At most three schema errors, shallowest first then in document order, each as
    ``$.path: problem`` (an anyOf/oneOf error shows its best-matching branch)."""
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    try:
        errors = sorted(_validator(_canonical(schema)).iter_errors(value), key=_error_order)
        shown = [best_match([error]) for error in errors[:_MAX_ERRORS]]
    except Unresolvable as exc:  # check_schema finds these unless a nested $id hides them
        raise InputError(f"output schema: cannot resolve $ref: {exc}") from exc
    except RecursionError:
        return "the answer is nested too deeply to check against the schema"
    if not errors:
        return None
    more = f" (and {len(errors) - len(shown)} more)" if len(errors) > len(shown) else ""
    return "; ".join(f"{e.json_path}: {_short(e.message)}" for e in shown if e) + more


def _error_order(error: ValidationError) -> tuple[int, tuple[tuple[int, int, str], ...]]:
    """Shallow errors first, then in document order (paths mix keys and indexes)."""
    path = tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in error.path)
    return len(path), path


def _canonical(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _validator_class(schema: dict[str, Any]) -> Any:
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    return validator_for(schema, default=Draft202012Validator)


@lru_cache(maxsize=64)
def _validator(canonical: str) -> Any:
    """A validator per schema, keyed by its canonical JSON, built from a private copy.
    Formats are asserted where jsonschema has a checker for them."""
    schema = json.loads(canonical)
    cls = _validator_class(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _check_refs(schema: dict[str, Any]) -> str | None:
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012, specification_with

    refs: list[str] = []
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node is not schema and isinstance(node.get("$id", node.get("id")), str):
                return None  # a nested base URI: refs below it resolve against that
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    specification = specification_with(schema.get("$schema", ""), default=DRAFT202012)
    resolver = Registry().resolver_with_root(specification.create_resource(schema))
    for ref in refs:
        try:
            resolver.lookup(ref)
        except Unresolvable:
            return f"schema $ref {ref!r} cannot be resolved (only refs within the schema work)"
    return None


# --- fences and small helpers -----------------------------------------------------


@dataclass(frozen=True)
class _Fence:
    tag: str  # first word of the info string, lower case ("" if none)
    body: str
    first: int  # line index of the opening fence
    last: int  # line index of the closing fence (the last line if unclosed)


_OPEN_FENCE = re.compile(r"^( *)(`{3,}|~{3,})[ \t]*(.*?)[ \t]*$")


def _fences(text: str, max_indent: int = 3) -> list[_Fence]:
    """Markdown code fences in order. A closing fence uses the same character, at least
    as many, indented no deeper than the opening; an unclosed fence runs to the end."""
    raw = text.split("\n")  # not splitlines(), which also splits on \u2028 and friends
    lines = [line.rstrip("\r") for line in raw]  # for matching; bodies keep their \r
    fences: list[_Fence] = []
    index = 0
    while index < len(lines):
        opened = _OPEN_FENCE.match(lines[index])
        if not opened or len(opened[1]) > max_indent or (opened[2][0] == "`" and "`" in opened[3]):
            index += 1
            continue
        indent, marker, info = len(opened[1]), opened[2], opened[3].split()
        close = re.compile(rf" {{0,{indent}}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*")
        end = next((j for j in range(index + 1, len(raw)) if close.fullmatch(lines[j])), len(raw))
        body = "\n".join(_unindent(line, indent) for line in raw[index + 1 : end])
        tag = info[0].lower() if info else ""
        fences.append(_Fence(tag, body, index, min(end, len(lines) - 1)))
        index = end + 1
    return fences


def _unindent(line: str, indent: int) -> str:
    return line[min(indent, len(line) - len(line.lstrip(" "))) :]


def _wrapping_fence(text: str) -> _Fence | None:
    """The one fence that spans all of ``text`` (already stripped), if there is one."""
    fences = _fences(text)
    if len(fences) == 1 and fences[0].first == 0 and fences[0].last == text.count("\n"):
        return fences[0]
    return None


def _invalid(reason: str, fallback: Fallback | None = None) -> Verdict:
    return Verdict(ok=False, reason=reason, fallback=fallback)


def _kind(value: object) -> str:
    """How a value reads in a reason: "a string ('...')", "a number (3)", "an object"."""
    if isinstance(value, str):
        return f"a string ({_excerpt(value)})"
    if isinstance(value, bool) or value is None:
        return "a boolean" if value is not None else "null"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "an array"
    return type(value).__name__


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= _EXCERPT else flat[: _EXCERPT - 3] + "...")


def _short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."
