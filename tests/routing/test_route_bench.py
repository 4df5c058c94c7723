"""bench/route_bench.py measures the blind sets only when asked: they are measured once, never tuned on."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "route_bench.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("route_bench", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_blind_sets_are_measured_only_with_blind() -> None:
    rb = bench()
    names = [n for n, _ in rb.sets([], blind=False)]
    assert names == ["devset", "holdout", "own"]
    blind = [f for n, f in rb.sets([], blind=True) if n not in names]
    if not (rb.DATA / "router_blind" / "labels.yaml").exists():
        pytest.skip("no blind set in this checkout")
    assert blind and all(f.name.startswith("router_blind") for f in blind)


def test_the_bank_routes_as_tasks_with_its_labels() -> None:
    rb = bench()
    jobs = rb.bank_jobs()
    assert len(jobs) >= 400 and {want for _, want in jobs} == {"local", "cloud"}


def test_the_cross_writer_split_is_the_two_writers_batches() -> None:
    rb = bench()
    jobs = rb.bank_jobs()
    first, second = rb.writers(jobs)
    assert (first.stop, second.start, second.stop) == (420, 420, len(jobs))
    assert jobs[first][-1][0].id != "php-001" and jobs[second][0][0].id == "php-001"
    ids = {j.id.rsplit("-", 1)[0] for j, _ in jobs[second]}
    assert ids.isdisjoint({j.id.rsplit("-", 1)[0] for j, _ in jobs[first]})  # no ecosystem in both batches


def test_a_moved_boundary_stops_the_bench() -> None:
    rb = bench()
    jobs = rb.bank_jobs()
    with pytest.raises(SystemExit):
        rb.writers(jobs[1:])
