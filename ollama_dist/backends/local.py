"""The local tier as one backend: the first of several local backends that answers.

Ollama first (its pool of hosts), then any OpenAI-compatible servers, then the
embedded llama.cpp model when the extra is installed. Only an unreachable backend, or
one whose server does not speak its API (a 404 on the route itself), passes the job on;
any other error is the local tier's answer. The completion names the backend and host
that answered (`Completion.backend`, `.host`), so a run says which tier it was.
"""

from __future__ import annotations

from collections.abc import Sequence

from ollama_dist.backends.base import Backend, Completion, Lane, Request
from ollama_dist.errors import RouteMissing, Unreachable


class FallbackBackend:
    lane: Lane = "local"

    def __init__(self, backends: Sequence[Backend]) -> None:
        if not backends:
            raise ValueError("a fallback needs at least one backend")
        self.backends = tuple(backends)
        self.name = "+".join(b.name for b in self.backends)

    async def complete(self, request: Request) -> Completion:
        failures: list[Unreachable | RouteMissing] = []
        for backend in self.backends:
            try:
                return await backend.complete(request)
            except (Unreachable, RouteMissing) as exc:
                failures.append(exc)
        if all(isinstance(f, RouteMissing) for f in failures):
            raise failures[-1]  # servers answered, in the wrong language: say so, not "unreachable"
        raise Unreachable("no local backend answered: " + "; ".join(
            f"{b.name}: {f.message}" for b, f in zip(self.backends, failures, strict=True)),
            hint="start Ollama (`ollama-dist ollama on`) or install the embedded tier (scripts/setup.sh)")

    async def aclose(self) -> None:
        for backend in self.backends:
            close = getattr(backend, "aclose", None)
            if close is not None:
                await close()
