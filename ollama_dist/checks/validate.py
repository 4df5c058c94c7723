"""Parse and check a model's answer: ``validate(answer, spec) -> Verdict``.

Pure: no I/O; its only state is two small memos in ``schema`` (schema checks, validators).
A bad answer is a value (``Verdict(ok=False, reason=...)``), never an exception;
``reason`` is short and specific so it can go back to the model (see ``feedback``).

Formats are read in stages and ``Verdict.fallback`` names the one that was needed:
``None`` (the raw answer), ``"fence"`` (a Markdown code fence), ``"balanced"`` (JSON
found inside chatter) or ``"repair"`` (near-JSON fixed by ``json_repair``); ``extract``
finds those pieces of text, ``schema`` checks a parsed value against a JSON Schema.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ollama_dist.checks import extract, schema as json_schema
from ollama_dist.checks.agreement import DISAGREE, OUTVOTED
from ollama_dist.checks.code import (
    validate_code as _validate_code,
    validate_diff as _validate_diff,
    validate_text as _validate_text,
)
from ollama_dist.checks.extract import excerpt, short
from ollama_dist.checks.grounding import UNGROUNDED
from ollama_dist.checks.repetition import LOOPED
from ollama_dist.checks.verdict import (
    Check as Check,
    Fallback as Fallback,
    Format as Format,
    Verdict as Verdict,
    invalid as _invalid,
)

_MAX_NODES = 100_000  # YAML nodes walked: aliases can expand hugely or refer to themselves


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
        return _with_checks(_invalid("the answer is empty"), spec)
    match spec.format:
        case "json":
            verdict = _validate_json(answer, spec)
        case "yaml":
            verdict = _validate_yaml(answer, spec)
        case "code":
            verdict = _validate_code(answer, spec.language)
        case "diff":
            verdict = _validate_diff(answer)
        case _:
            verdict = _validate_text(answer)
    if verdict.ok and spec.pattern is not None and not re.search(spec.pattern, verdict.text):
        verdict = _invalid(f"answer does not match pattern {spec.pattern!r}", verdict.fallback, failed="pattern")
    return _with_checks(verdict, spec)


def checks_of(spec: OutputSpec) -> tuple[Check, ...]:
    """The checks `validate` runs for `spec`, in order."""
    ran: list[Check] = ["format"]
    if spec.schema_ is not None and spec.format in ("json", "yaml"):
        ran.append("schema")
    if spec.pattern is not None:
        ran.append("pattern")
    return tuple(ran)


def _with_checks(verdict: Verdict, spec: OutputSpec) -> Verdict:
    """The verdict with the checks that ran: all of them when valid, up to the one failed when not."""
    ran = checks_of(spec)
    if not verdict.ok and verdict.failed in ran:
        ran = ran[: ran.index(verdict.failed) + 1]
    elif not verdict.ok:
        ran = ()
    return verdict.model_copy(update={"checks": ran})


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
    if verdict.failed == "grounded":
        instruction = ("Use only values that appear in the input, copied exactly as they are written there; "
                       "leave out what the input does not say. " + instruction)
    return f"Your previous answer was invalid: {reason}. {instruction}"


# Reasons quote the answer (an excerpt, a value, a key). Where answers must not be kept
# (the ledger with `store_text: false`), a reason is cut to its kind: a fixed sentence
# kept whole, else the label of a known prefix, else a generic one. Nothing from the
# answer can pass, whatever new reasons appear.
_FIXED_REASONS = (
    "the answer is empty", "the code is empty", "no complete JSON object or array found",
    "no unified diff found", "the diff has no hunks", "the answer was cut off at max_tokens",
    "the answer is nested too deeply to check against the schema", OUTVOTED,
)
_REASON_KINDS = (
    ("invalid JSON", "invalid JSON"), ("no JSON found", "no JSON found; the answer is prose"),
    ("expected a JSON object or array", "expected a JSON object or array"), ("invalid YAML", "invalid YAML"),
    ("expected a YAML mapping or list", "expected a YAML mapping or list"),
    ("Python syntax error", "Python syntax error"), ("Python code does not compile", "Python code does not compile"),
    ("not a valid unified diff", "not a valid unified diff"),
    ("answer does not match pattern", "the answer does not match the task's pattern"),
    (UNGROUNDED, f"{UNGROUNDED}: a value the answer gives does not occur in the job's input"),
    (DISAGREE, DISAGREE),
    (LOOPED, f"{LOOPED}: the model looped"),
    ("$", "the answer does not satisfy the schema"),
)


def reason_kind(reason: str | None) -> str:
    """`reason` with nothing quoted from the answer: what to keep where answers are not stored."""
    text = reason or ""
    for fixed in _FIXED_REASONS:
        if text.startswith(fixed):
            return fixed
    for prefix, label in _REASON_KINDS:
        if text.startswith(prefix):
            return label
    return "the answer is invalid"


def check_pattern(pattern: str) -> str | None:
    """An error message if ``pattern`` is not a valid Python regex, else None."""
    try:
        re.compile(pattern)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        return f"invalid regex {pattern!r}: {exc.msg}{where}"
    except (OverflowError, RecursionError, MemoryError) as exc:  # `a{99999999999}`, nesting thousands deep
        return f"regex {pattern[:60]!r} is too large for Python's `re` ({type(exc).__name__}: {exc})"
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
        canonical = json_schema.canonical(schema)
    except (TypeError, ValueError) as exc:
        return f"schema is not plain JSON ({exc}); quote dates and other YAML-only values"
    return json_schema.problem(canonical)


# --- json ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    value: Any
    fallback: Fallback | None


def _validate_json(answer: str, spec: OutputSpec) -> Verdict:
    parsed = _parse_json(answer, json_schema.expects_container(spec.schema_))
    if isinstance(parsed, str):
        return _invalid(parsed)
    return _against_schema(parsed, json.dumps(parsed.value, indent=2, ensure_ascii=False), spec)


def _parse_json(answer: str, container: bool) -> _Parsed | str:
    """The first acceptable value from raw, fences, balanced spans, repair; or a reason."""
    stages: list[tuple[Fallback | None, list[str]]] = [
        (None, [answer.strip()]),
        ("fence", [f.body.strip() for f in extract.fences(answer)]),
        ("balanced", list(extract.balanced_spans(answer))),
    ]
    first_error: str | None = None
    for fallback, candidates in stages:
        for candidate in candidates:
            ok, value = _loads(candidate)
            if ok and (not container or isinstance(value, (dict, list))):
                return _Parsed(value, fallback)
            if not ok and first_error is None and extract.OPENER.match(candidate):
                first_error = value
    sources = [*stages[1][1], *stages[2][1]]  # never a cut-off tail: closing it would invent its end
    for source in dict.fromkeys(s for s in sources if extract.OPENER.match(s)):
        repaired = extract.repair(source)
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
        return False, f"invalid JSON: {short(str(exc))}"
    except RecursionError:
        return False, "invalid JSON: nested too deeply"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_reason(answer: str, first_error: str | None) -> str:
    ok, value = _loads(answer.strip())
    if ok:  # a scalar where an object or array is wanted
        return f"expected a JSON object or array, got {_kind(value)}"
    if extract.open_at_end(answer):
        return "the JSON is cut off: it ends inside a string or an open bracket (nothing closes it)"
    if first_error is not None:
        return first_error
    if extract.OPENER.search(answer) is None:
        return f"no JSON found; the answer is prose: {excerpt(answer)}"
    return "no complete JSON object or array found"


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
    container = json_schema.expects_container(spec.schema_)
    candidates: list[tuple[Fallback | None, str]] = [(None, answer)]
    candidates += [("fence", f.body) for f in extract.fences(answer)]
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
        return False, f"invalid YAML: {short(str(exc)) or 'nested too deeply'}"
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


def _against_schema(parsed: _Parsed, text: str, spec: OutputSpec) -> Verdict:
    problem = None if spec.schema_ is None else json_schema.errors(spec.schema_, parsed.value)
    if problem:
        return _invalid(problem, parsed.fallback, failed="schema")
    return Verdict(ok=True, value=parsed.value, text=text, fallback=parsed.fallback)


# --- small helpers ------------------------------------------------------------------


def _kind(value: object) -> str:
    """How a value reads in a reason: "a string ('...')", "a number (3)", "an object"."""
    if isinstance(value, str):
        return f"a string ({excerpt(value)})"
    if isinstance(value, bool) or value is None:
        return "a boolean" if value is not None else "null"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "an array"
    return type(value).__name__
