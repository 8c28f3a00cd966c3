"""The keeper loop on Gains, signing as the trader's trading delegate: a falling price brings a
trade near its liquidation price, the keeper tops it up from the trader's wallet as a pending
order, the oracle executes it, and the oracle's liquidation at a price past the old
liquidation price is then refused: the keeper prevented it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from keeper.chain.blocks import BlockStream, NewHead
from keeper.chain.rpc import FailoverRpc
from keeper.journal import IntentStatus, Journal
from keeper.loop import Keeper, LoopSettings, NoEvents, TickReport
from keeper.policy import Budget, MarketThresholds, Thresholds
from keeper.runtime import check_delegations
from keeper.signer import Signer
from keeper.txs import FeePolicy, TxConfig, TxManager
from keeper.units import TokenAmount
from keeper.venues.base import Watch
from keeper.venues.gains import GainsVenue, trade_key
from tests.integration.gains.deploy import ETH, PRICE, USDC, GainsDevnet

pytestmark = pytest.mark.integration

THRESHOLDS = Thresholds(
    MarketThresholds(
        top_up_below=Decimal("0.03"),
        top_up_to=Decimal("0.06"),
        reduce_below=Decimal("0.01"),
        close_below=Decimal("0.005"),
    )
)


@dataclass
class Rig:
    gains: GainsDevnet
    venue: GainsVenue
    keeper: Keeper
    journal: Journal
    stream: BlockStream

    async def tick(self) -> TickReport:
        self.gains.chain.mine()
        head = await self.stream.poll_once()
        assert isinstance(head, NewHead)
        return await self.keeper.tick(head)

    def intents(self, kind: str) -> list[IntentStatus]:
        return [i.status for i in self.journal.history() if i.kind == kind]


@pytest.fixture
async def rig(gains: GainsDevnet, tmp_path: Path) -> AsyncIterator[Rig]:
    rpc = FailoverRpc([gains.url])
    venue = await GainsVenue.connect(rpc, gains.deployment, wallet_token=gains.usdc)
    for step in await venue.delegation_setup(
        gains.trader.address,
        gains.keeper.address,
        max_actions=100,
        expires_at=2**40,
        token=gains.usdc,
    ):
        gains.send_request(gains.trader, step)
    journal = Journal(tmp_path / "journal.sqlite")
    signer = Signer.from_key(gains.keeper.key)
    chain_id = int(gains.chain.w3.eth.chain_id)
    txs = TxManager(
        rpc, journal, signer, TxConfig(chain_id=chain_id, fees=FeePolicy(10**11)),
        delayed_venues={venue.name},
    )  # fmt: skip
    stream = BlockStream(rpc, poll_interval=0.05)
    keeper = Keeper(
        venue=venue,
        rpc=rpc,
        stream=stream,
        journal=journal,
        watch=Watch((gains.trader.address,), signer.address, gains.usdc, delegated=True),
        thresholds=THRESHOLDS,
        budget=Budget(
            TokenAmount(1_000 * USDC, 6), TokenAmount(5_000 * USDC, 6), TokenAmount(100, 6)
        ),
        settings=LoopSettings(venue_token=gains.usdc, delegation_check_blocks=10),
        txs=txs,
        events=NoEvents(),
    )
    try:
        yield Rig(gains, venue, keeper, journal, stream)
    finally:
        journal.close()
        await rpc.close()


async def test_the_keeper_tops_up_as_delegate_and_the_liquidation_is_refused(rig: Rig) -> None:
    gains, venue = rig.gains, rig.venue
    trader = gains.trader.address
    [grant] = await check_delegations(venue, [trader], gains.keeper.address, gains.usdc)
    assert grant.active
    index = gains.open(ETH, True, 1_000 * USDC, 20_000, 2000)
    key = trade_key(trader, index)
    first = await rig.tick()
    assert first.actions == ()
    old_liq = venue.trades[key].liquidation_price
    assert 1900 * PRICE < old_liq < 1960 * PRICE
    gains.set_price(ETH, 1960)
    wallet = gains.balance(trader)
    report = await rig.tick()
    assert [a.kind for a in report.actions] == ["top_up"], report
    await rig.tick()  # mined: the order waits for the oracle
    assert rig.intents("top_up") == [IntentStatus.AWAITING_EXECUTION]
    assert gains.balance(trader) < wallet  # paid from the trader's wallet
    assert gains.balance(gains.keeper.address) == 0
    again = await rig.tick()
    assert again.sent == ()  # nothing sent twice while the order waits
    [order] = gains.pending_orders(trader)
    gains.fulfill(trader, order[2], 1960 * PRICE)
    await rig.tick()
    assert rig.intents("top_up") == [IntentStatus.DONE]
    new_liq = venue.trades[key].liquidation_price
    assert new_liq < 1900 * PRICE < old_liq
    gains.set_price(ETH, 1900)
    with pytest.raises(AssertionError, match="reverted"):
        gains.liquidate(trader, index, 1900 * PRICE)  # it would have gone at the old price
    assert gains.trade(trader, index).is_open
    await rig.tick()
