"""Fixed-point value types: scales, mixing, conservative rounding."""

from __future__ import annotations

from decimal import Decimal, Inexact, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.units import (
    CONTEXT,
    EXACT,
    Price,
    TokenAmount,
    Usd,
    div_ceil,
    div_floor,
    parse_decimal,
    quantize_ceil,
    quantize_floor,
)


def test_value_is_raw_over_scale() -> None:
    assert TokenAmount(1_500_000, 6).value == Decimal("1.5")
    assert Usd.from_value_exact("2.25", 6) == Usd(2_250_000, 6)
    assert str(Usd(-1, 6)) == "-0.000001"


def test_exact_refuses_to_round() -> None:
    with pytest.raises(ValueError, match="more than 6 decimal places"):
        Usd.from_value_exact("0.0000001", 6)


def test_rounding_direction_is_in_the_name() -> None:
    assert Usd.from_value_floor("1.0000019", 6).raw == 1_000_001
    assert Usd.from_value_ceil("1.0000011", 6).raw == 1_000_002
    assert Usd.from_value_floor("-1.0000011", 6).raw == -1_000_002
    assert Usd.from_value_ceil("-1.0000019", 6).raw == -1_000_001
    assert Usd(1_999_999, 6).rescale_floor(0) == Usd(1, 0)
    assert Usd(1_000_001, 6).rescale_ceil(0) == Usd(2, 0)


def test_mixing_types_or_scales_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="6 and 30"):
        _ = Usd(1, 6) + Usd(1, 30)
    with pytest.raises(TypeError, match="TokenAmount and Usd"):
        _ = TokenAmount(1, 6) + Usd(1, 6)  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = Usd(1, 6) < Usd(1, 18)
    with pytest.raises(TypeError):
        _ = Usd(1, 6) + 1  # type: ignore[operator]
    assert Usd(1, 6) != TokenAmount(1, 6)  # type: ignore[comparison-overlap]


def test_value_types_check_their_fields() -> None:
    with pytest.raises(TypeError):
        Usd(1.5, 6)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Usd(True, 6)
    with pytest.raises(ValueError, match="decimals"):
        Usd(1, -1)


def test_arithmetic_within_a_scale() -> None:
    a, b = Usd(5, 6), Usd(7, 6)
    assert a + b == Usd(12, 6)
    assert a - b == Usd(-2, 6)
    assert -a == Usd(-5, 6)
    assert abs(Usd(-5, 6)) == a
    assert a < b
    assert a.min(b) == a
    assert a.max(b) == b
    assert not a.zero()
    assert Usd(10, 6).mul_floor(Decimal("0.15")) == Usd(1, 6)
    assert Usd(10, 6).mul_ceil(Decimal("0.15")) == Usd(2, 6)


def test_reference_exchange_conversion() -> None:
    # 1,000 tokens (18 decimals) at 2.5 (18 decimals) is 2,500 USD at 6 decimals
    size = TokenAmount.from_value_exact("1000", 18)
    price = Price.from_value_exact("2.5", 18)
    assert size.to_usd_floor(price, 6) == Usd(2_500_000_000, 6)
    third = TokenAmount(1, 18)  # 1e-18 tokens at 2.5: 2.5e-18 USD
    assert third.to_usd_floor(price, 6) == Usd(0, 6)
    assert third.to_usd_ceil(price, 6) == Usd(1, 6)


def test_gmx_prices_scale_by_token_decimals() -> None:
    # ETH at 3,000 USD: GMX stores 3000 * 10**(30 - 18) per wei
    eth = Price.gmx(3000 * 10**12, 18)
    assert eth.value == Decimal(3000)
    # BTC (8 decimals) at 60,000: 60000 * 10**22 per satoshi
    btc = Price.gmx(60_000 * 10**22, 8)
    assert btc.value == Decimal(60_000)
    # 1.5 WETH of collateral is 4,500 USD at 1e30, exactly raw * price
    weth = TokenAmount(15 * 10**17, 18)
    assert weth.to_usd_floor(eth, 30) == Usd(4500 * 10**30, 30)
    assert weth.to_usd_floor(eth, 30).raw == weth.raw * eth.raw
    sats = TokenAmount(12_345, 8)
    assert sats.to_usd_floor(btc, 30).raw == sats.raw * btc.raw


def test_usd_to_tokens_rounds_as_named() -> None:
    price = Price.from_value_exact(3, 18)
    usd = Usd.from_value_exact(10, 6)
    assert usd.to_tokens_floor(price, 6) == TokenAmount(3_333_333, 6)
    assert usd.to_tokens_ceil(price, 6) == TokenAmount(3_333_334, 6)
    with pytest.raises(ValueError, match="positive"):
        usd.to_tokens_ceil(Price(0, 18), 6)


def test_parse_decimal_refuses_floats_and_non_finite() -> None:
    assert parse_decimal(" 0.25 ") == Decimal("0.25")
    assert parse_decimal(3) == Decimal(3)
    with pytest.raises(TypeError, match="ratio"):
        parse_decimal(0.25, name="ratio")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_decimal(True)
    with pytest.raises(ValueError, match="not a number"):
        parse_decimal("abc")
    with pytest.raises(ValueError, match="finite"):
        parse_decimal("NaN")
    with pytest.raises(ValueError, match="finite"):
        parse_decimal("-Infinity")


def test_context_is_wide_enough_for_1e30_values() -> None:
    assert (CONTEXT.prec, EXACT.prec) == (80, 120)  # exact: a 30-digit factor x a 48-digit entry
    big = Decimal(123456789 * 10**30) * Decimal(987654321 * 10**30)
    with localcontext(EXACT):
        assert Decimal(123456789 * 10**30) * Decimal(987654321 * 10**30) == big
        with pytest.raises(Inexact):
            _ = Decimal(10**119 + 1) * Decimal(10**10 + 1)


def test_directed_division_and_quantize() -> None:
    assert div_floor(Decimal(1), Decimal(3)) < div_ceil(Decimal(1), Decimal(3))
    assert quantize_floor(Decimal("-0.125"), 2) == Decimal("-0.13")
    assert quantize_ceil(Decimal("-0.125"), 2) == Decimal("-0.12")
    assert quantize_floor(Decimal("0.125"), 2) == Decimal("0.12")
    assert quantize_ceil(Decimal("0.121"), 2) == Decimal("0.13")


@settings(max_examples=200)
@given(
    raw=st.integers(min_value=0, max_value=10**30),
    price_raw=st.integers(min_value=1, max_value=10**24),
    token_decimals=st.integers(min_value=0, max_value=18),
)
def test_floor_never_exceeds_ceil_and_they_differ_by_at_most_one(
    raw: int, price_raw: int, token_decimals: int
) -> None:
    amount = TokenAmount(raw, token_decimals)
    price = Price(price_raw, 18)
    low, high = amount.to_usd_floor(price, 6), amount.to_usd_ceil(price, 6)
    assert low <= high
    assert high.raw - low.raw <= 1
    exact = EXACT.multiply(amount.value, price.value)
    assert low.value <= exact <= high.value
