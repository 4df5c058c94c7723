"""`route`, `run`, `config`: parse -> call api -> render -> exit code. No SQL, HTTP or scoring here."""

from __future__ import annotations

import json
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ollama_dist.exits import handled

if TYPE_CHECKING:
    from ollama_dist import api

PathsArg = Annotated[list[Path], typer.Argument(help="Task files, or folders of them.", metavar="PATH")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
RootOpt = Annotated[Path, typer.Option("--root", help="The run's root: inputs and outputs stay inside it.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help=(
    "Tables show every reason in full (else cut to one line; --json always has them)."))]
OutsideOpt = Annotated[bool, typer.Option("--allow-outside-root", help=(
    "Let `inputs.files` read files outside --root (absolute paths, `..`, symlinks out); "
    "outputs still stay inside it."))]


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


@handled
def route(paths: PathsArg, as_json: JsonOpt = False, root: RootOpt = Path("."),
          allow_outside_root: OutsideOpt = False, verbose: VerboseOpt = False) -> None:
    """Classify each job local (deterministic) or cloud (reasoning), and say why."""
    from ollama_dist import api
    from ollama_dist.report import render

    routed = api.route(paths, root=root, allow_outside_root=allow_outside_root)
    if as_json:
        _print_json([r.as_json() for r in routed])
    else:
        _console().print(render.route_table(routed, verbose))


