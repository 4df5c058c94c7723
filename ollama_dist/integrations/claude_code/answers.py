"""`report_answers`: the caller's answers to the jobs a `run_tasks` call handed back to it.

The server keeps the handed-back jobs of its last KEPT_RUNS runs (`remember`); an answer
names its run and job, is validated against the job's output spec, written where the task
writes (or into the run's folder) and attached to the hand-back's ledger row
(``run.handback.record_answer``), so a re-run serves the job instead of handing it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollama_dist.errors import InputError

if TYPE_CHECKING:
    from ollama_dist.integrations.claude_code.mcp_server import ServerState
    from ollama_dist.tasks.model import Job

KEPT_RUNS = 20


def remember(kept: MutableMapping[str, dict[str, tuple[Job, Path]]], run_id: str,
             handed: Sequence[tuple[Job, Path]]) -> None:
    """Keep a run's handed-back jobs (with their root) for report_answers; forget the oldest runs."""
    if not handed:
        return
    kept[run_id] = {job.id: (job, root) for job, root in handed}
    for old in list(kept)[:-KEPT_RUNS]:
        del kept[old]


def _parsed(args: Mapping[str, Any]) -> tuple[str, list[Any]]:
    unknown = sorted(set(args) - {"run_id", "answers"})
    if unknown:
        raise InputError(f"unknown argument `{unknown[0]}`", hint="arguments: run_id, answers")
    run_id, answers = args.get("run_id"), args.get("answers")
    if not isinstance(run_id, str) or not isinstance(answers, list) or not answers:
        raise InputError("give `run_id` (a string) and `answers` (a list of {job, answer})")
    for i, item in enumerate(answers):
        if not isinstance(item, Mapping) or not isinstance(item.get("job"), str) or "answer" not in item:
            raise InputError(f"argument `answers`[{i}]: give {{job, answer}}")
    return run_id, answers


def report_answers(args: Mapping[str, Any], state: ServerState) -> dict[str, Any]:
    from ollama_dist.ledger.handbacks import handed_back_job
    from ollama_dist.ledger.store import Ledger
    from ollama_dist.run.handback import record_answer, relative_to

    run_id, answers = _parsed(args)
    jobs = state.handed.get(run_id)
    if jobs is None:
        raise InputError(f"argument `run_id`: {run_id!r} handed nothing back in this server's recent runs",
                         hint="give the run_id of a run_tasks result with handed_back jobs (the server keeps "
                              f"the last {KEPT_RUNS}); after a restart, run the tasks again")
    settings = state.settings()
    ledger = Ledger(settings.ledger_path)
    results = []
    try:
        for item in answers:
            found, handed = jobs.get(item["job"]), handed_back_job(ledger, run_id, item["job"])
            if found is None or handed is None:
                results.append({"job": item["job"], "status": "not_handed_back", "output": None,
                                "reason": f"run {run_id} did not hand back a job {item['job']!r}"})
                continue
            job, root = found
            text = item["answer"] if isinstance(item["answer"], str) else json.dumps(item["answer"])
            status, reason, output = record_answer(ledger, handed, job, text, root=root,
                                                   out_dir=settings.home / "runs" / run_id)
            results.append({"job": item["job"], "status": status, "reason": reason,
                            "output": relative_to(output, state.project) if output else None})
    finally:
        ledger.close()
    return {"run_id": run_id, "answers": results}
