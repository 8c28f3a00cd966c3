"""The Venue protocol every adapter implements, and the venue-neutral types it speaks.

A venue adapter does four things (DESIGN.md, "The data's way through the program"):

- `read(watch, block=...)`: one `VenueRead` of the watched accounts pinned to one block: a
  `Snapshot` (isolated positions, cross accounts, the markets behind them, the keeper's
  wallet), the pool state, and `ReadIssue`s for what could not be modelled (a market whose
  price cannot be read: its positions are left out of the snapshot and named here).
- `build(action, snapshot, sender=...)`: the `TxPlan` that carries out an `Action` decided
  on `snapshot`: ordered `TxRequest`s. A step (an ERC-20 approval above all) must be mined
  before the next one is simulated, unless the next is simulated with the step's
  `simulation_overrides` entry (a geth-style state override that makes the earlier steps'
  effect visible). An `Alert` builds an empty plan.
- `action_state(plan, mined)`: where an action stands, given what is known to be mined of its
  plan. Sync venues (`Execution.SYNC`, our reference exchange) are done when the last step is
  mined; delayed venues (`Execution.DELAYED`, GMX) have the venue execute, cancel or expire
  the order later, so the state machine has `AWAITING_EXECUTION`, `CANCELLED` and `EXPIRED`
  from the start.
- `decode_error(data)`: the venue's revert data as a `RevertReason` (custom errors by name).

A delayed venue that can simulate its later execution (`SimulatesExecution`, GMX) says before
anything is sent whether it would execute the plan's request at the snapshot's prices, or why
it would refuse or cancel it.

The transaction manager (keeper/txs.py) signs, simulates, sends and confirms `TxRequest`s; the
venue never signs or sends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from eth_utils.address import to_checksum_address

from keeper.chain.multicall import CallResult
from keeper.chain.revert import RevertReason, decode_revert
from keeper.chain.rpc import ChainReads
from keeper.model import Action, Market, Snapshot, Token
from keeper.units import TokenAmount, Usd

__all__ = [
    "DELEGATION_LOW_ACTIONS",
    "DELEGATION_LOW_SECONDS",
    "ActionState",
    "Delegates",
    "Delegation",
    "Execution",
    "LogEntry",
    "MinedTx",
    "OpenInterest",
    "PoolState",
    "ReadIssue",
    "SimulatesExecution",
    "TxPlan",
    "TxRequest",
    "Venue",
    "VenueDecodeError",
    "VenueError",
    "VenueRead",
    "Watch",
    "call_data",
    "checked_address",
    "limit_problems",
    "sync_action_state",
]

StateOverride = Mapping[str, Mapping[str, Any]]
"""A geth-style eth_call state override: address -> {"stateDiff": {slot: value}, "code": ...}."""


class VenueError(Exception):
    """A venue adapter could not do what was asked; the message names the action or call."""


class VenueDecodeError(VenueError):
    """A call's return data is not what the venue's ABI says (a malformed or cut answer)."""


def checked_address(address: str, what: str) -> str:
    """`address` checksummed; VenueError naming `what` when it is not a 0x-prefixed 20-byte
    hex address."""
    try:
        if not address.startswith("0x") or len(bytes.fromhex(address[2:])) != 20:
            raise ValueError
        return to_checksum_address(address)
    except ValueError:
        raise VenueError(f"{what}: not an address: {address!r}") from None


def call_data(
    result: CallResult,
    what: str,
    decode: Callable[[bytes], RevertReason] = decode_revert,
) -> bytes:
    """A batched call's return data; VenueDecodeError naming `what` and the revert (decoded by
    `decode`, the venue's decoder) when the call failed."""
    if not result.success:
        raise VenueDecodeError(f"{what} reverted: {decode(result.data).message}")
    return result.data


class Execution(StrEnum):
    """When a venue's action takes effect: when mined (SYNC) or when the venue executes a
    request later (DELAYED, e.g. GMX orders)."""

    SYNC = "sync"
    DELAYED = "delayed"


class ActionState(StrEnum):
    """Where an action stands once its transactions have been sent (DESIGN.md lifecycle)."""

    PENDING = "pending"  # not all steps mined yet
    AWAITING_EXECUTION = "awaiting_execution"  # delayed venues: mined, not executed yet
    DONE = "done"
    CANCELLED = "cancelled"  # delayed venues: the venue cancelled the request
    EXPIRED = "expired"  # delayed venues: the request expired unexecuted
    FAILED = "failed"  # a step reverted on chain

    @property
    def final(self) -> bool:
        return self not in (ActionState.PENDING, ActionState.AWAITING_EXECUTION)


