"""The keeper: one tick per block. Snapshot -> policy -> journal -> transactions -> record.

Each tick reads the watched accounts pinned to the new head, checks the journal's open
intents against that fresh snapshot (a position that shrank, grew, closed or was liquidated
by someone else makes its intent obsolete instead of acting on stale figures), asks the
policy what to do, records each decision in the journal (one open intent per position), and
hands the transactions to the transaction manager, which sends without waiting for receipts.
Receipts, replacements and confirmations are driven a step per tick.

Nothing is sent while halted (a halt file exists, or SIGUSR1 toggled it), in dry-run or
observer mode (decisions are recorded as `skipped`), or while an L2 sequencer is down or in
its grace period after coming back. SIGINT/SIGTERM stop the loop after the current tick; the
bookkeeping of what is in flight is finished, and `run` returns 0. A fatal error returns
EXIT_FATAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from eth_abi.abi import decode as abi_decode
from eth_hash.auto import keccak

from keeper import margin
from keeper.alerts import AlertCode
from keeper.chain.blocks import BlockStream, NewHead
from keeper.chain.jsonrpc import RpcError
from keeper.chain.rpc import ChainReads
from keeper.journal import (
    Intent,
    IntentStatus,
    Journal,
    JournalError,
    JournalFencedError,
    JournalUnavailableError,
    TxStatus,
)
from keeper.lease import Change, Leadership
from keeper.model import (
    Action,
    Alert,
    Close,
    Reason,
    Reduce,
    Scope,
    Severity,
    Snapshot,
    Token,
    TopUp,
    Withdraw,
)
from keeper.policy import Budget, History, RecentAction, Thresholds, decide
from keeper.txs import Failure, Rebuild, TxManager, TxOutcome, TxRequest
from keeper.units import TokenAmount
from keeper.venues.base import (
    ActionState,
    Delegates,
    LogEntry,
    MinedTx,
    SimulatesExecution,
    TxPlan,
    Venue,
    VenueError,
    VenueRead,
    Watch,
)
from keeper.venues.base import TxRequest as VenueTx

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FATAL = 3
DAY_MS = 86_400_000
# intents that serve another one (an approval, an order's cancel), not a position
_HOUSEKEEPING = frozenset({"approve", "cancel_order", "delegation_setup"})
_LATEST_ROUND_DATA = keccak(b"latestRoundData()")[:4]


class Events(Protocol):
    """Where the loop reports: metrics and alerts (keeper.ops wires both)."""

    def tick_done(self, report: TickReport) -> None: ...

    def alert(self, code: str, severity: Severity, message: str, *, key: str = "") -> None: ...


class NoEvents:
    """Reports nowhere (tests, manual commands)."""

    def tick_done(self, report: TickReport) -> None:
        return None

    def alert(self, code: str, severity: Severity, message: str, *, key: str = "") -> None:
        level = logging.INFO if severity is Severity.INFO else logging.WARNING
        log.log(level, "alert %s (%s): %s", code, severity, message)


@dataclass(frozen=True, slots=True)
class SequencerFeed:
    """A Chainlink L2 sequencer uptime feed: answer 0 = up, 1 = down; startedAt = since when."""

    address: str
    grace_seconds: int = 3600


@dataclass(frozen=True, slots=True)
class LoopSettings:
    venue_token: str  # the collateral token's address: spend is counted per token
    dry_run: bool = False
    halt_file: Path | None = None
    sequencer: SequencerFeed | None = None
    resolve_timeout: float = 0.0  # seconds a tick spends driving each in-flight intent
    approval_timeout: float = 60.0  # seconds a tick waits for an approval to be mined
    max_consecutive_errors: int = 0  # 0: never give up on read errors
    stop_after_ticks: int | None = None  # tests and one-shot runs
    delegation_check_blocks: int = 0  # delegated mode: check the grants every N blocks (0: never)


@dataclass(frozen=True, slots=True)
class Sent:
    intent_id: int
    key: str
    kind: str
    outcome: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TickReport:
    block_number: int
    block_time: int
    skipped_blocks: int
    seconds: float
    positions: int
    accounts: int
    lowest_ratio: Decimal | None
    actions: tuple[Action, ...]
    sent: tuple[Sent, ...]
    obsolete: tuple[int, ...]
    held: str | None  # why nothing was sent this tick (halt, dry run, sequencer), if so
    read_issues: tuple[str, ...] = ()
    wallet_balance: TokenAmount | None = None
    role: str | None = None  # with a leader lease: "leader" or "standby"
    epoch: int | None = None  # the lease's epoch while this replica leads


def fingerprint(snapshot: Snapshot, venue: str, scope: Scope, key: str) -> str | None:
    """What an intent's subject looked like: None if it is gone. A different fingerprint on a
    later block means the subject changed under the intent (by someone else, or the venue)."""
    if scope is Scope.POSITION:
        try:
            p = snapshot.position(venue, key)
        except KeyError:
            return None
        return f"{p.side.value}:{p.size.raw}:{p.collateral.raw}"
    for account in snapshot.accounts:
        if account.venue == venue and account.key == key:
            legs = sorted(f"{p.key}:{p.size.raw}" for p in snapshot.positions_of(account))
            return f"{account.collateral.raw}|{','.join(legs)}"
    return None


def action_scope(action: Action) -> Scope:
    if isinstance(action, TopUp | Withdraw | Alert):
        return action.scope
    return Scope.POSITION


def action_payload(action: Action, snapshot: Snapshot) -> dict[str, Any]:
    """The journal's record of an action: its figures as strings, and its subject's state."""
    payload: dict[str, Any] = {
        "kind": action.kind,
        "scope": action_scope(action).value,
        "account": action.account,
        "reason_code": action.reason.code,
        "reason": action.reason.message,
        "figures": dict(action.reason.figures),
        "fingerprint": fingerprint(snapshot, action.venue, action_scope(action), action.key),
        "block": snapshot.block_number,
    }
    if isinstance(action, TopUp | Withdraw):
        payload["token"] = action.token.address
        payload["amount"] = str(action.amount.raw)
        payload["decimals"] = action.amount.decimals
    elif isinstance(action, Reduce):
        payload["market_id"] = action.market_id
        payload["size_delta"] = str(action.size_delta.raw)
        payload["decimals"] = action.size_delta.decimals
    elif isinstance(action, Close):
        payload["market_id"] = action.market_id
    return payload


def history_from_journal(
    journal: Journal,
    venue: str,
    token: str,
    decimals: int,
    *,
    since_block: int,
    now_ms: int | None = None,
) -> History:
    """The policy's view of the journal: open intents, recent actions, spend in a day."""
    open_keys = frozenset(i.position_key for i in journal.open_intents(venue))
    recent = tuple(
        RecentAction(key=i.position_key, block_number=i.created_block or 0, kind=i.kind)
        for i in journal.recent_actions(
            since_block=since_block,
            venue=venue,
            statuses=(
                IntentStatus.DECIDED,
                IntentStatus.SIGNED,
                IntentStatus.SENT,
                IntentStatus.MINED,
                IntentStatus.AWAITING_EXECUTION,
                IntentStatus.DONE,
                IntentStatus.SKIPPED,
            ),
        )
        if i.kind not in _HOUSEKEEPING
    )
    spent = journal.spend_in_window(token, DAY_MS, now_ms=now_ms)
    return History(
        open_intents=open_keys, recent=recent, spent_in_window=TokenAmount(spent, decimals)
    )


