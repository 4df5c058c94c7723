"""Typer app: parse -> call api -> render -> exit code. No SQL, HTTP or scoring here."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ollama_dist.errors import EXIT_INTERRUPTED, OllamaDistError

app = typer.Typer(
    name="ollama-dist",
    help="Route routine LLM work to a local Ollama model, keep reasoning on Claude, prove every answer.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich formatting costs 0.1 s of imports on every --help
)

PathsArg = Annotated[list[Path], typer.Argument(help="Task files, or folders of them.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
RootOpt = Annotated[Path, typer.Option("--root", help="The run's root: inputs and outputs stay inside it.")]


def handled(func: Callable[..., None]) -> Callable[..., None]:
    """Turn the package's errors into a message on stderr and their exit code; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except OllamaDistError as exc:
            sys.stderr.write(f"error: {exc}\n")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


@app.command()
@handled
def route(paths: PathsArg, as_json: JsonOpt = False, root: RootOpt = Path(".")) -> None:
    """Classify each job local (deterministic) or cloud (reasoning), and say why."""
    from ollama_dist import api, render

    routed = api.route(paths, root=root)
    if as_json:
        _print_json([r.as_json() for r in routed])
    else:
        _console().print(render.route_table(routed))


@app.command()
@handled
def config(as_json: JsonOpt = False) -> None:
    """Show the effective settings and where each came from (secrets never shown)."""
    from ollama_dist import render
    from ollama_dist.config import describe, load_settings

    rows = describe(load_settings())
    if as_json:
        _print_json({key: {"value": value, "source": source} for key, value, source in rows})
    else:
        _console().print(render.settings_table(rows))


def main() -> None:
    app()
