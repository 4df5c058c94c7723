"""Routing: rules only vs rules + the semantic second opinion, side by side in one run.

- agreement and reasoning sent local on every labelled set: tests/data/router_devset,
  tests/data/router_holdout, tests/data/router_own (not blind: the engineer's own hard cases),
  any folder given on the command line (task files with a labels.yaml: `name: local|cloud`),
  and the blind sets (tests/data/router_blind*) only with `--blind`: they are measured once,
  by someone who did not tune on them;
- the bank routed leave-one-out (each exemplar as a task, its own vector left out of the vote),
  and the bank-only classifier's leave-one-out (no rules): a sanity figure;
- cross-writer: the bank was written by two blind writers (PROVENANCE.md: the first 420 items,
  then 180 appended); each writer's items routed with only the other writer's as the bank, both
  directions. Neither writer saw the other's items, so this is the figure closest to a blind set;
- speed per decision: fan-out (10,000 jobs over the devset's 120 tasks: the words are read and
  embedded once per task) and all-distinct (every job a task of its own: every decision embeds);
- the model's load time (imports, model file check, session, bank vectors).

Run: python bench/route_bench.py [EXTRA_SET_DIR ...] [--blind] [--k 11] [--t 0.6] [--sweep] [--misses]
`--sweep` prints agreement over a grid of k and t on the devset only; never choose k or t on the
holdout or blind sets. `--misses` lists each disagreement with its reasons (refused with --blind).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollama_dist.config import RouterSettings  # noqa: E402
from ollama_dist.errors import InputError  # noqa: E402
from ollama_dist.routing.decision import Opinion  # noqa: E402
from ollama_dist.routing.exemplars import SHIPPED, text_key  # noqa: E402
from ollama_dist.routing.router import Router  # noqa: E402
from ollama_dist.routing.second_opinion import Knn, Loaded, SecondOpinion, Vectors  # noqa: E402
from ollama_dist.tasks.loader import expand, find_task_files, load_file, render_prompt  # noqa: E402
from ollama_dist.tasks.model import Job, Task  # noqa: E402

N = 10_000
N_DISTINCT_EMBEDDED = 300  # every one of these embeds: ~10 ms each on 2 cores
DATA = ROOT / "tests/data"


def job(task: Task, i: int) -> Job:
    text = (task.inputs.text or "") + f"\n# variant {i}\n"
    return Job(id=f"{task.name}:{i}", task=task, input_text=text, input_hash=str(i),
               prompt=render_prompt(task, text, None))


def set_jobs(folder: Path) -> list[tuple[Job, str]]:
    """(first job, label) for every task file of a labelled set."""
    labels = yaml.safe_load((folder / "labels.yaml").read_text())
    out = []
    for path in find_task_files([folder]):
        if path.name in ("labels.yaml", "README.md") or path.parent.name == "fixtures":
            continue
        for task in load_file(path):
            first = None
            if task.inputs.git is None:  # a git input reads this checkout, whose diff and log move with
                try:                      # every commit: such a task is routed on its words alone
                    first = next(iter(expand(task, folder)), None)
                except InputError:
                    pass
            if first is None:
                first = Job(id=task.name, task=task, input_text="", input_hash="-",
                            prompt=render_prompt(task, "", None))
            out.append((first, labels[task.name]))
    return out


class _Vectors:
    """A VectorStore holding the bank's own vectors: the bank's tasks route without embedding."""

    def __init__(self, loaded: Loaded) -> None:
        models = [(loaded.embedder, loaded.knn), *([loaded.veto] if loaded.veto else [])]
        self._rows = {(text_key(e.text), embedder.model_id): v.astype("float32").tobytes()
                      for embedder, knn in models for e, v in zip(knn.exemplars, knn.vectors, strict=True)}

    def vector(self, key: str, model_id: str) -> bytes | None:
        return self._rows.get((key, model_id))

    def save_vector(self, key: str, model_id: str, data: bytes) -> None:
        self._rows[(key, model_id)] = data

    def link_instruction(self, task_fingerprint: str, task: str, key: str) -> None:
        pass

    def instruction_outcomes(self, model_id: str) -> list[tuple[str, str, int, int, bytes]]:
        return []


class _LeaveOut(Knn):
    """The bank's kNN, blind to the exemplar being routed (its own text, cosine 1)."""

    def opinion(self, vector: Vectors, exclude: int | None = None) -> Opinion:
        if exclude is None:
            sims = self.vectors @ vector
            best = int(sims.argmax())
            exclude = best if sims[best] > 0.9999 else None
        return super().opinion(vector, exclude)


