"""`ollama-dist claude install|uninstall`: round trips in temporary folders; uninstall removes exactly what install wrote."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.integrations.claude_code import skill

runner = CliRunner()
PORTABLE_KEYS = {"name", "description", "license", "compatibility", "metadata", "allowed-tools"}


def tree(root: Path) -> dict[str, str | None]:
    """Every file (with its text) and folder under root."""
    return {str(p.relative_to(root)): (p.read_text() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def claude(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["claude", *args])
    return result.exit_code, result.stdout, result.stderr


def frontmatter(text: str) -> tuple[dict[str, str], str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


@pytest.fixture(autouse=True)
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's home (their ~/.claude settings apply to a project install too): a fresh one per test."""
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def test_the_skill_text_follows_the_skills_format() -> None:
    meta, body = frontmatter(skill.skill_text())
    assert set(meta) <= PORTABLE_KEYS  # packages for claude.ai and the Skills API too
    assert meta["name"] == "ollama-dist" and len(meta["name"]) <= 64
    description = meta["description"]
    assert len(description) <= 1024
    for must in ("deterministic", "schema", "ollama-dist run", "route_tasks", "run_tasks", "router_status"):
        assert must in description, must
    assert "Bash(ollama-dist run *)" in meta["allowed-tools"]
    assert "kind: deterministic" in body and "keep" in body.lower()
    assert "${CLAUDE_SESSION_ID}" in body
    task = yaml.safe_load(body.split("```yaml\n", 1)[1].split("```", 1)[0])  # the example is a valid task
    assert task["output"]["format"] == "json" and task["output"]["schema"]["type"] == "object"


def test_project_install_then_uninstall_leaves_the_folder_as_it_was(isolated_home: Path) -> None:
    project = Path.cwd()
    Path("README.md").write_text("mine\n")
    before = tree(project)
    code, out, err = claude("install")
    assert code == 0, err
    written = project / ".claude" / "skills" / "ollama-dist" / "SKILL.md"
    assert written.read_text() == skill.skill_text()
    expected = skill.mcp_add_command("project", skill.server_command())
    assert expected in out
    assert '--allowedTools "mcp__ollama-dist__route_tasks mcp__ollama-dist__router_status ' \
        'mcp__ollama-dist__run_tasks mcp__ollama-dist__report_answers"' in out
    settings = json.loads((project / ".claude" / "settings.json").read_text())
    (group,) = settings["hooks"]["SessionStart"]
    assert group["hooks"][0]["command"].endswith("claude session-hook")
    personal = json.loads((project / ".claude" / "settings.local.json").read_text())
    assert personal["statusLine"]["command"].endswith(" statusline") and personal["statusLine"]["type"] == "command"
    assert "statusLine" not in settings  # the shared settings.json would give it to teammates
    assert not (project / ".mcp.json").exists()  # only printed without --mcp
    assert (isolated_home / "claude" / "installs.json").is_file()

    code, out, _ = claude("install")  # idempotent
    assert code == 0 and "up to date" in out and written.read_text() == skill.skill_text()

    code, out, _ = claude("uninstall")
    assert code == 0 and f"removed {written}" in out
    assert tree(project) == before
    assert not (isolated_home / "claude" / "installs.json").exists()
    code, out, _ = claude("uninstall")
    assert code == 0 and "nothing to remove" in out


def test_the_printed_command_is_claude_mcp_add_json_syntax() -> None:
    line = skill.mcp_add_command("user", ["ollama-dist", "mcp"])
    words = shlex.split(line)
    # `add-json` (not `add`): only it carries alwaysLoad (checked with the real CLI 2.1.197)
    assert words[:6] == ["claude", "mcp", "add-json", "--scope", "user", "ollama-dist"]
    assert json.loads(words[6]) == {"type": "stdio", "command": "ollama-dist", "args": ["mcp"], "env": {},
                                    "alwaysLoad": True}


def test_folders_and_skills_that_were_there_stay(isolated_home: Path) -> None:
    other = Path(".claude/skills/other/SKILL.md")
    other.parent.mkdir(parents=True)
    other.write_text("---\nname: other\n---\nmine\n")
    Path(".claude/settings.json").write_text("{}\n")
    before = tree(Path.cwd())
    assert claude("install")[0] == 0
    assert claude("uninstall")[0] == 0
    assert tree(Path.cwd()) == before


def test_mcp_json_merge_keeps_other_servers_and_uninstall_takes_only_its_entry(isolated_home: Path) -> None:
    original = {"mcpServers": {"github": {"type": "http", "url": "https://api.example.com/mcp"}},
                "note": "kept"}
    Path(".mcp.json").write_text(json.dumps(original, indent=2) + "\n")
    code, out, err = claude("install", "--mcp")
    assert code == 0, err
    data = json.loads(Path(".mcp.json").read_text())
    assert data["note"] == "kept" and data["mcpServers"]["github"] == original["mcpServers"]["github"]
    command = skill.server_command()
    assert data["mcpServers"]["ollama-dist"] == {"type": "stdio", "command": command[0], "args": command[1:],
                                                 "env": {}, "alwaysLoad": True}
    assert "claude mcp add" not in out  # written, not printed
    assert claude("install", "--mcp")[0] == 0  # idempotent
    assert json.loads(Path(".mcp.json").read_text()) == data
    assert claude("uninstall")[0] == 0
    assert json.loads(Path(".mcp.json").read_text()) == original  # the file was not ours: it stays


