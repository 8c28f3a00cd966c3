"""Pure margin math for isolated positions and cross accounts (DESIGN.md, "Margin terms").

For collateral C, size q, entry E, mark P, accrued fees F0, close fee rate f, maintenance
rate m:

    notional N = q P                    pnl = q (P - E) long, q (E - P) short
    equity     = C + pnl - F0 - f q P   margin ratio = equity / N
    MM         = m q P (mark basis) or m q E (entry basis)
    liquidatable when equity < MM (<= where the venue says so) or equity < the venue floor

A cross account is the same book with one C and several positions: equity sums every
position's pnl, fees and close fee; N sums the notionals; MM sums the maintenance margins.

Arithmetic is exact (Decimal in `units.EXACT`, which raises rather than rounds) up to the
one place each result is rounded, and that rounding is conservative for the trader: equity,
pnl and ratios round down, requirements (maintenance margin, collateral to add, size to cut)
round up, a long's liquidation price rounds up and a short's down. Ratios are rounded down to
`RATIO_PLACES` places.

Beyond DESIGN.md's formulas, the liquidation price also honours a venue floor
(`Market.min_collateral_usd`): it is the price at which either requirement is first hit.

What a reduce does is modelled conservatively, the same for every venue: the cut part pays
the close fee and price impact (`Market.close_cost_rate`), its loss is taken from collateral,
its profit is assumed paid out (not left as collateral), and the position's accrued fees are
settled from collateral.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import ParamSpec, TypeVar

from keeper.model import Basis, CrossAccount, Market, Position, Side, Strictness
from keeper.units import (
    EXACT,
    Price,
    TokenAmount,
    Usd,
    div_ceil,
    div_floor,
    quantize_ceil,
    quantize_floor,
    sub_floor,
)

__all__ = [
    "RATIO_PLACES",
    "Leg",
    "Metric",
    "add_account_collateral",
    "add_collateral",
    "after_reduce",
    "collateral_for_distance",
    "collateral_for_ratio",
    "cross_after_reduce",
    "cross_collateral_for_distance",
    "cross_collateral_for_ratio",
    "cross_distance_to_liquidation",
    "cross_equity",
    "cross_is_liquidatable",
    "cross_liquidation_price",
    "cross_maintenance_margin",
    "cross_margin_ratio",
    "cross_metric",
    "cross_notional",
    "cross_ratio_and_distance",
    "cross_size_to_cut_for_distance",
    "cross_size_to_cut_for_ratio",
    "distance_to_liquidation",
    "entry_notional",
    "equity",
    "is_liquidatable",
    "leverage",
    "liquidation_price",
    "maintenance_margin",
    "margin_ratio",
    "metric",
    "notional",
    "pnl",
    "project",
    "projected_margin_ratio",
    "ratio_and_distance",
    "size_to_cut_for_distance",
    "size_to_cut_for_ratio",
]

RATIO_PLACES = 18
"""Ratios (margin ratio, distance, leverage) are rounded to this many decimal places."""

Leg = tuple[Position, Market]
"""A position with its market: what cross-account functions take, one per position."""

_P = ParamSpec("_P")
_R = TypeVar("_R")
_ZERO = Decimal(0)
_ONE = Decimal(1)


class Metric(StrEnum):
    """How far a position is from trouble: its margin ratio, or its signed distance to the
    liquidation price (a share of the mark; None when price alone cannot liquidate it)."""

    RATIO = "ratio"
    DISTANCE = "distance"


def _exact(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run `fn` in the EXACT context: sums and products raise instead of rounding."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with localcontext(EXACT):
            return fn(*args, **kwargs)

    return wrapper


# --- the book: exact values in whole USD and whole tokens -----------------------------------


@dataclass(frozen=True, slots=True)
class _Leg:
    key: str
    side: Side
    q: Decimal
    entry: Decimal
    mark: Decimal
    fees: Decimal
    m: Decimal
    f: Decimal
    cost: Decimal
    basis: Basis
    rate: Decimal
    price_decimals: int
    size_decimals: int
    c: Decimal = _ZERO  # collateral in the index token: its value moves with this leg's mark

    @property
    def long(self) -> bool:
        return self.side is Side.LONG

    def unit_pnl(self, price: Decimal) -> Decimal:
        return price - self.entry if self.long else self.entry - price

    def value(self) -> Decimal:
        """This leg's contribution to equity: pnl - F0 - f q P (+ c P: collateral held in the
        index token, whose value moves with the mark; the book's collateral holds the rest)."""
        return (
            self.q * self.unit_pnl(self.mark) - self.fees - self.f * self.q * self.mark
            + self.c * self.mark
        )  # fmt: skip

    def mm(self) -> Decimal:
        return self.m * self.q * (self.mark if self.basis is Basis.MARK else self.entry)

    def at(self, price: Decimal) -> _Leg:
        return replace(self, mark=price)


