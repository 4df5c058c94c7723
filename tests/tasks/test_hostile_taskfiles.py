"""Property: whatever a task file says, `route` and `run --dry-run` exit 0 or 2, never with a
traceback, change no file (inside the root or out of it) and stay within a memory bound.

The files are mutations of the shipped examples and of hostile seeds (tests/hostile.py);
bench/fuzz_taskfiles.py runs the same check for longer and prints its counts.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from tests.hostile import HOSTILE_SEEDS, MEMORY_BOUND, Sandbox, examples, rss_bytes, task_files

TRACE_EVERY = 20  # tracemalloc triples the time: one example in this many is traced


def assert_contained(sandbox: Sandbox, data: bytes, command: str, *, trace: bool = False) -> None:
    result = sandbox.check(data, command, trace=trace)
    assert result.traceback is None, result.traceback
    assert result.exit_code in (0, 2), result.output
    assert result.changed == (), result.changed
    assert result.peak_bytes < MEMORY_BOUND, result.peak_bytes
    # the process's high-water mark since the test began (the alias bomb took it past a gigabyte)
    assert rss_bytes() < sandbox.started_rss + 4 * MEMORY_BOUND


@settings(max_examples=500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=task_files(), command=st.sampled_from(["route", "dry-run"]))
def test_mutated_task_files_are_contained(tmp_path: Path, data: bytes, command: str) -> None:
    sandbox = _sandbox(tmp_path)
    sandbox.examples += 1
    assert_contained(sandbox, data, command, trace=sandbox.examples % TRACE_EVERY == 0)


_SANDBOXES: dict[Path, Sandbox] = {}


def _sandbox(tmp_path: Path) -> Sandbox:
    """One sandbox per test (hypothesis calls the test once per example, with one tmp_path)."""
    if tmp_path not in _SANDBOXES:
        _SANDBOXES.clear()
        _SANDBOXES[tmp_path] = Sandbox(tmp_path)
    return _SANDBOXES[tmp_path]


def test_every_seed_is_contained(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path)
    for seed in examples() + tuple(HOSTILE_SEEDS):
        for command in ("route", "dry-run"):
            assert_contained(sandbox, seed.encode(), command)


def test_memory_stays_bounded_on_the_expanding_seeds(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path)
    for seed in HOSTILE_SEEDS:
        if "&" in seed or "[[" in seed or "{a: {a:" in seed:  # aliases and nesting
            assert_contained(sandbox, seed.encode(), "route", trace=True)
