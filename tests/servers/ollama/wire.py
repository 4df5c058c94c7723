"""The Ollama wire for the fake: constants, the fake tokenizer, durations, model specs, jobs.

Values and pure functions only; the mixins of :mod:`tests.servers.ollama` use them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Answers = Sequence[str] | Callable[[dict[str, Any]], str]

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
RUNNER_CRASH = "llama runner process has terminated: exit status 2"
MIDSTREAM_ERROR = "an error was encountered while running the model"
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
ENGINE_DEFAULT_PREDICT = 512
FOREVER = datetime(2318, 1, 1, tzinfo=UTC)
GENERATION_PATHS = ("/api/chat", "/api/generate", "/v1/chat/completions")
THINKING_TEXT = "The user wants a short answer. I will check the input once more, then answer."
HARMONY_FAMILIES = ("gptoss", "gpt-oss")  # think takes a level; booleans are ignored (it always thinks)
NOT_FOUND_PAGE = b"404 page not found"  # gin's answer for a route it does not have


def vram_num_ctx(vram_gib: float) -> int:
    """The default context since Ollama 0.15.5 when nothing sets one (A.7): by total VRAM."""
    return 262144 if vram_gib >= 47 else 32768 if vram_gib >= 23 else 4096


def estimate_tokens(text: str) -> int:
    """The fake tokenizer: one token per 4 characters, rounded up."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def fenced(value: Any) -> str:
    """`value` as JSON inside a ```json fence, as chatty models answer."""
    return f"```json\n{json.dumps(value, indent=2)}\n```"


def chatty(value: Any) -> str:
    """`value` as JSON with prose before and after it."""
    return f"Sure! Here is the JSON you asked for:\n{json.dumps(value)}\nLet me know if you need anything else."


def refused_url() -> str:
    """A loopback URL nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def full_name(name: str) -> str:
    """A bare model name means name:latest."""
    return name if ":" in name else f"{name}:latest"


def timestamp(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond * 1000:09d}Z"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_seconds(value: Any) -> float:
    """keep_alive in seconds (negative: forever); ValueError as Go's time.ParseDuration."""
    if value is None:
        return 300.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise TypeError(f"json: cannot unmarshal {type(value).__name__} into Go value of type time.Duration")
    text, sign = value.strip(), 1.0
    if text.startswith("-"):
        text, sign = text[1:], -1.0
    if text == "0":
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f'time: missing unit in duration "{value}"')
    return sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def example(schema: Any) -> Any:
    """A small instance of a JSON schema (enough for the usual task schemas)."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example(schema[key][0])
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: example(sub) for name, sub in props.items()}
    if kind == "array":
        return [example(schema.get("items", {})) for _ in range(int(schema.get("minItems", 0)))]
    return {"string": "x" * int(schema.get("minLength", 1)), "integer": 0, "number": 0, "boolean": False}.get(
        kind, None
    )


@dataclass
class ModelSpec:
    """A model the fake server has "pulled"."""

    name: str
    family: str = "gemma3"
    context_length: int = 32768
    parameter_size: str = "268.10M"
    quantization: str = "Q4_K_M"
    size: int = 253_000_000
    capabilities: tuple[str, ...] = ("completion",)
    rejects_think: bool = False  # any `think` field is a 400 (as some templates answer a level they lack)

    @property
    def thinks(self) -> bool:
        return "thinking" in self.capabilities

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization,
        }


@dataclass
class Job:
    endpoint: Literal["chat", "generate", "openai"]
    model: str
    messages: list[dict[str, str]]
    options: dict[str, Any]
    fmt: Any
    stream: bool
    keep_alive: float
    body: dict[str, Any]
    include_usage: bool = False


@dataclass
class Result:
    text: str
    prompt_tokens: int
    eval_count: int
    done_reason: str
    num_ctx: int
    load_ns: int
    started: float = field(default_factory=time.perf_counter)
    run_ns: int = 0  # measured model time (engine mode); 0: simulated durations
    thinking: str = ""  # message.thinking: the trace a thinking model shows before its answer


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def pieces(text: str) -> list[str]:
    words = re.findall(r"\s*\S+\s*|\s+", text) or [text]
    size = max(1, math.ceil(len(words) / 16))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]
