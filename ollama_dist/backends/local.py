"""The local tier as one backend: the first of several local backends that answers.

Ollama first (its pool of hosts), then any OpenAI-compatible servers, then the
embedded llama.cpp model when the extra is installed. Only an unreachable backend
passes the job on; any other error is the local tier's answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from ollama_dist.backends.base import Backend, Completion, Lane, Request
from ollama_dist.errors import Unreachable


class FallbackBackend:
    lane: Lane = "local"

    def __init__(self, backends: Sequence[Backend]) -> None:
        if not backends:
            raise ValueError("a fallback needs at least one backend")
        self.backends = tuple(backends)
        self.name = "+".join(b.name for b in self.backends)

    async def complete(self, request: Request) -> Completion:
        failures: list[str] = []
        for backend in self.backends:
            try:
                return await backend.complete(request)
            except Unreachable as exc:
                failures.append(f"{backend.name}: {exc.message}")
        raise Unreachable("no local backend answered: " + "; ".join(failures),
                          hint="start Ollama (`ollama-dist ollama on`) or install the embedded tier "
                               "(scripts/setup.sh)")

    async def aclose(self) -> None:
        for backend in self.backends:
            close = getattr(backend, "aclose", None)
            if close is not None:
                await close()
