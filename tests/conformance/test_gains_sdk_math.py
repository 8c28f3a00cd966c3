"""Differential tests of the Gains adapter's liquidation rule (keeper/venues/gains_math.py)
against the Gains SDK's, and against our test diamond's integer getTradeLiquidationPrice.

A seeded generator makes trades on many kinds of pair (crypto majors, alts and memecoins with
prices from 1e-8 to 1e5 USD, forex up to 1000x, stocks), long and short, with collaterals of 6
and 18 decimals at stable and volatile USD prices, leverages over the pair's range and around
and outside the start and end leverage of the trade's liquidation parameters, parameters set,
unset (all zero: trades from before v9.2) or without a maximum spread, pair spreads below and
above twice that maximum, position size fees with and without the fee group's minimum
position size applying, counter trades with their fee multiplier, trades of contracts v10,
v9.2 and before, trades not opened yet, holding fees (negative too: funding income), realized
pnl and realized trading fees, partial close multipliers and additional fees.

One node run (gains_sdk_math.cjs) puts them all through the SDK's
trade/liquidation getLiquidationPrice (with getLiqPnlThresholdP, and for the closing fee
fees/trading getTotalTradeFeesCollateral); gains_math.liquidation_price evaluates the same
trades in integers.

Tolerance. The SDK computes in doubles; Gains (and gains_math) in integers that truncate.
The liquidation price may differ from the SDK's by

- FLOAT_REL (1e-13) of the open price times (1 + the distance's terms over the position
  size): a double carries 2^-53 ~ 1.1e-16 of relative error per operation, the SDK's path
  takes a few dozen of them (including the Number() of integers above 2^53 and the holding
  fee put through its accumulators and back), and the terms of the distance cancel at most by
  their own size; 1e-13 leaves a margin of about 50 over that;
- plus Gains' own truncations, each less than one unit, converted to price units per trade:
  four in the closing fee (position size, counter-trade basis, minimum position in collateral,
  the fee), one in the holding fees times the partial close multiplier, one in the collateral
  at the liquidation threshold and the threshold's own (collateral / 1e12 units), all times
  openPrice * 1e3 / (collateral * leverage) in the distance; one in the distance's division;
  and half a unit of the pair spread and one of the closing spread's product with the price.

So the rule is held to the SDK's exactly except where integers must round; the largest
relative difference found is printed in the summary (at prices of a few hundred units of 1e-10
USD it is one unit's worth; the summary also gives it for prices of 0.01 USD and more).

Left out on purpose: a trader's own fixed spread (the SDK's userPriceImpact.fixedSpreadP).
The SDK's getLiquidationPrice adds it unhalved to half the pair spread
(trade/priceImpact/cumulVol getSpreadP) and applies the closing spread when it is set even if
maxLiqSpreadP is 0; Gains' diamond folds it into pairSpreadP(trader, pairIndex) (the trader's
fixedSpreadP * 1e7 plus the pair's spread), which is the spread the adapter reads and the rule
halves. The cases pass the SDK that trader-adjusted spread and no userPriceImpact.

Against our test diamond (contracts/src/gains) the comparison is exact, on a few hundred
generated inputs evaluated by the diamond in batches of eth_calls (through Multicall3) and on
trades opened on it with holding fees accrued over time.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, localcontext
from typing import Any

import pytest

from keeper.chain.multicall import MULTICALL3_ADDRESS, Call
from keeper.testing.anvil import Anvil, AnvilError
from keeper.venues.codec import decode_aggregate3, encode_aggregate3
from keeper.venues.gains import GainsFn
from keeper.venues.gains_math import (
    LEVERAGE_PRECISION,
    MULTIPLIER_PRECISION,
    PERCENT,
    PRICE_PRECISION,
    ContractsVersion,
    LiquidationParams,
    closing_fee,
    liq_threshold_p,
    liquidation_price,
    position_size,
)
from tests.conformance.gains_sdk import SUMMARY, run_math
from tests.conformance.sdk import JsNumber, Sdk
from tests.integration.gains.deploy import COLLATERAL, GainsDevnet, deploy

SEED = 20_251_208
CASES = 3_000
DIAMOND_CASES = 400
FLOAT_REL = Decimal("1e-13")
USD = 10**8  # collateral USD prices (1e8)
UNSET = LiquidationParams(0, 0, 0, 0, 0)

# --- what is generated -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairKind:
    """A kind of pair: its leverage range (1e3) and the range its price (USD) is drawn from,
    log-uniformly."""

    name: str
    min_leverage: int
    max_leverage: int
    low_usd: Decimal
    high_usd: Decimal


KINDS = (
    PairKind("crypto major", 1_100, 150_000, Decimal(1_000), Decimal(150_000)),
    PairKind("crypto alt", 1_100, 100_000, Decimal("0.0001"), Decimal(50)),
    PairKind("memecoin", 1_100, 50_000, Decimal("1e-8"), Decimal("1e-4")),
    PairKind("forex", 1_100, 1_000_000, Decimal("0.5"), Decimal(200)),
    PairKind("stock", 1_100, 50_000, Decimal(5), Decimal(5_000)),
)


@dataclass(frozen=True, slots=True)
class Market:
    """A pair with what of it the rule reads: fee group (position size fee, minimum position
    size in USD at 1e3), spread and counter-trade fee multiplier (1e3)."""

    index: int
    kind: PairKind
    fee_p: int
    min_position_size_usd: int
    spread_p: int
    counter_multiplier: int


@dataclass(frozen=True, slots=True)
class CollateralSpec:
    """A collateral: its index on the diamond, decimals and USD price (1e8)."""

    index: int
    decimals: int
    price_usd: int

    @property
    def precision(self) -> int:
        precision: int = 10**self.decimals
        return precision


@dataclass(frozen=True, slots=True)
class Case:
    """One generated trade with its market and the fee state the rule takes, in Gains' raw
    units. `holding_v1` / `holding_v2`: pending holding fees (collateral units) of the borrowing
    v1 and v2 models (v2 only for v10 trades; either may stand for funding income when
    negative)."""

    id: int
    market: Market
    collateral_spec: CollateralSpec
    long: bool
    counter: bool
    before_opened: bool
    version: ContractsVersion
    collateral: int
    leverage: int
    open_price: int
    current_price: int
    params: LiquidationParams
    leverage_at: str
    holding_v1: int
    holding_v2: int
    realized_pnl: int
    realized_trading_fees: int
    partial_close_multiplier: int
    additional_fee: int

    @property
    def holding(self) -> int:
        return self.holding_v1 + self.holding_v2

    @property
    def realized(self) -> int:
        """Realized pnl less realized trading fees, as the rule subtracts it."""
        return self.realized_pnl - self.realized_trading_fees

    @property
    def multiplier(self) -> int:
        return self.market.counter_multiplier if self.counter else LEVERAGE_PRECISION

    @property
    def closing_fee(self) -> int:
        return closing_fee(
            position_size(self.collateral, self.leverage),
            fee_p=self.market.fee_p,
            min_position_size_usd=self.market.min_position_size_usd,
            collateral_precision=self.collateral_spec.precision,
            collateral_price_usd=self.collateral_spec.price_usd,
            counter_trade_multiplier=self.multiplier,
        )

    @property
    def ours(self) -> int:
        """gains_math's liquidation price of the trade (1e10)."""
        return liquidation_price(
            open_price=self.open_price,
            long=self.long,
            collateral=self.collateral,
            leverage=self.leverage,
            closing_fee_collateral=self.closing_fee,
            holding_fees_collateral=self.holding,
            realized_pnl_collateral=self.realized,
            params=self.params,
            pair_spread_p=self.market.spread_p,
            version=self.version,
            partial_close_multiplier=self.partial_close_multiplier,
            additional_fee_collateral=self.additional_fee,
        )


