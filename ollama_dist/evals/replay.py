"""Replay sets: items answered by both lanes, with how good each answer was.

An item holds a prompt, the local and the cloud answer (when known), and a quality
for each: 1/0 for correct/incorrect, or a score (MT-Bench's 1-10). Loaders:

- `load_table`: a CSV or JSONL file with named columns (`Columns`).
- `load_ledger`: the SQLite ledger. A job gives a pair in two ways:
  * a shadow run: in one run, a `final=1` ok row on lane local, plus an ok row on
    lane cloud with a shadow reason (both answers valid: quality 1 and 1, except where the
    values were compared and Claude's differed, `shadow: differs ...`: local quality 0);
  * an escalation: local answers that were invalid (and no valid local one), then a
    final ok answer on lane cloud (local quality 0, cloud 1).
  Prompts and answers are there only when `ledger.store_text` was on.
- `load_routellm`: the evaluation data of lm-sys/RouteLLM (`routellm/evals/`), for
  gsm8k, mmlu and mt_bench, with its contaminated prompts dropped as RouteLLM does.
  The weak model stands for local, the strong for cloud.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ollama_dist.checks.validate import OutputSpec
from ollama_dist.errors import InputError, LedgerError
from ollama_dist.ledger.reasons import SHADOW, SHADOW_DIFFERS, SHADOW_SAME

SHADOWS = (SHADOW, SHADOW_SAME, SHADOW_DIFFERS)

Format = Literal["csv", "jsonl", "ledger", "routellm"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "ledger", "routellm")
Benchmark = Literal["gsm8k", "mmlu", "mt_bench"]
BENCHMARKS: tuple[Benchmark, ...] = ("gsm8k", "mmlu", "mt_bench")

WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_MODEL = "gpt-4-1106-preview"
# A GSM8K answer states its result on a line of its own: `#### 18`.
GSM8K_ANSWER_PATTERN = r"(?m)^#### *-?\$?[\d,]*\.?\d+"
_TRUE = frozenset({"true", "1", "yes", "y", "ok", "pass", "correct"})
_FALSE = frozenset({"false", "0", "no", "n", "fail", "incorrect"})


@dataclass(frozen=True)
class ReplayItem:
    id: str
    task: str  # a valid task name (see tasks.NAME_PATTERN)
    prompt: str
    local_quality: float
    cloud_quality: float
    local_answer: str | None = None
    cloud_answer: str | None = None
    local_valid: bool | None = None  # known validity of the local answer (the ledger knows it)
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class ReplaySet:
    name: str
    source: str
    items: tuple[ReplayItem, ...]
    local_label: str = "local"
    cloud_label: str = "cloud"
    scale: str = "share of good answers"
    spec: OutputSpec | None = None  # what a valid local answer looks like, when known
    dropped: int = 0  # rows left out (contaminated prompts)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def qualities(self) -> tuple[list[float], list[float]]:
        return [i.local_quality for i in self.items], [i.cloud_quality for i in self.items]


@dataclass(frozen=True)
class Columns:
    """Column (or JSON key) names of a replay table. Quality comes from `*_score` when that
    column is present, else from `*_ok` (true/false, 1/0, yes/no)."""

    prompt: str = "prompt"
    local_answer: str = "local_answer"
    cloud_answer: str = "cloud_answer"
    local_ok: str = "local_ok"
    cloud_ok: str = "cloud_ok"
    local_score: str = "local_score"
    cloud_score: str = "cloud_score"
    task: str = "task"
    id: str = "id"


def task_name(text: str) -> str:
    """`text` made into a valid task name (lower case, [a-z0-9._-])."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return name or "replay"


def guess_format(source: Path) -> Format:
    if source.is_dir():
        return "routellm"
    suffix = source.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".db", ".sqlite", ".sqlite3"):
        return "ledger"
    raise InputError(f"cannot tell the format of {source}", hint="give --format csv|jsonl|ledger|routellm")


def load(source: Path, fmt: Format | None = None, columns: Columns | None = None,
         benchmark: Benchmark | None = None) -> ReplaySet:
    if not source.exists():
        raise InputError("no such file or folder", file=str(source))
    fmt = fmt or guess_format(source)
    if fmt == "routellm":
        return load_routellm(source, benchmark)
    if fmt == "ledger":
        return load_ledger(source)
    return load_table(source, fmt, columns or Columns())


# ---------------------------------------------------------------- CSV / JSONL


def load_table(path: Path, fmt: Literal["csv", "jsonl"], columns: Columns) -> ReplaySet:
    items = []
    default_task = task_name(path.stem)
    for line, row in _rows(path, fmt):
        items.append(_table_item(row, columns, path, line, default_task))
    if not items:
        raise InputError("the file holds no rows", file=str(path))
    return ReplaySet(name=path.stem, source=str(path), items=tuple(items))


