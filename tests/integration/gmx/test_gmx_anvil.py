"""The GMX adapter against our GMX-v2-compatible deployment on Anvil, with signed transactions:
read, top up, reduce, close, a cancelled order, an expired order, the fee estimate, and a
replacement at a higher gas price."""

from __future__ import annotations

from typing import Any

import pytest
from web3.types import Wei

from keeper import margin
from keeper.model import Close, Reason, Reduce, Scope, Snapshot, TopUp
from keeper.units import TokenAmount
from keeper.venues.base import ActionState, MinedTx, TxPlan, VenueError, Watch
from keeper.venues.gmx import (
    CreateOrder,
    GmxDeployment,
    GmxFn,
    GmxVenue,
    decode_create_order,
)
from keeper.venues.gmx_math import OrderType, estimate_execution_gas_limit
from tests.integration.gmx.deploy import MARKET, USD, GmxDevnet, mined

pytestmark = pytest.mark.integration

WHY = Reason("test", "because the test says so")
USDC = 10**6


async def snap(venue: GmxVenue, gmx: GmxDevnet) -> Snapshot:
    return await venue.snapshot(Watch((gmx.trader.address,), wallet=gmx.trader.address))


async def run(gmx: GmxDevnet, venue: GmxVenue, plan: TxPlan) -> list[MinedTx]:
    """Send the plan's steps from the trader (the keeper's own wallet), priced at what the
    venue priced the execution fee at."""
    done: list[MinedTx] = []
    gas_price = await venue.gas_price()
    for step in plan.steps:
        receipt = gmx.send(
            gmx.trader,
            step.to,
            step.data,
            value=step.value,
            max_fee=gas_price,
            what=step.description,
        )
        done.append(mined(receipt))
    return done


def position_of(gmx: GmxDevnet, key: str) -> tuple[int, int, int]:
    p = (
        gmx.contract("GmxReader")
        .functions.getPosition(gmx.deployment.data_store, bytes.fromhex(key[2:]))
        .call()
    )
    return p.numbers.sizeInUsd, p.numbers.sizeInTokens, p.numbers.collateralAmount


async def test_read_maps_positions_and_agrees_with_gmx_liquidation_view(
    gmx: GmxDevnet, venue: GmxVenue
) -> None:
    key = gmx.open(is_long=True, size_usd=10_000, collateral_usdc=500 * USDC, eth_usd=2_000)
    read = await venue.read(Watch((gmx.trader.address,), wallet=gmx.trader.address))
    assert read.issues == ()
    s = read.snapshot
    (position,) = s.positions
    assert position.key == key
    market = s.market_of(position)
    assert market.market_id == MARKET
    assert market.min_collateral_usd is not None
    assert market.min_collateral_usd.raw == USD
    assert position.size == TokenAmount(5 * 10**18, 18)
    assert position.collateral.raw == 500 * USDC
    assert s.wallet.token.symbol == "USDC"
    assert read.pool is not None
    reader = gmx.contract("GmxReader").functions
    gmx_market = reader.getMarket(gmx.deployment.data_store, MARKET).call()
    for eth in (2_000, 1_960, 1_955, 1_950, 1_900):
        gmx.set_eth_price(eth)
        s = await snap(venue, gmx)
        (position,) = s.positions
        liquidatable, _reason, info = await liquidation_view(gmx, venue, key, gmx_market, eth)
        equity = margin.equity(position, s.market_of(position))
        assert abs(equity.raw - info[0]) <= 1
        assert margin.is_liquidatable(position, s.market_of(position)) == liquidatable


async def liquidation_view(
    gmx: GmxDevnet, venue: GmxVenue, key: str, market: Any, eth: int
) -> tuple[bool, str, tuple[int, int, int]]:
    """Reader.isPositionLiquidatable through the GMX fragment (as the fork test calls it)."""
    fn = GmxFn.of("Reader", "isPositionLiquidatable")
    d = gmx.deployment
    data = fn.encode(
        d.data_store,
        d.referral_storage,
        bytes.fromhex(key[2:]),
        tuple(market),
        gmx.prices(eth),
        True,
        False,
    )
    answer = await venue._reads.eth_call(d.reader, data)
    flag, reason, info = fn.decode(answer)
    return bool(flag), str(reason), tuple(int(x) for x in info)  # type: ignore[return-value]


