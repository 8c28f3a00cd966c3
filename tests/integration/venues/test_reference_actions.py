"""Actions built by the reference adapter, signed locally and sent, do what they say."""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount

from keeper.chain.jsonrpc import RpcResponseError
from keeper.model import Alert, Close, Reason, Reduce, Scope, Severity, Snapshot, TopUp, Withdraw
from keeper.testing.devnet import Devnet
from keeper.units import TokenAmount
from keeper.venues.base import ActionState, MinedTx, TxPlan, VenueError, Watch
from keeper.venues.reference import ReferenceVenue
from tests.integration.venues.support import open_book, send, send_raw

pytestmark = pytest.mark.integration

WHY = Reason("test", "because the test says so")
USDC = 10**6


async def snap(venue: ReferenceVenue, devnet: Devnet) -> Snapshot:
    d = devnet.deployment
    return await venue.snapshot(Watch((d.trader, d.cross_trader)))


async def run(devnet: Devnet, account: LocalAccount, venue: ReferenceVenue, plan: TxPlan) -> None:
    """Simulate each step (the next with its override when one is given), then send them."""
    mined: list[MinedTx] = []
    for i, step in enumerate(plan.steps):
        params: list[object] = [
            {"from": plan.sender, "to": step.to, "data": "0x" + step.data.hex()},
            "latest",
        ]
        devnet.chain.rpc("eth_call", *params)
        receipt = send_raw(devnet, account, step.to, step.data, what=step.description)
        mined.append(MinedTx(receipt["transactionHash"].hex(), receipt["blockNumber"], True))
        expected = ActionState.DONE if i == len(plan.steps) - 1 else ActionState.PENDING
        assert await venue.action_state(plan, mined) is expected


def stored(devnet: Devnet, key: str) -> tuple[int, int]:
    p = devnet.exchange.functions.positions(bytes.fromhex(key[2:])).call()
    return p.size, p.collateral


async def test_isolated_top_up_with_approval_withdraw_reduce_close(
    devnet: Devnet, venue: ReferenceVenue
) -> None:
    keys = open_book(devnet)
    trader = devnet.account("trader")
    key = "0x" + keys["eth_long"].hex()
    usdc = venue.collateral_token
    send(devnet, trader, devnet.usdc.functions.approve(devnet.deployment.exchange, 0))

    s = await snap(venue, devnet)
    top_up = TopUp("refex", Scope.POSITION, key, trader.address, usdc, usdc.amount(150 * USDC), WHY)
    plan = await venue.build(top_up, s, sender=trader.address)
    assert plan.approvals == 1
    assert len(plan.steps) == 2
    assert plan.steps[0].to == usdc.address
    assert "approve" in plan.steps[0].description
    assert "addMargin" in plan.steps[1].description
    # before the approval is mined, the top-up reverts, except with the plan's override
    call = {"from": trader.address, "to": plan.steps[1].to, "data": "0x" + plan.steps[1].data.hex()}
    with pytest.raises(Exception, match="revert") as info:
        await venue.rpc.request("eth_call", [call, "latest"])
    assert isinstance(info.value, RpcResponseError)
    reason = venue.decode_rpc_error(info.value)
    assert reason is not None
    assert reason.name == "TransferFailed"
    override = plan.override(1)
    assert override is not None
    await venue.rpc.request("eth_call", [call, "latest", override])

    size, collateral = stored(devnet, key)
    await run(devnet, trader, venue, plan)
    new_size, new_collateral = stored(devnet, key)
    assert new_size == size
    # funding accrued since the open is settled from the collateral at the top-up
    assert collateral + 150 * USDC - 10_000 <= new_collateral <= collateral + 150 * USDC
    assert devnet.usdc.functions.allowance(trader.address, venue.exchange).call() == 0

    s = await snap(venue, devnet)
    wallet_before = devnet.usdc_balance(trader.address)
    withdraw = Withdraw(
        "refex", Scope.POSITION, key, trader.address, usdc, usdc.amount(100 * USDC), WHY
    )
    plan = await venue.build(withdraw, s, sender=trader.address)
    assert len(plan.steps) == 1
    assert plan.approvals == 0
    await run(devnet, trader, venue, plan)
    assert stored(devnet, key)[1] <= collateral + 50 * USDC  # funding settled as well
    assert devnet.usdc_balance(trader.address) == wallet_before + 100 * USDC

    s = await snap(venue, devnet)
    reduce = Reduce("refex", key, trader.address, "0", TokenAmount(4 * 10**18, 18), WHY)
    await run(devnet, trader, venue, await venue.build(reduce, s, sender=trader.address))
    assert stored(devnet, key)[0] == 6 * 10**18

    s = await snap(venue, devnet)
    close = Close("refex", key, trader.address, "0", WHY)
    await run(devnet, trader, venue, await venue.build(close, s, sender=trader.address))
    assert stored(devnet, key) == (0, 0)
    after = await snap(venue, devnet)
    assert key not in {p.key for p in after.positions}


