"""replay: CSV/JSONL tables with named columns, the ledger's pairs, RouteLLM's evaluation data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ollama_dist.errors import InputError, LedgerError
from ollama_dist.evals.replay import (
    STRONG_MODEL,
    WEAK_MODEL,
    Benchmark,
    Columns,
    guess_format,
    load,
    load_ledger,
    load_routellm,
    load_table,
    task_name,
)
from ollama_dist.ledger.store import Attempt, Ledger

EVALS = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks" / "routellm-evals"
needs_evals = pytest.mark.skipif(not EVALS.is_dir(), reason=f"RouteLLM eval data not found at {EVALS}")


# ---------------------------------------------------------------- tables


def test_csv_with_default_columns(tmp_path: Path) -> None:
    path = tmp_path / "My Set.csv"
    path.write_text("prompt,local_ok,cloud_ok,local_answer,task\n"
                    "Add 2 and 2,true,True,4,math\n"
                    "Name a prime,0,1,,\n")
    rs = load_table(path, "csv", Columns())
    assert [(i.prompt, i.local_quality, i.cloud_quality) for i in rs.items] == [
        ("Add 2 and 2", 1.0, 1.0), ("Name a prime", 0.0, 1.0)]
    assert rs.items[0].task == "math" and rs.items[1].task == "my-set"
    assert rs.items[0].local_answer == "4" and rs.items[1].local_answer is None
    assert rs.items[1].id == "My Set:3"


def test_named_columns_and_scores_win_over_flags(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    rows = [{"q": "hi", "small": 3, "big": 9.5, "small_ok": True, "big_ok": True, "key": "a"},
            {"q": "yo", "small": 7, "big": 7, "small_ok": False, "big_ok": True, "key": "b"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    cols = Columns(prompt="q", local_score="small", cloud_score="big", local_ok="small_ok", cloud_ok="big_ok",
                   id="key")
    rs = load(path, None, cols)
    assert [(i.id, i.local_quality, i.cloud_quality) for i in rs.items] == [("a", 3.0, 9.5), ("b", 7.0, 7.0)]


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("prompt,local_ok\nx,true\n", "no quality column", id="missing-cloud-quality"),
    pytest.param("prompt,local_ok,cloud_ok\nx,maybe,true\n", "expected true/false", id="bad-flag"),
    pytest.param("prompt,local_score,cloud_ok\nx,high,true\n", "expected a number", id="bad-score"),
    pytest.param("prompt,local_ok,cloud_ok\n,true,true\n", "no prompt", id="empty-prompt"),
    pytest.param("prompt,local_ok,cloud_ok\n", "no rows", id="empty-file"),
])
def test_table_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        load_table(path, "csv", Columns())
    assert str(path) in str(err.value)
    assert err.value.exit_code == 2


def test_jsonl_line_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "local_ok": 1, "cloud_ok": 1}\n{oops\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: not JSON"):
        load(path)


@pytest.mark.parametrize(("name", "expected"), [
    ("a.csv", "csv"), ("a.jsonl", "jsonl"), ("a.ndjson", "jsonl"), ("ledger.db", "ledger"), ("x.sqlite", "ledger"),
])
def test_guess_format(tmp_path: Path, name: str, expected: str) -> None:
    assert guess_format(tmp_path / name) == expected
    assert guess_format(tmp_path) == "routellm"
    with pytest.raises(InputError, match="--format"):
        guess_format(tmp_path / "a.txt")


def test_task_names_are_valid() -> None:
    assert task_name("MT Bench / Writing!") == "mt-bench-writing"
    assert task_name("???") == "replay"


# ---------------------------------------------------------------- the ledger


def _attempt(run: str, job: str, lane: str, outcome: str, *, reason: str | None = None, final: bool = False,
             number: int = 1, answer: str | None = None) -> Attempt:
    return Attempt(run_id=run, session="s", job_id=job, task="summarize", task_fingerprint="f", input_hash="h",
                   models_key="k", routed_to="local", lane=lane, backend="b", model="m", attempt=number,
                   outcome=outcome, reason=reason, final=final, input_tokens=120, output_tokens=40,
                   prompt_text=f"prompt of {job}", answer_text=answer)


def test_ledger_pairs_from_shadow_runs_and_escalations(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger(path)
    for attempt in [
        # shadow: the local answer is final, the cloud answered too with reason 'shadow'
        _attempt("r1", "a", "local", "ok", final=True, answer="local a"),
        _attempt("r1", "a", "cloud", "ok", reason="shadow", number=2, answer="cloud a"),
        # escalation: two invalid local answers, then the cloud
        _attempt("r1", "b", "local", "invalid", reason="not JSON"),
        _attempt("r1", "b", "local", "invalid", reason="not JSON", number=2),
        _attempt("r1", "b", "cloud", "ok", final=True, number=3, answer="cloud b"),
        # no pair: local only; a cloud answer after a local *error* (no local answer at all)
        _attempt("r1", "c", "local", "ok", final=True, answer="local c"),
        _attempt("r1", "d", "local", "error", reason="unreachable"),
        _attempt("r1", "d", "cloud", "ok", final=True, number=2),
        # a shadow answer in another run does not pair with run r1's local answer
        _attempt("r2", "c", "cloud", "ok", reason="shadow"),
        # shadows compared as values: the same (local right), a different one (local wrong)
        _attempt("r3", "e", "local", "ok", final=True),
        _attempt("r3", "e", "cloud", "ok", reason="shadow: same answer", number=2),
        _attempt("r3", "f", "local", "ok", final=True),
        _attempt("r3", "f", "cloud", "ok", reason="shadow: differs from the local answer", number=2),
    ]:
        ledger.record(attempt)
    ledger.close()
    rs = load_ledger(path)
    by_id = {i.id: i for i in rs.items}
    assert set(by_id) == {"r1/a", "r1/b", "r3/e", "r3/f"}
    assert (by_id["r3/e"].local_quality, by_id["r3/f"].local_quality) == (1.0, 0.0)
    assert by_id["r3/f"].local_valid is True  # valid, and wrong
    a, b = by_id["r1/a"], by_id["r1/b"]
    assert (a.local_quality, a.cloud_quality, a.local_valid) == (1.0, 1.0, True)
    assert (a.local_answer, a.cloud_answer, a.prompt) == ("local a", "cloud a", "prompt of a")
    assert (b.local_quality, b.cloud_quality, b.local_valid) == (0.0, 1.0, False)
    assert (b.input_tokens, b.output_tokens, b.task) == (120, 40, "summarize")
    assert load(path).items == rs.items  # .db is read as a ledger


def test_ledger_without_pairs_or_not_a_ledger(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    Ledger(empty).close()
    with pytest.raises(InputError, match="no job answered by both lanes"):
        load_ledger(empty)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(LedgerError, match="cannot read the ledger"):
        load_ledger(junk)


# ---------------------------------------------------------------- RouteLLM's data


@needs_evals
@pytest.mark.parametrize(("dataset", "items", "dropped", "local", "cloud"), [
    # RouteLLM drops its contaminated prompts: 12 of 1,319 (gsm8k), 5 of 14,042 (mmlu), 8 of 80 (mt_bench)
    pytest.param("gsm8k", 1307, 12, 0.6373, 0.8577, id="gsm8k"),
    pytest.param("mmlu", 14037, 5, 0.6809, 0.8059, id="mmlu"),
    pytest.param("mt_bench", 72, 8, 8.2813, 9.2118, id="mt_bench"),
])
def test_routellm_benchmarks(dataset: Benchmark, items: int, dropped: int, local: float, cloud: float) -> None:
    rs = load_routellm(EVALS / dataset)
    assert (len(rs.items), rs.dropped) == (items, dropped)
    lo, cl = rs.qualities()
    assert sum(lo) / items == pytest.approx(local, abs=1e-4)
    assert sum(cl) / items == pytest.approx(cloud, abs=1e-4)
    assert (rs.local_label, rs.cloud_label) == (WEAK_MODEL, STRONG_MODEL)
    assert len({i.id for i in rs.items}) == items
    assert load_routellm(EVALS, dataset).items[:3] == rs.items[:3]  # the parent folder plus a benchmark name


@needs_evals
def test_gsm8k_through_the_generic_csv_loader() -> None:
    cols = Columns(local_ok=WEAK_MODEL, cloud_ok=STRONG_MODEL, local_answer=f"{WEAK_MODEL}_response",
                   cloud_answer=f"{STRONG_MODEL}_response")
    table = load(EVALS / "gsm8k" / "gsm8k_responses.csv", "csv", cols)
    routellm = load_routellm(EVALS / "gsm8k")
    assert len(table.items) == len(routellm.items) + routellm.dropped
    kept = {i.prompt: i for i in table.items}
    for item in routellm.items[:50]:
        twin = kept[item.prompt]
        assert (twin.local_quality, twin.cloud_quality, twin.local_answer) == (
            item.local_quality, item.cloud_quality, item.local_answer)


def test_routellm_needs_a_benchmark_name(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--benchmark"):
        load_routellm(tmp_path)
    with pytest.raises(InputError, match="no mmlu folder"):
        load_routellm(tmp_path, "mmlu")