async def test_top_up_through_an_order_with_approval(gmx: GmxDevnet, venue: GmxVenue) -> None:
    key = gmx.open(is_long=True, size_usd=10_000, collateral_usdc=500 * USDC, eth_usd=2_000)
    s = await snap(venue, gmx)
    position = s.position("gmx", key)
    token = position.collateral_token
    action = TopUp(
        "gmx", Scope.POSITION, key, gmx.trader.address, token, token.amount(250 * USDC), WHY
    )
    plan = await venue.build(action, s, sender=gmx.trader.address)
    assert plan.approvals == 1
    assert len(plan.steps) == 2
    done = await run(gmx, venue, plan)
    assert await venue.action_state(plan, done[:1]) is ActionState.PENDING
    assert await venue.action_state(plan, done) is ActionState.AWAITING_EXECUTION
    order_key = venue.order_key(done)
    assert order_key is not None
    ((listed_key, order, _updated),) = await venue.open_orders(gmx.trader.address)
    assert listed_key == order_key
    assert order.order_type is OrderType.MARKET_INCREASE
    assert order.size_delta_usd == 0
    assert order.initial_collateral_delta_amount == 250 * USDC
    gmx.execute(order_key, 2_000)
    assert await venue.action_state(plan, done) is ActionState.DONE
    assert position_of(gmx, key)[2] == 750 * USDC
    # the allowance is used up: a second top-up approves again; none needed for the exact amount
    again = await venue.build(action, await snap(venue, gmx), sender=gmx.trader.address)
    assert again.approvals == 1


