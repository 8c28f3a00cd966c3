"""The keeper's judgement: `decide(snapshot, thresholds, budget, history) -> list[Action]`.

Pure: no I/O, no clock, no logging, no hidden state. Every action carries a `Reason` (a
machine-readable code, a sentence, and the figures it was decided from).

Each isolated position and each cross account is judged on one metric, the margin ratio or
the signed distance to liquidation (per market, `MarketThresholds.metric`). With
`projection_seconds` set, the metric is the worse of now and that far ahead at the current
funding and borrowing rates, and amounts are sized so that both reach the target.

With x the metric, for a position or account with no open intent:

    x < close_below                      Close (every position of a cross account)
    x < top_up_below                     TopUp to top_up_to, if the budget can pay all of it
      and x < reduce_below               otherwise Reduce to top_up_to, or Close when no cut
                                         short of the whole position gets there
      and x >= reduce_below              otherwise TopUp what the budget allows (partial), or
                                         an Alert when it allows nothing
    x > withdraw_above (if set)          Withdraw down to top_up_to

The budget goes to the most endangered first (least distance to liquidation, then least
ratio). Cooldown: within `cooldown_blocks` of a position's last action, an action no
stronger than that one is held back, unless x is below reduce_below (danger overrides it).
Hysteresis: after a Withdraw the top-up trigger is lowered by `hysteresis`, after a TopUp or
Reduce the withdraw trigger is raised by it, so a position hovering at a threshold does not
flap between adding and removing collateral.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from types import MappingProxyType
from typing import ClassVar

from keeper import margin
from keeper.margin import Leg, Metric
from keeper.model import (
    Action,
    Alert,
    Close,
    CrossAccount,
    MarginMode,
    Market,
    Position,
    Reason,
    Reduce,
    Scope,
    Severity,
    Snapshot,
    Token,
    TopUp,
    Withdraw,
)
from keeper.units import CONTEXT, Price, TokenAmount, Usd

__all__ = [
    "STRENGTH",
    "Budget",
    "History",
    "MarketThresholds",
    "RecentAction",
    "ThresholdError",
    "Thresholds",
    "decide",
    "strength",
]

STRENGTH: Mapping[str, int] = MappingProxyType(
    {
        Withdraw.kind: 0,
        "none": 1,
        Alert.kind: 2,
        TopUp.kind: 3,
        Reduce.kind: 4,
        Close.kind: 5,
    }
)
"""How strong each action kind is: a lower metric never yields a weaker action."""


def strength(actions: list[Action]) -> int:
    """The strength of the strongest action in `actions` ("none" if empty)."""
    return max((STRENGTH[a.kind] for a in actions), default=STRENGTH["none"])


class ThresholdError(ValueError):
    """Inconsistent thresholds; the message starts with the offending field's name."""


