"""Prices as data: cost of a call, cache tokens, batch discount, long-context tier, overrides."""

from __future__ import annotations

import pytest

from ollama_dist.errors import ConfigError
from ollama_dist.pricing import PriceTable, Usage


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
