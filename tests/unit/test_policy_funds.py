"""The policy in delegated mode: top-ups paid from each account's own funds (`Snapshot.funds`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.model import Action, Alert, Position, Reduce, Snapshot, TopUp
from keeper.policy import Budget, History, decide
from keeper.units import TokenAmount
from tests.unit.margin_factories import (
    REF,
    ref_account,
    ref_market,
    ref_position,
    snapshot,
    usdc,
    wallet,
)
from tests.unit.test_policy import BUDGET, NONE, THRESHOLDS


def pos(key: str = "p1", account: str = "0xTrader", collateral: str = "250") -> Position:
    """A USDC-collateral long of 1000 TOK at 2.5 (mark 2.5, m = 0): collateral 250 is ratio 0.1
    and needs 250 more for 0.2; 175 is ratio 0.07 (below reduce_below) and needs 325."""
    return replace(ref_position(key=key, collateral=collateral), account=account)


def delegated(
    positions: tuple[Position, ...],
    funds: Mapping[str, TokenAmount],
    *,
    balance: str = "0",
) -> Snapshot:
    return Snapshot(
        block_number=1000,
        block_time=1_700_001_000,
        wallet=wallet(balance),
        markets=(ref_market(),),
        positions=positions,
        funds=funds,
    )


def top_ups(actions: Iterable[Action]) -> dict[str, TokenAmount]:
    return {a.key: a.amount for a in actions if isinstance(a, TopUp)}


# --- 1. funds=None: the wallet pays ------------------------------------------------------------


def test_without_funds_the_wallet_balance_less_reserve_bounds_the_top_up() -> None:
    snap = snapshot((ref_market(),), (pos(),), balance="300")
    assert snap.funds is None
    [action] = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, TopUp)
    assert action.amount == usdc("200")  # 300 - 100 reserve, short of the 250 needed
    assert action.reason.code == "top_up_partial"
    rich = snapshot((ref_market(),), (pos(),), balance="10000")
    [action] = decide(rich, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, TopUp)
    assert action.amount == usdc("250")
    assert action.reason.code == "top_up"


def test_without_funds_an_empty_wallet_pays_nothing() -> None:
    snap = snapshot((ref_market(),), (pos(),), balance="100")  # all reserve
    [action] = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, Alert)
    assert action.reason.code == "budget_exhausted"


# --- 2. delegated: the account's funds pay -----------------------------------------------------


def test_delegated_top_up_from_the_account_funds_with_an_empty_keeper_wallet() -> None:
    snap = delegated((pos(),), {"0xTrader": usdc("1000")}, balance="0")
    [action] = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, TopUp)
    assert action.amount == usdc("250")
    assert action.account == "0xTrader"
    assert action.reason.code == "top_up"
    assert action.amount <= BUDGET.max_top_up_per_position
    assert action.amount <= usdc("1000") - BUDGET.reserve


def test_delegated_top_up_is_bounded_by_funds_less_reserve() -> None:
    snap = delegated((pos(),), {"0xTrader": usdc("300")}, balance="10000")
    [action] = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, TopUp)
    assert action.amount == usdc("200")  # 300 - 100, not the keeper's 10000
    assert action.reason.code == "top_up_partial"
    assert action.reason.figure("top_up_available") == "200"


def test_delegated_top_up_is_bounded_by_max_top_up_per_position() -> None:
    budget = replace(BUDGET, max_top_up_per_position=usdc("100"))
    snap = delegated((pos(),), {"0xTrader": usdc("1000")})
    [action] = decide(snap, THRESHOLDS, budget, NONE)
    assert isinstance(action, TopUp)
    assert action.amount == usdc("100")


def test_delegated_funds_at_or_below_reserve_pay_nothing() -> None:
    for amount in ("100", "50", "0"):
        snap = delegated((pos(),), {"0xTrader": usdc(amount)}, balance="10000")
        [action] = decide(snap, THRESHOLDS, BUDGET, NONE)
        assert isinstance(action, Alert), amount
        assert action.reason.code == "budget_exhausted"


def test_delegated_cross_account_draws_on_its_account_funds() -> None:
    long_ = ref_position("long", "1000", "2.5", "0", key="L", market_id="A", cross_account="x")
    short = ref_position("short", "10", "100", "0", key="S", market_id="B", cross_account="x")
    markets = (
        ref_market("2.4", m="0.01", market_id="A"),
        ref_market("100", m="0.01", market_id="B"),
    )
    account = ref_account("350", ("L", "S"), key="x")  # needs 430 for 0.2
    snap = Snapshot(
        block_number=1000,
        block_time=1_700_001_000,
        wallet=wallet("0"),
        markets=markets,
        positions=(long_, short),
        accounts=(account,),
        funds={"0xTrader": usdc("1000")},
    )
    [action] = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, TopUp)
    assert (action.key, action.account, action.amount) == ("x", "0xTrader", usdc("430"))
    # funds short of 430 + reserve, and the account is below reduce_below: reduced instead
    poor = replace(snap, funds={"0xTrader": usdc("400")})
    [action] = decide(poor, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, Reduce)
    assert action.reason.figure("top_up_available") == "300"


# --- 3. delegated: an account absent from funds pays nothing -----------------------------------


def test_delegated_absent_account_gets_an_alert_above_reduce_below() -> None:
    snap = delegated((pos(),), {"0xSomeoneElse": usdc("5000")}, balance="10000")
    [action] = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, Alert)
    assert action.reason.code == "budget_exhausted"
    assert action.reason.figure("top_up_available") == "0"


def test_delegated_absent_account_is_reduced_below_reduce_below() -> None:
    snap = delegated((pos(collateral="175"),), {}, balance="10000")
    [action] = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, Reduce)
    assert action.size_delta == TokenAmount.from_value_exact(650, 18)
    assert action.reason.figure("top_up_needed") == "325"
    assert action.reason.figure("top_up_available") == "0"


# --- 4. delegated: funds are per account and spent down within one decide ----------------------


def test_two_positions_of_one_account_share_its_funds() -> None:
    # each needs 250; the account can pay 500 - 100 = 400 in all
    positions = (pos("p1"), pos("p2"))
    snap = delegated(positions, {"0xTrader": usdc("500")})
    actions = decide(snap, THRESHOLDS, BUDGET, NONE)
    paid = top_ups(actions)
    assert paid == {"p1": usdc("250"), "p2": usdc("150")}
    assert sum(a.raw for a in paid.values()) <= (usdc("500") - BUDGET.reserve).raw
    [partial] = [a for a in actions if isinstance(a, TopUp) and a.key == "p2"]
    assert partial.reason.code == "top_up_partial"


def test_an_account_spent_out_gets_an_alert_for_its_next_position() -> None:
    positions = (pos("p1"), pos("p2"))
    snap = delegated(positions, {"0xTrader": usdc("350")})  # exactly one top-up of 250
    actions = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert top_ups(actions) == {"p1": usdc("250")}
    [alert] = [a for a in actions if isinstance(a, Alert)]
    assert (alert.key, alert.reason.code) == ("p2", "budget_exhausted")


def test_positions_of_different_accounts_each_draw_on_their_own_funds() -> None:
    positions = (pos("p1", "0xA"), pos("p2", "0xB"))
    snap = delegated(positions, {"0xA": usdc("350"), "0xB": usdc("350")})
    assert top_ups(decide(snap, THRESHOLDS, BUDGET, NONE)) == {
        "p1": usdc("250"),
        "p2": usdc("250"),
    }
    # one account's shortfall does not touch the other's funds
    snap = delegated(positions, {"0xA": usdc("200"), "0xB": usdc("10000")})
    assert top_ups(decide(snap, THRESHOLDS, BUDGET, NONE)) == {
        "p1": usdc("100"),
        "p2": usdc("250"),
    }
    snap = delegated(positions, {"0xB": usdc("10000")})
    actions = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert top_ups(actions) == {"p2": usdc("250")}
    assert [(a.key, a.reason.code) for a in actions if isinstance(a, Alert)] == [
        ("p1", "budget_exhausted")
    ]


# --- 5. delegated: the day's cap binds all accounts together -----------------------------------


def test_day_cap_less_spent_caps_the_total_across_accounts() -> None:
    positions = (pos("p1", "0xA"), pos("p2", "0xB"), pos("p3", "0xC"))
    funds = {"0xA": usdc("10000"), "0xB": usdc("10000"), "0xC": usdc("10000")}
    snap = delegated(positions, funds)
    history = History(spent_in_window=usdc("4700"))  # 300 left of 5000
    actions = decide(snap, THRESHOLDS, BUDGET, history)
    assert top_ups(actions) == {"p1": usdc("250"), "p2": usdc("50")}
    assert [(a.key, a.reason.code) for a in actions if isinstance(a, Alert)] == [
        ("p3", "budget_exhausted")
    ]


def test_day_cap_spent_out_pays_nothing_however_rich_the_accounts() -> None:
    snap = delegated((pos(),), {"0xTrader": usdc("10000")}, balance="10000")
    for spent in ("5000", "6000"):
        [action] = decide(snap, THRESHOLDS, BUDGET, History(spent_in_window=usdc(spent)))
        assert isinstance(action, Alert)
        assert action.reason.code == "budget_exhausted"


def test_day_cap_without_spending_allows_more_than_the_keeper_wallet() -> None:
    # the keeper's wallet (0) does not limit; the day's cap (5000) and funds do
    budget = replace(BUDGET, max_spend_per_day=usdc("400"))
    positions = (pos("p1", "0xA"), pos("p2", "0xB"))
    snap = delegated(positions, {"0xA": usdc("10000"), "0xB": usdc("10000")}, balance="0")
    assert top_ups(decide(snap, THRESHOLDS, budget, NONE)) == {
        "p1": usdc("250"),
        "p2": usdc("150"),
    }


accounts = st.sampled_from(["0xA", "0xB", "0xC"])


@settings(max_examples=200, deadline=None)
@given(
    collaterals=st.lists(st.integers(100, 400), min_size=1, max_size=5),
    owners=st.lists(accounts, min_size=5, max_size=5),
    funds_raw=st.dictionaries(accounts, st.integers(0, 1500)),
    spent=st.integers(0, 6000),
    per_position=st.integers(1, 1000),
    reserve=st.integers(0, 300),
)
def test_top_ups_stay_within_every_cap(
    *,
    collaterals: list[int],
    owners: list[str],
    funds_raw: dict[str, int],
    spent: int,
    per_position: int,
    reserve: int,
) -> None:
    positions = tuple(pos(f"p{i}", owners[i], str(c)) for i, c in enumerate(collaterals))
    funds = {a: usdc(str(v)) for a, v in funds_raw.items()}
    budget = Budget(
        max_top_up_per_position=usdc(str(per_position)),
        max_spend_per_day=usdc("5000"),
        reserve=usdc(str(reserve)),
    )
    snap = delegated(positions, funds, balance="0")
    actions = decide(snap, THRESHOLDS, budget, History(spent_in_window=usdc(str(spent))))
    by_key = {p.key: p for p in positions}
    per_account: dict[str, int] = {}
    total = 0
    for a in actions:
        if isinstance(a, TopUp):
            assert 0 < a.amount.raw <= budget.max_top_up_per_position.raw
            assert a.account == by_key[a.key].account
            per_account[a.account] = per_account.get(a.account, 0) + a.amount.raw
            total += a.amount.raw
    for account, paid in per_account.items():
        assert account in funds
        assert paid <= max(funds[account].raw - budget.reserve.raw, 0)
    assert total <= max(budget.max_spend_per_day.raw - usdc(str(spent)).raw, 0)


# --- 6. Snapshot: funds validated, copied, and the same through `trusted` -----------------------


def test_snapshot_rejects_funds_not_in_the_wallet_token() -> None:
    eighteen = TokenAmount.from_value_exact("1000", 18)
    with pytest.raises(ValueError, match="funds of 0xTrader"):
        delegated((pos(),), {"0xTrader": eighteen})
    with pytest.raises(ValueError, match="funds"):
        delegated((pos(),), {"0xA": usdc("1"), "0xTrader": eighteen})


def test_snapshot_funds_are_a_frozen_copy() -> None:
    given_funds = {"0xTrader": usdc("1000")}
    snap = delegated((pos(),), given_funds)
    given_funds["0xTrader"] = usdc("0")
    given_funds["0xOther"] = usdc("5")
    assert snap.funds == {"0xTrader": usdc("1000")}
    with pytest.raises(TypeError):
        snap.funds["0xTrader"] = usdc("1")  # type: ignore[index]


def test_trusted_snapshot_with_funds_equals_the_checked_one() -> None:
    positions = (pos("p1", "0xA"), pos("p2", "0xB", "175"))
    funds = {"0xA": usdc("350"), "0xB": usdc("200")}
    checked = delegated(positions, funds)

    def trusted_with(funds: Mapping[str, TokenAmount] | None) -> Snapshot:
        return Snapshot.trusted(
            checked.block_number,
            checked.block_time,
            checked.wallet,
            checked.markets,
            positions,
            (),
            {REF: {p.key: p for p in positions}},
            funds=funds,
        )

    trusted = trusted_with(funds)
    assert trusted == checked
    assert hash(trusted) == hash(checked)
    assert trusted.funds == checked.funds
    assert trusted.position(REF, "p2") == checked.position(REF, "p2")
    assert decide(trusted, THRESHOLDS, BUDGET, NONE) == decide(checked, THRESHOLDS, BUDGET, NONE)
    other = trusted_with({"0xA": usdc("351"), "0xB": usdc("200")})
    assert other != checked
    plain = trusted_with(None)
    assert plain.funds is None
    assert plain == replace(checked, funds=None)
