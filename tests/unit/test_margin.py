"""Margin math against hand-computed cases (DESIGN.md, "Margin terms") and properties."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper import margin
from keeper.model import Basis, CrossAccount, MarginMode, Market, Position, Side, Strictness, Token
from keeper.units import Price, TokenAmount, Usd, quantize_ceil, quantize_floor
from tests.unit.margin_factories import (
    GMX,
    WETH,
    D,
    ref_account,
    ref_market,
    ref_position,
)


def usd(text: str) -> Usd:
    return Usd.from_value_exact(text, 6)


def price(text: str) -> Price:
    return Price.from_value_exact(text, 18)


# --- the worked case: long 1,000 at 2.50 with 250 margin, m = 0, f = 0 ------------------------


def test_worked_case_at_entry() -> None:
    p, m = ref_position(), ref_market("2.5")
    assert margin.notional(p, m) == usd("2500")
    assert margin.leverage(p, m) == 10
    assert margin.equity(p, m) == usd("250")
    assert margin.margin_ratio(p, m) == D("0.1")
    assert margin.liquidation_price(p, m) == price("2.25")
    assert margin.distance_to_liquidation(p, m) == D("0.1")
    assert not margin.is_liquidatable(p, m)


def test_worked_case_at_3_pnl_is_200_percent_of_margin() -> None:
    p, m = ref_position(), ref_market("3")
    assert margin.pnl(p, m) == usd("500")
    assert margin.pnl(p, m).value / p.collateral_usd.value == 2
    assert margin.equity(p, m) == usd("750")
    assert margin.margin_ratio(p, m) == D("0.25")
    assert margin.leverage(p, m) == 4
    assert margin.liquidation_price(p, m) == price("2.25")


def test_worked_case_at_2_20_is_liquidatable() -> None:
    p, m = ref_position(), ref_market("2.2")
    assert margin.pnl(p, m) == usd("-300")
    assert margin.equity(p, m) == usd("-50")
    assert margin.is_liquidatable(p, m)
    assert margin.leverage(p, m) is None
    distance = margin.distance_to_liquidation(p, m)
    assert distance is not None
    assert distance < 0
    assert distance == quantize_floor(D("-0.05") / D("2.2"), 18)


def test_strictness_at_the_boundary() -> None:
    p = ref_position()
    lt = ref_market("2.25")
    le = replace(lt, strictness=Strictness.LE)
    assert margin.equity(p, lt) == usd("0")
    assert not margin.is_liquidatable(p, lt)  # equity 0 is not < MM 0
    assert margin.is_liquidatable(p, le)  # but it is <= MM 0


# --- maintenance above zero, a close fee, a short, both bases ---------------------------------


def test_long_mark_basis_with_maintenance_and_close_fee() -> None:
    p, m = ref_position(), ref_market("2.5", m="0.01", f="0.001")
    assert margin.equity(p, m) == usd("247.5")  # 250 - 0.001 * 2500
    assert margin.margin_ratio(p, m) == D("0.099")
    assert margin.maintenance_margin(p, m) == usd("25")
    # (qE - C + F0) / (q (1 - m - f)) = 2250 / 989, rounded up for a long
    assert margin.liquidation_price(p, m) == price("2.275025278058645097")
    distance = margin.distance_to_liquidation(p, m)
    assert distance == quantize_floor(D(89) / D(989), 18)


def test_short_mark_basis_with_maintenance_and_close_fee() -> None:
    p, m = ref_position("short"), ref_market("2.5", m="0.01", f="0.001")
    # (C + qE - F0) / (q (1 + m + f)) = 2750 / 1011, rounded down for a short
    assert margin.liquidation_price(p, m) == price("2.720079129574678536")
    assert margin.pnl(p, ref_market("2", m="0.01")) == usd("500")
    assert margin.pnl(p, ref_market("3", m="0.01")) == usd("-500")
    assert margin.distance_to_liquidation(p, ref_market("2.5")) == D("0.1")  # liq at 2.75


def test_entry_basis_long_and_short_with_fees() -> None:
    m = ref_market("3", m="0.01", f="0.001", basis=Basis.ENTRY)
    long_ = ref_position("long", fees="10")
    short = ref_position("short", fees="10")
    # MM = m q E = 25 whatever the mark; on mark basis it would be 30
    assert margin.maintenance_margin(long_, m) == usd("25")
    assert margin.maintenance_margin(long_, replace(m, basis=Basis.MARK)) == usd("30")
    # long: (qE(1 + m) - C + F0) / (q(1 - f)) = 2285 / 999
    assert margin.liquidation_price(long_, m) == price("2.287287287287287288")
    # short: (qE(1 - m) + C - F0) / (q(1 + f)) = 2715 / 1001
    assert margin.liquidation_price(short, m) == price("2.712287712287712287")
    assert margin.entry_notional(long_, m) == usd("2500")


def test_close_fee_and_signed_accrued_fees_in_equity() -> None:
    m = ref_market("3", f="0.001")
    assert margin.equity(ref_position(), m) == usd("747")  # 250 + 500 - 3
    assert margin.equity(ref_position(fees="10"), m) == usd("737")
    assert margin.equity(ref_position(fees="-5"), m) == usd("752")  # funding income


def test_no_liquidation_price_where_the_formula_gives_zero_or_less() -> None:
    m = ref_market("2.5")
    safe_long = ref_position(size="10", collateral="100")  # (25 - 100) / 10 < 0
    assert margin.liquidation_price(safe_long, m) is None
    assert margin.distance_to_liquidation(safe_long, m) is None
    doomed_short = ref_position("short", size="10", collateral="1", fees="100")
    assert margin.liquidation_price(doomed_short, m) is None
    assert margin.distance_to_liquidation(doomed_short, m) == -1
    assert margin.is_liquidatable(doomed_short, m)


def test_venue_floor_raises_a_long_liquidation_price() -> None:
    p = ref_position()
    m = ref_market("2.5", floor="100")
    # equity = 250 + 1000 (P - 2.5) hits the 100 floor at 2.35, before MM (0) at 2.25
    assert margin.liquidation_price(p, m) == price("2.35")
    assert margin.is_liquidatable(p, ref_market("2.34", floor="100"))
    assert not margin.is_liquidatable(p, ref_market("2.35", floor="100"))


def test_collateral_and_cut_for_a_target_ratio() -> None:
    p, m = ref_position(), ref_market("2.5", m="0.01", f="0.001")
    # 0.2 * 2500 - 247.5
    assert margin.collateral_for_ratio(p, m, D("0.2")) == usd("252.5")
    assert margin.collateral_for_ratio(p, m, D("0.05")) == usd("0")
    # equity is kept, notional shrinks: 247.5 / (0.2 * 2.5) = 495 left, 505 cut
    assert margin.size_to_cut_for_ratio(p, m, D("0.2")) == TokenAmount.from_value_exact(505, 18)
    assert margin.size_to_cut_for_ratio(p, m, D("0.05")) == TokenAmount(0, 18)
    assert margin.size_to_cut_for_ratio(p, m, D("1.5")) == TokenAmount.from_value_exact(934, 18)
    # a cut that costs more (impact 0.3) than it frees (0.2 of each token's notional)
    costly = ref_market("2.5", m="0.01", f="0.001", impact="0.3")
    assert margin.size_to_cut_for_ratio(p, costly, D("0.2")) is None
    # negative equity: no cut short of the whole position gets there
    assert margin.size_to_cut_for_ratio(p, ref_market("2.2"), D("0.1")) is None


def test_cut_with_a_loss_and_price_impact() -> None:
    p = ref_position()
    m = ref_market("2.4", f="0.001", impact="0.002")
    # equity 250 - 100 - 2.4 = 147.6; each token cut frees 0.1 * 2.4 and costs 0.002 * 2.4
    cut = margin.size_to_cut_for_ratio(p, m, D("0.1"))
    assert cut == TokenAmount.from_value_ceil(D("92.4") / D("0.2352"), 18)
    after = margin.after_reduce(p, m, cut)
    assert after.fees == usd("0")
    # within one unit of USD rounding of the target
    assert (
        margin.equity(after, m).value + D("0.000001") >= D("0.1") * margin.notional(after, m).value
    )


def test_collateral_for_a_target_distance() -> None:
    p, m = ref_position(), ref_market("2.5")
    # liquidation at 2.25 is 10% away; 20% away (2.0) needs C = qE - q * 2.0 = 500
    assert margin.collateral_for_distance(p, m, D("0.2")) == usd("250")
    topped = margin.add_collateral(p, TokenAmount.from_value_exact(250, 6))
    assert margin.distance_to_liquidation(topped, m) == D("0.2")
    cut = margin.size_to_cut_for_distance(p, m, D("0.2"))
    assert cut is not None
    assert margin.distance_to_liquidation(margin.after_reduce(p, m, cut), m) >= D("0.2")  # type: ignore[operator]
    smaller = margin.after_reduce(p, m, TokenAmount(cut.raw - 1, 18))
    assert margin.distance_to_liquidation(smaller, m) < D("0.2")  # type: ignore[operator]


def test_projection_accrues_funding_and_borrowing() -> None:
    p = ref_position()
    m = ref_market("2.5", funding_long="0.000001")  # of 2,500 notional per second
    assert margin.project(p, m, 3600).fees == usd("9")
    assert margin.projected_margin_ratio(p, m, 3600) == D("0.0964")
    income = ref_market("2.5", funding_long="-0.000001")
    assert margin.projected_margin_ratio(p, income, 3600) == D("0.1036")
    assert margin.projected_margin_ratio(p, m, 0) == D("0.1")


def test_gmx_position_with_weth_collateral() -> None:
    eth = Token("0xETH", "ETH", 18)
    market = Market(
        venue=GMX,
        market_id="0xETHUSD",
        index_token=eth,
        usd_decimals=30,
        mark_price=Price.gmx(2800 * 10**12, 18),
        maintenance_rate=D("0.01"),
        basis=Basis.ENTRY,
        strictness=Strictness.LE,
        min_collateral_usd=Usd(5 * 10**30, 30),
        close_fee_rate=D("0.0005"),
    )
    collateral = TokenAmount(2 * 10**18, 18)
    weth_price = Price.gmx(3000 * 10**12, 18)
    position = Position(
        venue=GMX,
        key="0xkey",
        account="0xTrader",
        market_id="0xETHUSD",
        side=Side.LONG,
        size=TokenAmount(10 * 10**18, 18),
        entry_price=Price.gmx(3000 * 10**12, 18),
        collateral_token=WETH,
        collateral=collateral,
        collateral_price=weth_price,
        collateral_usd=collateral.to_usd_floor(weth_price, 30),
        fees=Usd(0, 30),
    )
    assert position.collateral_usd == Usd(6000 * 10**30, 30)
    # 6000 - 2000 - 0.0005 * 28000
    assert margin.equity(position, market) == Usd(3986 * 10**30, 30)
    assert margin.maintenance_margin(position, market) == Usd(300 * 10**30, 30)  # m q E
    # (qE(1 + m) - C) / (q(1 - f)) = 24300 / 9.995, rounded up at GMX's 1e12 price scale
    liq = margin.liquidation_price(position, market)
    assert liq == Price(int(quantize_ceil(D(24300) / D("9.995"), 12).scaleb(12)), 12)
    # a top-up in WETH: USD needed rounds up, tokens round up
    need = margin.collateral_for_ratio(position, market, D("0.5"))
    assert need == Usd(10014 * 10**30, 30)  # 0.5 * 28000 - 3986
    tokens = need.to_tokens_ceil(weth_price, 18)
    assert margin.margin_ratio(margin.add_collateral(position, tokens), market) >= D("0.5")


def test_position_and_market_must_match() -> None:
    with pytest.raises(ValueError, match="not in market"):
        margin.equity(ref_position(market_id="OTHER"), ref_market())
    with pytest.raises(ValueError, match="maintenance_rate"):
        ref_market(m="1")


# --- a cross account ---------------------------------------------------------------------------


def _cross() -> tuple[CrossAccount, tuple[margin.Leg, ...]]:
    long_ = ref_position("long", "1000", "2.5", "0", key="L", market_id="A", cross_account="acct")
    short = ref_position("short", "10", "100", "0", key="S", market_id="B", cross_account="acct")
    legs = (
        (long_, ref_market("2.4", m="0.01", market_id="A")),
        (short, ref_market("100", m="0.01", market_id="B")),
    )
    return ref_account("500", ("L", "S")), legs


def test_cross_account_figures() -> None:
    account, legs = _cross()
    assert legs[0][0].mode is MarginMode.CROSS
    assert margin.cross_equity(account, legs) == usd("400")  # 500 - 100 + 0
    assert margin.cross_notional(account, legs) == usd("3400")
    assert margin.cross_margin_ratio(account, legs) == quantize_floor(D(400) / D(3400), 18)
    assert margin.cross_maintenance_margin(account, legs) == usd("34")  # 24 + 10
    assert not margin.cross_is_liquidatable(account, legs)


def test_cross_liquidation_price_of_each_position_alone() -> None:
    account, legs = _cross()
    # long alone: 500 + 1000 (P - 2.5) = 10 P + 10  =>  P = 2010 / 990
    assert margin.cross_liquidation_price(account, legs, "L") == Price.from_value_ceil(
        D(2010) / D(990), 18
    )
    # short alone: 1400 - 10 P = 24 + 0.1 P  =>  P = 1376 / 10.1
    assert margin.cross_liquidation_price(account, legs, "S") == Price.from_value_floor(
        D(1376) / D("10.1"), 18
    )
    distance = margin.cross_distance_to_liquidation(account, legs, "S")
    assert distance == quantize_floor((D(1376) / D("10.1") - 100) / 100, 18)


def test_cross_top_up_and_cut() -> None:
    account, legs = _cross()
    assert margin.cross_collateral_for_ratio(account, legs, D("0.2")) == usd("280")  # 680 - 400
    cut = margin.cross_size_to_cut_for_ratio(account, legs, "L", D("0.2"))
    assert cut == TokenAmount.from_value_ceil(D(280) / D("0.48"), 18)
    after_account, after_legs = margin.cross_after_reduce(account, legs, "L", cut)
    assert margin.cross_margin_ratio(after_account, after_legs) >= D("0.199999")
    topped = margin.add_account_collateral(account, TokenAmount.from_value_exact(280, 6))
    assert margin.cross_margin_ratio(topped, legs) == D("0.2")


def test_cross_and_isolated_agree_on_one_position() -> None:
    p, m = ref_position(key="L", cross_account="acct"), ref_market("2.4", m="0.01", f="0.001")
    account = ref_account("250", ("L",))
    iso = replace(p, mode=MarginMode.ISOLATED, cross_account=None)
    assert margin.cross_equity(account, ((p, m),)) == margin.equity(iso, m)
    assert margin.cross_liquidation_price(account, ((p, m),), "L") == margin.liquidation_price(
        iso, m
    )


# --- properties --------------------------------------------------------------------------------

sides = st.sampled_from(["long", "short"])
decimals_str = st.decimals(min_value=D("0.01"), max_value=D(1000), places=2).map(str)
rates = st.decimals(min_value=D(0), max_value=D("0.05"), places=4).map(str)


@settings(max_examples=120, deadline=None)
@given(
    side=sides,
    size=decimals_str,
    entry=decimals_str,
    mark=decimals_str,
    collateral=st.decimals(min_value=D(1), max_value=D(100_000), places=2).map(str),
    m=rates,
    f=rates,
    basis=st.sampled_from([Basis.MARK, Basis.ENTRY]),
)
def test_liquidation_price_is_the_boundary_rounded_toward_safety(
    *, side: str, size: str, entry: str, mark: str, collateral: str, m: str, f: str, basis: Basis
) -> None:
    p = ref_position(side, size, entry, collateral)
    market = ref_market(mark, m=m, f=f, basis=basis)
    liq = margin.liquidation_price(p, market)
    if liq is None:
        return
    at = replace(market, mark_price=liq)
    beyond = replace(market, mark_price=Price(liq.raw - 1 if side == "long" else liq.raw + 1, 18))
    assert not margin.is_liquidatable(p, at)
    if beyond.mark_price.raw > 0:
        assert margin.is_liquidatable(p, beyond)


@settings(max_examples=120, deadline=None)
@given(
    side=sides,
    size=decimals_str,
    mark=decimals_str,
    collateral=st.decimals(min_value=D(0), max_value=D(10_000), places=2).map(str),
    m=rates,
    f=rates,
    target=st.decimals(min_value=D("0.01"), max_value=D(2), places=3),
)
def test_collateral_for_ratio_is_the_least_that_reaches_the_target(
    *, side: str, size: str, mark: str, collateral: str, m: str, f: str, target: Decimal
) -> None:
    p = ref_position(side, size, mark, collateral)
    market = ref_market(mark, m=m, f=f)
    need = margin.collateral_for_ratio(p, market, target)
    tokens = TokenAmount(need.raw, 6)  # USDC at $1
    assert margin.margin_ratio(margin.add_collateral(p, tokens), market) >= target
    if need.raw > 0:
        less = margin.add_collateral(p, TokenAmount(need.raw - 1, 6))
        assert margin.margin_ratio(less, market) < target


@settings(max_examples=120, deadline=None)
@given(
    side=sides,
    size=decimals_str,
    entry=decimals_str,
    mark=decimals_str,
    collateral=st.decimals(min_value=D(1), max_value=D(10_000), places=2).map(str),
    f=rates,
    impact=rates,
    target=st.decimals(min_value=D("0.01"), max_value=D(1), places=3),
)
def test_a_cut_reaches_the_target_within_one_unit(
    *,
    side: str,
    size: str,
    entry: str,
    mark: str,
    collateral: str,
    f: str,
    impact: str,
    target: Decimal,
) -> None:
    p = ref_position(side, size, entry, collateral)
    market = ref_market(mark, f=f, impact=impact)
    cut = margin.size_to_cut_for_ratio(p, market, target)
    if cut is None or cut.raw == 0:
        return
    after = margin.after_reduce(p, market, cut)
    # the cut is exact; only the remaining collateral's USD value rounds down (one unit)
    tolerance = D("0.000002") / margin.notional(after, market).value
    assert margin.margin_ratio(after, market) >= target - tolerance