def bank_jobs() -> list[tuple[Job, str]]:
    """Every bank exemplar as a task (its words and output spec; no input), with its label."""
    items = yaml.safe_load((ROOT / "ollama_dist" / SHIPPED).read_text())
    out = []
    for e in items:
        o = e.get("output") or {}
        spec = {"format": o.get("format", "text")} | ({"schema": {"type": "object"}} if o.get("schema") else {}) \
            | ({"pattern": ".+"} if o.get("pattern") else {})
        task = Task.model_validate({"name": e["name"], "prompt": e["prompt"], "description": e.get("description"),
                                    "system": e.get("system"), "output": spec})
        out.append((Job(id=e["id"], task=task, input_text="", input_hash="-", prompt=task.prompt),
                    "local" if e["label"] == "deterministic" else "cloud"))
    return out


def bank_router(loaded: Loaded, settings: RouterSettings, rows: slice | None = None) -> Router:
    """A router over the bank's own vectors (no embedding): leave-one-out over the whole bank, or
    only the exemplars in `rows` as the bank (the cross-writer figure)."""
    def part(knn: Knn) -> Knn:
        ex, vecs, k = knn.exemplars, knn.vectors, settings.semantic_k
        return _LeaveOut(ex, vecs, k) if rows is None else Knn(ex[rows], vecs[rows], k)

    veto = (loaded.veto[0], part(loaded.veto[1])) if loaded.veto else None
    bank = Loaded(loaded.embedder, part(loaded.knn), veto, loaded.veto_off)
    so = SecondOpinion(settings, store=_Vectors(loaded), loader=lambda: bank)
    return Router(settings, second_opinion=so)


FIRST_WRITER = 420  # PROVENANCE.md: the first writer's 420 items; the second writer's 180 follow (php-001 on)


def writers(items: Sequence[tuple[Job, str]]) -> tuple[slice, slice]:
    """The two writers' batches of the shipped bank, as slices (checked against the boundary)."""
    if len(items) <= FIRST_WRITER or items[FIRST_WRITER][0].id != "php-001":
        sys.exit("route_bench: the bank no longer starts its second writer's batch at php-001 (item 421)")
    return slice(0, FIRST_WRITER), slice(FIRST_WRITER, len(items))


def cross_writer(loaded: Loaded, settings: RouterSettings, items: Sequence[tuple[Job, str]],
                 show_misses: bool) -> None:
    """Each writer's items routed with the other writer's items as the only bank."""
    first, second = writers(items)
    total = [0, 0, 0, 0, 0, 0]
    for name, routed, bank in (("w2 by w1", second, first), ("w1 by w2", first, second)):
        part = items[routed]
        routers = (Router(settings), bank_router(loaded, settings, bank))
        cols = []
        for router in routers:
            rate, leak, cloud, over, local = score(router, part)
            cols.append(f"{100 * rate:5.1f}%  reasoning->local {leak:2d}/{cloud:<3d} det->cloud {over:2d}/{local:<3d}")
        if router is routers[1]:
            for i, n in enumerate((round(rate * len(part)), len(part), leak, cloud, over, local)):
                total[i] += n
        print(f"{name:10s} {len(part):5d}   {cols[0]}   {cols[1]}")
        if show_misses:
            misses(routers, part)
    agree, n, leak, cloud, over, local = total
    print(f"cross-writer, rules + second opinion, both directions: agreement {100 * agree / n:.1f}%, "
          f"reasoning->local {leak}/{cloud}, det->cloud {over}/{local}")


