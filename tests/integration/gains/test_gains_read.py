"""Reading Gains trades on our test deployment: the mapping onto the model, Gains' liquidation
price against the diamond's getTradeLiquidationPrice (exactly), holding fees, round trips."""

from __future__ import annotations

from decimal import Decimal

import pytest

from keeper.margin import distance_to_liquidation, is_liquidatable, liquidation_price, margin_ratio
from keeper.model import Side
from keeper.units import Price
from keeper.venues.base import Watch
from keeper.venues.gains import GainsVenue, trade_key
from tests.integration.gains.deploy import BTC, ETH, PRICE, USDC, GainsDevnet

pytestmark = pytest.mark.integration


async def test_read_maps_each_trade_with_gains_liquidation_price(
    gains: GainsDevnet, venue: GainsVenue
) -> None:
    trader = gains.trader.address
    a = gains.open(ETH, True, 1_000 * USDC, 10_000, 2000)
    b = gains.open(ETH, False, 500 * USDC, 62_500, 2000)
    c = gains.open(BTC, True, 2_000 * USDC, 120_000, 60_000)
    gains.set_price(ETH, "1950.5")
    read = await venue.read(Watch((trader,), gains.keeper.address, gains.usdc))
    snap = read.snapshot
    assert read.issues == ()
    assert sorted(p.key for p in snap.positions) == sorted(trade_key(trader, i) for i in (a, b, c))
    eth = snap.market(venue.name, "0")
    assert eth.index_token.symbol == "ETH/USD"
    assert eth.mark_price == Price(19505 * PRICE // 10, 10)
    for p in snap.positions:
        gt = venue.trades[p.key]
        t = gt.trade
        market = snap.market_of(p)
        onchain = gains.liquidation_price(trader, t.index, gt.mark)
        assert gt.liquidation_price == onchain, p.key  # the adapter's integers are the diamond's
        model = liquidation_price(p, market)
        assert model is not None
        assert model.value == Decimal(onchain) / PRICE, p.key
        # the margin above Gains' liquidation point: the ratio is the signed distance
        assert margin_ratio(p, market) == pytest.approx(distance_to_liquidation(p, market))
        assert p.side is (Side.LONG if t.long else Side.SHORT)
        assert p.collateral.raw == t.collateral_amount
        assert p.collateral_usd.raw == t.collateral_amount * 10**24  # 1 USD per USDC, at 1e30
    long_eth = snap.position(venue.name, trade_key(trader, a))
    # 994 USDC at 10x (after the 6 USDC opening fee): size 9,940 USDC / 2,000 = 4.97 ETH
    assert long_eth.size.value == Decimal("4.97")
    assert venue.trades[long_eth.key].liquidation_price == 18216 * PRICE // 10
    assert not is_liquidatable(long_eth, eth)
    assert snap.wallet.address == gains.keeper.address


async def test_holding_fees_move_the_liquidation_price_as_the_diamond_does(
    gains: GainsDevnet, venue: GainsVenue
) -> None:
    trader = gains.trader.address
    index = gains.open(ETH, False, 1_000 * USDC, 25_000, 2000)
    gains.set_holding_rates(ETH, 300, -120, 2000 * PRICE)
    before = (await venue.read(Watch((trader,)))).snapshot
    gains.chain.advance_time(3 * 86_400)
    gains.set_price(ETH, 2010)
    read = await venue.read(Watch((trader,)))
    key = trade_key(trader, index)
    gt = venue.trades[key]
    assert gt.holding_fees > 0
    assert gt.liquidation_price == gains.liquidation_price(trader, index, 2010 * PRICE)
    p0 = before.position(venue.name, key)
    p1 = read.snapshot.position(venue.name, key)
    # a short's liquidation price comes down as it pays holding fees
    first = liquidation_price(p0, before.market_of(p0))
    second = liquidation_price(p1, read.snapshot.market_of(p1))
    assert first is not None
    assert second is not None
    assert second < first


async def test_a_read_takes_three_round_trips_for_any_number_of_trades(
    gains: GainsDevnet, venue: GainsVenue
) -> None:
    trader = gains.trader.address
    for k in range(12):
        gains.open(
            ETH if k % 2 else BTC,
            k % 3 == 0,
            100 * USDC,
            5_000 + 1_000 * k,
            2000 if k % 2 else 60_000,
        )
    first = await venue.read(Watch((trader,)))
    assert len(first.snapshot.positions) == 12
    again = await venue.read(Watch((trader,)))
    assert again.round_trips == 3  # block number, the account batch, the per-trade batch
    pinned = await venue.read(Watch((trader,)), block=again.snapshot.block_number)
    assert pinned.round_trips == 2
    assert first.round_trips > again.round_trips  # the pairs were learnt once


async def test_a_pair_without_price_is_named_and_its_trades_left_out(
    gains: GainsDevnet, venue: GainsVenue
) -> None:
    trader = gains.trader.address
    gains.open(ETH, True, 1_000 * USDC, 10_000, 2000)
    gains.open(BTC, True, 1_000 * USDC, 10_000, 60_000)
    gains.set_price(BTC, 0)
    read = await venue.read(Watch((trader,)))
    assert [p.market_id for p in read.snapshot.positions] == ["0"]
    assert [(i.kind, i.key) for i in read.issues] == [("price_invalid", "1")]


async def test_markets_and_collaterals(venue: GainsVenue, gains: GainsDevnet) -> None:
    markets = await venue.markets()
    assert [m.index_token.symbol for m in markets] == ["ETH/USD", "BTC/USD"]
    assert markets[1].mark_price.value == 60_000
    assert markets[0].close_quote is not None
    assert markets[0].close_quote.fee_rate == Decimal("0.0006")
    [usdc] = await venue.collateral_tokens()
    assert usdc.address == gains.usdc
    assert usdc.decimals == 6