def _rows(path: Path, fmt: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if fmt == "csv":
                reader = csv.DictReader(handle)
                for row in reader:
                    yield reader.line_num, row
                return
            for number, text in enumerate(handle, 1):
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise InputError(f"not JSON: {exc.msg}", file=str(path), line=number) from exc
                if not isinstance(value, dict):
                    raise InputError("each line must be a JSON object", file=str(path), line=number)
                yield number, value
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the file: {exc}", file=str(path)) from exc


def _table_item(row: Mapping[str, Any], c: Columns, path: Path, line: int, default_task: str) -> ReplayItem:
    def text(column: str) -> str | None:
        value = row.get(column)
        return None if value is None or value == "" else str(value)

    def quality(score: str, ok: str) -> float:
        for column, read in ((score, _number), (ok, _flag)):
            if column in row:
                try:
                    return read(row[column])
                except ValueError as exc:
                    raise InputError(str(exc), file=str(path), line=line, field=column) from exc
        raise InputError(f"no quality column: neither `{score}` nor `{ok}` is present", file=str(path),
                         line=line, hint=f"the columns are {', '.join(map(str, row))}; name them with "
                                         "--local-ok/--cloud-ok or --local-score/--cloud-score")

    prompt = text(c.prompt)
    if prompt is None:
        raise InputError(f"no prompt in column `{c.prompt}`", file=str(path), line=line, field=c.prompt,
                         hint="name the prompt column with --prompt")
    return ReplayItem(
        id=text(c.id) or f"{path.stem}:{line}", task=task_name(text(c.task) or default_task), prompt=prompt,
        local_quality=quality(c.local_score, c.local_ok), cloud_quality=quality(c.cloud_score, c.cloud_ok),
        local_answer=text(c.local_answer), cloud_answer=text(c.cloud_answer),
    )


def _flag(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return float(value)
    word = str(value).strip().lower()
    if word in _TRUE:
        return 1.0
    if word in _FALSE:
        return 0.0
    raise ValueError(f"expected true/false, got {value!r}")


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {value!r}") from None


# ---------------------------------------------------------------- the ledger

_PAIRS_SQL = """
SELECT run_id, job_id, task, lane, outcome, reason, final, prompt_text, answer_text, input_tokens, output_tokens
FROM attempts WHERE outcome IN ('ok', 'invalid') ORDER BY run_id, job_id, id
"""


def load_ledger(path: Path) -> ReplaySet:
    """Shadow pairs and escalations from the ledger (read-only)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute(_PAIRS_SQL).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read the ledger {path}: {exc}", hint="is it an ollama-dist ledger?") from exc
    jobs: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for row in rows:
        jobs.setdefault((row[0], row[1]), []).append(row)
    items = [item for key, attempts in jobs.items() if (item := _ledger_pair(key, attempts)) is not None]
    if not items:
        raise InputError(f"the ledger {path} holds no job answered by both lanes",
                         hint="run with --shadow RATE to collect pairs, or wait for escalations")
    notes = () if all(i.prompt for i in items) else (
        "some pairs have no prompt text (ledger.store_text was off): the router cannot score them",)
    return ReplaySet(name="ledger", source=str(path), items=tuple(items), scale="share of valid answers",
                     notes=notes)


def _ledger_pair(key: tuple[str, str], attempts: list[tuple[Any, ...]]) -> ReplayItem | None:
    run_id, job_id = key
    local_ok = [a for a in attempts if a[3] == "local" and a[4] == "ok" and a[6]]
    local_bad = [a for a in attempts if a[3] == "local" and a[4] == "invalid"]
    shadow = [a for a in attempts if a[3] == "cloud" and a[4] == "ok" and a[5] in SHADOWS]
    cloud_final = [a for a in attempts if a[3] == "cloud" and a[4] == "ok" and a[6]]
    prompt = next((a[7] for a in attempts if a[7]), "")
    if local_ok and shadow:
        local, cloud, valid = local_ok[-1], shadow[-1], True
        quality = 0.0 if shadow[-1][5] == SHADOW_DIFFERS else 1.0
    elif local_bad and not any(a[3] == "local" and a[4] == "ok" for a in attempts) and cloud_final:
        local, cloud, valid, quality = local_bad[-1], cloud_final[-1], False, 0.0
    else:
        return None
    return ReplayItem(id=f"{run_id}/{job_id}", task=task_name(str(cloud[2])), prompt=prompt or "",
                      local_quality=quality, cloud_quality=1.0, local_answer=local[8], cloud_answer=cloud[8],
                      local_valid=valid, input_tokens=int(cloud[9] or 0) or None,
                      output_tokens=int(cloud[10] or 0) or None)


# ---------------------------------------------------------------- RouteLLM's evals


def load_routellm(folder: Path, benchmark: Benchmark | None = None, *, weak: str = WEAK_MODEL,
                  strong: str = STRONG_MODEL) -> ReplaySet:
    """GSM8K, MMLU or MT-Bench from a copy of RouteLLM's `routellm/evals/` (or one of its folders)."""
    name = benchmark or next((b for b in BENCHMARKS if b == folder.name), None)
    if name is None:
        raise InputError(f"which benchmark of {folder}?", hint="give --benchmark gsm8k|mmlu|mt_bench")
    benchmark = name
    root = folder if folder.name == benchmark else folder / benchmark
    if not root.is_dir():
        raise InputError(f"no {benchmark} folder in {folder}", file=str(folder))
    if benchmark == "gsm8k":
        return _gsm8k(root, weak, strong)
    if benchmark == "mmlu":
        return _mmlu(root, weak, strong)
    return _mt_bench(root, weak, strong)


def _contaminated(root: Path) -> frozenset[str]:
    path = root / "contaminated_prompts.jsonl"
    if not path.is_file():
        return frozenset()
    return frozenset(str(row["eval_prompt"]) for _, row in _rows(path, "jsonl"))


def _csv_rows(path: Path, needed: tuple[str, ...]) -> list[tuple[int, Mapping[str, Any]]]:
    rows = list(_rows(path, "csv"))
    if rows:
        missing = [c for c in needed if c not in rows[0][1]]
        if missing:
            raise InputError(f"missing column(s) {', '.join(missing)}", file=str(path))
    return rows


def _gsm8k(root: Path, weak: str, strong: str) -> ReplaySet:
    path = root / "gsm8k_responses.csv"
    drop = _contaminated(root)
    rows = _csv_rows(path, ("prompt", weak, strong))
    items = tuple(
        ReplayItem(id=f"gsm8k:{n}", task="gsm8k", prompt=str(row["prompt"]),
                   local_quality=_flag(row[weak]), cloud_quality=_flag(row[strong]),
                   local_answer=row.get(f"{weak}_response"), cloud_answer=row.get(f"{strong}_response"))
        for n, (_, row) in enumerate(rows) if row["prompt"] not in drop)
    return ReplaySet(name="gsm8k", source=str(path), items=items, scale="accuracy",
                     spec=OutputSpec(pattern=GSM8K_ANSWER_PATTERN), dropped=len(rows) - len(items),
                     local_label=weak, cloud_label=strong)


def _mmlu(root: Path, weak: str, strong: str) -> ReplaySet:
    drop = _contaminated(root)
    files = sorted((root / "responses").glob("mmlu_*.csv"))
    if not files:
        raise InputError("no responses/mmlu_*.csv files", file=str(root))
    items: list[ReplayItem] = []
    total = 0
    for path in files:
        domain = path.stem.removeprefix("mmlu_")
        for n, (_, row) in enumerate(_csv_rows(path, ("prompt", weak, strong))):
            total += 1
            if row["prompt"] in drop:
                continue
            # one task name for the whole benchmark: a domain such as "professional_law"
            # in the name would hand the router a hint the prompt itself does not give
            items.append(ReplayItem(id=f"mmlu/{domain}:{n}", task="mmlu", prompt=str(row["prompt"]),
                                    local_quality=_flag(row[weak]), cloud_quality=_flag(row[strong])))
    return ReplaySet(name="mmlu", source=str(root), items=tuple(items), scale="accuracy",
                     dropped=total - len(items), local_label=weak, cloud_label=strong)


def _mt_bench(root: Path, weak: str, strong: str) -> ReplaySet:
    """Routed on the first turn; quality is the mean GPT-4 judge score (1-10) over both turns."""
    drop = _contaminated(root)
    scores: dict[tuple[int, str], list[float]] = {}
    for _, row in _rows(root / "judgements.jsonl", "jsonl"):
        scores.setdefault((int(row["question_id"]), str(row["model"])), []).append(float(row["score"]))
    items: list[ReplayItem] = []
    questions = list(_rows(root / "question.jsonl", "jsonl"))
    for line, q in questions:
        turns = [str(t) for t in q["turns"]]
        if any(t in drop for t in turns):
            continue
        qid = int(q["question_id"])
        pair = scores.get((qid, weak)), scores.get((qid, strong))
        if not pair[0] or not pair[1]:
            raise InputError(f"question {qid} lacks judgements for both models",
                             file=str(root / "question.jsonl"), line=line)
        items.append(ReplayItem(id=f"mt_bench/{q.get('category', '')}:{qid}", task="mt-bench",
                                prompt=turns[0], local_quality=sum(pair[0]) / len(pair[0]),
                                cloud_quality=sum(pair[1]) / len(pair[1])))
    return ReplaySet(name="mt_bench", source=str(root), items=tuple(items), scale="mean judge score (1-10)",
                     dropped=len(questions) - len(items), local_label=weak, cloud_label=strong)
