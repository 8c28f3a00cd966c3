"""Gains actions on our test deployment, each a pending order followed until the oracle answers
it: top-up (updateLeverage down), reduce (decreasePositionSize by leverage), close
(closeTradeMarket), an order the oracle cancels, an order it never answers (cancelled after
the timeout), and a top-up sent by the trader's trading delegate."""

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_hash.auto import keccak

from keeper.margin import liquidation_price
from keeper.model import Close, Reason, Reduce, Scope, Snapshot, TopUp
from keeper.units import TokenAmount
from keeper.venues.base import ActionState, MinedTx, TxPlan, VenueError, Watch
from keeper.venues.gains import GainsVenue, OrderRef, trade_key
from tests.integration.gains.deploy import ETH, PRICE, USDC, GainsDevnet

pytestmark = pytest.mark.integration
WHY = Reason("test", "by hand")


async def read(venue: GainsVenue, gains: GainsDevnet) -> Snapshot:
    return (await venue.read(Watch((gains.trader.address,), gains.keeper.address))).snapshot


def ref_of(venue: GainsVenue, mined: list[MinedTx]) -> OrderRef:
    ref = venue.order_ref(mined)
    assert ref is not None
    return ref


async def top_up(venue: GainsVenue, snap: Snapshot, key: str, usdc: int, sender: str) -> TxPlan:
    p = snap.position(venue.name, key)
    action = TopUp(
        venue.name, Scope.POSITION, key, p.account, p.collateral_token, TokenAmount(usdc, 6), WHY
    )
    return await venue.build(action, snap, sender=sender)


