"""Learning from outcomes: measured trust per task, and the user's own tasks as exemplars.

Trust (always on): the ledger's TaskHistory says, per task, how its local answers ended: right
(accepted, and the same value as Claude's where `run --shadow` asked), wrong (a value not in the
input, samples that disagree, an answer that loops until max_tokens, or Claude's shadow answer
different), cut off at max_tokens, or
malformed. ``distrust`` sends a task to Claude once its local accuracy (right / right + wrong)
over at least `MIN_JUDGED` jobs is below `router.min_local_accuracy`; ``advice`` says in words
what the figures call for (cut off: raise `max_tokens`; wrong: Claude).

Exemplars: opt-in (`router.semantic_learn: true`). From the ledger: an instruction whose local answers
passed validation (and, where a shadow cloud answer was recorded, that answer passed too)
in at least `MIN_JOBS` jobs, none failing, becomes a local exemplar; one whose local answers
failed in at least `MIN_JOBS` jobs, more often than they passed, becomes a cloud exemplar.
Their ids read `learnt:<task>`, so a decision they sway says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ollama_dist.ledger.store import TaskHistory
from ollama_dist.routing.exemplars import Exemplar

if TYPE_CHECKING:
    from ollama_dist.routing.second_opinion import Vectors, VectorStore

MIN_JOBS = 2
MIN_JUDGED = 3  # jobs judged right or wrong before a task's accuracy counts


def distrust(history: TaskHistory | None, min_accuracy: float) -> str | None:
    """Why a task's local answers are not to be trusted any more (a reason for the router), or None."""
    if history is None or history.judged < MIN_JUDGED or history.accuracy is None:
        return None
    if history.accuracy >= min_accuracy:
        return None
    return (f"local answers often wrong: accuracy {history.accuracy:.0%} < {min_accuracy:.0%} "
            f"({history.local_wrong} of {history.judged} judged jobs wrong: a value not in the input, samples "
            f"that disagree, answers that loop, or Claude's answer different){_cut_off_note(history)}")


def advice(history: TaskHistory, min_accuracy: float) -> str | None:
    """What the figures of one task call for, in words (router-status), or None."""
    wrong = distrust(history, min_accuracy)
    if wrong is not None:
        return f"{wrong}: it goes to Claude"
    if history.local_cut_off and history.local_cut_off * 2 >= history.local_failures:
        return (f"{history.local_cut_off} of {history.local_jobs} local answers cut off at max_tokens: "
                "raise the task's max_tokens (or ask for a shorter answer)")
    if _wrong_so_far(history, min_accuracy):
        return (f"{history.local_wrong} of {history.judged} judged local answers wrong so far: at "
                f"{MIN_JUDGED} judged jobs below {min_accuracy:.0%} it goes to Claude")
    return None


def verdict(history: TaskHistory, min_accuracy: float) -> str:
    """`advice` in a few words, for a table cell."""
    if distrust(history, min_accuracy) is not None:
        return "to Claude (wrong)"
    if advice(history, min_accuracy) is None:
        return "-"
    return "wrong so far" if _wrong_so_far(history, min_accuracy) else "raise max_tokens"


def _wrong_so_far(history: TaskHistory, min_accuracy: float) -> bool:
    """Too few judged jobs to distrust the task yet, but its accuracy so far is below the bar."""
    return history.accuracy is not None and history.judged < MIN_JUDGED and history.accuracy < min_accuracy


def failures(history: TaskHistory) -> str:
    """"3/4 local answers failed", with how many of them were cut off (advice: raise max_tokens)."""
    text = f"{history.local_failures}/{history.local_jobs} local answers failed"
    if history.local_cut_off:
        text += f" ({history.local_cut_off} cut off at max_tokens: raise max_tokens)"
    return text


def _cut_off_note(history: TaskHistory) -> str:
    if not history.local_cut_off:
        return ""
    return f"; {history.local_cut_off} more cut off at max_tokens (raise max_tokens for those)"


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