@handled
def run(
    ctx: typer.Context,
    paths: PathsArg,
    as_json: JsonOpt = False,
    root: RootOpt = Path("."),
    session: Annotated[str | None, typer.Option(help="Session id (else OLLAMA_DIST_SESSION, "
                                                     "CLAUDE_CODE_SESSION_ID, or a new one).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Route and estimate; call no model.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display, no tables.")] = False,
    verbose: VerboseOpt = False,
    batch_id: Annotated[str | None, typer.Option("--batch-id", metavar="NAME", help=(
        "Unattended run (cron, CI): no prompts, colour or progress; exits 75 at once while another run "
        "of batch NAME holds its lock; a log in the home's logs/ folder."))] = None,
    shadow: Annotated[float, typer.Option("--shadow", min=0.0, max=1.0, metavar="RATE", help=(
        "Also ask the cloud for this share of local answers, to build a replay set (the user keeps "
        "the local answer)."))] = 0.0,
    cloud_batch: Annotated[bool, typer.Option("--cloud-batch", help=(
        "Send cloud-routed jobs through the Message Batches API: half price, answers within 24 h."))] = False,
    allow_outside_root: OutsideOpt = False,
    force: Annotated[bool, typer.Option("--force", help=(
        "Answer again and overwrite outputs edited since ollama-dist wrote them (else they are kept)."))] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help=(
        "Discard the cached answers of every task and ask again (the ledger keeps the old ones; "
        "an output you edited is still kept unless --force)."))] = False,
    refresh_task: Annotated[list[str] | None, typer.Option("--refresh-task", metavar="TASK", help=(
        "Discard the cached answers of task TASK only and ask again (repeatable)."))] = None,
    hand_back: Annotated[bool, typer.Option("--hand-back", help=(
        "Send nothing to Claude: run the local jobs and print, as JSON, the work left for the caller "
        "(cloud-routed jobs and failed local ones, each with its instructions and output spec)."))] = False,
) -> None:
    """Run the jobs: local ones on Ollama, the rest on Claude; validate, escalate, record."""
    from ollama_dist import api
    from ollama_dist.config import load_settings
    from ollama_dist.integrations.cron import lock
    from ollama_dist.report import render

    settings = load_settings()
    if hand_back and cloud_batch:
        from ollama_dist.errors import InputError

        raise InputError("--hand-back and --cloud-batch do not go together: a hand-back sends nothing to Claude")
    batch = ctx.with_resource(lock.acquire(settings.home, batch_id)) if batch_id else None

    def console(stderr: bool = False) -> Any:  # --batch-id: plain text for cron mail and the log
        if batch_id:
            from rich.console import Console

            return Console(stderr=stderr, no_color=True, force_terminal=False)
        return _console(stderr)

    err = console(stderr=True)
    show_progress = not quiet and not batch_id and err.is_terminal
    progress: render.Progress | None = None

    def started(routed: list[api.Routed]) -> None:
        nonlocal progress
        if show_progress and not dry_run:
            progress = render.Progress(err, len(routed)).__enter__()

    def finished(event: Any) -> None:
        if progress is not None:
            progress.update(event)

    partial: list[api.RunReport] = []
    try:
        report = _until_signalled(api.run_async(
            paths, root=root, settings=settings, session=session, dry_run=dry_run, on_start=started,
            on_event=finished, on_interrupt=partial.append, batch_id=batch_id, shadow_rate=shadow,
            cloud_batch=cloud_batch, force=force, refresh=api.Refresh(refresh, frozenset(refresh_task or ())),
            allow_outside_root=allow_outside_root, hand_back=hand_back))
    except KeyboardInterrupt:
        if not partial:
            raise  # before the run started: nothing to report
        report = partial[0]
    finally:
        if progress is not None:
            progress.__exit__(None, None, None)
    if batch is not None:
        batch.log(json.dumps(report.as_json(), indent=2, default=str), *(f"note: {n}" for n in report.notes),
                  f"exit code {report.exit_code}")
    if dry_run:
        estimates = api.estimate([api.Routed(o.job, o.decision) for o in report.outcomes], settings)
        if as_json:
            _print_json([e.as_json() for e in estimates])
        elif not quiet:
            console().print(render.dry_run_table(estimates))
        for note in report.notes:
            err.print(f"note: {note}")
        return
    if hand_back:
        from ollama_dist.run.handback import remaining

        _print_json(remaining(report.as_json()))
        if not quiet:
            err.print(render.summary_table(report))
    elif as_json:
        _print_json(report.as_json())
        if not quiet:
            err.print(render.summary_table(report))
    elif not quiet:
        out = console()
        out.print(render.jobs_table(report, verbose))
        out.print(render.summary_table(report))
    for note in report.notes:
        err.print(f"note: {note}")
    if report.interrupted:
        err.print("interrupted")
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _until_signalled(main: Coroutine[Any, Any, api.RunReport]) -> api.RunReport:
    """`asyncio.run(main)`, where Ctrl-C and SIGTERM end the run alike: the first cancels it (what
    finished is reported, in-flight model calls are stopped), a second ends the process at once
    (exit 130; every answer is already in the ledger)."""
    import asyncio
    import os
    import signal
    from contextlib import suppress

    from ollama_dist.errors import EXIT_INTERRUPTED

    signalled: list[int] = []
    signals = (signal.SIGINT, signal.SIGTERM)

    def at_once(signum: int, frame: object) -> None:
        with suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.write("interrupted again: stopping now\n")
        os._exit(EXIT_INTERRUPTED)

    async def guarded() -> api.RunReport:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()

        def first(signum: int) -> None:
            signalled.append(signum)
            for sig in signals:  # from now on a signal ends the process, whatever it is waiting for
                loop.remove_signal_handler(sig)
                signal.signal(sig, at_once)
            if task is not None:
                task.cancel()

        with suppress(NotImplementedError, RuntimeError, ValueError):  # no signals here (Windows, a thread)
            for sig in signals:
                loop.add_signal_handler(sig, first, sig)
        try:
            return await main
        finally:
            if not signalled:
                with suppress(NotImplementedError, RuntimeError, ValueError):
                    for sig in signals:
                        loop.remove_signal_handler(sig)

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        if signalled:
            raise KeyboardInterrupt from None
        raise


@handled
def config(as_json: JsonOpt = False) -> None:
    """Show the effective settings and where each came from (secrets never shown)."""
    from ollama_dist.config import describe, load_settings
    from ollama_dist.report import render

    rows = describe(load_settings())
    if as_json:
        _print_json({key: {"value": value, "source": source} for key, value, source in rows})
    else:
        _console().print(render.settings_table(rows))

