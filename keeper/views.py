"""Margin figures of a snapshot's positions, and what an action would change: pure, no I/O.

`position_views(snapshot)` gives each position with its equity, margin ratio, maintenance
margin, liquidation price and signed distance to it (for a cross position, its account's
figures and its own liquidation price with the other positions held). `preview(action,
snapshot)` models the subject after the action, as the policy does: the margin ratio and
liquidation price before -> after.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from keeper import margin
from keeper.margin import Leg
from keeper.model import (
    Action,
    Close,
    CrossAccount,
    MarginMode,
    Market,
    Position,
    Reduce,
    Scope,
    Side,
    Snapshot,
    TopUp,
    Withdraw,
)
from keeper.units import Price, Usd

__all__ = ["PositionView", "Preview", "position_views", "preview"]


@dataclass(frozen=True, slots=True)
class PositionView:
    """A position with its margin figures at the snapshot's prices.

    For an isolated position the figures are its own; for a cross position `equity`,
    `margin_ratio`, `maintenance_margin` and `liquidatable` are its account's, and
    `liquidation_price` is this position's with the account's other positions held.
    `distance_to_liquidation` is signed: negative means past it.
    """

    position: Position
    market: Market
    block_number: int
    notional: Usd
    pnl: Usd
    equity: Usd
    margin_ratio: Decimal
    maintenance_margin: Usd
    liquidation_price: Price | None
    distance_to_liquidation: Decimal | None
    leverage: Decimal | None
    liquidatable: bool

    @property
    def key(self) -> str:
        return self.position.key

    @property
    def symbol(self) -> str:
        return self.market.index_token.symbol


def _legs(snapshot: Snapshot, account: CrossAccount) -> list[Leg]:
    return [(p, snapshot.market_of(p)) for p in snapshot.positions_of(account)]


def position_views(snapshot: Snapshot) -> list[PositionView]:
    """Every position of the snapshot with its margin figures, in the snapshot's order."""
    accounts = {a.key: a for a in snapshot.accounts}
    legs = {key: _legs(snapshot, a) for key, a in accounts.items()}
    out = []
    for p in snapshot.positions:
        m = snapshot.market_of(p)
        common = {
            "position": p,
            "market": m,
            "block_number": snapshot.block_number,
            "notional": margin.notional(p, m),
            "pnl": margin.pnl(p, m),
        }
        if p.mode is MarginMode.CROSS and p.cross_account is not None:
            a, held = accounts[p.cross_account], legs[p.cross_account]
            out.append(
                PositionView(
                    **common,  # type: ignore[arg-type]
                    equity=margin.cross_equity(a, held),
                    margin_ratio=margin.cross_margin_ratio(a, held),
                    maintenance_margin=margin.cross_maintenance_margin(a, held),
                    liquidation_price=margin.cross_liquidation_price(a, held, p.key),
                    distance_to_liquidation=margin.cross_distance_to_liquidation(a, held, p.key),
                    leverage=None,
                    liquidatable=margin.cross_is_liquidatable(a, held),
                )
            )
        else:
            out.append(
                PositionView(
                    **common,  # type: ignore[arg-type]
                    equity=margin.equity(p, m),
                    margin_ratio=margin.margin_ratio(p, m),
                    maintenance_margin=margin.maintenance_margin(p, m),
                    liquidation_price=margin.liquidation_price(p, m),
                    distance_to_liquidation=margin.distance_to_liquidation(p, m),
                    leverage=margin.leverage(p, m),
                    liquidatable=margin.is_liquidatable(p, m),
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class Preview:
    """The subject's margin ratio and liquidation price before and after an action, as
    modelled at the snapshot's prices (after a close: no position, `closed`). For a cross
    account the ratio is the account's and no single liquidation price is given."""

    subject: str
    ratio_before: Decimal
    ratio_after: Decimal | None
    liquidation_before: Price | None
    liquidation_after: Price | None
    closed: bool = False
    mark_price: Price | None = None  # the position's market, for the precision to show
    side: Side | None = None


def preview(action: Action, snapshot: Snapshot) -> Preview:
    """What `action` would change, modelled as the policy models it; ValueError for an action
    that does not fit its subject (an amount in another token, a cut of the whole size)."""
    venue = action.venue
    if isinstance(action, (TopUp, Withdraw)) and action.scope is Scope.ACCOUNT:
        account = next(
            (a for a in snapshot.accounts if a.venue == venue and a.key == action.key), None
        )
        if account is None:
            raise ValueError(f"no cross account {action.key} in the snapshot")
        held = _legs(snapshot, account)
        amount = action.amount if isinstance(action, TopUp) else -action.amount
        topped = margin.add_account_collateral(account, amount)
        return Preview(
            action.key,
            margin.cross_margin_ratio(account, held),
            margin.cross_margin_ratio(topped, held),
            None,
            None,
        )
    position = snapshot.position(venue, action.key)
    m = snapshot.market_of(position)
    mark, side = m.mark_price, position.side
    if position.mode is MarginMode.CROSS and position.cross_account is not None:
        account = next(a for a in snapshot.accounts if a.key == position.cross_account)
        held = _legs(snapshot, account)
        ratio_before = margin.cross_margin_ratio(account, held)
        liq_before = margin.cross_liquidation_price(account, held, position.key)
        if isinstance(action, Close):
            return Preview(action.key, ratio_before, None, liq_before, None, True, mark, side)
        if not isinstance(action, Reduce):
            raise ValueError(f"{action.kind} on a cross position: act on its account")
        new_account, new_legs = margin.cross_after_reduce(
            account, held, position.key, action.size_delta
        )
        return Preview(
            action.key,
            ratio_before,
            margin.cross_margin_ratio(new_account, new_legs),
            liq_before,
            margin.cross_liquidation_price(new_account, new_legs, position.key),
            mark_price=mark,
            side=side,
        )
    ratio, liquidation = margin.margin_ratio(position, m), margin.liquidation_price(position, m)
    if isinstance(action, Close):
        return Preview(action.key, ratio, None, liquidation, None, True, mark, side)
    if isinstance(action, TopUp):
        after = margin.add_collateral(position, action.amount)
    elif isinstance(action, Withdraw):
        after = margin.add_collateral(position, -action.amount)
    elif isinstance(action, Reduce):
        after = margin.after_reduce(position, m, action.size_delta)
    else:
        raise ValueError(f"{action.kind}: nothing to preview")
    return Preview(
        action.key, ratio, margin.margin_ratio(after, m), liquidation,
        margin.liquidation_price(after, m), mark_price=mark, side=side,
    )  # fmt: skip
