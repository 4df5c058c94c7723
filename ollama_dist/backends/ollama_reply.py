"""What an Ollama `/api/chat` answer says, read from its body: one JSON object, or NDJSON chunks.

The backend asks with `"stream": false`, but a shim in front of Ollama (or an old proxy) may
stream anyway. Such a body is read as the official client reads a stream: every line is an
object; a line with `"error"` is the error, though the status is 200 (once streaming has
started the server cannot change it, PROTOCOLS.md A.5); content and thinking pieces join up;
the `done` line carries done_reason and the metrics. A stream without its `done` line was cut.

Thinking models put their reasoning in `message.thinking`; templates without a thinking parser
leave it in the content as a leading `<think>...</think>`. Either way it is not the answer: it is
split off here, so validation never sees it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

from ollama_dist.errors import BadResponse

_THINK_BLOCK = re.compile(r"\s*<think>(.*?)(?:</think>|\Z)\s*", re.S)


@dataclass(frozen=True)
class ChatReply:
    content: str
    thinking: str
    model: str | None
    done_reason: str | None
    prompt_eval_count: int
    eval_count: int
    streamed: bool = False  # the server sent NDJSON chunks, not one object


def parse_chat(response: httpx.Response, *, where: str) -> ChatReply:
    """The reply in `response` (a 2xx); BadResponse when it is not one."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _from_lines(response.text, where)
    if not isinstance(body, dict):
        raise BadResponse(f"Ollama at {where} answered with JSON that is not an object")
    if "error" in body:
        raise BadResponse(f"Ollama at {where} reported an error: {body['error']}")
    return _reply([body], where, streamed=False)


def _from_lines(text: str, where: str) -> ChatReply:
    chunks: list[dict[str, Any]] = []
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            item = None
        if not isinstance(item, dict):
            raise BadResponse(f"Ollama at {where} answered with a body that is not JSON: {text.strip()[:120]!r}")
        if "error" in item:
            raise BadResponse(f"Ollama at {where} reported an error mid-answer (HTTP 200, after {len(chunks)} "
                              f"chunk(s)): {item['error']}")
        chunks.append(item)
    if not chunks or chunks[-1].get("done") is not True:
        raise BadResponse(f"Ollama at {where} streamed an answer that stopped before its final (done) chunk")
    return _reply(chunks, where, streamed=True)


def _reply(chunks: list[dict[str, Any]], where: str, *, streamed: bool) -> ChatReply:
    content: list[str] = []
    thinking: list[str] = []
    for chunk in chunks:
        message = chunk.get("message")
        piece = message.get("content") if isinstance(message, dict) else None
        if not isinstance(piece, str):
            raise BadResponse(f"Ollama at {where} answered without message.content")
        content.append(piece)
        trace = message.get("thinking") if isinstance(message, dict) else None
        thinking.append(trace if isinstance(trace, str) else "")
    final = chunks[-1]
    text, inline = split_think_tags("".join(content))
    return ChatReply(
        content=text,
        thinking="".join(thinking) + inline,
        model=str(final["model"]) if final.get("model") else None,
        done_reason=str(final["done_reason"]) if final.get("done_reason") else None,
        prompt_eval_count=_int(final.get("prompt_eval_count")),
        eval_count=_int(final.get("eval_count")),
        streamed=streamed,
    )


def split_think_tags(content: str) -> tuple[str, str]:
    """(answer, trace): a leading `<think>...</think>` is the trace; unclosed, all of it is."""
    found = _THINK_BLOCK.match(content)
    if found is None:
        return content, ""
    return content[found.end():], found.group(1).strip()


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
