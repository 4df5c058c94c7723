"""`ollama-dist statusline`: one short line for Claude Code's status bar, and the plan's usage recorded.

Claude Code runs the `statusLine` command after each message with a JSON object on stdin
(`session_id`, `cwd`, `workspace.project_dir`, and for Pro/Max log-ins `rate_limits`:
`five_hour` / `seven_day`, each `{used_percentage, resets_at}`; CLAUDE-CODE-AND-OLLAMA.md
4.4) and shows the first line it prints. This prints, for that session::

    ollama-dist · 3 local · 1.2k tokens saved · local up (ollama) · 5h 62% local-first

jobs answered on the local tier and the tokens they kept off Claude, whether the local
tier answers now, and, when the budget (``routing.budget``) has passed a threshold, the
five-hour usage and that borderline jobs go local first. The `rate_limits` it is handed
go to the ledger (``ledger.plan_usage``), which is what budget-aware routing reads.

It never makes a status line wait or fail: the local probe has a short timeout and its
result is kept for PROBE_TTL_S in the home (`claude/local-tier.json`), the ledger is
given LEDGER_TIMEOUT_S, and any error becomes a short line, exit code 0.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ollama_dist.errors import InputError, OllamaDistError
from ollama_dist.ledger.plan_usage import PlanUsage, Window

if TYPE_CHECKING:
    from ollama_dist.config import Settings
    from ollama_dist.ledger.tally import Tally as Counts

PROBE_TTL_S = 30.0
PROBE_TIMEOUT_S = 0.4
PROBE_BUDGET_S = 1.0  # at most this long probing, however many endpoints there are
LEDGER_TIMEOUT_S = 1.0
TIER_CACHE = Path("claude") / "local-tier.json"
NAME = "ollama-dist"


@dataclass(frozen=True)
class StatusInput:
    """What the line needs from Claude Code's JSON (anything else in it is ignored)."""

    session_id: str | None = None
    project: str | None = None
    five_hour: Window | None = None
    seven_day: Window | None = None

    def usage(self, now: float) -> PlanUsage | None:
        if self.five_hour is None and self.seven_day is None:
            return None
        return PlanUsage(now, self.session_id, self.five_hour, self.seven_day)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _window(raw: object) -> Window | None:
    if not isinstance(raw, dict):
        return None
    used, resets = _number(raw.get("used_percentage")), _number(raw.get("resets_at"))
    if used is None or not 0 <= used <= 1000:
        return None
    return Window(used, resets if resets is not None and resets > 0 else None)


def parse(text: str) -> StatusInput:
    """Claude Code's status-line JSON, read leniently: a missing or odd field is left out."""
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return StatusInput()
    if not isinstance(data, dict):
        return StatusInput()
    session = data.get("session_id")
    workspace, limits = data.get("workspace"), data.get("rate_limits")
    workspace = workspace if isinstance(workspace, dict) else {}
    limits = limits if isinstance(limits, dict) else {}
    project = workspace.get("project_dir") or data.get("cwd")
    return StatusInput(session if isinstance(session, str) and session else None,
                       project if isinstance(project, str) and project else None,
                       _window(limits.get("five_hour")), _window(limits.get("seven_day")))


# ---------------------------------------------------------------------- the local tier


@dataclass(frozen=True)
class Tier:
    up: bool
    via: str  # ollama | openai_compat | embedded | ""

    def text(self) -> str:
        return f"local up ({self.via})" if self.up else "local down"


Probe = Callable[[str, float], bool]  # (url, timeout_s) -> answered


def http_probe(url: str, timeout_s: float) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=timeout_s).status_code < 500
    except (httpx.HTTPError, OSError, ValueError):
        return False


def probe_tier(settings: Settings, probe: Probe = http_probe, clock: Callable[[], float] = time.monotonic) -> Tier:
    """The first local endpoint that answers (Ollama's /api/version, an OpenAI-compatible /models),
    else the embedded model when installed; never longer than about PROBE_BUDGET_S."""
    from ollama_dist.backends import embedded

    o = settings.ollama
    endpoints = [(f"{h}/api/version", "ollama") for h in o.hosts] + [
        (f"{u.rstrip('/')}/models", "openai_compat") for u in o.openai_compat]
    deadline = clock() + PROBE_BUDGET_S
    for url, via in endpoints:
        left = deadline - clock()
        if left <= 0:
            break
        if probe(url, min(PROBE_TIMEOUT_S, left)):
            return Tier(True, via)
    if o.embedded and embedded.available():
        return Tier(True, "embedded")
    return Tier(False, "")


