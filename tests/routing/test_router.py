"""The router: hard rules first, then a soft score with visible reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ollama_dist.config import RouterSettings
from ollama_dist.routing.router import Router, TaskHistory, estimate_tokens
from ollama_dist.tasks.loader import render_prompt
from ollama_dist.tasks.model import Job, Task

SCHEMA = {"type": "object", "required": ["x"], "properties": {"x": {"type": "string"}}}


def make_job(prompt: str, *, text: str = "", kind: str = "auto", output: dict[str, Any] | None = None,
             description: str | None = None, system: str | None = None) -> Job:
    task = Task.model_validate({
        "name": "t", "prompt": prompt, "kind": kind, "description": description, "system": system,
        "inputs": {"text": text} if text else {}, "output": output or {},
    })
    rendered = render_prompt(task, text, None)
    return Job(id="t", task=task, input_text=text, input_hash="h", prompt=rendered)


@pytest.fixture
def router() -> Router:
    return Router(RouterSettings())


@pytest.mark.parametrize(("kind", "target"), [("reasoning", "cloud"), ("deterministic", "local")])
def test_explicit_kind_overrides_everything(router: Router, kind: str, target: str) -> None:
    # words that would fire the opposite hard rule
    prompt = "Convert this to JSON." if kind == "reasoning" else "Debug why the server crashes."
    d = router.decide(make_job(prompt, kind=kind))
    assert d.target == target and d.rule == f"kind:{kind}" and d.confidence == 1.0


CLOUD_CASES = [
    ("complaint", "Write a response to this complaint from a hospital customer."),
    ("legal", "Is it legal for us to store these phone numbers without consent?"),
    ("legal", "Check whether shipping this with a GPL-3.0 dependency is compatible with our licence."),
    ("security", "Threat model the upload endpoint below."),
    ("security", "Look for SQL injection in this query builder."),
    ("design", "Propose an architecture for splitting the monolith into services."),
    ("design", "How should we structure the plugin system?"),
    ("tradeoff", "What are the trade-offs between gRPC and REST here?"),
    ("tradeoff", "Should we switch from Celery to RQ?"),
    ("debugging", "Why does this query return duplicate rows after the join?"),
    ("debugging", "Track down the memory leak in this worker."),
    ("debugging", "Find the root cause of this stack trace."),
    ("feature", "Implement a new caching feature for the HTTP client."),
    ("feature", "Write unit tests for this parser."),
    ("proof", "Prove that this loop terminates for every input."),
    ("proof", "What is the time complexity of this function?"),
]


@pytest.mark.parametrize(("rule", "prompt"), CLOUD_CASES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(CLOUD_CASES)])
def test_cloud_hard_rules(router: Router, rule: str, prompt: str) -> None:
    d = router.decide(make_job(prompt, text="some input"))
    assert (d.target, d.rule) == ("cloud", f"cloud:{rule}"), d.reasons


def test_cloud_rules_beat_local_rules(router: Router) -> None:
    d = router.decide(make_job("Extract the bug's root cause as JSON.", output={"format": "json", "schema": SCHEMA}))
    assert d.rule == "cloud:debugging"


def test_angry_input_with_a_reply_request_is_a_complaint(router: Router) -> None:
    job = make_job("Draft a reply to this e-mail.", text="This is unacceptable, I want a refund!!")
    assert router.decide(job).rule == "cloud:complaint"
    calm = make_job("Draft a reply to this e-mail.", text="Could you send me the invoice for May?")
    assert router.decide(calm).rule != "cloud:complaint"


def test_angry_input_being_labelled_is_not_a_complaint_reply(router: Router) -> None:
    job = make_job("Classify this e-mail as one of: billing, bug, other.",
                   text="This is unacceptable, I want a refund!!",
                   output={"format": "json", "schema": {"type": "object", "properties": {
                       "label": {"enum": ["billing", "bug", "other"]}}}})
    assert router.decide(job).target == "local"


LOCAL_CASES = [
    ("extraction", "Extract every e-mail address from the text.", {"format": "json", "schema": SCHEMA}),
    ("conversion", "Convert this TOML to YAML.", {"format": "yaml"}),
    ("conversion", "Turn the table below into CSV.", {}),
    ("renaming", "Rename every identifier to snake_case.", {"format": "code"}),
    ("template", "Fill in the template with these values.", {}),
    ("sorting", "Sort these lines and remove duplicates.", {}),
    ("dependencies", "List the dependencies declared in this package.json.", {"format": "json"}),
    ("classification", "Label this ticket with one of: bug, feature, question.", {"format": "json"}),
    ("lookup", "Answer the question using the given facts only.", {}),
]


@pytest.mark.parametrize(("rule", "prompt", "output"), LOCAL_CASES,
                         ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(LOCAL_CASES)])
def test_local_hard_rules(router: Router, rule: str, prompt: str, output: dict[str, Any]) -> None:
    d = router.decide(make_job(prompt, text="a b c", output=output))
    assert (d.target, d.rule) == ("local", f"local:{rule}"), d.reasons


def test_extraction_needs_a_structured_output_to_be_a_hard_rule(router: Router) -> None:
    d = router.decide(make_job("Extract the key points of this meeting.", text="notes"))
    assert d.rule != "local:extraction"


def test_a_reasoning_marker_disables_local_hard_rules(router: Router) -> None:
    d = router.decide(make_job("Rename these variables to clearer names and explain why.", text="x = 1"))
    assert d.rule is None and d.target == "cloud"


def test_long_input_never_goes_local(router: Router) -> None:
    d = router.decide(make_job("Convert this CSV to JSON.", text="a,b\n" * 9000))
    assert (d.target, d.rule) == ("cloud", "cloud:long-context")


def test_soft_score_reasons_are_visible(router: Router) -> None:
    d = router.decide(make_job("Summarise these notes in three bullet points.", text="notes " * 40))
    assert d.rule is None
    assert any("free text" in r for r in d.reasons)
    assert d.reasons[-1].startswith(d.target)


def test_no_signal_means_cloud(router: Router) -> None:
    d = router.decide(make_job("Do the thing with this.", text="stuff"))
    assert d.target == "cloud"


def test_determinism_markers_and_schema_send_local_with_confidence(router: Router) -> None:
    d = router.decide(make_job("Count the words per line and tabulate them, no prose.",
                               text="a b\nc", output={"format": "json", "schema": SCHEMA}))
    assert d.rule is None and d.target == "local" and d.confidence >= 0.6 and d.score <= 0.35


def test_reasoning_markers_raise_the_score(router: Router) -> None:
    plain = router.decide(make_job("Summarise the notes.", text="n"))
    judged = router.decide(make_job("Summarise the notes and assess the risks and recommend the next step.",
                                    text="n"))
    assert judged.score > plain.score


# no hard rule, one determinism marker (count) and a short input put it at score 0.13
MID_JOB = make_job("Count the notes.", text="n", output={"format": "json", "schema": SCHEMA})


def test_mid_job_is_where_the_threshold_tests_expect(router: Router) -> None:
    d = router.decide(MID_JOB)
    assert d.rule is None and d.score == pytest.approx(0.13) and d.confidence > 0.6


@pytest.mark.parametrize("output", [{"format": "json", "schema": SCHEMA}, {"format": "json"}, {"format": "yaml"},
                                    {"pattern": "^(yes|no)$"},
                                    {"format": "json", "schema": {"type": "object", "properties": {
                                        "verdict": {"enum": ["merge", "hold"]}}}}],
                         ids=["schema", "json", "yaml", "pattern", "enum"])
def test_an_output_check_alone_does_not_pull_toward_local(router: Router, output: dict[str, Any]) -> None:
    """A schema checks an answer's shape, not its substance (issue 11)."""
    prompt = "Summarise the notes."
    checked = router.decide(make_job(prompt, text="n", output=output))
    markers = router.decide(make_job("Count the notes.", text="n", output=output))
    assert checked.target == "cloud", checked.reasons
    assert not any(r.startswith("-") and ("schema" in r or "json" in r or "pattern" in r) for r in checked.reasons)
    assert markers.score == pytest.approx(checked.score - 0.12)  # what moves it is the words
    reply_as_json = router.decide(make_job("Which of these two options is faster? Reply as JSON.", text="n",
                                           output=output))
    assert reply_as_json.rule is None and reply_as_json.target == "cloud", reply_as_json.reasons


