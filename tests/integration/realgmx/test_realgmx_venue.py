"""The GMX adapter against GMX v2's own contracts (gmx-synthetics deployed by its own scripts):
reads, a top-up, reduce and close orders executed by GMX's OrderHandler with signed oracle
prices, an order GMX cancels, the liquidation price against Reader.isPositionLiquidatable,
and the execution fee against GMX's own validation."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from keeper import margin
from keeper.cli import main
from keeper.model import Basis, Close, Market, Position, Reason, Reduce, Scope, Side, TopUp
from keeper.testing.devnet import to_toml
from keeper.units import TokenAmount, Usd
from keeper.venues.base import ActionState, TxPlan, Watch
from keeper.venues.gmx import CreateOrder, GmxFn, GmxVenue, decode_create_order
from keeper.venues.gmx_math import (
    GasParams,
    OrderType,
    estimate_execution_gas_limit,
    min_execution_fee,
)
from tests.integration.realgmx.harness import USD, GmxCallError, OrderFate, RealGmx

pytestmark = pytest.mark.integration

WHY = Reason("test", "because the test says so")
ENTRY = Decimal(5000)
SIZE_USD = 50_000  # 10 ETH at 5,000
COLLATERAL = 12_500  # USDC
TOP_UP = 1_500  # USDC
MINTED = 100_000  # USDC minted to the trader before it opens
TICK = Decimal("0.01")
NO_GAS_SETTINGS = GasParams(0, 0, 0, 0, 0, 0)
# config/general.ts of gmx-synthetics for live networks (the hardhat network sets all to 0)
LIVE_GAS_SETTINGS = GasParams(
    base_amount=600_000,
    per_oracle_price=250_000,
    multiplier_factor=USD,
    increase_order_gas_limit=3_900_000,
    decrease_order_gas_limit=3_900_000,
    single_swap_gas_limit=1_000_000,
)
_MULTICALL = GmxFn.of("ExchangeRouter", "multicall")


# --- helpers -----------------------------------------------------------------------------------


def open_position(gmx: RealGmx, *, is_long: bool = True, collateral: int = COLLATERAL) -> str:
    """The trader opens 10 ETH at 5,000 with `collateral` USDC, executed by GMX; its key."""
    gmx.mint_usdc(gmx.trader.address, MINTED)
    return gmx.open_position(
        gmx.trader,
        collateral_amount=gmx.units(gmx.usdc, collateral),
        size_usd=SIZE_USD,
        is_long=is_long,
        prices=gmx.prices(ENTRY),
    )


def watch(gmx: RealGmx) -> Watch:
    return Watch((gmx.trader.address,), wallet=gmx.trader.address)


async def read(venue: GmxVenue, gmx: RealGmx, key: str) -> tuple[Position, Market]:
    snapshot = await venue.snapshot(watch(gmx))
    position = snapshot.position(venue.name, key)
    return position, snapshot.market_of(position)


async def read_at(venue: GmxVenue, gmx: RealGmx, key: str, eth: Decimal) -> tuple[Position, Market]:
    """The position as the adapter reads it with the ETH reference feed at `eth`."""
    gmx.set_feed_prices(gmx.prices(eth))
    return await read(venue, gmx, key)


async def top_up_plan(venue: GmxVenue, gmx: RealGmx, key: str, usdc: int) -> TxPlan:
    """The adapter's plan to add `usdc` USDC to the trader's position."""
    snapshot = await venue.snapshot(watch(gmx))
    token = snapshot.position(venue.name, key).collateral_token
    amount = token.amount(gmx.units(gmx.usdc, usdc))
    action = TopUp(venue.name, Scope.POSITION, key, gmx.trader.address, token, amount, WHY)
    return await venue.build(action, snapshot, sender=gmx.trader.address)


async def decrease_plan(
    venue: GmxVenue, gmx: RealGmx, key: str, cut: TokenAmount | None = None
) -> TxPlan:
    """The adapter's plan to reduce the trader's position by `cut` index tokens, or to close
    it (None)."""
    snapshot = await venue.snapshot(watch(gmx))
    market_id = snapshot.position(venue.name, key).market_id
    account = gmx.trader.address
    action = (
        Close(venue.name, key, account, market_id, WHY)
        if cut is None
        else Reduce(venue.name, key, account, market_id, cut, WHY)
    )
    return await venue.build(action, snapshot, sender=account)


def plan_order(plan: TxPlan) -> CreateOrder:
    """The order the plan creates (the createOrder ending its last step's multicall)."""
    (calls,) = _MULTICALL.decode_input(plan.steps[-1].data)
    return decode_create_order(bytes(calls[-1]))


def gmx_minimum_fee(params: GasParams, order_type: OrderType, gas_price: int) -> int:
    """GasUtils.validateExecutionFee's minimum for a market order without swaps or callback:
    adjustGasLimitForEstimate(order gas limit, 3 oracle prices) * tx.gasprice."""
    return min_execution_fee(estimate_execution_gas_limit(params, order_type), gas_price)


def usd(raw: int) -> Decimal:
    return Decimal(raw).scaleb(-30)


# --- reading -----------------------------------------------------------------------------------


async def test_read_maps_a_gmx_position_and_its_market(realgmx: RealGmx, venue: GmxVenue) -> None:
    wallet_before = realgmx.balance(realgmx.usdc, realgmx.trader.address)
    key = open_position(realgmx)
    read_ = await venue.read(watch(realgmx))
    assert read_.issues == (), read_.issues
    s = read_.snapshot
    (position,) = s.positions
    market = s.market_of(position)
    assert position.key == key
    assert position.side is Side.LONG
    assert position.market_id == realgmx.market.market_token
    assert position.size == TokenAmount(10 * 10**18, 18), position.size
    assert position.entry_price.value == ENTRY, position.entry_price
    assert position.collateral_token.address == realgmx.usdc
    assert position.collateral == TokenAmount(realgmx.units(realgmx.usdc, COLLATERAL), 6)
    assert position.collateral_usd == Usd(COLLATERAL * USD, 30), position.collateral_usd
    assert position.fees == Usd(0, 30), f"no fee is configured on this market: {position.fees}"
    assert market.index_token.address == realgmx.weth
    assert market.index_token.decimals == 18
    assert market.mark_price.value == ENTRY, market.mark_price
    assert market.basis is Basis.ENTRY
    assert market.maintenance_rate == Decimal("0.01"), market.maintenance_rate
    assert market.min_collateral_usd == Usd(USD, 30), market.min_collateral_usd
    assert s.wallet.token.symbol == "USDC"
    wallet = wallet_before + realgmx.units(realgmx.usdc, MINTED - COLLATERAL)
    assert s.wallet.balance == TokenAmount(wallet, 6), s.wallet
    assert read_.pool is not None
    (oi,) = read_.pool.open_interest
    assert oi.long == TokenAmount(10 * 10**18, 18), oi
    assert oi.short == TokenAmount(0, 18), oi
    assert read_.pool.reserved == Usd(SIZE_USD * USD, 30), read_.pool.reserved


def test_positions_through_a_keeper_config(
    realgmx: RealGmx, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = open_position(realgmx)
    settings = {
        "keeper": {"mode": "observer"},
        **realgmx.config_sections(),
        "accounts": {"watch": [realgmx.trader.address]},
        "thresholds": {
            "top_up_below": "0.03",
            "top_up_to": "0.045",
            "reduce_below": "0.015",
            "close_below": "0.01",
        },
        "budget": {
            "token": "USDC",
            "max_top_up_per_position": "1000",
            "max_spend_per_day": "5000",
            "reserve": "0",
        },
    }
    config = tmp_path / "realgmx.toml"
    config.write_text(to_toml(settings))
    assert main(["config", "check", str(config)]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert main(["positions", "--config", str(config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (row,) = data["positions"]
    assert row["key"] == key, row
    assert row["side"] == "long", row
    assert row["size"] == "10", row
    assert row["entry_price"] == "5000", row
    assert row["liquidation_price"] == "3800", row  # 12,500 + 10 (P - 5,000) = 500


# --- top-up ------------------------------------------------------------------------------------


async def test_a_top_up_built_by_the_adapter_is_executed_by_gmx(
    realgmx: RealGmx, venue: GmxVenue
) -> None:
    key = open_position(realgmx)
    plan = await top_up_plan(venue, realgmx, key, TOP_UP)
    assert plan.approvals == 1, [s.description for s in plan.steps]
    assert plan_order(plan).order_type is OrderType.MARKET_INCREASE
    done = realgmx.send_plan(realgmx.trader, plan)
    assert await venue.action_state(plan, done[:1]) is ActionState.PENDING
    assert await venue.action_state(plan, done) is ActionState.AWAITING_EXECUTION
    order_key = venue.order_key(done)
    assert order_key is not None
    (pending,) = realgmx.pending_orders(realgmx.trader.address)
    assert pending.key == order_key
    assert pending.order_type is OrderType.MARKET_INCREASE
    assert pending.size_delta_usd == 0
    assert pending.collateral_delta_amount == realgmx.units(realgmx.usdc, TOP_UP)
    assert pending.execution_fee == plan_order(plan).execution_fee

    outcome = realgmx.execute_order(order_key, realgmx.prices(ENTRY))
    assert outcome.executed, (outcome.fate, outcome.reason, outcome.error)
    assert await venue.action_state(plan, done) is ActionState.DONE
    after = realgmx.position(key)
    assert after.collateral_amount == realgmx.units(realgmx.usdc, COLLATERAL + TOP_UP)
    assert after.size_in_usd == SIZE_USD * USD
    assert realgmx.pending_orders(realgmx.trader.address) == []

    position, market = await read(venue, realgmx, key)
    assert position.collateral_usd == Usd((COLLATERAL + TOP_UP) * USD, 30)
    # 14,000 + 10 (P - 5,000) = 1% of 50,000 at entry: P = 3,650 (no fees on this market)
    liquidation = margin.liquidation_price(position, market)
    assert liquidation is not None
    assert liquidation.value == Decimal(3650), liquidation
    above = realgmx.is_liquidatable(key, realgmx.prices(liquidation.value + TICK))
    below = realgmx.is_liquidatable(key, realgmx.prices(liquidation.value - TICK))
    assert not above.liquidatable, above
    assert below.liquidatable, below
    assert below.reason == "min collateral for leverage", below


# --- the liquidation price ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("is_long", "expected"),
    [
        pytest.param(True, Decimal(3800), id="long"),  # 12,500 + 10 (P - 5,000) = 500
        pytest.param(False, Decimal(6200), id="short"),  # 12,500 + 10 (5,000 - P) = 500
    ],
)
async def test_the_liquidation_price_is_where_gmx_starts_to_liquidate(
    realgmx: RealGmx, venue: GmxVenue, is_long: bool, expected: Decimal
) -> None:
    key = open_position(realgmx, is_long=is_long)
    position, market = await read(venue, realgmx, key)
    liquidation = margin.liquidation_price(position, market)
    assert liquidation is not None
    assert liquidation.value == expected, liquidation
    safe, unsafe = (
        (expected + TICK, expected - TICK) if is_long else (expected - TICK, expected + TICK)
    )
    for eth, liquidatable in ((safe, False), (unsafe, True)):
        view = realgmx.is_liquidatable(key, realgmx.prices(eth))
        assert view.liquidatable is liquidatable, (eth, view)
        at, at_market = await read_at(venue, realgmx, key, eth)
        equity = margin.equity(at, at_market)
        assert equity.raw == view.remaining_collateral_usd, (
            f"at {eth}: the model's equity {equity} is not GMX's remaining collateral "
            f"{usd(view.remaining_collateral_usd)}"
        )
        assert margin.maintenance_margin(at, at_market).raw == view.min_collateral_usd_for_leverage
        assert margin.is_liquidatable(at, at_market) is liquidatable, (eth, view)


async def test_at_the_liquidation_price_itself_the_model_agrees_with_gmx(
    realgmx: RealGmx, venue: GmxVenue
) -> None:
    key = open_position(realgmx)
    position, market = await read(venue, realgmx, key)
    liquidation = margin.liquidation_price(position, market)
    assert liquidation is not None
    assert liquidation.value == Decimal(3800), liquidation
    view = realgmx.is_liquidatable(key, realgmx.prices(liquidation.value))
    at, at_market = await read_at(venue, realgmx, key, liquidation.value)
    assert margin.equity(at, at_market).raw == view.remaining_collateral_usd
    assert margin.is_liquidatable(at, at_market) is view.liquidatable, (
        f"at {liquidation.value}: the model says liquidatable="
        f"{margin.is_liquidatable(at, at_market)}, GMX says {view}"
    )


# --- reduce, close, and an order GMX cancels ---------------------------------------------------


async def test_reduce_and_close_built_by_the_adapter_are_executed_by_gmx(
    realgmx: RealGmx, venue: GmxVenue
) -> None:
    key = open_position(realgmx)
    plan = await decrease_plan(venue, realgmx, key, TokenAmount(4 * 10**18, 18))
    assert plan_order(plan).order_type is OrderType.MARKET_DECREASE
    done = realgmx.send_plan(realgmx.trader, plan)
    assert await venue.action_state(plan, done) is ActionState.AWAITING_EXECUTION
    order_key = venue.order_key(done)
    assert order_key is not None
    outcome = realgmx.execute_order(order_key, realgmx.prices(ENTRY))
    assert outcome.executed, (outcome.fate, outcome.reason, outcome.error)
    assert await venue.action_state(plan, done) is ActionState.DONE
    after = realgmx.position(key)
    assert after.size_in_tokens == 6 * 10**18, after
    assert after.size_in_usd == 30_000 * USD, after
    assert after.collateral_amount == realgmx.units(realgmx.usdc, COLLATERAL), after

    before = realgmx.balance(realgmx.usdc, realgmx.trader.address)
    plan = await decrease_plan(venue, realgmx, key)
    done = realgmx.send_plan(realgmx.trader, plan)
    order_key = venue.order_key(done)
    assert order_key is not None
    outcome = realgmx.execute_order(order_key, realgmx.prices(ENTRY))
    assert outcome.executed, (outcome.fate, outcome.reason, outcome.error)
    assert await venue.action_state(plan, done) is ActionState.DONE
    assert realgmx.position(key).size_in_usd == 0
    returned = realgmx.balance(realgmx.usdc, realgmx.trader.address) - before
    assert returned == realgmx.units(realgmx.usdc, COLLATERAL), (
        f"closing at the entry price with no fees returns the collateral, got {returned}"
    )
    assert (await venue.snapshot(watch(realgmx))).positions == ()


async def test_a_close_gmx_cannot_fill_at_its_acceptable_price_is_cancelled(
    realgmx: RealGmx, venue: GmxVenue
) -> None:
    key = open_position(realgmx)
    plan = await decrease_plan(venue, realgmx, key)
    done = realgmx.send_plan(realgmx.trader, plan)
    order_key = venue.order_key(done)
    assert order_key is not None
    (pending,) = realgmx.pending_orders(realgmx.trader.address)
    assert pending.acceptable_price == realgmx.gmx_price(realgmx.weth, Decimal(4950))[0], (
        "a long's close accepts 1% below the mark of 5,000"
    )
    # the price fell 2% before the keeper executed it: GMX cancels the market order
    outcome = realgmx.execute_order(order_key, realgmx.prices(Decimal(4900)))
    assert outcome.fate is OrderFate.CANCELLED, outcome
    assert outcome.error is not None
    assert outcome.error.name == "OrderNotFulfillableAtAcceptablePrice", outcome
    assert await venue.action_state(plan, done) is ActionState.CANCELLED
    assert realgmx.pending_orders(realgmx.trader.address) == []
    assert realgmx.position(key).size_in_usd == SIZE_USD * USD


# --- execution fees ----------------------------------------------------------------------------


async def test_this_deployment_asks_no_execution_fee_and_the_adapter_sends_none(
    realgmx: RealGmx, venue: GmxVenue
) -> None:
    """gmx-synthetics' config/general.ts sets every gas setting to 0 for the hardhat network
    this state was deployed as: GMX's minimum fee is 0 at any gas price."""
    assert realgmx.gas_params() == NO_GAS_SETTINGS, realgmx.gas_params()
    gas_price = await venue.gas_price()
    assert gas_price > 0
    for order_type in (OrderType.MARKET_INCREASE, OrderType.MARKET_DECREASE):
        assert gmx_minimum_fee(realgmx.gas_params(), order_type, gas_price) == 0
        assert await venue.estimate_execution_fee(order_type, gas_price) == 0
    key = open_position(realgmx)
    plan = await top_up_plan(venue, realgmx, key, TOP_UP)
    assert plan_order(plan).execution_fee == 0
    assert plan.steps[-1].value == 0
    done = realgmx.send_plan(realgmx.trader, plan, gas_price=gas_price)
    assert await venue.action_state(plan, done) is ActionState.AWAITING_EXECUTION
    (pending,) = realgmx.pending_orders(realgmx.trader.address)
    assert pending.execution_fee == 0


async def test_gmx_refuses_an_order_one_wei_below_its_minimum_fee(
    realgmx: RealGmx, venue: GmxVenue
) -> None:
    key = open_position(realgmx)
    realgmx.set_gas_params(LIVE_GAS_SETTINGS)
    gas_price = await venue.gas_price()
    minimum = gmx_minimum_fee(LIVE_GAS_SETTINGS, OrderType.MARKET_INCREASE, gas_price)
    # (600,000 + 3 * 250,000 + 3,900,000) gas at the node's gas price
    assert minimum == 5_250_000 * gas_price
    position = realgmx.position(key)
    short = realgmx.increase_order(
        realgmx.trader.address,
        collateral_amount=realgmx.units(realgmx.usdc, TOP_UP),
        size_usd=0,
        is_long=position.is_long,
        execution_fee=minimum - 1,
    )
    realgmx.approve_collateral(realgmx.trader, short)
    data, value = realgmx.order_call(short)
    router = realgmx.deployment.exchange_router
    with pytest.raises(GmxCallError) as refused:
        realgmx.eth_call(
            router, data, sender=realgmx.trader.address, value=value, gas_price=gas_price
        )
    reason = venue.decode_error(refused.value.reason.data)
    assert reason.name == "InsufficientExecutionFee", reason
    assert dict(reason.args) == {"minExecutionFee": str(minimum), "executionFee": str(minimum - 1)}
    receipt = realgmx.send(
        realgmx.trader, router, data, value=value, gas_price=gas_price, expect_success=False
    )
    assert receipt["status"] == 0, "GMX accepted an order below its minimum execution fee"
    assert realgmx.pending_orders(realgmx.trader.address) == []

    enough = realgmx.create_order(
        realgmx.trader, replace(short, execution_fee=minimum), gas_price=gas_price
    )
    (pending,) = realgmx.pending_orders(realgmx.trader.address)
    assert pending.key == enough.key
    assert pending.execution_fee == minimum


async def test_the_adapter_reads_gmx_base_and_per_oracle_price_fee_settings(
    realgmx: RealGmx, venue: GmxVenue
) -> None:
    """With no order gas limit set, the minimum is the base amount plus 3 oracle prices; the
    adapter's fee is that times its margin of 1.2, and GMX accepts it."""
    key = open_position(realgmx)
    settings = replace(LIVE_GAS_SETTINGS, increase_order_gas_limit=0, decrease_order_gas_limit=0)
    realgmx.set_gas_params(settings)
    gas_price = await venue.gas_price()
    minimum = gmx_minimum_fee(settings, OrderType.MARKET_INCREASE, gas_price)
    assert minimum == 1_350_000 * gas_price
    fee = await venue.estimate_execution_fee(OrderType.MARKET_INCREASE, gas_price)
    assert fee == -(-minimum * 12 // 10), (fee, minimum)
    plan = await top_up_plan(venue, realgmx, key, TOP_UP)
    assert plan_order(plan).execution_fee == fee
    done = realgmx.send_plan(realgmx.trader, plan, gas_price=gas_price)
    assert await venue.action_state(plan, done) is ActionState.AWAITING_EXECUTION
    (pending,) = realgmx.pending_orders(realgmx.trader.address)
    assert pending.execution_fee == fee


@pytest.mark.parametrize(
    "order_type",
    [
        pytest.param(OrderType.MARKET_INCREASE, id="increase"),
        pytest.param(OrderType.MARKET_DECREASE, id="decrease"),
    ],
)
async def test_the_adapter_fee_covers_gmx_minimum_with_live_gas_settings(
    realgmx: RealGmx, venue: GmxVenue, order_type: OrderType
) -> None:
    key = open_position(realgmx)
    realgmx.set_gas_params(LIVE_GAS_SETTINGS)
    gas_price = await venue.gas_price()
    if order_type is OrderType.MARKET_INCREASE:
        plan = await top_up_plan(venue, realgmx, key, TOP_UP)
    else:
        plan = await decrease_plan(venue, realgmx, key)
    # GMX's own validation: InsufficientExecutionFee(minimum, fee) when the fee is short
    done = realgmx.send_plan(realgmx.trader, plan, gas_price=gas_price)
    assert await venue.action_state(plan, done) is ActionState.AWAITING_EXECUTION
    minimum = gmx_minimum_fee(LIVE_GAS_SETTINGS, order_type, gas_price)
    assert plan_order(plan).execution_fee >= minimum
    assert await venue.gas_params() == realgmx.gas_params(), "the adapter reads other values"
