"""Measured trust per task: how a task's past local answers ended, read from the ledger's attempts.

One definition for the router (`routing.learning.distrust`) and `router-status` (its trust table).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from ollama_dist.ledger import reasons


class TaskHistory(BaseModel):
    """What the ledger knows of a task's past local answers: the measured trust in the local lane.

    Per job that reached the local lane (cache hits by a local answer included), by how its local
    answers ended: accepted (and, when Claude was asked too, `run --shadow`, the same value), or
    invalid. An invalid ending is *wrong* when a value was not in the input or the samples
    disagreed (ledger.reasons.WRONG), *cut off* at max_tokens, or else malformed. An accepted
    answer whose shadow from Claude differs is wrong as well."""

    model_config = ConfigDict(frozen=True)

    local_jobs: int = 0
    local_failures: int = 0  # jobs whose local answers ended invalid (escalated or failed), for any reason
    local_right: int = 0  # jobs whose local answer was accepted and not contradicted
    local_wrong: int = 0  # jobs whose local answer was shown wrong (ungrounded, disagreeing, contradicted)
    local_cut_off: int = 0  # jobs whose local answers ended cut off at max_tokens (and were not shown wrong)
    shadowed: int = 0  # accepted local answers compared with Claude's (json, yaml)
    shadow_differs: int = 0  # ... of which Claude's differed

    @property
    def judged(self) -> int:
        """Jobs whose local answer was either accepted or shown wrong: what accuracy is measured on."""
        return self.local_right + self.local_wrong

    @property
    def accuracy(self) -> float | None:
        """Right over right and wrong (cut-off and malformed answers are no values: left out)."""
        return self.local_right / self.judged if self.judged else None


def task_history(conn: sqlite3.Connection, names: Sequence[str]) -> dict[str, TaskHistory]:
    """Per task in `names`, the trust its local answers earned (see TaskHistory)."""
    marks = ", ".join("?" for _ in names)
    local = "lane = 'local' AND outcome = 'invalid'"
    rows = conn.execute(
        "SELECT task, COUNT(*), TOTAL(invalid AND NOT passed), TOTAL(passed AND NOT differs), "
        "TOTAL((wrong AND NOT passed) OR differs), "
        "TOTAL(cut AND NOT wrong AND NOT passed), TOTAL(compared), TOTAL(differs) FROM ("
        "SELECT task, MAX(lane = 'local' AND outcome IN ('ok', 'cache_hit') AND final = 1) AS passed, "
        f"MAX({local}) AS invalid, MAX({local} AND {reasons.like(reasons.WRONG)}) AS wrong, "
        f"MAX({local} AND {reasons.like(reasons.CUT_OFF)}) AS cut, "
        f"MAX(lane = 'cloud' AND reason IN ('{reasons.SHADOW_SAME}', '{reasons.SHADOW_DIFFERS}')) AS compared, "
        f"MAX(lane = 'cloud' AND reason = '{reasons.SHADOW_DIFFERS}') AS differs, "
        "MAX(lane = 'local' AND outcome != 'skipped') AS reached "
        f"FROM attempts WHERE task IN ({marks}) GROUP BY task, run_id, job_id) WHERE reached GROUP BY task",
        list(names),
    ).fetchall()
    return {task: TaskHistory(local_jobs=jobs, local_failures=int(failed), local_right=int(right),
                              local_wrong=int(wrong), local_cut_off=int(cut), shadowed=int(compared),
                              shadow_differs=int(differs))
            for task, jobs, failed, right, wrong, cut, compared, differs in rows}