def score(router: Router, items: Sequence[tuple[Job, str]]) -> tuple[float, int, int, int, int]:
    """(agreement, reasoning sent local, reasoning tasks, deterministic sent cloud, deterministic tasks)."""
    agree = leak = cloud = over = local = 0
    for j, want in items:
        got = router.decide(j).target
        agree += got == want
        cloud += want == "cloud"
        local += want == "local"
        leak += want == "cloud" and got == "local"
        over += want == "local" and got == "cloud"
    return agree / len(items), leak, cloud, over, local


def misses(routers: Sequence[Router], items: Sequence[tuple[Job, str]]) -> None:
    """Every task either router gets wrong, with the second opinion's reasons."""
    for j, want in items:
        rules, semantic = (r.decide(j) for r in routers)
        if want in (rules.target, semantic.target) and rules.target == semantic.target:
            continue
        print(f"    {j.task.name}: want {want}; rules {rules.target} [{rules.rule}]; "
              f"+ second opinion {semantic.target} [{semantic.rule}]")
        for reason in semantic.reasons:
            print(f"        {reason}")


def timed(router: Router, jobs: Sequence[Job]) -> tuple[float, float, float]:
    times = []
    for j in jobs:
        t0 = time.perf_counter_ns()
        router.decide(j)
        times.append(time.perf_counter_ns() - t0)
    mean = sum(times) / len(times) / 1000
    times.sort()
    return mean, statistics.median(times) / 1000, times[int(0.99 * len(times))] / 1000


def semantic_router(loaded: Loaded, settings: RouterSettings) -> tuple[Router, SecondOpinion]:
    so = SecondOpinion(settings, loader=lambda: loaded)
    return Router(settings, second_opinion=so), so


def leave_one_out(loaded: Loaded, t: float) -> str:
    knn = loaded.knn
    agree = leak = cloud = 0
    for i, e in enumerate(knn.exemplars):
        local = knn.opinion(knn.vectors[i], exclude=i).p_local > t
        agree += local == e.local
        cloud += not e.local
        leak += local and not e.local
    n = len(knn.exemplars)
    return (f"bank leave-one-out, classifier alone (k={knn.k}, t={t:g}, {n} exemplars): agreement "
            f"{100 * agree / n:.1f}%, reasoning sent local {leak}/{cloud}")


def sets(extra: Sequence[str], blind: bool) -> list[tuple[str, Path]]:
    """The labelled sets measured: the blind ones (router_blind*) only when asked for."""
    found = [("devset", DATA / "router_devset"), ("holdout", DATA / "router_holdout"),
             ("own", DATA / "router_own")]  # not blind: the engineer's own hard cases (its README)
    if blind:
        found += [(f.name.removeprefix("router_"), f) for f in sorted(DATA.glob("router_blind*")) if f.is_dir()]
    found += [(Path(e).name, Path(e)) for e in extra]
    return [(n, f) for n, f in found if (f / "labels.yaml").exists()]


def speed(loaded: Loaded, settings: RouterSettings, tasks: list[Task]) -> None:
    fan_out = [job(tasks[i % len(tasks)], i) for i in range(N)]
    distinct = [job(tasks[i % len(tasks)].model_copy(update={"name": f"t{i}"}), i) for i in range(N)]
    rules = Router(settings)
    print(f"speed per decision ({N} jobs; fan-out over {len(tasks)} tasks):")
    for label, jobs in (("fan-out", fan_out), ("distinct", distinct)):
        mean, med, p99 = timed(rules, jobs)
        print(f"  rules only        {label:9s} mean {mean:8.1f} us  median {med:6.1f} us  p99 {p99:8.1f} us")
    router, so = semantic_router(loaded, settings)
    mean, med, p99 = timed(router, fan_out)
    print(f"  rules + semantic  fan-out   mean {mean:8.1f} us  median {med:6.1f} us  p99 {p99:8.1f} us"
          f"  ({so.embedded} embedded)")
    first = {id(j.task) for j in fan_out}
    again = [j for j in fan_out[len(tasks):]]  # every task already seen once
    assert len(first) == len(tasks)
    mean, med, p99 = timed(router, again)
    print(f"  rules + semantic  fan-out, after the first per task: mean {mean:.1f} us  median {med:.1f} us"
          f"  p99 {p99:.1f} us  (aim: < 20 us)")
    router, so = semantic_router(loaded, settings)
    mean, med, p99 = timed(router, distinct[:N_DISTINCT_EMBEDDED])
    print(f"  rules + semantic  distinct  mean {mean:8.1f} us  median {med:6.1f} us  p99 {p99:8.1f} us"
          f"  (first {N_DISTINCT_EMBEDDED} jobs; {so.embedded} embedded: the soft-band ones)")