def test_mcp_json_created_by_install_is_deleted_only_when_nothing_else_is_in_it(isolated_home: Path) -> None:
    assert claude("install", "--mcp")[0] == 0
    assert claude("uninstall")[0] == 0
    assert not Path(".mcp.json").exists() and not Path(".claude").exists()

    assert claude("install", "--mcp")[0] == 0
    data = json.loads(Path(".mcp.json").read_text())
    data["mcpServers"]["later"] = {"type": "stdio", "command": "later"}  # added by hand after install
    Path(".mcp.json").write_text(json.dumps(data))
    assert claude("uninstall")[0] == 0
    assert json.loads(Path(".mcp.json").read_text()) == {"mcpServers": {"later": {"type": "stdio",
                                                                                  "command": "later"}}}


def test_someone_elses_mcp_entry_is_not_clobbered(isolated_home: Path) -> None:
    mine = {"mcpServers": {"ollama-dist": {"type": "stdio", "command": "/opt/od/bin/ollama-dist", "args": ["mcp"]}}}
    Path(".mcp.json").write_text(json.dumps(mine))
    code, _, err = claude("install", "--mcp")
    assert code == 2 and "did not write" in err
    assert json.loads(Path(".mcp.json").read_text()) == mine
    assert claude("uninstall")[0] == 0
    assert json.loads(Path(".mcp.json").read_text()) == mine


def test_broken_mcp_json_is_left_alone(isolated_home: Path) -> None:
    Path(".mcp.json").write_text("{not json")
    code, _, err = claude("install", "--mcp")
    assert code == 2 and ".mcp.json" in err
    assert Path(".mcp.json").read_text() == "{not json"


def test_an_edited_skill_survives_uninstall_and_is_not_overwritten_without_force(isolated_home: Path) -> None:
    assert claude("install")[0] == 0
    path = Path(".claude/skills/ollama-dist/SKILL.md")
    path.write_text(path.read_text() + "\nMy own notes.\n")
    code, _, err = claude("install")
    assert code == 2 and "--force" in err and "My own notes." in path.read_text()
    code, out, _ = claude("uninstall")
    assert code == 0 and "left" in out and "My own notes." in path.read_text()

    Path("other").mkdir()  # a SKILL.md install never wrote
    theirs = Path("other/.claude/skills/ollama-dist/SKILL.md")
    theirs.parent.mkdir(parents=True)
    theirs.write_text("theirs\n")
    target = skill.Target("project", Path("other").resolve())
    with pytest.raises(skill.InputError):
        skill.install(target, isolated_home)
    skill.install(target, isolated_home, force=True)
    assert theirs.read_text() == skill.skill_text()


