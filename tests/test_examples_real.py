"""The shipped examples, run end to end: the real local model (Gemma 3 270M behind the
Ollama-protocol server) and the Anthropic-protocol server standing in for Claude.

Every job must end valid; some are answered locally, and wrong local answers escalate. And no
wrong local answer is written as ok: every value the local model got accepted is checked here
against what the input says, by hand-written expectations or by reading the input with the
standard library (`ast`, `tomllib`, `git`), never by the package's own grounding code.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ollama_dist.cli import app
from tests.servers.anthropic import AnthropicServer
from tests.servers.anthropic.examples import cloud_responder
from tests.servers.ollama import FakeOllama

pytestmark = pytest.mark.real_model
pytest_plugins = ["tests.servers.fixtures"]

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "tasks" / "examples"


def checkout_copy(dest: Path) -> Path:
    """The checkout as it stands, in `dest`: a clone that shares its history (the changelog example
    reads `git log`), with the working tree's examples, package and pyproject copied over it. The
    run writes its outputs there, never into the user's `tasks/examples/out/`."""
    try:
        subprocess.run(["git", "clone", "-q", "--shared", str(REPO), str(dest)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the examples read git history, and {REPO} cannot be cloned: {exc}")
    ignore = shutil.ignore_patterns("__pycache__", "out")
    for name in ("tasks", "ollama_dist"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore, dirs_exist_ok=True)
    shutil.copy2(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


CONTACTS = {"amara": {"name": "Amara Okafor", "email": "amara.okafor@gridline.example", "city": "Lagos"},
            "kenji": {"name": "Kenji Watanabe", "email": "kenji@tanuki.example", "city": "Osaka"},
            "maria": {"name": "Maria Lopez", "email": "maria.lopez@northwind.example", "city": "Lisbon"}}
ROWS = [{"sku": "A-100", "name": "USB-C cable", "qty": 12, "price": 4.99},
        {"sku": "A-101", "name": "HDMI adapter", "qty": 3, "price": 12.5},
        {"sku": "B-200", "name": "Laptop stand", "qty": 1, "price": 39.0}]
COLUMNS = [{"customer_id"}, {"first_name"}, {"last_name"}, {"e_mail_address", "email_address"},
           {"signup_date_utc", "signup_date"}, {"lifetime_value", "lifetime_value_usd"}]
RELEASE = ("ollama-dist 0.2.0 is out. It routes jobs between Ollama and Claude and proves every answer. "
           "Upgrade with `pip install -U ollama-dist`.")


def source_of(job: dict[str, Any]) -> Path:
    return REPO / job["job"].split(":", 1)[1]


def third_party_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("ollama_dist", "__future__")}


def runtime_dependencies() -> set[tuple[str, str]]:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pairs = (re.match(r"([A-Za-z0-9._-]+)\s*(.*)", d) for d in declared)
    return {(m.group(1).lower(), m.group(2).replace(" ", "")) for m in pairs if m}


def commit_subjects() -> list[str]:
    log = subprocess.run(["git", "-C", str(REPO), "log", "--format=%s", "HEAD~3..HEAD"], capture_output=True,
                         text=True, check=True).stdout
    return [" ".join(line.split()).lower() for line in log.splitlines() if line.strip()]


def wrong_values(job: dict[str, Any], value: Any) -> list[str]:
    """What is wrong in `value`, the answer accepted for `job` (empty when it is right)."""
    task = job["task"]
    if task == "extract-contacts":
        want = CONTACTS[Path(job["output"]).stem]
        return [f"{k}={value.get(k)!r}" for k in want if str(value.get(k, "")).strip().lower() != want[k].lower()]
    if task == "csv-to-json":
        return [] if value == {"rows": ROWS} else [f"rows={value.get('rows')!r}"]
    if task == "dedupe-tags":
        return [] if value == {"tags": ["api", "backend", "cli", "docs", "frontend", "infra"]} else [str(value)]
    if task == "snake-case-columns":
        got = value["columns"]
        return [c for c, ok in zip(got, COLUMNS) if c not in ok] if len(got) == len(COLUMNS) else [str(got)]
    if task == "triage-issue":
        return [] if value == {"label": "bug"} else [str(value)]
    if task == "dependency-map":
        got = {(d["name"].lower(), d["constraint"].replace(" ", "")) for d in value["dependencies"]}
        return sorted(map(str, got ^ runtime_dependencies()))
    if task == "extract-imports":
        return sorted(set(value["imports"]) ^ third_party_imports(source_of(job)))
    if task == "public-functions":
        tree = ast.parse(source_of(job).read_text())
        public = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                  and not n.name.startswith("_")}
        return sorted(set(value["functions"]) ^ public)
    if task == "release-note":
        return [] if " ".join(str(value).split()) == RELEASE else [str(value)[:200]]
    if task == "changelog-draft":  # the commits' own words under Added/Fixed headings
        lines = [" ".join(line.split()) for line in str(value).splitlines() if line.strip()]
        bullets = [line[2:].lower() for line in lines if line.startswith(("- ", "* "))]
        headed = any(re.match(r"#*\s*(added|fixed)\b", line.lower()) for line in lines)
        subjects = commit_subjects()
        return ([] if headed else ["no Added/Fixed heading"]) + [
            b for b in bullets if not any(b.rstrip(".") in subject for subject in subjects)] + (
            [] if bullets else ["no bullet"])
    raise AssertionError(f"no expectation for task {task}: add one")


def test_shipped_examples_end_to_end(real_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    with AnthropicServer(key="test-key") as claude:
        claude.answer("*", cloud_responder())
        monkeypatch.setenv("OLLAMA_HOST", real_ollama.url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        # no breaker spill-over here: this test is about the local model's own answers
        Path("ollama-dist.yaml").write_text(textwrap.dedent("""\
            ollama: {embedded: false}
            breaker: {p95_threshold_s: 100000}
            """))
        root = checkout_copy(tmp_path / "repo")
        result = CliRunner().invoke(app, ["run", str(root / "tasks/examples"), "--root", str(root),
                                          "--json", "--quiet"])
    assert result.exit_code == 0, result.stdout[-3000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    jobs = report["jobs"]
    assert len(jobs) >= 16 and all(j["status"] == "ok" for j in jobs)
    local = [j for j in jobs if j["routed_to"] == "local"]
    answered_locally = [j for j in local if not j["escalated"]]
    escalated = [j for j in local if j["escalated"]]
    assert answered_locally, "the real model answered nothing valid"
    assert escalated, "no wrong local answer was caught and escalated"
    # no wrong local value written as ok: each accepted local answer, as written, against its input
    wrong: dict[str, list[str]] = {}
    for job in answered_locally:
        text = Path(job["output"]).read_text()
        value = json.loads(text) if text.lstrip().startswith(("{", "[")) else text
        if found := wrong_values(job, value):
            wrong[job["job"]] = found + [f"checks {job['checks']}"]
    assert not wrong, f"wrong local values written as ok: {wrong}"
    assert all("grounded" in j["checks"] for j in jobs if j["task"] in ("extract-contacts", "csv-to-json",
                                                                       "dependency-map", "public-functions"))
    # labels and renames cannot be grounded: their local answers stand only if three samples agree
    for job in (j for j in answered_locally if j["task"] in ("triage-issue", "snake-case-columns")):
        assert job["checks"][-1] == "agree" and job["agreement"]["asked"] == 3 and job["agreement"]["agreed"]
    print(f"\n{len(answered_locally)} answered locally ({', '.join(j['job'] for j in answered_locally)}), "
          f"{len(escalated)} escalated {report['totals']['escalation_reasons']}, {len(jobs) - len(local)} routed "
          f"to the cloud; local {sum(j['local_s'] for j in jobs):.0f} s; saved {report['totals']['saved_pct']}%")
