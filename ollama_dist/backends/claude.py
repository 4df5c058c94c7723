"""The Claude backend: the official SDK's `AsyncAnthropic` behind the `Backend` protocol.

Wire rules this module keeps (PROTOCOLS.md, box at the top and section B):

- 5.x models (and any id whose generation cannot be read) reject `temperature`,
  `top_p` and `top_k` with a 400; `accepts_sampling()` is the one rule. The installed
  SDK (2.12) has no `temperature` parameter at all, so temperature is sent only when
  the SDK's `messages.create` takes it *and* the model accepts sampling.
- Content blocks are read by `type`: 5.x models put `thinking` blocks before `text`.
- Usage keeps the API's meaning: `input_tokens` excludes the cache tokens, which are
  reported separately (`cache_creation_tokens`, `cache_read_tokens`; None -> 0).
- Structured outputs: a task schema goes out as `output_config.format` after the SDK's
  own `anthropic.transform_schema`, applied to a copy. The API requires
  `additionalProperties: false` on every object and accepts only a subset of JSON
  Schema; `transform_schema` sets the former and folds unsupported keywords (minimum,
  pattern, maxLength...) into descriptions. The answer is therefore still checked
  against the task's original schema by the validator, not trusted here.
- The SDK retries 408/409/429/5xx/529 and connection errors itself (`max_retries`,
  default 2), honouring `retry-after`; what is left after that is translated into
  `ollama_dist.errors` here, where it enters. The API key never appears in a message
  or a repr.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import inspect
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from ollama_dist.backends.base import Completion, Lane, Request
from ollama_dist.backends.claude_endpoint import refuse_ollama
from ollama_dist.errors import (
    AuthError,
    BackendError,
    BadRequest,
    BadResponse,
    ModelMissing,
    Overloaded,
    RateLimited,
    Timeout,
    Unreachable,
)

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types import Message, MessageParam, OutputConfigParam
    from anthropic.types.messages.batch_create_params import Request as BatchRequest

API_KEY_ENV = "ANTHROPIC_API_KEY"
EFFORTS = ("low", "medium", "high", "xhigh", "max")
Effort = Literal["low", "medium", "high", "xhigh", "max"]
_KEY_HINT = f"set {API_KEY_ENV} to a valid Anthropic API key (or pass api_key=)"
SCRUB_MIN_ECHO = 12  # an echoed prefix of the key this long is scrubbed too
_GENERATION = re.compile(r"^claude-(?:[a-z]+-)?(\d+)(?:[-.]|$)")


def accepts_sampling(model_id: str) -> bool:
    """Whether `model_id` takes `temperature`/`top_p`/`top_k`.

    Models before generation 5 do; 5.x and later answer 400. An id whose generation
    cannot be read counts as "no": leaving temperature out is always valid.
    """
    match = _GENERATION.match(model_id)
    return match is not None and int(match.group(1)) < 5


class ClientFactory(Protocol):
    """Builds the SDK client; the seam tests may replace."""

    def __call__(
        self, *, api_key: str, base_url: str | None, max_retries: int, timeout: float
    ) -> AsyncAnthropic: ...


def sdk_client(*, api_key: str, base_url: str | None, max_retries: int, timeout: float) -> AsyncAnthropic:
    """The default factory: `anthropic.AsyncAnthropic` (base_url None -> ANTHROPIC_BASE_URL)."""
    from anthropic import AsyncAnthropic

    return AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout)


class _Secret:
    """Holds the key so that no repr, traceback local or log line shows it."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "'***'"


@dataclass(frozen=True)
class MessageParams:
    """One request in the Messages API's terms; shared by direct calls and batches."""

    model: str
    max_tokens: int
    messages: list[MessageParam]
    system: str | None
    output_config: OutputConfigParam | None
    temperature: float | None

    def for_batch(self) -> dict[str, Any]:
        """The `params` of one batch request (non-streaming Messages parameters)."""
        params: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "messages": self.messages}
        if self.system is not None:
            params["system"] = self.system
        if self.output_config is not None:
            params["output_config"] = self.output_config
        if self.temperature is not None:
            params["temperature"] = self.temperature
        return params


