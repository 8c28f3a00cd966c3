"""keeper.views: margin figures of a snapshot, and previews of actions (the DESIGN worked case:
1,000 tokens long at 2.50 with 250 margin, no fees or maintenance: liquidation at 2.25)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from keeper.model import Close, Reason, Reduce, Scope, TopUp, Withdraw
from keeper.units import Price, TokenAmount
from keeper.views import position_views, preview
from tests.unit.margin_factories import (
    REF,
    USDC,
    ref_account,
    ref_market,
    ref_position,
    snapshot,
    usdc,
)

WHY = Reason("test", "a test")


def price(value: str) -> Price:
    return Price.from_value_exact(value, 18)


def test_views_carry_the_margin_figures() -> None:
    snap = snapshot((ref_market("3"),), (ref_position(),))
    [view] = position_views(snap)
    assert view.key == "p1"
    assert view.pnl.value == Decimal(500)
    assert view.equity.value == Decimal(750)
    assert view.margin_ratio == Decimal("0.25")
    assert view.liquidation_price == price("2.25")
    assert view.distance_to_liquidation == Decimal("0.25")
    assert view.leverage == Decimal(4)
    assert not view.liquidatable
    assert view.block_number == snap.block_number


def test_a_cross_position_shows_its_accounts_figures() -> None:
    long_ = ref_position("long", "1000", "2.5", "0", key="L", cross_account="x")
    snap = snapshot((ref_market("2.5"),), (long_,), accounts=(ref_account("250", ("L",), key="x"),))
    [view] = position_views(snap)
    assert view.margin_ratio == Decimal("0.1")
    assert view.liquidation_price == price("2.25")
    assert view.leverage is None


def test_previews_before_and_after() -> None:
    snap = snapshot((ref_market("2.5"),), (ref_position(),))
    top_up = preview(TopUp(REF, Scope.POSITION, "p1", "0xTrader", USDC, usdc("250"), WHY), snap)
    assert (top_up.ratio_before, top_up.ratio_after) == (Decimal("0.1"), Decimal("0.2"))
    assert (top_up.liquidation_before, top_up.liquidation_after) == (price("2.25"), price("2"))
    assert top_up.mark_price == price("2.5")
    withdraw = preview(Withdraw(REF, Scope.POSITION, "p1", "0xTrader", USDC, usdc("50"), WHY), snap)
    assert withdraw.ratio_after == Decimal("0.08")
    half = TokenAmount.from_value_exact("500", 18)
    cut = preview(Reduce(REF, "p1", "0xTrader", "TOK-USD", half, WHY), snap)
    assert cut.ratio_after == Decimal("0.2")  # 250 over 1,250
    assert cut.liquidation_after == price("2")
    closed = preview(Close(REF, "p1", "0xTrader", "TOK-USD", WHY), snap)
    assert closed.closed
    assert closed.ratio_after is None
    assert closed.liquidation_after is None


def test_a_cross_account_top_up_shows_the_accounts_ratio() -> None:
    long_ = ref_position("long", "1000", "2.5", "0", key="L", cross_account="x")
    snap = snapshot((ref_market("2.5"),), (long_,), accounts=(ref_account("250", ("L",), key="x"),))
    shown = preview(TopUp(REF, Scope.ACCOUNT, "x", "0xTrader", USDC, usdc("250"), WHY), snap)
    assert (shown.ratio_before, shown.ratio_after) == (Decimal("0.1"), Decimal("0.2"))
    assert shown.liquidation_before is None
    with pytest.raises(ValueError, match="act on its account"):
        preview(TopUp(REF, Scope.POSITION, "L", "0xTrader", USDC, usdc("1"), WHY), snap)
