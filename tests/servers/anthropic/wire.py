"""The Anthropic wire for the fake: model ids, error shapes, token counts, request checks, SSE.

Values and pure functions only; :mod:`tests.servers.anthropic.server` serves them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Model ids the fake knows, besides the same ids with a ``-YYYYMMDD`` snapshot suffix.
DEFAULT_MODELS: tuple[str, ...] = (
    "claude-haiku-5-5",
    "claude-sonnet-5-5",
    "claude-opus-5-5",
    "claude-sonnet-5",
    "claude-opus-5",
    "claude-opus-4-8",
    "claude-opus-4-7",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "claude-opus-4-5",
    "claude-sonnet-4-5",
)

ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}

_SNAPSHOT = re.compile(r"-\d{8}$")
KEPT_HEADERS = (
    "anthropic-version",
    "anthropic-beta",
    "content-type",
    "accept",
    "x-stainless-retry-count",
    "idempotency-key",
    "user-agent",
)


def model_major(model: str) -> int | None:
    """The generation in a model id: 5 for claude-sonnet-5-5, 4 for claude-haiku-4-5, 3 for claude-3-7-sonnet."""
    m = re.match(r"^claude-(?:[a-z]+-)?(\d+)", model)
    return int(m.group(1)) if m else None


def tokens(text: str) -> int:
    """Deterministic token count: ceil(len / 4)."""
    return (len(text) + 3) // 4



def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            else:
                parts.append(json.dumps(block, sort_keys=True))
        return "".join(parts)
    return ""


class ApiError(Exception):
    """An error answer: HTTP status, error type, message."""

    def __init__(self, status: int, message: str | None = None, error_type: str | None = None) -> None:
        default_type, default_message = ERROR_TYPES.get(status, ("api_error", "Error"))
        self.status = status
        self.error_type = error_type or default_type
        self.message = message or default_message
        super().__init__(self.message)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received. Credentials are never stored, only which scheme carried them."""

    method: str
    path: str
    headers: dict[str, str]
    auth: str | None  # "bearer", "x-api-key" or None
    body: Any



@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    events: list[bytes] | None = None  # an SSE stream instead of a body




def check_params(body: Any, models: frozenset[str], *, need_max_tokens: bool) -> None:
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    required = ("model", "max_tokens", "messages") if need_max_tokens else ("model", "messages")
    for name in required:
        if name not in body:
            raise ApiError(400, f"{name}: Field required")
    model = body["model"]
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model: Input should be a valid string")
    if need_max_tokens and (not isinstance(body["max_tokens"], int) or body["max_tokens"] < 0):
        raise ApiError(400, "max_tokens: Input should be a positive integer")
    messages = body["messages"]
    # Claude Code (claude-cli) also sends `role: "system"` messages (budget notes, skill listings)
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and m.get("role") in ("user", "assistant", "system") and "content" in m for m in messages
    ):
        raise ApiError(400, "messages: each message needs a role of 'user', 'assistant' or 'system' and content")
    if model not in models and _SNAPSHOT.sub("", model) not in models:
        raise ApiError(404, f"model: {model}")
    if (model_major(model) or 0) >= 5:
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                raise ApiError(400, f"{name}: sampling parameters are not supported for {model}")
        if (body.get("thinking") or {}).get("type") == "enabled":
            raise ApiError(
                400, f"thinking.type.enabled is not supported for {model}; use thinking.type.adaptive"
            )
    output_config = body.get("output_config") or {}
    if not isinstance(output_config, dict):
        raise ApiError(400, "output_config: Input should be an object")
    effort = output_config.get("effort")
    if effort is not None and effort not in ("low", "medium", "high", "xhigh", "max"):
        raise ApiError(400, f"output_config.effort: unknown value {effort!r}")
    fmt = output_config.get("format")
    if fmt is not None and (
        not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict)
    ):
        raise ApiError(400, "output_config.format: expected {type: json_schema, schema: {...}}")


def structured_output_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """Claude Code's `StructuredOutput` tool when offered and not yet answered in this conversation."""
    tools = body.get("tools") or []
    tool = next((t for t in tools if isinstance(t, dict) and t.get("name") == "StructuredOutput"), None)
    if tool is None:
        return None
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            return None
    return tool


def input_tokens(body: dict[str, Any]) -> int:
    text = text_of(body.get("system") or "")
    text += "".join(text_of(m.get("content")) for m in body["messages"])
    if body.get("tools"):
        text += json.dumps(body["tools"], sort_keys=True)
    return tokens(text)


def sse(message: dict[str, Any]) -> Iterator[bytes]:
    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
    yield event("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(message["content"]):
        if block["type"] == "thinking":
            empty: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif block["type"] == "tool_use":
            empty = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in _pieces(json.dumps(block["input"]))]
        else:
            empty = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        yield event("content_block_start", {"type": "content_block_start", "index": index, "content_block": empty})
        if index == 0:
            yield event("ping", {"type": "ping"})
        for delta in deltas:
            yield event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield event("content_block_stop", {"type": "content_block_stop", "index": index})
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    yield event("message_delta", {"type": "message_delta", "delta": stop, "usage": usage})
    yield event("message_stop", {"type": "message_stop"})


def _pieces(text: str, size: int = 16) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


