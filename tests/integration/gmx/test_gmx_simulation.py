"""GMX's execution simulated before an order is sent, on our GMX-compatible deployment: a top-up
or reduce the deployment would cancel at execution is refused with GMX's reason, nothing is
sent and the intent fails; a good one is sent, and executes as simulated; and the keeper loop
decides again on the next block after a refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from keeper.chain.blocks import BlockStream, NewHead
from keeper.chain.rpc import FailoverRpc
from keeper.client import Client
from keeper.journal import Intent, IntentStatus, Journal
from keeper.loop import Executor, Keeper, LoopSettings, NoEvents, Sent, action_payload
from keeper.model import Action, Position, Reason, Reduce, Scope, Snapshot, TopUp
from keeper.policy import Budget, MarketThresholds, Thresholds
from keeper.signer import Signer
from keeper.txs import FeePolicy, TxConfig, TxManager
from keeper.units import TokenAmount
from keeper.venues.base import Watch
from keeper.venues.gmx import GmxVenue
from tests.integration.gmx.deploy import MARKET, USD, GmxDevnet
from tests.integration.gmx.test_gmx_anvil import position_of

pytestmark = pytest.mark.integration

WHY = Reason("test", "because the test says so")
USDC = 10**6
SIZE_USD = 10_000
COLLATERAL = 200  # USDC: 2% of the size at 2,000
# At 1,966 the long (5 ETH from 2,000) has 200 - 170 of loss - 5 of close fee = 25 USD left:
# GMX's validatePosition needs 0.5% of the size (50 USD) after a collateral deposit, 1% of
# what stays open after a decrease.
DOOMED_AT = 1_966


@dataclass
class Rig:
    gmx: GmxDevnet
    venue: GmxVenue
    txs: TxManager
    journal: Journal
    executor: Executor

    def nonce(self) -> int:
        return int(self.gmx.chain.w3.eth.get_transaction_count(self.gmx.trader.address))

    async def snapshot(self) -> Snapshot:
        trader = self.gmx.trader.address
        return await self.venue.snapshot(Watch((trader,), wallet=trader))

    async def carry_out(self, action: Action, snap: Snapshot) -> tuple[Intent, list[Sent]]:
        """The action as the keeper carries it out: an intent, then the Executor."""
        intent, new = self.journal.open_intent(
            self.venue.name,
            action.key,
            action.kind,
            action_payload(action, snap),
            block=snap.block_number,
            reason="test",
        )
        assert new
        sent = await self.executor.carry_out(intent, action, snap)
        return self.journal.intent(intent.id), sent


@pytest.fixture
async def rig(gmx: GmxDevnet, tmp_path: Path) -> AsyncIterator[Rig]:
    rpc = FailoverRpc([gmx.chain.url])
    venue = await GmxVenue.connect(
        rpc, gmx.deployment, multicall_code_override=True, wallet_token=gmx.usdc
    )
    journal = Journal(tmp_path / "journal.sqlite")
    chain_id = int(gmx.chain.w3.eth.chain_id)
    txs = TxManager(
        rpc,
        journal,
        Signer.from_key(gmx.trader.key),
        TxConfig(chain_id=chain_id, fees=FeePolicy(10**11)),
        delayed_venues={venue.name},
        decode_error=venue.decode_error,
    )
    try:
        yield Rig(gmx, venue, txs, journal, Executor(venue, txs, journal, NoEvents()))
    finally:
        journal.close()
        await rpc.close()


def opened(gmx: GmxDevnet, *, approve: bool = True) -> str:
    """The trader's long of 10,000 USD at 2,000 with 200 USDC, and (by default) the Router
    approved for its USDC, so that a top-up plan is one step."""
    key = gmx.open(
        is_long=True, size_usd=SIZE_USD, collateral_usdc=COLLATERAL * USDC, eth_usd=2_000
    )
    if approve:
        usdc = gmx.contract("TestUSDC")
        gmx.call(gmx.trader, usdc.functions.approve(gmx.deployment.router, 2**256 - 1))
    return key


def top_up(venue: GmxVenue, position: Position, usdc: int) -> TopUp:
    token = position.collateral_token
    amount = token.amount(usdc * USDC)
    return TopUp(venue.name, Scope.POSITION, position.key, position.account, token, amount, WHY)


def reduce_by(venue: GmxVenue, position: Position, percent: int) -> Reduce:
    cut = TokenAmount(position.size.raw * percent // 100, position.size.decimals)
    return Reduce(venue.name, position.key, position.account, MARKET, cut, WHY)


def liquidatable(remaining: Decimal, min_usd: int, for_leverage: int) -> str:
    """The failure the journal records for GMX's LiquidatablePosition (USD at 1e30)."""
    return (
        "simulation_reverted: execution: LiquidatablePosition(reason=min collateral for "
        f"leverage, remainingCollateralUsd={int(remaining * USD)}, minCollateralUsd="
        f"{min_usd * USD}, minCollateralUsdForLeverage={for_leverage * USD})"
    )