async def sequencer_hold(
    rpc: ChainReads, feed: SequencerFeed, block: int, block_time: int
) -> str | None:
    """Why actions must wait for the sequencer at `block`, or None when it is up and settled."""
    raw = await rpc.eth_call(feed.address, _LATEST_ROUND_DATA, block=block)
    try:
        _, answer, started_at, _, _ = abi_decode(
            ["uint80", "int256", "uint256", "uint256", "uint80"], raw
        )
    except Exception as exc:  # eth_abi raises several types for short or odd data
        raise RpcError("eth_call", f"sequencer feed {feed.address}: bad answer ({exc})") from None
    if answer == 1:
        return "sequencer down"
    if answer != 0:
        raise RpcError("eth_call", f"sequencer feed {feed.address}: unexpected answer {answer}")
    if block_time - int(started_at) < feed.grace_seconds:
        left = feed.grace_seconds - (block_time - int(started_at))
        return f"sequencer back up, in its grace period ({left}s left)"
    return None


@dataclass
class Executor:
    """Carries out one decided intent through the venue and the transaction manager: shared
    by the keeper loop and the manual commands, so both use the same journal and nonces."""

    venue: Venue
    txs: TxManager
    journal: Journal
    events: Events
    approval_timeout: float = 60.0

    async def carry_out(self, intent: Intent, action: Action, snap: Snapshot) -> list[Sent]:
        """Build the action's plan, send its approvals (awaited) and its main transaction
        (not awaited). A failed build fails the intent; a pending approval leaves it decided.
        On a venue that simulates its later execution (SimulatesExecution), a main
        transaction whose execution the venue would refuse is not sent: the intent fails as
        one whose simulation reverts does, with the venue's reason."""
        try:
            plan = await self.venue.build(action, snap, sender=self.txs.sender)
        except VenueError as exc:
            self.journal.set_status(
                intent.id,
                IntentStatus.FAILED,
                block=snap.block_number,
                failure=f"build: {exc}",
                detail=str(exc),
            )
            self.events.alert("action_failed", Severity.CRITICAL, f"{action.kind}: {exc}")
            return [Sent(intent.id, action.key, action.kind, "failed", str(exc))]
        out: list[Sent] = []
        for step in plan.steps[: plan.approvals]:
            done = await self._approve(step.to, step.data, step.description, snap.block_number)
            out.append(done)
            if done.outcome not in (IntentStatus.DONE.value, IntentStatus.MINED.value):
                return out  # the action stays decided; the next tick tries again
        main = plan.steps[plan.approvals :]
        if len(main) != 1:
            raise VenueError(f"{action.kind}: plans of {len(main)} steps after approvals")
        step = main[0]
        refused = await self._simulate_execution(intent, action, plan, snap)
        if refused is not None:
            out.append(refused)
            return out
        outcome = await self.txs.submit(
            TxRequest(intent.id, step.to, step.data, step.value, step.gas_headroom)
        )
        out.append(self._sent(intent, action.kind, outcome))
        return out

    async def _simulate_execution(
        self, intent: Intent, action: Action, plan: TxPlan, snap: Snapshot
    ) -> Sent | None:
        """The venue's simulation of the plan's later execution: None when it would execute
        (or the venue cannot simulate it), else the failed intent's Sent."""
        if not isinstance(self.venue, SimulatesExecution):
            return None
        revert = None
        try:
            revert = await self.venue.simulate_execution(plan, snap)
        except VenueError as exc:
            detail = f"execution simulation: {exc}"
        else:
            if revert is None:
                return None
            detail = f"execution: {revert.message}"
        failure = Failure.SIMULATION_REVERTED
        try:
            self.journal.set_status(
                intent.id,
                IntentStatus.FAILED,
                block=snap.block_number,
                failure=f"{failure.value}: {detail}",
                detail=detail,
            )
        except (JournalFencedError, JournalUnavailableError):
            raise
        except JournalError:  # closed meanwhile by another writer
            now = self.journal.intent(intent.id).status
            return Sent(intent.id, action.key, action.kind, now.value, detail)
        log.warning("intent %d failed (%s): %s", intent.id, failure.value, detail)
        outcome = TxOutcome(intent.id, IntentStatus.FAILED, failure, detail, revert=revert)
        return self._sent(intent, action.kind, outcome)

    async def _approve(self, token: str, data: bytes, description: str, block: int) -> Sent:
        key = f"approve:{token.lower()}:{self.txs.sender.lower()}"
        intent, new = self.journal.open_intent(
            self.venue.name, key, "approve", {"token": token, "scope": "approval"}, block=block,
            reason=description or "approve the venue to take the token",
        )  # fmt: skip
        if new:
            outcome = await self.txs.submit(TxRequest(intent.id, token, data, 0))
            if not outcome.is_open:
                return self._sent(intent, "approve", outcome)
        outcome = await self.txs.resolve(intent.id, timeout=self.approval_timeout)
        if outcome.status is IntentStatus.AWAITING_EXECUTION:
            # a delayed venue's intents wait for the venue; an approval is done once mined
            self.journal.set_status(intent.id, IntentStatus.DONE, detail="approval mined")
            outcome = replace(outcome, status=IntentStatus.DONE)
        return self._sent(intent, "approve", outcome)

    def _sent(self, intent: Intent, kind: str, outcome: TxOutcome) -> Sent:
        if outcome.failure is not None:
            severity = Severity.CRITICAL if outcome.needs_alert else Severity.WARNING
            code = "fee_cap_hit" if outcome.failure.value == "fee_cap" else "action_failed"
            self.events.alert(
                code,
                severity,
                f"{kind} on {intent.position_key} failed: {outcome.failure.value} {outcome.detail}",
                key=intent.position_key,
            )
        elif outcome.tx_hash:
            self.events.alert(
                "action_sent",
                Severity.INFO,
                f"{kind} on {intent.position_key}: sent {outcome.tx_hash}",
                key=intent.position_key,
            )
        return Sent(intent.id, intent.position_key, kind, outcome.status.value, outcome.detail)


