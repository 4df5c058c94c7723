"""The price table as data; the cost of a call, and what the same work costs on Claude."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from ollama_dist.errors import ConfigError

PER_MILLION = 1_000_000
_SNAPSHOT = re.compile(r"-\d{8}$")


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens


@dataclass(frozen=True)
class PriceTable:
    taken: str
    batch_discount: float
    models: Mapping[str, Mapping[str, float]]

    @classmethod
    def load(cls, overrides: Mapping[str, Mapping[str, float]] | None = None) -> PriceTable:
        text = resources.files("ollama_dist").joinpath("data/prices.yaml").read_text(encoding="utf-8")
        data: dict[str, Any] = yaml.safe_load(text)
        models = {name: dict(row) for name, row in data["models"].items()}
        for name, row in (overrides or {}).items():
            models[name] = {**models.get(name, {}), **row}
        for name, row in models.items():
            missing = {"input", "output"} - set(row)
            if missing:
                raise ConfigError(f"the price of {name} lacks {', '.join(sorted(missing))}",
                                  field=f"prices.{name}", hint="give input and output in USD per million tokens")
        return cls(taken=str(data["taken"]), batch_discount=float(data["batch_discount"]), models=models)

    def row(self, model: str) -> Mapping[str, float] | None:
        """The price row of a model id, or of its alias when the id is a dated snapshot."""
        return self.models.get(model) or self.models.get(_SNAPSHOT.sub("", model))

    def is_priced(self, model: str) -> bool:
        return self.row(model) is not None

    def cost(self, model: str, usage: Usage, *, batch: bool = False) -> float:
        """USD for one call. A model that is not in the table (a local one) costs nothing."""
        row = self.row(model)
        if row is None:
            return 0.0
        rate_in, rate_out = row["input"], row["output"]
        if "long_context_tokens" in row and usage.prompt_tokens > row["long_context_tokens"]:
            rate_in, rate_out = row.get("long_input", rate_in), row.get("long_output", rate_out)
        factor = self.batch_discount if batch else 1.0
        total = (
            usage.input_tokens * rate_in * factor
            + usage.output_tokens * rate_out * factor
            + usage.cache_write_tokens * row.get("cache_write", rate_in * 1.25)
            + usage.cache_read_tokens * row.get("cache_read", rate_in * 0.1)
        )
        return total / PER_MILLION

    def baseline(self, cloud_model: str, usage: Usage) -> float:
        """What the same tokens would have cost on the configured cloud model.

        Local and Claude tokenizers differ (the 5.x tokenizer counts about 30% more than
        older ones); the baseline uses the counts the answering model reported, so it is
        a conservative estimate of the saving.
        """
        if not self.is_priced(cloud_model):
            raise ConfigError(f"no price for the cloud model {cloud_model}", field=f"prices.{cloud_model}",
                              hint="add `prices: {MODEL: {input: X, output: Y}}` to the config")
        return self.cost(cloud_model, usage)