async def test_a_top_up_gmx_would_cancel_is_not_sent_and_fails_with_gmx_s_reason(
    rig: Rig,
) -> None:
    gmx = rig.gmx
    key = opened(gmx)
    gmx.set_eth_price(DOOMED_AT)
    snap = await rig.snapshot()
    nonce = rig.nonce()
    intent, sent = await rig.carry_out(top_up(rig.venue, snap.position("gmx", key), 10), snap)
    assert [s.outcome for s in sent] == ["failed"], sent
    assert intent.status is IntentStatus.FAILED
    # 25 + 10 USD left, under 0.5% of 10,000
    assert intent.failure == liquidatable(Decimal(35), 1, 50), intent.failure
    assert rig.journal.transactions(intent.id) == []
    assert rig.nonce() == nonce, "nothing was sent"
    assert await rig.venue.open_orders(gmx.trader.address) == []
    assert position_of(gmx, key)[2] == COLLATERAL * USDC


async def test_a_top_up_gmx_would_execute_is_sent_and_executes(rig: Rig) -> None:
    gmx = rig.gmx
    key = opened(gmx, approve=False)  # the plan's approval goes first, then the simulation
    gmx.set_eth_price(DOOMED_AT)
    snap = await rig.snapshot()
    intent, sent = await rig.carry_out(top_up(rig.venue, snap.position("gmx", key), 100), snap)
    assert [(s.kind, s.outcome) for s in sent] == [("approve", "done"), ("top_up", "sent")], sent
    assert intent.status is IntentStatus.SENT
    assert len(rig.journal.transactions(intent.id)) == 1
    outcome = await rig.txs.resolve(intent.id, timeout=30)
    assert outcome.status is IntentStatus.AWAITING_EXECUTION, outcome
    ((order_key, order, _at),) = await rig.venue.open_orders(gmx.trader.address)
    assert order.initial_collateral_delta_amount == 100 * USDC
    gmx.execute(order_key, DOOMED_AT)  # at the prices it was simulated at: it executes
    assert await rig.venue.open_orders(gmx.trader.address) == []
    assert position_of(gmx, key)[2] == (COLLATERAL + 100) * USDC


async def test_a_reduce_gmx_would_cancel_is_not_sent_and_a_larger_one_is(rig: Rig) -> None:
    gmx = rig.gmx
    key = opened(gmx)
    gmx.set_eth_price(DOOMED_AT)
    snap = await rig.snapshot()
    position = snap.position("gmx", key)
    nonce = rig.nonce()
    intent, sent = await rig.carry_out(reduce_by(rig.venue, position, 10), snap)
    assert [s.outcome for s in sent] == ["failed"], sent
    # 200 - 17 realized = 183 USDC, less 153 of loss and 4.5 of fee on the 9,000 left: 25.5 USD,
    # under 1% of 9,000 (a decrease does not check MIN_COLLATERAL_USD: its field is 0)
    assert intent.failure == liquidatable(Decimal("25.5"), 0, 90), intent.failure
    assert rig.journal.transactions(intent.id) == []
    assert rig.nonce() == nonce
    assert position_of(gmx, key)[0] == SIZE_USD * USD

    intent, sent = await rig.carry_out(reduce_by(rig.venue, position, 90), snap)
    assert [s.outcome for s in sent] == ["sent"], sent
    assert (await rig.txs.resolve(intent.id, timeout=30)).status is (
        IntentStatus.AWAITING_EXECUTION
    )
    ((order_key, _order, _at),) = await rig.venue.open_orders(gmx.trader.address)
    gmx.execute(order_key, DOOMED_AT)
    assert position_of(gmx, key)[0] == SIZE_USD * USD // 10


