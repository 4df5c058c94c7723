"""validate.py: answers in, Verdicts out. Pure, so tested directly with tables."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from ollama_dist.checks.validate import (
    OutputSpec,
    Verdict,
    check_pattern,
    check_schema,
    feedback,
    validate,
)

JSON = OutputSpec(format="json")
IMPORTS = OutputSpec(
    format="json",
    schema={
        "type": "object",
        "required": ["imports"],
        "properties": {"imports": {"type": "array", "items": {"type": "string"}}},
    },
)
GOOD_DIFF = "--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n \n"


def case(name: str, *values: Any) -> Any:
    """One table row; ``name`` becomes the test id."""
    return pytest.param(*values, id=name)


# --- json: the fallback ladder -------------------------------------------------------

JSON_OK = [
    case("raw object", '{"a": 1}', {"a": 1}, None),
    case("raw with whitespace", '\n  {"a": [1, 2]}\n', {"a": [1, 2]}, None),
    case("raw top-level array", "[1, 2, 3]", [1, 2, 3], None),
    case("raw array of objects", '[{"a": 1}, {"b": 2}]', [{"a": 1}, {"b": 2}], None),
    case("utf-8 BOM", '\ufeff{"a": 1}', {"a": 1}, None),
    case("json fence", '```json\n{"a": 1}\n```', {"a": 1}, "fence"),
    case("bare fence", '```\n{"a": 1}\n```', {"a": 1}, "fence"),
    case("fence after prose", 'Here you go:\n\n```json\n{"a": 1}\n```\nEnjoy!', {"a": 1}, "fence"),
    case("tilde fence", '~~~json\n{"a": 1}\n~~~', {"a": 1}, "fence"),
    case("unclosed fence", '```json\n{"a": 1}', {"a": 1}, "fence"),
    case(
        "first fence that parses",
        "```\nnot json\n```\n```json\n[1]\n```",
        [1],
        "fence",
    ),
    case("array fence", "```json\n[1, 2]\n```", [1, 2], "fence"),
    case("chatter before", 'Sure! The result is {"a": 1}', {"a": 1}, "balanced"),
    case("chatter after", '{"a": 1}\nLet me know if you need more.', {"a": 1}, "balanced"),
    case("chatter both sides", 'Result: [1, {"b": 2}] -- done.', [1, {"b": 2}], "balanced"),
    case("braces inside strings", 'Answer: {"a": "}{", "b": "[x"} ok', {"a": "}{", "b": "[x"}, "balanced"),
    case("escaped quote in string", 'Out: {"a": "say \\"}\\" now"} end', {"a": 'say "}" now'}, "balanced"),
    case("skips brace prose first", 'Use {name} here: {"a": 1}', {"a": 1}, "balanced"),
    case("two objects: the first", '{"a": 1}\n{"b": 2}', {"a": 1}, "balanced"),
    case("trailing comma", '{"a": 1, "b": [1, 2,],}', {"a": 1, "b": [1, 2]}, "repair"),
    case("single quotes", "{'a': 'x', 'b': True}", {"a": "x", "b": True}, "repair"),
    case("unquoted keys", "{a: 1, b: 2}", {"a": 1, "b": 2}, "repair"),
    case("comment", '{"a": 1 // one\n}', {"a": 1}, "repair"),
    case("near-json in fence", "```json\n{'a': 1,}\n```", {"a": 1}, "repair"),
    case("near-json in chatter", "Here: {'a': 1,} as asked", {"a": 1}, "repair"),
    case("array trailing comma", "[1, 2, 3,]", [1, 2, 3], "repair"),
]


@pytest.mark.parametrize(("answer", "value", "fallback"), JSON_OK)
def test_json_ok(answer: str, value: Any, fallback: str | None) -> None:
    verdict = validate(answer, JSON)
    assert verdict.ok, verdict.reason
    assert (verdict.value, verdict.fallback, verdict.reason) == (value, fallback, None)
    assert json.loads(verdict.text) == value


def test_json_text_is_pretty_json() -> None:
    verdict = validate("{'a': [1], 'é': 'ü'}", JSON)
    assert verdict.text == '{\n  "a": [\n    1\n  ],\n  "é": "ü"\n}'


JSON_BAD = [
    case("empty", "", "the answer is empty"),
    case("blank", "  \n\t ", "the answer is empty"),
    case("pure prose", "I cannot help with that.", "no JSON found; the answer is prose"),
    case("prose with a link", "See [the docs](http://x.example) for more.", "invalid JSON"),
    case("bare words in brackets", "The answer is [not available].", "invalid JSON"),
    case("prose in braces", "{ this is prose }", "invalid JSON: Expecting property name"),
    case("lone opening brace", "nothing to add {", "the JSON is cut off"),
    # json-repair would close these into invented values: a cut-off answer is never repaired
    case("cut off in a list", 'Result: {"a": [1, 2', "the JSON is cut off"),
    case("cut off in a string", '{"name": "Ann", "gender": "fem', "the JSON is cut off"),
    case("cut off after a key", '{"name": "Ann", "gender": ', "the JSON is cut off"),
    case("cut off in a fence", '```json\n{"name": "Ann", "tags": ["a"', "the JSON is cut off"),
    case("empty repair", "{,}", "invalid JSON"),
    case("json string", '"just a string"', "expected a JSON object or array, got a string"),
    case("json number", "42", "expected a JSON object or array, got a number (42)"),
    case("json null", "null", "expected a JSON object or array, got null"),
    case("deep nesting", "[" * 5000 + "]" * 5000, "invalid JSON: nested too deeply"),
    case("deep and cut off", "[" * 5000, "the JSON is cut off"),
]


@pytest.mark.parametrize(("answer", "reason"), JSON_BAD)
def test_json_invalid(answer: str, reason: str) -> None:
    verdict = validate(answer, JSON)
    assert not verdict.ok
    assert (verdict.value, verdict.text) == (None, "")
    assert verdict.reason is not None and reason in verdict.reason


def test_json_nan_is_not_raw_json() -> None:
    # Python's json accepts NaN; the raw stage does not, and json_repair reads it as
    # the string "NaN" (a visible change, caught by any schema that wants a number).
    verdict = validate('{"x": NaN}', JSON)
    assert (verdict.ok, verdict.fallback, verdict.value) == (True, "repair", {"x": "NaN"})
    number = OutputSpec(format="json", schema={"properties": {"x": {"type": "number"}}})
    assert validate('{"x": NaN}', number).reason == "$.x: 'NaN' is not of type 'number'"


# --- json: schema ------------------------------------------------------------------

SCHEMA_BAD = [
    case("wrong item type", '{"imports": ["a", "b", 3]}', "$.imports[2]: 3 is not of type 'string'"),
    case("missing required", "{}", "$: 'imports' is a required property"),
    case("wrong container", '{"imports": "requests"}', "$.imports: 'requests' is not of type 'array'"),
    case("array instead of object", '["requests"]', "$: ['requests'] is not of type 'object'"),
    case(
        "at most three errors",
        '{"imports": [1, 2, 3, 4, 5]}',
        "$.imports[0]: 1 is not of type 'string'; $.imports[1]: 2 is not of type 'string'; "
        "$.imports[2]: 3 is not of type 'string' (and 2 more)",
    ),
    case("scalar where object", "42", "expected a JSON object or array, got a number (42)"),
]


@pytest.mark.parametrize(("answer", "reason"), SCHEMA_BAD)
def test_schema_violations_name_the_path(answer: str, reason: str) -> None:
    verdict = validate(answer, IMPORTS)
    assert not verdict.ok
    assert verdict.reason == reason


def test_schema_failure_keeps_the_fallback() -> None:
    verdict = validate('```json\n{"imports": [3]}\n```', IMPORTS)
    assert (verdict.ok, verdict.fallback, verdict.value) == (False, "fence", None)


def test_schema_ok_after_repair() -> None:
    verdict = validate("Sure: {imports: ['requests', 'httpx',]}", IMPORTS)
    assert (verdict.ok, verdict.fallback) == (True, "repair")
    assert verdict.value == {"imports": ["requests", "httpx"]}


SCALAR_SCHEMAS = [
    case("string schema", {"type": "string"}, '"hello"', "hello"),
    case("number schema", {"type": "number", "minimum": 0}, "3.5", 3.5),
    case("enum schema", {"enum": ["yes", "no"]}, '"yes"', "yes"),
]


@pytest.mark.parametrize(("schema", "answer", "value"), SCALAR_SCHEMAS)
def test_schema_that_allows_scalars(schema: dict[str, Any], answer: str, value: Any) -> None:
    verdict = validate(answer, OutputSpec(format="json", schema=schema))
    assert (verdict.ok, verdict.value) == (True, value)


def test_schema_draft_is_the_declared_one() -> None:
    # Draft 4 reads exclusiveMaximum as a boolean; 2020-12 would reject this schema.
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "properties": {"n": {"type": "number", "maximum": 5, "exclusiveMaximum": True}},
    }
    spec = OutputSpec(format="json", schema=draft4)
    assert validate('{"n": 4}', spec).ok
    assert validate('{"n": 5}', spec).reason == "$.n: 5 is greater than or equal to the maximum of 5"


def test_schema_formats_are_checked() -> None:
    spec = OutputSpec(format="json", schema={"properties": {"re": {"format": "regex"}}})
    assert validate('{"re": "^a+$"}', spec).ok
    assert validate('{"re": "("}', spec).reason == "$.re: '(' is not a 'regex'"


def test_equal_schemas_share_one_validator() -> None:
    from ollama_dist.checks.schema import canonical as _canonical, validator as _validator

    a = {"type": "object", "required": ["x"]}
    b = {"required": ["x"], "type": "object"}
    assert _validator(_canonical(a)) is _validator(_canonical(b))


# --- yaml --------------------------------------------------------------------------

YAML = OutputSpec(format="yaml")
PERSON = OutputSpec(
    format="yaml",
    schema={
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "born": {"type": "string"}},
    },
)

YAML_OK = [
    case("raw mapping", "name: x\nitems: [1, 2]", YAML, {"name": "x", "items": [1, 2]}, None),
    case("raw list", "- a\n- b", YAML, ["a", "b"], None),
    case("indented", "  name: x\n  born: y", PERSON, {"name": "x", "born": "y"}, None),
    case("yaml fence", "```yaml\nname: x\n```", PERSON, {"name": "x"}, "fence"),
    case("yml fence in prose", "Here:\n\n```yml\nname: x\n```\nDone.", PERSON, {"name": "x"}, "fence"),
    case("bare fence", "```\n- 1\n- 2\n```", YAML, [1, 2], "fence"),
    case("json is yaml", '{"name": "x"}', PERSON, {"name": "x"}, None),
    case("dates stay strings", "name: x\nborn: 2024-01-31", PERSON, {"name": "x", "born": "2024-01-31"}, None),
    case("aliases", "a: &v [1]\nb: *v", YAML, {"a": [1], "b": [1]}, None),
]


@pytest.mark.parametrize(("answer", "spec", "value", "fallback"), YAML_OK)
def test_yaml_ok(answer: str, spec: OutputSpec, value: Any, fallback: str | None) -> None:
    verdict = validate(answer, spec)
    assert verdict.ok, verdict.reason
    assert (verdict.value, verdict.fallback) == (value, fallback)


def test_yaml_text_is_the_source_without_fence() -> None:
    verdict = validate("```yaml\n# people\nname: x\n```", YAML)
    assert verdict.text == "# people\nname: x"


YAML_BAD = [
    case("prose", "I cannot do that", YAML, "expected a YAML mapping or list, got a string ('I cannot do that')"),
    case("scalar, object schema", "42", PERSON, "expected a YAML mapping or list, got a number (42)"),
    case("list, object schema", "- a", PERSON, "$: ['a'] is not of type 'object'"),
    case("schema violation", "name: 3", PERSON, "$.name: 3 is not of type 'string'"),
    case("syntax", "key: value: x", YAML, "invalid YAML: mapping values are not allowed here (line 1, column 11)"),
    case("syntax in fence", "```yaml\nkey: value: x\n```", YAML, "mapping values are not allowed here (line 1"),
    case("two documents", "a: 1\n---\nb: 2", YAML, "expected a single document in the stream"),
    case("self reference", "a: &a [*a]", YAML, "too large or contains itself"),
    case("billion laughs", "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, c in zip("abcdefg", "bcdefgh")), YAML, "too large or contains itself"),
    case("nan", "a: .nan", YAML, "$.a: nan is not allowed"),
    case("int key", "1: a", YAML, "$: key 1 is not a string (quote it)"),
    case("binary", "a: !!binary aGVsbG8=", YAML, "$.a: YAML type bytes is not allowed"),
    case("python tag", "a: !!python/object:os.system {}", YAML, "invalid YAML: could not determine a constructor"),
]


@pytest.mark.parametrize(("answer", "spec", "reason"), YAML_BAD)
def test_yaml_invalid(answer: str, spec: OutputSpec, reason: str) -> None:
    verdict = validate(answer, spec)
    assert not verdict.ok
    assert verdict.reason is not None and reason in verdict.reason


# --- text --------------------------------------------------------------------------

TEXT_OK = [
    case("stripped", "  hello\n\n", "hello", None),
    case("wrapping fence", "```\nhello\nworld\n```", "hello\nworld", "fence"),
    case("wrapping tagged fence", "```markdown\n## Added\n- x\n```", "## Added\n- x", "fence"),
    case("fence inside prose kept", "Intro\n```\nx\n```", "Intro\n```\nx\n```", None),
    case("two fences kept", "```\na\n```\n\n```\nb\n```", "```\na\n```\n\n```\nb\n```", None),
]


@pytest.mark.parametrize(("answer", "text", "fallback"), TEXT_OK)
def test_text(answer: str, text: str, fallback: str | None) -> None:
    verdict = validate(answer, OutputSpec())
    assert (verdict.ok, verdict.value, verdict.text, verdict.fallback) == (True, text, text, fallback)


@pytest.mark.parametrize("answer", ["", "   \n ", "```\n\n```"], ids=["empty", "blank", "empty fence"])
def test_text_empty_is_invalid(answer: str) -> None:
    assert validate(answer, OutputSpec()).reason == "the answer is empty"


# --- code --------------------------------------------------------------------------

PY = OutputSpec(format="code", language="python")
CODE = OutputSpec(format="code")

CODE_OK = [
    case("raw python", "def f():\n    return 1\n", PY, "def f():\n    return 1", None),
    case("python fence", "```python\nx = 1\n```", PY, "x = 1", "fence"),
    case("fence among prose", "Here:\n```py\nx = 1\n```\nThat sets x.", PY, "x = 1", "fence"),
    case("language fence preferred", "```bash\nls -l\n```\n```python\nx = 1\n```", PY, "x = 1", "fence"),
    case("indented block dedented", "    x = 1\n    if x:\n        y = 2", PY, "x = 1\nif x:\n    y = 2", None),
    case("warnings are not errors", "x = '\\d'", PY, "x = '\\d'", None),
    case("other language not compiled", "```js\nconst x = ;\n```", CODE, "const x = ;", "fence"),
    case("any tag stripped", "```rust\nfn main() {}\n```", CODE, "fn main() {}", "fence"),
]


@pytest.mark.parametrize(("answer", "spec", "code", "fallback"), CODE_OK)
def test_code_ok(answer: str, spec: OutputSpec, code: str, fallback: str | None) -> None:
    verdict = validate(answer, spec)
    assert verdict.ok, verdict.reason
    assert (verdict.value, verdict.text, verdict.fallback) == (code, code, fallback)


CODE_BAD = [
    case("syntax error", "def f(:\n    pass", PY, "Python syntax error at line 1: invalid syntax in 'def f(:'"),
    case(
        "error line counted in the fence",
        "Here:\n```python\nx = 1\ny = (\n```",
        PY,
        "Python syntax error at line 2: '(' was never closed in 'y = ('",
    ),
    case(
        "indentation",
        "def f():\nreturn 1",
        PY,
        "Python syntax error at line 2: expected an indented block after function definition on line 1 "
        "in 'return 1'",
    ),
    case("python fence without language", "```python\ndef f(:\n```", CODE, "Python syntax error at line 1"),
    case("prose is not python", "Sure, here is the function you asked for.", PY, "Python syntax error at line 1"),
    case("null byte", "a\x00b", PY, "source code string cannot contain null bytes"),
    case("empty fence", "```python\n```", PY, "the code is empty"),
]


@pytest.mark.parametrize(("answer", "spec", "reason"), CODE_BAD)
def test_code_invalid(answer: str, spec: OutputSpec, reason: str) -> None:
    verdict = validate(answer, spec)
    assert not verdict.ok
    assert reason in str(verdict.reason)


def test_code_compiles_without_this_module_future_flags() -> None:
    # validate.py has `from __future__ import annotations`; the answer must not inherit it.
    src = "from __future__ import annotations\nx = 1"
    assert validate(src, PY).ok
    late = "x = 1\nfrom __future__ import annotations"
    assert "from __future__ imports must occur at the beginning" in str(validate(late, PY).reason)


# --- diff --------------------------------------------------------------------------

DIFF = OutputSpec(format="diff")
MARKDOWN_DIFF = "--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n ```python\n-x\n+y\n ```\n"

DIFF_OK = [
    case("raw", GOOD_DIFF, GOOD_DIFF, None),
    case("fenced", "```diff\n" + GOOD_DIFF + "```", GOOD_DIFF, "fence"),
    case("fenced in prose", "Patch:\n\n```patch\n" + GOOD_DIFF + "```\nIt renames b.", GOOD_DIFF, "fence"),
    case("no final newline", GOOD_DIFF.rstrip("\n"), GOOD_DIFF, None),
    case("git header", "diff --git a/x.py b/x.py\nindex 1..2 100644\n" + GOOD_DIFF, None, None),
    case("fence-like context lines", "```diff\n" + MARKDOWN_DIFF + "```", MARKDOWN_DIFF, "fence"),
    case("raw fence-like context lines", MARKDOWN_DIFF, MARKDOWN_DIFF, None),
]


@pytest.mark.parametrize(("answer", "text", "fallback"), DIFF_OK)
def test_diff_ok(answer: str, text: str | None, fallback: str | None) -> None:
    verdict = validate(answer, DIFF)
    assert verdict.ok, verdict.reason
    assert verdict.fallback == fallback
    assert verdict.text == (text or answer) and verdict.value == verdict.text


DIFF_BAD = [
    case("prose", "I changed b to c.", "no unified diff found"),
    case("headers only", "```diff\n--- a/x\n+++ b/x\n```", "the diff has no hunks"),
    case("hunk count wrong", "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n", "Hunk is shorter than expected"),
    case("junk in hunk", "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\nXX\n b\n", "Hunk diff line expected: XX"),
]


@pytest.mark.parametrize(("answer", "reason"), DIFF_BAD)
def test_diff_invalid(answer: str, reason: str) -> None:
    verdict = validate(answer, DIFF)
    assert not verdict.ok
    assert reason in str(verdict.reason)


# --- pattern -----------------------------------------------------------------------

PATTERNS = [
    case("text matches", OutputSpec(pattern=r"^## (Added|Fixed)"), "## Added\n- x", True),
    case("text misses", OutputSpec(pattern=r"^## (Added|Fixed)"), "Sure! ## Added", False),
    case("after fence stripping", OutputSpec(pattern=r"^## Added"), "```md\n## Added\n```", True),
    case("code after fence", OutputSpec(format="code", pattern=r"^def "), "```python\ndef f(): ...\n```", True),
    case("json on pretty text", OutputSpec(format="json", pattern=r'"v": "\d+"'), '{"v":"12"}', True),
    case("json misses", OutputSpec(format="json", pattern=r'"v": "\d+"'), '{"v": "x"}', False),
]


@pytest.mark.parametrize(("spec", "answer", "ok"), PATTERNS)
def test_pattern(spec: OutputSpec, answer: str, ok: bool) -> None:
    verdict = validate(answer, spec)
    assert verdict.ok is ok
    if not ok:
        assert verdict.reason == f"answer does not match pattern {spec.pattern!r}"


# --- feedback ----------------------------------------------------------------------

FEEDBACK = [
    case(
        "json",
        JSON,
        "hello",
        "Your previous answer was invalid: no JSON found; the answer is prose: 'hello'. "
        "Reply with only the JSON, no prose, no fences.",
    ),
    case(
        "json with schema",
        IMPORTS,
        "{}",
        "Your previous answer was invalid: $: 'imports' is a required property. "
        "Reply with only the JSON, no prose, no fences. It must satisfy the JSON Schema you were given.",
    ),
    case(
        "python",
        PY,
        "def f(:",
        "Your previous answer was invalid: Python syntax error at line 1: invalid syntax in 'def f(:'. "
        "Reply with only the python code, no prose.",
    ),
    case(
        "text pattern",
        OutputSpec(pattern="^OK"),
        "no",
        "Your previous answer was invalid: answer does not match pattern '^OK'. Reply with only the answer.",
    ),
]


@pytest.mark.parametrize(("spec", "answer", "expected"), FEEDBACK)
def test_feedback(spec: OutputSpec, answer: str, expected: str) -> None:
    assert feedback(validate(answer, spec), spec) == expected


def test_feedback_without_spec_and_for_valid() -> None:
    assert feedback(Verdict(ok=False, reason="bad.")) == "Your previous answer was invalid: bad. Reply with only the answer."
    assert feedback(validate("x", OutputSpec())) == ""


# --- check_schema / check_pattern / OutputSpec -------------------------------------

SCHEMAS = [
    case("valid", {"type": "object"}, None),
    case("valid draft-07", {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}, None),
    case("local ref", {"$ref": "#/$defs/a", "$defs": {"a": {"type": "string"}}}, None),
    case("bad type", {"type": "objekt"}, "invalid JSON Schema at $.type: 'objekt' is not valid"),
    case("bad nested", {"properties": {"a": {"minLength": -1}}}, "invalid JSON Schema at $.properties.a.minLength"),
    case("not a mapping", ["object"], "schema must be a mapping (a JSON Schema object), not an array"),
    case("yaml date", {"const": datetime.date(2024, 1, 1)}, "schema is not plain JSON"),
    case("unknown dialect", {"$schema": "http://example.com/s"}, "unknown $schema 'http://example.com/s'"),
    case("dangling ref", {"$ref": "#/$defs/missing"}, "schema $ref '#/$defs/missing' cannot be resolved"),
    case("remote ref", {"items": {"$ref": "https://x.example/s.json"}}, "cannot be resolved"),
]


@pytest.mark.parametrize(("schema", "message"), SCHEMAS)
def test_check_schema(schema: object, message: str | None) -> None:
    result = check_schema(schema)
    assert result == message if message is None else message in str(result)


PATTERN_CHECKS = [
    case("valid", r"^## (Added|Fixed)", None),
    case("unbalanced", "(", "invalid regex '(': missing ), unterminated subpattern at position 0"),
    case("bad range", "a{2,1}", "invalid regex 'a{2,1}': min repeat greater than max repeat at position 2"),
]


@pytest.mark.parametrize(("pattern", "message"), PATTERN_CHECKS)
def test_check_pattern(pattern: str, message: str | None) -> None:
    assert check_pattern(pattern) == message


SPECS = [
    case("bad schema", {"format": "json", "schema": {"type": 3}}, "invalid JSON Schema at $.type"),
    case("bad pattern", {"pattern": "("}, "invalid regex"),
    case("unknown field", {"fromat": "json"}, "Extra inputs are not permitted"),
    case("unknown format", {"format": "xml"}, "format"),
]


@pytest.mark.parametrize(("data", "message"), SPECS)
def test_output_spec_rejects(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("$", r"\$").replace(".", r"\.")):
        OutputSpec.model_validate(data)


def test_output_spec_schema_alias_and_frozen() -> None:
    by_alias = OutputSpec(format="json", schema={"type": "object"})
    by_name = OutputSpec.model_validate({"format": "json", "schema_": {"type": "object"}})
    assert by_alias == by_name and by_alias.schema_ == {"type": "object"}
    assert by_alias.model_dump(by_alias=True)["schema"] == {"type": "object"}
    with pytest.raises(ValidationError):
        by_alias.format = "text"


# --- property: serialized dicts round-trip through fence and chatter ---------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)
WRAPPERS = [
    "{}",
    "```json\n{}\n```",
    "```\n{}\n```",
    "Sure! Here is the JSON you asked for:\n\n{}",
    "{}\n\nLet me know if you want changes.",
    "Here's the result (note: keys are {{sorted}}):\n{}\nThat's all [done].",
    "Here:\n```json\n{}\n```\nHope it helps {{!}}",
]


@settings(max_examples=300, deadline=None)
@given(
    value=st.dictionaries(st.text(), json_values, max_size=6),
    wrapper=st.sampled_from(WRAPPERS),
    indent=st.sampled_from([None, 2]),
    ascii_only=st.booleans(),
)
def test_dicts_round_trip_through_fences_and_chatter(
    value: dict[str, Any], wrapper: str, indent: int | None, ascii_only: bool
) -> None:
    answer = wrapper.format(json.dumps(value, indent=indent, ensure_ascii=ascii_only))
    verdict = validate(answer, JSON)
    assert verdict.ok, (answer, verdict.reason)
    assert verdict.value == value
    assert json.loads(verdict.text) == value
