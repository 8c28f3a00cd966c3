"""The budget's token resolved against the venue's collateral tokens (runtime.resolve_budget)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from keeper.config import ConfigError, load
from keeper.model import Token
from keeper.runtime import other_collateral, pick_token, resolve_budget
from keeper.units import TokenAmount
from tests.unit.margin_factories import USDC, WETH, ref_market, ref_position, snapshot

ROOT = Path(__file__).resolve().parents[2]
USDC_E = Token("0xUSDCe", "USDC.e", 6)
FAKE = Token("0xFAKE", "usdc", 18)


def keys(exc: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {p.key: p.message for p in exc.value.problems}


def test_a_symbol_or_an_address_names_one_token() -> None:
    tokens = (WETH, USDC, USDC_E)
    assert pick_token("USDC", tokens, source="k") == USDC
    assert pick_token("usdc.e", tokens, source="k") == USDC_E
    assert pick_token("0xweth", tokens, source="k") == WETH
    assert pick_token(None, (USDC,), source="k") == USDC


def test_what_names_no_token_or_several_says_so_with_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        pick_token("DAI", (WETH, USDC), source="k")
    message = keys(info)["budget.token"]
    assert "DAI is not a collateral token of the venue" in message
    assert "WETH (0xWETH), USDC (0xUSDC)" in message
    with pytest.raises(ConfigError) as info:
        pick_token(None, (WETH, USDC), source="k")
    assert "missing" in keys(info)["budget.token"]
    with pytest.raises(ConfigError) as info:
        pick_token("USDC", (USDC, FAKE), source="k")
    assert "names 2 tokens: give the address" in keys(info)["budget.token"]


class Tokens:
    def __init__(self, *tokens: Token) -> None:
        self.tokens = tokens

    async def collateral_tokens(self) -> tuple[Token, ...]:
        return self.tokens


async def test_the_budget_is_put_in_the_tokens_units() -> None:
    config = load(ROOT / "examples" / "devnet.toml", environ={})
    token, budget = await resolve_budget(config, Tokens(WETH, USDC))  # type: ignore[arg-type]
    assert token == USDC
    assert budget.reserve.raw == 1000 * 10**6
    assert budget.reserve.decimals == 6


async def test_decimals_that_differ_from_the_tokens_are_a_config_error() -> None:
    config = load(ROOT / "examples" / "devnet.toml", environ={})
    wide = replace(USDC, decimals=18)
    with pytest.raises(ConfigError) as info:
        await resolve_budget(config, Tokens(wide))  # type: ignore[arg-type]
    message = keys(info)["budget.token_decimals"]
    assert "6, but USDC (0xUSDC) has 18 decimals on this chain" in message
    fine = replace(config, budget=replace(config.budget, token_decimals=None))
    _, budget = await resolve_budget(fine, Tokens(wide))  # type: ignore[arg-type]
    assert budget.reserve.raw == 1000 * 10**18
    assert budget.reserve.decimals == 18
    assert budget.max_top_up_per_position.raw == 5000 * 10**18
    assert Decimal(budget.max_spend_per_day.raw) == Decimal(20_000) * 10**18


def test_positions_in_another_collateral_are_named() -> None:
    weth = replace(ref_position(key="w"), collateral_token=WETH, collateral=TokenAmount(1, 18))
    snap = snapshot((ref_market(),), (ref_position(), weth))
    [line] = other_collateral(snap, USDC)
    assert line.startswith("position w (TOK-USD long) holds WETH as collateral")
    assert "budget is in USDC: it is protected by reduce and close only" in line
    assert other_collateral(snapshot((ref_market(),), (ref_position(),)), USDC) == []
