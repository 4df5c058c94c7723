"""Dispatch overhead and breaker spill-over, against the loopback servers.

1. 200 jobs (120 routed local, 80 routed cloud) with a fixed per-request latency on each
   server. Ideal wall time = the larger of (local work / local slots, cloud work / cloud
   slots). Prints measured wall time against it, after a one-job run has paid the process's
   start-up (imports), which is printed apart.
2. The local lane saturated (100 jobs local, one slot): once without the breaker
   (every job waits its turn) and once with it (the breaker opens on the expected queue
   wait and spills jobs to the cloud lane). Prints both wall times.

Run: python bench/dispatch_bench.py
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollama_dist.api import RunReport, run_async  # noqa: E402
from ollama_dist.config import Settings  # noqa: E402

LOCAL_LATENCY = 0.05
CLOUD_LATENCY = 0.20
CLOUD_SLOTS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(module: str, latency: float, *extra: str) -> Iterator[str]:
    """A loopback server in its own process, so it does not share this process's GIL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", str(port), "--latency", str(latency), *extra],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def make_tasks(folder: Path, local_jobs: int, cloud_jobs: int) -> list[Path]:
    paths = []
    for kind, count in (("local", local_jobs), ("cloud", cloud_jobs)):
        if not count:
            continue
        inputs = folder / kind
        inputs.mkdir(parents=True)
        for i in range(count):
            (inputs / f"{i:04d}.txt").write_text(f"item {i}\n")
        if kind == "local":
            body = ("name: extract\nprompt: Extract the item number as JSON.\n"
                    "inputs: {files: ['local/*.txt']}\noutput: {format: json, schema: {type: object}}\n")
        else:
            body = "name: debug\nprompt: Find the root cause of this failure.\ninputs: {files: ['cloud/*.txt']}\n"
        path = folder / f"{kind}.yaml"
        path.write_text(body)
        paths.append(path)
    return paths


def settings(home: Path, ollama: str, claude: str, breaker_s: float) -> Settings:
    return Settings.model_validate({
        "home": home,
        "ollama": {"hosts": [ollama], "embedded": False, "concurrency_per_host": 1},
        "cloud": {"api_key": "test-key", "base_url": claude, "concurrency": CLOUD_SLOTS},
        "breaker": {"p95_threshold_s": breaker_s, "min_samples": 3, "window": 20, "cooldown_s": 0.5},
    })


def timed(local_jobs: int, cloud_jobs: int, breaker_s: float, local_latency: float = LOCAL_LATENCY
          ) -> tuple[float, RunReport]:
    with tempfile.TemporaryDirectory() as tmp, \
            server("tests.servers.ollama", local_latency, "--model", "gemma3:270m") as o, \
            server("tests.servers.anthropic", CLOUD_LATENCY, "--key", "test-key") as c:
        folder = Path(tmp)
        paths = make_tasks(folder / "tasks", local_jobs, cloud_jobs)
        cfg = settings(folder / "home", o, c, breaker_s)
        start = time.perf_counter()
        report = asyncio.run(run_async(paths, root=folder, settings=cfg, env={}))
        wall = time.perf_counter() - start
    bad = [o.reason for o in report.outcomes if o.status != "ok"]
    assert not bad, bad[:3]
    return wall, report


def main() -> None:
    print(f"dispatch_bench: local latency {LOCAL_LATENCY}s x 1 slot, cloud latency {CLOUD_LATENCY}s x {CLOUD_SLOTS}")
    # the first run in a process pays the imports (httpx, the SDKs, pydantic models): measured apart
    startup, _ = timed(1, 0, breaker_s=1e9)
    startup -= LOCAL_LATENCY
    wall, report = timed(120, 80, breaker_s=1e9)
    ideal = max(120 * LOCAL_LATENCY / 1, 80 * CLOUD_LATENCY / CLOUD_SLOTS)
    t = report.totals()
    print(f"  200 jobs ({t['routed_local']} local, {t['routed_cloud']} cloud): wall {wall:.2f}s, ideal {ideal:.2f}s, "
          f"overhead {100 * (wall / ideal - 1):+.1f}% (a fresh process first pays {startup:.2f}s of start-up)")
    slow_local, latency = 100, 0.2
    wall_wait, _ = timed(slow_local, 0, breaker_s=1e9, local_latency=latency)
    wall_spill, report = timed(slow_local, 0, breaker_s=1.0, local_latency=latency)
    t = report.totals()
    print(f"  local lane saturated ({slow_local} local jobs at {latency}s, breaker at 1s): waiting {wall_wait:.2f}s, "
          f"with breaker spill-over {wall_spill:.2f}s ({t['escalated']} jobs spilled to the cloud), "
          f"speed-up x{wall_wait / wall_spill:.2f}")


if __name__ == "__main__":
    main()
