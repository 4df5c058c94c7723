"""The MCP tools `ollama-dist mcp` lists: names, descriptions, input and output schemas, annotations.

Data only; ``mcp_server`` serves them. Claude Code hands the model a tool result's
`structuredContent`, so each output schema is the contract of what the model reads;
tests/integrations/test_mcp_tools.py checks every result against it with jsonschema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INSTRUCTIONS = (
    "Hand deterministic, checkable work (extraction, conversion, classification, formatting, "
    "boilerplate edits) to a local model: describe it as an ollama-dist task with an output "
    "format and, for JSON, a schema, so every answer is checked (format, schema, pattern; for "
    "extraction, that each value occurs in the input; with `output.agree: N`, that N local samples "
    "agree) and escalated to Claude when a check fails. A check proves what it checks, not that a "
    "value is right: each job's `checks` lists what was proved. Keep reasoning, design and review on "
    "Claude. route_tasks shows where jobs would "
    "go without running them; run_tasks runs them; router_status shows this session's savings."
)

EXAMPLE_TASK = ("name: city\\nprompt: Extract the city. Reply with JSON only.\\ninputs: {text: Our office moved "
                "to Lisbon.}\\noutput: {format: json, schema: {type: object, required: [city], "
                "properties: {city: {type: string}}}}")

S, N, INT, B = {"type": "string"}, {"type": "number"}, {"type": "integer"}, {"type": "boolean"}
S_OR_NULL = {"type": ["string", "null"]}
STRINGS = {"type": "array", "items": S}


def obj(properties: dict[str, Any], *, optional: tuple[str, ...] = (), closed: bool = True) -> dict[str, Any]:
    """An object schema whose properties are all required but `optional`."""
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "required": [k for k in properties if k not in optional]}
    if closed:
        schema["additionalProperties"] = False
    return schema


# ---------------------------------------------------------------------- inputs

TASK_PROPERTIES: dict[str, Any] = {
    "task_yaml": {"type": "string", "description": (
        "An ollama-dist task file given inline (YAML: `name`, `prompt`, `inputs`, `output` with "
        "`format` and `schema`; or `tasks:` a list). It reads as if it stood in the project directory: "
        "relative paths in it (`inputs.files`, `output.write`) resolve there, and inputs and written "
        "outputs must stay inside the project directory.")},
    "path": {"type": "string", "description": (
        "A task file or a folder of them, relative to the project directory; it must resolve inside "
        "the project directory (no `..` out of it, no absolute path or symlink leading elsewhere).")},
    "root": {"type": "string", "description": (
        "The run's root for `path` (inputs and `output.write` stay inside it), relative to the project "
        "directory and inside it; default: the project directory.")},
}
TASK_INPUT: dict[str, Any] = {"type": "object", "properties": TASK_PROPERTIES, "additionalProperties": False}
REFRESH: dict[str, Any] = {"type": ["boolean", "array"], "items": {"type": "string"}, "description": (
    "Discard cached answers and ask again: `true` for every task, or a list of task names. Use it when "
    "a cached answer is wrong; the old answers stay in the ledger.")}
RUN_INPUT: dict[str, Any] = {**TASK_INPUT, "properties": {**TASK_PROPERTIES, "refresh": REFRESH}}

ANSWERS_INPUT: dict[str, Any] = {"type": "object", "additionalProperties": False, "required": ["run_id", "answers"],
                                 "properties": {
    "run_id": {"type": "string", "description": "The `run_id` of the run_tasks result that handed the jobs back."},
    "answers": {"type": "array", "minItems": 1, "items": {
        "type": "object", "additionalProperties": False, "required": ["job", "answer"], "properties": {
            "job": {"type": "string", "description": "The handed-back job's `job` id."},
            "answer": {"description": "Your answer in the job's output_spec format: a string, or for json "
                                      "the JSON value itself."}}}}}}

STATUS_INPUT: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {"since": {
    "type": "string", "description": "Instead of this session: what ran since 7d, 12h, 30m or a date."}}}

# ---------------------------------------------------------------------- outputs

ROUTED_JOB = obj({"task": S, "job": S, "input": S_OR_NULL, "target": {"enum": ["local", "cloud"]}, "score": N,
                  "confidence": N, "rule": S_OR_NULL, "reasons": STRINGS, "error": S_OR_NULL, "notes": STRINGS},
                 closed=False)  # these are the fields a caller can count on; a decision may explain more

OUTPUT_SPEC = obj({"format": S, "schema": {"type": ["object", "boolean", "null"]}, "pattern": S_OR_NULL,
                   "write": S_OR_NULL, "language": S}, optional=("language",))

RUN_JOB = obj({
    "task": S, "job": S, "status": {"enum": ["ok", "failed", "handed_back"]}, "routed_to": {"enum": ["local", "cloud"]},
    "actual_model": S_OR_NULL, "escalated": B, "cache_hit": B, "reason": S_OR_NULL, "output": S_OR_NULL,
    "cost_usd": N, "baseline_cost_usd": N,
    "checks": {**STRINGS, "description": "the checks the answer passed (format, schema, pattern, grounded, "
                                          "agree): what status ok proved, not more"},
    "value": {"description": "the answer, as it passed `checks` (status ok)"},
    "value_omitted": {"type": "string", "description": "why `value` is left out: read it from `output`"},
    "instructions": {"type": "string", "description": "status handed_back: the job, for you to do"},
    "output_spec": OUTPUT_SPEC, "estimated_input_tokens": INT,
}, optional=("checks", "value", "value_omitted", "instructions", "output_spec", "estimated_input_tokens"), closed=False)

TOTALS = obj({key: INT for key in ("jobs", "ok", "failed", "handed_back", "routed_local", "routed_cloud",
                                 "answered_local", "escalated", "cache_hits", "input_tokens", "output_tokens")}
             | {"escalation_reasons": {"type": "object", "additionalProperties": INT}}
             | {key: N for key in ("cost_usd", "handed_back_cost_usd_estimated", "baseline_cost_usd", "saved_usd",
                                   "saved_pct")}, optional=("handed_back_cost_usd_estimated",), closed=False)

RUN_OUTPUT = obj({"run_id": S, "session": S, "jobs": {"type": "array", "items": RUN_JOB}, "totals": TOTALS,
                  "notes": STRINGS}, closed=False)

ANSWERS_OUTPUT = obj({"run_id": S, "answers": {"type": "array", "items": obj({
    "job": S, "status": {"enum": ["recorded", "invalid", "not_handed_back"]}, "reason": S_OR_NULL,
    "output": S_OR_NULL})}})

_WINDOW = {"type": ["object", "null"]}
STATUS_OUTPUT = obj({
    "scope": obj({"kind": {"enum": ["session", "since", "all"]}, "session": S_OR_NULL, "since": S_OR_NULL,
                  "label": S}),
    "ledger_found": B,
    **{key: INT for key in ("jobs", "local", "cloud", "failed", "handed_back", "escalated", "routed_local",
                          "routed_cloud", "tokens_saved", "cache_hits")},
    **{key: N for key in ("diversion_rate", "escalation_rate", "cost_usd", "baseline_cost_usd",
                          "handed_back_cost_usd_estimated", "savings_usd", "savings_pct", "cost_per_job_usd")},
    "escalation_reasons": {"type": "object", "additionalProperties": INT},
    "plan_usage": {"type": ["object", "null"], "properties": {
        "first_in_scope": _WINDOW, "last_in_scope": _WINDOW, "latest": {"type": "object"}}},
    "p50_latency_s": {"type": "object", "additionalProperties": N},
    "p95_latency_s": {"type": "object", "additionalProperties": N},
    "rework": obj({"jobs": INT, "rate": N, "window_s": N}),
    "breaker": {"type": "object", "required": ["state", "openings"],
                "properties": {"state": {"enum": ["open", "closed"]}, "openings": INT}},
    "warnings": STRINGS, "days": {"type": "array", "items": {"type": "object"}},
    "trust": {"type": "object", "additionalProperties": {"type": "object"}},
}, optional=("handed_back_cost_usd_estimated", "plan_usage", "days", "trust"),
    closed=False)  # router-status may grow figures; these are the ones a caller can count on

# ---------------------------------------------------------------------- the tools


@dataclass(frozen=True)
class Tool:
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    read_only: bool


TOOLS: dict[str, Tool] = {
    "route_tasks": Tool(
        "Decide, without calling any model, where each job of a task file would run: `local` "
        "(deterministic work, the local model) or `cloud` (reasoning, Claude), with the score, "
        "confidence, the rule that decided and the reasons. Give `task_yaml` or `path`.",
        TASK_INPUT, obj({"jobs": {"type": "array", "items": ROUTED_JOB}}), read_only=True),
    "run_tasks": Tool(
        "Run the jobs of a task file: local ones on the local model, the rest on Claude; every "
        "answer is checked against the task's output format, schema and pattern, extracted values "
        "against the input (`output.grounded`, on by default for extraction into JSON/YAML), and "
        "with `output.agree: N` across N local samples; a local answer that fails a check is escalated "
        "to Claude. Returns each job's status, its value (or output file) and `checks` (the checks it "
        "passed: format, schema, pattern, grounded, agree; a value can pass them and still be wrong), "
        "routed_to, actual_model (null when no model answered), escalated and why, and the totals with "
        "cost, baseline and savings (on what was answered). Inside a "
        "Claude Code session, cloud work comes back as jobs with status `handed_back` (do them yourself "
        "from their `instructions` and `output_spec`, then give your answers to report_answers so a "
        "re-run does not hand them back again). Give `task_yaml` or `path`. Example `task_yaml`: "
        f"\"{EXAMPLE_TASK}\"",
        RUN_INPUT, RUN_OUTPUT, read_only=False),
    "report_answers": Tool(
        "After run_tasks handed jobs back to you: give your answers (`run_id` and, per job, `job` and "
        "`answer`). Each is validated against the job's output_spec and written where the task writes "
        "(`output_spec.write`), so a re-run of the same tasks counts the job done instead of handing it "
        "back again. An answer that fails its check is refused with the reason.",
        ANSWERS_INPUT, ANSWERS_OUTPUT, read_only=False),
    "router_status": Tool(
        "What the router did in this Claude Code session (or `since` a time): jobs, diversion and "
        "escalation rates with reasons, cost, baseline cost (all on Claude), savings, tokens kept off "
        "Claude beside the plan usage the status line recorded, latency, the breaker's state, warnings, "
        "and per task the measured trust in its local answers (right, wrong, cut off at max_tokens, "
        "accuracy, advice) that the router acts on.",
        STATUS_INPUT, STATUS_OUTPUT, read_only=True),
}
