"""The keeper loop on GMX: a top-up goes out as an order, waits for the order keeper, and is
done only when the order executes; a cancelled order is reconsidered on the next block."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from keeper.chain.blocks import BlockStream, NewHead
from keeper.chain.rpc import FailoverRpc
from keeper.cli import main
from keeper.journal import IntentStatus, Journal
from keeper.loop import Keeper, LoopSettings, NoEvents, TickReport
from keeper.policy import Budget, MarketThresholds, Thresholds
from keeper.signer import Signer
from keeper.txs import FeePolicy, TxConfig, TxManager
from keeper.units import TokenAmount
from keeper.venues.base import Watch
from keeper.venues.gmx import GmxVenue, gmx_rebuild
from tests.integration.gmx.deploy import GmxDevnet
from tests.integration.gmx.test_gmx_anvil import position_of

pytestmark = pytest.mark.integration
USDC = 10**6

THRESHOLDS = Thresholds(
    MarketThresholds(
        top_up_below=Decimal("0.03"),
        top_up_to=Decimal("0.045"),
        reduce_below=Decimal("0.015"),
        close_below=Decimal("0.01"),
    )
)


@dataclass
class Rig:
    gmx: GmxDevnet
    keeper: Keeper
    journal: Journal
    stream: BlockStream

    async def tick(self) -> TickReport:
        self.gmx.chain.mine()
        head = await self.stream.poll_once()
        assert isinstance(head, NewHead)
        return await self.keeper.tick(head)

    def intents(self, kind: str) -> list[IntentStatus]:
        return [i.status for i in self.journal.history() if i.kind == kind]


@pytest.fixture
async def rig(gmx: GmxDevnet, tmp_path: Path) -> AsyncIterator[Rig]:
    rpc = FailoverRpc([gmx.chain.url])
    venue = await GmxVenue.connect(
        rpc, gmx.deployment, multicall_code_override=True, wallet_token=gmx.usdc
    )
    journal = Journal(tmp_path / "journal.sqlite")
    signer = Signer.from_key(gmx.trader.key)
    chain_id = int(gmx.chain.w3.eth.chain_id)
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
        watch=Watch((gmx.trader.address,), signer.address),
        thresholds=THRESHOLDS,
        budget=Budget(
            TokenAmount(1_000 * USDC, 6), TokenAmount(5_000 * USDC, 6), TokenAmount(100, 6)
        ),
        settings=LoopSettings(venue_token=gmx.usdc),
        txs=txs,
        events=NoEvents(),
        rebuild=gmx_rebuild(venue, journal),
    )
    try:
        yield Rig(gmx, keeper, journal, stream)
    finally:
        journal.close()
        await rpc.close()


async def test_a_top_up_order_is_done_when_it_executes(rig: Rig) -> None:
    gmx = rig.gmx
    key = gmx.open(is_long=True, size_usd=10_000, collateral_usdc=500 * USDC, eth_usd=2_000)
    first = await rig.tick()
    assert first.actions == ()
    gmx.set_eth_price(1_950)
    report = await rig.tick()
    assert [a.kind for a in report.actions] == ["top_up"], (
        first.lowest_ratio,
        report.lowest_ratio,
        report.positions,
        report.read_issues,
    )
    await rig.tick()  # the order is mined: awaiting execution by the order keeper
    assert rig.intents("top_up") == [IntentStatus.AWAITING_EXECUTION]
    again = await rig.tick()
    assert again.sent == ()  # nothing sent twice while the order waits
    venue = rig.keeper.venue
    assert isinstance(venue, GmxVenue)
    ((order_key, _order, _at),) = await venue.open_orders(gmx.trader.address)
    _, _, before = position_of(gmx, key)
    gmx.execute(order_key, 1_950)
    await rig.tick()
    assert rig.intents("top_up") == [IntentStatus.DONE]
    _, _, after = position_of(gmx, key)
    assert after > before
    [intent] = [i for i in rig.journal.history() if i.kind == "top_up"]
    notes = [e.detail for e in rig.journal.events(intent.id)]
    assert any(f"order 0x{order_key.hex()}" in n for n in notes), notes


async def test_a_cancelled_order_is_reconsidered(rig: Rig) -> None:
    gmx = rig.gmx
    gmx.open(is_long=True, size_usd=10_000, collateral_usdc=500 * USDC, eth_usd=2_000)
    await rig.tick()
    gmx.set_eth_price(1_950)
    await rig.tick()
    await rig.tick()
    venue = rig.keeper.venue
    assert isinstance(venue, GmxVenue)
    ((order_key, _order, _at),) = await venue.open_orders(gmx.trader.address)
    gmx.keeper_cancel(order_key, "test: price moved")
    await rig.tick()
    assert rig.intents("top_up") == [IntentStatus.CANCELLED]
    report = await rig.tick()  # still below the trigger: the policy decides again
    assert [a.kind for a in report.actions] == ["top_up"]
    assert rig.intents("top_up")[0] in (IntentStatus.SIGNED, IntentStatus.SENT, IntentStatus.MINED,
                                        IntentStatus.AWAITING_EXECUTION)  # fmt: skip


def test_positions_through_a_gmx_config(
    gmx: GmxDevnet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = gmx.open(is_long=True, size_usd=10_000, collateral_usdc=500 * USDC, eth_usd=2_000)
    multicall = gmx.chain.deploy_contract(gmx.deployer, "Multicall3")
    d = gmx.deployment
    addresses = "\n".join(
        f'{name} = "{getattr(d, name)}"'
        for name in (
            "data_store", "reader", "exchange_router", "router", "order_vault", "role_store",
            "referral_storage", "event_emitter",
        )
    )  # fmt: skip
    config = tmp_path / "gmx.toml"
    config.write_text(
        f"""
[keeper]
mode = "observer"

[chain]
chain_id = {d.chain_id}
rpc = ["{gmx.chain.url}"]
multicall = "{multicall}"

[venue]
kind = "gmx"
{addresses}

[accounts]
watch = ["{gmx.trader.address}"]

[thresholds]
top_up_below = "0.03"
top_up_to = "0.045"
reduce_below = "0.015"
close_below = "0.01"

[budget]
token = "USDC"
max_top_up_per_position = "1000"
max_spend_per_day = "5000"
reserve = "0"
"""
    )
    assert main(["config", "check", str(config)]) == 0
    capsys.readouterr()
    assert main(["positions", "--config", str(config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    [row] = data["positions"]
    assert row["key"] == key
    assert row["side"] == "long"
