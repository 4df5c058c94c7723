"""The fake's answers on the wire: Ollama chunks and finals (JSON or NDJSON), OpenAI completions (JSON or SSE)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from tests.servers.ollama.handler import Handler, end_stream, send_json, start_stream, write_chunk
from tests.servers.ollama.wire import Job, Result, pieces, timestamp


class Responses:
    """The response half of :class:`~tests.servers.ollama.FakeOllama` (a mixin)."""

    _ids: itertools.count[int]

    def _fail(self, h: Handler, endpoint: str, status: int, message: str) -> None:
        if endpoint == "openai":
            kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
            body: dict[str, Any] = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        else:
            body = {"error": message}
        send_json(h, status, body)

    def _chunk(self, job: Job, piece: str, *, done: bool = False, thinking: str = "") -> dict[str, Any]:
        chunk: dict[str, Any] = {"model": job.model, "created_at": timestamp()}
        if job.endpoint == "generate":
            chunk["response"] = piece
            if thinking:
                chunk["thinking"] = thinking
        else:
            chunk["message"] = {"role": "assistant", "content": piece}
            if thinking:
                chunk["message"]["thinking"] = thinking
        chunk["done"] = done
        return chunk

    def _final(self, job: Job, result: Result, text: str, thinking: str = "") -> dict[str, Any]:
        final = self._chunk(job, text, done=True, thinking=thinking)
        final["done_reason"] = result.done_reason
        if job.endpoint == "generate" and job.body.get("raw") is not True:
            final["context"] = list(range(1, min(result.prompt_tokens + result.eval_count, 64) + 1))
        if result.run_ns:  # split the measured time: prompt tokens run ~10x faster than generated ones
            weight = result.prompt_tokens + 10 * result.eval_count or 1
            prompt_ns = result.run_ns * result.prompt_tokens // weight
            eval_ns = result.run_ns - prompt_ns
        else:
            prompt_ns = result.prompt_tokens * 100_000
            eval_ns = result.eval_count * 10_000_000
        total_ns = max(int((time.perf_counter() - result.started) * 1e9), result.load_ns + prompt_ns + eval_ns)
        metrics = {
            "total_duration": total_ns,
            "load_duration": result.load_ns,
            "prompt_eval_count": result.prompt_tokens,
            "prompt_eval_duration": prompt_ns,
            "eval_count": result.eval_count,
            "eval_duration": eval_ns,
        }
        final.update({k: v for k, v in metrics.items() if v})  # omitempty
        return final

    def _respond(self, h: Handler, job: Job, result: Result) -> None:
        if job.endpoint == "openai":
            self._respond_openai(h, job, result)
        elif not job.stream:
            send_json(h, 200, self._final(job, result, result.text, result.thinking))
        else:
            start_stream(h, "application/x-ndjson")
            for piece in pieces(result.thinking) if result.thinking else []:
                write_chunk(h, json.dumps(self._chunk(job, "", thinking=piece)).encode() + b"\n")
            for piece in pieces(result.text):
                write_chunk(h, json.dumps(self._chunk(job, piece)).encode() + b"\n")
            write_chunk(h, json.dumps(self._final(job, result, "")).encode() + b"\n")
            end_stream(h)

    def _respond_openai(self, h: Handler, job: Job, result: Result) -> None:
        ident, created = f"chatcmpl-{next(self._ids)}", int(time.time())
        usage = {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.eval_count,
            "total_tokens": result.prompt_tokens + result.eval_count,
        }
        head = {"id": ident, "created": created, "model": job.model, "system_fingerprint": "fp_ollama"}
        if not job.stream:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": result.done_reason,
            }
            send_json(h, 200, {**head, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        start_stream(h, "text/event-stream")

        def event(payload: dict[str, Any]) -> None:
            write_chunk(h, b"data: " + json.dumps({**head, "object": "chat.completion.chunk", **payload}).encode() + b"\n\n")

        for piece in pieces(result.text):
            delta = {"role": "assistant", "content": piece}
            event({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        event({"choices": [{"index": 0, "delta": {}, "finish_reason": result.done_reason}]})
        if job.include_usage:
            event({"choices": [], "usage": usage})
        write_chunk(h, b"data: [DONE]\n\n")
        end_stream(h)
