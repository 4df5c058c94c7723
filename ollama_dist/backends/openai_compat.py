"""OpenAI-compatible local servers: `POST {base}/v1/chat/completions`.

For llama.cpp's server, LM Studio, vLLM, or Ollama's own `/v1` routes. Always
`"stream": false`. A schema becomes `response_format: {"type": "json_schema", ...}`;
a JSON task without a schema sends no `response_format` at all, because servers
disagree on schema-less `json_object` (LM Studio rejects it, and on llama.cpp a
small model under it never closes the object): the prompt asks for JSON and the
validator checks it. There is no `num_ctx` in this protocol; the server's own
context setting applies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Self

import httpx

from ollama_dist.backends.base import Completion, Lane, Request
from ollama_dist.backends.http import request_json
from ollama_dist.backends.ollama import chat_messages
from ollama_dist.errors import BadResponse, ConfigError

START_HINT = "start the local OpenAI-compatible server (e.g. `python -m llama_cpp.server --model PATH`)"


def chat_completions_url(base_url: str) -> str:
    """`{base}/v1/chat/completions`, whether or not `base_url` already ends in /v1."""
    base = base_url.strip().rstrip("/")
    if "://" not in base:
        raise ConfigError(f"invalid server URL {base_url!r}: it needs a scheme (http://...)", field="base_url")
    base = base.removesuffix("/v1")
    return f"{base}/v1/chat/completions"


class OpenAICompatBackend:
    """One OpenAI-compatible server; lane "local".

    base_url: e.g. "http://127.0.0.1:8080" (a trailing /v1 is accepted).
    client: an `httpx.AsyncClient` to use (not closed here); by default one is made
        and closed by `aclose()` / `async with`.
    api_key: sent as `Authorization: Bearer` when given (local servers ignore it).
    name: the backend name recorded in completions ("openai_compat").
    """

    lane: Lane = "local"

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        api_key: str | None = None,
        name: str = "openai_compat",
        connect_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.url = chat_completions_url(base_url)
        self._client = client
        self._owns_client = client is None
        self._api_key = api_key
        self._connect_timeout_s = connect_timeout_s
        self._clock = clock

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(trust_env=False)
        return self._client

    def _body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": chat_messages(request),
            "stream": False,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.schema_ is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.schema_},
            }
        return body

    async def complete(self, request: Request) -> Completion:
        timeout = httpx.Timeout(request.timeout_s, connect=min(self._connect_timeout_s, request.timeout_s))
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else None
        started = self._clock()
        data = await request_json(
            self._http(),
            "POST",
            self.url,
            body=self._body(request),
            timeout=timeout,
            server="the OpenAI-compatible server",
            model=request.model,
            hint=START_HINT,
            headers=headers,
        )
        latency = self._clock() - started
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise BadResponse(f"the server at {self.url} answered without choices[0].message.content") from exc
        if not isinstance(text, str):
            text = ""  # a refusal or a tool call: no text, the validator will say so
        raw_usage = data.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        return Completion(
            text=text,
            model=str(data.get("model") or request.model),
            backend=self.name,
            lane=self.lane,
            input_tokens=_int(usage.get("prompt_tokens")),
            output_tokens=_int(usage.get("completion_tokens")),
            latency_s=latency,
            stop_reason=str(choice.get("finish_reason")) if choice.get("finish_reason") else None,
            host=self.url.removesuffix("/v1/chat/completions"),
        )


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
