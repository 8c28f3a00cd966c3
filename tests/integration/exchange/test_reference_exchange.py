"""The reference exchange end to end over JSON-RPC with locally signed transactions:
liquidity in, positions opened, the feed moved, positions liquidated."""

from __future__ import annotations

from decimal import Decimal

import pytest

from keeper.testing.devnet import USDC_DECIMALS, Devnet, DevnetError

USDC = 10**USDC_DECIMALS


def test_lp_deposit_mints_shares_and_shows_in_pool_state(devnet: Devnet) -> None:
    pool_before = devnet.lens.functions.getPoolState().call()
    assert pool_before.totalLiquidity == 10_000_000 * USDC
    lp = devnet.account("lp")
    devnet.fund(lp.address, 5_000)
    devnet.chain.send(lp, devnet.exchange.functions.deposit(5_000 * USDC))
    pool = devnet.lens.functions.getPoolState().call()
    assert pool.totalLiquidity == pool_before.totalLiquidity + 5_000 * USDC
    # shares have 18 decimals; a deposit into a pool without trading keeps the share price
    assert pool.totalShares - pool_before.totalShares == 5_000 * 10**18
    assert devnet.usdc_balance(devnet.deployment.exchange) == pool.totalLiquidity


def test_long_is_liquidated_below_maintenance_and_not_above(devnet: Devnet) -> None:
    trader = devnet.account("trader")
    balance_before = devnet.usdc_balance(trader.address)
    eth = devnet.market_id("ETH")
    quote = devnet.lens.functions.quoteIncrease(eth, True, 10 * 10**18).call()
    # buying into an unskewed market moves the fill against the buyer (price impact)
    assert quote.executionPrice > quote.markPrice == 2_000 * 10**18
    assert quote.priceImpactUsd == 5 * USDC  # a cost to the trader: 10 ETH x 0.5 USD
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    assert devnet.usdc_balance(trader.address) == balance_before - 2_000 * USDC

    view = devnet.lens.functions.getPosition(key).call()
    assert view.position.size == 10 * 10**18
    assert view.position.account == trader.address
    assert view.position.entryPrice == quote.executionPrice
    # the open fee (0.1% of the notional at the fill) came out of the collateral
    assert quote.fee == 10 * quote.executionPrice // 10**18 * USDC // 1000
    assert view.position.collateral == 2_000 * USDC - quote.fee
    assert not view.liquidatable

    # 10 ETH long, 1,980 collateral, 2.5% maintenance on the mark, 0.1% close fee:
    # equity < maintenance below about 1,850.1
    devnet.set_price("ETH", Decimal("1900"))
    assert not devnet.is_liquidatable(key)
    with pytest.raises(DevnetError, match="would revert"):
        devnet.liquidate(trader.address, "ETH", long=True)

    devnet.set_price("ETH", Decimal("1840"))
    view = devnet.lens.functions.getPosition(key).call()
    assert view.liquidatable
    assert view.equity < view.maintenanceMargin
    liquidator = devnet.account("liquidator")
    before = devnet.usdc_balance(liquidator.address)
    receipt = devnet.liquidate(trader.address, "ETH", long=True)
    assert receipt["status"] == 1
    fee = devnet.usdc_balance(liquidator.address) - before
    # the liquidation fee is 0.5% of the notional at the mark (18,400)
    assert fee == 92 * USDC
    assert devnet.exchange.functions.positions(key).call().size == 0
    assert devnet.exchange.functions.isolatedPositionKeys(trader.address).call() == []


def test_cross_account_is_liquidated_as_a_whole_and_isolated_positions_stay(
    devnet: Devnet,
) -> None:
    trader = devnet.account("cross_trader")
    devnet.deposit_cross(trader, 3_000)
    eth_key = devnet.open_cross(trader, "ETH", long=True, size=10)
    btc_key = devnet.open_cross(trader, "BTC", long=False, size=Decimal("0.2"))
    isolated_key = devnet.open_isolated(trader, "BTC", long=True, collateral=1_000, size="0.1")

    account = devnet.lens.functions.getCrossAccount(trader.address).call()
    assert {p.key for p in account.positions} == {eth_key, btc_key}
    assert not account.liquidatable
    assert account.equity > account.maintenanceMargin

    devnet.set_price("ETH", Decimal("1900"))
    assert not devnet.lens.functions.getCrossAccount(trader.address).call().liquidatable
    devnet.set_price("ETH", Decimal("1720"))
    account = devnet.lens.functions.getCrossAccount(trader.address).call()
    assert account.liquidatable
    assert account.equity < account.maintenanceMargin

    devnet.liquidate_cross(trader.address)
    assert devnet.exchange.functions.crossPositionKeys(trader.address).call() == []
    assert devnet.lens.functions.getCrossAccount(trader.address).call().positions == []
    isolated = devnet.lens.functions.getPosition(isolated_key).call()
    assert isolated.position.size == 10**17
    assert not isolated.liquidatable


def test_stale_feed_stops_trading(devnet: Devnet) -> None:
    trader = devnet.account("trader")
    devnet.chain.advance_time(devnet.markets[0].max_staleness + 1)
    with pytest.raises(DevnetError, match="openPosition would revert"):
        devnet.open_isolated(trader, "ETH", long=True, collateral=1_000, size=1)
    devnet.set_price("ETH", Decimal("2000"))
    devnet.open_isolated(trader, "ETH", long=True, collateral=1_000, size=1)
