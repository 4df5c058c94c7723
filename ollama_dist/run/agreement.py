"""`output.agree: N`: ask the local model N times and keep only a value most of the answers give.

Once a local answer passes its other checks, N-1 more samples of the same request are asked,
each at its own seed (1, 2, ...) and at a sampling temperature (at least `SAMPLE_TEMPERATURE`,
since at temperature 0 every seed gives the same greedy answer). Each sample is checked like
any answer; ``checks.agreement.vote`` then keeps the value a strict majority of the N gave, or
turns the job invalid ("the local answers disagree"), which the ladder escalates without a
retry: telling a model that it is inconsistent does not make it right.

It costs only local compute: the samples' seconds are their ledger rows' `latency_s` and the
job's `agreement.local_s` in `--json`. Seeds and temperature go to local backends only (Ollama
`options.seed`, the OpenAI-compatible `seed`, llama.cpp's `seed`); Claude is never sampled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ollama_dist.backends.base import Completion, Request
from ollama_dist.checks.agreement import OUTVOTED, needed, same, vote
from ollama_dist.checks.verdict import Verdict, invalid
from ollama_dist.errors import BackendError

SAMPLE_TEMPERATURE = 0.7


def sample_request(request: Request, index: int) -> Request:
    """The request for sample `index` (1, 2, ...): its own seed, a temperature that samples."""
    return request.model_copy(update={"seed": index, "temperature": max(request.temperature, SAMPLE_TEMPERATURE)})


@dataclass(frozen=True)
class Sample:
    completion: Completion | None  # None: the call failed (`error`)
    verdict: Verdict
    latency_s: float
    error: str | None = None


@dataclass(frozen=True)
class Poll:
    """The samples of one job and the vote on them."""

    samples: tuple[Sample, ...]
    winner: int | None
    verdict: Verdict  # the winner's (with `agree` among its checks) or the disagreement

    @property
    def chosen(self) -> Sample:
        """The sample the ladder goes on with: the winner, or the first answer when they disagree."""
        return self.samples[self.winner if self.winner is not None else 0]

    def others(self) -> list[tuple[Sample, str, str | None]]:
        """Every sample but the chosen one, as (sample, ledger outcome, reason) rows."""
        rows: list[tuple[Sample, str, str | None]] = []
        chosen = self.chosen
        for sample in self.samples:
            if sample is chosen:
                continue
            if sample.error is not None:
                rows.append((sample, "error", f"agree: {sample.error}"))
            elif self.winner is not None and same(sample.verdict, self.verdict):
                rows.append((sample, "ok", "agree: the same value as the majority"))
            elif self.winner is None:
                rows.append((sample, "invalid", self.verdict.reason))
            else:
                rows.append((sample, "invalid", sample.verdict.reason or OUTVOTED))
        return rows

    @property
    def local_s(self) -> float:
        return sum(s.latency_s for s in self.samples)

    def as_json(self) -> dict[str, Any]:
        votes = sum(1 for s in self.samples if self.winner is not None and same(s.verdict, self.verdict))
        return {"asked": len(self.samples), "votes": votes, "needed": needed(len(self.samples)),
                "agreed": self.winner is not None, "local_s": round(self.local_s, 3)}


async def poll(request: Request, first: Completion, verdict: Verdict, asked: int,
               call: Callable[[Request], Awaitable[Completion]], check: Callable[[Completion], Verdict],
               clock: Callable[[], float]) -> Poll:
    """`first` (valid) and `asked` - 1 more samples of `request`, checked and put to the vote."""
    samples = [Sample(first, verdict, first.latency_s)]
    for index in range(1, asked):
        started = clock()
        try:
            completion = await call(sample_request(request, index))
        except BackendError as exc:
            samples.append(Sample(None, invalid(f"sample {index + 1}: {exc.reason}"), clock() - started,
                                  error=exc.reason))
            continue
        samples.append(Sample(completion, check(completion), completion.latency_s))
    winner, result = vote([s.verdict for s in samples], asked)
    return Poll(tuple(samples), winner, result)
