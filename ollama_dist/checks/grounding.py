"""Grounding: every value an extracting answer gives must occur in the job's input.

A schema proves shape, not substance: `{"name": "Pytorch"}` is a valid contact. For work that
*extracts* (pulls values out of its input), a value that appears nowhere in the input is wrong,
whatever its shape, so ``check`` turns such an answer invalid, with a reason that names each
value not found (the retry is told which, and the ladder escalates the job).

What is compared (``occurs``, ``number_in``), after normalising both sides:
- a string: Unicode NFKC, case folded, every run of whitespace one space (and none next to
  punctuation), curly quotes and dashes made plain, surrounding quotes or backticks of the value
  dropped. It must occur in the
  input as a whole word or words: "p1" is not grounded by "http1", "write" not by "write_atomic".
  Empty strings say nothing and are skipped; punctuation (`}, {`) must occur like any value.
- a number: it must equal a number written in the input, whatever the notation ("12.50" grounds
  12.5, "39.00" grounds 39, "1,200" and "1_200" ground 1200, "12,5" grounds 12.5). Digits inside
  an identifier ("gemma3", "A-100" for -100) are not numbers.
- booleans and null are not extracted values; they are never checked. Neither are strings the
  task's schema fixes (`enum`, `const`): those are labels the answer chooses, not copies.

When it runs (``plan``): `output.grounded: true` checks every value; a list of field names
(`grounded: [name, email]`) checks only the values under those keys (at any depth, including
the items of a list under such a key); `false` never. Left out, it is on for *extraction-like*
jobs: a `json` or `yaml` answer, a job with input text, and an instruction (the task's name,
description, system and prompt) that asks to extract, list, pull, collect, find, identify,
copy, quote, pick, filter, deduplicate, sort or convert between data formats (CSV, JSON, ...),
and asks for no transformation of the values (rename, translate, summarise, rewrite,
normalise, compute, count, classify or label, generate, suggest, fill in, describe ...).
Transformed values legitimately differ from their input, so such tasks are left alone unless
they declare `grounded`. Values are grounded in the job's input text; a job without one
(a task whose facts stand in its prompt) is grounded in its prompt when it declares `grounded`.

Pure: no I/O, no state.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ollama_dist.checks.extract import short
from ollama_dist.checks.verdict import Verdict, invalid

UNGROUNDED = "not in the input"  # the reason's fixed opening: reason_kind and the ledger key on it
MAX_NAMED = 3  # values named in one reason

_EXTRACTS = re.compile(
    r"\b(?:extract\w*|list|lists|listing|pull\w*|collect\w*|gather\w*|find|finds|identif\w*|cop(?:y|ies)"
    r"|quot(?:e|es|ing)|pick\w*|filter\w*|dedup\w*|de-dup\w*|sort\w*|names of|which of)\b"
    r"|\bconvert\w*\b[^.\n]{0,60}\b(?:csv|tsv|json|jsonl|yaml|toml|xml|ini|records?|rows?)\b")
_TRANSFORMS = re.compile(
    r"\b(?:renam\w*|translat\w*|transliterat\w*|summar\w*|rewrit\w*|rephras\w*|paraphras\w*|reword\w*"
    r"|reformat\w*|normali[sz]\w*|abbreviat\w*|expand\w*|spell\w*|generat\w*|draft\w*|invent\w*|suggest\w*"
    r"|propos\w*|fill\w*|comput\w*|calculat\w*|count\w*|sum|sums|summing|total\w*|averag\w*|estimat\w*"
    r"|infer\w*|guess\w*|classif\w*|label\w*|categori[sz]\w*|describ\w*|explain\w*|snake.?case|camel.?case"
    r"|kebab.?case|pascal.?case|slug\w*|round\w*|convert\w* (?:\w+ )?(?:to|into) (?:iso|utc|unix|celsius"
    r"|fahrenheit|metric|imperial|units?|currency|dollars|euros|dates?|times?))\b")

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
                         "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-",
                         "\u2212": "-", "\u00a0": " "})
_SPACE = re.compile(r"\s+")
_PUNCT_SPACE = re.compile(r" ?([^\w\s]) ?")
_EDGE_QUOTES = "\"'`"
_NUMBER = re.compile(r"(?<![\w.])(-?)(\d[\d,_]*(?:\.\d+)?)")


# ----------------------------------------------------------------------------- when


@dataclass(frozen=True)
class Plan:
    """What to ground: every value (`fields` None) or those under the named keys; in `source`."""

    source: str
    fields: frozenset[str] | None = None
    fixed: frozenset[str] = frozenset()  # enum/const strings of the schema: chosen labels, not copies


def extraction_like(instruction: str) -> bool:
    """Whether an instruction asks to pull values out of its input unchanged (see the module doc)."""
    text = instruction.lower()
    return bool(_EXTRACTS.search(text)) and not _TRANSFORMS.search(text)


def plan(grounded: bool | list[str] | None, fmt: str, instruction: str, input_text: str, prompt: str,
         schema: dict[str, Any] | None = None) -> Plan | None:
    """The grounding to run on an answer, or None (see the module doc for the default)."""
    if grounded is False:
        return None
    if grounded is None:
        if fmt not in ("json", "yaml") or not input_text.strip() or not extraction_like(instruction):
            return None
    source = input_text if input_text.strip() else prompt
    fields = frozenset(grounded) if isinstance(grounded, list) else None
    return Plan(source, fields, fixed_strings(schema))


def fixed_strings(schema: object) -> frozenset[str]:
    """Every string an `enum` or `const` of `schema` allows, normalised."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if key == "enum" and isinstance(item, list):
                    found.update(normal(v) for v in item if isinstance(v, str))
                elif key == "const" and isinstance(item, str):
                    found.add(normal(item))
                else:
                    stack.append(item)
        elif isinstance(node, list):
            stack.extend(node)
    return frozenset(found)


