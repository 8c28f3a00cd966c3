"""The reference exchange's operators through the adapter: the keeper's key, approved by the
trader with limits, tops up from the trader's wallet, reduces, closes and withdraws, and every
token it moves goes to the trader; the grant is read as a Delegation and set up by the
transactions `delegation_setup` gives."""

from __future__ import annotations

import pytest

from keeper.chain.jsonrpc import RpcResponseError
from keeper.model import Close, Reason, Reduce, Scope, Snapshot, TopUp, Withdraw
from keeper.testing.devnet import Devnet
from keeper.units import TokenAmount
from keeper.venues.base import DELEGATION_LOW_ACTIONS, Delegates, VenueError, Watch
from keeper.venues.reference import ReferenceVenue
from tests.integration.venues.support import open_book, send_raw
from tests.integration.venues.test_reference_actions import run, stored

pytestmark = pytest.mark.integration

WHY = Reason("test", "because the test says so")
USDC = 10**6


async def delegated_snap(venue: ReferenceVenue, devnet: Devnet) -> Snapshot:
    d = devnet.deployment
    watch = Watch((d.trader, d.cross_trader), d.operator, d.usdc, delegated=True)
    return await venue.snapshot(watch)


async def test_a_grant_is_read_set_up_and_revoked(devnet: Devnet, venue: ReferenceVenue) -> None:
    assert isinstance(venue, Delegates)
    d = devnet.deployment
    trader = devnet.account("trader")
    none = await venue.delegation(d.trader, d.operator, token=d.usdc)
    assert not none.active
    assert none.top_up_left == venue.collateral_token.amount(0)
    assert any("has not approved" in p for p in none.problems)

    head = devnet.w3.eth.get_block("latest")["timestamp"]
    setup = await venue.delegation_setup(
        d.trader, d.operator, max_actions=50, expires_at=head + 30 * 86_400, token=d.usdc,
        top_up_allowance=2_500 * USDC,
    )  # fmt: skip
    assert [s.to for s in setup] == [d.exchange, d.usdc]
    for step in setup:
        send_raw(devnet, trader, step.to, step.data, what=step.description)
    grant = await venue.delegation(d.trader, d.operator, token=d.usdc)
    assert grant.active
    assert (grant.actions_left, grant.expires_at) == (50, head + 30 * 86_400)
    assert grant.top_up_left == venue.collateral_token.amount(2_500 * USDC)  # the limit binds
    assert grant.problems == ()
    assert devnet.usdc.functions.allowance(d.trader, d.exchange).call() == 2_500 * USDC

    # few actions left: still active, said so; an expired grant is not active
    devnet.approve_operator(trader, actions=DELEGATION_LOW_ACTIONS - 1, seconds=3_600)
    low = await venue.delegation(d.trader, d.operator)
    assert low.active
    assert any("actions left" in p for p in low.problems)
    assert any("expires in" in p for p in low.problems)
    devnet.chain.advance_time(3_601)
    assert not (await venue.delegation(d.trader, d.operator)).active

    devnet.approve_operator(trader)
    assert (await venue.delegation(d.trader, d.operator)).active
    send_raw(
        devnet,
        trader,
        d.exchange,
        bytes.fromhex(
            devnet.exchange.functions.revokeOperator(d.operator)._encode_transaction_data()[2:]
        ),
    )
    assert not (await venue.delegation(d.trader, d.operator)).active

    with pytest.raises(VenueError, match="max_actions"):
        await venue.delegation_setup(
            d.trader, d.operator, max_actions=0, expires_at=1, token=d.usdc
        )
    with pytest.raises(VenueError, match="must not be the account itself"):
        await venue.delegation_setup(d.trader, d.trader, max_actions=1, expires_at=1, token=d.usdc)
    with pytest.raises(VenueError, match="not the collateral"):
        await venue.delegation(d.trader, d.operator, token=d.exchange)


async def test_a_delegated_read_gives_each_accounts_funds(
    devnet: Devnet, venue: ReferenceVenue
) -> None:
    open_book(devnet)
    d = devnet.deployment
    trader, cross = devnet.account("trader"), devnet.account("cross_trader")
    snap = await delegated_snap(venue, devnet)
    usdc = venue.collateral_token
    assert snap.funds == {d.trader: usdc.amount(0), d.cross_trader: usdc.amount(0)}  # no grants
    assert snap.wallet.address == d.operator

    devnet.approve_operator(trader, top_up_limit=800)
    devnet.approve_operator(cross)
    snap = await delegated_snap(venue, devnet)
    assert snap.funds is not None
    assert snap.funds[d.trader] == usdc.amount(800 * USDC)  # the grant's limit
    assert snap.funds[d.cross_trader] == usdc.amount(devnet.usdc_balance(d.cross_trader))
    # the wallet's allowance to the exchange binds too
    send_raw(
        devnet,
        cross,
        d.usdc,
        bytes.fromhex(
            devnet.usdc.functions.approve(d.exchange, 123 * USDC)._encode_transaction_data()[2:]
        ),
    )
    snap = await delegated_snap(venue, devnet)
    assert snap.funds is not None
    assert snap.funds[d.cross_trader] == usdc.amount(123 * USDC)
    # not delegated: no funds read
    plain = await venue.snapshot(Watch((d.trader,), d.operator))
    assert plain.funds is None