def _fraction(rng: random.Random) -> Decimal:
    """Uniform in [0, 1), drawn as an integer: no amount of these tests passes through a
    float."""
    return Decimal(rng.randrange(10**15)) / 10**15


def _uniform(rng: random.Random, low: str, high: str) -> Decimal:
    return Decimal(low) + (Decimal(high) - Decimal(low)) * _fraction(rng)


def _log_uniform(rng: random.Random, low: Decimal, high: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 40
        return low * (high / low) ** _fraction(rng)


def draw_market(rng: random.Random, index: int) -> Market:
    kind = rng.choice(KINDS)
    fee_p = rng.choice([0, 3 * 10**8, 6 * 10**8, 8 * 10**8, rng.randint(1, 15 * 10**8)])
    minimum = rng.choice([0, 1_500, 5_000_000, 1_500_000, rng.randint(1, 10_000_000)])
    spread = 0 if rng.random() < 0.15 else int(_log_uniform(rng, Decimal(10**6), Decimal(10**10)))
    multiplier = rng.choice([LEVERAGE_PRECISION, rng.randint(100, 3_000), rng.randint(1, 999)])
    return Market(index, kind, fee_p, minimum, spread, multiplier)


def draw_collateral(rng: random.Random, index: int) -> CollateralSpec:
    decimals, low, high = rng.choice(
        [
            (6, 99 * USD // 100, 101 * USD // 100),  # USDC
            (18, 99 * USD // 100, 101 * USD // 100),  # DAI
            (18, 1_000 * USD, 6_000 * USD),  # WETH
            (18, USD // 20, 10 * USD),  # APE, GNS
            (6, USD // 2, 3 * USD // 2),  # another 6-decimal token
        ]
    )
    return CollateralSpec(index, decimals, rng.randint(low, high))


def draw_params(rng: random.Random, kind: PairKind) -> LiquidationParams:
    roll = rng.random()
    if roll < 0.2:
        return UNSET
    start_threshold = rng.randint(85 * 10**10, 90 * 10**10)
    end_threshold = (
        start_threshold if rng.random() < 0.1 else rng.randint(45 * 10**10, start_threshold)
    )
    start_leverage = rng.randint(kind.min_leverage, kind.max_leverage // 2)
    end_leverage = rng.randint(start_leverage + 1, kind.max_leverage)
    max_spread = 0 if roll < 0.3 else int(_log_uniform(rng, Decimal(10**7), Decimal(10**10)))
    return LiquidationParams(
        max_spread, start_threshold, end_threshold, start_leverage, end_leverage
    )


def draw_leverage(rng: random.Random, kind: PairKind, params: LiquidationParams) -> tuple[int, str]:
    """A leverage in the pair's range, and where it is relative to the parameters' leverages."""
    low, high = kind.min_leverage, kind.max_leverage
    if params.start_leverage == 0:
        return rng.randint(low, high), "unset"
    start, end = params.start_leverage, params.end_leverage
    choice = rng.choice(["below", "start", "start+1", "between", "end-1", "end", "above", "any"])
    leverage = {
        "below": rng.randint(low, max(low, start - 1)),
        "start": start,
        "start+1": start + 1,
        "between": rng.randint(start, end),
        "end-1": end - 1,
        "end": end,
        "above": rng.randint(min(end + 1, high), high),
        "any": rng.randint(low, high),
    }[choice]
    return leverage, _where(leverage, params)


def _where(leverage: int, params: LiquidationParams) -> str:
    if params.start_leverage == 0:
        return "unset"
    if leverage < params.start_leverage:
        return "below start"
    if leverage == params.start_leverage:
        return "at start"
    if leverage < params.end_leverage:
        return "between"
    if leverage == params.end_leverage:
        return "at end"
    return "above end"


def draw_trade(
    rng: random.Random, i: int, market: Market, collateral: CollateralSpec, *, opened: bool = True
) -> Case:
    """A trade on `market` with `collateral` (`opened`: with holding fees, realized pnl and
    partial close multipliers of a trade already open, or now and then one not opened yet;
    otherwise none of them). Decimals are evaluated with 80 digits, enough for 18-decimal
    amounts of any size."""
    with localcontext() as ctx:
        ctx.prec = 80
        return _draw_trade(rng, i, market, collateral, opened=opened)


def _draw_trade(
    rng: random.Random, i: int, market: Market, collateral: CollateralSpec, *, opened: bool
) -> Case:
    kind = market.kind
    params = draw_params(rng, kind)
    leverage, at = draw_leverage(rng, kind, params)
    value_usd = _log_uniform(rng, Decimal(2), Decimal(500_000))
    amount = int(value_usd * USD * collateral.precision / collateral.price_usd)
    open_price = max(1, int(_log_uniform(rng, kind.low_usd, kind.high_usd) * PRICE_PRECISION))
    current = max(1, int(open_price * _uniform(rng, "0.5", "1.5")))
    before_opened = opened and rng.random() < 0.15
    version = rng.choices(
        [ContractsVersion.V10, ContractsVersion.V9_2, ContractsVersion.BEFORE_V9_2], [6, 3, 2]
    )[0]
    holding_v1 = holding_v2 = realized_pnl = realized_fees = additional = 0
    multiplier = MULTIPLIER_PRECISION
    if before_opened:
        version = ContractsVersion.V10  # the diamond prices a trade not opened yet as current
    elif opened:
        share = _uniform(rng, "-0.03", "0.3") if rng.random() < 0.8 else Decimal(0)
        holding = int(amount * share)
        if version == ContractsVersion.V10 and rng.random() < 0.7:
            holding_v2 = int(holding * _fraction(rng))
        holding_v1 = holding - holding_v2
        if rng.random() < 0.4:
            share = _uniform(rng, "-0.2", "0.2")
            if rng.random() < 0.1:  # far in profit: gains of the order of the position size,
                # taken by partial closes, put a long's liquidation price at zero or below
                share = _uniform(rng, "0.5", "2") * leverage / LEVERAGE_PRECISION
            realized_pnl = int(amount * share)
            realized_fees = int(amount * _uniform(rng, "0", "0.01"))
        if rng.random() < 0.25:
            multiplier = rng.randint(1, MULTIPLIER_PRECISION)
    if rng.random() < 0.25:
        additional = int(amount * _uniform(rng, "-0.02", "0.05"))
    return Case(
        id=i,
        market=market,
        collateral_spec=collateral,
        long=rng.random() < 0.5,
        counter=rng.random() < 0.2,
        before_opened=before_opened,
        version=version,
        collateral=max(1, amount),
        leverage=leverage,
        open_price=open_price,
        current_price=current,
        params=params,
        leverage_at=at,
        holding_v1=holding_v1,
        holding_v2=holding_v2,
        realized_pnl=realized_pnl,
        realized_trading_fees=realized_fees,
        partial_close_multiplier=multiplier,
        additional_fee=additional,
    )


def generate(count: int, seed: int = SEED) -> list[Case]:
    """`count` trades, each on a market and collateral of its own."""
    rng = random.Random(seed)
    return [
        draw_trade(rng, i, draw_market(rng, rng.randint(0, 400)), draw_collateral(rng, 1))
        for i in range(count)
    ]


# --- the SDK's answers -------------------------------------------------------------------------


def sdk_case(c: Case) -> dict[str, Any]:
    """A case as gains_sdk_math.cjs reads it."""
    return {
        "pairIndex": c.market.index,
        "long": c.long,
        "isCounterTrade": c.counter,
        "beforeOpened": c.before_opened,
        "version": JsNumber(int(c.version)),
        "collateral": c.collateral,
        "collateralPrecision": c.collateral_spec.precision,
        "leverage": c.leverage,
        "openPrice": c.open_price,
        "currentPrice": c.current_price,
        "collateralPriceUsd": c.collateral_spec.price_usd,
        "pairSpreadP": c.market.spread_p,
        "feeP": c.market.fee_p,
        "minPositionSizeUsd": c.market.min_position_size_usd,
        "counterTradeMultiplier": c.market.counter_multiplier,
        "params": [
            c.params.max_liq_spread_p,
            c.params.start_liq_threshold_p,
            c.params.end_liq_threshold_p,
            c.params.start_leverage,
            c.params.end_leverage,
        ],
        "holdingV1": c.holding_v1,
        "holdingV2": c.holding_v2,
        "realizedPnl": c.realized_pnl,
        "realizedTradingFees": c.realized_trading_fees,
        "partialCloseMultiplier": c.partial_close_multiplier,
        "additionalFee": c.additional_fee,
    }


@dataclass(frozen=True, slots=True)
class Row:
    """A case with the SDK's answer (Decimal from the doubles' shortest decimal text) and
    gains_math's, and the allowed difference (`bound`, price units at 1e10)."""

    case: Case
    sdk_price: Decimal  # 1e10 units
    sdk_threshold: Decimal  # fraction
    sdk_closing_fee: Decimal  # collateral units
    sdk_holding: Decimal  # collateral units
    ours: int
    bound: Decimal

    @property
    def difference(self) -> Decimal:
        return abs(Decimal(self.ours) - self.sdk_price)

    @property
    def relative(self) -> Decimal:
        """The difference relative to the SDK's price (to the open price when that is 0)."""
        base = self.sdk_price if self.sdk_price > 0 else Decimal(self.case.open_price)
        return self.difference / base


def bound(c: Case) -> Decimal:
    """The allowed |gains_math - SDK| in price units (1e10) for case `c`; see the module's
    docstring for each term."""
    with localcontext() as ctx:
        ctx.prec = 80
        o, coll, lev = Decimal(c.open_price), Decimal(c.collateral), Decimal(c.leverage)
        size = coll * lev / LEVERAGE_PRECISION
        per_unit = o / size  # price units per collateral unit in the distance
        units = 4 + 1 + 1 + coll / Decimal(10**12)
        threshold = Decimal(liq_threshold_p(c.params, c.leverage)) / PERCENT
        fees = abs(c.closing_fee) + abs(c.holding) + abs(c.realized) + abs(c.additional_fee)
        terms = (coll * threshold + fees) / size
        floats = FLOAT_REL * o * (1 + terms)
        return per_unit * units + 1 + (1 + o / PERCENT) + floats


@pytest.fixture(scope="module")
def rows(gains_sdk: Sdk) -> list[Row]:
    """Every generated case with the SDK's answer, from one node run."""
    cases = generate(CASES)
    answers = run_math(gains_sdk, {"cases": [sdk_case(c) for c in cases]})
    assert len(answers) == len(cases)
    out = []
    for c, a in zip(cases, answers, strict=True):
        scale = Decimal(c.collateral_spec.precision)
        out.append(
            Row(
                case=c,
                sdk_price=Decimal(a["price"]) * PRICE_PRECISION,
                sdk_threshold=Decimal(a["threshold"]),
                sdk_closing_fee=Decimal(a["closingFee"]) * scale,
                sdk_holding=Decimal(a["holding"]) * scale,
                ours=c.ours,
                bound=bound(c),
            )
        )
    return out


# --- against the SDK ---------------------------------------------------------------------------


def _coverage(c: Case) -> Iterator[str]:
    yield "long" if c.long else "short"
    yield f"{c.collateral_spec.decimals} decimals"
    yield f"version {c.version.name}"
    yield f"leverage {c.leverage_at}"
    yield c.market.kind.name
    if c.params == UNSET:
        yield "params unset"
    elif c.params.max_liq_spread_p == 0:
        yield "params without max spread"
    else:
        yield "params set"
        half = c.market.spread_p // 2
        yield "spread capped" if half > c.params.max_liq_spread_p else "spread under the cap"
    if c.counter:
        yield (
            "counter trade"
            if c.market.counter_multiplier != LEVERAGE_PRECISION
            else ("counter trade at 1x")
        )
    if c.before_opened:
        yield "before opened"
    if c.holding < 0:
        yield "holding fees negative"
    if c.holding > 0:
        yield "holding fees positive"
    if c.holding_v2:
        yield "holding fees v2"
    if c.realized:
        yield "realized pnl"
    if c.partial_close_multiplier != MULTIPLIER_PRECISION:
        yield "partial close multiplier"
    if c.additional_fee:
        yield "additional fee"
    size = position_size(c.collateral, c.leverage) * c.multiplier // LEVERAGE_PRECISION
    minimum = (
        c.market.min_position_size_usd
        * 10**5
        * c.collateral_spec.precision
        // c.collateral_spec.price_usd
    )
    if c.market.fee_p and minimum > size:
        yield "minimum position fee"
    if c.ours == 0:
        yield "price zero"
    if c.open_price < 10**4:
        yield "price below 1e-6 USD"
    if c.open_price > 10**14:
        yield "price above 10k USD"


COVERED = (
    "long", "short", "6 decimals", "18 decimals", "version V10", "version V9_2",
    "version BEFORE_V9_2", "leverage unset", "leverage below start", "leverage at start",
    "leverage between", "leverage at end", "leverage above end", "params unset",
    "params without max spread", "params set", "spread capped", "spread under the cap",
    "counter trade", "counter trade at 1x", "before opened", "holding fees negative",
    "holding fees positive", "holding fees v2", "realized pnl", "partial close multiplier",
    "additional fee", "minimum position fee", "price zero", "price below 1e-6 USD",
    "price above 10k USD", *(k.name for k in KINDS),
)  # fmt: skip


def test_generated_cases_cover_every_kind(rows: list[Row]) -> None:
    """The generator reaches every kind of trade the comparison is meant to cover."""
    seen = Counter(k for r in rows for k in _coverage(r.case))
    missing = [k for k in COVERED if seen[k] < 5]
    assert not missing, f"fewer than 5 generated cases of: {missing} (seen {dict(seen)})"
    SUMMARY["Generated trades"] = [
        f"{len(rows)} in one node run; " + ", ".join(f"{k}: {seen[k]}" for k in COVERED)
    ]


def test_sdk_counts_the_holding_fees_given(rows: list[Row]) -> None:
    """The SDK's own getTradePendingHoldingFeesCollateral gives back the holding fees put in
    through its borrowing contexts (so that they do reach its liquidation price)."""
    wrong = [
        r
        for r in rows
        if abs(r.sdk_holding - r.case.holding) > Decimal("1e-9") * (1 + abs(r.case.holding))
    ]
    assert not wrong, "\n".join(
        f"case {r.case.id}: holding {r.case.holding}, the SDK counts {r.sdk_holding}"
        for r in wrong[:10]
    )


def test_threshold_matches_sdk(rows: list[Row]) -> None:
    """gains_math's liquidation threshold (1e10 per cent) is the SDK's getLiqPnlThresholdP (a
    fraction) to within Gains' rounding (the drop from the start threshold is rounded down, so
    the threshold up, by less than 1e-12) and the doubles'."""
    wrong = []
    for r in rows:
        ours = Decimal(liq_threshold_p(r.case.params, r.case.leverage)) / PERCENT
        if not r.sdk_threshold - Decimal("1e-15") <= ours <= r.sdk_threshold + Decimal("1.001e-12"):
            wrong.append(f"case {r.case.id}: {ours} here, {r.sdk_threshold} in the SDK ({r.case})")
    assert not wrong, "\n".join(wrong[:10])


def test_closing_fee_matches_sdk(rows: list[Row]) -> None:
    """gains_math's closing fee is the SDK's getTotalTradeFeesCollateral (position size fee on
    the counter-trade-adjusted size, at least on the minimum position size) to within Gains'
    four truncations (at most 4 collateral units, always down) and the doubles'."""
    wrong = []
    for r in rows:
        ours, theirs = Decimal(r.case.closing_fee), r.sdk_closing_fee
        slack = FLOAT_REL * (1 + theirs)
        if not theirs - 4 - slack <= ours <= theirs + slack:
            wrong.append(f"case {r.case.id}: {ours} here, {theirs} in the SDK ({r.case})")
    assert not wrong, "\n".join(wrong[:10])


GROUPS = [(side, decimals) for side in ("long", "short") for decimals in (6, 18)]


@pytest.mark.parametrize(("side", "decimals"), GROUPS, ids=[f"{s}-{d}dec" for s, d in GROUPS])
def test_liquidation_price_matches_sdk(rows: list[Row], side: str, decimals: int) -> None:
    """gains_math.liquidation_price equals the SDK's getLiquidationPrice within the tolerance
    of the module's docstring, for every generated trade of this side and collateral."""
    group = [
        r
        for r in rows
        if r.case.long == (side == "long") and r.case.collateral_spec.decimals == decimals
    ]
    assert group
    nan = [r.case.id for r in group if r.sdk_price.is_nan()]
    assert not nan, f"the SDK gives NaN for cases {nan}"
    worst = max(group, key=lambda r: r.relative)
    tightest = max(group, key=lambda r: r.difference / r.bound)
    title = "Largest relative difference, gains_math vs the SDK's getLiquidationPrice"
    lines = SUMMARY.setdefault(title, [])
    lines.append(
        f"{side}, {decimals}-decimal collateral ({len(group)} trades): "
        f"{worst.relative:.3e} (case {worst.case.id}: {worst.ours} here, "
        f"{worst.sdk_price:.6f} in the SDK); largest share of the allowed difference used: "
        f"{tightest.difference / tightest.bound:.3f} (case {tightest.case.id})"
    )
    coarse = [r for r in group if r.sdk_price >= 10**8]
    fine = max(coarse, key=lambda r: r.relative)
    lines.append(
        f"  the same for liquidation prices of 0.01 USD and more ({len(coarse)} trades; below, "
        f"one unit of Gains' 1e10 price precision is already 1e-8 of the price): "
        f"{fine.relative:.3e} (case {fine.case.id})"
    )
    wrong = [r for r in group if r.difference > r.bound]
    assert not wrong, "\n".join(
        f"case {r.case.id}: {r.ours} here, {r.sdk_price} in the SDK, difference {r.difference} "
        f"> allowed {r.bound:.3f}\n  {r.case}"
        for r in wrong[:10]
    )


def test_threshold_with_equal_leverages() -> None:
    """Parameters whose start and end leverage are equal (Gains allows them; its
    getLiqPnlThresholdP returns the start threshold at or below the start leverage, the end
    threshold at or above the end one): gains_math gives the start threshold at that leverage
    instead of dividing by zero. (The SDK's getLiqPnlThresholdP, comparing with < and >, divides
    0 by 0 there and gives NaN; our test diamond's _liqThresholdP reverts.)"""
    params = LiquidationParams(5 * 10**8, 90 * 10**10, 80 * 10**10, 50_000, 50_000)
    assert liq_threshold_p(params, 50_000) == 90 * 10**10
    assert liq_threshold_p(params, 49_999) == 90 * 10**10
    assert liq_threshold_p(params, 50_001) == 80 * 10**10


# --- against our test diamond, exactly ---------------------------------------------------------


_LIQ_PRICE = GainsFn.of("GNSMultiCollatDiamond", "getTradeLiquidationPrice")
_HOLDING = GainsFn.of("GNSMultiCollatDiamond", "getTradePendingHoldingFeesCollateral")
_FEES_DATA = GainsFn.of("GNSMultiCollatDiamond", "getTradeFeesData")
NOBODY = "0x000000000000000000000000000000000000dEaD"
CHUNK = 150


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    node = Anvil()
    try:
        node.start()
    except AnvilError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield node
    finally:
        node.stop()


@dataclass(frozen=True, slots=True)
class World:
    """The test deployment with the markets and collaterals listed for the comparison."""

    net: GainsDevnet
    markets: tuple[Market, ...]
    collaterals: tuple[CollateralSpec, ...]


@pytest.fixture(scope="module")
def world(anvil: Anvil) -> World:
    """Our test deployment (tests/integration/gains/deploy.py) with more pairs (their own fee
    groups, spreads and counter-trade multipliers) and collaterals (6 and 18 decimals)."""
    net = deploy(anvil.url)
    d = net.diamond.functions
    rng = random.Random(SEED + 1)
    collaterals = [CollateralSpec(COLLATERAL, 6, USD)]
    for decimals, price in (
        (18, 3_456_789_012_34),
        (18, 99_980_000),
        (6, 100_020_000),
        (18, 4 * USD // 10),
    ):
        net.call(net.deployer, d.listCollateral(net.usdc, decimals, price))
        collaterals.append(CollateralSpec(len(collaterals) + 1, decimals, price))
    markets = []
    feed = net.addresses["Feed0"]
    count = int(d.pairsCount().call())
    for index in range(count, count + 8):
        m = draw_market(rng, index)
        pair = ("X", "USD", (feed, "0x" + "00" * 20, 0, 0), m.spread_p, 0, 0)
        fee = (m.fee_p, 0, 0, m.min_position_size_usd, 0)
        net.call(net.deployer, d.listPair(pair, fee, (0, 0, 0, 0, 0), 1_000, 1_000_000))
        markets.append(m)
    indices = [m.index for m in markets]
    values = [m.counter_multiplier for m in markets]
    net.call(net.deployer, d.setPairCounterTradeFeeRateMultipliers(indices, values))
    return World(net, tuple(markets), tuple(collaterals))


def _liq_input(c: Case, trader: str, index: int) -> tuple[Any, ...]:
    return (
        c.collateral_spec.index, trader, c.market.index, index, c.open_price, c.long,
        c.collateral, c.leverage, c.additional_fee, _params_tuple(c.params), c.current_price,
        c.counter, c.partial_close_multiplier, c.before_opened,
    )  # fmt: skip


def _eth_calls(net: GainsDevnet, calls: Sequence[Call]) -> list[bytes]:
    """The return data of `calls` (each must succeed), through Multicall3.aggregate3 in
    chunks of CHUNK, one eth_call each."""
    out: list[bytes] = []
    for start in range(0, len(calls), CHUNK):
        chunk = calls[start : start + CHUNK]
        tx = {"to": MULTICALL3_ADDRESS, "data": "0x" + encode_aggregate3(chunk).hex()}
        answer = bytes.fromhex(str(net.chain.rpc("eth_call", tx, "latest"))[2:])
        for i, result in enumerate(decode_aggregate3(answer, len(chunk))):
            assert result.success, f"call {start + i} reverted: 0x{result.data.hex()}"
            out.append(result.data)
    return out


def test_diamond_matches_gains_math_on_inputs(world: World) -> None:
    """getTradeLiquidationPrice of the test diamond equals gains_math's, to the unit, on
    generated inputs: trades not opened yet (contracts v10, no holding fees) and inputs naming
    no trade (the diamond then reads contracts version before v9.2 and no holding fees: the
    rule without the closing spread)."""
    rng = random.Random(SEED + 2)
    cases = []
    for i in range(DIAMOND_CASES):
        market = rng.choice(world.markets)
        collateral = rng.choice(world.collaterals)
        c = draw_trade(rng, i, market, collateral, opened=False)
        if rng.random() < 0.5:
            c = replace(c, before_opened=True, version=ContractsVersion.V10)
        else:
            c = replace(c, before_opened=False, version=ContractsVersion.BEFORE_V9_2)
        cases.append(c)
    d = world.net.deployment.diamond
    answers = _eth_calls(
        world.net, [Call(d, _LIQ_PRICE.encode(_liq_input(c, NOBODY, c.id))) for c in cases]
    )
    theirs = [int(_LIQ_PRICE.decode(a)[0]) for a in answers]
    wrong = [(c, t) for c, t in zip(cases, theirs, strict=True) if c.ours != t]
    SUMMARY.setdefault("Test diamond's getTradeLiquidationPrice vs gains_math (exact)", []).append(
        f"{len(cases)} generated inputs: {len(cases) - len(wrong)} equal"
    )
    assert not wrong, "\n".join(
        f"case {c.id}: {c.ours} here, {t} from the diamond\n  {c}" for c, t in wrong[:10]
    )


OPENED = 16
PER_TRADE = 12


def test_diamond_matches_gains_math_on_opened_trades(world: World) -> None:
    """The same on trades opened on the diamond whose holding fees (borrowing and funding,
    positive and negative) have accrued for a while: for each, inputs with other prices, partial
    close multipliers, additional fees and liquidation parameters; gains_math takes the holding
    fees and realized pnl the diamond reports for the trade at the input's price."""
    net = world.net
    d = net.diamond.functions
    rng = random.Random(SEED + 3)
    prices = {0: 2_000, 1: 60_000}
    for pair, (borrowing, funding) in {
        0: (3 * 10**4, -8 * 10**4),
        1: (5 * 10**4, 6 * 10**4),
    }.items():
        net.set_holding_rates(pair, borrowing, funding, prices[pair] * PRICE_PRECISION)
    opened: list[tuple[int, int]] = []  # (pair, trade index)
    for _ in range(OPENED):
        pair = rng.randint(0, 1)
        kind = replace(KINDS[0], min_leverage=2_000, max_leverage=150_000)
        params = draw_params(rng, kind)
        net.call(net.deployer, d.setGroupLiquidationParams(pair, _params_tuple(params)))
        leverage, _ = draw_leverage(rng, kind, params)
        collateral = rng.randint(10, 5_000) * 10**6
        index = net.open(pair, rng.random() < 0.5, collateral, leverage, prices[pair])
        opened.append((pair, index))
    net.chain.rpc("evm_increaseTime", 30 * 86_400)
    net.chain.rpc("evm_mine")
    trader = net.trader.address
    deployed = {
        pair: Market(pair, KINDS[0], 6 * 10**8, 1_500, 4 * 10**8, LEVERAGE_PRECISION)
        for pair in prices
    }  # tests/integration/gains/deploy.py's pairs
    cases: list[tuple[int, Case]] = []  # (the trade's index, an input on it)
    for pair, index in opened:
        t = net.trade(trader, index)
        stored = LiquidationParams(
            *(int(x) for x in d.getTradeLiquidationParams(trader, index).call())
        )
        for k in range(PER_TRADE):
            c = draw_trade(rng, len(cases), deployed[pair], CollateralSpec(COLLATERAL, 6, USD))
            c = replace(
                c,
                long=t.long,
                counter=False,
                before_opened=False,
                version=ContractsVersion.V10,
                collateral=t.collateral_amount,
                leverage=t.leverage,
                open_price=t.open_price,
                current_price=max(1, int(t.open_price * _uniform(rng, "0.6", "1.4"))),
                params=stored if k % 2 == 0 else c.params,
            )
            cases.append((index, replace(c, leverage_at=_where(t.leverage, c.params))))
    dia = net.deployment.diamond
    calls = []
    for index, c in cases:
        calls.append(Call(dia, _HOLDING.encode(trader, index, c.current_price)))
        calls.append(Call(dia, _FEES_DATA.encode(trader, index)))
        calls.append(Call(dia, _LIQ_PRICE.encode(_liq_input(c, trader, index))))
    answers = _eth_calls(net, calls)
    wrong = []
    signs: Counter[str] = Counter()
    for n, (_, c) in enumerate(cases):
        holding = int(_HOLDING.decode(answers[3 * n])[0][3])
        fees_data = _FEES_DATA.decode(answers[3 * n + 1])[0]
        theirs = int(_LIQ_PRICE.decode(answers[3 * n + 2])[0])
        c = replace(
            c,
            holding_v1=holding,
            holding_v2=0,
            realized_trading_fees=int(fees_data[0]),
            realized_pnl=int(fees_data[1]),
        )
        signs["negative" if holding < 0 else "positive" if holding > 0 else "zero"] += 1
        if c.ours != theirs:
            wrong.append(f"case {c.id}: {c.ours} here, {theirs} from the diamond\n  {c}")
    SUMMARY.setdefault("Test diamond's getTradeLiquidationPrice vs gains_math (exact)", []).append(
        f"{OPENED} opened trades x {PER_TRADE} inputs, holding fees "
        + ", ".join(f"{k}: {v}" for k, v in sorted(signs.items()))
        + f": {len(cases) - len(wrong)} of {len(cases)} equal"
    )
    assert signs["negative"], f"no negative holding fees: {signs}"
    assert signs["positive"], f"no positive holding fees: {signs}"
    assert not wrong, "\n".join(wrong[:10])


def _params_tuple(p: LiquidationParams) -> tuple[int, int, int, int, int]:
    return (
        p.max_liq_spread_p,
        p.start_liq_threshold_p,
        p.end_liq_threshold_p,
        p.start_leverage,
        p.end_leverage,
    )