# ----------------------------------------------------------------------------- the check


def check(verdict: Verdict, grounding: Plan) -> Verdict:
    """`verdict` (a valid one) with grounding added to its checks, or invalid naming what is not in the input."""
    if not verdict.ok:
        return verdict
    missing = ungrounded(verdict.value, grounding)
    if missing:
        named = ", ".join(f"{path} {short(repr(value), 80)}" for path, value in missing[:MAX_NAMED])
        more = f" and {len(missing) - MAX_NAMED} more" if len(missing) > MAX_NAMED else ""
        return invalid(f"{UNGROUNDED}: {named}{more}", verdict.fallback, failed="grounded",
                       checks=(*verdict.checks, "grounded"))
    return verdict.model_copy(update={"checks": (*verdict.checks, "grounded")})


def ungrounded(value: Any, grounding: Plan) -> list[tuple[str, str | int | float]]:
    """(path, value) of each checked value that does not occur in the source, in document order."""
    text = normal(grounding.source)
    numbers = numbers_in(grounding.source)
    missing: list[tuple[str, str | int | float]] = []
    for path, keys, leaf in _leaves(value):
        if grounding.fields is not None and not grounding.fields.intersection(keys):
            continue
        if isinstance(leaf, bool) or leaf is None:
            continue
        if isinstance(leaf, (int, float)):
            if not any(math.isclose(leaf, n, rel_tol=1e-9, abs_tol=1e-12) for n in numbers):
                missing.append((path, leaf))
        elif isinstance(leaf, str):
            wanted = normal(leaf).strip(_EDGE_QUOTES).strip() or normal(leaf)
            if not wanted or wanted in grounding.fixed:
                continue
            if not occurs(wanted, text):
                missing.append((path, leaf))
    return missing


def normal(text: str) -> str:
    """Case folded, plain quotes and dashes, single spaces and none beside punctuation
    (`>=2.3, <3` is `>=2.3,<3`): what grounding compares."""
    flat = unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()
    return _PUNCT_SPACE.sub(r"\1", _SPACE.sub(" ", flat)).strip()


def occurs(wanted: str, text: str) -> bool:
    """Whether `wanted` stands in `text` (both normalised) as whole words: no letter, digit or
    underscore joins it on a side where it starts or ends with one."""
    start = text.find(wanted)
    while start >= 0:
        end = start + len(wanted)
        before_ok = start == 0 or not _word(wanted[0]) or not _word(text[start - 1])
        after_ok = end == len(text) or not _word(wanted[-1]) or not _word(text[end])
        if before_ok and after_ok:
            return True
        start = text.find(wanted, start + 1)
    return False


def numbers_in(text: str) -> list[float]:
    """Every number written in `text`, each in the readings its notation allows."""
    found: list[float] = []
    for match in _NUMBER.finditer(unicodedata.normalize("NFKC", text).translate(_QUOTES)):
        sign, digits = match.group(1), match.group(2).rstrip(",_")
        readings = {digits.replace(",", "").replace("_", ""), *re.split(r"[,_]", digits)}
        if digits.count(",") == 1 and "." not in digits:
            readings.add(digits.replace(",", "."))  # 12,5: a decimal comma
        for reading in readings:
            try:
                number = float(reading)
            except ValueError:
                continue
            found.append(-number if sign else number)
            if sign:
                found.append(number)  # "-" may be a dash or a range: "10-20"
    return found


def _word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _leaves(value: Any) -> Iterator[tuple[str, tuple[str, ...], Any]]:
    """(path, the keys above, leaf) in document order."""
    stack: list[tuple[str, tuple[str, ...], Any]] = [("$", (), value)]
    while stack:
        path, keys, node = stack.pop()
        if isinstance(node, dict):
            stack.extend((f"{path}.{k}", (*keys, k), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", keys, v) for i, v in reversed(list(enumerate(node))))
        else:
            yield path, keys, node
