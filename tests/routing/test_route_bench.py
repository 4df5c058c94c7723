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


def test_the_cross_writer_split_is_the_three_writers_batches() -> None:
    rb = bench()
    jobs = rb.bank_jobs()
    batches = rb.writers(jobs)
    assert [name for name, _ in batches] == ["w1", "w2", "w3"]
    (_, first), (_, second), (_, third) = batches
    assert (first.start, first.stop, second.stop, third.stop) == (0, 420, 600, len(jobs))
    assert [jobs[r.start][0].id for _, r in batches] == ["rust-001", "php-001", "go-301"]
    assert [int(jobs[i][0].id.rsplit("-", 1)[1]) > 300 for i in range(len(jobs))] == \
        [i in third for i in range(len(jobs))]  # the third writer's ids are numbered from 301
    w1, w2 = ({jobs[i][0].id.rsplit("-", 1)[0] for i in r} for r in (first, second))
    assert w1.isdisjoint(w2)  # the second writer wrote only for ecosystems the first had not


def test_a_moved_boundary_stops_the_bench() -> None:
    rb = bench()
    jobs = rb.bank_jobs()
    with pytest.raises(SystemExit):
        rb.writers(jobs[1:])
    with pytest.raises(SystemExit):
        rb.writers(jobs[:600])  # the third batch gone
