"""List prices of common API models, USD per 1M tokens, and the cost of a call.

Prices drift: these are the providers' published list prices as last checked (``AS_OF``),
without batch or cache discounts. A goal can override them per candidate
(``APIConfig.prices``); an unknown model costs 0 and is flagged ``priced=False``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

AS_OF = "2025-11"

# model -> (input, output) USD per 1M tokens
PRICES: dict[str, tuple[float, float]] = {
    # OpenAI
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "o1": (15.00, 60.00),
    # Anthropic
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-3-haiku": (0.25, 1.25),
}

# Snapshot names add a date or alias to the family name: gpt-4o-2024-08-06,
# claude-3-5-haiku-20241022, claude-sonnet-4-latest. Nothing else is stripped, so
# "gpt-4.1-nano" never falls back to "gpt-4.1".
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float


def lookup(model: str) -> Price | None:
    """The list price of ``model`` (snapshot suffixes allowed), or None if unknown."""
    name = model.strip().lower()
    if "/" in name:  # "openai/gpt-4o" as routers spell it
        name = name.rsplit("/", 1)[1]
    name = _SNAPSHOT.sub("", name)
    pair = PRICES.get(name)
    return Price(*pair) if pair else None


def price_for(model: str, override: dict | None = None) -> Price | None:
    """``override`` ({"input_per_mtok", "output_per_mtok"}) wins over the table."""
    if override:
        return Price(float(override["input_per_mtok"]), float(override["output_per_mtok"]))
    return lookup(model)


def cost_usd(price: Price | None, input_tokens: int, output_tokens: int) -> float:
    if price is None:
        return 0.0
    return (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1_000_000