@dataclass(frozen=True, slots=True)
class _Book:
    collateral: Decimal
    legs: tuple[_Leg, ...]
    usd_decimals: int
    strictness: Strictness
    floor: Decimal | None

    def equity(self) -> Decimal:
        return self.collateral + sum((leg.value() for leg in self.legs), _ZERO)

    def notional(self) -> Decimal:
        return sum((leg.q * leg.mark for leg in self.legs), _ZERO)

    def mm(self) -> Decimal:
        return sum((leg.mm() for leg in self.legs), _ZERO)

    def liquidatable(self) -> bool:
        equity, mm = self.equity(), self.mm()
        if equity < mm or (self.strictness is Strictness.LE and equity == mm):
            return True
        return self.floor is not None and equity < self.floor

    def ratio(self) -> Decimal:
        return quantize_floor(div_floor(self.equity(), self.notional()), RATIO_PLACES)

    def index(self, key: str) -> int:
        for i, leg in enumerate(self.legs):
            if leg.key == key:
                return i
        raise KeyError(f"no position {key} in this account")

    def moved(self, k: int, price: Decimal) -> _Book:
        legs = list(self.legs)
        legs[k] = legs[k].at(price)
        return replace(self, legs=tuple(legs))

    def crossing(self, k: int) -> Decimal | None:
        """The mark of leg k, all else fixed, at which a requirement is first hit.

        Equity and MM are linear in the leg's mark: equity = a + bP, MM = c + dP. A long
        (b > 0) is liquidatable below the crossing, a short (b < 0) above it; with a floor
        the first crossing wins (the higher for a long, the lower for a short). Divisions
        round up for a long and down for a short. None when no crossing exists.
        """
        leg = self.legs[k]
        b = (leg.q * (_ONE - leg.f) if leg.long else -leg.q * (_ONE + leg.f)) + leg.c
        d = leg.m * leg.q if leg.basis is Basis.MARK else _ZERO
        a = self.equity() - b * leg.mark
        c = self.mm() - d * leg.mark
        div = div_ceil if leg.long else div_floor
        found: list[Decimal] = []
        if (b - d > 0) if leg.long else (b - d < 0):
            found.append(div(c - a, b - d))
        if self.floor is not None and b != 0:
            found.append(div(self.floor - a, b))
        if not found:
            return None
        return max(found) if leg.long else min(found)

    def distance(self, k: int) -> Decimal | None:
        leg = self.legs[k]
        crossing = self.crossing(k)
        if leg.long:
            if crossing is None or crossing <= 0:
                return None
            return quantize_floor(div_floor(sub_floor(leg.mark, crossing), leg.mark), RATIO_PLACES)
        if crossing is None:
            return None
        crossing = max(crossing, _ZERO)
        return quantize_floor(div_floor(sub_floor(crossing, leg.mark), leg.mark), RATIO_PLACES)

    def min_distance(self) -> Decimal | None:
        found = [d for d in (self.distance(k) for k in range(len(self.legs))) if d is not None]
        return min(found) if found else None

    def metric(self, which: Metric) -> Decimal | None:
        return self.ratio() if which is Metric.RATIO else self.min_distance()

    def reduced(self, k: int, dq: Decimal) -> _Book:
        leg = self.legs[k]
        unit = leg.unit_pnl(leg.mark)
        collateral = self.collateral + min(dq * unit, _ZERO) - leg.fees - leg.cost * dq * leg.mark
        legs = list(self.legs)
        if dq >= leg.q:
            del legs[k]
        else:
            legs[k] = replace(leg, q=leg.q - dq, fees=_ZERO)
        return replace(self, collateral=collateral, legs=tuple(legs))

    def held(self) -> Decimal:
        """The collateral's value at the marks (the fixed part and what moves with a mark)."""
        return self.collateral + sum((leg.c * leg.mark for leg in self.legs), _ZERO)

    def collateral_for_ratio(self, target: Decimal) -> Decimal:
        return max(target * self.notional() - self.equity(), _ZERO)

    def collateral_for_distance(self, target: Decimal) -> Decimal:
        need = _ZERO
        for k, leg in enumerate(self.legs):
            factor = _ONE - target if leg.long else _ONE + target
            moved = self.moved(k, max(leg.mark * factor, _ZERO))
            equity = moved.equity()
            need = max(need, moved.mm() - equity)
            if self.floor is not None:
                need = max(need, self.floor - equity)
        return need

    def cut_for_ratio(self, k: int, target: Decimal) -> Decimal | None:
        """Tokens of leg k to cut so that the ratio reaches target; None if cutting can't."""
        leg = self.legs[k]
        shortfall = target * self.notional() - self.equity()
        if shortfall <= 0:
            return _ZERO
        per_token = (
            target * leg.mark - max(leg.unit_pnl(leg.mark), _ZERO) - (leg.cost - leg.f) * leg.mark
        )
        if per_token <= 0:
            return None
        cut = div_ceil(shortfall, per_token)
        return cut if cut < leg.q else None