@pytest.mark.parametrize(("score_threshold", "confidence_threshold", "target"), [
    (0.35, 0.6, "local"),
    (0.10, 0.6, "cloud"),   # score above a low threshold
    (0.35, 0.99, "cloud"),  # confidence below a demanding threshold
], ids=["defaults", "low-score-threshold", "high-confidence-threshold"])
def test_thresholds_are_configuration(score_threshold: float, confidence_threshold: float, target: str) -> None:
    router = Router(RouterSettings(score_threshold=score_threshold, confidence_threshold=confidence_threshold))
    d = router.decide(MID_JOB)
    assert d.target == target, d.reasons


def test_vocabulary_is_configuration() -> None:
    settings = RouterSettings(vocabulary={"cloud_rules": {"haiku": [r"\bhaiku\b"]}})
    d = Router(settings).decide(make_job("Write a haiku about this commit.", text="x"))
    assert d.rule == "cloud:haiku"


def test_history_of_failed_local_answers_pushes_to_cloud(router: Router) -> None:
    job = MID_JOB
    assert router.decide(job).target == "local"
    bad = router.decide(job, TaskHistory(local_jobs=10, local_failures=8))
    assert bad.target == "cloud" and any("history" in r for r in bad.reasons)


EXTRACT = "Extract the city from this text. Reply with JSON only."