@dataclass(frozen=True, slots=True)
class MarketThresholds:
    """When to act on a position, in the units of `metric` (ratio, or share of the mark)."""

    top_up_below: Decimal
    top_up_to: Decimal
    reduce_below: Decimal
    close_below: Decimal
    withdraw_above: Decimal | None = None
    metric: Metric = Metric.RATIO
    projection_seconds: int = 0
    cooldown_blocks: int = 0
    hysteresis: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("projection_seconds", "cooldown_blocks"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ThresholdError(f"{f.name}: must be a whole number >= 0, got {value!r}")
            elif f.name == "metric":
                if not isinstance(value, Metric):
                    raise ThresholdError(f"metric: must be 'ratio' or 'distance', got {value!r}")
            elif value is not None and (not isinstance(value, Decimal) or not value.is_finite()):
                raise ThresholdError(f"{f.name}: must be a finite Decimal, got {value!r}")
        if self.close_below > self.reduce_below:
            raise ThresholdError(
                f"close_below: {self.close_below} must be <= reduce_below {self.reduce_below}"
            )
        if self.reduce_below > self.top_up_below:
            raise ThresholdError(
                f"reduce_below: {self.reduce_below} must be <= top_up_below {self.top_up_below}"
            )
        if self.top_up_below >= self.top_up_to:
            raise ThresholdError(
                f"top_up_to: {self.top_up_to} must be > top_up_below {self.top_up_below}"
            )
        if self.withdraw_above is not None and self.withdraw_above <= self.top_up_to:
            raise ThresholdError(
                f"withdraw_above: {self.withdraw_above} must be > top_up_to {self.top_up_to}"
            )
        if self.hysteresis < 0:
            raise ThresholdError(f"hysteresis: must be >= 0, got {self.hysteresis}")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Thresholds with per-market (or per-cross-account) overrides.

    `overrides` is keyed by "venue:id" or by the bare id (a market id, or a cross account's
    key); the first found wins, else `default`.
    """

    default: MarketThresholds
    overrides: Mapping[str, MarketThresholds] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))

    def lookup(self, venue: str, ident: str) -> MarketThresholds:
        found = self.overrides.get(f"{venue}:{ident}") or self.overrides.get(ident)
        return found or self.default


@dataclass(frozen=True, slots=True)
class Budget:
    """What top-ups may spend, in the wallet's token: per action, per rolling day, and a
    reserve of the wallet balance that is never spent."""

    max_top_up_per_position: TokenAmount
    max_spend_per_day: TokenAmount
    reserve: TokenAmount


@dataclass(frozen=True, slots=True)
class RecentAction:
    """One action recorded in the journal: on which position or account key, when, what."""

    key: str
    block_number: int
    kind: str


@dataclass(frozen=True, slots=True)
class History:
    """What the journal knows: keys with an intent in flight, recent actions (for cooldown and
    hysteresis), and what top-ups spent inside the rolling day (None: nothing)."""

    open_intents: frozenset[str] = frozenset()
    recent: tuple[RecentAction, ...] = ()
    spent_in_window: TokenAmount | None = None

    def last(self, keys: tuple[str, ...]) -> RecentAction | None:
        found = [r for r in self.recent if r.key in keys]
        return (
            max(found, key=lambda r: (r.block_number, STRENGTH.get(r.kind, 0))) if found else None
        )


# --- what is judged: an isolated position or a cross account --------------------------------


@dataclass(frozen=True, slots=True)
class _Isolated:
    scope: ClassVar[Scope] = Scope.POSITION
    position: Position
    market: Market

    @property
    def venue(self) -> str:
        return self.position.venue

    @property
    def key(self) -> str:
        return self.position.key

    @property
    def account(self) -> str:
        return self.position.account

    @property
    def threshold_id(self) -> str:
        return self.position.market_id

    @property
    def token(self) -> Token:
        return self.position.collateral_token

    @property
    def collateral(self) -> TokenAmount:
        return self.position.collateral

    @property
    def collateral_price(self) -> Price:
        return self.position.collateral_price

    @property
    def usd_decimals(self) -> int:
        return self.market.usd_decimals

    def intent_keys(self) -> tuple[str, ...]:
        return (self.position.key,)

    def legs(self) -> tuple[Leg, ...]:
        return ((self.position, self.market),)

    def projected(self, seconds: int) -> _Isolated:
        return replace(self, position=margin.project(self.position, self.market, seconds))

    def metric(self, which: Metric) -> Decimal | None:
        return margin.metric(self.position, self.market, which)

    def ratio_and_distance(self) -> tuple[Decimal, Decimal | None]:
        return margin.ratio_and_distance(self.position, self.market)

    def equity(self) -> Usd:
        return margin.equity(self.position, self.market)

    def maintenance(self) -> Usd:
        return margin.maintenance_margin(self.position, self.market)

    def need(self, which: Metric, target: Decimal) -> Usd:
        if which is Metric.RATIO:
            return margin.collateral_for_ratio(self.position, self.market, target)
        return margin.collateral_for_distance(self.position, self.market, target)

    def topped(self, amount: TokenAmount) -> _Isolated:
        return replace(self, position=margin.add_collateral(self.position, amount))

    def cut_leg(self) -> Leg:
        return self.position, self.market

    def cut(self, which: Metric, target: Decimal) -> TokenAmount | None:
        if which is Metric.RATIO:
            return margin.size_to_cut_for_ratio(self.position, self.market, target)
        return margin.size_to_cut_for_distance(self.position, self.market, target)

    def reduced(self, size_delta: TokenAmount) -> _Isolated:
        return replace(self, position=margin.after_reduce(self.position, self.market, size_delta))


@dataclass(frozen=True, slots=True)
class _Cross:
    scope: ClassVar[Scope] = Scope.ACCOUNT
    account_: CrossAccount
    legs_: tuple[Leg, ...]

    @property
    def venue(self) -> str:
        return self.account_.venue

    @property
    def key(self) -> str:
        return self.account_.key

    @property
    def account(self) -> str:
        return self.account_.account

    @property
    def threshold_id(self) -> str:
        return self.account_.key

    @property
    def token(self) -> Token:
        return self.account_.collateral_token

    @property
    def collateral(self) -> TokenAmount:
        return self.account_.collateral

    @property
    def collateral_price(self) -> Price:
        return self.account_.collateral_price

    @property
    def usd_decimals(self) -> int:
        return self.account_.collateral_usd.decimals

    def intent_keys(self) -> tuple[str, ...]:
        return (self.account_.key, *self.account_.position_keys)

    def legs(self) -> tuple[Leg, ...]:
        return self.legs_

    def projected(self, seconds: int) -> _Cross:
        legs = tuple((margin.project(p, m, seconds), m) for p, m in self.legs_)
        return replace(self, legs_=legs)

    def metric(self, which: Metric) -> Decimal | None:
        return margin.cross_metric(self.account_, self.legs_, which)

    def ratio_and_distance(self) -> tuple[Decimal, Decimal | None]:
        return margin.cross_ratio_and_distance(self.account_, self.legs_)

    def equity(self) -> Usd:
        return margin.cross_equity(self.account_, self.legs_)

    def maintenance(self) -> Usd:
        return margin.cross_maintenance_margin(self.account_, self.legs_)

    def need(self, which: Metric, target: Decimal) -> Usd:
        if which is Metric.RATIO:
            return margin.cross_collateral_for_ratio(self.account_, self.legs_, target)
        return margin.cross_collateral_for_distance(self.account_, self.legs_, target)

    def topped(self, amount: TokenAmount) -> _Cross:
        return replace(self, account_=margin.add_account_collateral(self.account_, amount))

    def cut_leg(self) -> Leg:
        """The position that contributes most to maintenance (then notional, then key)."""
        return max(
            self.legs_,
            key=lambda leg: (
                margin.maintenance_margin(*leg),
                margin.notional(*leg),
                leg[0].key,
            ),
        )

    def cut(self, which: Metric, target: Decimal) -> TokenAmount | None:
        key = self.cut_leg()[0].key
        if which is Metric.RATIO:
            return margin.cross_size_to_cut_for_ratio(self.account_, self.legs_, key, target)
        return margin.cross_size_to_cut_for_distance(self.account_, self.legs_, key, target)

    def reduced(self, size_delta: TokenAmount) -> _Cross:
        key = self.cut_leg()[0].key
        account, legs = margin.cross_after_reduce(self.account_, self.legs_, key, size_delta)
        return _Cross(account, legs)


_Subject = _Isolated | _Cross


# --- deciding ----------------------------------------------------------------------------------


def _worse(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    """The lower of two metric values, None being +infinity (no liquidation price)."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _lowest(values: Iterable[Decimal | None]) -> Decimal | None:
    lowest: Decimal | None = None
    for value in values:
        lowest = _worse(lowest, value)
    return lowest


def _at_least(value: Decimal | None, target: Decimal) -> bool:
    return value is None or value >= target


def _below(value: Decimal | None, threshold: Decimal) -> bool:
    return value is not None and value < threshold


def _fmt(value: Decimal | Usd | TokenAmount | None) -> str:
    """A figure as a plain decimal string without trailing zeros ("none" for None)."""
    if value is None:
        return "none"
    number = value if isinstance(value, Decimal) else value.value
    return format(number.normalize(CONTEXT), "f")


@dataclass(frozen=True, slots=True)
class _Case:
    """A subject under judgement with everything computed once."""

    subject: _Subject
    th: MarketThresholds
    now: Decimal | None
    ahead: Decimal | None
    x: Decimal | None
    distance: Decimal | None
    ratio: Decimal
    last: RecentAction | None
    in_cooldown: bool

    def views(self) -> tuple[_Subject, ...]:
        """The subject now and, if projecting, ahead: amounts must satisfy both."""
        if self.th.projection_seconds == 0:
            return (self.subject,)
        return (self.subject, self.subject.projected(self.th.projection_seconds))

    def satisfied(self, views: tuple[_Subject, ...], target: Decimal) -> bool:
        return all(_at_least(v.metric(self.th.metric), target) for v in views)

    def figures(self, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        base = (
            ("metric", self.th.metric.value),
            ("value", _fmt(self.now)),
            ("value_ahead", _fmt(self.ahead)),
            ("projection_seconds", str(self.th.projection_seconds)),
            ("margin_ratio", _fmt(self.ratio)),
            ("distance_to_liquidation", _fmt(self.distance)),
            ("equity_usd", _fmt(self.subject.equity())),
            ("maintenance_usd", _fmt(self.subject.maintenance())),
        )
        return base + extra

    def sort_key(self) -> tuple[bool, Decimal, Decimal, str, str]:
        """Most endangered first: least distance (none: last), then least ratio."""
        d = self.distance
        return (d is None, d or Decimal(0), self.ratio, self.subject.venue, self.subject.key)


def decide(
    snapshot: Snapshot, thresholds: Thresholds, budget: Budget, history: History
) -> list[Action]:
    """The actions to take on this snapshot, most endangered first.

    Top-ups draw on the wallet's balance less the reserve, within the day's and the
    position's caps. In delegated mode (`snapshot.funds` set) each account's top-ups draw on
    what its own wallet can pay less the reserve instead, and the day's cap binds them all.

    Raises TypeError if the budget is not in the wallet's token units.
    """
    wallet = snapshot.wallet
    for name in ("max_top_up_per_position", "max_spend_per_day", "reserve"):
        if getattr(budget, name).decimals != wallet.token.decimals:
            raise TypeError(f"budget.{name}: not in the wallet token's decimals")
    spent = history.spent_in_window or wallet.balance.zero()
    zero = wallet.balance.zero()
    funds = snapshot.funds
    day_left = budget.max_spend_per_day - spent
    if funds is None:
        pool = (wallet.balance - budget.reserve).min(day_left).max(zero)
    else:  # delegated: each account pays from its own wallet, the day's cap binds them all
        pool = day_left.max(zero)
        left = {a: (f - budget.reserve).max(zero) for a, f in funds.items()}

    subjects: list[_Subject] = [
        _Isolated(p, snapshot.market_of(p))
        for p in snapshot.positions
        if p.mode is MarginMode.ISOLATED
    ]
    subjects += [
        _Cross(a, tuple((p, snapshot.market_of(p)) for p in snapshot.positions_of(a)))
        for a in snapshot.accounts
    ]
    cases = [
        _assess(s, thresholds, history, snapshot.block_number)
        for s in subjects
        if not history.open_intents.intersection(s.intent_keys())
    ]
    cases.sort(key=_Case.sort_key)

    actions: list[Action] = []
    for case in cases:
        available = pool.min(budget.max_top_up_per_position)
        account = case.subject.account
        if funds is not None:
            available = available.min(left.get(account, zero))
        payable = case.subject.token == wallet.token
        if not payable:  # the wallet cannot pay in this token: reduce and close only
            available = case.subject.collateral.zero()
        decided = _filter(case, _decide_one(case, available, wallet.token if not payable else None))
        for action in decided:
            if isinstance(action, TopUp):
                pool = pool - action.amount
                if funds is not None:
                    left[account] = left.get(account, zero) - action.amount
        actions.extend(decided)
    return actions


def _assess(
    subject: _Subject, thresholds: Thresholds, history: History, block_number: int
) -> _Case:
    th = thresholds.lookup(subject.venue, subject.threshold_id)
    ratio, distance = subject.ratio_and_distance()  # one margin computation for both
    now = ratio if th.metric is Metric.RATIO else distance
    ahead = None
    x = now
    if th.projection_seconds > 0:
        ahead = subject.projected(th.projection_seconds).metric(th.metric)
        x = _worse(now, ahead)
    last = history.last(subject.intent_keys())
    in_cooldown = last is not None and block_number - last.block_number < th.cooldown_blocks
    return _Case(
        subject=subject,
        th=th,
        now=now,
        ahead=ahead,
        x=x,
        distance=distance,
        ratio=ratio,
        last=last,
        in_cooldown=in_cooldown,
    )


def _filter(case: _Case, actions: list[Action]) -> list[Action]:
    """Cooldown: hold back what is no stronger than the last action, unless in danger."""
    if not case.in_cooldown or _below(case.x, case.th.reduce_below):
        return actions
    assert case.last is not None
    floor = STRENGTH.get(case.last.kind, STRENGTH["none"])
    return [a for a in actions if STRENGTH[a.kind] > floor]


def _decide_one(
    case: _Case, available: TokenAmount, wallet_token: Token | None = None
) -> list[Action]:
    """`wallet_token` is given when the wallet cannot pay in the subject's collateral token."""
    th, x = case.th, case.x
    last_kind = case.last.kind if case.last is not None else None
    top_up_below = th.top_up_below
    if last_kind == Withdraw.kind:
        top_up_below = max(th.top_up_below - th.hysteresis, th.reduce_below)
    withdraw_above = th.withdraw_above
    if withdraw_above is not None and last_kind in (TopUp.kind, Reduce.kind):
        withdraw_above += th.hysteresis

    if _below(x, th.close_below):
        return _close(case, "below_close", f"{th.metric} is below close_below {th.close_below}")
    if _below(x, top_up_below):
        need = _top_up_amount(case)
        if need is not None and need <= available:
            return [_top_up(case, need, available, "top_up", "restores top_up_to")]
        if _below(x, th.reduce_below):
            return _reduce_or_close(case, need, available)
        if available:
            return [
                _top_up(case, available, available, "top_up_partial", "is all the budget allows")
            ]
        if wallet_token is not None:
            return [
                _alert(
                    case,
                    Severity.WARNING,
                    "top_up_other_token",
                    need,
                    available,
                    wallet_token=wallet_token,
                )
            ]
        return [_alert(case, Severity.WARNING, "budget_exhausted", need, available)]
    if withdraw_above is not None and x is not None and x > withdraw_above:
        amount = _withdraw_amount(case)
        if amount:
            return [_withdraw(case, amount, withdraw_above)]
    return []


def _top_up_amount(case: _Case) -> TokenAmount | None:
    """The least collateral that brings the metric to top_up_to now and ahead; None when
    collateral alone cannot (or it cannot be priced)."""
    subject, th = case.subject, case.th
    if subject.collateral_price.raw <= 0:
        return None
    views = case.views()
    usd = max((v.need(th.metric, th.top_up_to) for v in views), key=lambda u: u.raw)
    amount = usd.to_tokens_ceil(subject.collateral_price, subject.collateral.decimals)
    # Valuing the tokens rounds down: nudge by whole units until the target is reached.
    for _ in range(4):
        if case.satisfied(tuple(v.topped(amount) for v in views), th.top_up_to):
            return amount
        amount = amount + TokenAmount(1, amount.decimals)
    return None


def _withdraw_amount(case: _Case) -> TokenAmount:
    """The most collateral that can go while the metric stays at top_up_to now and ahead."""
    subject, th = case.subject, case.th
    views = case.views()
    most = subject.collateral.raw

    def keeps(raw: int) -> bool:
        amount = TokenAmount(-(most - raw), subject.collateral.decimals)
        return case.satisfied(tuple(v.topped(amount) for v in views), th.top_up_to)

    # the least collateral to keep, searched over whole units of the token
    lo, hi = 0, most
    if not keeps(hi):
        return subject.collateral.zero()
    while lo < hi:
        mid = (lo + hi) // 2
        if keeps(mid):
            hi = mid
        else:
            lo = mid + 1
    return TokenAmount(most - lo, subject.collateral.decimals)


def _reduce_or_close(case: _Case, need: TokenAmount | None, available: TokenAmount) -> list[Action]:
    """The budget cannot restore the subject: cut it back to top_up_to, or close it.

    A cut pays fee and impact on the cut part only, so it is chosen whenever one short of the
    whole position reaches the target (now and ahead); otherwise the position is closed.
    """
    subject, th = case.subject, case.th
    shortfall = (("top_up_needed", _fmt(need)), ("top_up_available", _fmt(available)))
    cuts = [v.cut(th.metric, th.top_up_to) for v in case.views()]
    if any(c is None or c.raw <= 0 for c in cuts):
        return _close(
            case,
            "cannot_restore",
            f"{th.metric} is below reduce_below {th.reduce_below}, the budget cannot restore "
            f"it and no partial cut reaches top_up_to {th.top_up_to}",
            *shortfall,
        )
    cut = max((c for c in cuts if c is not None), key=lambda c: c.raw)
    position, market = subject.cut_leg()
    cut_cost = _close_cost(((position, market),), cut)
    reason = Reason(
        "reduce",
        f"{th.metric} {_fmt(case.x)} is below reduce_below {th.reduce_below} and the budget "
        f"cannot restore it: cutting {cut} of {position.size} tokens costs {cut_cost} USD in "
        f"fees and impact and restores top_up_to {th.top_up_to}",
        case.figures(
            *shortfall,
            *_Exit.of(subject).figures(),
            ("size_delta", _fmt(cut)),
            ("reduce_cost_usd", _fmt(cut_cost)),
            ("target", _fmt(th.top_up_to)),
            ("value_after", _fmt(subject.reduced(cut).metric(th.metric))),
        ),
    )
    return [Reduce(position.venue, position.key, position.account, market.market_id, cut, reason)]


def _close(case: _Case, code: str, why: str, *extra: tuple[str, str]) -> list[Action]:
    subject = case.subject
    exit_ = _Exit.of(subject)
    reason = Reason(
        code,
        f"{why} (value {_fmt(case.x)}): closing now returns {exit_.close_returns} USD, a "
        f"liquidation {exit_.liquidation_returns} USD",
        case.figures(*extra, *exit_.figures()),
    )
    legs = subject.legs() if code == "below_close" else (subject.cut_leg(),)
    actions: list[Action] = [
        Close(p.venue, p.key, p.account, m.market_id, reason)
        for p, m in sorted(legs, key=lambda leg: leg[0].key)
    ]
    if exit_.close_returns < exit_.liquidation_returns:
        actions.append(_alert(case, Severity.CRITICAL, "close_uneconomic", None, None))
    return actions


@dataclass(frozen=True, slots=True)
class _Exit:
    """What getting out costs and returns, closing now against being liquidated.

    Equity already counts the close fee, so closing now returns equity less the price
    impact; a liquidation returns at most what is left at the maintenance line less its
    liquidation fee. When the impact is larger than that difference (typically past the
    maintenance line with a large impact), closing returns less, and an Alert says so.
    """

    close_cost: Usd
    liquidation_fee: Usd
    close_returns: Usd
    liquidation_returns: Usd

    @classmethod
    def of(cls, subject: _Subject) -> _Exit:
        equity = subject.equity()
        impact = liq_fee = zero = equity.zero()
        for position, market in subject.legs():
            notional = margin.notional(position, market)
            impact += notional.mul_ceil(market.close_cost_rate() - market.close_fee_rate)
            liq_fee += notional.mul_ceil(market.liquidation_fee_rate)
        return cls(
            close_cost=_close_cost(subject.legs()),
            liquidation_fee=liq_fee,
            close_returns=(equity - impact).max(zero),
            liquidation_returns=(equity.min(subject.maintenance()) - liq_fee).max(zero),
        )

    def figures(self) -> tuple[tuple[str, str], ...]:
        return (
            ("close_cost_usd", _fmt(self.close_cost)),
            ("liquidation_fee_usd", _fmt(self.liquidation_fee)),
            ("close_returns_usd", _fmt(self.close_returns)),
            ("liquidation_returns_usd", _fmt(self.liquidation_returns)),
        )


def _close_cost(legs: tuple[Leg, ...], size: TokenAmount | None = None) -> Usd:
    """Fee and price impact of closing the legs (or `size` of the single leg), rounded up."""
    total: Usd | None = None
    for position, market in legs:
        tokens = size if size is not None else position.size
        notional = tokens.to_usd_ceil(market.mark_price, market.usd_decimals)
        cost = notional.mul_ceil(market.close_cost_rate())
        total = cost if total is None else total + cost
    assert total is not None
    return total


def _top_up(
    case: _Case, amount: TokenAmount, available: TokenAmount, code: str, what: str
) -> TopUp:
    subject, th = case.subject, case.th
    after = tuple(v.topped(amount) for v in case.views())
    reason = Reason(
        code,
        f"{th.metric} {_fmt(case.x)} is below top_up_below {th.top_up_below}: adding {amount} "
        f"{subject.token.symbol} {what} ({th.top_up_to})",
        case.figures(
            ("amount", _fmt(amount)),
            ("top_up_available", _fmt(available)),
            ("target", _fmt(th.top_up_to)),
            ("value_after", _fmt(_lowest(v.metric(th.metric) for v in after))),
        ),
    )
    return TopUp(
        subject.venue, subject.scope, subject.key, subject.account, subject.token, amount, reason
    )


def _withdraw(case: _Case, amount: TokenAmount, trigger: Decimal) -> Withdraw:
    subject, th = case.subject, case.th
    reason = Reason(
        "withdraw",
        f"{th.metric} {_fmt(case.x)} is above withdraw_above {trigger}: {amount} "
        f"{subject.token.symbol} is more than top_up_to {th.top_up_to} needs",
        case.figures(
            ("amount", _fmt(amount)),
            ("trigger", _fmt(trigger)),
            ("target", _fmt(th.top_up_to)),
        ),
    )
    return Withdraw(
        subject.venue, subject.scope, subject.key, subject.account, subject.token, amount, reason
    )


def _alert(
    case: _Case,
    severity: Severity,
    code: str,
    need: TokenAmount | None,
    available: TokenAmount | None,
    *,
    wallet_token: Token | None = None,
) -> Alert:
    subject, th = case.subject, case.th
    messages = {
        "budget_exhausted": "the budget allows no top-up",
        "close_uneconomic": "closing now returns less than a liquidation would",
        "top_up_other_token": (
            f"no top-up: its collateral is {subject.token.symbol}, the wallet and budget are in "
            f"{wallet_token.symbol if wallet_token else '?'}; it is reduced or closed below "
            f"reduce_below {th.reduce_below}"
        ),
    }
    reason = Reason(
        code,
        f"{subject.scope} {subject.key}: {th.metric} {_fmt(case.x)} (top_up_below "
        f"{th.top_up_below}): {messages[code]}",
        case.figures(("top_up_needed", _fmt(need)), ("top_up_available", _fmt(available))),
    )
    return Alert(subject.venue, subject.scope, subject.key, subject.account, severity, reason)