@dataclass
class DelayedFollower:
    """Follows intents on a venue that executes later (GMX) once their transaction is mined:
    done, cancelled or expired when the venue says so, and an order left past the venue's
    expiry cancelled (an intent of its own). Shared by the keeper loop and the manual
    commands."""

    venue: Venue
    rpc: ChainReads
    txs: TxManager
    journal: Journal
    events: Events
    _noted: set[int] = field(default_factory=set)

    async def step(self, intent: Intent, block: int, *, may_cancel: bool = True) -> IntentStatus:
        """One look at an awaiting intent at `block`; its status afterwards."""
        landed = [
            t
            for t in self.journal.transactions(intent.id)
            if t.status in (TxStatus.FINAL, TxStatus.MINED)
        ]
        if not landed:
            return intent.status
        tx = landed[-1]
        receipt = await self.rpc.request("eth_getTransactionReceipt", [tx.hash])
        if not isinstance(receipt, dict) or not receipt.get("blockNumber"):
            return intent.status  # reorganised away: the transaction manager puts it back
        mined = [mined_tx(tx.hash, receipt)]
        if intent.kind in _HOUSEKEEPING:
            # approvals and cancels take effect when mined; they do not wait for the venue
            ok = mined[0].success
            status = IntentStatus.DONE if ok else IntentStatus.FAILED
            self.journal.set_status(
                intent.id,
                status,
                block=block,
                failure=None if ok else "reverted",
                detail=f"{intent.kind} mined",
            )
            return status
        scope = intent.payload.get("scope")
        placeholder = Alert(
            intent.venue,
            Scope.ACCOUNT if scope == Scope.ACCOUNT.value else Scope.POSITION,
            intent.position_key,
            str(intent.payload.get("account", tx.sender)),
            Severity.INFO,
            Reason(intent.kind, f"intent {intent.id}"),
        )
        plan = TxPlan(
            action=placeholder,
            sender=tx.sender,
            steps=(VenueTx(tx.to, tx.data, tx.value, intent.kind),),
            execution=self.venue.execution,
        )
        state = await self.venue.action_state(plan, mined)
        label = self.label(mined)
        if intent.id not in self._noted:
            self._noted.add(intent.id)
            self.journal.note(intent.id, f"{label} created", block=block)
        if state is ActionState.AWAITING_EXECUTION:
            cancel = getattr(self.venue, "cancel_if_expired", None)
            if callable(cancel) and may_cancel:
                request = await cancel(plan, mined)
                if request is not None:
                    await self._cancel_expired(intent, request, label, block)
            return IntentStatus.AWAITING_EXECUTION
        if state is ActionState.PENDING:
            return intent.status
        status = IntentStatus(state.value)
        if self.journal.intent(intent.id).status is not IntentStatus.AWAITING_EXECUTION:
            return self.journal.intent(intent.id).status  # another process recorded it first
        self.journal.set_status(intent.id, status, block=block, detail=f"{label}: {state.value}")
        if status is not IntentStatus.DONE:
            self.events.alert(
                "action_failed",
                Severity.WARNING,
                f"{intent.kind} on {intent.position_key}: {label} {state.value}",
                key=intent.position_key,
            )
        return status

    def label(self, mined: Sequence[MinedTx]) -> str:
        """The venue's name for the request the mined transactions created."""
        order = getattr(self.venue, "order_key", None)
        key = order(mined) if callable(order) else None
        return f"order 0x{key.hex()}" if isinstance(key, bytes) else "the venue's request"

    async def _cancel_expired(
        self, intent: Intent, request: VenueTx, label: str, block: int
    ) -> None:
        cancel, new = self.journal.open_intent(
            intent.venue,
            f"cancel:{intent.position_key}",
            "cancel_order",
            {"scope": "order", "of_intent": intent.id},
            block=block,
            reason=f"{label} of intent {intent.id} expired unexecuted",
        )
        if new:
            await self.txs.submit(TxRequest(cancel.id, request.to, request.data, request.value))