class ClaudeBackend:
    """Claude through the official SDK. `complete()` is the `Backend` method.

    `api_key` None reads ANTHROPIC_API_KEY; a missing key fails at the first call
    (AuthError), not here, so building the backend never needs the network or a key.
    `base_url` None lets the SDK read ANTHROPIC_BASE_URL (no `/v1` suffix).
    `timeout` is the client's default (count_tokens, batches); `complete()` uses the
    request's own `timeout_s` per attempt. One SDK client is made on first use and
    reused; `aclose()` releases its connections.
    """

    name = "claude"
    lane: Lane = "cloud"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 2,
        timeout: float = 600.0,
        client_factory: ClientFactory = sdk_client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        self._key = _Secret(key) if key else None
        self._base_url = base_url
        self._max_retries = max_retries
        self._timeout = timeout
        self._factory = client_factory
        self._clock = clock
        self._client: AsyncAnthropic | None = None
        self._sdk_takes_temperature = False
        self._endpoint_lock, self._endpoint_checked = asyncio.Lock(), False

    def __repr__(self) -> str:
        key = "set" if self._key else "missing"
        return f"ClaudeBackend(base_url={self._base_url!r}, max_retries={self._max_retries}, api_key={key})"

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def client(self) -> AsyncAnthropic:
        """The SDK client, made on first use. AuthError when there is no key."""
        if self._client is None:
            if self._key is None:
                raise AuthError(f"no Anthropic API key: {API_KEY_ENV} is not set", hint=_KEY_HINT)
            self._client = self._factory(
                api_key=self._key.value, base_url=self._base_url, max_retries=self._max_retries, timeout=self._timeout
            )
            create = self._client.messages.create
            self._sdk_takes_temperature = "temperature" in inspect.signature(create).parameters
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def prepare(self, request: Request) -> MessageParams:
        """Translate a Request into Messages API parameters (no I/O)."""
        self.client()  # resolves the key and what the SDK accepts
        system = [request.system] if request.system else []
        messages: list[MessageParam] = []
        for message in request.messages:
            if message.role == "system":  # the API takes system text only at the top level
                system.append(message.content)
            elif message.role == "user":
                messages.append({"role": "user", "content": message.content})
            else:
                messages.append({"role": "assistant", "content": message.content})
        output_config: dict[str, Any] = {}
        if request.schema_ is not None:
            output_config["format"] = {"type": "json_schema", "schema": strict_schema(request.schema_)}
        if request.effort is not None:
            if request.effort not in EFFORTS:
                raise BadRequest(f"effort {request.effort!r} is not one of {', '.join(EFFORTS)}")
            output_config["effort"] = request.effort
        send_temperature = self._sdk_takes_temperature and accepts_sampling(request.model)
        return MessageParams(
            model=request.model,
            max_tokens=request.max_tokens,
            messages=messages,
            system="\n\n".join(system) if system else None,
            output_config=cast("OutputConfigParam", output_config) if output_config else None,
            temperature=request.temperature if send_temperature else None,
        )

    async def complete(self, request: Request) -> Completion:
        from anthropic import AnthropicError, omit

        client = self.client()
        params = self.prepare(request)
        if not self._endpoint_checked:
            await self._check_endpoint(str(client.base_url))
        started = self._clock()
        try:
            message = await client.messages.create(
                model=params.model,
                max_tokens=params.max_tokens,
                messages=params.messages,
                system=params.system if params.system is not None else omit,
                output_config=params.output_config if params.output_config is not None else omit,
                extra_body={"temperature": params.temperature} if params.temperature is not None else None,
                timeout=request.timeout_s,
            )
        except AnthropicError as exc:
            raise self.translate(exc, model=request.model, timeout_s=request.timeout_s) from exc
        return completion_from_message(
            message, backend=self.name, lane=self.lane, latency_s=self._clock() - started, host=client.base_url.host
        )

    async def _check_endpoint(self, base_url: str) -> None:
        async with self._endpoint_lock:  # once, before the first call leaves: is it Ollama? (claude_endpoint)
            if not self._endpoint_checked:
                await refuse_ollama(base_url)
                self._endpoint_checked = True

    async def count_tokens(self, request: Request) -> int:
        """Input tokens the API counts for `request` (free, but rate-limited by the API)."""
        from anthropic import AnthropicError, omit

        client = self.client()
        params = self.prepare(request)
        try:
            counted = await client.messages.count_tokens(
                model=params.model,
                messages=params.messages,
                system=params.system if params.system is not None else omit,
                output_config=params.output_config if params.output_config is not None else omit,
                timeout=request.timeout_s,
            )
        except AnthropicError as exc:
            raise self.translate(exc, model=request.model, timeout_s=request.timeout_s) from exc
        return counted.input_tokens

    def translate(self, exc: Exception, *, model: str, timeout_s: float | None = None) -> BackendError:
        """The `ollama_dist.errors` equivalent of an SDK exception, with the key scrubbed."""
        error = _translate(exc, model=model, timeout_s=timeout_s, base_url=self._where())
        if self._key is not None and self._key.value:
            error.message = scrub(error.message, self._key.value)
            error.hint = scrub(error.hint, self._key.value) if error.hint else error.hint
            error.args = (error.message,)
        return error

    def _where(self) -> str:
        if self._client is not None:
            return str(self._client.base_url).rstrip("/")
        return self._base_url or "the Anthropic API"


