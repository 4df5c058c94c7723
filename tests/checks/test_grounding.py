"""Grounding: values an extracting answer gives must occur in the input (checks.grounding)."""

from __future__ import annotations

from typing import Any

import pytest

from ollama_dist.checks import grounding
from ollama_dist.checks.grounding import Plan, extraction_like, numbers_in, occurs, ungrounded
from ollama_dist.checks.validate import OutputSpec, feedback, reason_kind, validate

SIGNATURE = """\
Amara Okafor
Head of Operations, Gridline Energy
amara.okafor@gridline.example | +234 801 555 0199
Lagos, Nigeria
"""
CSV = "sku,name,qty,price\nA-100,USB-C cable,12,4.99\nA-101,HDMI adapter,3,12.50\nB-200,Laptop stand,1,39.00\n"


def missing(value: Any, source: str, fields: list[str] | None = None, fixed: frozenset[str] = frozenset()) -> list[str]:
    plan = Plan(source, frozenset(fields) if fields else None, fixed)
    return [path for path, _ in ungrounded(value, plan)]


@pytest.mark.parametrize(("value", "expected"), [
    ({"name": "Amara Okafor", "email": "amara.okafor@gridline.example", "city": "Lagos"}, []),
    ({"name": "AMARA  okafor", "email": "Amara.Okafor@Gridline.example", "city": "lagos"}, []),  # case, spaces
    ({"name": "Pytorch", "email": "email@email.com", "city": "Lagos"}, ["$.name", "$.email"]),
    ({"name": "Amara", "city": "Nigeria"}, []),  # a part of the input, word for word
    ({"name": "Okaf", "city": "Lag"}, ["$.name", "$.city"]),  # not a word of it
    ({"name": "", "email": " ", "city": None, "ok": True}, []),  # nothing extracted: nothing to check
    ({"name": "|", "email": "}, {"}, ["$.email"]),  # punctuation is a value too
    ({"phone": "+234 801 555 0199"}, []),
], ids=["right", "normalised", "invented", "partial-words", "word-fragments", "empty-values", "punctuation", "phone"])
def test_strings_must_occur_in_the_input_as_words(value: Any, expected: list[str]) -> None:
    assert missing(value, SIGNATURE) == expected


def test_quotes_dashes_and_fences_of_a_value_do_not_count() -> None:
    source = "She said \u201cship it\u201d \u2014 O\u2019Brien, on 3\u20134 May."
    assert missing(["'ship it'", '"ship it"', "`O'Brien`", "O\u2019BRIEN", "3-4 May"], source) == []


def test_spaces_beside_punctuation_do_not_count() -> None:
    source = 'dependencies = [\n  "mcp>=2.3,<3",\n  "typer >= 0.12",\n]\nLagos,Nigeria'
    assert missing([">=2.3, <3", "mcp >= 2.3", ">=0.12", "Lagos , Nigeria"], source) == []
    assert missing(["mcp 2.3"], source) == ["$[0]"]


def test_a_word_inside_an_identifier_is_not_that_word() -> None:
    source = "def write_atomic(path): ...\nHTTP1 is old.\n"
    assert missing({"functions": ["write_atomic", "write", "atomic"], "label": "P1"}, source) == [
        "$.functions[1]", "$.functions[2]", "$.label"]


@pytest.mark.parametrize(("number", "grounded"), [
    (12.5, True), (39, True), (39.0, True), (4.99, True), (1, True), (100, True), (12, True),
    (1200000000000000, False), (4.9, False), (-100, False), (101.0, True), (200, True), (50, False),
])
def test_numbers_are_compared_as_numbers_whatever_their_notation(number: float, grounded: bool) -> None:
    assert (missing({"x": number}, CSV) == []) is grounded


def test_number_notations() -> None:
    assert {1200.0, 12.5, 1250.0, 7.0, -3.0, 3.0} <= set(numbers_in("1,200 and 1_200; 12,50; v 7; -3"))
    assert 3.0 not in numbers_in("gemma3 and A3")  # digits inside an identifier are no number


