"""`ollama-dist eval` and `calibrate` through the CLI; the judge against the fake Anthropic API."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ollama_dist.cli import app
from ollama_dist.config import load_settings
from tests.servers.anthropic import AnthropicServer

runner = CliRunner()
KEY = "sk-ant-test-judge-0123"
EVALS = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks" / "routellm-evals"
needs_evals = pytest.mark.skipif(not EVALS.is_dir(), reason=f"RouteLLM eval data not found at {EVALS}")


def small_set(folder: Path, easy: int = 8, hard: int = 4) -> Path:
    """Easy items both lanes get right; hard ones only the cloud gets right."""
    rows = [{"prompt": f"Convert this CSV to JSON, file {i}.", "local_ok": True, "cloud_ok": True,
             "local_answer": f"[{i}]", "cloud_answer": f"[{i}]"} for i in range(easy)]
    rows += [{"prompt": f"Why does this fail intermittently ({i})? Explain the root cause.", "local_ok": False,
              "cloud_ok": True, "local_answer": "no idea", "cloud_answer": f"a race in step {i}"}
             for i in range(hard)]
    path = folder / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture
def no_plotext(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotext", None)  # import plotext -> ImportError: the character plot


# ---------------------------------------------------------------- eval


def test_eval_json_contract(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(small_set(tmp_path)), "--json", "--policy", "router"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["items"] == 12 and data["policy"]["name"] == "router"
    assert set(data["policy"]) >= {"apgr", "cpt50", "cpt80", "curve"}
    assert data["local"]["quality"] == pytest.approx(8 / 12, abs=1e-4) and data["cloud"]["quality"] == 1.0
    assert data["oracle"]["apgr"] == pytest.approx(1 - 4 / 12 / 2, abs=1e-4)  # the 4 gains first: a steep ramp
    assert data["random"]["seeds"] == 10
    curve = data["policy"]["curve"]
    assert curve[0]["cloud_share"] == 0 and curve[-1]["cloud_share"] == 1
    assert data["judge"] is None and data["plot"] is None


def test_eval_table_and_character_plot(tmp_path: Path, no_plotext: None) -> None:
    result = runner.invoke(app, ["eval", str(small_set(tmp_path)), "--pattern", r"^\["])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for words in ("APGR", "CPT(50%)", "CPT(80%)", "router+validator", "random (mean of 10 seeds)", "oracle",
                  "validator only: 33.3% cloud -> quality 1.000", "cloud calls", "* router+validator"):
        assert words in out, words


def test_eval_bad_options_exit_2(tmp_path: Path) -> None:
    source = small_set(tmp_path)
    for args, words in ((["--policy", "smart"], "unknown policy"), (["--format", "xml"], "unknown format"),
                        (["--pattern", "(unclosed"], "--pattern")):
        result = runner.invoke(app, ["eval", str(source), *args])
        assert result.exit_code == 2, args
        assert words in result.stderr and "Traceback" not in result.output
    result = runner.invoke(app, ["eval", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_plot_without_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = runner.invoke(app, ["eval", str(small_set(tmp_path)), "--plot", str(tmp_path / "c.png")])
    assert result.exit_code == 2
    assert "matplotlib" in result.stderr and "ollama-dist[plot]" in result.stderr
    assert not (tmp_path / "c.png").exists()


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "curve.png"
    result = runner.invoke(app, ["eval", str(small_set(tmp_path)), "--plot", str(target), "--json"])
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_evals
def test_eval_on_gsm8k(no_plotext: None) -> None:
    result = runner.invoke(app, ["eval", str(EVALS / "gsm8k"), "--json", "--seeds", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["items"] == 1307 and data["dropped"] == 12
    validator = data["operating_points"][0]
    assert validator["name"] == "validator only" and 0.09 < validator["cloud_share"] < 0.115


# ---------------------------------------------------------------- the judge


@pytest.fixture
def claude(monkeypatch: pytest.MonkeyPatch) -> Iterator[AnthropicServer]:
    with AnthropicServer(key=KEY) as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        yield server


def verdict_by_content(body: dict[str, Any]) -> str:
    text = body["messages"][0]["content"]
    return json.dumps({"verdict": "local_worse" if "no idea" in text else "tied"})


def test_judge_counts_local_worse_as_regressions(tmp_path: Path, claude: AnthropicServer) -> None:
    claude.answer("claude-sonnet-5-5", verdict_by_content)
    result = runner.invoke(app, ["eval", str(small_set(tmp_path)), "--judge", "--sample", "12", "--json"])
    assert result.exit_code == 0, result.output
    judge = json.loads(result.stdout)["judge"]
    assert (judge["judged"], judge["tied"], judge["local_worse"], judge["local_better"]) == (12, 8, 4, 0)
    assert judge["regression_rate"] == pytest.approx(4 / 12, abs=1e-4)
    low, high = judge["regression_95ci"]
    assert low < 4 / 12 < high
    bodies = [r.body for r in claude.calls("/v1/messages")]
    assert len(bodies) == 12
    schema = bodies[0]["output_config"]["format"]["schema"]
    assert schema["properties"]["verdict"]["enum"] == ["tied", "local_worse", "local_better"]
    firsts = {b["messages"][0]["content"].index("<candidate>") < b["messages"][0]["content"].index("<reference>")
              for b in bodies}
    assert firsts == {True, False}  # the candidate is shown first in some pairs and second in others


def test_judge_survives_a_bad_verdict_and_fails_without_a_key(tmp_path: Path, claude: AnthropicServer,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    claude.answer("claude-sonnet-5-5", ['{"verdict": "maybe"}'] + ['{"verdict": "tied"}'] * 3)
    result = runner.invoke(app, ["eval", str(small_set(tmp_path, 4, 0)), "--judge", "--sample", "4", "--json"])
    assert result.exit_code == 0, result.output
    judge = json.loads(result.stdout)["judge"]
    assert (judge["judged"], judge["errors"], judge["regression_rate"]) == (3, 1, 0.0)
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    result = runner.invoke(app, ["eval", str(small_set(tmp_path)), "--judge"])
    assert result.exit_code == 2 and "ANTHROPIC_API_KEY" in result.stderr


def test_judge_needs_answer_text(tmp_path: Path) -> None:
    path = tmp_path / "no-answers.csv"
    path.write_text("prompt,local_ok,cloud_ok\nHello,true,true\n")
    result = runner.invoke(app, ["eval", str(path), "--judge"])
    assert result.exit_code == 2 and "both answers" in result.stderr


# ---------------------------------------------------------------- calibrate


def test_calibrate_suggests_and_writes_only_with_write(tmp_path: Path) -> None:
    source = small_set(tmp_path)
    config = Path.cwd() / "ollama-dist.yaml"
    result = runner.invoke(app, ["calibrate", str(source), "--max-regression", "0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["reached"] and data["suggested"]["regression"] == 0
    assert data["suggested"]["local_share"] >= 8 / 12
    assert data["suggested"]["saved_usd"] > 0 and data["all_cloud"]["cost_usd"] > 0
    assert not config.exists() and data["written"] is None
    config.write_text("# my settings\nmodels:\n  local: qwen3:4b  # the box's model\nrouter:\n"
                      "  score_threshold: 0.35   # was the default\n  max_local_tokens: 6000\n")
    result = runner.invoke(app, ["calibrate", str(source), "--max-regression", "0", "--write"])
    assert result.exit_code == 0, result.output
    assert "wrote router.score_threshold" in result.stderr
    text = config.read_text()
    assert "# my settings" in text and "# the box's model" in text and "# was the default" in text
    settings = load_settings()
    assert settings.models.local == "qwen3:4b" and settings.router.max_local_tokens == 6000
    assert settings.router.score_threshold == data["suggested"]["score_threshold"]
    assert settings.router.confidence_threshold == data["suggested"]["confidence_threshold"]


def test_calibrate_creates_the_config_and_refuses_an_unreachable_target(tmp_path: Path) -> None:
    config = Path.cwd() / "ollama-dist.yaml"
    result = runner.invoke(app, ["calibrate", str(small_set(tmp_path)), "--max-regression", "0.5", "--write"])
    assert result.exit_code == 0, result.output
    assert set(yaml.safe_load(config.read_text())["router"]) == {"score_threshold", "confidence_threshold"}
    config.unlink()
    rows = tmp_path / "hard.csv"
    rows.write_text("prompt,local_ok,cloud_ok\nConvert this CSV to JSON.,false,true\nHello.,true,true\n")
    result = runner.invoke(app, ["calibrate", str(rows), "--max-regression", "0", "--write"])
    assert result.exit_code == 1
    assert "out of reach" in result.stdout + result.stderr
    assert not config.exists()


def test_calibrate_bad_target_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["calibrate", str(small_set(tmp_path)), "--max-regression", "2"])
    assert result.exit_code == 2 and "between 0 and 1" in result.stderr
