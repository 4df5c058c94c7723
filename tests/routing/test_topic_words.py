"""A cloud rule's topic words and the patterns naming the work (data/router.yaml `work`/`topic`),
and the bar a short mechanical instruction keeps. Task files are loaded as a user's would be and
routed by the real Router; a fixed opinion stands in for the model, so each bar is exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ollama_dist.config import RouterSettings
from ollama_dist.errors import ConfigError
from ollama_dist.routing.decision import Decision, Neighbour, Opinion
from ollama_dist.routing.router import Router
from ollama_dist.tasks.loader import load_jobs
from ollama_dist.tasks.model import Task

NEAR = (Neighbour(id="php-007", label="deterministic", similarity=0.62, name="strip debug dumps"),)
FAR = (Neighbour(id="nginx-003", label="deterministic", similarity=0.37, name="add nosniff header"),)


class Fixed:
    """A second opinion that always says `p_local`, and counts how often it was asked."""

    unavailable: str | None = None

    def __init__(self, p_local: float, nearest: tuple[Neighbour, ...]) -> None:
        self.p_local, self.nearest, self.asked = p_local, nearest, 0

    def opinion(self, task: Task) -> Opinion:
        self.asked += 1
        return Opinion.of(self.p_local, self.nearest, 11)


def route(tmp_path: Path, prompt: str, p_local: float, *, nearest: tuple[Neighbour, ...] = NEAR,
          output: str = "format: diff", **settings: Any) -> tuple[Decision, Fixed]:
    """Write a task file with `prompt` and an inline input, load it, route its one job."""
    (tmp_path / "task.yaml").write_text(
        f"name: t\nprompt: {prompt!r}\ninputs:\n  text: \"<?php var_dump($x); echo 1;\"\noutput:\n  {output}\n",
        encoding="utf-8")
    (job,) = load_jobs([tmp_path / "task.yaml"], tmp_path)
    reviewer = Fixed(p_local, nearest)
    return Router(RouterSettings(**settings), second_opinion=reviewer).decide(job), reviewer


DUMPS = "Strip every var_dump() and print_r() debug dump from the controller below; leave the rest unchanged."


def test_a_topic_word_on_mechanical_work_is_overturned_naming_rule_bar_and_neighbours(tmp_path: Path) -> None:
    d, reviewer = route(tmp_path, DUMPS, 0.9)
    assert (d.target, d.rule) == ("local", "local:debugging-overturned"), d.reasons
    assert d.reasons[0] == "debugging: the instruction says 'debug'"
    assert "php-007 'strip debug dumps' (deterministic, 0.62)" in d.reasons[1]
    assert "0.90 > 0.7" in d.reasons[-1] and "router.semantic_rule_override" in d.reasons[-1]
    assert "fired on a topic word" in d.reasons[-1] and reviewer.asked == 1


def test_the_topic_bar_is_router_semantic_rule_override(tmp_path: Path) -> None:
    d, _ = route(tmp_path, DUMPS, 0.9, semantic_rule_override=0.95)
    assert (d.target, d.rule) == ("cloud", "cloud:debugging") and "0.90 <= 0.95" in d.reasons[-1]


@pytest.mark.parametrize(("prompt", "rule"), [
    ("Add support for OAuth login to the CLI below.", "feature"),  # 'add' governs, the work is a feature
    ("Sort these log lines by time, then find the root cause of the crash.", "debugging"),
    ("List the hard-coded secrets in this config as JSON.", "security"),  # secret content
    ("Extract the legal clauses below and track down the bug in the parser.", "debugging"),  # work beats topic
    ("Turn these notes into a plan for the database migration.", "design"),
])
def test_a_pattern_naming_the_work_is_never_put_to_the_second_opinion(tmp_path: Path, prompt: str,
                                                                       rule: str) -> None:
    d, reviewer = route(tmp_path, prompt, 1.0)
    assert (d.target, d.rule) == ("cloud", f"cloud:{rule}"), d.reasons
    assert reviewer.asked == 0 and d.p_local is None


def test_a_plain_list_in_the_users_vocabulary_names_the_work(tmp_path: Path) -> None:
    legal = "Reformat the legal disclaimer below as a Markdown list. Do not change any wording."
    assert route(tmp_path, legal, 0.95)[0].rule == "local:legal-overturned"
    d, reviewer = route(tmp_path, legal, 0.95, vocabulary={"cloud_rules": {"legal": [r"\blegal\b"]}})
    assert (d.target, d.rule) == ("cloud", "cloud:legal") and reviewer.asked == 0


NOSNIFF = "Add `add_header X-Content-Type-Options nosniff always;` to every server block. Output the complete file."


def test_a_short_mechanical_instruction_keeps_the_bar_t_where_the_score_is_in_doubt(tmp_path: Path) -> None:
    d, _ = route(tmp_path, NOSNIFF, 0.72, nearest=FAR, output="format: code")
    assert (d.target, d.rule) == ("local", None), d.reasons
    assert any("cloud: confidence" in r for r in d.reasons)  # the score alone: cloud for low confidence
    assert any("a short instruction 'add' governs" in r for r in d.reasons)
    assert "P(local) 0.72 > t 0.6" in d.reasons[-1]
    assert route(tmp_path, NOSNIFF, 0.55, nearest=FAR, output="format: code")[0].target == "cloud"


@pytest.mark.parametrize("prompt", [
    NOSNIFF + " Explain each change.",  # a reasoning marker
    "Add the header below to every server block where it is needed, and to any block that "
    "serves user uploads or static assets from a shared volume, keeping the order of the other "
    "directives, the comments and the blank lines as they are in the file, one per line.",  # not short
])
def test_a_far_opinion_still_needs_the_clear_bar_unless_the_instruction_is_short_and_plain(
        tmp_path: Path, prompt: str) -> None:
    d, _ = route(tmp_path, prompt, 0.72, nearest=FAR, output="format: code")
    assert d.target == "cloud", d.reasons
    assert "the score is in doubt and the nearest exemplar is far" in d.reasons[-1] or "clearly past" in d.reasons[-1]


@pytest.mark.parametrize(("rule", "found"), [
    ({"patterns": [r"\blegal\b"]}, "['patterns']"),
    ({"work": r"\blegal\b"}, "expected a list of patterns"),
    (["("], "not a regular expression"),
])
def test_a_bad_cloud_rule_in_the_config_names_its_field(rule: Any, found: str) -> None:
    with pytest.raises(ConfigError) as err:
        Router(RouterSettings(vocabulary={"cloud_rules": {"legal": rule}}))
    assert err.value.field == "router.vocabulary.cloud_rules.legal"
    assert found in str(err.value)
