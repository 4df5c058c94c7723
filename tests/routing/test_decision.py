"""The combination (routing/decision.py): when the second opinion may overturn a word rule, and
the bars it must clear. A fixed opinion stands in for the model, so each bar is tested exactly."""

from __future__ import annotations

from typing import Any

import pytest

from ollama_dist.api import Routed
from ollama_dist.config import RouterSettings
from ollama_dist.ledger.store import TaskHistory
from ollama_dist.routing.decision import Neighbour, Opinion
from ollama_dist.routing.router import Router
from ollama_dist.routing.sentences import governing_lead, sentence_leads
from ollama_dist.tasks.loader import render_prompt
from ollama_dist.tasks.model import Job, Task

SCHEMA = {"type": "object", "properties": {"x": {"type": "string"}}}
NEAR = (Neighbour(id="docs-009", label="deterministic", similarity=0.61, name="rst to gfm"),
        Neighbour(id="legal-1", label="reasoning", similarity=0.40, name="licence risk"))


FAR = (Neighbour(id="shell-011", label="deterministic", similarity=0.37, name="getopts block"),)


class Fixed:
    """A second opinion that always says `p_local`, and counts how often it was asked."""

    unavailable: str | None = None

    def __init__(self, p_local: float, nearest: tuple[Neighbour, ...] = NEAR) -> None:
        self.p_local = p_local
        self.nearest = nearest
        self.asked = 0

    def opinion(self, task: Task) -> Opinion:
        self.asked += 1
        return Opinion.of(self.p_local, self.nearest, 11)


def decide(prompt: str, p_local: float, *, text: str = "some input", output: dict[str, Any] | None = None,
           history: TaskHistory | None = None, nearest: tuple[Neighbour, ...] = NEAR,
           **settings: Any) -> tuple[Any, Fixed]:
    task = Task.model_validate({"name": "t", "prompt": prompt, "inputs": {"text": text}, "output": output or {}})
    job = Job(id="t", task=task, input_text=text, input_hash="h", prompt=render_prompt(task, text, None))
    reviewer = Fixed(p_local, nearest)
    return Router(RouterSettings(**settings), second_opinion=reviewer).decide(job, history), reviewer


DISCLAIMER = "Reformat the legal disclaimer below as a Markdown list, one sentence per bullet. Do not change any wording."


def test_a_word_rule_on_mechanical_work_is_overturned_by_a_clear_opinion() -> None:
    d, _ = decide(DISCLAIMER, 0.95)
    assert (d.target, d.rule) == ("local", "local:legal-overturned"), d.reasons
    assert d.reasons[0] == "legal: the instruction says 'legal'"
    assert "'reformat' governs the instruction" in d.reasons[-1] and "0.95 > 0.7" in d.reasons[-1]
    assert "docs-009 'rst to gfm' (deterministic, 0.61)" in d.reasons[1]
    assert d.p_local == 0.95 and d.nearest == NEAR and d.score == 0.0


@pytest.mark.parametrize(("p_local", "override", "target"), [(0.79, 0.8, "cloud"), (0.8, 0.8, "cloud"),
                                                             (0.69, 0.7, "cloud"), (0.75, 0.7, "local")])
def test_the_bar_for_overturning_a_word_rule_is_the_configured_one(p_local: float, override: float,
                                                                  target: str) -> None:
    d, _ = decide(DISCLAIMER, p_local, semantic_rule_override=override)
    assert d.target == target, d.reasons
    if target == "cloud":
        assert d.rule == "cloud:legal" and "legal stands" in d.reasons[-1]


def test_the_rule_bar_is_its_own_setting_not_the_question_bar() -> None:
    assert decide(DISCLAIMER, 0.65, semantic_override=0.6)[0].target == "cloud"
    assert decide(DISCLAIMER, 0.85, semantic_override=0.9)[0].target == "local"


@pytest.mark.parametrize("prompt", [
    "Reformat this complaint from an angry customer as JSON with the fields name and order.",
    "Extract the patient names and their diagnosis codes from these notes as JSON.",
    "Sort the salary bands in this table by grade.",
])
def test_safety_rules_are_never_put_to_the_second_opinion(prompt: str) -> None:
    d, reviewer = decide(prompt, 1.0, output={"format": "json", "schema": SCHEMA})
    assert d.target == "cloud" and d.rule in ("cloud:complaint", "cloud:sensitive"), d.reasons
    assert reviewer.asked == 0 and d.p_local is None


