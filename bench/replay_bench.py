"""Replay bench: the project's router (and validators) on RouteLLM's GSM8K, MMLU and MT-Bench data.

For each benchmark: APGR, CPT(50%) and CPT(80%) of the router's score, of the router plus
the validators (GSM8K: a weak answer without a `#### N` line escalates), of random routing
(mean of 10 seeds) and of the oracle; then RouteLLM's published figures for the same data
where they could be found. Mixtral-8x7B stands for local, GPT-4-1106 for cloud.

Data: ../shared/benchmarks/routellm-evals (a copy of lm-sys/RouteLLM's routellm/evals), or
the folder given as the first argument.
Run: python bench/replay_bench.py [EVALS_FOLDER]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollama_dist.evals import evaluate  # noqa: E402
from ollama_dist.evals.evaluate import Figures  # noqa: E402
from ollama_dist.evals.replay import BENCHMARKS, load_routellm  # noqa: E402

DEFAULT_EVALS = ROOT.parent / "shared" / "benchmarks" / "routellm-evals"

# RouteLLM's figures (Ong et al. 2024, arXiv:2406.18665; GPT-4-1106 vs Mixtral-8x7B, the
# same data). The paper itself was not reachable from here: these were read in secondary
# notes that quote its tables, and should be checked against the paper before they are cited.
PUBLISHED: dict[str, list[str]] = {
    "gsm8k": [
        "TODO: RouteLLM's per-router APGR/CPT table for GSM8K was not found here (see the paper's Table).",
        "quoted headline: about 35% cost saved vs GPT-4 alone at 95% of GPT-4's quality (lmsys blog, as quoted)",
    ],
    "mmlu": [
        "routers trained with MMLU golden labels, best value per column (as quoted): "
        "APGR 0.603, CPT(50%) 35.4%, CPT(80%) 70.3%",
        "quoted headline: about 45% cost saved vs GPT-4 alone at 95% of GPT-4's quality",
    ],
    "mt_bench": [
        "best router, matrix factorization trained on Arena + GPT-4-judge data (as quoted): "
        "APGR 0.802, CPT(50%) 13.4%, CPT(80%) 31.3%; random CPT(50%) 49.03%",
        "quoted headline: over 85% cost saved vs GPT-4 alone at 95% of GPT-4's quality",
    ],
}


def row(label: str, f: Figures) -> str:
    def pct(x: float | None) -> str:
        return "     -" if x is None else f"{100 * x:5.1f}%"

    apgr = "    -" if f.apgr is None else f"{f.apgr:5.3f}"
    return f"  {label:34s} APGR {apgr}   CPT(50%) {pct(f.cpt50)}   CPT(80%) {pct(f.cpt80)}"


def main() -> None:
    evals = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_EVALS
    if not evals.is_dir():
        sys.exit(f"replay_bench: no RouteLLM eval data at {evals}")
    print(f"replay_bench: {evals}")
    for name in BENCHMARKS:
        started = time.perf_counter()
        replay = load_routellm(evals, name)
        router = evaluate.evaluate(replay, "router")
        checked = evaluate.evaluate(replay, "router+validator")
        local, cloud = router.curve.local_quality, router.curve.cloud_quality
        print(f"\n{name}: {len(replay.items)} items ({replay.dropped} contaminated dropped), {replay.scale}: "
              f"local {local:.3f}, cloud {cloud:.3f}")
        print(row("router score", router.figures))
        if checked.notes:
            print("  router + validators                (no validator applies: same as the router)")
        else:
            print(row("router + validators", checked.figures))
        print(row(f"random (mean of {router.random_seeds} seeds)", router.random))
        print(row("oracle", router.oracle))
        for point in checked.operating_points:
            print(f"  {point.name}: {100 * point.cloud_share:.1f}% cloud -> {point.quality:.3f}")
        for line in PUBLISHED[name]:
            print(f"  RouteLLM: {line}")
        print(f"  ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
