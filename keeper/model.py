"""The venue-neutral model: what a venue adapter reads and what the policy decides.

Everything here is a frozen, slotted dataclass. A `Snapshot` is one block's view of the
watched markets, positions, cross accounts and the keeper's wallet; the policy turns it into
`Action`s. Venue adapters map their own definitions onto these fields (see DESIGN.md, "Margin
terms"); nothing downstream knows which venue it is looking at beyond `venue` names and the
parameters carried by `Market`.

Identifiers are strings: `venue` (e.g. "refex", "gmx"), `Market.market_id` (the venue's
market address or symbol), `Position.key` (the venue's position key, stable for the life of
the position), `CrossAccount.key` (stable per venue and account), and token identifiers
(`Token.address`, compared as given, so adapters should pass checksummed addresses).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias

from keeper.units import Price, TokenAmount, Usd

__all__ = [
    "Action",
    "Alert",
    "Basis",
    "Close",
    "CloseQuote",
    "CrossAccount",
    "MarginMode",
    "Market",
    "Position",
    "Reason",
    "Reduce",
    "Scope",
    "Severity",
    "Side",
    "Snapshot",
    "Strictness",
    "Token",
    "TopUp",
    "Wallet",
    "Withdraw",
]


class Side(StrEnum):
    LONG = "long"
    SHORT = "short"


class Basis(StrEnum):
    """What maintenance margin is a rate of: notional at the mark, or size in USD at entry."""

    MARK = "mark"
    ENTRY = "entry"


class Strictness(StrEnum):
    """Liquidatable when equity < MM (LT: our reference exchange, GMX) or <= MM (LE)."""

    LT = "lt"
    LE = "le"


class MarginMode(StrEnum):
    ISOLATED = "isolated"
    CROSS = "cross"


@dataclass(frozen=True, slots=True)
class Token:
    """A token: identifier (address, or symbol in tests and the calculator) and decimals."""

    address: str
    symbol: str
    decimals: int

    def amount(self, raw: int) -> TokenAmount:
        """`raw` smallest units of this token."""
        return TokenAmount(raw, self.decimals)


@dataclass(frozen=True, slots=True)
class CloseQuote:
    """A venue's quote of what closing costs, as rates on the notional closed.

    `fee_rate` is the close fee the quote includes (it replaces `Market.close_fee_rate` in
    cost comparisons); `impact_rate` is the price impact as a share of notional (positive is
    a cost). Rates, not amounts, so they apply to a partial reduce as well as a full close.
    """

    fee_rate: Decimal
    impact_rate: Decimal


@dataclass(frozen=True, slots=True)
class Market:
    """One market of one venue, with the venue's margin parameters and the current mark.

    Rates are Decimal fractions: `maintenance_rate` of the basis notional, `close_fee_rate` and
    `liquidation_fee_rate` of the notional closed, and funding and borrowing rates per second
    of the basis notional, signed per side (positive: the side pays, negative: it earns).
    `usd_decimals` is the venue's USD precision (6 on the reference exchange, 30 on GMX).
    """

    venue: str
    market_id: str
    index_token: Token
    usd_decimals: int
    mark_price: Price
    maintenance_rate: Decimal
    basis: Basis = Basis.MARK
    strictness: Strictness = Strictness.LT
    min_collateral_usd: Usd | None = None
    close_fee_rate: Decimal = Decimal(0)
    liquidation_fee_rate: Decimal = Decimal(0)
    funding_rate_long: Decimal = Decimal(0)
    funding_rate_short: Decimal = Decimal(0)
    borrowing_rate_long: Decimal = Decimal(0)
    borrowing_rate_short: Decimal = Decimal(0)
    close_quote: CloseQuote | None = None

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.maintenance_rate < Decimal(1):
            raise ValueError(f"maintenance_rate must be in [0, 1), got {self.maintenance_rate}")
        for name in ("close_fee_rate", "liquidation_fee_rate"):
            rate = getattr(self, name)
            if not Decimal(0) <= rate < Decimal(1):
                raise ValueError(f"{name} must be in [0, 1), got {rate}")
        if self.min_collateral_usd is not None and (
            self.min_collateral_usd.decimals != self.usd_decimals
        ):
            raise TypeError("min_collateral_usd must be at the market's usd_decimals")

    def rate_per_second(self, side: Side) -> Decimal:
        """Funding plus borrowing per second for `side` (positive: the side pays)."""
        if side is Side.LONG:
            return self.funding_rate_long + self.borrowing_rate_long
        return self.funding_rate_short + self.borrowing_rate_short

    def close_cost_rate(self) -> Decimal:
        """Fee plus price impact of closing, per unit of notional (the quote if there is one)."""
        if self.close_quote is None:
            return self.close_fee_rate
        return self.close_quote.fee_rate + self.close_quote.impact_rate


@dataclass(frozen=True, slots=True)
class Position:
    """An open position: isolated (its own collateral) or cross (margin is the account's).

    `size` is in index tokens; `collateral` in `collateral_token`, valued at `collateral_price`
    to `collateral_usd` by the venue (zero for cross positions). `fees` are accrued funding
    and borrowing not yet settled, F0 in DESIGN.md: positive is owed by the trader, negative
    is income. `cross_account` is the `CrossAccount.key` a cross position belongs to.
    """

    venue: str
    key: str
    account: str
    market_id: str
    side: Side
    size: TokenAmount
    entry_price: Price
    collateral_token: Token
    collateral: TokenAmount
    collateral_price: Price
    collateral_usd: Usd
    fees: Usd
    mode: MarginMode = MarginMode.ISOLATED
    cross_account: str | None = None

    def __post_init__(self) -> None:
        if self.size.raw <= 0:
            raise ValueError(f"position {self.key}: size must be positive")
        if self.entry_price.raw <= 0:
            raise ValueError(f"position {self.key}: entry price must be positive")
        if self.collateral.decimals != self.collateral_token.decimals:
            raise TypeError(f"position {self.key}: collateral is not in the collateral token")
        if self.collateral_usd.decimals != self.fees.decimals:
            raise TypeError(f"position {self.key}: collateral_usd and fees differ in scale")
        if (self.mode is MarginMode.CROSS) != (self.cross_account is not None):
            raise ValueError(f"position {self.key}: a cross position needs its cross_account")

    @classmethod
    def trusted(  # noqa: PLR0917 (one argument per field, in field order)
        cls,
        venue: str,
        key: str,
        account: str,
        market_id: str,
        side: Side,
        size: TokenAmount,
        entry_price: Price,
        collateral_token: Token,
        collateral: TokenAmount,
        collateral_price: Price,
        collateral_usd: Usd,
        fees: Usd,
        mode: MarginMode,
        cross_account: str | None,
    ) -> Position:
        """Trusted: the caller has validated. Builds the Position without `__post_init__`.

        For venue adapters that build thousands of positions per read and have already
        checked what `__post_init__` checks (size and entry price positive, collateral in the
        collateral token's decimals, collateral_usd and fees at one scale, cross_account set
        exactly for cross positions). Every argument is required and positional, in field
        order; the result equals, hashes and behaves exactly like `Position(...)`.
        """
        obj: Any = _new(_PositionFields)
        obj.venue = venue
        obj.key = key
        obj.account = account
        obj.market_id = market_id
        obj.side = side
        obj.size = size
        obj.entry_price = entry_price
        obj.collateral_token = collateral_token
        obj.collateral = collateral
        obj.collateral_price = collateral_price
        obj.collateral_usd = collateral_usd
        obj.fees = fees
        obj.mode = mode
        obj.cross_account = cross_account
        obj.__class__ = cls
        return obj  # type: ignore[no-any-return]  # (typing.cast costs a call)


class _PositionFields:
    """Position's slots in a plain, settable class, for `Position.trusted`.

    `trusted` fills one in and assigns `Position` to its `__class__`: the layouts are the same
    (the same slots, in order, on `object`), which is what CPython requires of a `__class__`
    assignment (it raises TypeError otherwise, it never half-works). The result is an ordinary
    frozen Position, made without `__init__`, `__post_init__` or the frozen `__setattr__`
    (about three times as fast as setting the slots through descriptors).
    """

    __slots__ = Position.__slots__


POSITION_SLOTS: type = _PositionFields
"""`Position.trusted` inlined, for an adapter's innermost loop only: fill in every field of
`object.__new__(POSITION_SLOTS)` (all of `Position.__slots__`) and assign `Position` to its
`__class__`; the result is `Position.trusted(...)` of the same values, under its conditions."""


_TRUSTED_SETS = (
    "venue",
    "key",
    "account",
    "market_id",
    "side",
    "size",
    "entry_price",
    "collateral_token",
    "collateral",
    "collateral_price",
    "collateral_usd",
    "fees",
    "mode",
    "cross_account",
)
"""What `Position.trusted` sets, in order: a field added to Position fails the import below
until `trusted` sets it too."""
if not Position.__slots__ == _TRUSTED_SETS == tuple(f.name for f in fields(Position)):
    raise AssertionError("Position.trusted must set every field of Position, in order")
_new = object.__new__


@dataclass(frozen=True, slots=True)
class CrossAccount:
    """A cross-margin account: one pool of collateral behind several positions."""

    venue: str
    key: str
    account: str
    collateral_token: Token
    collateral: TokenAmount
    collateral_price: Price
    collateral_usd: Usd
    position_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Wallet:
    """The keeper's wallet: what it can top up from, and gas money."""

    address: str
    token: Token
    balance: TokenAmount
    native_balance: TokenAmount


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One block's view of everything watched. Lookups by id are indexed on construction."""

    block_number: int
    block_time: int
    """Unix seconds of the block."""
    wallet: Wallet
    markets: tuple[Market, ...]
    positions: tuple[Position, ...] = ()
    accounts: tuple[CrossAccount, ...] = ()
    funds: Mapping[str, TokenAmount] | None = field(default=None, hash=False)
    """Delegated mode (the keeper signs as a delegate of the watched accounts: a GMX
    subaccount, a reference-exchange operator): what each account's own wallet can pay into
    top-ups through the venue, in the wallet's token, keyed by the account as positions name
    it; an account missing here can pay nothing. None: top-ups are paid from `wallet`."""
    _markets: Mapping[tuple[str, str], Market] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _positions: Mapping[str, Mapping[str, Position]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    """venue -> key -> position: one dict per venue, keyed by the keys themselves (no tuple
    per position to build and hash)."""

    def __post_init__(self) -> None:
        markets = {(m.venue, m.market_id): m for m in self.markets}
        positions: dict[str, dict[str, Position]] = {}
        for p in self.positions:
            positions.setdefault(p.venue, {})[p.key] = p
        if len(markets) != len(self.markets):
            raise ValueError("snapshot: duplicate market")
        if sum(map(len, positions.values())) != len(self.positions):
            raise ValueError("snapshot: duplicate position key")
        for p in self.positions:
            if (p.venue, p.market_id) not in markets:
                raise ValueError(f"snapshot: position {p.key} is in unknown market {p.market_id}")
        for a in self.accounts:
            for k in a.position_keys:
                if k not in positions.get(a.venue, {}):
                    raise ValueError(f"snapshot: account {a.key} lists unknown position {k}")
        if self.funds is not None:
            for account, amount in self.funds.items():
                if amount.decimals != self.wallet.token.decimals:
                    raise ValueError(f"snapshot: funds of {account} not in the wallet's token")
            object.__setattr__(self, "funds", MappingProxyType(dict(self.funds)))
        object.__setattr__(self, "_markets", MappingProxyType(markets))
        object.__setattr__(
            self,
            "_positions",
            MappingProxyType({v: MappingProxyType(ps) for v, ps in positions.items()}),
        )

    @classmethod
    def trusted(  # noqa: PLR0917 (the fields in order, then the position index)
        cls,
        block_number: int,
        block_time: int,
        wallet: Wallet,
        markets: tuple[Market, ...],
        positions: tuple[Position, ...],
        accounts: tuple[CrossAccount, ...],
        positions_index: Mapping[str, dict[str, Position]],
        funds: Mapping[str, TokenAmount] | None = None,
    ) -> Snapshot:
        """Trusted: the caller has validated. Builds the Snapshot without `__post_init__`.

        For venue adapters that have already made sure of what `__post_init__` checks: no two
        markets with one (venue, market_id), no two positions with one (venue, key), every
        position in one of `markets`, every key an account lists among `positions`. The
        caller also hands over the position index it built on the way, `positions_index`:
        venue -> key -> position for exactly `positions`, in that order (the inner dicts are
        kept, not copied: the caller must not change them afterwards). The market index is
        built here. The result equals, hashes and behaves exactly like `Snapshot(...)`.
        """
        obj = _new(cls)
        setattr_ = object.__setattr__
        setattr_(obj, "block_number", block_number)
        setattr_(obj, "block_time", block_time)
        setattr_(obj, "wallet", wallet)
        setattr_(obj, "markets", markets)
        setattr_(obj, "positions", positions)
        setattr_(obj, "accounts", accounts)
        setattr_(obj, "funds", None if funds is None else MappingProxyType(dict(funds)))
        setattr_(obj, "_markets", MappingProxyType({(m.venue, m.market_id): m for m in markets}))
        setattr_(
            obj,
            "_positions",
            MappingProxyType({v: MappingProxyType(ps) for v, ps in positions_index.items()}),
        )
        return obj

    def market(self, venue: str, market_id: str) -> Market:
        return self._markets[(venue, market_id)]

    def market_of(self, position: Position) -> Market:
        return self._markets[(position.venue, position.market_id)]

    def position(self, venue: str, key: str) -> Position:
        return self._positions[venue][key]

    def positions_of(self, account: CrossAccount) -> tuple[Position, ...]:
        index = self._positions[account.venue]
        return tuple(index[k] for k in account.position_keys)


if Snapshot.__slots__ != (
    "block_number",
    "block_time",
    "wallet",
    "markets",
    "positions",
    "accounts",
    "funds",
    "_markets",
    "_positions",
):
    raise AssertionError("Snapshot.trusted must set every field of Snapshot")


# --- Actions -------------------------------------------------------------------------------


class Scope(StrEnum):
    """What an action's `key` names: a position, or a cross account."""

    POSITION = "position"
    ACCOUNT = "account"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an action was decided: a machine-readable code, a sentence, and the figures used.

    `figures` are (name, value) pairs in a stable order; values are decimal strings (ratios,
    human USD or token amounts) so they go to the journal and JSON unchanged.
    """

    code: str
    message: str
    figures: tuple[tuple[str, str], ...] = ()

    def figure(self, name: str) -> str:
        for k, v in self.figures:
            if k == name:
                return v
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class TopUp:
    """Add `amount` of `token` to a position's (or a cross account's) collateral."""

    kind: ClassVar[str] = "top_up"
    venue: str
    scope: Scope
    key: str
    account: str
    token: Token
    amount: TokenAmount
    reason: Reason


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Take `amount` of excess collateral back from a position or a cross account."""

    kind: ClassVar[str] = "withdraw"
    venue: str
    scope: Scope
    key: str
    account: str
    token: Token
    amount: TokenAmount
    reason: Reason


@dataclass(frozen=True, slots=True)
class Reduce:
    """Cut a position's size by `size_delta` index tokens (less than its whole size)."""

    kind: ClassVar[str] = "reduce"
    venue: str
    key: str
    account: str
    market_id: str
    size_delta: TokenAmount
    reason: Reason


@dataclass(frozen=True, slots=True)
class Close:
    """Close a whole position."""

    kind: ClassVar[str] = "close"
    venue: str
    key: str
    account: str
    market_id: str
    reason: Reason


@dataclass(frozen=True, slots=True)
class Alert:
    """Tell a human; sends no transaction. `key` is the position or account concerned."""

    kind: ClassVar[str] = "alert"
    venue: str
    scope: Scope
    key: str
    account: str
    severity: Severity
    reason: Reason


Action: TypeAlias = TopUp | Withdraw | Reduce | Close | Alert
