"""Agreement: answers compared as values, the vote over samples (checks.agreement)."""

from __future__ import annotations

import pytest

from ollama_dist.checks.agreement import canonical, needed, same, vote
from ollama_dist.checks.validate import OutputSpec, reason_kind, validate

JSON = OutputSpec(format="json")



def test_answers_are_the_same_value_whatever_their_spelling() -> None:
    a = validate('{"city": "Lagos", "n": 12.5, "tags": ["a", "b"]}', JSON)
    b = validate('```json\n{"tags": ["A", "b"], "n": 12.50, "city": " lagos "}\n```', JSON)
    assert same(a, b) and canonical(a) == canonical(b)
    assert not same(a, validate('{"city": "Lagos", "n": 12.5, "tags": ["b", "a"]}', JSON))  # order counts
    assert not same(a, validate('{"city": "Lagos"', OutputSpec(format="json", schema={"type": "array"})))
    text = OutputSpec(format="text")
    assert same(validate("Ship  it", text), validate("ship it", text))


@pytest.mark.parametrize(("asked", "votes"), [(2, 2), (3, 2), (4, 3), (5, 3)])
def test_a_strict_majority_is_needed(asked: int, votes: int) -> None:
    assert needed(asked) == votes


def test_the_majority_value_wins_even_when_the_first_answer_is_outvoted() -> None:
    samples = [validate(t, JSON) for t in ('{"label": "bug"}', '{"label": "docs"}', '{"label": "docs"}')]
    index, verdict = vote(samples, 3)
    assert index == 1 and verdict.ok and verdict.value == {"label": "docs"}
    assert verdict.checks[-1] == "agree"


def test_disagreement_is_invalid_and_says_how_the_samples_split() -> None:
    samples = [validate(t, JSON) for t in ('{"label": "bug"}', '{"label": "docs"}', "not json")]
    index, verdict = vote(samples, 3)
    assert index is None and not verdict.ok and verdict.failed == "agree"
    assert verdict.reason is not None and verdict.reason.startswith("the local answers disagree: of 3 samples")
    assert "2 different valid answer(s), 1 invalid" in verdict.reason
    assert reason_kind(verdict.reason) == "the local answers disagree"


def test_samples_that_were_never_answered_count_against() -> None:
    ok = validate('{"label": "bug"}', JSON)
    assert vote([ok], 3)[0] is None  # 1 of 3: the other two calls failed
    assert vote([ok, ok], 3)[0] == 0
