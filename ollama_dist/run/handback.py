"""Hand-back: inside Claude Code the cloud is the caller.

When `run_tasks` is called from a Claude Code session, the caller is already Claude,
mid-session: sending its cloud-routed jobs (and the local jobs whose local attempts
failed) to the Anthropic API would bill twice, and for a subscription log-in (no API
key) it fails. Instead the cloud lane is `CallerBackend`, which answers nothing: the
dispatcher records such a job as `handed_back` (no cost, estimated tokens, model
`caller`) and the job comes back to the caller with one `instructions` string and an
`output_spec`, everything it needs to do the job itself.

`cloud_mode` decides: the setting `mcp.cloud` (caller | api) when given; else
`caller` inside a Claude Code session (CLAUDE_CODE_SESSION_ID set), `api` elsewhere.
`ollama-dist run --hand-back` asks for the same from a terminal or a script.

A re-run hands back only what was not answered yet. The caller answers a handed-back job
by writing the file its `output_spec.write` names (after the hand-back, and valid), or by
giving the answer to the MCP tool `report_answers` (`record_answer`: validated, written
where the task writes or in the run's folder, and attached to the hand-back's ledger row).
Either way the next run of the same task definition, input and models serves the job as a
cache hit (`caller_answer`) instead of handing it back again. The hand-back stays recorded
as such: the caller did that work, so it is never counted as saved; the re-run's cache hit
is counted like any cache hit (at the hand-back's estimate: nobody was asked again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ollama_dist.backends.base import Completion, Lane, Request
from ollama_dist.errors import BackendError
from ollama_dist.ledger.store import CachedAnswer
from ollama_dist.routing.router import estimate_tokens

if TYPE_CHECKING:
    from ollama_dist.config import Settings
    from ollama_dist.ledger.handbacks import HandedBackJob
    from ollama_dist.ledger.store import Ledger
    from ollama_dist.tasks.model import Job

CloudMode = Literal["caller", "api"]
CALLER = "caller"  # the backend and model name a handed-back job is recorded under
LARGE_INPUT_TOKENS = 8000  # past this a file input is named by its path, not pasted into the instructions


def cloud_mode(settings: Settings, env: Mapping[str, str]) -> CloudMode:
    """Where `run_tasks` sends cloud work: back to the caller, or to the API."""
    if settings.mcp.cloud is not None:
        return settings.mcp.cloud
    return "caller" if env.get("CLAUDE_CODE_SESSION_ID") else "api"


class HandedBack(BackendError):
    """Not a failure: the cloud lane is the caller, so the job goes back to it."""

    reason = "handed_back"
    escalate = False


class CallerBackend:
    """The cloud lane when the caller is Claude: every request is handed back, none is sent."""

    name = CALLER
    lane: Lane = "cloud"

    async def complete(self, request: Request) -> Completion:
        raise HandedBack("handed back to the calling Claude")


def relative_to(path: str, base: Path) -> str:
    """`path` relative to `base` when it lies inside, else as given (absolute)."""
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return path


def instructions(job: Job, reasons: Sequence[str], root: Path) -> str:
    """One string the caller can act on: the task's system text, its prompt and the input."""
    task = job.task
    large = job.input_path is not None and estimate_tokens(job.input_text) > LARGE_INPUT_TOKENS
    parts = [f"ollama-dist task `{task.name}`, job `{job.id}`: do this job yourself."]
    if reasons:
        parts.append("The local model could not: " + "; ".join(reasons) + ".")
    if task.system:
        parts.append(f"System instructions:\n{task.system}")
    if large:
        assert job.input_path is not None
        where = root / job.input_path
        prompt = task.prompt.replace("{input}", f"(the contents of {where})").replace("{path}", job.input_path)
        parts.append(f"Prompt:\n{prompt}")
        parts.append(f"The input is the file {where} (about {estimate_tokens(job.input_text)} tokens, "
                     "too large to include here): read it and apply the prompt to it.")
    else:
        parts.append(f"Prompt:\n{job.prompt}")
    parts.append(_answer_line(job))
    return "\n\n".join(parts)