@dataclass
class Keeper:
    """The long-running keeper; `run()` until stopped, or `tick(head)` one block at a time."""

    venue: Venue
    rpc: ChainReads
    stream: BlockStream
    journal: Journal
    watch: Watch
    thresholds: Thresholds
    budget: Budget
    settings: LoopSettings
    txs: TxManager | None = None  # None: observer mode (no key, nothing sent)
    events: Events = field(default_factory=NoEvents)
    rebuild: Rebuild | None = None  # calldata for replacements (GMX: the execution fee)
    leader: Leadership | None = None  # replicas: act only while holding the lease
    clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    halted_by_signal: bool = False
    ticks: int = 0
    last_read: VenueRead | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _follower: DelayedFollower | None = None
    _grants_checked_at: int | None = None

    # -- control ---------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def toggle_halt(self) -> None:
        self.halted_by_signal = not self.halted_by_signal
        state = "halted: nothing will be sent" if self.halted_by_signal else "resumed"
        log.warning("SIGUSR1: %s", state)
        self.events.alert(
            "halted" if self.halted_by_signal else "resumed",
            Severity.CRITICAL if self.halted_by_signal else Severity.INFO,
            f"keeper {state} (signal)",
        )

    def halt_reason(self) -> str | None:
        if self.halted_by_signal:
            return "halted by signal"
        if self.settings.halt_file is not None and self.settings.halt_file.exists():
            return f"halted: {self.settings.halt_file} exists"
        if self.txs is None:
            return "observer mode"
        if self.settings.dry_run:
            return "dry run"
        return None

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, *, signals: bool = True) -> int:
        """Ticks until SIGINT/SIGTERM (or `stop()`); returns the process exit code. Without
        `signals` no signal handlers are installed (the keeper inside someone's program)."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig, handler in (
            ()
            if not signals
            else (
                (signal.SIGINT, self.stop),
                (signal.SIGTERM, self.stop),
                (signal.SIGUSR1, self.toggle_halt),
            )
        ):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, handler)
                installed.append(sig)
        try:
            return await self._run()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def _run(self) -> int:
        errors = 0
        if self.leader is None:
            await self._reconcile()
        elif self.txs is not None:
            self.txs.guard = self.leader.check
        idle = None if self.leader is None else self.leader.settings.idle_renew_s
        last_block: int | None = None
        next_head: asyncio.Future[NewHead] | None = None
        while not self.stopping:
            if next_head is None:
                next_head = asyncio.ensure_future(self.stream.next())
            stopper: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
            waiting: set[asyncio.Future[Any]] = {next_head, stopper}
            done, _ = await asyncio.wait(waiting, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if self.stopping:
                next_head.cancel()
                with contextlib.suppress(asyncio.CancelledError, RpcError):
                    await next_head
                break
            if next_head not in done:
                await self._lease_turn(last_block)  # no block for a while: renew, or try
                continue
            arrived, next_head = next_head, None
            head: NewHead | None = None
            try:
                head = arrived.result()
                last_block = head.number
                await self._lease_turn(head.number)
                await self.tick(head)
                errors = 0
            except JournalFencedError as exc:
                log.warning("standing by: %s", exc)
                self._leadership_changed(self.leader.lost() if self.leader else None, str(exc))
            except (RpcError, VenueError, JournalUnavailableError) as exc:
                errors += 1
                log.warning("tick failed (%d in a row): %s", errors, exc)
                code = (
                    AlertCode.JOURNAL_UNAVAILABLE
                    if isinstance(exc, JournalError)
                    else AlertCode.RPC_STALLED
                )
                self.events.alert(code, Severity.WARNING, f"tick failed: {exc}")
                limit = self.settings.max_consecutive_errors
                if limit and errors >= limit:
                    log.error("giving up after %d failed ticks", errors)
                    return EXIT_FATAL
            except Exception as exc:
                at = f" at block {head.number}" if head is not None else ""
                what = f"fatal error in the keeper loop{at}: {type(exc).__name__}: {exc}"
                log.exception("%s", what)
                self.events.alert("fatal", Severity.CRITICAL, f"{what}; the keeper stopped")
                return EXIT_FATAL
            if (
                self.settings.stop_after_ticks is not None
                and self.ticks >= self.settings.stop_after_ticks
            ):
                break
        if next_head is not None and not next_head.done():
            next_head.cancel()
            with contextlib.suppress(asyncio.CancelledError, RpcError):
                await next_head
        await self._finish()
        return EXIT_OK

    async def _reconcile(self) -> None:
        """Open intents from the journal and the chain, settled before acting: at start, and
        when this replica takes the lease over from another."""
        if self.txs is None:
            return
        reconciled = await self.txs.reconcile(timeout=0)
        if reconciled:
            log.info("reconciled %d open intent(s) from the journal", len(reconciled))

    async def _lease_turn(self, block: int | None) -> None:
        if self.leader is None:
            return
        change = self.leader.step(block)
        self._leadership_changed(change, self.leader.last_error)
        if change is Change.ACQUIRED:
            self._follower = None
            await self._reconcile()

    def _leadership_changed(self, change: Change | None, why: str | None) -> None:
        leader = self.leader
        if change is None or leader is None:
            return
        if change is Change.ACQUIRED:
            log.warning("leader of %s at epoch %s", leader.scope, leader.epoch)
            self.events.alert(
                AlertCode.LEADER_ACQUIRED,
                Severity.INFO,
                f"{leader.owner} leads {leader.scope} at epoch {leader.epoch}",
            )
        else:
            holder = leader.leader if leader.leader != leader.owner else None
            log.warning("no longer the leader of %s (%s)", leader.scope, why or holder)
            self.events.alert(
                AlertCode.LEADERSHIP_LOST,
                Severity.WARNING,
                f"{leader.owner} stands by for {leader.scope}: {why or f'held by {holder}'}",
            )

    async def _finish(self) -> None:
        """Bookkeeping of what is in flight: one last step for each open intent (by the
        leader only); then the lease, if held, is given up."""
        txs = self.txs
        leading = self.leader is None or self.leader.is_leader
        if txs is not None and leading:
            with contextlib.suppress(JournalFencedError, JournalUnavailableError):
                for intent in self.journal.open_intents(self.venue.name):
                    if intent.status in (
                        IntentStatus.SIGNED,
                        IntentStatus.SENT,
                        IntentStatus.MINED,
                    ):
                        with contextlib.suppress(RpcError):
                            await txs.resolve(intent.id, timeout=0)
        if self.leader is not None:
            self.leader.release()
        log.info("stopped cleanly")

    # -- one tick ------------------------------------------------------------------------------

    async def tick(self, head: NewHead) -> TickReport:
        started = time.monotonic()
        block = head.number
        read = await self.venue.read(self.watch, block=block)
        self.last_read = read
        snap = read.snapshot
        if self.leader is not None and not self.leader.is_leader:
            # not the leader: the chain is read (the figures and health stay current, and a
            # takeover starts warm); nothing is decided or written
            return self._report(head, read, started, f"standby: {self.leader.leader} leads")
        held = self.halt_reason()
        if held is None and self.settings.sequencer is not None:
            held = await sequencer_hold(self.rpc, self.settings.sequencer, block, snap.block_time)
            if held:
                self.events.alert("sequencer_down", Severity.CRITICAL, held)

        obsolete = await self._check_open_intents(snap, held)
        history = history_from_journal(
            self.journal,
            self.venue.name,
            self.settings.venue_token,
            self.budget.reserve.decimals,
            since_block=max(0, block - self._history_blocks()),
            now_ms=self.clock_ms(),
        )
        actions = decide(snap, self.thresholds, self.budget, history)
        sent: list[Sent] = []
        for action in actions:
            if isinstance(action, Alert):
                self.events.alert(
                    action.reason.code, action.severity, action.reason.message, key=action.key
                )
                continue
            sent.extend(await self._act(action, snap, held))
        await self._drive_in_flight(snap)
        await self._check_delegations(block)
        return self._report(
            head, read, started, held, actions=actions, sent=sent, obsolete=obsolete
        )

    def _report(
        self,
        head: NewHead,
        read: VenueRead,
        started: float,
        held: str | None,
        *,
        actions: Sequence[Action] = (),
        sent: Sequence[Sent] = (),
        obsolete: Sequence[int] = (),
    ) -> TickReport:
        """The tick is done: counted, reported to the events, returned."""
        snap = read.snapshot
        self.ticks += 1
        report = TickReport(
            block_number=head.number,
            block_time=snap.block_time,
            skipped_blocks=head.skipped,
            seconds=time.monotonic() - started,
            positions=len(snap.positions),
            accounts=len(snap.accounts),
            lowest_ratio=_lowest_ratio(snap),
            actions=tuple(actions),
            sent=tuple(sent),
            obsolete=tuple(obsolete),
            held=held,
            read_issues=tuple(f"{i.kind} {i.key}: {i.message}" for i in read.issues),
            wallet_balance=snap.wallet.balance,
            role=None if self.leader is None else self.leader.role.value,
            epoch=None if self.leader is None else self.leader.epoch,
        )
        self.events.tick_done(report)
        return report

    async def _check_delegations(self, block: int) -> None:
        """Delegated mode: every `delegation_check_blocks` blocks, each watched account's grant
        to the signer, alerted when it is no longer active (delegation_lost, critical: the
        keeper cannot act for that account) or soon unusable (delegation_low: few actions
        left, near its expiry). A failed check is logged and tried on the next block."""
        every = self.settings.delegation_check_blocks
        venue = self.venue
        if not (every > 0 and self.watch.delegated and self.txs is not None):
            return
        if not isinstance(venue, Delegates):
            return
        last = self._grants_checked_at
        if last is not None and block - last < every:
            return
        delegate = self.txs.sender
        try:
            grants = [
                await venue.delegation(a, delegate, token=self.settings.venue_token)
                for a in self.watch.accounts
            ]
        except (RpcError, VenueError) as exc:
            log.warning("delegation check at block %d failed: %s", block, exc)
            return
        self._grants_checked_at = block
        for g in grants:
            if not g.active:
                self.events.alert(
                    AlertCode.DELEGATION_LOST,
                    Severity.CRITICAL,
                    f"{delegate} can no longer act for {g.account}: {'; '.join(g.problems)}",
                    key=g.account,
                )
            elif g.problems:
                self.events.alert(
                    AlertCode.DELEGATION_LOW,
                    Severity.WARNING,
                    f"the grant of {g.account} to {delegate}: {'; '.join(g.problems)}",
                    key=g.account,
                )

    def _history_blocks(self) -> int:
        th = [self.thresholds.default, *self.thresholds.overrides.values()]
        return max(1, *(t.cooldown_blocks for t in th)) * 4

    async def _check_open_intents(self, snap: Snapshot, held: str | None) -> list[int]:
        """Intents decided earlier, checked against this block before anything is sent."""
        obsolete: list[int] = []
        for intent in self.journal.open_intents(self.venue.name):
            if intent.kind in _HOUSEKEEPING or intent.status is IntentStatus.AWAITING_EXECUTION:
                continue
            if intent.status in (IntentStatus.MINED,):
                continue  # its effect is on chain: the subject is expected to have changed
            scope = Scope(intent.payload.get("scope", Scope.POSITION.value))
            now = fingerprint(snap, intent.venue, scope, intent.position_key)
            if now == intent.payload.get("fingerprint"):
                continue
            what = "is gone" if now is None else "changed"
            detail = f"the {scope.value} {what} since block {intent.created_block}"
            if intent.status is IntentStatus.DECIDED:
                self.journal.set_status(
                    intent.id, IntentStatus.OBSOLETE, block=snap.block_number, detail=detail
                )
                obsolete.append(intent.id)
            elif self.txs is not None:
                # signed or sent: cancel at its nonce unless it gets mined first
                async def not_wanted(_: Intent) -> bool:
                    return False

                out = await self.txs.resolve(intent.id, timeout=0, still_wanted=not_wanted)
                if out.status is IntentStatus.OBSOLETE:
                    obsolete.append(intent.id)
            log.info("intent %d on %s: %s", intent.id, intent.position_key, detail)
        return obsolete

    async def _act(self, action: Action, snap: Snapshot, held: str | None) -> list[Sent]:
        venue = self.venue.name
        spend = action.amount.raw if isinstance(action, TopUp) else None
        payload = action_payload(action, snap)
        skip = held
        txs = self.txs
        if (
            skip is None
            and txs is not None
            and not self.watch.delegated
            and action.account.lower() != txs.sender.lower()
        ):
            skip = f"position of {action.account}; the keeper signs as {txs.sender}"
        if skip is not None:
            # not sending: record a decision once, not again on every block it stays the same
            last = self.journal.history(venue=venue, position_key=action.key, limit=1)
            if (
                last
                and last[0].status is IntentStatus.SKIPPED
                and last[0].kind == action.kind
                and last[0].payload.get("fingerprint") == payload["fingerprint"]
            ):
                return []
        intent, new = self.journal.open_intent(
            venue,
            action.key,
            action.kind,
            payload,
            block=snap.block_number,
            spend_token=self.settings.venue_token if spend is not None else None,
            spend_amount=spend,
            reason=f"{action.reason.code}: {action.reason.message}",
        )
        if not new:
            return []  # an intent for this position is already open
        if skip is not None:
            self.journal.set_status(
                intent.id, IntentStatus.SKIPPED, block=snap.block_number, detail=skip
            )
            if held is None:
                self.events.alert(
                    "cannot_act",
                    Severity.WARNING,
                    f"{action.kind} on {action.key} needed but not sent: {skip}",
                    key=action.key,
                )
            return [Sent(intent.id, action.key, action.kind, "skipped", skip)]
        return await self._submit(intent, action, snap)

    async def _submit(self, intent: Intent, action: Action, snap: Snapshot) -> list[Sent]:
        assert self.txs is not None
        executor = Executor(
            self.venue, self.txs, self.journal, self.events, self.settings.approval_timeout
        )
        return await executor.carry_out(intent, action, snap)

    def _delayed(self) -> DelayedFollower:
        assert self.txs is not None
        if self._follower is None:
            self._follower = DelayedFollower(
                self.venue, self.rpc, self.txs, self.journal, self.events
            )
        return self._follower

    async def _drive_in_flight(self, snap: Snapshot) -> None:
        """One step for every intent whose transaction is out: receipt, replace, confirm."""
        if self.txs is None:
            return
        for intent in self.journal.open_intents(self.venue.name):
            if intent.status in (IntentStatus.SIGNED, IntentStatus.SENT, IntentStatus.MINED):
                await self.txs.resolve(
                    intent.id, timeout=self.settings.resolve_timeout, rebuild=self.rebuild
                )
            elif intent.status is IntentStatus.AWAITING_EXECUTION:
                await self._delayed().step(
                    intent, snap.block_number, may_cancel=self.halt_reason() is None
                )
            elif intent.status is IntentStatus.DECIDED and intent.kind not in _HOUSEKEEPING:
                await self._retry_decided(intent, snap)

    async def _retry_decided(self, intent: Intent, snap: Snapshot) -> None:
        """An intent decided on an earlier block but never signed (its approval was pending,
        or the process stopped): sent now if its subject is unchanged (checked above)."""
        if intent.created_block == snap.block_number or self.halt_reason() is not None:
            return
        action = _rebuild_action(intent, snap)
        if action is None:
            self.journal.set_status(
                intent.id,
                IntentStatus.EXPIRED,
                block=snap.block_number,
                detail="cannot be rebuilt from the journal",
            )
            return
        await self._submit(intent, action, snap)


def mined_tx(tx_hash: str, receipt: dict[str, Any]) -> MinedTx:
    """A receipt (JSON-RPC) as the venue protocol's MinedTx, logs included."""

    def raw(text: str) -> bytes:
        return bytes.fromhex(text[2:] if text.startswith("0x") else text)

    logs = tuple(
        LogEntry(
            str(entry["address"]),
            tuple(raw(t) for t in entry.get("topics", [])),
            raw(str(entry.get("data", "0x"))),
        )
        for entry in receipt.get("logs", [])
    )
    return MinedTx(
        tx_hash, int(str(receipt["blockNumber"]), 16), receipt.get("status") == "0x1", logs
    )


