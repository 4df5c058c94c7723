"""The reasons the ledger keys on: fixed openings of an attempt's `reason`, never answer text.

An invalid attempt's reason is kept whole only with `ledger.store_text` (else cut to its kind
by `checks.validate.reason_kind`); both forms open the same way, so these prefixes read either.
They tell an answer shown *wrong* (not in the input, samples disagreeing, looping until
max_tokens, contradicted by Claude's shadow answer; advice: Claude) from one *cut off* at
max_tokens (advice: raise `max_tokens`) and from one malformed (format, schema, pattern).
"""

from __future__ import annotations

from ollama_dist.checks.agreement import DISAGREE
from ollama_dist.checks.grounding import UNGROUNDED
from ollama_dist.checks.repetition import LOOPED

CUT_OFF = "the answer was cut off at max_tokens"
SHADOW = "shadow"  # a shadow answer (`run --shadow`) of a format not compared as a value
SHADOW_SAME = "shadow: same answer"  # Claude gave the same value as the local answer
SHADOW_DIFFERS = "shadow: differs from the local answer"  # ... a different one: the local one counts as wrong
WRONG = (UNGROUNDED, DISAGREE, LOOPED)


def like(prefixes: tuple[str, ...] | str, column: str = "reason") -> str:
    """SQL: `column` opens with one of `prefixes` (fixed strings of this module, no quotes in them)."""
    items = (prefixes,) if isinstance(prefixes, str) else prefixes
    return "(" + " OR ".join(f"{column} LIKE '{p}%'" for p in items) + ")"


def invalid_kind(reason: str | None) -> str:
    """Why an answer was invalid, in one word: `ungrounded`, `disagree` or `looped` (shown wrong),
    `cut_off`, or `invalid` (malformed: format, schema, pattern)."""
    text = reason or ""
    for prefix, kind in ((UNGROUNDED, "ungrounded"), (DISAGREE, "disagree"), (LOOPED, "looped")):
        if text.startswith(prefix):
            return kind
    return "cut_off" if text.startswith(CUT_OFF) else "invalid"


def invalid_kind_sql(column: str = "reason") -> str:
    """`invalid_kind` as an SQL expression."""
    return (f"CASE WHEN {like(UNGROUNDED, column)} THEN 'ungrounded' WHEN {like(DISAGREE, column)} THEN 'disagree' "
            f"WHEN {like(LOOPED, column)} THEN 'looped' WHEN {like(CUT_OFF, column)} THEN 'cut_off' ELSE 'invalid' END")