@pytest.mark.parametrize("prompt", [
    "Review the legal terms of this contract and list the risky clauses.",  # a judgement verb governs
    "Extract the licence of every package. Is shipping them under MIT legal?",  # it asks a question
    "Extract the findings of this security review and make them cleaner.",  # a qualitative goal
    "We think this is a race condition. Sort the log lines by timestamp.",  # no mechanical verb governs
])
def test_a_word_rule_on_work_that_is_not_plainly_mechanical_is_not_reviewed(prompt: str) -> None:
    d, reviewer = decide(prompt, 1.0)
    assert d.target == "cloud" and d.rule is not None and d.rule.startswith("cloud:"), d.reasons
    assert reviewer.asked == 0


def test_what_the_words_cannot_show_keeps_a_word_rule() -> None:
    long, _ = decide(DISCLAIMER, 1.0, text="word " * 3000)  # ~3,800 tokens: past local_context_tokens
    assert long.target == "cloud" and "input tokens" in long.reasons[-1]
    failed, _ = decide(DISCLAIMER, 1.0, history=TaskHistory(local_jobs=4, local_failures=3))
    assert failed.target == "cloud" and "history: 3/4" in failed.reasons[-1]


def test_a_local_word_rule_on_a_question_goes_cloud_when_the_neighbours_are_not_local() -> None:
    prompt = "Convert this completion-handler client to async/await. Will existing callers still compile?"
    d, _ = decide(prompt, 0.5)
    assert (d.target, d.rule) == ("cloud", "cloud:conversion-overturned"), d.reasons
    assert "asks a question" in d.reasons[-1]
    kept, _ = decide(prompt, 0.7)
    assert (kept.target, kept.rule) == ("local", "local:conversion")


def test_a_local_word_rule_without_a_mechanical_verb_needs_clearly_cloud_neighbours() -> None:
    prompt = "Port this token-bucket rate limiter to Go, keeping its behaviour when the clock goes backwards."
    assert decide(prompt, 0.15)[0].rule == "cloud:conversion-overturned"
    assert decide(prompt, 0.4)[0].rule == "local:conversion"  # 0.4 > 1 - semantic_override


def test_a_plainly_mechanical_local_rule_never_asks() -> None:
    d, reviewer = decide("Convert this CSV to JSON.", 0.0, output={"format": "json"})
    assert d.rule == "local:conversion" and reviewer.asked == 0


def test_the_second_opinion_sends_a_score_local_task_to_the_cloud() -> None:
    out = {"format": "json", "schema": SCHEMA}
    plain = Router(RouterSettings()).decide(Job(id="t", task=Task.model_validate(
        {"name": "t", "prompt": "Count the notes.", "output": out}), input_text="", input_hash="h", prompt="Count the notes."))
    assert plain.rule is None and plain.target == "local"
    d, _ = decide("Count the notes.", 0.3, output=out)
    assert d.target == "cloud" and "local: score" in " ".join(d.reasons) and "cloud unless P(local) > t" in d.reasons[-1]


def test_a_question_needs_the_clear_bar_to_go_local() -> None:
    prompt = "Which of these two settings gives the smaller bundle? Reply as JSON."
    out = {"format": "json", "schema": SCHEMA}
    d, _ = decide(prompt, 0.7, output=out)
    assert d.rule is None and d.target == "cloud" and "the bar where the instruction asks a question" in d.reasons[-1]
    assert decide(prompt, 0.9, output=out)[0].target == "local"


def test_a_far_opinion_needs_the_clear_bar_where_the_score_is_in_doubt() -> None:
    prompt = "Sketch the plugin mechanism for our command line tool."  # no marker: cloud for low confidence
    assert Router(RouterSettings()).decide(Job(id="t", task=Task(name="t", prompt=prompt), input_text="",
                                               input_hash="h", prompt=prompt)).reasons[-1].endswith("(when in doubt, cloud)")
    far, _ = decide(prompt, 0.7, nearest=FAR)
    assert far.target == "cloud" and "the nearest exemplar is far" in far.reasons[-1]
    assert decide(prompt, 0.7)[0].target == "local"  # a near one: t is the bar
    assert decide(prompt, 0.9, nearest=FAR)[0].target == "local"


def test_a_governing_judgement_verb_vetoes_local() -> None:
    d, _ = decide("Plan the rename of users.fullname on the live table.", 0.95)
    assert d.rule is None and d.target == "cloud" and "a judgement verb governs the instruction ('plan')" in d.reasons[-1]


def test_the_json_decision_carries_the_opinion() -> None:
    d, _ = decide(DISCLAIMER, 0.95)
    task = Task(name="t", prompt=DISCLAIMER)
    row = Routed(Job(id="t", task=task, input_text="", input_hash="h", prompt=DISCLAIMER), d).as_json()
    assert row["p_local"] == 0.95
    assert row["nearest"][0] == {"id": "docs-009", "label": "deterministic", "similarity": 0.61, "name": "rst to gfm"}