async def test_top_up_adds_collateral_at_the_same_size_when_the_oracle_answers(
    gains: GainsDevnet, venue: GainsVenue
) -> None:
    trader = gains.trader
    index = gains.open(ETH, True, 1_000 * USDC, 20_000, 2000)
    key = trade_key(trader.address, index)
    gains.call(trader, gains.contract("TestUSDC").functions.approve(gains.usdc, 0))
    gains.call(trader, gains.contract("TestUSDC").functions.approve(gains.deployment.diamond, 0))
    snap = await read(venue, gains)
    before = snap.position(venue.name, key)
    liq_before = liquidation_price(before, snap.market_of(before))
    plan = await top_up(venue, snap, key, 500 * USDC, trader.address)
    assert plan.approvals == 1
    assert len(plan.steps) == 2
    balance = gains.balance(trader.address)
    mined = gains.send_plan(trader, plan)
    assert await venue.action_state(plan, mined) is ActionState.AWAITING_EXECUTION
    ref = ref_of(venue, mined)
    t = gains.trade(trader.address, index)
    assert t.leverage == 20_000  # nothing changes until the oracle answers
    taken = balance - gains.balance(trader.address)
    assert 499 * USDC < taken <= 500 * USDC  # taken when the order is stored
    gains.fulfill(ref.user, ref.index, 2000 * PRICE)
    assert await venue.action_state(plan, mined) is ActionState.DONE
    t = gains.trade(trader.address, index)
    assert t.collateral_amount == before.collateral.raw + taken
    assert t.leverage == -(-before.collateral.raw * 20_000 // (before.collateral.raw + 500 * USDC))
    after_snap = await read(venue, gains)
    after = after_snap.position(venue.name, key)
    liq_after = liquidation_price(after, after_snap.market_of(after))
    assert liq_before is not None
    assert liq_after is not None
    assert liq_after < liq_before  # the long's liquidation price moved away
    assert after.size.raw == pytest.approx(before.size.raw, rel=Decimal("1e-3"))


async def test_reduce_lowers_the_leverage_and_keeps_the_collateral(
    gains: GainsDevnet, venue: GainsVenue
) -> None:
    trader = gains.trader
    index = gains.open(ETH, False, 1_000 * USDC, 30_000, 2000)
    key = trade_key(trader.address, index)
    snap = await read(venue, gains)
    p = snap.position(venue.name, key)
    half = TokenAmount(p.size.raw // 2, p.size.decimals)
    plan = await venue.build(
        Reduce(venue.name, key, trader.address, p.market_id, half, WHY), snap, sender=trader.address
    )
    mined = gains.send_plan(trader, plan)
    assert await venue.action_state(plan, mined) is ActionState.AWAITING_EXECUTION
    ref = ref_of(venue, mined)
    gains.fulfill(ref.user, ref.index, 2000 * PRICE)
    assert await venue.action_state(plan, mined) is ActionState.DONE
    t = gains.trade(trader.address, index)
    assert t.leverage == 15_000
    assert t.collateral_amount < p.collateral.raw  # the closed half's fee, at an unchanged price
    assert t.collateral_amount > p.collateral.raw - 20 * USDC


async def test_close_pays_the_trader_when_executed(gains: GainsDevnet, venue: GainsVenue) -> None:
    trader = gains.trader
    index = gains.open(ETH, True, 1_000 * USDC, 10_000, 2000)
    gains.set_price(ETH, 2100)
    snap = await read(venue, gains)
    key = trade_key(trader.address, index)
    plan = await venue.build(
        Close(venue.name, key, trader.address, "0", WHY), snap, sender=trader.address
    )
    balance = gains.balance(trader.address)
    mined = gains.send_plan(trader, plan)
    ref = ref_of(venue, mined)
    gains.fulfill(ref.user, ref.index, 2100 * PRICE)
    assert await venue.action_state(plan, mined) is ActionState.DONE
    assert not gains.trade(trader.address, index).is_open
    # 994 collateral + 5% of 9,940 - the 5.964 closing fee
    assert gains.balance(trader.address) - balance == 994 * USDC + 497 * USDC - 5_964_000
    assert (await read(venue, gains)).positions == ()


async def test_an_order_the_oracle_cancels_is_cancelled(
    gains: GainsDevnet, venue: GainsVenue
) -> None:
    trader = gains.trader
    index = gains.open(ETH, True, 1_000 * USDC, 10_000, 2000)
    snap = await read(venue, gains)
    key = trade_key(trader.address, index)
    plan = await venue.build(
        Close(venue.name, key, trader.address, "0", WHY), snap, sender=trader.address
    )
    mined = gains.send_plan(trader, plan)
    ref = ref_of(venue, mined)
    gains.fulfill(ref.user, ref.index, 1900 * PRICE)  # 5% under the expected price: past 1%
    assert await venue.action_state(plan, mined) is ActionState.CANCELLED
    assert gains.trade(trader.address, index).is_open


async def test_an_unanswered_order_is_cancelled_after_the_timeout(
    gains: GainsDevnet, venue: GainsVenue
) -> None:
    trader = gains.trader
    index = gains.open(ETH, True, 1_000 * USDC, 20_000, 2000)
    key = trade_key(trader.address, index)
    balance = gains.balance(trader.address)
    snap = await read(venue, gains)
    plan = await top_up(venue, snap, key, 300 * USDC, trader.address)
    mined = gains.send_plan(trader, plan)
    assert gains.balance(trader.address) < balance
    assert await venue.cancel_if_expired(plan, mined) is None  # not yet
    gains.chain.mine(28)
    assert await venue.cancel_if_expired(plan, mined) is None
    gains.chain.mine(1)
    cancel = await venue.cancel_if_expired(plan, mined)
    assert cancel is not None
    assert "cancelOrderAfterTimeout" in cancel.description
    gains.send_request(trader, cancel)
    assert await venue.action_state(plan, mined) is ActionState.EXPIRED
    assert gains.balance(trader.address) == balance  # the collateral came back
    assert gains.trade(trader.address, index).leverage == 20_000
    assert await venue.cancel_if_expired(plan, mined) is None


async def test_a_delegate_tops_up_from_the_traders_wallet(
    gains: GainsDevnet, venue: GainsVenue
) -> None:
    trader, keeper = gains.trader, gains.keeper
    index = gains.open(ETH, True, 1_000 * USDC, 20_000, 2000)
    key = trade_key(trader.address, index)
    grant = await venue.delegation(trader.address, keeper.address, token=gains.usdc)
    assert not grant.active
    assert grant.problems == (
        f"{trader.address} has named no trading delegate (setTradingDelegate)",
    )
    setup = await venue.delegation_setup(
        trader.address, keeper.address, max_actions=10, expires_at=2**40, token=gains.usdc
    )
    for step in setup:
        gains.send_request(trader, step)
    grant = await venue.delegation(trader.address, keeper.address, token=gains.usdc)
    assert grant.active
    assert grant.problems == ()
    assert grant.top_up_left == TokenAmount(gains.balance(trader.address), 6)
    snap = (
        await venue.read(Watch((trader.address,), keeper.address, gains.usdc, delegated=True))
    ).snapshot
    assert snap.funds is not None
    assert snap.funds[trader.address] == TokenAmount(gains.balance(trader.address), 6)
    plan = await top_up(venue, snap, key, 400 * USDC, keeper.address)
    assert len(plan.steps) == 1
    assert plan.steps[0].data[:4] == keccak(b"delegatedTradingAction(address,bytes)")[:4]
    assert "trading delegate" in plan.steps[0].description
    trader_before, keeper_before = gains.balance(trader.address), gains.balance(keeper.address)
    c = gains.trade(trader.address, index).collateral_amount
    mined = gains.send_plan(keeper, plan)
    ref = ref_of(venue, mined)
    assert ref.user == trader.address  # the order is the trader's
    gains.fulfill(ref.user, ref.index, 2000 * PRICE)
    assert await venue.action_state(plan, mined) is ActionState.DONE
    assert gains.balance(keeper.address) == keeper_before
    taken = trader_before - gains.balance(trader.address)
    assert 399 * USDC < taken <= 400 * USDC
    assert gains.trade(trader.address, index).leverage == -(-c * 20_000 // (c + 400 * USDC))
    assert gains.trade(trader.address, index).collateral_amount == c + taken
    # another key is refused by the diamond
    other = await venue.delegation(trader.address, gains.deployer.address)
    assert not other.active
    assert "not" in other.problems[0]


async def test_a_delegates_unanswered_order_is_cancelled_through_the_delegation(
    gains: GainsDevnet, venue: GainsVenue
) -> None:
    trader, keeper = gains.trader, gains.keeper
    index = gains.open(ETH, False, 1_000 * USDC, 20_000, 2000)
    for step in await venue.delegation_setup(
        trader.address, keeper.address, max_actions=1, expires_at=1, token=gains.usdc
    ):
        gains.send_request(trader, step)
    snap = await read(venue, gains)
    key = trade_key(trader.address, index)
    plan = await venue.build(
        Close(venue.name, key, trader.address, "0", WHY), snap, sender=keeper.address
    )
    mined = gains.send_plan(keeper, plan)
    gains.chain.mine(30)
    cancel = await venue.cancel_if_expired(plan, mined)
    assert cancel is not None
    gains.send_request(keeper, cancel)
    assert await venue.action_state(plan, mined) is ActionState.EXPIRED
    assert gains.trade(trader.address, index).is_open


async def test_refusals_name_the_reason(gains: GainsDevnet, venue: GainsVenue) -> None:
    trader = gains.trader
    index = gains.open(ETH, True, 1_000 * USDC, 2_000, 2000)  # at the pair's minimum leverage
    snap = await read(venue, gains)
    key = trade_key(trader.address, index)
    p = snap.position(venue.name, key)
    with pytest.raises(VenueError, match="minimum leverage"):
        await venue.build(
            Reduce(venue.name, key, trader.address, "0", TokenAmount(p.size.raw // 2, 18), WHY),
            snap,
            sender=trader.address,
        )
    with pytest.raises(VenueError, match="moves no collateral"):
        await top_up(venue, snap, key, 1 * USDC, trader.address)
    with pytest.raises(VenueError, match="no position nope in the snapshot"):
        await venue.build(
            Close(venue.name, "nope", trader.address, "0", WHY), snap, sender=trader.address
        )
    # a revert of the diamond decodes to its custom error
    data = gains.diamond.functions.updateLeverage(index, 2_000)._encode_transaction_data()
    call = {"from": trader.address, "to": gains.deployment.diamond, "data": data}
    response = gains.chain.w3.provider.make_request("eth_call", [call, "latest"])  # type: ignore[arg-type]
    reason = venue.decode_error(bytes.fromhex(str(response["error"]["data"])[2:]))
    assert reason.name == "WrongLeverage"
