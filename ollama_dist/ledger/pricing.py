"""The price table as data; the cost of a call, and what the same work costs on Claude."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ollama_dist.errors import ConfigError
from ollama_dist.yamlfile import YamlDoc, parse_yaml

PER_MILLION = 1_000_000
_SNAPSHOT = re.compile(r"-\d{8}$")
DATA_FILE = "data/prices.yaml"


def _number(value: object, field: str, doc: YamlDoc | None, *, at_most: float | None = None) -> float:
    """A price (or discount) from the table: a finite number, not negative."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and number >= 0 and (at_most is None or number <= at_most):
            return number
    bound = f"between 0 and {at_most:g}" if at_most is not None else "a number of USD per million tokens, 0 or more"
    file, line = (str(doc.path), doc.line_of(field.split("."))) if doc is not None else (None, None)
    raise ConfigError(f"must be {bound} (got {value!r})", file=file, line=line,
                      field=field if doc is not None else f"prices.{field.split('.', 1)[1]}",
                      hint="prices are USD per million tokens, as on the published price list")


def _rows(models: object, doc: YamlDoc | None) -> dict[str, dict[str, float]]:
    if not isinstance(models, Mapping):
        raise ConfigError("`models` must map model ids to price rows", file=str(doc.path) if doc else None,
                          line=doc.line_of(("models",)) if doc else None, field="models")
    rows: dict[str, dict[str, float]] = {}
    for name, row in models.items():
        if not isinstance(row, Mapping):
            raise ConfigError("a price row must map input/output/... to prices", field=f"prices.{name}",
                              file=str(doc.path) if doc else None,
                              line=doc.line_of(("models", str(name))) if doc else None)
        rows[str(name)] = {str(k): _number(v, f"models.{name}.{k}", doc) for k, v in row.items()}
    return rows


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
    def load(cls, overrides: Mapping[str, Mapping[str, float]] | None = None, *,
             source: Path | None = None) -> PriceTable:
        """The packaged table (or the one at `source`) with `overrides` (the config's `prices:`)
        on top. A negative or non-numeric price is a ConfigError naming where it stands."""
        if source is None:
            text = resources.files("ollama_dist").joinpath(DATA_FILE).read_text(encoding="utf-8")
            where = Path(__file__).parent.parent / DATA_FILE
        else:
            text, where = source.read_text(encoding="utf-8"), source
        doc = parse_yaml(text, where)
        data: Any = doc.data
        if not isinstance(data, dict) or "models" not in data:
            raise ConfigError("a price table needs `taken`, `batch_discount` and `models`", file=str(where), line=1)
        models = _rows(data["models"], doc)
        discount = _number(data.get("batch_discount", 1.0), "batch_discount", doc, at_most=1.0)
        for name, row in _rows(overrides or {}, None).items():
            models[name] = {**models.get(name, {}), **row}
        for name, row in models.items():
            missing = {"input", "output"} - set(row)
            if missing:
                raise ConfigError(f"the price of {name} lacks {', '.join(sorted(missing))}",
                                  field=f"prices.{name}", hint="give input and output in USD per million tokens")
        return cls(taken=str(data.get("taken", "")), batch_discount=discount, models=models)

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
