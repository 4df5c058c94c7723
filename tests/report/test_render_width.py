"""The run, route and dry-run tables read at 80 columns: an id or a path is never broken inside a
word, and each job takes one or two lines (`--verbose` shows every reason in full)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from ollama_dist.api import Routed, RunReport
from ollama_dist.ledger.store import Attempt
from ollama_dist.report import render
from ollama_dist.report.cells import Fit, Line, fit, wrap
from ollama_dist.routing.router import Decision
from ollama_dist.run.outcome import Outcome
from ollama_dist.tasks.loader import load_jobs

LONG_REASON = ("invalid: the answer is not valid JSON: Expecting ',' delimiter: line 1 column 48 (char 47); "
               "then escalated: no Claude: ANTHROPIC_API_KEY is not set and `claude` is not logged in; "
               "set the key or run `claude` once to log in\n(and a second line the server sent)")


def render_text(renderable: object, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None, legacy_windows=False)
    console.print(renderable)
    return console.export_text()


@pytest.fixture
def jobs(tmp_path: Path) -> list:
    folder = tmp_path / "tasks" / "examples"
    (folder / "signatures").mkdir(parents=True)
    for name in ("amara-okonkwo-lagos-office", "kenji"):
        (folder / "signatures" / f"{name}.txt").write_text("Kenji, Osaka\n")
    (folder / "contacts.yaml").write_text(textwrap.dedent("""\
        name: extract-contacts-from-email-signatures
        prompt: Extract the name and the city. Reply with JSON.
        inputs: {files: ["signatures/*.txt"]}
        output: {format: json, write: "out/contacts/{stem}.json"}
        """))
    (folder / "why.yaml").write_text("name: why\nprompt: Why is the sky blue?\n")
    return load_jobs([folder], tmp_path)


HOST = "http://gpu-box-in-the-basement.example:11434"


def attempt(job_id: str, lane: str, model: str, outcome: str, reason: str | None = None) -> Attempt:
    backend, host = ("ollama", HOST) if lane == "local" else ("claude", "api.anthropic.com")
    return Attempt(run_id="r" * 32, session="s", job_id=job_id, task="t", task_fingerprint="f", input_hash="h",
                   models_key="m", routed_to=lane, lane=lane, backend=backend, model=model, attempt=1,
                   outcome=outcome, reason=reason, host=host)


def report_output(tmp_path: Path) -> Path:
    return tmp_path / "tasks/examples/out/contacts/amara-okonkwo-lagos-office.json"


def report(jobs: list, tmp_path: Path) -> RunReport:
    local = Decision(target="local", score=0.0, confidence=0.9, rule="local:extraction",
                     reasons=("extraction: the instruction says 'extract'",))
    cloud = Decision(target="cloud", score=1.0, confidence=0.9, rule=None,
                     reasons=tuple(f"reason number {i} with several words in it" for i in range(12)))
    ok, failed, why = jobs
    out = report_output(tmp_path)
    return RunReport(run_id="0123456789abcdef0123456789abcdef", session="s", outcomes=[
        Outcome(ok, local, status="ok", attempts=[attempt(ok.id, "local", "gemma3:270m", "ok")],
                output_path=str(out), checks=("format", "schema", "grounded")),
        Outcome(failed, local, status="failed", reason=LONG_REASON,
                attempts=[attempt(failed.id, "local", "gemma3:270m", "invalid", "schema"),
                          attempt(failed.id, "local", "gemma3:270m", "invalid", "schema"),
                          attempt(failed.id, "cloud", "claude-haiku-5-5", "error", "auth")]),
        Outcome(why, cloud, status="failed", reason=LONG_REASON,
                attempts=[attempt(why.id, "cloud", "claude-sonnet-5-5", "error", "auth")]),
    ])


def rows(text: str) -> list[str]:
    """The table's body lines (after the header rule, before the caption)."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if set(ln.strip()) == {"─"})
    body = lines[start + 1:]
    return [ln for ln in body[:next((i for i, ln in enumerate(body) if not ln.strip()), len(body))]]


def words(text: str) -> set[str]:
    return set(re.findall(r"[\w.-]+", text))


