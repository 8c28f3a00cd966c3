"""Manual actions (`keeper top-up | reduce | close | withdraw`): the same journal, venue and
transaction manager as the running keeper, so a person and the keeper never race.

`prepare` reads the position, builds the action's transactions and simulates them, and
prices them; `execute` records the intent (refused while the keeper has one open for that
position), sends, and follows it to a final state.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from keeper.chain.rpc import FailoverRpc
from keeper.journal import IntentStatus, Journal
from keeper.loop import DelayedFollower, Executor, NoEvents, Sent, action_payload
from keeper.model import (
    Action,
    Close,
    CrossAccount,
    Market,
    Position,
    Reason,
    Reduce,
    Scope,
    Snapshot,
    Token,
    TopUp,
    Withdraw,
)
from keeper.txs import FeeCapExceededError, Fees, TxManager, TxOutcome
from keeper.txs import TxRequest as SignedRequest
from keeper.units import TokenAmount
from keeper.venues.base import SimulatesExecution, TxPlan, Venue, VenueError, Watch
from keeper.views import Preview, preview

KINDS = ("top_up", "withdraw", "reduce", "close")


class ManualError(Exception):
    """The manual command cannot go ahead; the message says why and what to do."""


class Session(Protocol):
    """What a manual action needs: the venue, the chain, the journal and the key's
    transaction manager (a `Runtime` of `keeper run`'s config, or a `keeper.Client`)."""

    @property
    def venue(self) -> Venue: ...

    @property
    def rpc(self) -> FailoverRpc: ...

    @property
    def journal(self) -> Journal: ...

    @property
    def txs(self) -> TxManager | None: ...

    @property
    def watch(self) -> Watch: ...

    @property
    def poll_interval(self) -> float: ...


@dataclass(frozen=True, slots=True)
class StepCost:
    description: str
    to: str
    gas: int | None  # None: can only be estimated once the earlier steps are mined
    simulated: bool
    revert: str | None


@dataclass(frozen=True, slots=True)
class Plan:
    """An action ready to send: its transactions (`transactions`, built by the venue), each
    step simulated and its gas estimated, the fees it would pay now and at most (`fees`,
    `max_cost_wei`, or why not: `fee_problem`), and what it would change (`preview`). `ok`
    when nothing stands in its way; `summary()` as plain data."""

    action: Action
    transactions: TxPlan
    snapshot: Snapshot
    steps: tuple[StepCost, ...]
    fees: Fees | None
    max_cost_wei: int | None
    fee_problem: str | None
    subject: str
    preview: Preview | None = None  # None: the model cannot say (see `summary`)

    @property
    def ok(self) -> bool:
        return self.fee_problem is None and all(s.revert is None for s in self.steps)

    def summary(self) -> dict[str, Any]:
        return {
            "action": self.action.kind,
            "position": self.action.key,
            "subject": self.subject,
            "steps": [
                {
                    "description": s.description,
                    "to": s.to,
                    "gas": s.gas,
                    "simulated": s.simulated,
                    "revert": s.revert,
                }
                for s in self.steps
            ],
            "max_fee_per_gas": None if self.fees is None else self.fees.max_fee,
            "max_cost_wei": self.max_cost_wei,
            "fee_problem": self.fee_problem,
            "preview": None if self.preview is None else _preview_data(self.preview),
        }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _preview_data(p: Preview) -> dict[str, Any]:
    return {
        "margin_ratio": {"before": _text(p.ratio_before), "after": _text(p.ratio_after)},
        "liquidation_price": {
            "before": _text(p.liquidation_before),
            "after": _text(p.liquidation_after),
        },
        "closed": p.closed,
        "mark_price": _text(p.mark_price),
        "side": None if p.side is None else p.side.value,
    }


def parse_amount(text: str, decimals: int, what: str) -> TokenAmount:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ManualError(f"{what}: not a number: {text!r}") from None
    raw = value * (Decimal(10) ** decimals)
    if not value.is_finite() or value <= 0 or raw != raw.to_integral_value():
        raise ManualError(f"{what}: expected a positive amount with at most {decimals} decimals")
    return TokenAmount(int(raw), decimals)


def find_subject(snapshot: Snapshot, venue: str, ref: str, owner: str) -> Position | CrossAccount:
    """A position by its key (as `keeper positions` shows), or `MARKET:SIDE` of `owner` (the
    market's id or symbol), or `cross` for `owner`'s cross account, or a cross account's key."""
    low = ref.lower()
    for p in snapshot.positions:
        if p.venue == venue and p.key.lower() == low:
            return p
    for a in snapshot.accounts:
        if a.venue == venue and a.key.lower() == low:
            return a
        if low == "cross" and a.account.lower() == owner.lower():
            return a
    if ":" in ref:
        market, _, side = low.partition(":")
        cross = side.endswith(":cross")
        side = side.removesuffix(":cross")
        found = [
            p
            for p in snapshot.positions
            if p.account.lower() == owner.lower()
            and market in _names(snapshot.market_of(p))
            and p.side.value == side
            and (p.cross_account is not None) == cross
        ]
        if len(found) == 1:
            return found[0]
        if found:
            keys = ", ".join(f"{p.key} ({p.collateral_token.symbol} collateral)" for p in found)
            raise ManualError(
                f"{ref} names {len(found)} positions of {owner}: {keys}; give the position's key"
            )
    raise ManualError(
        f"no open position or cross account {ref!r} for {owner} at block "
        f"{snapshot.block_number}: see `keeper positions`"
    )


def _names(market: Market) -> set[str]:
    """What MARKET in MARKET:SIDE may be: the market's id or its index token's symbol."""
    return {market.market_id.lower(), market.index_token.symbol.lower()}


def make_action(
    kind: str, subject: Position | CrossAccount, amount: str | None, venue: str
) -> Action:
    reason = Reason("manual", "requested from the command line")
    if isinstance(subject, CrossAccount):
        if kind not in ("top_up", "withdraw"):
            raise ManualError(
                f"{kind} works on a position; a cross account takes top-up or withdraw"
            )
        token: Token = subject.collateral_token
        assert amount is not None
        value = parse_amount(amount, token.decimals, "AMOUNT")
        cls = TopUp if kind == "top_up" else Withdraw
        return cls(venue, Scope.ACCOUNT, subject.key, subject.account, token, value, reason)
    p = subject
    if kind in ("top_up", "withdraw"):
        if p.cross_account is not None:
            raise ManualError(
                f"{p.key} is a cross position: top up or withdraw its account ({p.cross_account})"
            )
        assert amount is not None
        value = parse_amount(amount, p.collateral_token.decimals, "AMOUNT")
        cls = TopUp if kind == "top_up" else Withdraw
        return cls(venue, Scope.POSITION, p.key, p.account, p.collateral_token, value, reason)
    if kind == "reduce":
        assert amount is not None
        delta = parse_amount(amount, p.size.decimals, "SIZE")
        if delta.raw >= p.size.raw:
            raise ManualError(f"SIZE: {amount} is the whole position or more: use close")
        return Reduce(venue, p.key, p.account, p.market_id, delta, reason)
    return Close(venue, p.key, p.account, p.market_id, reason)


async def prepare(runtime: Session, kind: str, ref: str, amount: str | None) -> Plan:
    if kind not in KINDS:
        raise ManualError(f"unknown action {kind!r}")
    txs = runtime.txs
    if txs is None:
        raise ManualError("this command sends a transaction: the config has no key")
    sender = txs.sender
    watch = runtime.watch
    owner = sender
    if watch.delegated:  # the key acts for the watched accounts (`MARKET:SIDE`: the only one)
        if len(watch.accounts) == 1:
            owner = watch.accounts[0]
    elif sender.lower() not in {a.lower() for a in watch.accounts}:
        watch = replace(watch, accounts=(*watch.accounts, sender))
    read = await runtime.venue.read(watch)
    snap = read.snapshot
    subject = find_subject(snap, runtime.venue.name, ref, owner)
    if not watch.delegated and subject.account.lower() != sender.lower():
        raise ManualError(
            f"{ref} belongs to {subject.account}; the configured key is {sender}: only the "
            "owner can act on it (or a delegate: accounts.delegated)"
        )
    action = make_action(kind, subject, amount, runtime.venue.name)
    return await prepare_action(runtime, action, snap)


async def prepare_action(runtime: Session, action: Action, snap: Snapshot) -> Plan:
    """`action` decided on `snap`: built, simulated, priced and previewed."""
    txs = runtime.txs
    if txs is None:
        raise ManualError("this action sends a transaction: there is no key")
    sender = txs.sender
    try:
        plan = await runtime.venue.build(action, snap, sender=sender)
    except VenueError as exc:
        raise ManualError(str(exc)) from None
    steps: list[StepCost] = []
    for i, step in enumerate(plan.steps):
        request = SignedRequest(0, step.to, step.data, step.value, step.gas_headroom)
        can_simulate = i == 0 or (i < plan.approvals) or plan.approvals == 0
        if not can_simulate:
            steps.append(StepCost(step.description, step.to, None, False, None))
            continue
        revert = await txs.simulate(request)
        gas = None if revert is not None else await txs.estimate_gas(request)
        steps.append(
            StepCost(
                step.description,
                step.to,
                gas,
                True,
                None if revert is None else revert.message,
            )
        )
    venue = runtime.venue
    last = steps[-1] if steps else None
    if isinstance(venue, SimulatesExecution) and last is not None and last.simulated:
        # a venue that executes later: would it execute the request, or cancel it?
        try:
            refused = await venue.simulate_execution(plan, snap)
            why = None if refused is None else f"execution: {refused.message}"
        except VenueError as exc:
            why = f"execution simulation: {exc}"
        if why is not None and last.revert is None:
            steps[-1] = replace(last, revert=why)
    fees: Fees | None = None
    problem: str | None = None
    try:
        fees = await txs.fees()
    except FeeCapExceededError as exc:
        problem = str(exc)
    cost = None
    if fees is not None and all(s.gas is not None for s in steps):
        cost = sum((s.gas or 0) * fees.max_fee for s in steps)
    scope = "crossaccount" if getattr(action, "scope", None) is Scope.ACCOUNT else "position"
    try:
        shown: Preview | None = preview(action, snap)
    except (ValueError, KeyError):
        shown = None
    return Plan(
        action, plan, snap, tuple(steps), fees, cost, problem, f"{scope} {action.key}", shown
    )


async def execute(
    runtime: Session, prepared: Plan, *, wait: bool = True, wait_timeout: float = 900.0
) -> list[tuple[Sent, TxOutcome | None]]:
    """Records the intent and sends; follows every transaction to a final state. On a venue
    that executes later (GMX), `wait` follows the request too, until the venue executes or
    cancels it, or it expires (and is cancelled), for at most `wait_timeout` seconds; without
    `wait` it returns once the transaction is mined (status awaiting_execution)."""
    txs = runtime.txs
    assert txs is not None
    action, snap = prepared.action, prepared.snapshot
    spend = action.amount.raw if isinstance(action, TopUp) else None
    intent, new = runtime.journal.open_intent(
        runtime.venue.name,
        action.key,
        action.kind,
        action_payload(action, snap),
        block=snap.block_number,
        spend_token=action.token.address if isinstance(action, TopUp) else None,
        spend_amount=spend,
        reason="manual: requested from the command line",
    )
    if not new:
        raise ManualError(
            f"an action on {action.key} is already open (intent {intent.id}, "
            f"{intent.kind}, {intent.status.value}), probably from the running keeper: "
            "see `keeper history`"
        )
    executor = Executor(runtime.venue, txs, runtime.journal, NoEvents())
    sent = await executor.carry_out(intent, action, snap)
    results: list[tuple[Sent, TxOutcome | None]] = []
    for s in sent:
        current = runtime.journal.intent(s.intent_id)
        outcome = None
        if current.status in (IntentStatus.SIGNED, IntentStatus.SENT, IntentStatus.MINED):
            outcome = await txs.resolve(s.intent_id)
            if wait and outcome.status is IntentStatus.AWAITING_EXECUTION:
                outcome = await follow(runtime, outcome, timeout=wait_timeout)
        results.append((s, outcome))
    return results


async def follow(runtime: Session, outcome: TxOutcome, *, timeout: float) -> TxOutcome:
    """An intent awaiting the venue's execution, followed block by block until it is final
    (or `timeout`): the same steps as the running keeper's, an expired request cancelled."""
    txs = runtime.txs
    assert txs is not None
    journal = runtime.journal
    follower = DelayedFollower(runtime.venue, runtime.rpc, txs, journal, NoEvents())
    poll = min(runtime.poll_interval, 1.0)
    deadline = time.monotonic() + timeout
    intent_id = outcome.intent_id
    while True:
        intent = journal.intent(intent_id)
        if intent.status in (IntentStatus.SIGNED, IntentStatus.SENT, IntentStatus.MINED):
            await txs.resolve(intent_id, timeout=0)  # put back by a reorg
        elif intent.status is IntentStatus.AWAITING_EXECUTION:
            block = await runtime.rpc.block_number()
            await follower.step(intent, block)
            await _follow_cancels(runtime, follower, intent_id, wait=0)
        else:
            # an expired order's cancel is followed until mined, like the order itself
            await _follow_cancels(
                runtime, follower, intent_id, wait=max(0.0, deadline - time.monotonic())
            )
            events = journal.events(intent_id)
            detail = events[-1].detail if events and events[-1].detail else outcome.detail
            return replace(outcome, status=intent.status, detail=detail)
        if time.monotonic() >= deadline:
            return replace(
                outcome,
                status=journal.intent(intent_id).status,
                detail=f"not final after {timeout:g} s: `keeper history` follows it",
            )
        await asyncio.sleep(poll)


async def _follow_cancels(
    runtime: Session, follower: DelayedFollower, intent_id: int, *, wait: float
) -> None:
    """One step for each open cancel_order intent of `intent_id`, its receipt awaited for up
    to `wait` seconds: done (or failed) once mined."""
    txs = runtime.txs
    assert txs is not None
    journal = runtime.journal
    for other in journal.open_intents(runtime.venue.name):
        if other.kind != "cancel_order" or other.payload.get("of_intent") != intent_id:
            continue
        if other.status in (IntentStatus.SIGNED, IntentStatus.SENT, IntentStatus.MINED):
            await txs.resolve(other.id, timeout=wait)
            other = journal.intent(other.id)
        if other.status is IntentStatus.AWAITING_EXECUTION:
            await follower.step(other, await runtime.rpc.block_number())