@pytest.mark.parametrize(("right", "wrong", "target"), [
    (1, 3, "cloud"),  # 25% accurate over 4 judged jobs
    (7, 3, "local"),  # 70%: at the threshold, trusted
    (0, 2, "local"),  # 2 judged jobs say too little yet
])
def test_a_task_whose_local_answers_are_often_wrong_stops_going_local(
        router: Router, right: int, wrong: int, target: str) -> None:
    job = make_job(EXTRACT, text="Lisbon", output={"format": "json", "schema": SCHEMA})
    history = TaskHistory(local_jobs=right + wrong, local_failures=wrong, local_right=right, local_wrong=wrong)
    d = router.decide(job, history)
    assert d.target == target
    if target == "cloud":
        assert d.rule == "cloud:local-accuracy" and d.reasons[0].startswith("history: local answers often wrong")
        assert f"{wrong} of {right + wrong} judged jobs wrong" in d.reasons[0]
    # a declared kind is the user's word, measured or not
    assert router.decide(make_job(EXTRACT, kind="deterministic"), history).target == "local"


def test_answers_cut_off_at_max_tokens_are_told_apart_from_wrong_ones(router: Router) -> None:
    history = TaskHistory(local_jobs=4, local_failures=4, local_cut_off=4)
    d = router.decide(MID_JOB, history)
    assert d.target == "cloud" and history.accuracy is None  # no value, right or wrong: no accuracy
    assert any("4 cut off at max_tokens: raise max_tokens" in r for r in d.reasons)
    assert not any("often wrong" in r for r in d.reasons)


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 100) == 100


def test_every_shipped_example_loads_and_routes(repo_root: Path) -> None:
    from ollama_dist.tasks.loader import load_jobs, load_tasks

    examples = repo_root / "tasks" / "examples"
    tasks = load_tasks([examples])
    assert len(tasks) >= 12
    import git

    repo = git.Repo(repo_root)
    short_history = int(repo.git.rev_list("--count", "HEAD")) < 4 or (repo_root / ".git" / "shallow").exists()
    router = Router(RouterSettings())
    targets = set()
    for path in sorted(examples.glob("*.yaml")):
        if short_history and "git:" in path.read_text():
            continue
        for job in load_jobs([path], repo_root):
            targets.add(router.decide(job).target)
    assert targets == {"local", "cloud"}