def test_uninstall_without_the_manifest_removes_only_an_unedited_skill(isolated_home: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    assert claude("install")[0] == 0
    monkeypatch.setenv("OLLAMA_DIST_HOME", str(tmp_path / "another-home"))
    assert claude("uninstall")[0] == 0
    assert not Path(".claude/skills/ollama-dist").exists()


def test_user_install_goes_to_the_home_claude_folder(isolated_home: Path, user_home: Path) -> None:
    code, out, err = claude("install", "--user")
    assert code == 0, err
    written = user_home / ".claude" / "skills" / "ollama-dist" / "SKILL.md"
    assert written.read_text() == skill.skill_text()
    assert "claude mcp add-json --scope user ollama-dist " in out
    assert not Path(".claude").exists()  # the project is untouched
    code, _, err = claude("install", "--user", "--mcp")
    assert code == 2 and "--scope user" in err  # there is no user-level .mcp.json to write
    assert claude("uninstall", "--user")[0] == 0
    assert tree(user_home) == {}


def test_project_and_user_together_is_an_error() -> None:
    code, _, err = claude("install", "--project", "--user")
    assert code == 2 and "not both" in err


def test_a_status_line_the_user_has_is_never_replaced(isolated_home: Path, user_home: Path) -> None:
    theirs = {"statusLine": {"type": "command", "command": "~/bin/my-line"}, "theme": "dark"}
    (user_home / ".claude").mkdir()
    (user_home / ".claude" / "settings.json").write_text(json.dumps(theirs))
    code, out, err = claude("install")
    assert code == 0, err
    assert "left your statusLine in" in out and "statusline" in out
    assert not Path(".claude/settings.local.json").exists()  # a project one would hide theirs here
    assert json.loads((user_home / ".claude" / "settings.json").read_text()) == theirs
    assert claude("uninstall")[0] == 0
    assert json.loads((user_home / ".claude" / "settings.json").read_text()) == theirs

    project_own = {"statusLine": {"type": "command", "command": "./line.sh"}}
    (user_home / ".claude" / "settings.json").unlink()
    Path(".claude").mkdir(exist_ok=True)
    Path(".claude/settings.json").write_text(json.dumps(project_own))
    assert claude("install")[0] == 0
    assert json.loads(Path(".claude/settings.json").read_text())["statusLine"] == project_own["statusLine"]
    assert not Path(".claude/settings.local.json").exists()
    assert claude("uninstall")[0] == 0
    assert json.loads(Path(".claude/settings.json").read_text()) == project_own


def test_user_install_adds_the_status_line_beside_the_hook_and_uninstall_takes_both(
        isolated_home: Path, user_home: Path) -> None:
    (user_home / ".claude").mkdir()
    (user_home / ".claude" / "settings.json").write_text(json.dumps({"theme": "dark"}))
    assert claude("install", "--user")[0] == 0
    data = json.loads((user_home / ".claude" / "settings.json").read_text())
    assert data["theme"] == "dark" and data["statusLine"]["command"].endswith(" statusline")
    assert data["hooks"]["SessionStart"]
    code, out, _ = claude("install", "--user")
    assert code == 0 and "already shows ollama-dist's status line" in out
    assert claude("uninstall", "--user")[0] == 0
    assert json.loads((user_home / ".claude" / "settings.json").read_text()) == {"theme": "dark"}


def test_an_edited_status_line_stays_and_an_unrecorded_one_is_reported(
        isolated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert claude("install")[0] == 0
    path = Path(".claude/settings.local.json")
    data = json.loads(path.read_text())
    data["statusLine"]["command"] += " --mine"
    path.write_text(json.dumps(data))
    code, out, _ = claude("uninstall")
    assert code == 0 and "left the statusLine" in out and "--mine" in path.read_text()
    path.unlink()

    assert claude("install")[0] == 0
    monkeypatch.setenv("OLLAMA_DIST_HOME", str(tmp_path / "another-home"))  # no manifest there
    code, out, _ = claude("uninstall")
    assert code == 0
    for what in ("skill", "hook", "statusline"):
        (said,) = [line for line in out.splitlines() if line.startswith(f"{what}: removed")]
        assert "not recorded as installed from this ollama-dist home" in said, said
    # without the manifest it cannot know it created the settings files: they stay, emptied of its entries
    assert tree(Path(".claude")) == {"settings.json": "{}\n", "settings.local.json": "{}\n", "skills": None}


def test_uninstall_reports_the_mcp_entry_it_removes_that_install_only_printed(isolated_home: Path) -> None:
    code, out, _ = claude("install")
    entry = json.loads(shlex.split(skill.mcp_add_command("project", skill.server_command()))[-1])
    Path(".mcp.json").write_text(json.dumps({"mcpServers": {"ollama-dist": entry}}))  # what `claude mcp add-json` does
    code, out, _ = claude("uninstall")
    assert code == 0 and "install did not write it" in out
    assert json.loads(Path(".mcp.json").read_text()) == {"mcpServers": {}}


def user_server(user_home: Path, entry: dict[str, object]) -> Path:
    path = user_home / ".claude.json"
    path.write_text(json.dumps({"firstStartTime": "x", "mcpServers": {"ollama-dist": entry, "other": {"command": "o"}}}))
    return path


def test_user_uninstall_without_claude_on_the_path_says_how_to_remove_the_server(
        isolated_home: Path, user_home: Path) -> None:
    assert claude("install", "--user")[0] == 0
    entry = skill.server_entry(skill.server_command())
    path = user_server(user_home, entry)
    report = skill.uninstall(skill.target(False, True), isolated_home, claude_exe=None)
    (said,) = [line for line in report.lines if "user-scope" in line]
    assert "install did not write it" in said and "claude mcp remove --scope user ollama-dist" in said
    assert "ollama-dist" in json.loads(path.read_text())["mcpServers"]  # Claude Code's file is never edited here
    other = user_server(user_home, {**entry, "args": ["mcp", "--mine"]})
    report = skill.uninstall(skill.target(False, True), isolated_home, claude_exe="/bin/false")
    assert any("not the one install printed" in line for line in report.lines)
    assert json.loads(other.read_text())["mcpServers"]["ollama-dist"]["args"] == ["mcp", "--mine"]


REAL_CLAUDE = __import__("shutil").which("claude")


@pytest.mark.skipif(REAL_CLAUDE is None, reason="the real `claude` CLI is not installed "
                    "(npm install -g @anthropic-ai/claude-code)")
def test_user_uninstall_removes_the_user_scope_server_through_the_real_claude(
        isolated_home: Path, user_home: Path) -> None:
    import subprocess

    code, out, _ = claude("install", "--user")
    line = next(x.strip() for x in out.splitlines() if x.strip().startswith("claude mcp add-json"))
    added = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    assert "ollama-dist" in json.loads((user_home / ".claude.json").read_text())["mcpServers"]
    code, out, _ = claude("uninstall", "--user")
    assert code == 0
    assert "removed the user-scope `ollama-dist` server" in out and "install did not write it" in out
    assert "ollama-dist" not in json.loads((user_home / ".claude.json").read_text()).get("mcpServers", {})
