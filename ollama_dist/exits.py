"""How every command ends: the package's errors become a message on stderr and their exit code.

A command asked for `--json` (its `as_json` parameter) also prints the error on stdout as
`{"error": {"type", "message", "hint", "exit_code", ...}}`, so a script reading stdout
learns why it got nothing else.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import typer

from ollama_dist.errors import EXIT_INTERRUPTED, InputErrors, OllamaDistError


def handled(func: Callable[..., None]) -> Callable[..., None]:
    """Turn the package's errors into a message on stderr and their exit code; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except OllamaDistError as exc:
            for one in exc.errors if isinstance(exc, InputErrors) else (exc,):
                sys.stderr.write(f"error: {one}\n")
            if kwargs.get("as_json") is True:
                sys.stdout.write(json.dumps({"error": exc.as_json()}, indent=2) + "\n")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper
