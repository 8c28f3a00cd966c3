"""GMX's own simulation of an order's execution, on gmx-synthetics' contracts: the order's
ExchangeRouter.multicall with simulateExecuteLatestOrder(SimulatePricesParams) appended, called
with eth_call from the trader. GMX creates the order, executes it at the given prices and
reverts: EndOfOracleSimulation when it went through, else the error GMX's order keeper would
cancel the order with. The adapter's `simulate_execution` and the keeper's Executor are held to
it: a top-up or reduce GMX would cancel is refused before anything is sent.

The simulation needs no oracle provider, signer or reference-feed setup on this state:
OracleModule.withSimulatedOraclePrices puts the given prices straight into the Oracle
(Oracle.setPrimaryPrice) and sets its min/max timestamps; only those timestamps are checked, by
the order utils, against the order (created in the same call, at the block's time) and its
expiry (REQUEST_EXPIRATION_TIME)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from eth_hash.auto import keccak

from keeper.chain.revert import RevertReason
from keeper.chain.rpc import FailoverRpc
from keeper.journal import IntentStatus, Journal
from keeper.loop import Executor, NoEvents, action_payload
from keeper.model import Close, Position, Reason, Reduce, Scope, Snapshot, TopUp
from keeper.signer import Signer
from keeper.txs import FeePolicy, TxConfig, TxManager
from keeper.units import TokenAmount
from keeper.venues.base import Execution, TxPlan, TxRequest, Watch
from keeper.venues.gmx import (
    END_OF_ORACLE_SIMULATION,
    SIMULATION_TIME_AHEAD,
    CreateOrder,
    GmxFn,
    GmxVenue,
    TokenPrice,
    encode_simulation,
)
from keeper.venues.gmx_math import OrderType, name_key
from tests.integration.realgmx.harness import (
    USD,
    GmxCallError,
    OrderFate,
    Quote,
    RealGmx,
)

pytestmark = pytest.mark.integration

WHY = Reason("test", "because the test says so")
ENTRY = Decimal(5000)
SIZE_USD = 50_000  # 10 ETH at 5,000
COLLATERAL = 12_500  # USDC
MINTED = 100_000  # USDC
# At 3,760 the long has 12,500 - 12,400 of loss = 100 USD left; GMX wants 1% of the size
# (MIN_COLLATERAL_FACTOR and ..._FOR_LIQUIDATION of this market), 500 USD, after an execution.
DOOMED = Decimal(3760)
RPC_GAS_CAP = 50_000_000  # geth's default eth_call gas cap (--rpc.gascap)
_MULTICALL = GmxFn.of("ExchangeRouter", "multicall")


# --- helpers -----------------------------------------------------------------------------------


def opened(gmx: RealGmx) -> str:
    """The trader's long of 10 ETH at 5,000 with 12,500 USDC, executed by GMX, and the Router
    approved for the trader's USDC (so that a top-up plan is one step); its key."""
    gmx.mint_usdc(gmx.trader.address, MINTED)
    key = gmx.open_position(
        gmx.trader,
        collateral_amount=gmx.units(gmx.usdc, COLLATERAL),
        size_usd=SIZE_USD,
        is_long=True,
        prices=gmx.prices(ENTRY),
    )
    gmx.approve(gmx.trader, gmx.usdc, gmx.deployment.router, 2**256 - 1)
    return key


def token_prices(gmx: RealGmx, prices: Mapping[str, Quote]) -> dict[str, TokenPrice]:
    return {t: TokenPrice(*gmx.gmx_price(t, q)) for t, q in prices.items()}


def simulate(
    gmx: RealGmx,
    order: CreateOrder,
    prices: Mapping[str, Quote],
    *,
    stamp: int | None = None,
) -> RevertReason:
    """GMX's answer to the simulation of `order` (the trader's multicall for it, then
    simulateExecuteLatestOrder) at `prices` stamped `stamp` (default: the latest block's time
    plus SIMULATION_TIME_AHEAD), eth_call'd at the latest block. It always reverts."""
    data, value = gmx.order_call(order)
    (inner,) = _MULTICALL.decode_input(data)
    block = gmx.block_number()
    at = gmx.block_time() + SIMULATION_TIME_AHEAD if stamp is None else stamp
    call = encode_simulation([bytes(x) for x in inner], token_prices(gmx, prices), at)
    with pytest.raises(GmxCallError) as caught:
        gmx.eth_call(
            gmx.deployment.exchange_router,
            call,
            sender=gmx.trader.address,
            value=value,
            block=block,
        )
    return caught.value.reason


def top_up_order(gmx: RealGmx, usdc: int) -> CreateOrder:
    return gmx.increase_order(
        gmx.trader.address,
        collateral_amount=gmx.units(gmx.usdc, usdc),
        size_usd=0,
        is_long=True,
    )


def close_order(gmx: RealGmx, acceptable: Decimal) -> CreateOrder:
    """A MarketDecrease of the whole long, accepting no less than `acceptable` USD per ETH."""
    return CreateOrder(
        receiver=gmx.trader.address,
        cancellation_receiver=gmx.trader.address,
        market=gmx.market.market_token,
        initial_collateral_token=gmx.usdc,
        order_type=OrderType.MARKET_DECREASE,
        is_long=True,
        size_delta_usd=SIZE_USD * USD,
        acceptable_price=gmx.gmx_price(gmx.weth, acceptable)[0],
    )


def watch(gmx: RealGmx) -> Watch:
    return Watch((gmx.trader.address,), wallet=gmx.trader.address)


def top_up(venue: GmxVenue, position: Position, amount: int) -> TopUp:
    token = position.collateral_token
    raw = token.amount(amount * 10**token.decimals)
    return TopUp(venue.name, Scope.POSITION, position.key, position.account, token, raw, WHY)


def reduce_by(venue: GmxVenue, position: Position, percent: int) -> Reduce:
    cut = TokenAmount(position.size.raw * percent // 100, position.size.decimals)
    return Reduce(venue.name, position.key, position.account, position.market_id, cut, WHY)


def liquidatable(remaining: int, min_usd: int, for_leverage: int) -> dict[str, str]:
    """LiquidatablePosition's arguments as RevertReason.args holds them (USD)."""
    return {
        "reason": "min collateral for leverage",
        "remainingCollateralUsd": str(remaining * USD),
        "minCollateralUsd": str(min_usd * USD),
        "minCollateralUsdForLeverage": str(for_leverage * USD),
    }


# --- GMX's own answers -------------------------------------------------------------------------


def test_gmx_ends_the_simulation_of_orders_it_would_execute_and_keeps_nothing(
    realgmx: RealGmx,
) -> None:
    key = opened(realgmx)
    balance = realgmx.balance(realgmx.usdc, realgmx.trader.address)
    prices = realgmx.prices(ENTRY)
    assert simulate(realgmx, top_up_order(realgmx, 1_000), prices).name == END_OF_ORACLE_SIMULATION
    close = simulate(realgmx, close_order(realgmx, Decimal(4950)), prices)
    assert close.name == END_OF_ORACLE_SIMULATION, close
    assert close.args == ()
    # an eth_call: no order, no transfer, the position as it was
    assert realgmx.pending_orders(realgmx.trader.address) == []
    assert realgmx.balance(realgmx.usdc, realgmx.trader.address) == balance
    assert realgmx.position(key).collateral_amount == realgmx.units(realgmx.usdc, COLLATERAL)


def test_a_decrease_whose_acceptable_price_cannot_be_met_is_gmx_s_cancel_reason(
    realgmx: RealGmx,
) -> None:
    opened(realgmx)
    order = close_order(realgmx, Decimal(5100))  # a long selling at 5,000 accepts 5,100
    reason = simulate(realgmx, order, realgmx.prices(ENTRY))
    assert reason.name == "OrderNotFulfillableAtAcceptablePrice", reason
    args = dict(reason.args)
    assert int(args["acceptablePrice"]) == order.acceptable_price
    assert int(args["price"]) < order.acceptable_price
    # GMX's order keeper, executing the same order at the same prices, cancels it for that
    created = realgmx.create_order(realgmx.trader, order)
    outcome = realgmx.execute_order(created.key, realgmx.prices(ENTRY))
    assert outcome.fate is OrderFate.CANCELLED, outcome
    assert outcome.error is not None
    assert outcome.error.name == reason.name


def test_a_top_up_too_small_to_save_the_position_is_gmx_s_liquidatable_position(
    realgmx: RealGmx,
) -> None:
    opened(realgmx)
    prices = realgmx.prices(DOOMED)
    reason = simulate(realgmx, top_up_order(realgmx, 100), prices)
    assert reason.name == "LiquidatablePosition", reason
    # 100 USD left plus the 100 deposited, under 1% of 50,000; a deposit checks the floor too
    assert dict(reason.args) == liquidatable(200, 1, 500)
    assert simulate(realgmx, top_up_order(realgmx, 1_000), prices).name == END_OF_ORACLE_SIMULATION
    # GMX's order keeper cancels the small top-up with that very error, and executes the other
    realgmx.set_feed_prices(prices)
    small = realgmx.create_order(realgmx.trader, top_up_order(realgmx, 100))
    outcome = realgmx.execute_order(small.key, prices)
    assert outcome.fate is OrderFate.CANCELLED, outcome
    assert outcome.error is not None
    assert (outcome.error.name, outcome.error.args) == (reason.name, reason.args)
    large = realgmx.create_order(realgmx.trader, top_up_order(realgmx, 1_000))
    assert realgmx.execute_order(large.key, prices).executed


def test_oracle_timestamps_must_be_from_the_order_s_block_to_its_expiry(realgmx: RealGmx) -> None:
    opened(realgmx)
    order = top_up_order(realgmx, 1_000)
    prices = realgmx.prices(ENTRY)
    now = realgmx.block_time()  # the order's updatedAtTime in an eth_call at the latest block
    expiry = realgmx.get_uint(name_key("REQUEST_EXPIRATION_TIME"))
    early = simulate(realgmx, order, prices, stamp=now - 1)
    assert early.name == "OracleTimestampsAreSmallerThanRequired", early
    assert dict(early.args) == {"minOracleTimestamp": str(now - 1), "expectedTimestamp": str(now)}
    late = simulate(realgmx, order, prices, stamp=now + expiry + 1)
    assert late.name == "OracleTimestampsAreLargerThanRequestExpirationTime", late
    assert dict(late.args)["requestExpirationTime"] == str(expiry)
    for stamp in (now, now + SIMULATION_TIME_AHEAD, now + expiry):
        assert simulate(realgmx, order, prices, stamp=stamp).name == END_OF_ORACLE_SIMULATION


def test_simulated_prices_bypass_the_oracle_providers(realgmx: RealGmx) -> None:
    """ETH at 9,000 while the reference feed says 5,000: signed prices that far off are refused
    by GMX's executeOrder, the simulation takes them as they are."""
    opened(realgmx)
    far = realgmx.prices(Decimal(9000))
    assert simulate(realgmx, top_up_order(realgmx, 1_000), far).name == END_OF_ORACLE_SIMULATION
    created = realgmx.create_order(realgmx.trader, top_up_order(realgmx, 1_000))
    with pytest.raises(GmxCallError) as refused:
        realgmx.execute_order(created.key, far)
    deviation = keccak(b"MaxRefPriceDeviationExceeded(address,uint256,uint256,uint256)")[:4]
    assert refused.value.reason.data[:4] == deviation, refused.value.reason


def test_the_simulation_fits_a_node_s_eth_call_gas_cap(realgmx: RealGmx) -> None:
    opened(realgmx)
    data, value = realgmx.order_call(close_order(realgmx, Decimal(4950)))
    (inner,) = _MULTICALL.decode_input(data)
    header = realgmx.chain.w3.eth.get_block("latest")
    call = encode_simulation(
        [bytes(x) for x in inner],
        token_prices(realgmx, realgmx.prices(ENTRY)),
        int(header["timestamp"]) + SIMULATION_TIME_AHEAD,
    )
    trace = realgmx.rpc(
        "debug_traceCall",
        {
            "from": realgmx.trader.address,
            "to": realgmx.deployment.exchange_router,
            "data": "0x" + call.hex(),
            "value": hex(value),
        },
        hex(int(header["number"])),
        {"tracer": "callTracer"},
    )
    output = realgmx.decode_error(str(trace["output"]))
    assert output.name == END_OF_ORACLE_SIMULATION, output
    gas = int(str(trace["gasUsed"]), 16)
    # it runs the whole execution (a MarketDecrease closing the position) and stays far from
    # the cap nodes put on eth_call
    assert 1_000_000 < gas < RPC_GAS_CAP // 5, gas


# --- the adapter and the keeper, held to it ----------------------------------------------------


async def test_the_adapter_says_what_gmx_says(realgmx: RealGmx, venue: GmxVenue) -> None:
    key = opened(realgmx)
    realgmx.set_feed_prices(realgmx.prices(DOOMED))
    snapshot = await venue.snapshot(watch(realgmx))
    position = snapshot.position(venue.name, key)
    sender = realgmx.trader.address

    async def verdict(action: TopUp | Reduce | Close) -> RevertReason | None:
        plan = await venue.build(action, snapshot, sender=sender)
        assert plan.approvals == 0
        return await venue.simulate_execution(plan, snapshot)

    small = await verdict(top_up(venue, position, 100))
    assert small is not None
    assert small.name == "LiquidatablePosition", small
    assert dict(small.args) == liquidatable(200, 1, 500)
    assert await verdict(top_up(venue, position, 1_000)) is None
    # a decrease checks no MIN_COLLATERAL_USD: 100 USD left, under 1% of the 45,000 that stay
    cut = await verdict(reduce_by(venue, position, 10))
    assert cut is not None
    assert cut.name == "LiquidatablePosition", cut
    assert dict(cut.args) == liquidatable(100, 0, 450)
    assert await verdict(reduce_by(venue, position, 90)) is None
    assert await verdict(Close(venue.name, key, sender, position.market_id, WHY)) is None
    # a close whose acceptable price the market is past, through the adapter
    plan = await venue.build(
        Close(venue.name, key, sender, position.market_id, WHY), snapshot, sender=sender
    )
    data, value = realgmx.order_call(close_order(realgmx, Decimal(4000)))
    step = TxRequest(realgmx.deployment.exchange_router, data, value=value)
    raised = TxPlan(plan.action, sender, (step,), execution=Execution.DELAYED)
    unmet = await venue.simulate_execution(raised, snapshot)
    assert unmet is not None
    assert unmet.name == "OrderNotFulfillableAtAcceptablePrice", unmet


@dataclass
class Rig:
    venue: GmxVenue
    txs: TxManager
    journal: Journal
    executor: Executor


@pytest.fixture
async def rig(realgmx: RealGmx, tmp_path: Path) -> AsyncIterator[Rig]:
    rpc = FailoverRpc([realgmx.url])
    venue = await GmxVenue.connect(rpc, realgmx.deployment, wallet_token=realgmx.usdc)
    journal = Journal(tmp_path / "journal.sqlite")
    txs = TxManager(
        rpc,
        journal,
        Signer.from_key(realgmx.trader.key),
        TxConfig(chain_id=realgmx.chain_id, fees=FeePolicy(10**12)),
        delayed_venues={venue.name},
        decode_error=venue.decode_error,
    )
    try:
        yield Rig(venue, txs, journal, Executor(venue, txs, journal, NoEvents()))
    finally:
        journal.close()
        await rpc.close()


async def test_the_keeper_sends_no_top_up_gmx_would_cancel(realgmx: RealGmx, rig: Rig) -> None:
    key = opened(realgmx)
    realgmx.set_feed_prices(realgmx.prices(DOOMED))
    venue, journal = rig.venue, rig.journal
    snapshot: Snapshot = await venue.snapshot(watch(realgmx))
    position = snapshot.position(venue.name, key)
    w3 = realgmx.chain.w3
    nonce = w3.eth.get_transaction_count(realgmx.trader.address)

    async def carry_out(action: TopUp) -> tuple[int, str]:
        payload = action_payload(action, snapshot)
        intent, _new = journal.open_intent(
            venue.name, key, action.kind, payload, block=snapshot.block_number, reason="test"
        )
        (sent,) = await rig.executor.carry_out(intent, action, snapshot)
        return intent.id, sent.outcome

    refused, outcome = await carry_out(top_up(venue, position, 100))
    assert outcome == "failed"
    intent = journal.intent(refused)
    assert intent.status is IntentStatus.FAILED
    assert (intent.failure or "").startswith(
        "simulation_reverted: execution: LiquidatablePosition(reason=min collateral for leverage"
    ), intent.failure
    assert journal.transactions(refused) == []
    assert w3.eth.get_transaction_count(realgmx.trader.address) == nonce
    assert realgmx.pending_orders(realgmx.trader.address) == []

    accepted, outcome = await carry_out(top_up(venue, position, 1_000))
    assert outcome == "sent"
    assert (await rig.txs.resolve(accepted, timeout=30)).status is (IntentStatus.AWAITING_EXECUTION)
    (order,) = realgmx.pending_orders(realgmx.trader.address)
    assert realgmx.execute_order(order.key, realgmx.prices(DOOMED)).executed
    assert realgmx.position(key).collateral_amount == realgmx.units(
        realgmx.usdc, COLLATERAL + 1_000
    )
