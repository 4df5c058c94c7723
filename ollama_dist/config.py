"""Settings: where endpoints, models, thresholds, prices and the ledger live.

Precedence, lowest first: defaults in code, one YAML config file (the project's
`ollama-dist.yaml` if present in the working directory, else `config.yaml` in the
ollama-dist home), then the environment. `Settings.sources` says where each
effective value came from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from ollama_dist.errors import ConfigError
from ollama_dist.yamlfile import YamlDoc, load_yaml, validation_error

PROJECT_FILE = "ollama-dist.yaml"
HOME_FILE = "config.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RouterSettings(_Section):
    score_threshold: float = Field(0.35, ge=0, le=1)
    confidence_threshold: float = Field(0.6, ge=0, le=1)
    local_context_tokens: int = Field(3000, gt=0, description="local models degrade past this")
    max_local_tokens: int = Field(8000, gt=0, description="above this a job never goes local")
    vocabulary: dict[str, Any] = Field(default_factory=dict, description="overrides of data/router.yaml")
    semantic: bool = Field(True, description="a second opinion from labelled examples where no hard rule fires")
    semantic_threshold: float = Field(0.6, ge=0, le=1, description="local only when P(local) > this")
    semantic_k: int = Field(11, ge=1, le=100, description="nearest exemplars that vote")
    semantic_learn: bool = Field(False, description="tasks' local outcomes in the ledger become exemplars")


class ModelSettings(_Section):
    local: str = "gemma3:270m"
    cloud: str = "claude-sonnet-5-5"
    escalation: str = "claude-haiku-5-5"


class OllamaSettings(_Section):
    hosts: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:11434"])
    concurrency_per_host: int = Field(1, ge=1)
    keep_alive: str = "10m"
    openai_compat: list[str] = Field(default_factory=list, description="base URLs of /v1 servers")
    embedded: bool = True
    embedded_model_path: str | None = None


class CloudSettings(_Section):
    api_key: SecretStr | None = None
    base_url: str | None = None
    concurrency: int = Field(4, ge=1)
    max_retries: int = Field(2, ge=0)
    effort_escalated: str | None = "low"
    batch_poll_s: float = Field(5.0, gt=0, description="first wait between Message Batches polls")


class BreakerSettings(_Section):
    p95_threshold_s: float = Field(30.0, gt=0)
    window: int = Field(20, ge=1)
    min_samples: int = Field(5, ge=1)
    cooldown_s: float = Field(60.0, gt=0)


class LedgerSettings(_Section):
    path: str | None = None
    store_text: bool = False


class Settings(_Section):
    home: Path = Field(default_factory=lambda: Path.home() / ".ollama-dist")
    router: RouterSettings = Field(default_factory=RouterSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    cloud: CloudSettings = Field(default_factory=CloudSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    sources: dict[str, str] = Field(default_factory=dict, exclude=True)
    config_file: Path | None = Field(default=None, exclude=True)

    @property
    def ledger_path(self) -> Path:
        return Path(self.ledger.path).expanduser() if self.ledger.path else self.home / "ledger.db"

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "default")


def ollama_host_url(value: str) -> str:
    """`OLLAMA_HOST` as Ollama reads it: scheme defaults to http, port to 11434 (80/443 with a scheme)."""
    value = value.strip().rstrip("/")
    has_scheme = "://" in value
    parts = urlsplit(value if has_scheme else f"http://{value}")
    scheme = parts.scheme or "http"
    default_port = (443 if scheme == "https" else 80) if has_scheme else 11434
    host = parts.hostname or "127.0.0.1"
    if host == "0.0.0.0":
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{parts.port or default_port}"


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in data.items():
        dotted_key = f"{prefix}{key}"
        if isinstance(value, Mapping) and key not in ("vocabulary", "prices"):
            keys.extend(_flatten(value, dotted_key + "."))
        else:
            keys.append(dotted_key)
    return keys


def _find_config_file(cwd: Path, home: Path) -> Path | None:
    for candidate in (cwd / PROJECT_FILE, home / HOME_FILE):
        if candidate.is_file():
            return candidate
    return None


def load_settings(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The effective settings for a run started in `cwd` with environment `env`."""
    cwd = cwd or Path.cwd()
    env = os.environ if env is None else env
    home = Path(env["OLLAMA_DIST_HOME"]).expanduser() if env.get("OLLAMA_DIST_HOME") else Path.home() / ".ollama-dist"
    sources: dict[str, str] = {}
    if env.get("OLLAMA_DIST_HOME"):
        sources["home"] = "env:OLLAMA_DIST_HOME"

    data: dict[str, Any] = {}
    path = _find_config_file(cwd, home)
    doc: YamlDoc | None = None
    if path is not None:
        doc = load_yaml(path)
        if doc.data is not None and not isinstance(doc.data, dict):
            raise ConfigError("a config file must be a mapping", file=str(path), line=1)
        data = dict(doc.data or {})
        if "home" in data:
            raise ConfigError("`home` is set by OLLAMA_DIST_HOME, not the config file",
                              file=str(path), line=doc.line_of(("home",)), field="home")
        for key in _flatten(data):
            sources[key] = f"file:{path}"
    data["home"] = home

    overrides: dict[str, tuple[str, str]] = {}
    if env.get("OLLAMA_HOST"):
        hosts = [ollama_host_url(h) for h in env["OLLAMA_HOST"].split(",") if h.strip()]
        data.setdefault("ollama", {})["hosts"] = hosts
        overrides["ollama.hosts"] = ("env:OLLAMA_HOST", "")
    if env.get("ANTHROPIC_API_KEY"):
        data.setdefault("cloud", {})["api_key"] = env["ANTHROPIC_API_KEY"]
        overrides["cloud.api_key"] = ("env:ANTHROPIC_API_KEY", "")
    if env.get("ANTHROPIC_BASE_URL"):
        data.setdefault("cloud", {})["base_url"] = env["ANTHROPIC_BASE_URL"]
        overrides["cloud.base_url"] = ("env:ANTHROPIC_BASE_URL", "")
    for key, (src, _) in overrides.items():
        sources[key] = src

    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        if doc is None:
            raise ConfigError(str(exc.errors()[0]["msg"])) from exc
        err = validation_error(exc, doc, Settings)
        raise ConfigError(err.message.split(": ", 1)[-1], file=err.file, line=err.line,
                          field=err.field, hint=err.hint) from exc
    settings.sources = sources
    settings.config_file = path
    return settings


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(key, value, source) for every leaf setting, secrets masked."""
    rows: list[tuple[str, str, str]] = [("home", str(settings.home), settings.source_of("home"))]
    for section in ("router", "models", "ollama", "cloud", "breaker", "ledger"):
        model: BaseModel = getattr(settings, section)
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, SecretStr):
                shown = "set (hidden)" if value.get_secret_value() else "not set"
            elif value is None:
                shown = "not set"
            elif name == "vocabulary":
                shown = f"{len(value)} override(s)" if value else "built-in"
            else:
                shown = str(value)
            rows.append((f"{section}.{name}", shown, settings.source_of(f"{section}.{name}")))
    rows.append(("ledger (file)", str(settings.ledger_path), settings.source_of("ledger.path")))
    rows.append(("prices", f"{len(settings.prices)} override(s)" if settings.prices else "built-in table",
                 settings.source_of("prices")))
    return rows