def _check(position: Position, market: Market) -> None:
    if (position.venue, position.market_id) != (market.venue, market.market_id):
        raise ValueError(f"position {position.key} is not in market {market.market_id}")
    if position.size.decimals != market.index_token.decimals:
        raise TypeError(f"position {position.key}: size is not in the index token's decimals")
    if position.fees.decimals != market.usd_decimals:
        raise TypeError(f"position {position.key}: USD values are not at the venue's precision")


def _leg(position: Position, market: Market) -> _Leg:
    _check(position, market)
    return _Leg(
        key=position.key,
        side=position.side,
        q=position.size.value,
        entry=position.entry_price.value,
        mark=market.mark_price.value,
        fees=position.fees.value,
        m=market.maintenance_rate.normalize(EXACT),
        f=market.close_fee_rate.normalize(EXACT),
        cost=market.close_cost_rate().normalize(EXACT),
        basis=market.basis,
        rate=market.rate_per_second(position.side).normalize(EXACT),
        price_decimals=market.mark_price.decimals,
        size_decimals=position.size.decimals,
    )


def _isolated(position: Position, market: Market) -> _Book:
    """The position's book. Collateral held in the market's index token (GMX: WETH backing an
    ETH long) is valued at the mark as the mark moves; its value now stays what the venue
    said (`collateral_usd`)."""
    floor = market.min_collateral_usd
    leg = _leg(position, market)
    held = position.collateral_usd.value
    if position.collateral_token.address == market.index_token.address:
        leg = replace(leg, c=position.collateral.value)
        held -= leg.c * leg.mark
    return _Book(
        collateral=held,
        legs=(leg,),
        usd_decimals=market.usd_decimals,
        strictness=market.strictness,
        floor=None if floor is None else floor.value,
    )


def _cross(account: CrossAccount, legs: Sequence[Leg]) -> _Book:
    if not legs:
        raise ValueError(f"cross account {account.key} has no positions")
    usd_decimals = account.collateral_usd.decimals
    floors = [m.min_collateral_usd.value for _, m in legs if m.min_collateral_usd is not None]
    for position, market in legs:
        if position.cross_account != account.key:
            raise ValueError(f"position {position.key} is not in cross account {account.key}")
        if market.usd_decimals != usd_decimals:
            raise TypeError(f"market {market.market_id} is not at the account's USD precision")
    le = any(m.strictness is Strictness.LE for _, m in legs)
    return _Book(
        collateral=account.collateral_usd.value,
        legs=tuple(_leg(p, m) for p, m in legs),
        usd_decimals=usd_decimals,
        strictness=Strictness.LE if le else Strictness.LT,
        floor=max(floors) if floors else None,
    )


def _usd_floor(value: Decimal, decimals: int) -> Usd:
    return Usd.from_value_floor(value, decimals)


def _usd_ceil(value: Decimal, decimals: int) -> Usd:
    return Usd.from_value_ceil(value, decimals)


def _liq_price(book: _Book, k: int) -> Price | None:
    leg = book.legs[k]
    crossing = book.crossing(k)
    if crossing is None or crossing <= 0:
        return None
    rounded = (quantize_ceil if leg.long else quantize_floor)(crossing, leg.price_decimals)
    if rounded <= 0:
        return None
    return Price.from_value_exact(rounded, leg.price_decimals)


