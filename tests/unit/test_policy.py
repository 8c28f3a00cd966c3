"""The policy: hand-made cases for each rule, then hypothesis properties."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper import margin
from keeper.margin import Metric
from keeper.model import (
    Action,
    Alert,
    Close,
    Market,
    Position,
    Reduce,
    Scope,
    Severity,
    Snapshot,
    TopUp,
    Withdraw,
)
from keeper.policy import (
    Budget,
    History,
    MarketThresholds,
    RecentAction,
    ThresholdError,
    Thresholds,
    decide,
    strength,
)
from keeper.units import TokenAmount
from tests.unit.margin_factories import (
    WETH,
    D,
    ref_account,
    ref_market,
    ref_position,
    snapshot,
    usdc,
)

TH = MarketThresholds(
    top_up_below=D("0.15"),
    top_up_to=D("0.2"),
    reduce_below=D("0.08"),
    close_below=D("0.05"),
)
THRESHOLDS = Thresholds(TH)
BUDGET = Budget(
    max_top_up_per_position=usdc("1000"), max_spend_per_day=usdc("5000"), reserve=usdc("100")
)
NONE = History()


def one(position: Position, market: Market | None = None) -> Snapshot:
    return snapshot((market or ref_market(),), (position,))


# --- thresholds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"close_below": D("0.09")}, "close_below"),
        ({"reduce_below": D("0.16")}, "reduce_below"),
        ({"top_up_to": D("0.15")}, "top_up_to"),
        ({"withdraw_above": D("0.2")}, "withdraw_above"),
        ({"hysteresis": D("-0.01")}, "hysteresis"),
        ({"cooldown_blocks": -1}, "cooldown_blocks"),
        ({"projection_seconds": 1.5}, "projection_seconds"),
        ({"top_up_below": 0.15}, "top_up_below"),
    ],
)
def test_inconsistent_thresholds_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ThresholdError, match=f"^{field}"):
        replace(TH, **changes)  # type: ignore[arg-type]


def test_thresholds_per_market_with_defaults() -> None:
    special = replace(TH, top_up_below=D("0.3"), top_up_to=D("0.4"))
    thresholds = Thresholds(TH, {"refex:ETH-USD": special, "BTC-USD": special})
    assert thresholds.lookup("refex", "ETH-USD") is special
    assert thresholds.lookup("gmx", "BTC-USD") is special
    assert thresholds.lookup("refex", "TOK-USD") is TH


# --- one position, one rule at a time -----------------------------------------------------------


def test_a_healthy_position_gets_nothing() -> None:
    assert decide(one(ref_position(collateral="600")), THRESHOLDS, BUDGET, NONE) == []


def test_top_up_restores_top_up_to() -> None:
    # ratio 0.1 (worked case) is below 0.15: add 0.2 * 2500 - 250 = 250 USDC
    [action] = decide(one(ref_position()), THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, TopUp)
    assert action.amount == usdc("250")
    assert action.scope is Scope.POSITION
    assert (action.key, action.venue, action.account) == ("p1", "refex", "0xTrader")
    assert action.reason.code == "top_up"
    assert action.reason.figure("value") == "0.1"
    assert action.reason.figure("value_after") == "0.2"
    assert "below top_up_below 0.15" in action.reason.message


def test_short_budget_tops_up_what_it_can_above_reduce_below() -> None:
    budget = replace(BUDGET, max_top_up_per_position=usdc("100"))
    [action] = decide(one(ref_position()), THRESHOLDS, budget, NONE)
    assert isinstance(action, TopUp)
    assert action.amount == usdc("100")
    assert action.reason.code == "top_up_partial"


def test_no_budget_above_reduce_below_is_an_alert() -> None:
    snap = snapshot((ref_market(),), (ref_position(),), balance="100")  # all of it is reserve
    [action] = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, Alert)
    assert action.reason.code == "budget_exhausted"


def test_below_reduce_below_without_budget_reduces() -> None:
    position = ref_position(collateral="175")  # ratio 0.07
    snap = snapshot((ref_market(),), (position,), balance="100")
    [action] = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, Reduce)
    # equity 175 kept, notional cut to 175 / 0.2 = 875 USD, i.e. 350 tokens left
    assert action.size_delta == TokenAmount.from_value_exact(650, 18)
    assert action.reason.code == "reduce"
    assert action.reason.figure("top_up_needed") == "325"
    assert action.reason.figure("top_up_available") == "0"


def test_below_reduce_below_with_budget_tops_up() -> None:
    [action] = decide(one(ref_position(collateral="175")), THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, TopUp)
    assert action.amount == usdc("325")


def test_below_close_below_closes() -> None:
    [action] = decide(one(ref_position(collateral="100")), THRESHOLDS, BUDGET, NONE)  # 0.04
    assert isinstance(action, Close)
    assert action.reason.code == "below_close"
    assert action.reason.figure("close_returns_usd") == "100"
    assert action.reason.figure("liquidation_returns_usd") == "0"  # m = 0: nothing comes back
    assert action.reason.figure("close_cost_usd") == "0"


def test_close_when_no_cut_can_restore() -> None:
    # impact 0.3 makes every cut cost more than it frees
    market = ref_market(f="0.001", impact="0.3")
    snap = snapshot((market,), (ref_position(collateral="175"),), balance="0")
    [action] = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, Close)
    assert action.reason.code == "cannot_restore"
    # past the maintenance line (250), a liquidation returns 172.5 - 25 of fee; closing
    # returns nothing after 750 of impact: the close still goes, with a critical alert
    market = ref_market(m="0.1", f="0.001", impact="0.3", liq_fee="0.01")
    snap = snapshot((market,), (ref_position(collateral="175"),), balance="0")
    actions = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert [type(a) for a in actions] == [Close, Alert]
    assert actions[0].reason.figure("liquidation_returns_usd") == "147.5"
    assert actions[0].reason.figure("close_returns_usd") == "0"
    assert actions[1].reason.code == "close_uneconomic"


def test_nothing_for_a_position_with_an_open_intent() -> None:
    history = History(open_intents=frozenset({"p1"}))
    assert decide(one(ref_position(collateral="100")), THRESHOLDS, BUDGET, history) == []


def test_withdraw_excess_down_to_top_up_to() -> None:
    thresholds = Thresholds(replace(TH, withdraw_above=D("0.4")))
    [action] = decide(one(ref_position(collateral="1250")), thresholds, BUDGET, NONE)  # 0.5
    assert isinstance(action, Withdraw)
    assert action.amount == usdc("750")  # keeps 500 = 0.2 * 2500


def test_cooldown_holds_back_a_repeat_but_not_danger() -> None:
    th = Thresholds(replace(TH, cooldown_blocks=10))
    recent = History(recent=(RecentAction("p1", 995, TopUp.kind),))
    assert decide(one(ref_position()), th, BUDGET, recent) == []
    old = History(recent=(RecentAction("p1", 990, TopUp.kind),))
    assert len(decide(one(ref_position()), th, BUDGET, old)) == 1
    # below reduce_below danger overrides the cooldown
    [action] = decide(one(ref_position(collateral="175")), th, BUDGET, recent)
    assert isinstance(action, TopUp)
    # a stronger action than the last one is not held back
    [action] = decide(one(ref_position(collateral="100")), th, BUDGET, recent)
    assert isinstance(action, Close)


def test_hysteresis_keeps_a_fresh_top_up_from_being_withdrawn() -> None:
    th = Thresholds(replace(TH, withdraw_above=D("0.4"), hysteresis=D("0.05")))
    position = ref_position(collateral="1100")  # 0.44
    assert len(decide(one(position), th, BUDGET, NONE)) == 1
    after_top_up = History(recent=(RecentAction("p1", 10, TopUp.kind),))
    assert decide(one(position), th, BUDGET, after_top_up) == []
    # and a fresh withdrawal from being topped up again at the threshold
    hovering = ref_position(collateral="362.5")  # 0.145
    after_withdraw = History(recent=(RecentAction("p1", 10, Withdraw.kind),))
    assert len(decide(one(hovering), th, BUDGET, NONE)) == 1
    assert decide(one(hovering), th, BUDGET, after_withdraw) == []


def test_the_most_endangered_go_first() -> None:
    a = ref_position(collateral="300", key="a")  # 0.12
    b = ref_position(collateral="225", key="b")  # 0.09
    snap = snapshot((ref_market(),), (a, b), balance="400")  # 300 spendable
    actions = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert [(type(x), x.key) for x in actions] == [(TopUp, "b"), (TopUp, "a")]
    assert isinstance(actions[0], TopUp)
    assert actions[0].amount == usdc("275")
    assert actions[0].reason.code == "top_up"
    assert isinstance(actions[1], TopUp)
    assert actions[1].amount == usdc("25")
    assert actions[1].reason.code == "top_up_partial"


def test_daily_spend_and_reserve_limit_the_budget() -> None:
    history = History(spent_in_window=usdc("4900"))
    [action] = decide(one(ref_position()), THRESHOLDS, BUDGET, history)
    assert isinstance(action, TopUp)
    assert action.amount == usdc("100")


def test_another_collateral_token_cannot_be_topped_up() -> None:
    position = replace(
        ref_position(collateral="175"),
        collateral_token=WETH,
        collateral=TokenAmount(175 * 10**18, 18),
    )
    [action] = decide(one(position), THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, Reduce)


def test_another_collateral_token_is_named_when_a_top_up_is_due() -> None:
    # in the top-up zone, where a USDC position would be topped up, a WETH one gets an alert
    position = replace(
        ref_position(), collateral_token=WETH, collateral=TokenAmount(250 * 10**18, 18)
    )
    assert isinstance(decide(one(ref_position()), THRESHOLDS, BUDGET, NONE)[0], TopUp)
    [action] = decide(one(position), THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, Alert)
    assert action.reason.code == "top_up_other_token"
    assert "its collateral is WETH, the wallet and budget are in USDC" in action.reason.message
    assert action.severity is Severity.WARNING


def test_distance_metric_with_projection() -> None:
    th = replace(
        TH,
        metric=Metric.DISTANCE,
        top_up_below=D("0.15"),
        top_up_to=D("0.2"),
        reduce_below=D("0.05"),
        close_below=D("0.02"),
        projection_seconds=3600,
    )
    # distance 0.1 now; funding of 9 USD in the hour makes it 0.0964 ahead
    snap = one(ref_position(), ref_market(funding_long="0.000001"))
    [action] = decide(snap, Thresholds(th), BUDGET, NONE)
    assert isinstance(action, TopUp)
    assert action.reason.figure("metric") == "distance"
    assert action.reason.figure("value_ahead") == "0.0964"
    # liquidation 20% away (2.0) after 9 USD more fees: C = 500 + 9
    assert action.amount == usdc("259")


def test_cross_account_top_up_and_reduce() -> None:
    long_ = ref_position("long", "1000", "2.5", "0", key="L", market_id="A", cross_account="x")
    short = ref_position("short", "10", "100", "0", key="S", market_id="B", cross_account="x")
    markets = (
        ref_market("2.4", m="0.01", market_id="A"),
        ref_market("100", m="0.01", market_id="B"),
    )
    account = ref_account("350", ("L", "S"), key="x")  # equity 250 over 3400: 0.0735
    snap = snapshot(markets, (long_, short), accounts=(account,))
    [action] = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, TopUp)
    assert action.scope is Scope.ACCOUNT
    assert action.key == "x"
    assert action.amount == usdc("430")  # 0.2 * 3400 - 250
    poor = snapshot(markets, (long_, short), accounts=(account,), balance="0")
    [action] = decide(poor, THRESHOLDS, BUDGET, NONE)
    assert isinstance(action, Reduce)
    assert action.key == "L"  # 24 of the 34 maintenance
    assert action.size_delta == TokenAmount.from_value_ceil(D(430) / D("0.48"), 18)
    assert decide(snap, THRESHOLDS, BUDGET, History(open_intents=frozenset({"S"}))) == []


def test_cross_account_below_close_closes_every_position() -> None:
    long_ = ref_position("long", "1000", "2.5", "0", key="L", market_id="A", cross_account="x")
    short = ref_position("short", "10", "100", "0", key="S", market_id="B", cross_account="x")
    markets = (
        ref_market("2.4", m="0.01", market_id="A"),
        ref_market("100", m="0.01", market_id="B"),
    )
    snap = snapshot(markets, (long_, short), accounts=(ref_account("200", ("L", "S"), key="x"),))
    actions = decide(snap, THRESHOLDS, BUDGET, NONE)
    assert [(type(a), a.key) for a in actions] == [(Close, "L"), (Close, "S")]


# --- properties --------------------------------------------------------------------------------


@st.composite
def positions(draw: st.DrawFn, mark: Decimal) -> Position:
    """A position at about the thresholds: margin posted is 2% to 40% of its notional, and the
    mark is within 10% of the entry."""
    size = draw(st.decimals(min_value=D(1), max_value=D(1000), places=1))
    move = draw(st.decimals(min_value=D("-0.1"), max_value=D("0.1"), places=3))
    posted = draw(st.decimals(min_value=D("0.02"), max_value=D("0.4"), places=3))
    entry = (mark * (1 + move)).quantize(D("0.0001"))
    collateral = max(D("0.01"), (size * entry * posted).quantize(D("0.01")))
    side = draw(st.sampled_from(["long", "short"]))
    return ref_position(side, str(size), str(entry), str(collateral))


marks = st.decimals(min_value=D("0.5"), max_value=D(10), places=2).map(str)
rates = st.decimals(min_value=D(0), max_value=D("0.02"), places=4).map(str)
budgets = st.builds(
    lambda cap, day, reserve: Budget(usdc(str(cap)), usdc(str(day)), usdc(str(reserve))),
    cap=st.integers(0, 3000),
    day=st.integers(0, 5000),
    reserve=st.integers(0, 1000),
)
threshold_sets = st.builds(
    lambda metric, close, gap1, gap2, gap3: Thresholds(
        MarketThresholds(
            close_below=close,
            reduce_below=close + gap1,
            top_up_below=close + gap1 + gap2,
            top_up_to=close + gap1 + gap2 + gap3,
            metric=metric,
        )
    ),
    metric=st.sampled_from([Metric.RATIO, Metric.DISTANCE]),
    close=st.decimals(min_value=D("0.01"), max_value=D("0.05"), places=3),
    gap1=st.decimals(min_value=D(0), max_value=D("0.05"), places=3),
    gap2=st.decimals(min_value=D(0), max_value=D("0.05"), places=3),
    gap3=st.decimals(min_value=D("0.001"), max_value=D("0.1"), places=3),
)


@st.composite
def books(draw: st.DrawFn) -> Snapshot:
    mark = draw(marks)
    market = ref_market(mark, m=draw(rates), f=draw(rates))
    n = draw(st.integers(1, 4))
    ps = tuple(replace(draw(positions(D(mark))), key=f"k{i}") for i in range(n))
    return snapshot((market,), ps, balance=str(draw(st.integers(0, 8000))))


SETTINGS = settings(max_examples=80, deadline=None)


def _metric(snap: Snapshot, position: Position, which: Metric) -> Decimal | None:
    return margin.metric(position, snap.market_of(position), which)


@SETTINGS
@given(snap=books(), thresholds=threshold_sets, budget=budgets)
def test_a_top_up_restores_the_target(
    snap: Snapshot, thresholds: Thresholds, budget: Budget
) -> None:
    target = thresholds.default.top_up_to
    for action in decide(snap, thresholds, budget, NONE):
        if isinstance(action, TopUp) and action.reason.code == "top_up":
            position = snap.position(action.venue, action.key)
            after = _metric(
                snap, margin.add_collateral(position, action.amount), thresholds.default.metric
            )
            assert after is None or after >= target


@SETTINGS
@given(
    snap=books(),
    thresholds=threshold_sets,
    budget=budgets,
    spent=st.integers(0, 6000),
)
def test_no_action_exceeds_a_cap_or_spends_the_reserve(
    snap: Snapshot, thresholds: Thresholds, budget: Budget, spent: int
) -> None:
    history = History(spent_in_window=usdc(str(spent)))
    top_ups = [a for a in decide(snap, thresholds, budget, history) if isinstance(a, TopUp)]
    total = sum((a.amount.raw for a in top_ups), 0)
    for action in top_ups:
        assert 0 < action.amount.raw <= budget.max_top_up_per_position.raw
    assert total <= max(0, snap.wallet.balance.raw - budget.reserve.raw)
    assert total <= max(0, budget.max_spend_per_day.raw - spent * 10**6)


@SETTINGS
@given(
    data=st.data(),
    mark=marks,
    m=rates,
    f=rates,
    thresholds=threshold_sets,
    budget=budgets,
    balance=st.integers(0, 5000),
    cut=st.decimals(min_value=D(0), max_value=D(1), places=3),
)
def test_a_lower_margin_ratio_never_yields_a_weaker_action(
    *,
    data: st.DataObject,
    mark: str,
    m: str,
    f: str,
    thresholds: Thresholds,
    budget: Budget,
    balance: int,
    cut: Decimal,
) -> None:
    market = ref_market(mark, m=m, f=f)
    position = data.draw(positions(D(mark)))
    poorer = margin.add_collateral(position, TokenAmount(-int(position.collateral.raw * cut), 6))
    assert margin.margin_ratio(poorer, market) <= margin.margin_ratio(position, market)

    def act(p: Position) -> list[Action]:
        return decide(snapshot((market,), (p,), balance=str(balance)), thresholds, budget, NONE)

    assert strength(act(poorer)) >= strength(act(position))


@SETTINGS
@given(snap=books(), thresholds=threshold_sets, budget=budgets, data=st.data())
def test_nothing_is_decided_for_a_position_with_an_open_intent(
    snap: Snapshot, thresholds: Thresholds, budget: Budget, data: st.DataObject
) -> None:
    keys = [p.key for p in snap.positions]
    open_ = frozenset(data.draw(st.lists(st.sampled_from(keys), unique=True)))
    actions = decide(snap, thresholds, budget, History(open_intents=open_))
    assert not {a.key for a in actions} & open_


@SETTINGS
@given(snap=books(), thresholds=threshold_sets, reserve=st.integers(0, 1000))
def test_a_position_the_budget_cannot_restore_is_reduced_or_closed(
    snap: Snapshot, thresholds: Thresholds, reserve: int
) -> None:
    broke = Budget(usdc("0"), usdc("0"), usdc(str(reserve)))
    actions = decide(snap, thresholds, broke, NONE)
    th = thresholds.default
    for position in snap.positions:
        value = _metric(snap, position, th.metric)
        mine = [a for a in actions if a.key == position.key]
        if value is not None and value < th.reduce_below:
            assert any(isinstance(a, Reduce | Close) for a in mine), (value, mine)
        if value is not None and value < th.top_up_below:
            assert mine  # never silence


@SETTINGS
@given(snap=books(), thresholds=threshold_sets, budget=budgets, seed=st.integers(0, 2**16))
def test_the_same_inputs_always_give_the_same_actions(
    snap: Snapshot, thresholds: Thresholds, budget: Budget, seed: int
) -> None:
    first = decide(snap, thresholds, budget, NONE)
    assert decide(snap, thresholds, budget, NONE) == first
    shuffled = list(snap.positions)
    random.Random(seed).shuffle(shuffled)
    assert decide(replace(snap, positions=tuple(shuffled)), thresholds, budget, NONE) == first
