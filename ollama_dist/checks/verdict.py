"""A check's outcome as a value: ``Verdict(ok, value, text, fallback, reason)``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Format = Literal["text", "json", "yaml", "code", "diff"]
Fallback = Literal["fence", "balanced", "repair"]


class Verdict(BaseModel):
    """The outcome of ``validate``. When not ``ok``: ``value`` is None, ``text`` is "",
    ``reason`` says why, and ``fallback`` is the stage that parsed the answer if
    parsing got that far (a schema or pattern failure)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    value: Any = None
    text: str = ""
    fallback: Fallback | None = None
    reason: str | None = None


def invalid(reason: str, fallback: Fallback | None = None) -> Verdict:
    return Verdict(ok=False, reason=reason, fallback=fallback)