def _tokens_ceil(value: Decimal, decimals: int) -> TokenAmount:
    return TokenAmount.from_value_ceil(value, decimals)


def _cut_for_distance(book: _Book, k: int, target: Decimal) -> TokenAmount | None:
    """The least whole-unit cut of leg k after which every leg is at least `target` from its
    liquidation price; None when only closing the leg would do."""
    leg = book.legs[k]
    unit = Decimal(1).scaleb(-leg.size_decimals)
    size_raw = int(leg.q.scaleb(leg.size_decimals))

    def ok(raw: int) -> bool:
        distance = book.reduced(k, Decimal(raw) * unit).min_distance()
        return distance is None or distance >= target

    found = _least(ok, size_raw - 1)
    return None if found is None else TokenAmount(found, leg.size_decimals)


def _least(ok: Callable[[int], bool], hi: int) -> int | None:
    """The least n in [0, hi] with ok(n), for ok monotone in n; None if not ok(hi)."""
    if hi < 0 or not ok(hi):
        return None
    lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


# --- isolated positions ---------------------------------------------------------------------


@_exact
def notional(position: Position, market: Market) -> Usd:
    """q P at the mark, rounded up."""
    return _usd_ceil(_leg(position, market).q * market.mark_price.value, market.usd_decimals)


@_exact
def entry_notional(position: Position, market: Market) -> Usd:
    """q E, the size in USD at entry (GMX's sizeInUsd), rounded up."""
    return _usd_ceil(position.size.value * position.entry_price.value, market.usd_decimals)


@_exact
def pnl(position: Position, market: Market) -> Usd:
    """Profit (negative: loss) at the mark, before fees, rounded down."""
    leg = _leg(position, market)
    return _usd_floor(leg.q * leg.unit_pnl(leg.mark), market.usd_decimals)


@_exact
def equity(position: Position, market: Market) -> Usd:
    """C + pnl - F0 - f q P: what the trader would keep on closing now, rounded down."""
    return _usd_floor(_isolated(position, market).equity(), market.usd_decimals)


@_exact
def leverage(position: Position, market: Market) -> Decimal | None:
    """N / equity, rounded up; None when equity is zero or negative."""
    book = _isolated(position, market)
    equity_ = book.equity()
    if equity_ <= 0:
        return None
    return quantize_ceil(div_ceil(book.notional(), equity_), RATIO_PLACES)


@_exact
def margin_ratio(position: Position, market: Market) -> Decimal:
    """equity / N, rounded down."""
    return _isolated(position, market).ratio()


@_exact
def maintenance_margin(position: Position, market: Market) -> Usd:
    """m times the basis notional (mark or entry, as the market says), rounded up."""
    return _usd_ceil(_leg(position, market).mm(), market.usd_decimals)


@_exact
def is_liquidatable(position: Position, market: Market) -> bool:
    """equity < MM (<= MM for a LE venue), or equity below the venue's floor."""
    return _isolated(position, market).liquidatable()


@_exact
def liquidation_price(position: Position, market: Market) -> Price | None:
    """The mark at which the position becomes liquidatable, at the mark's precision; a long's
    rounds up and a short's down. None where the formula gives zero or less."""
    return _liq_price(_isolated(position, market), 0)


@_exact
def distance_to_liquidation(position: Position, market: Market) -> Decimal | None:
    """(P - P_liq) / P for a long, (P_liq - P) / P for a short, rounded down; negative when
    past it. None for a long that no fall in price can liquidate; a short that every price
    liquidates is at -1 (its liquidation price is taken as zero)."""
    return _isolated(position, market).distance(0)


@_exact
def metric(position: Position, market: Market, which: Metric) -> Decimal | None:
    """The margin ratio or the signed distance to liquidation."""
    return _isolated(position, market).metric(which)


@_exact
def ratio_and_distance(position: Position, market: Market) -> tuple[Decimal, Decimal | None]:
    """`margin_ratio` and `distance_to_liquidation` at once (one computation for both)."""
    book = _isolated(position, market)
    return book.ratio(), book.min_distance()


