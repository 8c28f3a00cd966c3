"""Subaccount mode against our SubaccountRouter (contracts/src/gmx/GmxSubaccountRouter.sol):
the scenarios of tests/integration/realgmx/test_realgmx_subaccount.py (subaccount_cases.py),
the auto top-up the adapter's setup can ask for, and a grant whose integration GMX disabled.
(tests/unit/test_gmx.py holds the router's functions and errors to the SDK's ABI.)"""

from __future__ import annotations

import pytest
from eth_typing import HexStr

from keeper.model import Scope, TopUp
from keeper.venues.base import ActionState, Watch
from keeper.venues.gmx import GmxVenue
from keeper.venues.gmx_math import data_key
from tests.integration.gmx import subaccount_cases as cases
from tests.integration.gmx.deploy import GmxDevnet
from tests.integration.gmx.subaccount_rig import OurChain

pytestmark = pytest.mark.integration


async def test_setup_makes_an_active_subaccount_with_limits(
    our_chain: OurChain, venue: GmxVenue
) -> None:
    await cases.setup_makes_an_active_subaccount_with_limits(our_chain, venue)


async def test_the_subaccount_tops_up_and_closes_for_the_trader(
    our_chain: OurChain, venue: GmxVenue
) -> None:
    await cases.the_subaccount_tops_up_and_closes_for_the_trader(our_chain, venue)


@pytest.mark.parametrize("field", ["receiver", "cancellation_receiver"])
async def test_gmx_refuses_a_subaccount_order_that_pays_the_subaccount(
    our_chain: OurChain, venue: GmxVenue, field: str
) -> None:
    await cases.gmx_refuses_a_subaccount_order_that_pays_the_subaccount(our_chain, venue, field)


async def test_a_key_the_trader_never_added_cannot_act(
    our_chain: OurChain, venue: GmxVenue
) -> None:
    await cases.a_key_the_trader_never_added_cannot_act(our_chain, venue)


async def test_the_auto_top_up_pays_the_subaccount_back_from_the_traders_wnt(
    gmx: GmxDevnet, our_chain: OurChain, venue: GmxVenue
) -> None:
    """delegation_setup with auto_top_up: the trader approves its WNT to the Router, and each
    order of the subaccount pays it back (native value) for its gas and execution fee, at most
    the amount set."""
    sub, trader = cases.subaccount(), gmx.trader.address
    key = our_chain.open_long()
    gmx.call(gmx.trader, gmx.contract("GmxWNT").functions.deposit(), value=10**18)
    auto = 10**16
    steps = await venue.delegation_setup(
        trader,
        sub.address,
        max_actions=5,
        expires_at=gmx.block_time() + 86400,
        token=gmx.usdc,
        auto_top_up=auto,
    )
    assert [s.to for s in steps] == [venue.deployment.subaccount_router, gmx.usdc, gmx.wnt]
    for step in steps:
        gmx.send(gmx.trader, step.to, step.data, value=step.value, what=step.description)

    snapshot = await venue.snapshot(Watch((trader,), wallet=sub.address, wallet_token=gmx.usdc))
    token = snapshot.position(venue.name, key).collateral_token
    action = TopUp(
        venue.name, Scope.POSITION, key, trader, token, token.amount(100 * 10**6), cases.WHY
    )
    plan = await venue.build(action, snapshot, sender=sub.address)
    (step,) = plan.steps
    eth_before = gmx.native_balance(sub.address)
    done = gmx.send_plan(sub, plan)
    receipt = gmx.chain.w3.eth.get_transaction_receipt(HexStr(done[0].tx_hash))
    gas_cost = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
    paid = 10**18 - gmx.balance(gmx.wnt, trader)
    assert 0 < paid <= auto
    # what the order cost the subaccount (execution fee and gas) less what it got back
    assert gmx.native_balance(sub.address) == eth_before - step.value - gas_cost + paid
    assert paid > step.value, "the execution fee and the gas so far are paid back"
    assert await venue.action_state(plan, done) is ActionState.AWAITING_EXECUTION


async def test_a_grant_whose_integration_gmx_disabled_is_not_active(
    gmx: GmxDevnet, our_chain: OurChain, venue: GmxVenue
) -> None:
    """GMX refuses every action of a subaccount whose integration id it has disabled
    (SubaccountIntegrationIdDisabled, checked before the grant itself): the adapter reads the
    id and its switch, and says so."""
    sub, trader = cases.subaccount(), gmx.trader.address
    our_chain.mint_usdc(trader, 1_000)
    await cases.set_up(venue, our_chain, sub.address, max_actions=cases.MAX_ACTIONS)
    assert (await venue.delegation(trader, sub.address)).active
    store = gmx.contract("GmxDataStore").functions
    integration = b"\x01" * 32
    id_key = data_key("SUBACCOUNT_INTEGRATION_ID", ("address", trader), ("address", sub.address))
    gmx.call(gmx.deployer, store.setBytes32(id_key, integration))
    assert (await venue.delegation(trader, sub.address)).active  # an id, not disabled
    off_key = data_key("SUBACCOUNT_INTEGRATION_DISABLED", ("bytes32", integration))
    gmx.call(gmx.deployer, store.setBool(off_key, True))
    grant = await venue.delegation(trader, sub.address)
    assert not grant.active
    assert any("integration id 0x0101" in p for p in grant.problems), grant.problems