def test_the_jobs_table_at_80_columns(jobs: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = render_text(render.jobs_table(report(jobs, tmp_path)))
    body = rows(text)
    assert all(len(ln) <= 80 for ln in text.splitlines())
    assert len(body) == 2 * len(jobs), text  # each job: its id, then its output or reason, one line each
    # no id, path, host or word is broken inside a word: every run of letters and digits shown is whole
    shown = {w for ln in body for w in re.findall(r"[A-Za-z0-9_]+", ln)}
    every = " ".join([*(j.id for j in jobs), "tasks/examples/out/contacts/amara-okonkwo-lagos-office.json",
                      LONG_REASON, HOST, "ok failed local cloud on ollama gemma3:270m claude-haiku-5-5 claude-sonnet-5-5 1 3 not answered after escalation invalid"])
    whole = set(re.findall(r"[A-Za-z0-9_]+", every))
    assert shown <= whole, shown - whole
    assert "amara-okonkwo-lagos-office.json" in text  # a path keeps its file name
    assert "kenji.txt" in text and "why" in words(text)
    assert "--verbose" in text
    assert "(and a second line" not in text  # a reason is one line
    assert "on ollama…" in text  # the backend; the host is cut at the model's width (--verbose shows it)
    assert "schema grounded" not in text  # the checks passed: with --verbose


def column(text: str, title: str, next_title: str) -> list[str]:
    header = next(ln for ln in text.splitlines() if ln.lstrip().startswith("job"))
    start, end = (0 if title == "job" else header.index(title)), header.index(next_title)
    return [ln[start:end].strip() for ln in rows(text)]


def first_column(text: str) -> list[str]:
    header = next(ln for ln in text.splitlines() if ln.lstrip().startswith("job"))
    return column(text, "job", "routed" if "routed" in header else "target")


def test_verbose_shows_every_reason_in_full_broken_at_words(jobs: list, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = render_text(render.jobs_table(report(jobs, tmp_path), verbose=True))
    assert all(len(ln) <= 80 for ln in text.splitlines())
    first = first_column(text)
    joined = "".join(first).replace(" ", "")
    for whole in (LONG_REASON, *(j.id for j in jobs)):
        assert re.sub(r"\s", "", whole) in joined, whole
    hosts = "".join(column(text, "answered by", "status")).replace(" ", "")
    assert f"onollama{HOST}" in hosts  # the host in full, broken after `-` and `.`
    every = " ".join([LONG_REASON, str(report_output(tmp_path).relative_to(tmp_path)), HOST,
                      *(j.id for j in jobs), "not answered after escalation invalid passed format schema grounded"])
    whole = set(re.findall(r"[A-Za-z0-9_]+", every))
    shown = {w for ln in first + column(text, "answered by", "status") for w in re.findall(r"[A-Za-z0-9_]+", ln)}
    assert shown <= whole | {"on", "ollama", "gemma3", "270m", "claude", "sonnet", "5"}, shown - whole
    assert "--verbose" not in text
    assert "passedformat,schema,grounded" in joined  # the ok job's checks


def test_the_route_table_at_80_columns(jobs: list, tmp_path: Path) -> None:
    r = report(jobs, tmp_path)
    routed = [Routed(o.job, o.decision) for o in r.outcomes]
    text = render_text(render.route_table(routed))
    body = rows(text)
    assert len(body) == 2 * len(routed), text
    assert all(len(ln) <= 80 for ln in text.splitlines())
    assert "extract-contacts-from-email-signatures:…/kenji.txt" in text  # the task and the file
    assert "…/examples/signatures/amara-okonkwo-lagos-office.txt" in text  # no room for both: the file
    assert "reason number 11" not in text  # twelve reasons, cut to one line
    verbose = render_text(render.route_table(routed, verbose=True))
    assert "reason number 11 with several words in it" in " ".join(ln.strip() for ln in verbose.splitlines())


@pytest.mark.parametrize(("text", "width", "cut", "expected"), [
    ("extract-contacts:tasks/examples/signatures/amara.txt", 30, "tail", "extract-contacts:…/amara.txt"),
    ("extract-contacts:tasks/examples/signatures/amara.txt", 24, "tail", "…/signatures/amara.txt"),
    ("changelog-draft:ac30867ea25d", 26, "tail", "changelog-draft:…0867ea25d"),
    ("flaky-test-root-cause:22bba6c22deb", 26, "tail", "flaky-test-root-cause:22b…"),
    ("/home/u/p/out/contacts/amara.json", 22, "tail", "…/contacts/amara.json"),
    ("short", 10, "tail", "short"),
    ("no answer: the server closed the connection", 24, "head", "no answer: the server…"),
], ids=["id-task-and-file", "id-file-only", "id-task-and-hash", "id-long-task", "path", "fits", "reason"])
def test_fit(text: str, width: int, cut: str, expected: str) -> None:
    assert fit(text, width, cut) == expected  # type: ignore[arg-type]
    assert len(expected) <= width


def test_wrap_breaks_at_spaces_and_path_steps() -> None:
    assert wrap("extract-contacts:tasks/examples/signatures/amara.txt", 24) == [
        "extract-contacts:tasks/", "examples/signatures/", "amara.txt"]
    assert wrap("extract-contacts-from-email-signatures:x.txt", 20) == [
        "extract-contacts-", "from-email-", "signatures:x.txt"]
    assert wrap("a wordthatislongerthantheline b", 10) == ["a", "wordthatis", "longerthan", "theline b"]


def test_a_cell_is_never_taller_than_its_lines() -> None:
    text = render_text(Fit(Line("id:x/y.txt"), Line("one\ntwo\tthree", "head")), width=40)
    assert text.splitlines() == ["id:x/y.txt", "one two three"]


def test_a_wide_terminal_shows_the_answering_host_in_full(jobs: list, tmp_path: Path) -> None:
    narrow = render_text(render.jobs_table(report(jobs, tmp_path)), width=80)
    wide = render_text(render.jobs_table(report(jobs, tmp_path)), width=300)
    assert f"on ollama {HOST}" not in narrow and f"on ollama {HOST}" in wide
    assert len(rows(wide)) == 2 * len(jobs)
