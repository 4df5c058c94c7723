"""`ollama-dist ollama status|on|off`: see and manage the local Ollama server.

status  every configured host: reachable, what each route answered: version, models
        pulled (/api/tags), models in memory with their context and size (/api/ps); its
        slots (ollama.num_parallel); the configured local model when it is missing, with
        the `ollama pull` that fixes it; the other local tiers (OpenAI-compatible servers,
        the embedded model); and a warning when cloud.base_url is an Ollama server.
on      start the systemd unit `ollama.service` when there is one; else `ollama serve`
        in the background, in a session of its own, its output in `ollama.log` and its
        pid in `ollama.pid` in the ollama-dist home; then wait for `/api/version`.
        Already running is success and starts nothing. `--warm MODEL` loads a model.
off     stop what `on` started (the pid file, checked to still be `ollama serve`, or the
        unit), never anything else; `--unload` first asks the server to free its models.

The probe is ``integrations.ollama_control.probe``; starting and stopping is
``integrations.ollama_control.process``. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from ollama_dist.exits import handled
from ollama_dist.integrations.ollama_control.probe import embedded_tier, probe
from ollama_dist.integrations.ollama_control.process import (
    DEFAULT_WARM_CTX,
    UNIT,
    LocalServer,
    pick_local_host,
)

app = typer.Typer(
    name="ollama",
    help="See and manage the local Ollama server: status, on, off.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,
)


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
HostOpt = Annotated[str | None, typer.Option("--host", help="The local server to manage (default: the first "
                                                            "configured host on this machine).")]


def _print(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _err(message: str) -> None:
    sys.stderr.write(message + "\n")


@app.command("status")
@handled
def status_command(
    as_json: JsonOpt = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each host.")] = 5.0,
) -> None:
    """Each configured host: what each route answered (version, models pulled, loaded), its slots, missing
    models; then the other local tiers (OpenAI-compatible servers, the embedded model).

    Exit code 0 when every host answers as Ollama, 1 otherwise.
    """
    import asyncio

    from ollama_dist.config import load_settings

    settings = load_settings()
    o = settings.ollama
    wanted = [settings.models.local]
    reports = asyncio.run(probe(o.hosts, wanted, timeout_s=timeout, slots={h: o.slots_for(h) for h in o.hosts}))
    embedded = embedded_tier(o.embedded, o.embedded_model_path, settings.home)
    cloud_warning = asyncio.run(_cloud_is_ollama(settings.cloud.base_url, [*o.hosts, *o.openai_compat]))
    server = LocalServer(settings.home, o.hosts[0]) if o.hosts else None
    managed = _managed(server) if server is not None else None
    if as_json:
        _print({"hosts": [r.as_json() for r in reports], "all_reachable": all(r.reachable for r in reports),
                "configured_models": wanted, "managed": managed, "openai_compat": list(o.openai_compat),
                "embedded": embedded.as_json(), "cloud_base_url_is_ollama": cloud_warning})
    else:
        from rich.console import Console

        from ollama_dist.report import render

        console = Console()
        console.print(render.ollama_status_table(reports))
        for url in o.openai_compat:
            console.print(f"OpenAI-compatible server (next local tier): {url}")
        console.print(f"embedded tier (last local tier): {embedded.state}")
    for r in reports:
        if not r.reachable:
            _err(f"{r.status.host}: not reachable ({r.status.error}); start it with `ollama-dist ollama on`")
        elif not r.speaks_ollama:
            _err(f"{r.status.host}: something answers there, but not as Ollama (is it another server?): "
                 f"{r.status.error}")
        elif r.status.error:
            _err(f"{r.status.host}: answered, but not every route: {r.status.error}")
        for model in r.missing:
            _err(f"{r.status.host}: {model} is not pulled; fix: ollama pull {model}")
    if cloud_warning:
        _err(f"cloud.base_url points at Ollama, not Claude: {cloud_warning}")
    if not all(r.speaks_ollama for r in reports):
        raise typer.Exit(1)


async def _cloud_is_ollama(base_url: str | None, local_urls: list[str]) -> str | None:
    """Why the cloud base URL is an Ollama server, or None (no base URL, or not Ollama)."""
    if not base_url:
        return None
    import httpx

    from ollama_dist.backends.claude_endpoint import answers_as_ollama, ollama_lookalike

    why = ollama_lookalike(base_url, local_urls)
    if why is None:
        async with httpx.AsyncClient(trust_env=False) as client:
            why = await answers_as_ollama(client, base_url)
    return why


def _managed(server: LocalServer) -> dict[str, Any] | None:
    if server.unit_path.exists():
        return {"unit": UNIT}
    pid = server.started_pid()
    if pid is not None and server.is_ollama(pid):
        return {"pid": pid, "log": str(server.log_path)}
    return None


def _server(host: str | None) -> tuple[LocalServer, Any]:
    from ollama_dist.config import load_settings, ollama_host_url

    settings = load_settings()
    chosen = host or pick_local_host(settings.ollama.hosts)
    slots = settings.ollama.num_parallel.get(ollama_host_url(chosen))
    return LocalServer(settings.home, chosen, num_parallel=slots), settings


@app.command("on")
@handled
def on_command(
    warm: Annotated[str | None, typer.Option(metavar="MODEL", help="Load this model now (keep_alive from "
                                                                   "the config), so the first job is fast.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server to answer.")] = 30.0,
    num_ctx: Annotated[int, typer.Option(help="Context to load the --warm model with.")] = DEFAULT_WARM_CTX,
    host: HostOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start Ollama: the systemd unit if installed, else `ollama serve` in the background. Idempotent."""
    import asyncio

    server, settings = _server(host)
    started = asyncio.run(server.on(timeout_s=timeout, warm=warm, keep_alive=settings.ollama.keep_alive,
                                    num_ctx=num_ctx))
    if as_json:
        _print(started.as_json())
    if started.action == "already_running":
        _err(f"Ollama {started.version} is already running on {started.host}: nothing started")
    elif started.action == "started_unit":
        _err(f"started {UNIT}: Ollama {started.version} answers on {started.host}")
    else:
        _err(f"started `ollama serve` (pid {started.pid}, log {started.log}): Ollama {started.version} "
             f"answers on {started.host}")
    if started.warmed:
        _err(f"{started.warmed} is loaded (keep_alive {settings.ollama.keep_alive})")


@app.command("off")
@handled
def off_command(
    unload: Annotated[bool, typer.Option("--unload", help="First free the models in memory (keep_alive 0).")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server to stop.")] = 10.0,
    host: HostOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop the Ollama server `on` started (never one it did not start)."""
    import asyncio

    server, _ = _server(host)
    stopped = asyncio.run(server.off(unload=unload, timeout_s=timeout))
    if as_json:
        _print(stopped.as_json())
    if stopped.unloaded:
        _err(f"unloaded {', '.join(stopped.unloaded)}")
    if stopped.action == "stopped":
        _err(f"stopped `ollama serve` (pid {stopped.pid}) on {stopped.host}")
    elif stopped.action == "stopped_unit":
        _err(f"stopped {UNIT}")
    else:
        _err(stopped.detail)
