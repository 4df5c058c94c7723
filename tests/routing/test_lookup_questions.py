"""Lookup questions (routing/rules.py `_Lookup`, `lookup_questions` in data/router.yaml): a question
that asks for a fact the given text states, or a short fragment ("gcc flag for C++20?"), weighs
nothing toward cloud as a question, and the second opinion's bar for it is
`router.semantic_lookup_threshold`; a question to reason about keeps the question bar."""

from __future__ import annotations

import pytest

from ollama_dist.config import RouterSettings
from ollama_dist.routing.rules import Rules, default_vocabulary
from ollama_dist.tasks.model import Task
from tests.routing.test_decision import FAR, NEAR, decide


def read(prompt: str) -> bool:
    rules = Rules(RouterSettings(), default_vocabulary())
    return rules.read(Task.model_validate({"name": "t", "prompt": prompt})).lookup


@pytest.mark.parametrize("prompt", [
    "Which version of serde does this Cargo.lock resolve?",
    "In the Gemfile.lock below, what version of nokogiri is locked? Just the version string.",
    "Per the runbook below, who is paged when the payments service is down?",
    "According to the schema below, what arguments does Query.orders take?",
    "Looking only at the phpunit.xml below, which directory is configured as the test suite?",
    "How many hints in the hlint output are \"Use <$>\"? Number only.",
    "What's compilerOptions.target set to in this tsconfig.json? Value only.",
    "gcc flag for C++20?",  # a short fragment with no question word
    "18px in rem with a 16px root font size?",
])
def test_a_question_answered_by_reading_is_a_lookup(prompt: str) -> None:
    assert read(prompt), prompt


@pytest.mark.parametrize("prompt", [
    "Which of these two RDS configurations will cost less per month?",  # a modal: a prediction
    "What does this query return for a user with no orders?",  # does ... return: a prediction
    "What does each flag in this tar command do?",
    "What's the compatible evolution path for this Avro schema?",  # a compatibility judgement
    "Which of @State or @StateObject is correct for each property?",  # a verdict
    "What's the riskiest step in this migration plan?",  # a superlative
    "Why does this test fail on CI only?",  # not a lookup opener
    "Is this unsafe block sound? Reply with JSON only.",
    "What version is pinned here, and should we upgrade it?",  # one asking sentence reasons
    "What edge cases does this checkout spec miss?",  # a reasoning marker
    "Convert this CSV to JSON.",  # nothing asked
    "this works at -O0 but returns garbage at -O2. wheres the UB?",  # a question word as typed in chat
    "thread safe if two goroutines call it at once?",  # a fragment with a condition
    "Merge this today or wait for QA?",  # a choice between alternatives
    "How many HTTP calls does this handler make per request?",  # does ... make: what the code would do
    "Per the runbook below, who do I escalate to after 30 minutes?",  # does/do + a verb the text need not state
    "Our nightly export from the warehouse to the partner bucket fails on about a third of the runs since "
    "Tuesday's change?",  # a fragment too long to be a lookup
])
def test_a_question_to_reason_about_is_not(prompt: str) -> None:
    assert not read(prompt), prompt


LOOKUP = "In the prometheus.yml below, what's the scrape_interval for the node job? Value only."
PREDICTION = "What does the prometheus.yml below do to the scrape interval of the node job?"


def test_a_lookup_gets_no_question_weight_and_the_lookup_bar() -> None:
    d, _ = decide(LOOKUP, 0.55)
    assert d.target == "local", d.reasons
    assert any("lookup question" in r for r in d.reasons)
    assert not any("asks a question: an answer to find" in r for r in d.reasons)
    assert "P(local) 0.55 > the lookup bar 0.5" in d.reasons[-1]


def test_a_question_to_reason_about_keeps_the_question_bar() -> None:
    d, _ = decide(PREDICTION, 0.7)
    assert d.target == "cloud", d.reasons
    assert "the bar where the instruction asks a question" in d.reasons[-1]
    assert any("asks a question: an answer to find" in r for r in d.reasons)


def test_a_lookup_still_needs_the_opinion_to_clear_its_bar() -> None:
    d, _ = decide(LOOKUP, 0.45)
    assert d.target == "cloud" and "P(local) 0.45 <= the lookup bar 0.5" in d.reasons[-1], d.reasons
    assert decide(LOOKUP, 0.65, semantic_lookup_threshold=0.7)[0].target == "cloud"
    assert decide(LOOKUP, 0.55, semantic_threshold=0.9)[0].target == "local"  # its own setting


def test_a_short_lookup_in_doubt_with_far_neighbours_is_treated_as_a_one_liner() -> None:
    short = "Which document class does this preamble use?"
    d, _ = decide(short, 0.65, nearest=FAR, text="x")
    assert d.target == "local", d.reasons
    assert any("short instruction" in r for r in d.reasons)
    d, _ = decide(short, 0.45, nearest=NEAR, text="x")
    assert d.target == "cloud", d.reasons


def test_the_words_are_the_users_to_change() -> None:
    vocab = default_vocabulary()
    vocab["lookup_questions"] = {**vocab["lookup_questions"], "inference": ["locked"]}
    rules = Rules(RouterSettings(), vocab)
    task = Task.model_validate({"name": "t", "prompt": "In the Gemfile.lock below, what version is locked?"})
    assert not rules.read(task).lookup
