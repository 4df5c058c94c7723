"""checks.repetition: a cut-off answer whose end repeats one piece is a loop, not a short budget."""

from __future__ import annotations

import json

import pytest

from ollama_dist.checks.repetition import reason, repeated_unit

# what Gemma 3 270M wrote for two shipped examples (dedupe-tags at 96 tokens, release-note at 128)
TAGS = '{ "tags": ["case-insensitively", "lowercase", "and", "sort", "alphabetically", ' + '"and", ' * 22 + '"and'
RELEASE = "llama-dist\n" * 25 + "llama-"


@pytest.mark.parametrize(("text", "unit"), [(TAGS, 'and", "'), (RELEASE, "llama-dist\n"), ("0, " * 30, "0, ")])
def test_a_loop_is_found_and_shown_from_a_word_start(text: str, unit: str) -> None:
    assert repeated_unit(text) == unit


@pytest.mark.parametrize("text", [
    "The quick brown fox jumps over the lazy dog, then runs off into the forest where it meets a bear",
    json.dumps({"rows": [{"sku": f"A-{i}", "qty": i * 3} for i in range(30)]})[:400],  # long, cut, no loop
    "ab" * 10,  # too short to call
    " " * 200,  # only blanks: nothing to name
])
def test_long_or_short_answers_that_do_not_loop_are_not_loops(text: str) -> None:
    assert repeated_unit(text) is None


def test_the_reason_names_the_piece_and_why_max_tokens_would_not_help() -> None:
    text = reason("llama-dist\n", 128)
    assert text.startswith("the answer repeated itself until max_tokens (128): 'llama-dist' over and over")
    assert "would not help" in text
