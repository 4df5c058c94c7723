"""Jobs handed back to the calling Claude, read from the ledger: the newest hand-back of a job
(so a re-run can serve the caller's answer), or one of a given run (`report_answers`)."""

from __future__ import annotations

from dataclasses import dataclass

from ollama_dist.ledger.store import Ledger


@dataclass(frozen=True)
class HandedBackJob:
    """A job handed back to the calling Claude, and the answer it reported (`report_answers`), if any."""

    row_id: int
    run_id: str
    job_id: str
    ts: float
    output_path: str | None
    output_hash: str | None
    estimated_cost_usd: float  # what Claude would have charged for the job (the hand-back's estimate)


_HANDED = ("SELECT id, run_id, job_id, ts, output_path, output_hash, "
           "COALESCE(unanswered_baseline_usd, 0) + COALESCE(baseline_cost_usd, 0) FROM attempts "
           "WHERE outcome = 'handed_back' AND final = 1 AND ")


def handed_back(ledger: Ledger, task_fingerprint: str, input_hash: str, models_key: str) -> HandedBackJob | None:
    """The newest hand-back of the same task definition, input and models."""
    row = ledger.read(lambda db: db.execute(
        _HANDED + "task_fingerprint = ? AND input_hash = ? AND models_key = ? ORDER BY id DESC LIMIT 1",
        (task_fingerprint, input_hash, models_key)).fetchone())
    return HandedBackJob(*row) if row else None


def handed_back_job(ledger: Ledger, run_id: str, job_id: str) -> HandedBackJob | None:
    row = ledger.read(lambda db: db.execute(_HANDED + "run_id = ? AND job_id = ? ORDER BY id DESC LIMIT 1",
                                            (run_id, job_id)).fetchone())
    return HandedBackJob(*row) if row else None
