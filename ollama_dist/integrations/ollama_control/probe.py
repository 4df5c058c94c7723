"""The Ollama status probe: every configured host reachable, its version, models pulled and loaded.

The `ollama status|on|off` commands are ``cli.ollama``; starting and stopping (pid file, systemd unit)
is ``integrations.ollama_control.process``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from ollama_dist.backends.ollama_probe import OllamaStatus

# ----------------------------------------------------------------------------- status


def full_name(model: str) -> str:
    """A model name as Ollama lists it: a bare name means `name:latest`."""
    return model if ":" in model else f"{model}:latest"


def missing_models(available: Iterable[str], wanted: Iterable[str]) -> tuple[str, ...]:
    have = {full_name(name) for name in available}
    return tuple(dict.fromkeys(m for m in wanted if full_name(m) not in have))


@dataclass(frozen=True)
class HostReport:
    status: OllamaStatus
    missing: tuple[str, ...] = ()

    @property
    def reachable(self) -> bool:
        return self.status.reachable

    def as_json(self) -> dict[str, Any]:
        s = self.status
        return {
            "host": s.host,
            "reachable": s.reachable,
            "version": s.version,
            "error": s.error,
            "models": [m.model_dump() for m in s.models],
            "loaded": [m.model_dump() for m in s.loaded],
            "missing": [{"model": m, "fix": f"ollama pull {m}"} for m in self.missing],
        }


async def probe(hosts: Sequence[str], wanted: Sequence[str], *, client: httpx.AsyncClient | None = None,
                timeout_s: float = 5.0) -> list[HostReport]:
    """Every host's status, side by side; never raises for a host that is down."""
    import asyncio

    import httpx

    from ollama_dist.backends.ollama_probe import status

    http = client or httpx.AsyncClient(trust_env=False)
    try:
        found = await asyncio.gather(*(status(http, host, timeout_s=timeout_s) for host in hosts))
    finally:
        if client is None:
            await http.aclose()
    return [HostReport(s, missing_models((m.name for m in s.models), wanted) if s.reachable and not s.error
                       else ()) for s in found]


# ----------------------------------------------------------------------------- commands
