"""Answers that loop: a cut-off answer whose end repeats one short piece over and over.

Small local models (Gemma 3 270M, measured on the shipped examples) often fall into a loop and
write `"and", "and", ...` or the same line until `max_tokens` stops them. Such an answer is cut
off, but raising `max_tokens` would only buy a longer loop: the advice is a larger model or
Claude, and the ledger counts it as a wrong answer, not a short budget (ledger.reasons).
"""

from __future__ import annotations

LOOPED = "the answer repeated itself until max_tokens"  # the reason's fixed opening (ledger keys on it)
MAX_UNIT = 80  # the longest piece taken for a loop, in characters
MIN_REPEATS = 4  # times the piece must follow itself
MIN_TAIL = 48  # characters of the answer's end that must be periodic


def repeated_unit(text: str) -> str | None:
    """The piece the end of `text` repeats (at least MIN_REPEATS times back to back, over the last
    third of the answer and at least MIN_TAIL characters), or None when it does not loop."""
    tail = text[-max(MIN_TAIL, len(text) // 3):]
    if len(tail) < MIN_TAIL:
        return None
    for period in range(1, min(MAX_UNIT, len(tail) // MIN_REPEATS) + 1):
        if all(tail[i] == tail[i + period] for i in range(len(tail) - period)):
            unit = _readable(tail[-period:])
            return unit if unit.strip() else None
    return None


def _readable(unit: str) -> str:
    """The rotation of `unit` that starts a word and ends after one (`and", "` for `", "and`)."""
    turns = [unit[shift:] + unit[:shift] for shift in range(len(unit))]
    for after in (str.isspace, lambda c: not c.isalnum()):  # after a space first, else any punctuation
        for turned in turns:
            if turned[0].isalnum() and after(turned[-1]):
                return turned
    return unit


def reason(unit: str, max_tokens: int) -> str:
    shown = unit.strip()
    shown = shown if len(shown) <= 24 else shown[:24] + "…"
    return (f"{LOOPED} ({max_tokens}): {shown!r} over and over; this model loops on the task "
            "(a larger local model, or Claude), and a larger max_tokens would not help")