async def test_the_keeper_decides_again_on_the_next_block_after_gmx_refuses(
    rig: Rig,
) -> None:
    """A partial top-up (the budget allows 10 USDC a position) GMX would cancel is refused on
    each block it is decided on; once the price allows it, the same decision is sent."""
    gmx = rig.gmx
    key = opened(gmx)
    rpc = FailoverRpc([gmx.chain.url])
    stream = BlockStream(rpc, poll_interval=0.05)
    keeper = Keeper(
        venue=rig.venue,
        rpc=rpc,
        stream=stream,
        journal=rig.journal,
        watch=Watch((gmx.trader.address,), gmx.trader.address),
        thresholds=Thresholds(
            MarketThresholds(
                top_up_below=Decimal("0.01"),
                top_up_to=Decimal("0.05"),
                reduce_below=Decimal("0.002"),
                close_below=Decimal("0.001"),
            )
        ),
        budget=Budget(TokenAmount(10 * USDC, 6), TokenAmount(5_000 * USDC, 6), TokenAmount(0, 6)),
        settings=LoopSettings(venue_token=gmx.usdc),
        txs=rig.txs,
        events=NoEvents(),
    )

    async def tick() -> list[Sent]:
        gmx.chain.mine()
        head = await stream.poll_once()
        assert isinstance(head, NewHead)
        report = await keeper.tick(head)
        return [s for s in report.sent if s.kind == "top_up"]

    def top_ups() -> list[Intent]:
        return [i for i in rig.journal.history() if i.kind == "top_up"]

    try:
        assert await tick() == []  # 1.95% at 2,000
        gmx.set_eth_price(DOOMED_AT)  # 25 USD left: 0.25%
        nonce = rig.nonce()
        for block in range(2):
            (refused,) = await tick()
            assert refused.outcome == "failed", refused
            assert len(top_ups()) == block + 1
        assert all(i.status is IntentStatus.FAILED for i in top_ups())
        assert all("LiquidatablePosition" in (i.failure or "") for i in top_ups())
        assert all(rig.journal.transactions(i.id) == [] for i in top_ups())
        assert rig.nonce() == nonce
        gmx.set_eth_price(1_975)  # 70 USD left; with 10 more, over 50 USD
        (sent,) = await tick()
        assert sent.outcome == "sent", sent
        failed = [i for i in top_ups() if i.status is IntentStatus.FAILED]
        out = [i for i in top_ups() if i.status is not IntentStatus.FAILED]
        assert len(failed) == 2
        assert [i.status for i in out] in (
            [IntentStatus.SENT],
            [IntentStatus.MINED],
            [IntentStatus.AWAITING_EXECUTION],
        ), out
        assert len(rig.journal.transactions(out[0].id)) == 1
        assert rig.nonce() == nonce + 1
        assert position_of(gmx, key)[2] == COLLATERAL * USDC  # the order waits for GMX
    finally:
        await rpc.close()


async def test_a_prepared_plan_shows_gmx_s_refusal_before_anything_is_sent(rig: Rig) -> None:
    gmx = rig.gmx
    key = opened(gmx)
    gmx.set_eth_price(DOOMED_AT)
    client = Client(
        rpc=FailoverRpc([gmx.chain.url]),
        venue=rig.venue,
        accounts=[gmx.trader.address],
        journal=rig.journal,
        txs=rig.txs,
        wallet_token=(await rig.snapshot()).wallet.token,
    )
    doomed = await client.prepare_top_up(key, 10)
    assert not doomed.ok
    assert doomed.steps[-1].revert == liquidatable(Decimal(35), 1, 50).removeprefix(
        "simulation_reverted: "
    )
    enough = await client.prepare_top_up(key, 40)
    assert enough.ok, enough.summary()
    await client.rpc.close()
