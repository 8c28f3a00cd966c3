"""The keeper loop driven tick by tick in-process against the devnet: what it decides, sends
and records on each block."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3.contract.contract import ContractFunction

from keeper.chain.blocks import BlockStream, NewHead
from keeper.chain.rpc import FailoverRpc
from keeper.journal import IntentStatus, Journal
from keeper.loop import Keeper, LoopSettings, TickReport
from keeper.margin import Metric
from keeper.model import Severity, TopUp
from keeper.policy import Budget, MarketThresholds, Thresholds
from keeper.signer import Signer
from keeper.testing.devnet import Devnet
from keeper.txs import FeePolicy, TxConfig, TxManager
from keeper.units import TokenAmount
from keeper.venues.base import DELEGATION_LOW_ACTIONS, Watch
from keeper.venues.reference import ReferenceVenue

pytestmark = pytest.mark.integration
USDC = 10**6

THRESHOLDS = Thresholds(
    MarketThresholds(
        top_up_below=Decimal("0.05"),
        top_up_to=Decimal("0.08"),
        reduce_below=Decimal("0.04"),
        close_below=Decimal("0.03"),
        metric=Metric.RATIO,
    )
)


@dataclass
class Recorder:
    reports: list[TickReport]
    alerts: list[tuple[str, Severity, str]]

    def tick_done(self, report: TickReport) -> None:
        self.reports.append(report)

    def alert(self, code: str, severity: Severity, message: str, *, key: str = "") -> None:
        self.alerts.append((code, severity, message))


@dataclass
class Rig:
    devnet: Devnet
    keeper: Keeper
    journal: Journal
    events: Recorder
    stream: BlockStream

    async def tick(self) -> TickReport:
        self.devnet.chain.mine()
        head = await self.stream.poll_once()
        assert isinstance(head, NewHead)
        return await self.keeper.tick(head)


def budget(per_position: int = 5_000, per_day: int = 20_000, reserve: int = 1_000) -> Budget:
    return Budget(
        TokenAmount(per_position * USDC, 6),
        TokenAmount(per_day * USDC, 6),
        TokenAmount(reserve * USDC, 6),
    )


async def make_rig(
    devnet: Devnet, tmp_path: Path, *, dry_run: bool = False, budget_: Budget | None = None,
    halt_file: Path | None = None, operator: bool = False, check_blocks: int = 0,
) -> AsyncIterator[Rig]:  # fmt: skip
    """The loop on the devnet, signing as the trader, or with `operator` as the operator the
    trader approved (delegated mode, grants checked every `check_blocks` blocks)."""
    d = devnet.deployment
    trader = devnet.account("operator" if operator else "trader")
    rpc = FailoverRpc([devnet.chain.url])
    venue = await ReferenceVenue.connect(
        rpc, exchange=d.exchange, lens=d.lens, multicall=d.multicall
    )
    journal = Journal(tmp_path / "journal.sqlite")
    signer = Signer.from_key(trader.key)
    txs = TxManager(rpc, journal, signer, TxConfig(chain_id=d.chain_id, fees=FeePolicy(10**11)))
    events = Recorder([], [])
    stream = BlockStream(rpc, poll_interval=0.05)
    keeper = Keeper(
        venue=venue,
        rpc=rpc,
        stream=stream,
        journal=journal,
        watch=Watch((d.trader,), signer.address, d.usdc, delegated=operator),
        thresholds=THRESHOLDS,
        budget=budget_ or budget(),
        settings=LoopSettings(
            venue_token=venue.collateral_token.address,
            dry_run=dry_run,
            halt_file=halt_file,
            delegation_check_blocks=check_blocks,
        ),
        txs=txs,
        events=events,
    )
    try:
        yield Rig(devnet, keeper, journal, events, stream)
    finally:
        journal.close()
        await rpc.close()


@pytest.fixture
async def rig(devnet: Devnet, tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in make_rig(devnet, tmp_path):
        yield r


def collateral(devnet: Devnet, key: bytes) -> int:
    return int(devnet.exchange.functions.positions(key).call().collateral)


async def test_a_falling_price_gets_a_top_up_in_the_next_block(rig: Rig) -> None:
    d = rig.devnet
    key = d.open_isolated(d.account("trader"), "ETH", long=True, collateral=2_000, size=10)
    first = await rig.tick()
    assert first.actions == ()
    before = collateral(d, key)
    d.set_price("ETH", Decimal("1880"))  # ratio falls below 5%
    report = await rig.tick()
    kinds = [a.kind for a in report.actions]
    assert kinds == ["top_up"], report
    [sent] = [s for s in report.sent if s.kind == "top_up"]
    assert sent.outcome in ("sent", "mined", "done")
    after = await rig.tick()  # drives the receipt
    assert collateral(d, key) > before
    intents = rig.journal.history(position_key="0x" + key.hex())
    assert [i.status for i in intents] == [IntentStatus.DONE]
    assert after.actions == ()  # restored above the trigger: nothing more to do
    assert any(code == "action_sent" for code, _, _ in rig.events.alerts)


async def test_dry_run_records_once_and_sends_nothing(devnet: Devnet, tmp_path: Path) -> None:
    async for rig in make_rig(devnet, tmp_path, dry_run=True):
        d = rig.devnet
        trader = d.account("trader")
        key = d.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
        d.set_price("ETH", Decimal("1880"))
        nonce = d.w3.eth.get_transaction_count(trader.address)
        first = await rig.tick()
        second = await rig.tick()
        assert [s.outcome for s in first.sent] == ["skipped"]
        assert first.held == "dry run"
        assert second.sent == ()  # the same decision is not recorded again
        assert d.w3.eth.get_transaction_count(trader.address) == nonce
        [intent] = rig.journal.history(position_key="0x" + key.hex())
        assert intent.status is IntentStatus.SKIPPED


async def test_halt_file_stops_sending_within_one_block(devnet: Devnet, tmp_path: Path) -> None:
    halt = tmp_path / "HALT"
    async for rig in make_rig(devnet, tmp_path, halt_file=halt):
        d = rig.devnet
        trader = d.account("trader")
        d.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
        halt.touch()
        d.set_price("ETH", Decimal("1880"))
        nonce = d.w3.eth.get_transaction_count(trader.address)
        report = await rig.tick()
        assert report.held is not None
        assert "HALT" in report.held
        assert d.w3.eth.get_transaction_count(trader.address) == nonce
        halt.unlink()
        d.set_price("ETH", Decimal("1870"))  # a new state: decided again, and now sent
        report = await rig.tick()
        assert [s.kind for s in report.sent if s.outcome != "skipped"] == ["top_up"]


def send_nowait(devnet: Devnet, account: LocalAccount, call: ContractFunction) -> str:
    """Sign and send without waiting for a receipt (automine may be off)."""
    w3 = devnet.w3
    tx = {
        "to": call.address,
        "data": call._encode_transaction_data(),
        "value": 0,
        "gas": 1_000_000,
        "maxPriorityFeePerGas": 2 * 10**9,
        "maxFeePerGas": 2 * devnet.chain.next_base_fee() + 2 * 10**9,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": w3.eth.chain_id,
        "type": 2,
    }
    return "0x" + w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction).hex()


async def test_a_position_closed_from_outside_makes_the_open_intent_obsolete(
    rig: Rig,
) -> None:
    d = rig.devnet
    trader = d.account("trader")
    key = d.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    d.set_price("ETH", Decimal("1880"))
    d.chain.rpc("evm_setAutomine", False)
    try:
        report = await rig.tick()  # decides and sends; nothing is mined yet
        assert [a.kind for a in report.actions] == ["top_up"]
        [intent] = rig.journal.history(position_key="0x" + key.hex())
        assert intent.status is IntentStatus.SENT
        [tx] = rig.journal.transactions(intent.id)
        # the keeper's transaction is lost (dropped from the pool), and meanwhile the trader
        # closes the position from a wallet, which takes the same nonce
        d.chain.rpc("anvil_dropTransaction", tx.hash)
        send_nowait(d, trader, d.exchange.functions.closePosition(0, True))
        d.chain.mine()
    finally:
        d.chain.rpc("evm_setAutomine", True)
    for _ in range(3):
        await rig.tick()
    [intent] = rig.journal.history(position_key="0x" + key.hex())
    assert intent.status is IntentStatus.OBSOLETE, rig.journal.events(intent.id)
    assert d.exchange.functions.positions(key).call().size == 0
    assert tx.hash not in mined_hashes(d)
    assert d.w3.eth.get_transaction_count(trader.address) == tx.nonce + 1  # the close only


def mined_hashes(devnet: Devnet) -> set[str]:
    w3 = devnet.w3
    out: set[str] = set()
    for n in range(max(0, w3.eth.block_number - 10), w3.eth.block_number + 1):
        out.update("0x" + h.hex() for h in w3.eth.get_block(n)["transactions"])  # type: ignore[union-attr]
    return out


async def test_an_action_stuck_when_the_position_is_liquidated_is_cancelled(rig: Rig) -> None:
    d = rig.devnet
    trader = d.account("trader")
    key = d.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    d.set_price("ETH", Decimal("1880"))
    d.chain.rpc("evm_setAutomine", False)
    try:
        report = await rig.tick()
        assert [a.kind for a in report.actions] == ["top_up"]
        [intent] = rig.journal.history(position_key="0x" + key.hex())
        [tx] = rig.journal.transactions(intent.id)
        # the top-up is priced out (the base fee jumps above its max fee) and, meanwhile,
        # the price crashes and a liquidator takes the position
        d.chain.rpc("anvil_setNextBlockBaseFeePerGas", hex(tx.max_fee * 4))
        d.chain.mine()
        oracle = d.account("owner")
        send_nowait(d, oracle, d.feed("ETH").functions.setAnswer(1_700 * 10**8))
        d.chain.mine()
        send_nowait(
            d, d.account("liquidator"), d.exchange.functions.liquidate(trader.address, 0, True)
        )
        d.chain.mine()
        assert d.exchange.functions.positions(key).call().size == 0
    finally:
        d.chain.rpc("evm_setAutomine", True)
    for _ in range(4):
        await rig.tick()
    [intent] = rig.journal.history(position_key="0x" + key.hex())
    assert intent.status is IntentStatus.OBSOLETE, rig.journal.events(intent.id)
    kinds = [t.kind.value for t in rig.journal.transactions(intent.id)]
    assert kinds[0] == "action"
    assert kinds[-1] == "cancel"
    assert d.w3.eth.get_transaction_count(trader.address) == tx.nonce + 1  # the cancel only


async def test_as_operator_the_loop_alerts_when_the_grant_runs_low_and_when_it_is_lost(
    devnet: Devnet, tmp_path: Path
) -> None:
    trader = devnet.account("trader")
    operator = devnet.deployment.operator
    devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    devnet.approve_operator(trader, actions=DELEGATION_LOW_ACTIONS - 1)
    async for rig in make_rig(devnet, tmp_path, operator=True, check_blocks=3):
        await rig.tick()
        [(code, severity, message)] = rig.events.alerts
        assert (code, severity) == ("delegation_low", Severity.WARNING)
        assert f"{DELEGATION_LOW_ACTIONS - 1} operator actions left" in message
        devnet.chain.send(trader, devnet.exchange.functions.revokeOperator(operator))
        await rig.tick()  # checked two blocks ago: not again yet
        assert len(rig.events.alerts) == 1
        await rig.tick()
        code, severity, message = rig.events.alerts[-1]
        assert (code, severity) == ("delegation_lost", Severity.CRITICAL)
        assert f"{operator} can no longer act for {trader.address}" in message
        assert "has not approved" in message


async def test_as_operator_the_loop_tops_up_from_the_traders_wallet(
    devnet: Devnet, tmp_path: Path
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    devnet.approve_operator(trader, top_up_limit=400)
    wallet = devnet.usdc_balance(trader.address)
    async for rig in make_rig(devnet, tmp_path, operator=True, budget_=budget(reserve=0)):
        await rig.tick()
        devnet.set_price("ETH", Decimal("1880"))
        report = await rig.tick()
        [top_up] = [a for a in report.actions if isinstance(a, TopUp)]
        assert top_up.amount.raw == 400 * USDC  # the grant's limit binds (250 more needed)
        assert top_up.reason.code == "top_up_partial"
        await rig.tick()
        assert devnet.usdc_balance(trader.address) == wallet - top_up.amount.raw
        assert collateral(devnet, key) > 2_000 * USDC - 10 * USDC
