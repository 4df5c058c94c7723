"""The one seam every model backend sits behind."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

Lane = Literal["local", "cloud"]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class Request(BaseModel):
    """One model call. `schema_` is the task's JSON Schema when the answer must be JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    model: str
    messages: tuple[Message, ...]
    system: str | None = None
    max_tokens: int = 1024
    temperature: float = 0.0
    seed: int | None = None  # local backends only (agreement samples); never sent to Claude
    timeout_s: float = 120.0
    output_format: str = "text"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    effort: str | None = None

    def prompt_chars(self) -> int:
        return len(self.system or "") + sum(len(m.content) for m in self.messages)


class Completion(BaseModel):
    """What a backend answered, in one shape whichever backend it was."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    model: str
    backend: str
    lane: Lane
    input_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0  # of output_tokens, the model's reasoning trace (an estimate where not reported)
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    latency_s: float = 0.0
    stop_reason: str | None = None
    host: str | None = None
    warnings: tuple[str, ...] = ()
    reported_cost_usd: float | None = None  # what the backend itself said it cost (Claude Code)


class Backend(Protocol):
    """A model backend: one async method. Errors are `ollama_dist.errors.BackendError`."""

    name: str
    lane: Lane

    async def complete(self, request: Request) -> Completion: ...


def closed_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` whose objects admit no properties beyond the listed ones.

    For grammar-constrained local generation: every answer valid under the closed copy is
    valid under the original, and small models stop inventing keys. Validation still uses
    the task's own schema.
    """

    def close(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: close(v) for k, v in node.items()}
            if isinstance(out.get("properties"), dict) and "additionalProperties" not in out \
                    and "patternProperties" not in out:
                out["additionalProperties"] = False
            return out
        if isinstance(node, list):
            return [close(v) for v in node]
        return node

    closed: dict[str, Any] = close(schema)
    return closed