def local_tier(settings: Settings, now: float, probe: Probe = http_probe) -> Tier:
    """`probe_tier`, kept for PROBE_TTL_S in the home so a busy status line probes twice a minute at most."""
    path = settings.home / TIER_CACHE
    key = json.dumps([settings.ollama.hosts, settings.ollama.openai_compat, settings.ollama.embedded])
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached["key"] == key and 0 <= now - float(cached["ts"]) < PROBE_TTL_S:
            return Tier(bool(cached["up"]), str(cached["via"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    tier = probe_tier(settings, probe)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "ts": now, "up": tier.up, "via": tier.via}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # no cache this time: the next line probes again
    return tier


# ---------------------------------------------------------------------- the line


def _tokens(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def session_counts(settings: Settings, given: StatusInput, now: float) -> Counts | None:
    """Record the plan usage given (if any), then this session's figures; None without a ledger."""
    from ollama_dist.ledger.store import Ledger
    from ollama_dist.report.scope import Scope
    from ollama_dist.report.status import task_counts

    usage = given.usage(now)
    path = settings.ledger_path
    if usage is None and not path.exists():
        return None
    ledger = Ledger(path, timeout_s=LEDGER_TIMEOUT_S, read_only=usage is None)
    try:
        if usage is not None:
            ledger.record_plan_usage(usage)
        if given.session_id is None:
            return None
        scope = Scope("session", session=given.session_id)
        return ledger.read(lambda conn: task_counts(conn, scope)[0])
    finally:
        ledger.close()


def budget_note(settings: Settings, given: StatusInput, now: float) -> str:
    """`5h 62% local-first` once the five-hour usage passes a budget threshold, else ''."""
    usage = given.usage(now)
    if usage is None or not settings.budget.five_hour_thresholds:
        return ""
    from ollama_dist.routing.budget import level

    found = level(settings.budget, usage, now)
    return f"5h {found.used_pct:.0f}% local-first" if found else ""


def line(settings: Settings, given: StatusInput, now: float, probe: Probe = http_probe) -> str:
    parts = [NAME]
    counts = session_counts(settings, given, now)
    if counts is None or counts.jobs == 0:
        parts.append("no jobs yet")
    else:
        parts.append(f"{counts.local} local")
        parts.append(f"{_tokens(counts.tokens_saved)} tokens saved")
    parts.append(local_tier(settings, now, probe).text())
    note = budget_note(settings, given, now)
    if note:
        parts.append(note)
    return " · ".join(parts)


def render(stdin: str, env: Mapping[str, str], cwd: Path, now: float | None = None,
           probe: Probe = http_probe) -> str:
    """The status line for one call; an error becomes a short line, never an exception."""
    from ollama_dist.config import load_settings

    now = time.time() if now is None else now
    given = parse(stdin)
    try:
        settings = load_settings(Path(given.project) if given.project else cwd, env)
        return line(settings, given, now, probe)
    except InputError as exc:
        if exc.file:  # a long path would push the rest off the bar: name the file, point at the full message
            where = f"{Path(exc.file).name}:{exc.line}" if exc.line else Path(exc.file).name
            return f"{NAME} · bad config {where}" + (f" `{exc.field}`" if exc.field else "") + ": ollama-dist config"
        return f"{NAME} · {exc.message.splitlines()[0][:100]}"
    except OllamaDistError as exc:
        return f"{NAME} · {exc.message.splitlines()[0][:100]}"
    except Exception as exc:  # noqa: BLE001 - a status line says what broke, never a traceback
        return f"{NAME} · {type(exc).__name__}"


def statusline_command() -> None:
    """Claude Code status line: this session's local jobs and tokens saved, the local tier; records plan usage."""
    text = sys.stdin.read() if not sys.stdin.isatty() else ""
    sys.stdout.write(render(text, os.environ, Path.cwd()) + "\n")
