"""Learning from outcomes: the user's own tasks become exemplars for the second opinion.

Opt-in (`router.semantic_learn: true`). From the ledger: an instruction whose local answers
passed validation (and, where a shadow cloud answer was recorded, that answer passed too)
in at least `MIN_JOBS` jobs, none failing, becomes a local exemplar; one whose local answers
failed in at least `MIN_JOBS` jobs, more often than they passed, becomes a cloud exemplar.
Their ids read `learnt:<task>`, so a decision they sway says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ollama_dist.routing.exemplars import Exemplar

if TYPE_CHECKING:
    from ollama_dist.routing.second_opinion import Vectors, VectorStore

MIN_JOBS = 2


def label_of(passed: int, failed: int) -> str | None:
    if passed >= MIN_JOBS and failed == 0:
        return "deterministic"
    if failed >= MIN_JOBS and failed > passed:
        return "reasoning"
    return None


def learnt(store: VectorStore, model_id: str) -> tuple[list[Exemplar], Vectors]:
    """The learnt exemplars and their vectors (already in the ledger: nothing is embedded)."""
    import numpy as np

    exemplars: list[Exemplar] = []
    rows = []
    for key, task, passed, failed, vector in store.instruction_outcomes(model_id):
        label = label_of(passed, failed)
        if label is None:
            continue
        exemplars.append(Exemplar(f"learnt:{task}", label, "", f"ledger:{key}"))  # type: ignore[arg-type]
        rows.append(np.frombuffer(vector, dtype=np.float32))
    vectors: Vectors = np.stack(rows) if rows else np.zeros((0, 384), dtype=np.float32)
    return exemplars, vectors


def summary(exemplars: Sequence[Exemplar]) -> str:
    local = sum(e.local for e in exemplars)
    return f"{local} local and {len(exemplars) - local} cloud exemplar(s) learnt from the ledger"
