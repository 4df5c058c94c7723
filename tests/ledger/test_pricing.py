"""Prices as data: cost of a call, cache tokens, batch discount, long-context tier, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollama_dist.errors import ConfigError
from ollama_dist.ledger.pricing import PriceTable, Usage


@pytest.fixture
def prices() -> PriceTable:
    return PriceTable.load()


@pytest.mark.parametrize(("model", "usage", "usd"), [
    ("claude-sonnet-5-5", Usage(1_000_000, 0), 2.00),
    ("claude-sonnet-5-5", Usage(0, 1_000_000), 10.00),
    ("claude-sonnet-5-5", Usage(0, 0, cache_read_tokens=1_000_000), 0.10),
    ("claude-sonnet-5-5", Usage(0, 0, cache_write_tokens=1_000_000), 2.50),
    ("claude-haiku-5-5", Usage(100_000, 100_000), 0.06),
    ("claude-haiku-5-5", Usage(200_000, 1_000), 200_000 * 0.50 / 1e6 + 1_000 * 2.50 / 1e6),  # long context
    ("claude-haiku-4-5-20251001", Usage(1_000_000, 0), 1.00),  # a dated snapshot uses its alias
    ("gemma3:270m", Usage(1_000_000, 1_000_000), 0.0),  # local models cost nothing
], ids=["sonnet-in", "sonnet-out", "cache-read", "cache-write", "haiku", "haiku-long", "snapshot", "local"])
def test_cost(prices: PriceTable, model: str, usage: Usage, usd: float) -> None:
    assert prices.cost(model, usage) == pytest.approx(usd)


def test_batch_halves_input_and_output(prices: PriceTable) -> None:
    usage = Usage(1_000_000, 1_000_000)
    assert prices.cost("claude-sonnet-5-5", usage, batch=True) == pytest.approx(6.0)


def test_baseline_is_the_cloud_models_price(prices: PriceTable) -> None:
    assert prices.baseline("claude-sonnet-5-5", Usage(1000, 1000)) == pytest.approx(0.012)
    with pytest.raises(ConfigError, match="no price for the cloud model"):
        prices.baseline("claude-unknown-9", Usage(1, 1))


def test_overrides_from_config() -> None:
    table = PriceTable.load({"claude-sonnet-5-5": {"input": 1.0}, "my-proxy-model": {"input": 3, "output": 4}})
    assert table.cost("claude-sonnet-5-5", Usage(1_000_000, 0)) == pytest.approx(1.0)
    assert table.cost("my-proxy-model", Usage(0, 1_000_000)) == pytest.approx(4.0)
    assert table.taken == "2026-11-24"
    with pytest.raises(ConfigError, match="lacks output"):
        PriceTable.load({"half-priced": {"input": 1}})


@pytest.mark.parametrize(("text", "line", "field"), [
    ("taken: x\nbatch_discount: 0.5\nmodels:\n  m:\n    input: -0.5\n    output: 1\n", 5, "models.m.input"),
    ("taken: x\nbatch_discount: 0.5\nmodels:\n  m: {input: 1, output: .nan}\n", 4, "models.m.output"),
    ("taken: x\nbatch_discount: 0.5\nmodels:\n  m: {input: 1, output: cheap}\n", 4, "models.m.output"),
    ("taken: x\nbatch_discount: -2\nmodels:\n  m: {input: 1, output: 1}\n", 2, "batch_discount"),
], ids=["negative", "nan", "text", "discount"])
def test_a_bad_price_in_the_data_file_names_file_line_and_field(tmp_path: Path, text: str, line: int,
                                                                field: str) -> None:
    table = tmp_path / "prices.yaml"
    table.write_text(text)
    with pytest.raises(ConfigError) as caught:
        PriceTable.load(source=table)
    assert f"{table}:{line} field `{field}`" in str(caught.value)


def test_a_negative_price_in_the_config_is_refused_where_it_stands() -> None:
    from typer.testing import CliRunner

    from ollama_dist.cli import app

    Path("ollama-dist.yaml").write_text("prices:\n  claude-sonnet-5-5:\n    input: -2.0\n    output: 10\n")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 2, result.output
    assert "ollama-dist.yaml:3 field `prices.claude-sonnet-5-5.input`" in result.stderr
    assert "greater than or equal to 0" in result.stderr
    with pytest.raises(ConfigError, match="prices.m.input"):
        PriceTable.load({"m": {"input": -1.0, "output": 1.0}})