@dataclass(frozen=True, slots=True)
class Watch:
    """What to read: the accounts whose positions are watched, the keeper's wallet (None in
    observer mode: the snapshot's wallet is then the zero address with nothing in it), and the
    token the wallet pays top-ups in (one of the venue's `collateral_tokens()`; None: the
    venue's default)."""

    accounts: tuple[str, ...]
    wallet: str | None = None
    wallet_token: str | None = None
    delegated: bool = False
    """The wallet signs as a delegate of every watched account (`Delegates`), not as the
    account: top-ups are paid from each account's own wallet through the venue, and the read
    fills `Snapshot.funds` with what each can pay."""


@dataclass(frozen=True, slots=True)
class TxRequest:
    """One transaction to send: `data` to `to` with `value` wei; `description` says what it
    does in words (for logs, the journal and dry runs). `gas_headroom` is gas the venue knows
    the call may need beyond what it is estimated at now (state the call writes the first time
    once time has passed, such as a funding update), added to the transaction's gas limit."""

    to: str
    data: bytes
    value: int = 0
    description: str = ""
    gas_headroom: int = 0

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError(f"{self.description or 'transaction'}: value must not be negative")
        if self.gas_headroom < 0:
            raise ValueError(f"{self.description or 'transaction'}: gas_headroom must be >= 0")


@dataclass(frozen=True, slots=True)
class TxPlan:
    """The transactions that carry out `action`, sent from `sender`, in order.

    `steps[i]` may only be simulated once `steps[:i]` are mined, or with
    `simulation_overrides[i]` (None: no override is known, wait for the earlier steps).
    `approvals` is how many leading steps are ERC-20 approvals.
    """

    action: Action
    sender: str
    steps: tuple[TxRequest, ...]
    simulation_overrides: tuple[StateOverride | None, ...] = ()
    approvals: int = 0
    execution: Execution = Execution.SYNC

    def __post_init__(self) -> None:
        if self.simulation_overrides and len(self.simulation_overrides) != len(self.steps):
            raise ValueError("simulation_overrides must have one entry per step")
        if not 0 <= self.approvals <= len(self.steps):
            raise ValueError("approvals must be between 0 and the number of steps")

    def override(self, index: int) -> StateOverride | None:
        """The state override for simulating step `index` before the earlier ones are mined."""
        if not self.simulation_overrides:
            return None
        return self.simulation_overrides[index]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A log of a mined transaction (what delayed venues read their order keys from)."""

    address: str
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class MinedTx:
    """A mined step of a plan: its hash, block, receipt status and logs."""

    tx_hash: str
    block_number: int
    success: bool
    logs: tuple[LogEntry, ...] = ()


def sync_action_state(plan: TxPlan, mined: Sequence[MinedTx]) -> ActionState:
    """For sync venues: FAILED if a mined step reverted, DONE once every step is mined."""
    if any(not tx.success for tx in mined):
        return ActionState.FAILED
    if len(mined) >= len(plan.steps):
        return ActionState.DONE
    return ActionState.PENDING


@dataclass(frozen=True, slots=True)
class OpenInterest:
    """One market's open interest in index tokens, and its funding rate per second (a Decimal
    fraction of notional; positive: longs pay)."""

    market_id: str
    long: TokenAmount
    short: TokenAmount
    funding_rate: Decimal


@dataclass(frozen=True, slots=True)
class PoolState:
    """The liquidity behind a venue's markets at the snapshot's block.

    `liquidity` is what the pool holds, `reserved` what it keeps back for open positions,
    `shares` the LP shares outstanding (raw units; None where the venue has none).
    """

    liquidity: Usd
    reserved: Usd
    shares: int | None
    open_interest: tuple[OpenInterest, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadIssue:
    """Something a read could not model: `key` is a market id, position key or account."""

    kind: str  # "price_invalid", "position_missing", ...
    key: str
    message: str


@dataclass(frozen=True, slots=True)
class VenueRead:
    """One read: the snapshot, the pool state behind it, and what was left out and why."""

    snapshot: Snapshot
    pool: PoolState | None = None
    issues: tuple[ReadIssue, ...] = ()
    round_trips: int = field(default=0, compare=False)


@runtime_checkable
class Venue(Protocol):
    """What every venue adapter offers; see the module's docstring."""

    name: str
    execution: Execution

    async def read(self, watch: Watch, *, block: int | None = None) -> VenueRead:
        """The watched accounts at `block` (default: the latest block), all pinned to it."""
        ...

    async def markets(self, *, block: int | None = None) -> tuple[Market, ...]:
        """Every market of the venue, modelled as `read` models them, at `block`."""
        ...

    async def collateral_tokens(self) -> tuple[Token, ...]:
        """The tokens this venue's positions can hold as collateral (the wallet pays top-ups in
        one of them: `Watch.wallet_token`)."""
        ...

    async def build(self, action: Action, snapshot: Snapshot, *, sender: str) -> TxPlan:
        """The transactions that carry out `action`, decided on `snapshot`, from `sender`."""
        ...

    async def action_state(self, plan: TxPlan, mined: Sequence[MinedTx]) -> ActionState:
        """Where the action of `plan` stands, given its mined steps (in order)."""
        ...

    def decode_error(self, data: bytes) -> RevertReason:
        """The venue's revert data, decoded (custom errors by name and arguments)."""
        ...


