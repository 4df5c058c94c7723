"""`ollama-dist claude install|uninstall|session-hook`, `ollama-dist mcp` and `ollama-dist statusline`:
the Claude Code integration's commands.

What they do is ``integrations.claude_code`` (skill, session, mcp_server); this module parses and prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ollama_dist.exits import handled
from ollama_dist.integrations.claude_code import session
from ollama_dist.integrations.claude_code.skill import Report, install, target, uninstall

app = typer.Typer(help="Set up Claude Code to hand deterministic work to ollama-dist (skill, MCP server).",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_show_locals=False)


ProjectOpt = Annotated[bool, typer.Option("--project", help="This project: ./.claude (the default).")]
UserOpt = Annotated[bool, typer.Option("--user", help="Every project: ~/.claude.")]


def _home() -> Path:
    from ollama_dist.config import load_settings

    return load_settings().home


def _done(report: Report) -> None:
    for line in report.lines:
        sys.stdout.write(line + "\n")


@app.command("install")
@handled
def install_command(
    project: ProjectOpt = False,
    user: UserOpt = False,
    mcp: Annotated[bool, typer.Option("--mcp", help="Also add the MCP server to the project's .mcp.json.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace a SKILL.md this install did not write.")] = False,
) -> None:
    """Write the ollama-dist skill for Claude Code; print (or with --mcp write) the MCP server config."""
    _done(install(target(project, user), _home(), mcp=mcp, force=force))


@app.command("uninstall")
@handled
def uninstall_command(project: ProjectOpt = False, user: UserOpt = False) -> None:
    """Remove exactly what `install` wrote (an edited SKILL.md or .mcp.json entry stays), and say what it
    removes that install did not write; --user also removes the user-scope server (`claude mcp remove`)."""
    import shutil

    _done(uninstall(target(project, user), _home(), claude_exe=shutil.which("claude")))


app.command("session-hook", hidden=True)(handled(session.hook_command))


@handled
def mcp_command() -> None:
    """Serve MCP over stdio for Claude Code: route_tasks, run_tasks, report_answers, router_status."""
    from ollama_dist.integrations.claude_code import mcp_server  # with the tools' schemas: not for --help

    mcp_server.serve()


def statusline_command() -> None:
    """Claude Code's status line: this session's local jobs, tokens saved, the local tier; records plan usage."""
    from ollama_dist.integrations.claude_code import statusline  # the ledger's imports, only when called

    statusline.statusline_command()  # never fails: an error becomes the line