async def test_reduce_and_close(gmx: GmxDevnet, venue: GmxVenue) -> None:
    key = gmx.open(is_long=False, size_usd=10_000, collateral_usdc=1_000 * USDC, eth_usd=2_000)
    s = await snap(venue, gmx)
    position = s.position("gmx", key)
    half = TokenAmount(position.size.raw // 2, position.size.decimals)
    reduce = Reduce("gmx", key, gmx.trader.address, MARKET, half, WHY)
    plan = await venue.build(reduce, s, sender=gmx.trader.address)
    (step,) = plan.steps
    assert "MarketDecrease" in step.description
    done = await run(gmx, venue, plan)
    order_key = venue.order_key(done)
    assert order_key is not None
    gmx.execute(order_key, 2_000)
    assert await venue.action_state(plan, done) is ActionState.DONE
    size_usd, _tokens, _collateral = position_of(gmx, key)
    assert abs(size_usd - 5_000 * USD) <= USD

    before = gmx.contract("TestUSDC").functions.balanceOf(gmx.trader.address).call()
    close = Close("gmx", key, gmx.trader.address, MARKET, WHY)
    plan = await venue.build(close, await snap(venue, gmx), sender=gmx.trader.address)
    done = await run(gmx, venue, plan)
    order_key = venue.order_key(done)
    assert order_key is not None
    gmx.execute(order_key, 1_990)  # a short's gain
    assert await venue.action_state(plan, done) is ActionState.DONE
    assert position_of(gmx, key)[0] == 0
    after = gmx.contract("TestUSDC").functions.balanceOf(gmx.trader.address).call()
    assert after - before > 1_000 * USDC
    assert (await snap(venue, gmx)).positions == ()


async def test_reduce_leaving_less_than_the_minimum_is_a_close(
    gmx: GmxDevnet, venue: GmxVenue
) -> None:
    key = gmx.open(is_long=True, size_usd=10, collateral_usdc=100 * USDC, eth_usd=2_000)
    s = await snap(venue, gmx)
    position = s.position("gmx", key)
    almost = TokenAmount(position.size.raw * 95 // 100, position.size.decimals)
    plan = await venue.build(
        Reduce("gmx", key, gmx.trader.address, MARKET, almost, WHY), s, sender=gmx.trader.address
    )
    assert "GMX will close it all" in plan.steps[0].description
    done = await run(gmx, venue, plan)
    key_created = venue.order_key(done)
    assert key_created is not None
    gmx.execute(key_created, 2_000)
    assert position_of(gmx, key)[0] == 0


async def test_an_order_the_keeper_cancels_is_cancelled(gmx: GmxDevnet, venue: GmxVenue) -> None:
    key = gmx.open(is_long=True, size_usd=10_000, collateral_usdc=500 * USDC, eth_usd=2_000)
    s = await snap(venue, gmx)
    plan = await venue.build(
        Close("gmx", key, gmx.trader.address, MARKET, WHY), s, sender=gmx.trader.address
    )
    done = await run(gmx, venue, plan)
    order_key = venue.order_key(done)
    assert order_key is not None
    # the price fell past the acceptable price (1% slippage): GMX's keeper cancels the order
    gmx.execute(order_key, 1_900)
    assert await venue.action_state(plan, done) is ActionState.CANCELLED
    assert position_of(gmx, key)[0] == 10_000 * USD


async def test_an_order_left_past_expiration_is_cancelled_as_expired(
    gmx: GmxDevnet, venue: GmxVenue
) -> None:
    key = gmx.open(is_long=True, size_usd=10_000, collateral_usdc=500 * USDC, eth_usd=2_000)
    s = await snap(venue, gmx)
    token = s.position("gmx", key).collateral_token
    action = TopUp("gmx", Scope.POSITION, key, gmx.trader.address, token, token.amount(USDC), WHY)
    plan = await venue.build(action, s, sender=gmx.trader.address)
    done = await run(gmx, venue, plan)
    assert await venue.cancel_if_expired(plan, done) is None  # not yet
    gmx.chain.advance_time(301)
    cancel = await venue.cancel_if_expired(plan, done)
    assert cancel is not None
    gmx.send(gmx.trader, cancel.to, cancel.data, what=cancel.description)
    assert await venue.action_state(plan, done) is ActionState.EXPIRED
    assert await venue.open_orders(gmx.trader.address) == []
    assert position_of(gmx, key)[2] == 500 * USDC


async def test_fee_estimate_matches_gmx_and_too_low_a_fee_is_refused(
    gmx: GmxDevnet, venue: GmxVenue
) -> None:
    params = await venue.gas_params()
    handler = gmx.contract("GmxOrderHandler").functions
    for order_type, increase in (
        (OrderType.MARKET_INCREASE, True),
        (OrderType.MARKET_DECREASE, False),
    ):
        assert estimate_execution_gas_limit(params, order_type) == (
            handler.estimateExecutionGasLimit(increase).call()
        )
    gas_price = await venue.gas_price()
    fee = await venue.estimate_execution_fee(OrderType.MARKET_INCREASE, gas_price)
    limit = estimate_execution_gas_limit(params, OrderType.MARKET_INCREASE)
    assert fee == -(-limit * gas_price * 12 // 10)

    key = gmx.open(is_long=True, size_usd=10_000, collateral_usdc=500 * USDC, eth_usd=2_000)
    s = await snap(venue, gmx)
    token = s.position("gmx", key).collateral_token
    action = TopUp("gmx", Scope.POSITION, key, gmx.trader.address, token, token.amount(USDC), WHY)
    plan = await venue.build(action, s, sender=gmx.trader.address)
    step = plan.steps[-1]
    gmx.send(gmx.trader, plan.steps[0].to, plan.steps[0].data, what="approve")
    # at twice the gas price GMX's minimum fee exceeds what was sent: the call reverts
    high = gas_price * 2
    with pytest.raises(Exception) as failed:  # noqa: PT011 - the node's error type varies
        gmx.chain.w3.eth.call(
            {
                "from": gmx.trader.address,
                "to": step.to,
                "data": step.data,
                "value": Wei(step.value),
                "gasPrice": Wei(high),
            }
        )
    data = getattr(failed.value, "data", None) or (
        failed.value.args[-1] if failed.value.args else ""
    )
    assert "InsufficientExecutionFee" in str(venue.decode_error(bytes.fromhex(str(data)[2:])))


async def test_a_replacement_at_a_higher_gas_price_carries_a_higher_fee(
    gmx: GmxDevnet, venue: GmxVenue
) -> None:
    key = gmx.open(is_long=True, size_usd=10_000, collateral_usdc=500 * USDC, eth_usd=2_000)
    s = await snap(venue, gmx)
    plan = await venue.build(
        Close("gmx", key, gmx.trader.address, MARKET, WHY), s, sender=gmx.trader.address
    )
    (step,) = plan.steps
    gas_price = await venue.gas_price()
    high = gas_price * 5
    # the replacement pays up to 5x the gas price: its execution fee is repriced for that
    data, value = await venue.reprice(step.data, step.value, high)
    assert value > step.value
    inner = venue_inner_create(data)
    assert (
        inner.execution_fee
        >= estimate_execution_gas_limit(await venue.gas_params(), OrderType.MARKET_DECREASE) * high
    )
    assert await venue.reprice(data, value, gas_price) == (data, value)  # never lowered
    gmx.chain.rpc("anvil_setNextBlockBaseFeePerGas", hex(high - 1))
    receipt = gmx.send(gmx.trader, step.to, data, value=value, max_fee=high, what="replacement")
    assert int(receipt["effectiveGasPrice"]) > gas_price * 2
    done = [mined(receipt)]
    assert await venue.action_state(plan, done) is ActionState.AWAITING_EXECUTION
    gmx.chain.rpc("anvil_setNextBlockBaseFeePerGas", hex(gas_price // 2))


def venue_inner_create(data: bytes) -> CreateOrder:
    (calls,) = GmxFn.of("ExchangeRouter", "multicall").decode_input(data)
    return decode_create_order(bytes(calls[-1]))


async def test_a_stale_exchange_router_refuses_to_send(gmx: GmxDevnet, venue: GmxVenue) -> None:
    stale: GmxDeployment = gmx.deployment.with_overrides(exchange_router=gmx.addresses["GmxRouter"])
    other = await GmxVenue.connect(venue.rpc, stale, multicall_code_override=True)
    assert other.send_blocked is not None
    assert "ROUTER_PLUGIN" in other.send_blocked
    key = gmx.open(is_long=True, size_usd=10_000, collateral_usdc=500 * USDC, eth_usd=2_000)
    s = await snap(other, gmx)
    with pytest.raises(VenueError, match="ROUTER_PLUGIN"):
        await other.build(
            Close("gmx", key, gmx.trader.address, MARKET, WHY), s, sender=gmx.trader.address
        )


async def test_acting_for_another_account_needs_a_subaccount_router(
    gmx: GmxDevnet, venue: GmxVenue
) -> None:
    key = gmx.open(is_long=True, size_usd=10_000, collateral_usdc=500 * USDC, eth_usd=2_000)
    assert venue.deployment.subaccount_router == gmx.addresses["GmxSubaccountRouter"]
    # the deployment named without its SubaccountRouter
    bare = await GmxVenue.connect(
        venue.rpc,
        gmx.deployment.with_overrides(subaccount_router=None),
        multicall_code_override=True,
    )
    s = await snap(bare, gmx)
    stranger = "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955"
    close = Close("gmx", key, gmx.trader.address, MARKET, WHY)
    with pytest.raises(VenueError, match="names no SubaccountRouter"):
        await bare.build(close, s, sender=stranger)
    with pytest.raises(VenueError, match="subaccount_router"):
        await bare.delegation(gmx.trader.address, stranger)
