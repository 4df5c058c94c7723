"""What `ollama-dist claude install|uninstall` does: the Claude Code skill, and optionally the project's MCP entry.

The commands are ``cli.claude``.

Install writes `.claude/skills/ollama-dist/SKILL.md` in the project (the working
directory) or `~/.claude/skills/ollama-dist/SKILL.md` with `--user` (PROTOCOLS.md C.1),
prints the `claude mcp add` command for `ollama-dist mcp` (C.2), or with `--mcp`
merges an `ollama-dist` server into the project's `.mcp.json`, leaving the other
servers alone.

What install wrote is recorded in a manifest in the ollama-dist home
(`claude/installs.json`): the file and its hash, the folders it created, the
`.mcp.json` entry and whether install created that file. Uninstall removes exactly
that: a SKILL.md edited since is left in place, the `.mcp.json` entry only if it is
still the one install wrote, the file only if install created it and nothing else
is left in it. Without a manifest (another home), it removes only what is byte for
byte what install would write. Both are idempotent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ollama_dist.errors import InputError
from ollama_dist.integrations.claude_code import claude_settings

SKILL = "ollama-dist"
SERVER = "ollama-dist"
READ_ONLY_TOOLS = (f"mcp__{SERVER}__route_tasks", f"mcp__{SERVER}__router_status")
RUN_TOOL = f"mcp__{SERVER}__run_tasks"
WRITE_TOOLS = (RUN_TOOL, f"mcp__{SERVER}__report_answers")  # run models, write outputs: Claude Code asks
MANIFEST = Path("claude") / "installs.json"
UNRECORDED = " (not recorded as installed from this ollama-dist home: it is byte for byte what install writes)"
Scope = Literal["project", "user"]

# ---------------------------------------------------------------------- pieces


@dataclass(frozen=True)
class Target:
    scope: Scope
    base: Path  # the project folder, or the user's home
    user: Path = field(default_factory=lambda: Path.home().resolve())  # whose ~/.claude settings apply too

    @property
    def skill_dir(self) -> Path:
        return self.base / ".claude" / "skills" / SKILL

    @property
    def skill_file(self) -> Path:
        return self.skill_dir / "SKILL.md"

    @property
    def mcp_json(self) -> Path:
        return self.base / ".mcp.json"

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.base}"


def target(project: bool, user: bool, cwd: Path | None = None) -> Target:
    if project and user:
        raise InputError("give --project or --user, not both")
    if user:
        return Target("user", Path.home().resolve())
    return Target("project", (cwd or Path.cwd()).resolve())


def skill_text() -> str:
    from importlib.resources import files

    return files("ollama_dist").joinpath("data", "SKILL.md").read_text(encoding="utf-8")


def server_command() -> list[str]:
    """How Claude Code should start the server: the console script when it is on PATH."""
    if shutil.which("ollama-dist"):
        return ["ollama-dist", "mcp"]
    return [sys.executable, "-m", "ollama_dist.cli", "mcp"]


def server_entry(command: list[str]) -> dict[str, Any]:
    # alwaysLoad (seen in Claude Code 2.1.197): the tools are not deferred behind its tool search, so their
    # descriptions and example are in every request; and `claude -p` (or --mcp-config) waits for the server
    # before the first request. The interactive REPL still connects it in the background (see /mcp).
    return {"type": "stdio", "command": command[0], "args": command[1:], "env": {}, "alwaysLoad": True}


def mcp_add_command(scope: Scope, command: list[str]) -> str:
    """The `claude mcp add-json` line: unlike `claude mcp add` it carries `alwaysLoad`."""
    return f"claude mcp add-json --scope {scope} {SERVER} {shlex.quote(json.dumps(server_entry(command)))}"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def _io(what: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise InputError(f"cannot update {exc.filename or what}: {exc.strerror}") from exc


class Manifest:
    """What install wrote, per target: {key: {"skill": {...}, "mcp_json": {...}}}."""

    def __init__(self, home: Path) -> None:
        self.path = home / MANIFEST
        self.data: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise InputError(f"cannot read the install manifest {self.path}: {exc}",
                                 hint="fix or delete it; uninstall then removes only unedited files") from exc
            if isinstance(loaded, dict):
                self.data = loaded

    def get(self, key: str) -> dict[str, Any]:
        return self.data.setdefault(key, {})

    def save(self) -> None:
        self.data = {k: v for k, v in self.data.items() if v}
        with _io(self.path):
            if not self.data:
                self.path.unlink(missing_ok=True)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)


# ---------------------------------------------------------------------- the skill


def _install_skill(t: Target, record: dict[str, Any], text: str, force: bool, report: Report) -> None:
    path = t.skill_file
    ours = record.get("skill", {})
    if path.is_file():
        current = path.read_text(encoding="utf-8")
        if current == text:
            if not ours:
                record["skill"] = {"path": str(path), "sha256": _sha(text), "dirs": []}
            report.say(f"skill: {path} is up to date")
            return
        if _sha(current) != ours.get("sha256") and not force:
            raise InputError(f"{path} exists and was not written by this install (or was edited since)",
                             hint="pass --force to replace it, or move it away")
    created: list[str] = list(ours.get("dirs", []))
    with _io(path):
        for folder in reversed([path.parent, *path.parent.parents]):
            if not folder.exists() and folder.is_relative_to(t.base):
                folder.mkdir()
                created.append(str(folder))
        _write_atomic(path, text)
    record["skill"] = {"path": str(path), "sha256": _sha(text), "dirs": created}
    report.say(f"skill: wrote {path}")


def _uninstall_skill(t: Target, record: dict[str, Any], text: str, report: Report) -> None:
    path = t.skill_file
    ours = record.pop("skill", None)
    expected = ours["sha256"] if ours else _sha(text)
    if path.is_file():
        if _sha(path.read_text(encoding="utf-8")) != expected:
            report.say(f"skill: left {path} in place (edited since install)")
            return
        with _io(path):
            path.unlink()
        report.say(f"skill: removed {path}" + ("" if ours else UNRECORDED))
    dirs = [Path(d) for d in ours["dirs"]] if ours else [path.parent]
    for folder in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty (someone else's files), or already gone
            folder.rmdir()


# ---------------------------------------------------------------------- .mcp.json


def _load_mcp_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}", hint="fix the JSON; it is left untouched") from exc
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers", {}), dict):
        raise InputError(f"{path} is not an MCP config (an object with `mcpServers`)", file=str(path))
    return data


def _install_mcp(t: Target, record: dict[str, Any], entry: dict[str, Any], report: Report) -> None:
    path = t.mcp_json
    data = _load_mcp_json(path)
    ours = record.get("mcp_json")
    created = ours["created"] if ours else data is None
    data = data if data is not None else {}
    servers: dict[str, Any] = data.setdefault("mcpServers", {})
    present = servers.get(SERVER)
    if present == entry:
        report.say(f"mcp: {path} already has the `{SERVER}` server")
    elif present is not None and (not ours or present != ours["entry"]):
        raise InputError(f"{path} already has an `{SERVER}` server that this install did not write",
                         hint="remove it from the file first, or keep it and install without --mcp")
    else:
        servers[SERVER] = entry
        with _io(path):
            _write_atomic(path, json.dumps(data, indent=2) + "\n")
        report.say(f"mcp: added the `{SERVER}` server to {path}")
    record["mcp_json"] = {"path": str(path), "created": created, "entry": entry}


def _uninstall_mcp(t: Target, record: dict[str, Any], entry: dict[str, Any], report: Report) -> None:
    path = t.mcp_json
    data = _load_mcp_json(path)
    ours = record.pop("mcp_json", None)
    if data is None or SERVER not in data.get("mcpServers", {}):
        return
    servers: dict[str, Any] = data["mcpServers"]
    if servers[SERVER] != (ours["entry"] if ours else entry):
        report.say(f"mcp: left the `{SERVER}` server in {path} (changed since install)")
        return
    del servers[SERVER]
    with _io(path):
        if ours and ours["created"] and not servers and set(data) == {"mcpServers"}:
            path.unlink()
            report.say(f"mcp: removed {path}")
            return
        _write_atomic(path, json.dumps(data, indent=2) + "\n")
    report.say(f"mcp: removed the `{SERVER}` server from {path}" + ("" if ours else (
        " (install did not write it: it is the entry install prints for `claude mcp add-json`, or writes with "
        "--mcp from another ollama-dist home)")))


# ---------------------------------------------------------------------- api


def install(t: Target, home: Path, *, mcp: bool = False, force: bool = False,
            command: list[str] | None = None) -> Report:
    if mcp and t.scope == "user":
        raise InputError("--mcp writes the project's .mcp.json; it has no user-level file",
                         hint=f"for every project run: {mcp_add_command('user', command or server_command())}")
    command = command or server_command()
    manifest = Manifest(home)
    record = manifest.get(t.key)
    report = Report()
    try:
        _install_skill(t, record, skill_text(), force, report)
        claude_settings.install(t.base, record, claude_settings.hook_entry(command), report.say)
        claude_settings.install_statusline(t.base, t.scope, t.user, record, claude_settings.statusline_entry(command),
                                           report.say)
        if mcp:
            _install_mcp(t, record, server_entry(command), report)
    finally:
        manifest.save()
    if not mcp and "mcp_json" not in record:
        report.say("mcp: to give Claude Code the MCP tools too, run:")
        report.say("  " + mcp_add_command(t.scope, command))
    report.say(f"approval: the skill pre-approves {', '.join(READ_ONLY_TOOLS)} (they read only); "
               f"Claude Code asks before {' and '.join(WRITE_TOOLS)}, which run models and write outputs: answer "
               "\"always allow\" once, or for `claude -p` (where skills' allowed-tools do not apply) pass")
    report.say(f"  --allowedTools \"{' '.join((*READ_ONLY_TOOLS, *WRITE_TOOLS))}\"")
    return report


def uninstall(t: Target, home: Path, *, command: list[str] | None = None, claude_exe: str | None = None) -> Report:
    """Remove what install wrote; with --user also the user-scope server added with the line install
    printed (through `claude_exe mcp remove`, else the command to run is printed)."""
    command = command or server_command()
    manifest = Manifest(home)
    record = manifest.get(t.key)
    report = Report()
    try:
        claude_settings.uninstall_statusline(t.base, t.scope, record, claude_settings.statusline_entry(command),
                                             report.say)
        # the hook first: the skill's uninstall removes the .claude folders install created, once empty
        claude_settings.uninstall(t.base, record, claude_settings.hook_entry(command), report.say)
        _uninstall_skill(t, record, skill_text(), report)
        _uninstall_mcp(t, record, server_entry(command), report)
    finally:
        manifest.save()
    if t.scope == "user":
        _uninstall_user_server(t.base / ".claude.json", server_entry(command), claude_exe, report)
    if not report.lines:
        report.say(f"nothing to remove for the {t.scope} scope ({t.base})")
    return report


def _uninstall_user_server(path: Path, entry: dict[str, Any], claude_exe: str | None, report: Report) -> None:
    """The user-scope server lives in Claude Code's own ~/.claude.json: removed through `claude mcp remove`
    (never by editing that file), and only when it is the entry install printed."""
    import subprocess

    remove = f"claude mcp remove --scope user {SERVER}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        report.say(f"mcp: cannot read {path} ({exc}); if it holds a user-scope `{SERVER}` server: {remove}")
        return
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    present = servers.get(SERVER) if isinstance(servers, dict) else None
    if present is None:
        return
    if present != entry:
        report.say(f"mcp: left the user-scope `{SERVER}` server in {path}: it is not the one install printed; "
                   f"to remove it anyway: {remove}")
        return
    added = "added with the command install printed: install did not write it"
    if claude_exe is None:
        report.say(f"mcp: the user-scope `{SERVER}` server in {path} was {added}; `claude` is not on the PATH, "
                   f"so remove it with: {remove}")
        return
    try:
        done = subprocess.run([claude_exe, "mcp", "remove", "--scope", "user", SERVER], capture_output=True,
                              text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        report.say(f"mcp: could not run `{remove}` ({exc}); run it yourself")
        return
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        report.say(f"mcp: `{remove}` failed ({said[0] if said else f'exit {done.returncode}'}); run it yourself")
        return
    report.say(f"mcp: removed the user-scope `{SERVER}` server from {path} with `{remove}` ({added})")


# ---------------------------------------------------------------------- commands
