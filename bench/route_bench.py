"""Routing speed: decisions per second and the median time per decision for 10,000 jobs.

Two cases, measured side by side in one run:
- fan-out: 10,000 jobs over the 120 tasks of the router devset (a task's words are read
  once, each job then costs a token estimate and the soft score);
- distinct: 10,000 jobs that are each a task of its own (every decision reads the words).
Run: python bench/route_bench.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollama_dist.config import RouterSettings  # noqa: E402
from ollama_dist.router import Router  # noqa: E402
from ollama_dist.tasks import Job, Task, load_file, render_prompt  # noqa: E402

N = 10_000


def devset_tasks() -> list[Task]:
    tasks: list[Task] = []
    for path in sorted((ROOT / "tests/data/router_devset").glob("d*.yaml")):
        tasks.extend(load_file(path))
    return tasks


def job(task: Task, i: int) -> Job:
    text = (task.inputs.text or "") + f"\n# variant {i}\n"
    return Job(id=f"{task.name}:{i}", task=task, input_text=text, input_hash=str(i),
               prompt=render_prompt(task, text, None))


def measure(jobs: list[Job]) -> tuple[float, float, float]:
    router = Router(RouterSettings())
    times = []
    start = time.perf_counter()
    for j in jobs:
        t0 = time.perf_counter_ns()
        router.decide(j)
        times.append(time.perf_counter_ns() - t0)
    wall = time.perf_counter() - start
    times.sort()
    return N / wall, statistics.median(times) / 1000, times[int(0.99 * len(times))] / 1000


def agreement(folder: Path, pattern: str) -> tuple[float, float, int]:
    """(agreement, share of cloud-labelled tasks sent local, tasks) on a labelled set."""
    import yaml

    labels = yaml.safe_load((folder / "labels.yaml").read_text())
    router = Router(RouterSettings())
    agree = leak = cloud = 0
    files = sorted(folder.glob(pattern))
    for path in files:
        (task,) = load_file(path)
        got = router.decide(job(task, 0)).target
        want = labels[task.name]
        agree += got == want
        cloud += want == "cloud"
        leak += want == "cloud" and got == "local"
    return agree / len(files), leak / cloud, len(files)


def main() -> None:
    tasks = devset_tasks()
    fan_out = [job(tasks[i % len(tasks)], i) for i in range(N)]
    distinct = [job(tasks[i % len(tasks)].model_copy(update={"name": f"t{i}"}), i) for i in range(N)]
    print(f"route_bench: {N} jobs, {len(tasks)} distinct task texts")
    for label, jobs in (("fan-out", fan_out), ("distinct", distinct)):
        rate, median_us, p99_us = measure(jobs)
        print(f"  {label:9s} {rate:10,.0f} decisions/s   median {median_us:6.1f} us   p99 {p99_us:6.1f} us")
    print("  aim: median under 50 us")
    data = ROOT / "tests/data"
    for name, folder, pattern in (("dev set", data / "router_devset", "d*.yaml"),
                                  ("holdout", data / "router_holdout", "h*.yaml")):
        if (folder / "labels.yaml").exists():
            rate, leak, n = agreement(folder, pattern)
            print(f"  {name:8s} ({n} tasks): agreement {100 * rate:.1f}%, reasoning sent local {100 * leak:.1f}%")


if __name__ == "__main__":
    main()