@runtime_checkable
class SimulatesExecution(Protocol):
    """A delayed venue that can simulate its own later execution of a plan's request."""

    async def simulate_execution(self, plan: TxPlan, snapshot: Snapshot) -> RevertReason | None:
        """None when the venue would execute the request `plan` creates at the prices
        `snapshot` was read at; else the decoded reason it would refuse or cancel it."""
        ...


DELEGATION_LOW_ACTIONS = 10
DELEGATION_LOW_SECONDS = 3 * 86_400
"""A grant with fewer actions or seconds left than these is reported as soon unusable (in
`Delegation.problems`, and alerted on by the running keeper)."""


def limit_problems(
    left: int, expires_at: int, now: int, *, actions: str, used: str = ""
) -> list[str]:
    """What a grant's limits say in words (for `Delegation.problems`): no or few of its
    `actions` actions left (`used`: how many were used, appended), and past or near its expiry
    at block time `now` (DELEGATION_LOW_ACTIONS, DELEGATION_LOW_SECONDS)."""
    problems: list[str] = []
    if left == 0:
        problems.append(f"no {actions} actions left{used}")
    elif left < DELEGATION_LOW_ACTIONS:
        problems.append(f"only {left} {actions} actions left{used}")
    if now > expires_at:
        problems.append(f"expired at {expires_at} (block time {now})")
    elif expires_at - now < DELEGATION_LOW_SECONDS:
        problems.append(f"expires in {expires_at - now} s, at {expires_at}")
    return problems


@dataclass(frozen=True, slots=True)
class Delegation:
    """Whether `delegate` may act for `account` on a venue, and for how long.

    `active`: the account has named the delegate and the grant is usable now (not expired,
    actions left, not revoked). `actions_left`: how many more actions the venue allows (None:
    the venue sets no count). `expires_at`: unix seconds after which the grant lapses (None:
    it does not lapse). `top_up_left`: how much more the delegate may pay into positions from
    the account's wallet, in the account's `token` (None: the venue sets no such cap; the
    wallet's balance and its ERC-20 allowance to the venue still bound it). `problems` says in
    words what makes it inactive or soon unusable (empty when all is well).
    """

    account: str
    delegate: str
    active: bool
    actions_left: int | None = None
    expires_at: int | None = None
    top_up_left: TokenAmount | None = None
    problems: tuple[str, ...] = ()


@runtime_checkable
class Delegates(Protocol):
    """A venue where a trader can let another key act on the trader's positions, with limits,
    paying only ever to the trader (GMX's SubaccountRouter, the reference exchange's
    operators). `build` acts as the delegate when the action's account is not the sender."""

    async def delegation(
        self, account: str, delegate: str, *, token: str | None = None
    ) -> Delegation:
        """The grant `account` gave `delegate` at the latest block (`token`: the token
        top-ups are paid in, for `top_up_left`)."""
        ...

    async def delegation_setup(
        self,
        account: str,
        delegate: str,
        *,
        max_actions: int,
        expires_at: int,
        token: str,
        top_up_allowance: int | None = None,
    ) -> tuple[TxRequest, ...]:
        """The transactions `account` sends with its own key to let `delegate` act for it:
        at most `max_actions` actions until `expires_at` (unix seconds), with top-ups paid in
        `token` from its wallet, at most `top_up_allowance` raw units (None: unlimited)."""
        ...


async def pin_block(reads: ChainReads, block: int | None) -> tuple[int, int]:
    """The block a read is pinned to, and the round trips spent finding it: `block` as given
    (none), or the node's head when it is None (one, eth_blockNumber). VenueError for a
    negative block."""
    if block is None:
        return await reads.block_number(), 1
    if block < 0:
        raise VenueError(f"block must not be negative, got {block}")
    return block, 0
