"""A check's outcome as a value: ``Verdict(ok, value, text, fallback, reason, checks, failed)``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Format = Literal["text", "json", "yaml", "code", "diff"]
Fallback = Literal["fence", "balanced", "repair"]
# The checks an answer can meet, in the order they run. `format`: it parses as its format (JSON,
# YAML, Python that compiles, a unified diff, non-empty text); `schema`: the JSON Schema;
# `pattern`: the task's regex; `grounded`: its values occur in the input (checks.grounding);
# `agree`: the local model gave it in most of N samples (run.agreement). `cut_off` is no check
# but a reason to fail: the answer stopped at max_tokens; `looped`: it stopped there repeating
# one piece over and over (checks.repetition).
Check = Literal["format", "schema", "pattern", "grounded", "agree"]
Failure = Literal["format", "schema", "pattern", "grounded", "agree", "cut_off", "looped"]


class Verdict(BaseModel):
    """The outcome of ``validate``. When not ``ok``: ``value`` is None, ``text`` is "",
    ``reason`` says why, ``failed`` names the check it failed, and ``fallback`` is the stage
    that parsed the answer if parsing got that far (a schema or pattern failure).
    ``checks`` lists the checks that ran (all passed when ``ok``): what "valid" proved."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    value: Any = None
    text: str = ""
    fallback: Fallback | None = None
    reason: str | None = None
    checks: tuple[Check, ...] = ()
    failed: Failure | None = None


def invalid(reason: str, fallback: Fallback | None = None, *, failed: Failure = "format",
            checks: tuple[Check, ...] = ()) -> Verdict:
    return Verdict(ok=False, reason=reason, fallback=fallback, failed=failed, checks=checks)
