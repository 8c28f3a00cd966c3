"""Subaccount mode against GMX's own SubaccountRouter: the trader's main key sends the setup
the adapter builds, the keeper's subaccount key then tops up and closes the trader's position
(collateral from the trader's wallet, proceeds to the trader), and GMX refuses every order of
the subaccount that would pay the subaccount."""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount

from keeper.model import Close, Scope, TopUp
from keeper.testing.devnet import dev_account
from keeper.venues.base import ActionState, Delegates, Watch
from keeper.venues.gmx import (
    SUBACCOUNT_LOW_ACTIONS,
    CreateOrder,
    GmxFn,
    GmxVenue,
)
from keeper.venues.gmx_math import OrderType
from tests.integration.realgmx.harness import USD, GmxCallError, RealGmx
from tests.integration.realgmx.test_realgmx_venue import (
    COLLATERAL,
    ENTRY,
    SIZE_USD,
    TOP_UP,
    WHY,
    open_position,
)

pytestmark = pytest.mark.integration

SUBACCOUNT_INDEX = 7  # a funded Anvil account with no role in the GMX state
MAX_ACTIONS = 25
_SUB_MULTICALL = GmxFn.of("SubaccountRouter", "multicall")
_SUB_SEND_WNT = GmxFn.of("SubaccountRouter", "sendWnt")
_SUB_CREATE_ORDER = GmxFn.of("SubaccountRouter", "createOrder")


def subaccount() -> LocalAccount:
    return dev_account(SUBACCOUNT_INDEX)


async def set_up(venue: GmxVenue, gmx: RealGmx, sub: LocalAccount, *, max_actions: int) -> int:
    """The trader's main key sends what `delegation_setup` builds; the expiry it set."""
    expires_at = gmx.block_time() + 30 * 86400
    steps = await venue.delegation_setup(
        gmx.trader.address,
        sub.address,
        max_actions=max_actions,
        expires_at=expires_at,
        token=gmx.usdc,
    )
    assert [s.to for s in steps] == [venue.deployment.subaccount_router, gmx.usdc]
    for step in steps:
        gmx.send(gmx.trader, step.to, step.data, value=step.value, what=step.description)
    return expires_at


async def test_setup_makes_an_active_subaccount_with_limits(
    realgmx: RealGmx, venue: GmxVenue
) -> None:
    assert isinstance(venue, Delegates)
    sub = subaccount()
    trader = realgmx.trader.address
    before = await venue.delegation(trader, sub.address, token=realgmx.usdc)
    assert not before.active
    assert any("not a subaccount" in p for p in before.problems), before.problems

    realgmx.mint_usdc(trader, 1_000)
    expires_at = await set_up(venue, realgmx, sub, max_actions=MAX_ACTIONS)
    after = await venue.delegation(trader, sub.address, token=realgmx.usdc)
    assert after.active, after.problems
    assert after.actions_left == MAX_ACTIONS
    assert after.expires_at == expires_at
    assert after.problems == ()
    assert after.top_up_left is not None
    assert after.top_up_left.raw == realgmx.balance(realgmx.usdc, trader)

    # a few actions or days left is a problem to alert on, not yet inactive
    await set_up(venue, realgmx, sub, max_actions=SUBACCOUNT_LOW_ACTIONS - 1)
    low = await venue.delegation(trader, sub.address)
    assert low.active
    assert low.actions_left == SUBACCOUNT_LOW_ACTIONS - 1
    assert any("actions left" in p for p in low.problems), low.problems
    realgmx.advance_time(31 * 86400)
    late = await venue.delegation(trader, sub.address)
    assert not late.active
    assert any("expired" in p for p in late.problems), late.problems