def test_only_the_named_fields_are_checked_at_any_depth() -> None:
    value = {"rows": [{"sku": "A-100", "note": "invented"}, {"sku": "Z-999"}], "summary": "made up"}
    assert missing(value, CSV, fields=["sku"]) == ["$.rows[1].sku"]


def test_schema_labels_are_chosen_not_copied() -> None:
    spec_schema = {"type": "object", "properties": {"label": {"enum": ["bug", "feature"]}}}
    assert missing({"label": "bug"}, "the route command prints nothing", fixed=grounding.fixed_strings(spec_schema)) == []
    assert missing({"label": "docs"}, "the route command prints nothing", fixed=grounding.fixed_strings(spec_schema)) == [
        "$.label"]


@pytest.mark.parametrize(("instruction", "expected"), [
    ("Extract the person's name, e-mail and city from this e-mail signature.", True),
    ("List the runtime dependencies declared in this pyproject.toml as JSON.", True),
    ("Convert this CSV into a JSON object with one object per row.", True),
    ("Deduplicate these tags case-insensitively, lowercase them and sort them.", True),
    ("Pull out every URL in this page.", True),
    ("Rename each column header below to snake_case.", False),
    ("Extract the names and translate them to French.", False),
    ("Label this GitHub issue with one of: bug, feature.", False),
    ("Summarise this thread as JSON with a title and three points.", False),
    ("Convert these temperatures to Fahrenheit.", False),
    ("Count the words of each paragraph.", False),
    ("Write a haiku about the sea.", False),
], ids=lambda v: v if isinstance(v, bool) else v.split()[0].lower())
def test_what_counts_as_extraction_like(instruction: str, expected: bool) -> None:
    assert extraction_like(instruction) is expected


def test_the_plan_follows_the_task() -> None:
    extract = "Extract the city."
    assert grounding.plan(None, "json", extract, "Lisbon", "p") is not None  # the default, extraction-like
    assert grounding.plan(None, "text", extract, "Lisbon", "p") is None  # text is not extracted values
    assert grounding.plan(None, "json", extract, "  ", "p") is None  # no input: nothing to ground in
    assert grounding.plan(None, "json", "Rename the city.", "Lisbon", "p") is None
    assert grounding.plan(False, "json", extract, "Lisbon", "p") is None
    forced = grounding.plan(True, "text", "Rename the city.", "", "facts: Lisbon")
    assert forced is not None and forced.source == "facts: Lisbon" and forced.fields is None
    fields = grounding.plan(["name"], "json", "x", "Lisbon", "p")
    assert fields is not None and fields.fields == frozenset({"name"})


def test_an_ungrounded_answer_is_invalid_and_the_retry_is_told_which_value() -> None:
    spec = OutputSpec(format="json", schema={"type": "object", "properties": {"city": {"type": "string"}}})
    plan = grounding.plan(None, "json", "Extract the city.", SIGNATURE, "p", spec.schema_)
    assert plan is not None
    good = grounding.check(validate('{"city": "Lagos"}', spec), plan)
    assert good.ok and good.checks == ("format", "schema", "grounded")
    bad = grounding.check(validate('{"city": "Paris"}', spec), plan)
    assert not bad.ok and bad.failed == "grounded" and bad.checks == ("format", "schema", "grounded")
    assert bad.reason == "not in the input: $.city 'Paris'"
    told = feedback(bad, spec)
    assert "'Paris'" in told and "appear in the input" in told
    assert "Paris" not in reason_kind(bad.reason)  # the ledger keeps the kind, not the value
    assert reason_kind(bad.reason).startswith("not in the input")


def test_a_reason_names_a_few_values_and_counts_the_rest() -> None:
    plan = Plan("nothing here")
    verdict = grounding.check(validate('{"a": ["w1", "w2", "w3", "w4", "w5"]}', OutputSpec(format="json")), plan)
    assert verdict.reason == "not in the input: $.a[0] 'w1', $.a[1] 'w2', $.a[2] 'w3' and 2 more"


def test_occurs_needs_word_edges_only_where_the_value_has_them() -> None:
    assert occurs(">=0.12", 'typer>=0.12",') and occurs("typer", '"typer>=0.12"')
    assert not occurs("type", '"typer>=0.12"')
