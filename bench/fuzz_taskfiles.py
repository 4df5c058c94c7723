"""Fuzz task files for longer than CI does: mutated examples and hostile seeds through
`route` and `run --dry-run`, counting exits by code, tracebacks, files changed and the
largest traced memory peak (tests/hostile.py holds the generator and the sandbox).

Run: python bench/fuzz_taskfiles.py [EXAMPLES]   (default 3000; a failure stops the run)
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import (  # noqa: E402
    HealthCheck,
    given,
    settings,
    strategies as st,  # noqa: E402
)

from tests.hostile import MEMORY_BOUND, Result, Sandbox, rss_bytes, task_files  # noqa: E402

TRACE_EVERY = 10  # tracemalloc triples the time: trace one example in this many


def main(examples: int) -> int:
    home = tempfile.mkdtemp(prefix="fuzz-home-")
    os.environ["OLLAMA_DIST_HOME"] = home  # a ledger of its own, never the user's
    for name in ("OLLAMA_HOST", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        os.environ.pop(name, None)
    os.chdir(tempfile.mkdtemp(prefix="fuzz-cwd-"))  # no project config leaks in
    sandbox = Sandbox(Path(tempfile.mkdtemp(prefix="fuzz-")))
    exits: collections.Counter[str] = collections.Counter()
    failures: list[tuple[bytes, str, Result]] = []
    peak = count = 0
    started = time.perf_counter()

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=task_files(), command=st.sampled_from(["route", "dry-run"]))
    def fuzz(data: bytes, command: str) -> None:
        nonlocal peak, count
        count += 1
        result = sandbox.check(data, command, trace=count % TRACE_EVERY == 0)
        peak = max(peak, result.peak_bytes)
        exits[f"{command} exit {result.exit_code}"] += 1
        bad = (result.traceback is not None or result.exit_code not in (0, 2) or result.changed
               or result.peak_bytes >= MEMORY_BOUND)
        if bad:
            failures.append((data, command, result))
            raise AssertionError("not contained")

    try:
        fuzz()
    except AssertionError:
        pass
    elapsed = time.perf_counter() - started
    print(f"examples: {count} in {elapsed:.0f} s ({count / elapsed:.1f}/s)")
    for key, n in sorted(exits.items()):
        print(f"  {key}: {n}")
    print(f"tracebacks: {sum(1 for *_, r in failures if r.traceback)}")
    print(f"files changed: {sum(1 for *_, r in failures if r.changed)}")
    print(f"max traced memory (1 in {TRACE_EVERY}): {peak / 2**20:.1f} MiB (bound {MEMORY_BOUND / 2**20:.0f} MiB)")
    print(f"process high-water mark: {rss_bytes() / 2**20:.0f} MiB")
    if failures:
        data, command, result = failures[-1]  # hypothesis shrinks towards the last one
        print(f"\nFAILED ({command}): {data!r}\n{result.traceback or result.output}\nchanged: {result.changed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
