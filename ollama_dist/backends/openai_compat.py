"""OpenAI-compatible local servers: `POST {base}/v1/chat/completions`.

For llama.cpp's server, LM Studio, vLLM, or Ollama's own `/v1` routes. Always
`"stream": false`. A JSON task without a schema sends no `response_format` at all,
because servers disagree on schema-less `json_object` (LM Studio rejects it, and on
llama.cpp a small model under it never closes the object): the prompt asks for JSON
and the validator checks it. There is no `num_ctx` in this protocol; the server's
own context setting applies.

A schema is sent in one of two forms, learned per server:
- `{"type": "json_schema", "json_schema": {"name": ..., "schema": ...}}`, OpenAI's,
  taken by vLLM, LM Studio, llama.cpp's C++ `llama-server` and OpenAI; tried first;
- `{"type": "json_object", "schema": ...}`, the only one llama-cpp-python's
  `python -m llama_cpp.server` takes (it answers 500 "Input should be 'text' or
  'json_object'" to the other).
A rejection whose message names `response_format` (or `json_schema`) makes the
backend send the same request once more in the other form; whichever form a
server answered is kept by the backend (one per server URL) for the rest of the
run. Nothing is written to disk: relearning costs one rejected request per run,
which such servers answer before any inference, while a cache file would go stale
the day another server takes over the same port.

A Gemma model's system prompt is folded into the first user turn (`chat_format.lacks_system_role`):
Gemma has no system role, and llama-cpp-python's `gemma` format drops system messages.

An answer that used all of `max_tokens` is reported as cut off (`length`) even
when the server says `stop`, as some do whatever happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, Self

import httpx

from ollama_dist.backends.base import Completion, Lane, Request, closed_schema
from ollama_dist.backends.chat_format import fold_system, lacks_system_role
from ollama_dist.backends.http import request_json
from ollama_dist.backends.ollama import chat_messages
from ollama_dist.errors import BackendError, BadRequest, BadResponse, ConfigError

START_HINT = "start the local OpenAI-compatible server (e.g. `python -m llama_cpp.server --model PATH`)"

SchemaForm = Literal["json_schema", "json_object"]
SCHEMA_FORMS: tuple[SchemaForm, ...] = ("json_schema", "json_object")


def response_format(schema: dict[str, Any], form: SchemaForm) -> dict[str, Any]:
    """The `response_format` asking for answers valid under `schema`, in `form`.

    The `json_object` form feeds llama-cpp-python's grammar converter, so it gets the
    closed copy of the schema, as the embedded tier does (see `closed_schema`)."""
    if form == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    return {"type": "json_object", "schema": closed_schema(schema)}


def rejects_form(exc: BackendError) -> bool:
    """Whether `exc` is a server refusing the `response_format` it was sent (400, 422 or,
    from llama_cpp.server, 500 with the validation error), not some other failure."""
    if not isinstance(exc, (BadRequest, BadResponse)):
        return False
    text = exc.message.lower()
    return "response_format" in text or "json_schema" in text


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
        self.schema_form: SchemaForm | None = None  # learned from the first schema answer

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

    def _body(self, request: Request, form: SchemaForm) -> dict[str, Any]:
        messages = chat_messages(request)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": fold_system(messages) if lacks_system_role(request.model) else messages,
            "stream": False,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.schema_ is not None:
            body["response_format"] = response_format(request.schema_, form)
        return body

    async def _post(self, request: Request, form: SchemaForm) -> dict[str, Any]:
        timeout = httpx.Timeout(request.timeout_s, connect=min(self._connect_timeout_s, request.timeout_s))
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else None
        return await request_json(
            self._http(),
            "POST",
            self.url,
            body=self._body(request, form),
            timeout=timeout,
            server="the OpenAI-compatible server",
            model=request.model,
            hint=START_HINT,
            headers=headers,
        )

    async def _exchange(self, request: Request) -> tuple[dict[str, Any], list[str]]:
        """The answer, in the schema form this server takes (learned on the first schema task)."""
        if request.schema_ is None:
            return await self._post(request, "json_schema"), []
        if self.schema_form is not None:
            return await self._post(request, self.schema_form), []
        first, other = SCHEMA_FORMS
        try:
            data = await self._post(request, first)
        except BackendError as exc:
            if not rejects_form(exc):
                raise
            data = await self._post(request, other)  # its failure is the one to report
            self.schema_form = other
            note = (f"{self.url} rejects response_format {first} ({exc.message[:120]}); "
                    f"sent {other} with the schema instead, and will for the rest of the run")
            return data, [note]
        self.schema_form = first
        return data, []

    async def complete(self, request: Request) -> Completion:
        started = self._clock()
        data, warnings = await self._exchange(request)
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
        output_tokens = _int(usage.get("completion_tokens"))
        stop_reason = str(choice.get("finish_reason")) if choice.get("finish_reason") else None
        if 0 < request.max_tokens <= output_tokens and stop_reason != "length":
            warnings.append(f"the server said {stop_reason!r} but the answer used all {request.max_tokens} "
                            "max_tokens: taken as cut off")
            stop_reason = "length"
        return Completion(
            text=text,
            model=str(data.get("model") or request.model),
            backend=self.name,
            lane=self.lane,
            input_tokens=_int(usage.get("prompt_tokens")),
            output_tokens=output_tokens,
            latency_s=latency,
            stop_reason=stop_reason,
            host=self.url.removesuffix("/v1/chat/completions"),
            warnings=tuple(warnings),
        )


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
