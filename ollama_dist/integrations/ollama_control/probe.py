"""The Ollama status probe: every configured host reachable, what each route answered (version,
models pulled, loaded), its slots; and the other local tiers (OpenAI-compatible servers, the
embedded model), so `ollama status` says which tier would answer.

The `ollama status|on|off` commands are ``cli.ollama``; starting and stopping (pid file, systemd unit)
is ``integrations.ollama_control.process``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
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
    slots: int = 1  # requests the local lane sends it at once (ollama.num_parallel)

    @property
    def reachable(self) -> bool:
        return self.status.reachable

    @property
    def speaks_ollama(self) -> bool:
        """Reachable, and at least one Ollama route answered."""
        return self.status.reachable and any(r.ok for r in self.status.routes)

    def as_json(self) -> dict[str, Any]:
        s = self.status
        return {
            "host": s.host,
            "reachable": s.reachable,
            "complete": s.complete,
            "version": s.version,
            "error": s.error,
            "routes": {r.route: {"ok": r.ok, "error": r.error} for r in s.routes},
            "slots": self.slots,
            "models": [m.model_dump() for m in s.models],
            "loaded": [m.model_dump() for m in s.loaded],
            "missing": [{"model": m, "fix": f"ollama pull {m}"} for m in self.missing],
        }


@dataclass(frozen=True)
class EmbeddedTier:
    """The embedded llama.cpp tier: the last local tier, used when no server answers."""

    enabled: bool
    installed: bool
    model_path: str

    @property
    def state(self) -> str:
        if not self.enabled:
            return "off (ollama.embedded: false)"
        if not self.installed:
            return "not installed (scripts/setup.sh installs it)"
        return "ready: answers when no Ollama host or OpenAI-compatible server does"

    def as_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "installed": self.installed, "model_path": self.model_path,
                "state": self.state}


def embedded_tier(enabled: bool, model_path: str | None, home: Path) -> EmbeddedTier:
    from ollama_dist.backends import embedded

    path = Path(model_path).expanduser() if model_path else embedded.default_model_path(home / "cache")
    return EmbeddedTier(enabled, embedded.available(), str(path))


async def probe(hosts: Sequence[str], wanted: Sequence[str], *, client: httpx.AsyncClient | None = None,
                timeout_s: float = 5.0, slots: Mapping[str, int] | None = None) -> list[HostReport]:
    """Every host's status, side by side; never raises for a host that is down. `slots`: by host."""
    import asyncio

    import httpx

    from ollama_dist.backends.ollama_probe import status

    http = client or httpx.AsyncClient(trust_env=False)
    try:
        found = await asyncio.gather(*(status(http, host, timeout_s=timeout_s) for host in hosts))
    finally:
        if client is None:
            await http.aclose()
    given = slots or {}
    return [HostReport(s, missing_models((m.name for m in s.models), wanted) if s.answered("/api/tags") else (),
                       slots=given.get(host, 1)) for host, s in zip(hosts, found, strict=True)]


# ----------------------------------------------------------------------------- commands
