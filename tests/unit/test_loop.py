"""keeper.loop without a node: fingerprints, journal history, exit codes, held decisions.

The venue and the block stream are small stand-ins implementing the same interfaces (the
real ones are exercised against Anvil in tests/integration/keeper)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from keeper.chain.blocks import NewHead
from keeper.chain.jsonrpc import RpcError
from keeper.chain.revert import RevertReason
from keeper.chain.rpc import BlockHeader
from keeper.journal import IntentStatus, Journal
from keeper.lease import Change, Leadership, LeaseSettings, Role
from keeper.loop import (
    EXIT_FATAL,
    EXIT_OK,
    Keeper,
    LoopSettings,
    NoEvents,
    fingerprint,
    history_from_journal,
)
from keeper.margin import Metric
from keeper.model import Action, Market, Scope, Severity, Snapshot, Token
from keeper.policy import Budget, MarketThresholds, Thresholds
from keeper.units import TokenAmount
from keeper.venues.base import ActionState, Execution, MinedTx, TxPlan, VenueRead, Watch
from tests.unit.margin_factories import USDC, ref_account, ref_market, ref_position, snapshot, usdc

THRESHOLDS = Thresholds(
    MarketThresholds(
        top_up_below=Decimal("0.05"),
        top_up_to=Decimal("0.08"),
        reduce_below=Decimal("0.04"),
        close_below=Decimal("0.03"),
        metric=Metric.RATIO,
    )
)
BUDGET = Budget(usdc("500"), usdc("1000"), usdc("100"))


def head(n: int) -> NewHead:
    return NewHead(BlockHeader(n, f"0x{n:064x}", f"0x{n - 1:064x}", 1_700_000_000 + n, 1))


@dataclass
class StandInVenue:
    """Answers reads with given snapshots (or raises); builds nothing."""

    snapshots: list[Snapshot | BaseException]
    name: str = "refex"
    execution: Execution = Execution.SYNC
    reads: int = 0

    async def read(self, watch: Watch, *, block: int | None = None) -> VenueRead:
        item = self.snapshots[min(self.reads, len(self.snapshots) - 1)]
        self.reads += 1
        if isinstance(item, BaseException):
            raise item
        return VenueRead(item)

    async def collateral_tokens(self) -> tuple[Token, ...]:
        return (USDC,)

    async def markets(self, *, block: int | None = None) -> tuple[Market, ...]:
        return ()

    async def build(self, action: Action, snapshot: Snapshot, *, sender: str) -> TxPlan:
        raise AssertionError("nothing is built in these tests")

    async def action_state(self, plan: TxPlan, mined: Sequence[MinedTx]) -> ActionState:
        return ActionState.PENDING

    def decode_error(self, data: bytes) -> RevertReason:
        raise AssertionError("no errors to decode")


@dataclass
class StandInStream:
    heads: list[NewHead] = field(default_factory=lambda: [head(n) for n in range(100, 200)])

    async def next(self) -> NewHead:
        await asyncio.sleep(0)
        return self.heads.pop(0)


def keeper(venue: StandInVenue, journal: Journal, **settings: object) -> Keeper:
    return Keeper(
        venue=venue,  # a stand-in of the Venue protocol
        rpc=None,  # type: ignore[arg-type]  # no sequencer feed: never used
        stream=StandInStream(),  # type: ignore[arg-type]
        journal=journal,
        watch=Watch(("0xTrader",)),
        thresholds=THRESHOLDS,
        budget=BUDGET,
        settings=LoopSettings(venue_token="0xUSDC", **settings),  # type: ignore[arg-type]
        txs=None,
        events=NoEvents(),
    )


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "j.sqlite")


def risky() -> Snapshot:
    # 1000 TOK long at 2.5 with 250 margin; at 2.30 the ratio is (250 - 200) / 2300 = 2.2%
    return snapshot((ref_market("2.30", m="0.01"),), (ref_position(),))


def test_fingerprint_changes_when_the_subject_does() -> None:
    a = snapshot((ref_market(),), (ref_position(),))
    b = snapshot((ref_market(),), (ref_position(collateral="300"),))
    c = snapshot((ref_market(),), ())
    fa = fingerprint(a, "refex", Scope.POSITION, "p1")
    assert fa == fingerprint(a, "refex", Scope.POSITION, "p1")
    assert fa != fingerprint(b, "refex", Scope.POSITION, "p1")
    assert fingerprint(c, "refex", Scope.POSITION, "p1") is None
    cross = snapshot(
        (ref_market(),),
        (ref_position(key="x1", cross_account="acct"),),
        accounts=(ref_account("100", ("x1",)),),
    )
    assert fingerprint(cross, "refex", Scope.ACCOUNT, "acct") is not None
    assert fingerprint(cross, "refex", Scope.ACCOUNT, "nobody") is None


def test_history_counts_open_recent_and_spend(journal: Journal) -> None:
    a, _ = journal.open_intent("refex", "p1", "top_up", {}, block=10, spend_token="0xUSDC",
                               spend_amount=5 * 10**6)  # fmt: skip
    b, _ = journal.open_intent("refex", "p2", "close", {}, block=11)
    journal.set_status(b.id, IntentStatus.FAILED, failure="reverted")
    c, _ = journal.open_intent("refex", "p3", "top_up", {}, block=12)
    journal.set_status(c.id, IntentStatus.SKIPPED, detail="dry run")
    journal.open_intent("refex", "approve:0xusdc:0xtrader", "approve", {}, block=12)
    h = history_from_journal(journal, "refex", "0xUSDC", 6, since_block=0)
    assert h.open_intents == frozenset({"p1", "approve:0xusdc:0xtrader"})
    assert {(r.key, r.kind) for r in h.recent} == {("p1", "top_up"), ("p3", "top_up")}
    assert h.spent_in_window == usdc("5")
    assert a.status is IntentStatus.DECIDED


async def test_observer_mode_records_a_decision_once(journal: Journal) -> None:
    k = keeper(StandInVenue([risky()]), journal)
    first = await k.tick(head(1))
    second = await k.tick(head(2))
    assert first.held == "observer mode"
    assert [s.outcome for s in first.sent] == ["skipped"]
    assert second.sent == ()
    assert first.lowest_ratio is not None
    assert first.lowest_ratio < Decimal("0.03")
    [intent] = journal.history()
    assert intent.status is IntentStatus.SKIPPED


async def test_stop_returns_zero(journal: Journal) -> None:
    k = keeper(StandInVenue([snapshot((ref_market(),), ())]), journal, stop_after_ticks=3)
    assert await k.run() == EXIT_OK
    assert k.ticks == 3


async def test_an_unexpected_error_is_fatal(journal: Journal) -> None:
    k = keeper(StandInVenue([ZeroDivisionError("bug")]), journal)
    assert await k.run() == EXIT_FATAL


@dataclass
class RecordedEvents(NoEvents):
    alerts: list[tuple[str, Severity, str]] = field(default_factory=list)

    def alert(self, code: str, severity: Severity, message: str, *, key: str = "") -> None:
        self.alerts.append((code, severity, message))


async def test_a_type_error_escaping_the_policy_is_fatal_and_named(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    # a budget in 18 decimals against a wallet in USDC (6): decide refuses to mix the scales
    k = keeper(StandInVenue([risky()]), journal)
    k.budget = Budget(TokenAmount(10**18, 18), TokenAmount(10**19, 18), TokenAmount(0, 18))
    events = RecordedEvents()
    k.events = events
    with caplog.at_level(logging.ERROR, logger="keeper.loop"):
        assert await k.run() == EXIT_FATAL
    [(code, severity, message)] = events.alerts
    assert (code, severity) == ("fatal", Severity.CRITICAL)
    assert "at block 100: TypeError: budget.max_top_up_per_position" in message
    assert "the keeper stopped" in message
    assert any(
        "TypeError: budget.max_top_up_per_position" in r.getMessage() for r in caplog.records
    )
    assert journal.history() == []  # nothing half-done


async def test_rpc_errors_are_survived_until_the_limit(journal: Journal) -> None:
    ok = snapshot((ref_market(),), ())
    bad = RpcError("eth_call", "node unwell")
    k = keeper(StandInVenue([bad, bad, ok]), journal, stop_after_ticks=2)
    assert await k.run() == EXIT_OK  # two failed ticks, then it recovers
    k = keeper(StandInVenue([bad]), journal, max_consecutive_errors=3)
    assert await k.run() == EXIT_FATAL


async def test_stop_interrupts_the_wait_for_a_block(journal: Journal) -> None:
    class Silent(StandInStream):
        async def next(self) -> NewHead:
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

    k = keeper(StandInVenue([snapshot((ref_market(),), ())]), journal)
    k.stream = Silent()  # type: ignore[assignment]
    task = asyncio.create_task(k.run())
    await asyncio.sleep(0.05)
    k.stop()
    assert await asyncio.wait_for(task, 5) == EXIT_OK


async def test_a_standby_reads_and_writes_nothing_until_it_takes_the_lease(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite"
    settings = LeaseSettings(lease_ms=60_000)
    other = Leadership(Journal(path), "31337:0xkeeper", settings, owner="other")
    assert other.step(99) is Change.ACQUIRED
    mine_journal = Journal(path)
    mine = Leadership(mine_journal, "31337:0xkeeper", settings, owner="mine")
    events = RecordedEvents()
    venue = StandInVenue([risky()])
    k = keeper(venue, mine_journal, stop_after_ticks=2)
    k.leader = mine
    k.events = events
    assert await k.run() == EXIT_OK
    assert venue.reads == 2  # the chain is read on every block
    assert mine_journal.history() == []  # nothing decided, nothing recorded
    assert mine.role is Role.STANDBY
    other.release()  # the leader stops cleanly: its lease lapses now
    k = keeper(venue, mine_journal, stop_after_ticks=1)
    k.leader = mine
    k.events = events
    assert await k.run() == EXIT_OK
    [intent] = mine_journal.history()
    assert (intent.status, intent.epoch) == (IntentStatus.SKIPPED, 2)  # observer: recorded once
    assert [code for code, *_ in events.alerts] == ["leader_acquired"]
    assert mine.role is Role.STANDBY  # a clean stop gives the lease up
    [lease] = mine_journal.leases()
    assert lease.expired()
