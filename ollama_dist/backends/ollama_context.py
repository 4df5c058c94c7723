"""How big a context window (`num_ctx`) an Ollama request gets.

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
