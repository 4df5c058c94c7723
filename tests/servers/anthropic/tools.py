"""Scripted tool use: a model that calls the client's tools, so a client such as Claude Code can be
driven through them (``AnthropicServer.use_tools``), and ``tool_results`` to read back what it sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.servers.anthropic.wire import ApiError

#: (request body) -> the tool calls to answer with, each {"name": ..., "input": {...}}; None: a text answer
ToolPlan = Callable[[dict[str, Any]], "list[dict[str, Any]] | None"]


def planned_calls(plan: ToolPlan | None, body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The calls ``plan`` makes for this request; a call of a tool the request does not offer is a test bug (400)."""
    calls = plan(body) if plan is not None else None
    if not calls:
        return None
    offered = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
    for call in calls:
        if call["name"] not in offered:
            raise ApiError(400, f"tools: the scripted call of {call['name']!r} is not among the tools offered")
    return list(calls)


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `tool_result` blocks of a request's messages (what a client sent back for its tool calls)."""
    found = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            found.extend(b for b in content if isinstance(b, dict) and b.get("type") == "tool_result")
    return found