def _rebuild_action(intent: Intent, snap: Snapshot) -> Action | None:
    """The action of a decided intent, from its payload and the snapshot (same subject)."""
    p = intent.payload
    reason = Reason(
        str(p.get("reason_code", "retry")),
        str(p.get("reason", "")),
        tuple((str(k), str(v)) for k, v in dict(p.get("figures", {})).items()),
    )
    scope = Scope(p.get("scope", Scope.POSITION.value))
    account = str(p.get("account", ""))
    try:
        if intent.kind in ("top_up", "withdraw"):
            token = _token_of(snap, intent.venue, scope, intent.position_key)
            if token is None:
                return None
            amount = TokenAmount(int(p["amount"]), int(p["decimals"]))
            cls = TopUp if intent.kind == "top_up" else Withdraw
            return cls(intent.venue, scope, intent.position_key, account, token, amount, reason)
        if intent.kind == "reduce":
            delta = TokenAmount(int(p["size_delta"]), int(p["decimals"]))
            return Reduce(
                intent.venue, intent.position_key, account, str(p["market_id"]), delta, reason
            )
        if intent.kind == "close":
            return Close(intent.venue, intent.position_key, account, str(p["market_id"]), reason)
    except (KeyError, ValueError, TypeError):
        return None
    return None


def _token_of(snap: Snapshot, venue: str, scope: Scope, key: str) -> Token | None:
    if scope is Scope.POSITION:
        try:
            return snap.position(venue, key).collateral_token
        except KeyError:
            return None
    for account in snap.accounts:
        if account.venue == venue and account.key == key:
            return account.collateral_token
    return None


def _lowest_ratio(snap: Snapshot) -> Decimal | None:
    ratios: list[Decimal] = []
    for p in snap.positions:
        if p.cross_account is None:
            with contextlib.suppress(ArithmeticError, ValueError):
                ratios.append(margin.margin_ratio(p, snap.market_of(p)))
    for a in snap.accounts:
        legs = [(p, snap.market_of(p)) for p in snap.positions_of(a)]
        with contextlib.suppress(ArithmeticError, ValueError):
            ratios.append(margin.cross_margin_ratio(a, legs))
    return min(ratios, default=None)


def describe_actions(actions: Iterable[Action]) -> Sequence[str]:
    return [f"{a.kind} {a.key}: {a.reason.code}" for a in actions]


__all__ = [
    "EXIT_FATAL",
    "EXIT_OK",
    "Events",
    "Keeper",
    "LoopSettings",
    "NoEvents",
    "SequencerFeed",
    "TickReport",
    "action_payload",
    "fingerprint",
    "history_from_journal",
    "sequencer_hold",
]
