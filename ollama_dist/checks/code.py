"""Text, code and diff answers: the fenced or bare text, code that compiles (Python), a diff
that ``unidiff`` reads with its hunks."""

from __future__ import annotations

import re
import textwrap
import warnings

from ollama_dist.checks import extract
from ollama_dist.checks.extract import short
from ollama_dist.checks.verdict import Fallback, Verdict, invalid

PYTHON = frozenset({"python", "python3", "py", "py3"})
_BLANK_LINES = re.compile(r"\A(?:[ \t]*\r?\n)+")


def validate_text(answer: str) -> Verdict:
    text = answer.strip()
    fence = extract.wrapping_fence(text)
    fallback: Fallback | None = None if fence is None else "fence"
    text = text if fence is None else fence.body.strip()
    if not text:
        return invalid("the answer is empty", fallback)
    return Verdict(ok=True, value=text, text=text, fallback=fallback)


def validate_code(answer: str, language: str | None) -> Verdict:
    """The fenced code (the first that compiles, fences tagged with the language
    first), or the whole answer when it has no fence."""
    language = (language or "").lower()
    fences = extract.fences(answer)
    if not fences:
        return _check_code(_trim_code(answer), language, None)
    preferred = [f for f in fences if not language or f.tag in (language, "")]
    ordered = preferred + [f for f in fences if f not in preferred]
    verdicts = [_check_code(_trim_code(f.body), language or f.tag, "fence") for f in ordered]
    return next((v for v in verdicts if v.ok), verdicts[0])


def _check_code(code: str, language: str, fallback: Fallback | None) -> Verdict:
    if not code:
        return invalid("the code is empty", fallback)
    problem = _python_error(code) if language in PYTHON else None
    if problem:
        return invalid(problem, fallback)
    return Verdict(ok=True, value=code, text=code, fallback=fallback)


def _python_error(code: str) -> str | None:
    try:
        with warnings.catch_warnings():  # e.g. invalid escapes warn; they are not errors
            warnings.simplefilter("ignore")
            compile(code, "<answer>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        source = (exc.text or "").strip()
        shown = f" in {short(source, extract.EXCERPT)!r}" if source else ""
        line = f" at line {exc.lineno}" if exc.lineno else ""
        return f"Python syntax error{line}: {exc.msg}{shown}"
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes; absurd nesting
        return f"Python code does not compile: {short(str(exc))}"
    return None


def _trim_code(code: str) -> str:
    return _BLANK_LINES.sub("", textwrap.dedent(code)).rstrip()


def validate_diff(answer: str) -> Verdict:
    from unidiff.errors import UnidiffParseError
    from unidiff.patch import PatchSet

    fences = extract.fences(answer, max_indent=0)  # " ```" is a diff context line, not a fence
    diffs = [f for f in fences if f.tag in ("diff", "patch", "udiff", "")] or fences
    fallback: Fallback | None = "fence" if diffs else None
    source = diffs[0].body if diffs else answer
    # Only newlines come off the end: " " alone is an empty context line.
    source = _BLANK_LINES.sub("", source).rstrip("\r\n") + "\n"
    try:
        patch = PatchSet(source)
    except UnidiffParseError as exc:
        return invalid(f"not a valid unified diff: {short(str(exc).strip())}", fallback)
    if len(patch) == 0:
        return invalid("no unified diff found (expected --- a/FILE and +++ b/FILE)", fallback)
    if not any(len(file) for file in patch):
        return invalid("the diff has no hunks (expected @@ -l,n +l,n @@)", fallback)
    text = str(patch)
    return Verdict(ok=True, value=text, text=text, fallback=fallback)