def _answer_line(job: Job) -> str:
    out = job.task.output
    line = f"Answer as {out.format}"
    if out.schema_ is not None:
        line += " that validates against the JSON Schema in output_spec.schema"
    if out.pattern:
        line += f", matching the regular expression {out.pattern!r}"
    line += "."
    if job.write_path is not None:
        line += f" Write the answer to {job.write_path}."
    return line


def output_spec(job: Job) -> dict[str, Any]:
    """format, schema, pattern and where to write (an absolute path; the MCP tool gives it
    relative to the project), as the task file gives them."""
    out = job.task.output
    spec: dict[str, Any] = {"format": out.format, "schema": out.schema_, "pattern": out.pattern,
                            "write": str(job.write_path) if job.write_path is not None else None}
    if out.language:
        spec["language"] = out.language
    return spec


def estimated_tokens(job: Job, local_output_tokens: int | None) -> tuple[int, int]:
    """(input, output) tokens the job would take on Claude: the prompt's length; the local
    answer's length when there was one, else a quarter of `max_tokens`."""
    task = job.task
    output = local_output_tokens or max(1, task.max_tokens // 4)
    return estimate_tokens((task.system or "") + job.prompt), min(output, task.max_tokens)


def work(job: Job, reasons: Sequence[str], root: Path, *, input_tokens: int,
         estimated_cost_usd: float) -> dict[str, Any]:
    """What a handed-back job carries in the report."""
    return {"instructions": instructions(job, reasons, root), "output_spec": output_spec(job),
            "estimated_input_tokens": input_tokens, "estimated_cost_usd": round(estimated_cost_usd, 8)}


def remaining(report: Mapping[str, Any]) -> dict[str, Any]:
    """`run --hand-back`'s stdout: the work left for the caller (handed back, or failed), and the totals."""
    left = []
    for job in report["jobs"]:
        if job["status"] == "ok":
            continue
        entry = {key: job[key] for key in ("task", "job", "status", "routed_to", "reason")}
        entry.update(job.get("handed_back") or {})
        left.append(entry)
    return {"run_id": report["run_id"], "session": report["session"], "remaining": left,
            "answered": [{"task": j["task"], "job": j["job"], "output": j["output"]}
                         for j in report["jobs"] if j["status"] == "ok"],
            "totals": report["totals"], "notes": report["notes"]}


def caller_answer(ledger: Ledger, job: Job, models_key: str) -> CachedAnswer | None:
    """The caller's answer to this job's last hand-back, served like a cached answer: the one it
    reported, else the job's output file when written since the hand-back (the dispatcher then
    checks the file against its hash and the output spec, as for any cached answer)."""
    from ollama_dist.ledger.handbacks import handed_back
    from ollama_dist.run.outputs import file_digest

    handed = handed_back(ledger, job.task.fingerprint(), job.input_hash, models_key)
    if handed is None:
        return None
    path, sha = handed.output_path, handed.output_hash
    if path is None and job.write_path is not None:
        try:
            fresh = job.write_path.stat().st_mtime >= handed.ts - 1.0
        except OSError:
            fresh = False
        if fresh:
            path, sha = str(job.write_path), file_digest(job.write_path)
    if path is None or sha is None:
        return None
    return CachedAnswer(handed.job_id, CALLER, CALLER, path, sha, handed.estimated_cost_usd, 0, 0)


def record_answer(ledger: Ledger, handed: HandedBackJob, job: Job, answer: str, *, root: Path,
                  out_dir: Path) -> tuple[str, str | None, str | None]:
    """The caller's answer to a handed-back job: (status, reason, where it was written).
    Invalid answers are refused; a valid one is written as the task says and attached to the hand-back."""
    from ollama_dist.checks.validate import validate
    from ollama_dist.run.outputs import deliver, digest

    verdict = validate(answer, job.task.output.spec())
    if not verdict.ok:
        return "invalid", verdict.reason, None
    delivery = deliver(job, verdict.text, root=root, out_dir=out_dir)
    if delivery.path is None:
        return "invalid", delivery.failure(job), None
    ledger.attach_answer(handed.row_id, str(delivery.path), digest(verdict.text))
    return "recorded", delivery.failure(job) if delivery.error else None, str(delivery.path)
