"""How big a context window (`num_ctx`) an Ollama request gets, and keeping it the same within a run.

Without an explicit `num_ctx` the server silently truncates anything over its default
context; too big a one wastes memory. The estimate is deliberately generous.
"""

from __future__ import annotations

import math

from ollama_dist.backends.base import Request

BYTES_PER_TOKEN_ESTIMATE = 3  # conservative: English runs ~4 chars a token, code ~3
TEMPLATE_TOKENS_PER_MESSAGE = 8
CONTEXT_HEADROOM_TOKENS = 256
MIN_NUM_CTX = 2048


def estimate_tokens(text: str) -> int:
    """A deliberately generous token estimate: UTF-8 bytes / 3, rounded up."""
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN_ESTIMATE)


def estimate_prompt_tokens(request: Request) -> int:
    texts = [request.system] if request.system else []
    texts.extend(m.content for m in request.messages)
    return sum(estimate_tokens(t) + TEMPLATE_TOKENS_PER_MESSAGE for t in texts)


def num_ctx_for(request: Request, limit: int | None = None) -> int:
    """A context window that holds the prompt and the answer: a multiple of 1024, at
    least 2048, capped by the model's context length `limit` when it is known."""
    needed = estimate_prompt_tokens(request) + max(request.max_tokens, 0) + CONTEXT_HEADROOM_TOKENS
    ctx = max(MIN_NUM_CTX, math.ceil(needed / 1024) * 1024)
    return min(ctx, limit) if limit else ctx


# A few sizes only: each distinct num_ctx a model is asked for reloads it (Ollama's needsReload).
NUM_CTX_BUCKETS = (2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144)


def needed_tokens(request: Request) -> int:
    """What the context must hold: the prompt (estimated), the answer's budget and some headroom."""
    return estimate_prompt_tokens(request) + max(request.max_tokens, 0) + CONTEXT_HEADROOM_TOKENS


def bucket(needed: int, limit: int | None = None) -> int:
    """The smallest bucket that holds `needed` (past the largest: a multiple of it), capped by `limit`."""
    top = NUM_CTX_BUCKETS[-1]
    ctx = next((b for b in NUM_CTX_BUCKETS if b >= needed), math.ceil(needed / top) * top)
    return min(ctx, limit) if limit else ctx


class ContextPins:
    """One `num_ctx` per (host, model) within a run, so requests do not make Ollama reload the model.

    The first request for a model takes what is loaded already (`/api/ps` `context_length`) when
    that holds it, else the bucket it needs; a later request that needs more raises the pin to
    its bucket. A pin only grows, so a run reloads a model a few times at most, never back and
    forth. `limit` is the model's trained context (from `/api/show`), when known.
    """

    def __init__(self) -> None:
        self._pins: dict[tuple[str, str], int] = {}

    def get(self, host: str, model: str) -> int | None:
        return self._pins.get((host, model))

    def choose(self, host: str, model: str, needed: int, *, limit: int | None, loaded: int | None) -> int:
        key = (host, model)
        pinned = self._pins.get(key)
        if pinned is None and loaded and needed <= loaded and (not limit or loaded <= limit):
            pinned = loaded
        if pinned is None or pinned < needed:
            pinned = max(pinned or 0, bucket(needed, limit))
            if limit:
                pinned = min(pinned, limit)
        self._pins[key] = pinned
        return pinned
