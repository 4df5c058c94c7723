"""The Typer app: one module per command group, registered here. No SQL, HTTP or scoring in cli/.

route_run  route, run, config            status  router-status
ollama     ollama status|on|off          claude  claude install|uninstall|session-hook, mcp, statusline
eval       eval, calibrate
usage      how arguments read in usage lines and --help (`PATH...`)

Each command module is light at import (the SDKs, sqlite and rich load inside the functions), so
`--help` stays fast.
"""

from __future__ import annotations

import typer

from ollama_dist.cli import claude, eval as eval_commands, ollama, route_run, status
from ollama_dist.cli.usage import Command
from ollama_dist.exits import handled

app = typer.Typer(
    name="ollama-dist",
    help="Route routine LLM work to a local Ollama model, keep reasoning on Claude, prove every answer.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich formatting costs 0.1 s of imports on every --help
)

app.command("route", cls=Command)(route_run.route)
app.command("run", cls=Command)(route_run.run)
app.command("config")(route_run.config)
app.command("mcp")(claude.mcp_command)
app.command("statusline")(claude.statusline_command)
app.add_typer(claude.app, name="claude")
app.command("eval", cls=Command)(handled(eval_commands.eval_command))
app.command("calibrate")(handled(eval_commands.calibrate_command))
app.command("router-status")(status.router_status_command)
app.add_typer(ollama.app, name="ollama")


def main() -> None:
    app()