def scrub(text: str, secret: str, *, min_echo: int = SCRUB_MIN_ECHO) -> str:
    """`text` with `secret` replaced by `***`, and also any echo of its first `min_echo` or more
    characters (servers often quote a truncated key: `invalid x-api-key sk-ant-api03-AbCd...`)."""
    if not secret:
        return text
    if len(secret) < min_echo:
        return text.replace(secret, "***")
    head, out, start = secret[:min_echo], [], 0
    while (found := text.find(head, start)) >= 0:
        end = found + min_echo
        while end < len(text) and end - found < len(secret) and text[end] == secret[end - found]:
            end += 1
        out.append(text[start:found] + "***")
        start = end
    out.append(text[start:])
    return "".join(out)


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `schema` in the form structured outputs accept (see the module docstring)."""
    from anthropic import transform_schema

    try:
        return transform_schema(copy.deepcopy(dict(schema)))
    except (ValueError, TypeError, KeyError) as exc:
        raise BadRequest(
            f"the task schema cannot be used for Claude structured outputs: {exc}",
            hint="give every schema node a `type` (or anyOf/oneOf/allOf/enum/const)",
        ) from exc


def completion_from_message(
    message: Message, *, backend: str, lane: Lane, latency_s: float, host: str | None
) -> Completion:
    """Completion from an SDK Message: text blocks by type, usage with None -> 0."""
    texts = [block.text for block in message.content if block.type == "text"]
    usage = message.usage
    warnings: list[str] = []
    if message.stop_reason == "max_tokens":
        warnings.append(f"stopped at max_tokens ({usage.output_tokens} output tokens, thinking included)")
    elif message.stop_reason == "refusal":
        warnings.append("Claude declined to answer (stop_reason refusal)")
    if not texts:
        warnings.append("the answer holds no text block")
    return Completion(
        text="".join(texts),
        model=message.model or "",
        backend=backend,
        lane=lane,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_creation_tokens=usage.cache_creation_input_tokens or 0,
        cache_read_tokens=usage.cache_read_input_tokens or 0,
        latency_s=latency_s,
        stop_reason=message.stop_reason,
        host=host,
        warnings=tuple(warnings),
    )


def retry_after_seconds(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """`retry-after-ms`, then `retry-after` (seconds or an HTTP date), as the SDK reads them."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else max(0.0, email.utils.mktime_tz(parsed) - now())


def _translate(exc: Exception, *, model: str, timeout_s: float | None, base_url: str) -> BackendError:
    import anthropic

    if isinstance(exc, anthropic.APITimeoutError):
        within = f" within {timeout_s:g} s" if timeout_s is not None else ""
        return Timeout(f"no answer from {base_url}{within} (model {model})")
    if isinstance(exc, anthropic.APIConnectionError):
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        return Unreachable(
            f"cannot reach {base_url}{cause}", hint="check the network and ANTHROPIC_BASE_URL (no /v1 suffix)"
        )
    if not isinstance(exc, anthropic.APIStatusError):
        return BadResponse(f"Anthropic SDK error for model {model}: {exc}")
    detail = exc.api_message or str(exc)
    what = f"{exc.status_code} {exc.type or 'error'}: {detail}"
    if exc.request_id:
        what += f" (request-id {exc.request_id})"
    if isinstance(exc, (anthropic.AuthenticationError, anthropic.PermissionDeniedError)):
        return AuthError(f"the Anthropic API refused the key ({what})", hint=_KEY_HINT)
    if isinstance(exc, anthropic.RateLimitError):
        wait = retry_after_seconds(exc.response.headers)
        return RateLimited(f"rate limited by the Anthropic API ({what})", retry_after=wait)
    if isinstance(exc, anthropic.OverloadedError) or exc.status_code == 529:
        wait = retry_after_seconds(exc.response.headers)
        return Overloaded(f"the Anthropic API is overloaded ({what})", retry_after=wait)
    if isinstance(exc, anthropic.NotFoundError):
        return ModelMissing(f"model {model} not found ({what})", hint="check the Claude model id in the config")
    if isinstance(exc, (anthropic.BadRequestError, anthropic.UnprocessableEntityError)) or exc.status_code == 413:
        return BadRequest(f"the Anthropic API rejected the request ({what})")
    return BadResponse(f"Anthropic API error ({what})")


def batch_request(custom_id: str, params: MessageParams) -> BatchRequest:
    """One entry of a Message Batch."""
    return cast("BatchRequest", {"custom_id": custom_id, "params": params.for_batch()})