async def test_the_subaccount_tops_up_and_closes_for_the_trader(
    realgmx: RealGmx, venue: GmxVenue
) -> None:
    gmx, sub = realgmx, subaccount()
    trader = gmx.trader.address
    key = open_position(gmx)
    await set_up(venue, gmx, sub, max_actions=MAX_ACTIONS)
    watch = Watch((trader,), wallet=sub.address, wallet_token=gmx.usdc)

    snapshot = await venue.snapshot(watch)
    token = snapshot.position(venue.name, key).collateral_token
    amount = token.amount(gmx.units(gmx.usdc, TOP_UP))
    action = TopUp(venue.name, Scope.POSITION, key, trader, token, amount, WHY)
    plan = await venue.build(action, snapshot, sender=sub.address)
    assert [s.to for s in plan.steps] == [venue.deployment.subaccount_router]
    assert plan.approvals == 0
    assert await venue.simulate_execution(plan, snapshot) is None

    wallet_before = gmx.balance(gmx.usdc, trader)
    sub_eth_before = gmx.chain.w3.eth.get_balance(sub.address)
    done = gmx.send_plan(sub, plan)
    assert await venue.action_state(plan, done) is ActionState.AWAITING_EXECUTION
    order_key = venue.order_key(done)
    assert order_key is not None
    (pending,) = gmx.pending_orders(trader)
    assert pending.account == trader
    assert gmx.balance(gmx.usdc, trader) == wallet_before - amount.raw  # from the trader
    outcome = gmx.execute_order(order_key, gmx.prices(ENTRY))
    assert outcome.executed, (outcome.fate, outcome.reason, outcome.error)
    assert await venue.action_state(plan, done) is ActionState.DONE
    assert gmx.position(key).collateral_amount == gmx.units(gmx.usdc, COLLATERAL + TOP_UP)
    assert gmx.balance(gmx.usdc, sub.address) == 0
    assert gmx.chain.w3.eth.get_balance(sub.address) < sub_eth_before  # it paid the gas
    assert (await venue.delegation(trader, sub.address)).actions_left == MAX_ACTIONS - 1

    snapshot = await venue.snapshot(watch)
    market_id = snapshot.position(venue.name, key).market_id
    plan = await venue.build(
        Close(venue.name, key, trader, market_id, WHY), snapshot, sender=sub.address
    )
    assert await venue.simulate_execution(plan, snapshot) is None
    wallet_before = gmx.balance(gmx.usdc, trader)
    done = gmx.send_plan(sub, plan)
    order_key = venue.order_key(done)
    assert order_key is not None
    outcome = gmx.execute_order(order_key, gmx.prices(ENTRY))
    assert outcome.executed, (outcome.fate, outcome.reason, outcome.error)
    assert gmx.position(key).size_in_usd == 0
    assert gmx.balance(gmx.usdc, trader) - wallet_before == gmx.units(gmx.usdc, COLLATERAL + TOP_UP)
    assert gmx.balance(gmx.usdc, sub.address) == 0


@pytest.mark.parametrize("field", ["receiver", "cancellation_receiver"])
async def test_gmx_refuses_a_subaccount_order_that_pays_the_subaccount(
    realgmx: RealGmx, venue: GmxVenue, field: str
) -> None:
    gmx, sub = realgmx, subaccount()
    trader = gmx.trader.address
    open_position(gmx)
    await set_up(venue, gmx, sub, max_actions=MAX_ACTIONS)
    market = gmx.market
    payee = {"receiver": trader, "cancellation_receiver": trader, field: sub.address}
    order = CreateOrder(
        receiver=payee["receiver"],
        cancellation_receiver=payee["cancellation_receiver"],
        market=market.market_token,
        initial_collateral_token=gmx.usdc,
        order_type=OrderType.MARKET_DECREASE,
        is_long=True,
        size_delta_usd=SIZE_USD * USD,
        acceptable_price=0,
    )
    data = _SUB_MULTICALL.encode(
        [
            _SUB_SEND_WNT.encode(venue.deployment.order_vault, 0),
            _SUB_CREATE_ORDER.encode(trader, order.as_tuple()),
        ]
    )
    with pytest.raises(GmxCallError) as caught:
        gmx.eth_call(venue.deployment.subaccount_router or "", data, sender=sub.address)
    expected = (
        "InvalidReceiverForSubaccountOrder"
        if field == "receiver"
        else "InvalidCancellationReceiverForSubaccountOrder"
    )
    assert caught.value.reason.name == expected, caught.value.reason
    assert gmx.pending_orders(trader) == []


async def test_a_key_the_trader_never_added_cannot_act(realgmx: RealGmx, venue: GmxVenue) -> None:
    gmx, stranger = realgmx, subaccount()
    trader = gmx.trader.address
    key = open_position(gmx)
    snapshot = await venue.snapshot(Watch((trader,), wallet=stranger.address))
    market_id = snapshot.position(venue.name, key).market_id
    plan = await venue.build(
        Close(venue.name, key, trader, market_id, WHY), snapshot, sender=stranger.address
    )
    step = plan.steps[0]
    with pytest.raises(GmxCallError) as caught:
        gmx.eth_call(step.to, step.data, sender=stranger.address, value=step.value)
    assert caught.value.reason.name == "SubaccountNotAuthorized", caught.value.reason