@_exact
def collateral_for_ratio(position: Position, market: Market, target: Decimal) -> Usd:
    """USD of collateral to add so that the margin ratio is at least `target`, rounded up."""
    need = _isolated(position, market).collateral_for_ratio(target)
    return _usd_ceil(need, market.usd_decimals)


@_exact
def collateral_for_distance(position: Position, market: Market, target: Decimal) -> Usd:
    """USD of collateral to add so that the liquidation price is at least `target` (a share
    of the mark) away, rounded up."""
    need = _isolated(position, market).collateral_for_distance(target)
    return _usd_ceil(need, market.usd_decimals)


@_exact
def size_to_cut_for_ratio(
    position: Position, market: Market, target: Decimal
) -> TokenAmount | None:
    """Index tokens to cut so that the margin ratio is at least `target`, rounded up; zero if
    it already is, None if only closing would do."""
    cut = _isolated(position, market).cut_for_ratio(0, target)
    return None if cut is None else _tokens_ceil(cut, position.size.decimals)


@_exact
def size_to_cut_for_distance(
    position: Position, market: Market, target: Decimal
) -> TokenAmount | None:
    """Index tokens to cut so that the distance to liquidation is at least `target`; zero if
    it already is, None if only closing would do."""
    return _cut_for_distance(_isolated(position, market), 0, target)


@_exact
def after_reduce(position: Position, market: Market, size_delta: TokenAmount) -> Position:
    """The position as modelled after cutting `size_delta` (less than its size): collateral
    pays the cut's close cost, its loss and the accrued fees; profit is paid out."""
    if not TokenAmount(0, size_delta.decimals) < size_delta < position.size:
        raise ValueError("size_delta must be positive and less than the position's size")
    book = _isolated(position, market).reduced(0, size_delta.value)
    collateral_usd = _usd_floor(book.held(), market.usd_decimals)
    return replace(
        position,
        size=position.size - size_delta,
        collateral_usd=collateral_usd,
        collateral=_collateral_tokens(collateral_usd, position.collateral_price, position),
        fees=position.fees.zero(),
    )


def _collateral_tokens(usd: Usd, price: Price, position: Position | CrossAccount) -> TokenAmount:
    if usd.raw <= 0 or price.raw <= 0:
        return position.collateral.zero()
    return usd.to_tokens_floor(price, position.collateral.decimals)


@_exact
def add_collateral(position: Position, amount: TokenAmount) -> Position:
    """The position with `amount` (negative: withdrawn) of its collateral token added, valued
    at its collateral price, rounded down (so a withdrawal counts for at least its value)."""
    return replace(
        position,
        collateral=position.collateral + amount,
        collateral_usd=position.collateral_usd
        + amount.to_usd_floor(position.collateral_price, position.collateral_usd.decimals),
    )


@_exact
def project(position: Position, market: Market, seconds: int) -> Position:
    """The position with funding and borrowing accrued for `seconds` more at the current
    rates on the basis notional, price unchanged; the added fees round up."""
    if seconds < 0:
        raise ValueError("seconds must not be negative")
    leg = _leg(position, market)
    basis = leg.mark if leg.basis is Basis.MARK else leg.entry
    accrued = _usd_ceil(leg.rate * leg.q * basis * seconds, market.usd_decimals)
    return replace(position, fees=position.fees + accrued)


def projected_margin_ratio(position: Position, market: Market, seconds: int) -> Decimal:
    """The margin ratio `seconds` ahead at the current funding and borrowing rates."""
    return margin_ratio(project(position, market, seconds), market)


# --- cross accounts --------------------------------------------------------------------------


@_exact
def cross_equity(account: CrossAccount, legs: Sequence[Leg]) -> Usd:
    """All collateral plus all pnl minus all fees and close fees, rounded down."""
    book = _cross(account, legs)
    return _usd_floor(book.equity(), book.usd_decimals)


@_exact
def cross_notional(account: CrossAccount, legs: Sequence[Leg]) -> Usd:
    """The sum of the positions' notionals at the mark, rounded up."""
    book = _cross(account, legs)
    return _usd_ceil(book.notional(), book.usd_decimals)


@_exact
def cross_margin_ratio(account: CrossAccount, legs: Sequence[Leg]) -> Decimal:
    """Account equity over total notional, rounded down."""
    return _cross(account, legs).ratio()