async def test_the_operator_acts_for_the_trader_and_pays_only_the_trader(
    devnet: Devnet, venue: ReferenceVenue
) -> None:
    keys = open_book(devnet)
    d = devnet.deployment
    trader, cross, operator = (
        devnet.account("trader"),
        devnet.account("cross_trader"),
        devnet.account("operator"),
    )
    devnet.approve_operator(trader, top_up_limit=1_000, actions=20)
    devnet.approve_operator(cross, actions=20)
    usdc = venue.collateral_token
    key = "0x" + keys["eth_long"].hex()
    operator_usdc = devnet.usdc_balance(d.operator)

    s = await delegated_snap(venue, devnet)
    wallet = devnet.usdc_balance(d.trader)
    top_up = TopUp("refex", Scope.POSITION, key, d.trader, usdc, usdc.amount(300 * USDC), WHY)
    plan = await venue.build(top_up, s, sender=d.operator)
    assert plan.approvals == 0
    assert len(plan.steps) == 1
    assert "addMarginFor" in plan.steps[0].description
    assert f"as operator {d.operator} for {d.trader}" in plan.steps[0].description
    _, collateral = stored(devnet, key)
    await run(devnet, operator, venue, plan)
    assert devnet.usdc_balance(d.trader) == wallet - 300 * USDC  # paid from the trader's wallet
    assert collateral + 300 * USDC - 10_000 <= stored(devnet, key)[1] <= collateral + 300 * USDC
    grant = await venue.delegation(d.trader, d.operator)
    assert (grant.actions_left, grant.top_up_left) == (19, usdc.amount(700 * USDC))

    # beyond what is left of the limit: refused while building, naming the limit
    s = await delegated_snap(venue, devnet)
    more = TopUp("refex", Scope.POSITION, key, d.trader, usdc, usdc.amount(701 * USDC), WHY)
    with pytest.raises(VenueError, match="grant has left 700"):
        await venue.build(more, s, sender=d.operator)

    wallet = devnet.usdc_balance(d.trader)
    withdraw = Withdraw("refex", Scope.POSITION, key, d.trader, usdc, usdc.amount(100 * USDC), WHY)
    plan = await venue.build(withdraw, s, sender=d.operator)
    assert "removeMarginFor" in plan.steps[0].description
    await run(devnet, operator, venue, plan)
    assert devnet.usdc_balance(d.trader) == wallet + 100 * USDC

    s = await delegated_snap(venue, devnet)
    reduce = Reduce("refex", key, d.trader, "0", TokenAmount(4 * 10**18, 18), WHY)
    await run(devnet, operator, venue, await venue.build(reduce, s, sender=d.operator))
    assert stored(devnet, key)[0] == 6 * 10**18
    wallet = devnet.usdc_balance(d.trader)
    s = await delegated_snap(venue, devnet)
    close = Close("refex", key, d.trader, "0", WHY)
    await run(devnet, operator, venue, await venue.build(close, s, sender=d.operator))
    assert stored(devnet, key) == (0, 0)
    assert devnet.usdc_balance(d.trader) > wallet  # what remained went to the trader

    # the cross account: deposit from the cross trader's wallet, reduce, close, withdraw
    eth = "0x" + keys["x_eth_long"].hex()
    balance = devnet.exchange.functions.crossBalance(d.cross_trader).call()
    s = await delegated_snap(venue, devnet)
    deposit = TopUp(
        "refex", Scope.ACCOUNT, d.cross_trader, d.cross_trader, usdc, usdc.amount(500 * USDC), WHY
    )
    plan = await venue.build(deposit, s, sender=d.operator)
    assert "depositCrossFor" in plan.steps[0].description
    await run(devnet, operator, venue, plan)
    assert devnet.exchange.functions.crossBalance(d.cross_trader).call() == balance + 500 * USDC
    s = await delegated_snap(venue, devnet)
    plan = await venue.build(Close("refex", eth, d.cross_trader, "0", WHY), s, sender=d.operator)
    assert "closeCrossFor" in plan.steps[0].description
    await run(devnet, operator, venue, plan)
    wallet = devnet.usdc_balance(d.cross_trader)
    s = await delegated_snap(venue, devnet)
    out = Withdraw(
        "refex", Scope.ACCOUNT, d.cross_trader, d.cross_trader, usdc, usdc.amount(50 * USDC), WHY
    )
    await run(devnet, operator, venue, await venue.build(out, s, sender=d.operator))
    assert devnet.usdc_balance(d.cross_trader) == wallet + 50 * USDC

    assert devnet.usdc_balance(d.operator) == operator_usdc  # the operator never got a token


async def test_a_key_the_trader_never_approved_cannot_act(
    devnet: Devnet, venue: ReferenceVenue
) -> None:
    keys = open_book(devnet)
    d = devnet.deployment
    key = "0x" + keys["eth_long"].hex()
    usdc = venue.collateral_token
    s = await delegated_snap(venue, devnet)
    top_up = TopUp("refex", Scope.POSITION, key, d.trader, usdc, usdc.amount(10 * USDC), WHY)
    with pytest.raises(VenueError, match="has not approved"):
        await venue.build(top_up, s, sender=d.operator)
    # a close builds (nothing to check but the grant, which the exchange checks): its
    # simulation reverts with the exchange's NotOperator
    plan = await venue.build(Close("refex", key, d.trader, "0", WHY), s, sender=d.operator)
    step = plan.steps[0]
    call = {"from": d.operator, "to": step.to, "data": "0x" + step.data.hex()}
    with pytest.raises(RpcResponseError) as info:
        await venue.rpc.request("eth_call", [call, "latest"])
    reason = venue.decode_rpc_error(info.value)
    assert reason is not None
    assert reason.name == "NotOperator"
    # a grant to another key does not help this one
    devnet.approve_operator(devnet.account("trader"), d.liquidator)
    with pytest.raises(RpcResponseError):
        await venue.rpc.request("eth_call", [call, "latest"])
