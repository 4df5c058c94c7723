"""The `SessionStart` hook `ollama-dist claude install` merges into Claude Code's settings.json.

Project scope: `.claude/settings.json` in the project; user scope: `~/.claude/settings.json`.
Other settings and other hooks are left alone; uninstall removes only the entry install
added (and the file, when install created it and nothing else is left in it). The
manifest record is `{"path", "created", "entry"}` under `settings_hook`.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ollama_dist.errors import InputError

EVENT = "SessionStart"


def settings_path(base: Path) -> Path:
    return base / ".claude" / "settings.json"


def hook_entry(server_command: list[str]) -> dict[str, Any]:
    """The hook group: the same program as the MCP server's command, `claude session-hook`."""
    command = shlex.join([*server_command[:-1], "claude", "session-hook"])
    return {"hooks": [{"type": "command", "command": command}]}


def _load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}", hint="fix the JSON; it is left untouched") from exc
    if not isinstance(data, dict) or not isinstance(data.get("hooks", {}), dict):
        raise InputError(f"{path} is not a Claude Code settings file (an object, `hooks` an object)", file=str(path))
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot update {exc.filename or path}: {exc.strerror}") from exc


def install(base: Path, record: dict[str, Any], entry: dict[str, Any], say: Callable[[str], None]) -> None:
    path = settings_path(base)
    data = _load(path)
    ours = record.get("settings_hook")
    created = ours["created"] if ours else data is None
    data = data if data is not None else {}
    groups = data.setdefault("hooks", {}).setdefault(EVENT, [])
    if not isinstance(groups, list):
        raise InputError(f"{path}: `hooks.{EVENT}` is not a list", file=str(path))
    if entry in groups:
        say(f"hook: {path} already runs the {EVENT} hook")
    else:
        if ours and ours["entry"] in groups:
            groups.remove(ours["entry"])
        groups.append(entry)
        _write(path, data)
        say(f"hook: added a {EVENT} hook to {path} (records the live session id, so savings follow /clear)")
    record["settings_hook"] = {"path": str(path), "created": created, "entry": entry}


def uninstall(base: Path, record: dict[str, Any], entry: dict[str, Any], say: Callable[[str], None]) -> None:
    path = settings_path(base)
    ours = record.pop("settings_hook", None)
    data = _load(path)
    wanted = ours["entry"] if ours else entry
    groups = (data or {}).get("hooks", {}).get(EVENT)
    if data is None or not isinstance(groups, list) or wanted not in groups:
        return
    groups.remove(wanted)
    if not groups:
        del data["hooks"][EVENT]
        if not data["hooks"]:
            del data["hooks"]
    _write_or_unlink(path, data, ours, say, "hook", f"the {EVENT} hook")


# ---------------------------------------------------------------------- the status line

STATUS_KEY = "statusLine"


def local_settings_path(base: Path) -> Path:
    return base / ".claude" / "settings.local.json"


def statusline_path(base: Path, scope: str) -> Path:
    """Where install writes the status line: the personal `settings.local.json` of a project (a shared
    settings.json would give it to teammates without ollama-dist), or the user's settings.json."""
    return local_settings_path(base) if scope == "project" else settings_path(base)


def statusline_entry(server_command: list[str]) -> dict[str, Any]:
    return {"type": "command", "command": shlex.join([*server_command[:-1], "statusline"]), "padding": 0}


def _statuslines(base: Path, scope: str, user: Path) -> list[tuple[Path, Any]]:
    """Every statusLine that applies where install would write one (a user's applies in every project,
    and a project's would hide it): (file, value)."""
    files = [settings_path(user)]
    if scope == "project":
        files += [settings_path(base), local_settings_path(base)]
    found = []
    for path in dict.fromkeys(files):
        data = _load(path)
        if data is not None and STATUS_KEY in data:
            found.append((path, data[STATUS_KEY]))
    return found


def install_statusline(base: Path, scope: str, user: Path, record: dict[str, Any], entry: dict[str, Any],
                       say: Callable[[str], None]) -> None:
    """Write the statusLine only where the user has none; never replace theirs."""
    path = statusline_path(base, scope)
    ours = record.get("statusline")
    for where, value in _statuslines(base, scope, user):
        mine = value == entry or (where == path and ours is not None and value == ours["entry"])
        if not mine:
            say(f"statusline: left your statusLine in {where} as it is (install adds one only where you have "
                f"none); to show ollama-dist's figures, call `{entry['command']}` from yours (it reads the same "
                "JSON on stdin)")
            return
        if where == path and value != entry:
            break  # an older command of this install's: bring it up to date
        if where == path and not ours:
            record["statusline"] = {"path": str(path), "created": False, "entry": entry}
        say(f"statusline: {where} already shows ollama-dist's status line")
        return
    data = _load(path)
    created = ours["created"] if ours else data is None
    data = data if data is not None else {}
    data[STATUS_KEY] = entry
    _write(path, data)
    record["statusline"] = {"path": str(path), "created": created, "entry": entry}
    say(f"statusline: added a statusLine to {path} (this session's local jobs and tokens saved, the local "
        "tier; it also records the plan's usage for budget-aware routing)")


def uninstall_statusline(base: Path, scope: str, record: dict[str, Any], entry: dict[str, Any],
                         say: Callable[[str], None]) -> None:
    ours = record.pop("statusline", None)
    path = Path(ours["path"]) if ours else statusline_path(base, scope)
    data = _load(path)
    if data is None or STATUS_KEY not in data:
        return
    if data[STATUS_KEY] != (ours["entry"] if ours else entry):
        if ours:
            say(f"statusline: left the statusLine in {path} (changed since install)")
        return
    del data[STATUS_KEY]
    _write_or_unlink(path, data, ours, say, "statusline", "the statusLine")


def _write_or_unlink(path: Path, data: dict[str, Any], ours: dict[str, Any] | None, say: Callable[[str], None],
                     label: str, what: str) -> None:
    """After taking `what` out of `data`: delete the file install created if nothing else is left in it,
    else write the rest back; say which, and whether install is on record for it."""
    if ours and ours["created"] and not data:
        path.unlink(missing_ok=True)
        say(f"{label}: removed {path}")
        return
    _write(path, data)
    unrecorded = "" if ours else " (not recorded as installed from this ollama-dist home; it is what install writes)"
    say(f"{label}: removed {what} from {path}{unrecorded}")