def sweep(loaded: Loaded, devset: list[tuple[Job, str]]) -> None:
    print("sweep on the devset only (k, t: agreement, reasoning sent local, deterministic sent cloud):")
    for k in (3, 5, 7, 9, 11, 15):
        cells = []
        for t in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8):
            settings = RouterSettings(semantic_k=k, semantic_threshold=t)
            knn = Knn(loaded.knn.exemplars, loaded.knn.vectors, k)
            swept = Loaded(loaded.embedder, knn, loaded.veto, loaded.veto_off)
            rate, leak, _, over, _ = score(semantic_router(swept, settings)[0], devset)
            cells.append(f"t={t:<4g} {100 * rate:5.1f}% {leak:2d} {over:2d}")
        print(f"  k={k:<2d} " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extra", nargs="*", help="more labelled set folders")
    parser.add_argument("--k", type=int, default=RouterSettings().semantic_k)
    parser.add_argument("--t", type=float, default=RouterSettings().semantic_threshold)
    parser.add_argument("--sweep", action="store_true", help="a k x t grid on the devset only")
    parser.add_argument("--blind", action="store_true",
                        help="also measure the blind sets (tests/data/router_blind*): once, never to tune on")
    parser.add_argument("--misses", action="store_true", help="list the disagreements (never with --blind)")
    parser.add_argument("--no-veto", action="store_true", help="the first model alone (router.semantic_veto off)")
    args = parser.parse_args()
    if args.misses and args.blind:
        parser.error("--misses lists tasks: not on the blind sets")
    settings = RouterSettings(semantic_k=args.k, semantic_threshold=args.t, semantic_veto=not args.no_veto)

    t0 = time.perf_counter()
    loaded = SecondOpinion(settings).ready()
    load_s = time.perf_counter() - t0
    if loaded is None:
        sys.exit("route_bench: the second opinion is unavailable (install the `semantic` extra)")
    veto = loaded.veto[0].model_id if loaded.veto else f"none ({loaded.veto_off})"
    print(f"route_bench: model {loaded.embedder.model_id}, veto model {veto}, "
          f"bank {len(loaded.knn.exemplars)} exemplars, "
          f"k={args.k}, t={args.t:g}; model + bank load {1000 * load_s:.0f} ms")
    print(f"{'set':10s} {'tasks':>5s}   {'rules only':^38s}   {'rules + second opinion':^38s}")
    for name, folder in sets(args.extra, args.blind):
        items = set_jobs(folder)
        cols = []
        routers = (Router(settings), semantic_router(loaded, settings)[0])
        for router in routers:
            rate, leak, cloud, over, local = score(router, items)
            cols.append(f"{100 * rate:5.1f}%  reasoning->local {leak:2d}/{cloud:<3d} det->cloud {over:2d}/{local:<3d}")
        print(f"{name:10s} {len(items):5d}   {cols[0]}   {cols[1]}")
        if args.misses:
            misses(routers, items)
    items = bank_jobs()
    routers = (Router(settings), bank_router(loaded, settings))
    cols = []
    for router in routers:
        rate, leak, cloud, over, local = score(router, items)
        cols.append(f"{100 * rate:5.1f}%  reasoning->local {leak:2d}/{cloud:<3d} det->cloud {over:2d}/{local:<3d}")
    print(f"{'bank LOO':10s} {len(items):5d}   {cols[0]}   {cols[1]}")
    if args.misses:
        misses(routers, items)
    print(leave_one_out(loaded, args.t))
    cross_writer(loaded, settings, items, args.misses)
    tasks = [j.task for j, _ in set_jobs(DATA / "router_devset")]
    speed(loaded, settings, tasks)
    if args.sweep:
        sweep(loaded, set_jobs(DATA / "router_devset"))


if __name__ == "__main__":
    main()