@pytest.mark.parametrize(("prompt", "want"), [
    ("Given the table below, extract every name as JSON.", [("extract", False)]),
    ("Please convert this.\n- then sort it?", [("convert", False), ("sort", True)]),
    ("```\nwhy is this here?\n```\nRename foo to bar.", [("rename", False)]),
    ("Do not change the wording. Don't reorder. Do the same for b.", [("do", False), ("don't", False), ("do", False)]),
    ("Do we need both locks", [("do", True)]),
    ("Could you please convert this to JSON?", [("convert", False)]),
    ("Is this safe? Reply as JSON.", [("is", True), ("reply", False)]),
    ("Which one is faster", [("which", True)]),
])
def test_the_leading_verb_of_each_sentence(prompt: str, want: list[tuple[str, bool]]) -> None:
    assert sentence_leads(prompt) == want


VERBS = frozenset(("extract", "convert", "review", "sort"))


@pytest.mark.parametrize(("prompt", "want"), [
    ("Security audit prep: extract every IP as JSON.", "extract"),  # a heading is context
    ("We're preparing a legal review. This is the export. Sort the rows by date.", "sort"),  # statements
    ("Convert the following:\n- a\n- b", "convert"),  # a heading led by a verb is the instruction
    ("Context: our CI is slow. Why does the cache miss?", "why"),  # a question governs
    ("Review this diff.", "review"),
    ("This is our GDPR export.", "this"),  # nothing but context: its first word
])
def test_the_governing_verb_skips_headings_and_statements(prompt: str, want: str) -> None:
    assert governing_lead(prompt, VERBS) == want


def test_a_heading_no_longer_hides_a_mechanical_verb_from_the_second_opinion() -> None:
    prompt = "Legal review prep: reformat the disclaimer below as a Markdown list. Do not change any wording."
    d, reviewer = decide(prompt, 0.95)
    assert (d.target, d.rule) == ("local", "local:legal-overturned"), d.reasons
    assert reviewer.asked == 1 and "'reformat' governs the instruction" in d.reasons[-1]


@pytest.mark.parametrize("prompt", [
    "Which line of this Dockerfile should move so a source-only change does not reinstall dependencies?",
    "Which permissions can we remove? Comma-separated names.",
    "Will this job still run on Sundays?",
])
def test_a_question_with_an_inference_modal_is_not_sent_local_by_the_score_band(prompt: str) -> None:
    d, _ = decide(prompt, 1.0)
    assert d.rule is None and d.target == "cloud", d.reasons
    assert "asks what ought to be or would happen" in d.reasons[-1]


def test_a_lookup_question_without_a_modal_still_goes_local_on_a_clear_opinion() -> None:
    d, _ = decide("Which port does the web service publish? Number only.", 1.0, output={"pattern": "^\\d+$"})
    assert d.rule is None and d.target == "local", d.reasons


@pytest.mark.parametrize(("prompt", "want"), [
    ("Risk assessment of the billing consumer lag. Our policy: at risk past 1000. Reply with JSON.", "reply"),
    ("Legal review of a DPA. Counsel will assess the terms. List every time period the text states.", "list"),
    ("Explain why the build fails. List the failing steps.", "explain"),  # the first that instructs
    ("Nothing here instructs. Neither does this.", "nothing"),
])
def test_a_title_or_a_statement_before_the_instruction_is_context(prompt: str, want: str) -> None:
    verbs = frozenset(("reply", "list", "explain", "assess"))
    assert governing_lead(prompt, verbs) == want


def test_a_negated_judgement_is_no_reasoning_marker() -> None:
    prompt = "Report the fixed version the advisory states for 2.x. Do not judge whether we are exposed."
    d, _ = decide(prompt, 0.9)
    assert not any("reasoning markers" in r for r in d.reasons), d.reasons
    assert any("determinism markers" in r and "do not judge" in r for r in d.reasons), d.reasons
    judged, _ = decide("Report the fixed version the advisory states for 2.x, and judge whether we are exposed.", 0.9)
    assert any("reasoning markers: judge" in r for r in judged.reasons), judged.reasons


@pytest.mark.parametrize("prompt", [
    "What does this program print? Give the exact output.",
    "Give the number of rows this query returns.",
    "Write the exact lines this script prints, in order.",
])
def test_predicting_what_code_does_is_cloud_work(prompt: str) -> None:
    d, reviewer = decide(prompt, 1.0)
    assert (d.target, d.rule) == ("cloud", "cloud:prediction"), d.reasons
    assert reviewer.asked == 0  # a pattern naming the work: never put to the second opinion