@_exact
def cross_maintenance_margin(account: CrossAccount, legs: Sequence[Leg]) -> Usd:
    """The sum of the positions' maintenance margins, rounded up."""
    book = _cross(account, legs)
    return _usd_ceil(book.mm(), book.usd_decimals)


@_exact
def cross_is_liquidatable(account: CrossAccount, legs: Sequence[Leg]) -> bool:
    """Equity below total MM (at or below, if any market is LE), or below the highest floor."""
    return _cross(account, legs).liquidatable()


@_exact
def cross_liquidation_price(account: CrossAccount, legs: Sequence[Leg], key: str) -> Price | None:
    """The mark of position `key`, all other marks fixed, at which the account becomes
    liquidatable."""
    book = _cross(account, legs)
    return _liq_price(book, book.index(key))


@_exact
def cross_distance_to_liquidation(
    account: CrossAccount, legs: Sequence[Leg], key: str
) -> Decimal | None:
    """How far (a signed share of its mark) position `key` may move alone before the account
    is liquidatable."""
    book = _cross(account, legs)
    return book.distance(book.index(key))


@_exact
def cross_metric(account: CrossAccount, legs: Sequence[Leg], which: Metric) -> Decimal | None:
    """The account's margin ratio, or the least distance over its positions."""
    return _cross(account, legs).metric(which)


@_exact
def cross_ratio_and_distance(
    account: CrossAccount, legs: Sequence[Leg]
) -> tuple[Decimal, Decimal | None]:
    """`cross_metric` for both metrics at once (one computation for both)."""
    book = _cross(account, legs)
    return book.ratio(), book.min_distance()


@_exact
def cross_collateral_for_ratio(account: CrossAccount, legs: Sequence[Leg], target: Decimal) -> Usd:
    """USD to add to the account so that its margin ratio is at least `target`, rounded up."""
    book = _cross(account, legs)
    return _usd_ceil(book.collateral_for_ratio(target), book.usd_decimals)


@_exact
def cross_collateral_for_distance(
    account: CrossAccount, legs: Sequence[Leg], target: Decimal
) -> Usd:
    """USD to add so that every position may move `target` alone, rounded up."""
    book = _cross(account, legs)
    return _usd_ceil(book.collateral_for_distance(target), book.usd_decimals)


@_exact
def cross_size_to_cut_for_ratio(
    account: CrossAccount, legs: Sequence[Leg], key: str, target: Decimal
) -> TokenAmount | None:
    """Tokens of position `key` to cut so that the account's ratio reaches `target`."""
    book = _cross(account, legs)
    k = book.index(key)
    cut = book.cut_for_ratio(k, target)
    return None if cut is None else _tokens_ceil(cut, book.legs[k].size_decimals)


@_exact
def cross_size_to_cut_for_distance(
    account: CrossAccount, legs: Sequence[Leg], key: str, target: Decimal
) -> TokenAmount | None:
    """Tokens of position `key` to cut so that every position may move `target` alone."""
    book = _cross(account, legs)
    return _cut_for_distance(book, book.index(key), target)


@_exact
def cross_after_reduce(
    account: CrossAccount, legs: Sequence[Leg], key: str, size_delta: TokenAmount
) -> tuple[CrossAccount, tuple[Leg, ...]]:
    """The account and its positions as modelled after cutting `size_delta` of `key`."""
    book = _cross(account, legs)
    k = book.index(key)
    position, market = legs[k]
    if not TokenAmount(0, size_delta.decimals) < size_delta < position.size:
        raise ValueError("size_delta must be positive and less than the position's size")
    reduced = book.reduced(k, size_delta.value)
    collateral_usd = _usd_floor(reduced.collateral, book.usd_decimals)
    new_account = replace(
        account,
        collateral_usd=collateral_usd,
        collateral=_collateral_tokens(collateral_usd, account.collateral_price, account),
    )
    new_position = replace(position, size=position.size - size_delta, fees=position.fees.zero())
    new_legs = tuple((new_position, market) if i == k else leg for i, leg in enumerate(legs))
    return new_account, new_legs


@_exact
def add_account_collateral(account: CrossAccount, amount: TokenAmount) -> CrossAccount:
    """The account with `amount` (negative: withdrawn) added, valued rounding down."""
    return replace(
        account,
        collateral=account.collateral + amount,
        collateral_usd=account.collateral_usd
        + amount.to_usd_floor(account.collateral_price, account.collateral_usd.decimals),
    )
