"""Optional OpenTelemetry export: the ledger's attempts as spans, so the routing numbers
show up in the observability stack a team already runs.

Off by default; the extra `otel` installs it. A run calls `export_run(connection, run_id)`
once its attempts are recorded. That is a no-op unless OpenTelemetry is installed and
either the process has a tracer provider (a Python caller set one, or the program runs
under `opentelemetry-instrument`) or the standard variable OTEL_TRACES_EXPORTER asks for
one (`otlp` with opentelemetry-exporter-otlp-proto-http and the usual OTEL_EXPORTER_OTLP_*
settings, or `console`, printed on stderr). No ollama-dist setting is involved.

One span per attempt, named `chat {model}`, with the GenAI semantic-convention attributes
(gen_ai.operation.name, gen_ai.provider.name, gen_ai.request.model,
gen_ai.response.model, gen_ai.usage.input_tokens, gen_ai.usage.output_tokens, error.type)
plus routing.lane, routing.routed_to, routing.escalated, routing.outcome, routing.shadow
(a `run --shadow` comparison call) and the job's identity; attempts that called no model
(a cache hit, a breaker skip) carry the routing attributes only. The attempt spans are
children of one `ollama-dist run` span.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import sqlite3

AttributeValue = str | bool | int | float
CALLS = ("ok", "invalid", "error")  # outcomes of an attempt that called a model
COLUMNS = ("run_id", "session", "job_id", "task", "routed_to", "lane", "backend", "model", "host", "attempt",
           "outcome", "reason", "final", "input_tokens", "output_tokens", "latency_s", "cost_usd", "ts")


@dataclass(frozen=True)
class SpanRecord:
    """What one ledger attempt becomes: pure data, before any OpenTelemetry object."""

    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, AttributeValue]
    error: str | None = None


def provider_name(backend: str) -> str:
    """gen_ai.provider.name for a ledger backend: claude -> anthropic, ollama -> ollama,
    openai_compat:URL -> openai (the protocol spoken), embedded -> llama_cpp."""
    base = backend.split("+", 1)[0].split(":", 1)[0]
    if base.startswith("claude"):  # claude, claude-batch
        return "anthropic"
    return {"openai_compat": "openai", "embedded": "llama_cpp"}.get(base, base)


def attempt_span(row: Mapping[str, Any]) -> SpanRecord:
    outcome = str(row["outcome"])
    model = str(row["model"])
    end_ns = int(float(row["ts"]) * 1e9)
    start_ns = end_ns - int(float(row["latency_s"] or 0.0) * 1e9)
    shadow = str(row["reason"] or "").startswith("shadow")  # `run --shadow`: asked for comparison only
    attributes: dict[str, AttributeValue] = {
        "routing.lane": str(row["lane"]),
        "routing.routed_to": str(row["routed_to"]),
        "routing.escalated": row["routed_to"] == "local" and row["lane"] == "cloud" and not shadow,
        "routing.shadow": shadow,
        "routing.outcome": outcome,
        "routing.attempt": int(row["attempt"]),
        "routing.final": bool(row["final"]),
        "ollama_dist.run_id": str(row["run_id"]),
        "ollama_dist.session": str(row["session"]),
        "ollama_dist.job_id": str(row["job_id"]),
        "ollama_dist.task": str(row["task"]),
        "ollama_dist.cost_usd": float(row["cost_usd"] or 0.0),
    }
    if outcome not in CALLS:
        if row["reason"]:
            attributes["routing.reason"] = str(row["reason"])
        return SpanRecord(f"routing {outcome}", start_ns, end_ns, attributes)
    attributes.update({
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider_name(str(row["backend"])),
        "gen_ai.request.model": model,
    })
    if outcome != "error":
        attributes["gen_ai.response.model"] = model
        attributes["gen_ai.usage.input_tokens"] = int(row["input_tokens"] or 0)
        attributes["gen_ai.usage.output_tokens"] = int(row["output_tokens"] or 0)
    if outcome == "invalid" and row["reason"]:
        attributes["routing.reason"] = str(row["reason"])[:500]
    if row["host"]:
        parts = urlsplit(str(row["host"]))
        if parts.hostname:
            attributes["server.address"] = parts.hostname
        if parts.port:
            attributes["server.port"] = parts.port
    error = None
    if outcome == "error":
        error = str(row["reason"] or "error")
        attributes["error.type"] = error
    return SpanRecord(f"chat {model}", start_ns, end_ns, attributes, error)


def run_rows(conn: sqlite3.Connection, run_id: str) -> list[dict[str, Any]]:
    """The run's attempts in order. Found through the run's session and start time (the
    index attempts_session), as no index leads with run_id."""
    cur = conn.execute(
        f"SELECT {', '.join('a.' + c for c in COLUMNS)} FROM runs AS r JOIN attempts AS a "
        "ON a.session = r.session AND a.ts >= r.started_at AND a.run_id = r.run_id WHERE r.run_id = ? "
        "ORDER BY a.id", (run_id,))
    return [dict(zip(COLUMNS, row)) for row in cur.fetchall()]


# ----------------------------------------------------------------------------- OpenTelemetry


def installed() -> bool:
    return importlib.util.find_spec("opentelemetry") is not None


def tracer_provider(env: Mapping[str, str] | None = None) -> tuple[Any, bool] | None:
    """(the provider to use, whether it is ours to flush and shut down), or None when export is off."""
    if not installed():
        return None
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if not isinstance(current, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return current, False
    env = os.environ if env is None else env
    kind = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if kind in ("", "none"):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError:
        return None
    exporter: SpanExporter
    if kind == "console":
        exporter = ConsoleSpanExporter(out=sys.stderr)
    elif kind == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            return None
        exporter = OTLPSpanExporter()
    else:
        return None
    name = env.get("OTEL_SERVICE_NAME") or "ollama-dist"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, True


def emit(records: Iterable[SpanRecord], provider: Any, *, run_id: str) -> int:
    """Send `records` as spans, children of one run span; returns how many attempt spans."""
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    spans = list(records)
    if not spans:
        return 0
    tracer = provider.get_tracer("ollama_dist")
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    root = tracer.start_span("ollama-dist run", start_time=start, attributes={"ollama_dist.run_id": run_id})
    parent = trace.set_span_in_context(root)
    for record in spans:
        span = tracer.start_span(record.name, context=parent, kind=SpanKind.CLIENT, start_time=record.start_ns,
                                 attributes=record.attributes)
        if record.error is not None:
            span.set_status(Status(StatusCode.ERROR, record.error))
        span.end(end_time=record.end_ns)
    root.end(end_time=end)
    return len(spans)


def export_run(conn: sqlite3.Connection, run_id: str, *, provider: Any = None,
               env: Mapping[str, str] | None = None) -> int:
    """Export the attempts of `run_id` as spans; returns how many (0 when export is off).

    provider: a TracerProvider to use (tests, Python callers); by default the process's
    own, else one made from OTEL_TRACES_EXPORTER, else nothing is done (not even a query).
    """
    own = False
    if provider is None:
        found = tracer_provider(env)
        if found is None:
            return 0
        provider, own = found
    count = emit((attempt_span(row) for row in run_rows(conn, run_id)), provider, run_id=run_id)
    if own:
        provider.shutdown()  # flushes the batch
    return count
