"""Agreement: answers compared as values, and the vote over N samples of one job.

Two answers are the same when their canonical forms are equal: for JSON and YAML the parsed
value with keys sorted, numbers as numbers (12.5 is 12.50) and strings normalised as grounding
compares them (case, whitespace, quotes); for other formats the normalised text. List order
counts. ``vote`` accepts the value a strict majority of the samples gave (2 of 2, 2 of 3, 3 of
4 or 5 ...); samples that failed their other checks count against it.

The same comparison tells a shadow answer from Claude (`run --shadow`) agreeing with the local
one from one that differs (``same``). Pure: no I/O.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ollama_dist.checks.grounding import normal
from ollama_dist.checks.verdict import Verdict, invalid

DISAGREE = "the local answers disagree"  # the reason's fixed opening: reason_kind and the ledger key on it
OUTVOTED = "agree: outvoted by the majority"  # a valid sample whose value the majority did not give
COMPARED = ("json", "yaml")  # the formats whose answers are compared as values for a shadow


def canonical(verdict: Verdict) -> str:
    """The form two answers are compared in (see the module doc)."""
    if isinstance(verdict.value, (dict, list)):
        return json.dumps(_plain(verdict.value), sort_keys=True, ensure_ascii=False)
    return normal(verdict.text)


def same(a: Verdict, b: Verdict) -> bool:
    return a.ok and b.ok and canonical(a) == canonical(b)


def needed(asked: int) -> int:
    """Votes a value needs among `asked` samples: a strict majority."""
    return asked // 2 + 1


def vote(samples: Sequence[Verdict], asked: int) -> tuple[int | None, Verdict]:
    """(index of the first sample giving the winning value, its verdict with `agree` added), or
    (None, an invalid verdict saying how the samples split)."""
    valid = [(i, canonical(v)) for i, v in enumerate(samples) if v.ok]
    counts = Counter(form for _, form in valid)
    top, votes = counts.most_common(1)[0] if counts else ("", 0)
    if votes >= needed(asked):
        index = next(i for i, form in valid if form == top)
        winner = samples[index]
        return index, winner.model_copy(update={"checks": (*winner.checks, "agree")})
    spread = f"{len(counts)} different valid answer(s)" + (
        f", {asked - len(valid)} invalid" if len(valid) < asked else "")
    return None, invalid(f"{DISAGREE}: of {asked} samples the most common answer came {votes} time(s), "
                         f"{needed(asked)} needed ({spread}); a value the model does not give reliably "
                         "is not trusted", failed="agree",
                         checks=(*(samples[0].checks if samples else ()), "agree"))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {normal(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return normal(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value
