"""What the learnt exemplars (``routing.learning``) change on a replay set: lanes and quality, with and without."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ollama_dist.routing.learning import summary

if TYPE_CHECKING:
    from ollama_dist.config import Settings
    from ollama_dist.evals.replay import ReplaySet


def effect(replay: ReplaySet, settings: Settings) -> dict[str, object] | None:
    """What the learnt exemplars change on a replay set: lanes and quality, with and without them.

    None when learning is off or there is no ledger to learn from."""
    if not (settings.router.semantic and settings.router.semantic_learn) or not settings.ledger_path.exists():
        return None
    from ollama_dist.evals.evaluate import item_job
    from ollama_dist.ledger.store import Ledger
    from ollama_dist.routing.router import Router
    from ollama_dist.routing.second_opinion import SecondOpinion

    jobs = [item_job(item) for item in replay.items]
    local_q, cloud_q = replay.qualities()
    ledger = Ledger(settings.ledger_path)
    try:
        lanes = []
        learnt_count = ""
        for learn in (False, True):
            rs = settings.router.model_copy(update={"semantic_learn": learn})
            so = SecondOpinion(rs, home=settings.home, store=ledger)
            router = Router(rs, second_opinion=so)
            lanes.append([router.decide(j).target == "local" for j in jobs])
            ready = so.ready()
            if learn and ready is not None:
                learnt_count = summary([e for e in ready.knn.exemplars if e.id.startswith("learnt:")])
    finally:
        ledger.close()
    n = len(jobs) or 1

    def quality(local: list[bool]) -> float:
        return round(sum(lq if lo else cq for lo, lq, cq in zip(local, local_q, cloud_q)) / n, 4)

    before, after = lanes
    return {"learnt": learnt_count, "items": len(jobs),
            "to_local": sum(a and not b for a, b in zip(after, before)),
            "to_cloud": sum(b and not a for a, b in zip(after, before)),
            "local_share": [round(sum(before) / n, 4), round(sum(after) / n, 4)],
            "quality": [quality(before), quality(after)]}


def effect_line(found: dict[str, object]) -> str:
    share, quality = found["local_share"], found["quality"]
    assert isinstance(share, list) and isinstance(quality, list)
    return (f"learnt bank: {found['learnt']}; on this replay set {found['to_local']} item(s) move to local and "
            f"{found['to_cloud']} to cloud (local share {share[0]:.1%} -> {share[1]:.1%}, quality "
            f"{quality[0]:.3f} -> {quality[1]:.3f}); the thresholds above are the router without them")
