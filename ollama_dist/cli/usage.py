"""How a command's arguments read in its usage line and in --help: `PATH...`, not `{paths}...`.

Typer (0.29) writes a required argument as `{name}` in the usage line and gives its row
in --help the Python type (`paths... <list[Path]>`). Commands made with `cls=Command`
show an argument by its metavar (its name in capitals when it has none), `...` after one
that takes several, `[ ]` around an optional one, and no type: the help text says what
it takes. Options are shown as Typer shows them.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


def argument_name(param: Any) -> str:
    """`PATH...` for a metavar `PATH` (or a name `path`) taking several values; `[X]` if optional."""
    name = str(param.metavar or param.name or "").upper()
    if param.nargs != 1:
        name += "..."
    return name if param.required else f"[{name}]"


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", None) == "argument"


class Command(TyperCommand):
    """A Typer command whose arguments read as `PATH...` in its usage line and --help."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            pieces.extend([argument_name(param)] if _is_argument(param) else param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args: list[tuple[str, str]] = []
        opts: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if _is_argument(param):
                args.append((argument_name(param).strip("[]"), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