async def test_cross_deposit_withdraw_reduce_close(devnet: Devnet, venue: ReferenceVenue) -> None:
    keys = open_book(devnet)
    cross = devnet.account("cross_trader")
    ex = devnet.exchange.functions
    usdc = venue.collateral_token
    eth, btc = "0x" + keys["x_eth_long"].hex(), "0x" + keys["x_btc_short"].hex()

    s = await snap(venue, devnet)
    balance = ex.crossBalance(cross.address).call()
    top_up = TopUp(
        "refex", Scope.ACCOUNT, cross.address, cross.address, usdc, usdc.amount(700 * USDC), WHY
    )
    plan = await venue.build(top_up, s, sender=cross.address)
    assert plan.approvals == 0
    assert "depositCross" in plan.steps[0].description
    await run(devnet, cross, venue, plan)
    assert ex.crossBalance(cross.address).call() == balance + 700 * USDC

    withdraw = Withdraw(
        "refex", Scope.ACCOUNT, cross.address, cross.address, usdc, usdc.amount(200 * USDC), WHY
    )
    await run(devnet, cross, venue, await venue.build(withdraw, s, sender=cross.address))
    assert ex.crossBalance(cross.address).call() == balance + 500 * USDC

    s = await snap(venue, devnet)
    reduce = Reduce("refex", eth, cross.address, "0", TokenAmount(3 * 10**18, 18), WHY)
    plan = await venue.build(reduce, s, sender=cross.address)
    assert "decreaseCross" in plan.steps[0].description
    await run(devnet, cross, venue, plan)
    assert stored(devnet, eth)[0] == 5 * 10**18

    s = await snap(venue, devnet)
    close = Close("refex", btc, cross.address, "1", WHY)
    plan = await venue.build(close, s, sender=cross.address)
    assert "closeCross" in plan.steps[0].description
    await run(devnet, cross, venue, plan)
    assert stored(devnet, btc) == (0, 0)
    assert ex.crossPositionKeys(cross.address).call() == [keys["x_eth_long"]]


async def test_refusals_and_decoded_reverts(devnet: Devnet, venue: ReferenceVenue) -> None:
    keys = open_book(devnet)
    trader = devnet.account("trader")
    key = "0x" + keys["eth_short"].hex()
    usdc = venue.collateral_token
    s = await snap(venue, devnet)
    alert = Alert("refex", Scope.POSITION, key, trader.address, Severity.WARNING, WHY)
    assert (await venue.build(alert, s, sender=trader.address)).steps == ()
    too_much = Withdraw(
        "refex", Scope.POSITION, key, trader.address, usdc, usdc.amount(400 * USDC), WHY
    )
    plan = await venue.build(too_much, s, sender=trader.address)
    step = plan.steps[0]
    call = {"from": trader.address, "to": step.to, "data": "0x" + step.data.hex()}
    with pytest.raises(RpcResponseError) as info:
        await venue.rpc.request("eth_call", [call, "latest"])
    reason = venue.decode_rpc_error(info.value)
    assert reason is not None
    assert reason.name == "InsufficientMargin", reason
    assert reason.message.startswith("InsufficientMargin(equity=")

    whole = Reduce("refex", key, trader.address, "0", TokenAmount(2 * 10**18, 18), WHY)
    with pytest.raises(VenueError, match="less than the position's size"):
        await venue.build(whole, s, sender=trader.address)
    gone = Close("refex", "0x" + "00" * 32, trader.address, "0", WHY)
    with pytest.raises(VenueError, match="no position"):
        await venue.build(gone, s, sender=trader.address)
    other = TopUp(
        "refex",
        Scope.POSITION,
        key,
        trader.address,
        usdc.__class__("0x" + "22" * 20, "XYZ", 6),
        TokenAmount(1, 6),
        WHY,
    )
    with pytest.raises(VenueError, match="is not the exchange's collateral"):
        await venue.build(other, s, sender=trader.address)
