"""Differential test of the GMX adapter's position math against the GMX SDK's.

A seeded generator makes positions on three kinds of market (ETH/USD [WETH-USDC], whose long
token is the index token; BTC/USD [WBTC-USDC], whose long token the SDK treats as the synthetic
BTC index; DOGE/USD [WETH-USDC], where no collateral is the index), long and short, with random
prices and spreads, fees, pending and closing price impact, pools small enough to cap pnl now
and then, and factors where MIN_COLLATERAL_FACTOR is above or below the liquidation one.

One node run (gmx_sdk_math.cjs) puts all of them through the SDK's `Positions.getPositionsInfo`
and `getLiquidationPrice`. Each position is then read the way the adapter reads it: the Reader
figures it takes from Reader.getPositionInfo are built from the SDK's (pnl, closing fee, closing
price impact) and the generated ones (borrowing, funding), with fees in collateral token units
rounded down as the contract reports them; `map_market` and `map_position` turn them into the
model, and keeper.margin computes the liquidation price, equity (net value), leverage and pnl.
A second node run evaluates the SDK's `getLeverage` on the adapter's definition of leverage.

Differences allowed, each explained where it is checked: the liquidation price is compared
after moving the SDK's (a price of the conservative side: min for a long, max for a short) to
the adapter's mark, the middle of min and max; what the two sides count differently is turned
into an explained shift (`Row.shift`) and the rest must be within one unit of GMX's price
precision, the SDK truncating and the adapter rounding against the trader. Net value and pnl
after fees are compared once the closing impact the SDK counts is replaced by the one GMX's
liquidation test counts, and must then agree to the unit (1e-30 USD).

Collateral the SDK counts as the index token without being it (WBTC for the synthetic BTC
index) is marked xfail(strict=True): the adapter moves only the index token itself with the
price.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import pytest
from eth_utils.address import to_checksum_address

from keeper import margin
from keeper.model import Market, Position, Token
from keeper.venues.gmx import (
    MarketParams,
    MarketTokens,
    RawPosition,
    RawPositionInfo,
    TokenPrice,
    map_market,
    map_position,
)
from keeper.venues.gmx_math import (
    FLOAT_PRECISION,
    apply_factor,
    capped_price_impact,
    position_key,
    position_pnl_usd,
)
from tests.conformance.gmx_sdk import SUMMARY, run_math
from tests.conformance.sdk import JsNumber, Sdk

SEED = 20_250_607
CASES = 1_600
P = FLOAT_PRECISION
BPS = 10_000


# --- tokens and markets ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenSpec:
    """A token as both sides see it, with the range its raw price (USD at 1e30 per smallest
    unit) is drawn from."""

    address: str
    symbol: str
    decimals: int
    low: int
    high: int
    synthetic: bool = False
    stable: bool = False

    @property
    def token(self) -> Token:
        return Token(self.address, self.symbol, self.decimals)


WETH = TokenSpec(
    "0x82aF49447D8a07e3bd95BD0d56f35241523fBab1", "WETH", 18, 800 * 10**12, 6_000 * 10**12
)
USDC = TokenSpec(
    "0xaf88d065e77c8cC2239327C5EDb3A432268e5831",
    "USDC",
    6,
    995 * 10**21,
    1_005 * 10**21,
    stable=True,
)
# The SDK's token list calls WBTC "BTC", the symbol of the synthetic BTC index token, which is
# what makes getIsEquivalentTokens treat the two as one.
WBTC = TokenSpec(
    "0x2f2a2543B76A4166549F7aaB2e75Bef0aefC5B0f", "BTC", 8, 15_000 * 10**22, 150_000 * 10**22
)
BTC = TokenSpec(
    "0x47904963fc8b2340414262125aF798B9655E58Cd",
    "BTC",
    8,
    15_000 * 10**22,
    150_000 * 10**22,
    synthetic=True,
)
DOGE = TokenSpec(
    "0xC4da4c24fd591125c3F47b340b6f4f76111883d8",
    "DOGE",
    8,
    5 * 10**20,
    8 * 10**21,
    synthetic=True,
)


@dataclass(frozen=True, slots=True)
class MarketSpec:
    name: str
    address: str
    index: TokenSpec
    long: TokenSpec
    short: TokenSpec


MARKETS = (
    MarketSpec(
        "ETH/USD [WETH-USDC]", "0x70d95587d40A2caf56bd97485aB3Eec10Bee6336", WETH, WETH, USDC
    ),
    MarketSpec(
        "BTC/USD [WBTC-USDC]", "0x47c031236e19d024b42f8AE6780E44A573170703", BTC, WBTC, USDC
    ),
    MarketSpec(
        "DOGE/USD [WETH-USDC]", "0x6853EA96FF216fAb11D2d930CE3C508556A4bdc4", DOGE, WETH, USDC
    ),
)


# --- generated cases ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One generated position with its market, in GMX's raw units."""

    id: int
    market: MarketSpec
    account: str
    is_long: bool
    collateral: TokenSpec
    prices: Mapping[str, TokenPrice]  # by token address
    size_in_usd: int
    size_in_tokens: int
    collateral_amount: int
    pending_impact_amount: int
    borrowing_fee_usd: int
    funding_fee_amount: int
    min_collateral_usd: int
    factors: Mapping[str, int]  # the SDK MarketInfo's numeric fields
    use_open_interest_in_tokens: bool

    @property
    def index_price(self) -> TokenPrice:
        return self.prices[self.market.index.address]

    @property
    def collateral_price(self) -> TokenPrice:
        return self.prices[self.collateral.address]

    @property
    def sdk_key(self) -> str:
        """The SDK's position key (Positions.getPositionKey's format)."""
        side = "true" if self.is_long else "false"
        return f"{self.account}:{self.market.address}:{self.collateral.address}:{side}"


def _price(rng: random.Random, spec: TokenSpec) -> TokenPrice:
    low = rng.randint(spec.low, spec.high)
    spread = 0 if rng.random() < 0.4 else rng.randint(1, max(1, low // 500))
    return TokenPrice(low, low + spread)


def _generate_one(rng: random.Random, i: int) -> Case:
    market = rng.choice(MARKETS)
    prices: dict[str, TokenPrice] = {}
    for spec in (market.long, market.short, market.index):
        prices.setdefault(spec.address, _price(rng, spec))
    if market.index is BTC:  # one price for both, as getIsEquivalentTokens assumes
        prices[WBTC.address] = prices[BTC.address]
    index_price = prices[market.index.address]
    is_long = rng.random() < 0.5
    collateral = market.long if rng.random() < 0.5 else market.short
    collateral_min = prices[collateral.address].min

    size_in_usd = rng.randint(20, 2_000_000) * P + rng.randint(0, P - 1)
    leverage_bps = rng.randint(12_000, 800_000)  # 1.2x to 80x at entry
    # Most positions have moved less than 60% of their margin since entry; the rest up to 30%
    # of the price, many of them past liquidation.
    reach = 6_000 * BPS // leverage_bps if rng.random() < 0.7 else 3_000
    entry = max(1, index_price.min * (BPS + rng.randint(-reach, reach)) // BPS)
    size_in_tokens = max(1, size_in_usd // entry)
    collateral_usd = size_in_usd * BPS // leverage_bps
    collateral_amount = max(1, collateral_usd // collateral_min)
    pending = 0
    if rng.random() < 0.6:
        pending = rng.randint(-size_in_tokens // 300, size_in_tokens // 600)
    borrowing_fee_usd = rng.randint(0, size_in_usd // 200)
    funding_fee_amount = rng.randint(0, size_in_usd // 400 // collateral_min)

    # Factors as GMX configures them: decimals of a few significant digits.
    min_factor = rng.randint(10, 200) * P // BPS  # 0.1% to 2%
    if rng.random() < 0.25:  # MIN_COLLATERAL_FACTOR above the liquidation factor
        liquidation_factor = min_factor * rng.randint(30, 95) // 100
    else:
        liquidation_factor = min_factor + rng.randint(0, 100) * P // BPS
    fee_improved = rng.randint(2, 5) * P // BPS
    fee_not_improved = fee_improved
    if rng.random() < 0.5:
        fee_not_improved += rng.randint(1, 3) * P // BPS
    impact_negative = 0 if rng.random() < 0.15 else rng.randint(10, 1_000) * 10**18
    impact_positive = impact_negative * rng.randint(30, 100) // 100
    exponent = rng.choice([2 * P, 2 * P, 18 * P // 10, 22 * P // 10])
    for_liquidations = rng.choice([0, 25, 50, 100, rng.randint(0, 200)]) * P // BPS
    max_positive = rng.randint(5, 50) * P // BPS
    max_negative = rng.randint(10, 100) * P // BPS

    own_interest = size_in_usd + rng.randint(0, 30 * size_in_usd)
    other_interest = rng.randint(0, 30 * size_in_usd)
    long_usd, short_usd = (
        (own_interest, other_interest) if is_long else (other_interest, own_interest)
    )

    def in_tokens(usd: int) -> int:
        return usd // max(1, index_price.min * rng.randint(800, 1_200) // 1_000)

    def pool(spec: TokenSpec, interest: int) -> int:
        worth = (
            interest // 50
            if rng.random() < 0.15
            else rng.randint(interest // 2 + P, 3 * interest + P)
        )
        return worth // prices[spec.address].min

    factors = {
        "minCollateralFactor": min_factor,
        "minCollateralFactorForLiquidation": liquidation_factor,
        "minCollateralFactorForOpenInterestLong": 0,
        "minCollateralFactorForOpenInterestShort": 0,
        "positionFeeFactorForBalanceWasImproved": fee_improved,
        "positionFeeFactorForBalanceWasNotImproved": fee_not_improved,
        "positionImpactFactorPositive": impact_positive,
        "positionImpactFactorNegative": impact_negative,
        "positionImpactExponentFactorPositive": exponent,
        "positionImpactExponentFactorNegative": exponent,
        "maxPositionImpactFactorPositive": max_positive,
        "maxPositionImpactFactorNegative": max_negative,
        "maxPositionImpactFactorForLiquidations": for_liquidations,
        "positionImpactPoolAmount": in_tokens(rng.randint(0, 2 * size_in_usd)),
        "longInterestUsd": long_usd,
        "shortInterestUsd": short_usd,
        "longInterestInTokens": in_tokens(long_usd),
        "shortInterestInTokens": in_tokens(short_usd),
        "longPoolAmount": pool(market.long, long_usd),
        "shortPoolAmount": pool(market.short, short_usd),
        "maxPnlFactorForTradersLong": rng.randint(30, 90) * P // 100,
        "maxPnlFactorForTradersShort": rng.randint(30, 90) * P // 100,
    }
    return Case(
        id=i,
        market=market,
        account=to_checksum_address(rng.randbytes(20)),
        is_long=is_long,
        collateral=collateral,
        prices=prices,
        size_in_usd=size_in_usd,
        size_in_tokens=size_in_tokens,
        collateral_amount=collateral_amount,
        pending_impact_amount=pending,
        borrowing_fee_usd=borrowing_fee_usd,
        funding_fee_amount=funding_fee_amount,
        min_collateral_usd=rng.randint(1, 10) * P,
        factors=factors,
        use_open_interest_in_tokens=rng.random() < 0.5,
    )


def generate(seed: int = SEED, count: int = CASES) -> list[Case]:
    rng = random.Random(seed)
    return [_generate_one(rng, i) for i in range(count)]


MANY_DIGITS_ID = 100_000
"""Ids of the many-digit factor variants start here."""


def many_digit_variants(cases: Sequence[Case], count: int = 40) -> list[Case]:
    """Copies of the first `count` cases with collateral other than the index token whose
    collateral factors carry 28 significant digits (e.g. 0.0050000000000000000000987654) instead
    of GMX's usual few."""
    picked = [c for c in cases if c.collateral.symbol != c.market.index.symbol][:count]
    out = []
    for c in picked:
        f = dict(c.factors)
        f["minCollateralFactor"] += 987_654
        f["minCollateralFactorForLiquidation"] += 123_457
        out.append(replace(c, id=MANY_DIGITS_ID + c.id, factors=f))
    return out


# --- the SDK's input ---------------------------------------------------------------------------

ZERO_MARKET_FIELDS = (
    "maxLongPoolAmount",
    "maxShortPoolAmount",
    "maxLongPoolUsdForDeposit",
    "maxShortPoolUsdForDeposit",
    "poolValueMax",
    "poolValueMin",
    "reserveFactorLong",
    "reserveFactorShort",
    "openInterestReserveFactorLong",
    "openInterestReserveFactorShort",
    "maxOpenInterestLong",
    "maxOpenInterestShort",
    "borrowingFactorLong",
    "borrowingFactorShort",
    "borrowingExponentFactorLong",
    "borrowingExponentFactorShort",
    "fundingFactor",
    "fundingExponentFactor",
    "fundingIncreaseFactorPerSecond",
    "fundingDecreaseFactorPerSecond",
    "thresholdForStableFunding",
    "thresholdForDecreaseFunding",
    "minFundingFactorPerSecond",
    "maxFundingFactorPerSecond",
    "totalBorrowingFees",
    "minPositionImpactPoolAmount",
    "positionImpactPoolDistributionRate",
    "swapImpactPoolAmountLong",
    "swapImpactPoolAmountShort",
    "maxLendableImpactFactor",
    "maxLendableImpactFactorForWithdrawals",
    "maxLendableImpactUsd",
    "lentPositionImpactPoolAmount",
    "swapFeeFactorForBalanceWasImproved",
    "swapFeeFactorForBalanceWasNotImproved",
    "atomicSwapFeeFactor",
    "swapImpactFactorPositive",
    "swapImpactFactorNegative",
    "swapImpactExponentFactor",
    "borrowingFactorPerSecondForLongs",
    "borrowingFactorPerSecondForShorts",
    "fundingFactorPerSecond",
    "virtualPoolAmountForLongToken",
    "virtualPoolAmountForShortToken",
    "virtualInventoryForPositions",
)
"""MarketInfo fields the position math does not read; zero."""


def _sdk_token(spec: TokenSpec, price: TokenPrice) -> dict[str, Any]:
    scale = 10**spec.decimals  # the SDK's prices are per whole token
    return {
        "address": spec.address,
        "name": spec.symbol,
        "symbol": spec.symbol,
        "decimals": JsNumber(spec.decimals),
        "isSynthetic": spec.synthetic,
        "isStable": spec.stable,
        "prices": {"minPrice": price.min * scale, "maxPrice": price.max * scale},
    }


def sdk_case(case: Case) -> dict[str, Any]:
    m = case.market
    tokens = {s.address: _sdk_token(s, case.prices[s.address]) for s in (m.index, m.long, m.short)}
    market = {
        "marketTokenAddress": m.address,
        "indexTokenAddress": m.index.address,
        "longTokenAddress": m.long.address,
        "shortTokenAddress": m.short.address,
        "isSameCollaterals": m.long.address == m.short.address,
        "isSpotOnly": False,
        "isDisabled": False,
        "name": m.name,
        "data": "",
        "useOpenInterestInTokensForBalance": case.use_open_interest_in_tokens,
        "longsPayShorts": False,
        "virtualMarketId": "0x" + "00" * 32,
        "virtualLongTokenId": "0x" + "00" * 32,
        "virtualShortTokenId": "0x" + "00" * 32,
        **dict.fromkeys(ZERO_MARKET_FIELDS, 0),
        **case.factors,
    }
    key = "0x" + _position_key(case).hex()
    position = {
        "key": case.sdk_key,
        "contractKey": key,
        "account": case.account,
        "marketAddress": m.address,
        "collateralTokenAddress": case.collateral.address,
        "sizeInUsd": case.size_in_usd,
        "sizeInTokens": case.size_in_tokens,
        "collateralAmount": case.collateral_amount,
        "pendingBorrowingFeesUsd": case.borrowing_fee_usd,
        "increasedAtTime": 1,
        "decreasedAtTime": 0,
        "isLong": case.is_long,
        "fundingFeeAmount": case.funding_fee_amount,
        "claimableLongTokenAmount": 0,
        "claimableShortTokenAmount": 0,
        "pnl": 0,
        "positionFeeAmount": 0,
        "traderDiscountAmount": 0,
        "uiFeeAmount": 0,
        "pendingImpactAmount": case.pending_impact_amount,
        "data": "0x",
    }
    return {
        "id": case.id,
        "tokens": tokens,
        "market": market,
        "position": position,
        "minCollateralUsd": case.min_collateral_usd,
    }


def _position_key(case: Case) -> bytes:
    return position_key(case.account, case.market.address, case.collateral.address, case.is_long)


# --- the adapter's side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One case: the SDK's figures, the adapter's, and what the two count differently."""

    case: Case
    sdk: Mapping[str, Any]
    info: RawPositionInfo
    market: Market
    position: Position
    liquidation_price: int | None  # raw: USD (1e30) per smallest index token unit
    liquidation_price_max_impact: int | None
    equity: int
    leverage: Decimal | None
    pnl: int
    fee_truncation: int  # USD the Reader's token-unit fees lose to rounding down (>= 0)
    fee_factor_gap: int  # USD more closing fee getLiquidationPrice charges (>= 0)
    pnl_cap: int  # USD the Reader's pnl is below the linear pnl (pool cap, >= 0)
    sdk_leverage_aligned: int | None = None  # getLeverage on the adapter's definition, bps

    @property
    def collateral_is_index(self) -> bool:
        return bool(self.sdk["collateralIsIndex"])

    @property
    def collateral_kind(self) -> str:
        """ "index" (the index token itself), "equivalent" (one the SDK counts as it), or
        "other"."""
        if not self.collateral_is_index:
            return "other"
        same = self.case.collateral.address == self.case.market.index.address
        return "index" if same else "equivalent"

    @property
    def offset(self) -> int:
        """The adapter's mark minus the SDK's liquidation price side: mid - min for a long,
        mid - max for a short (raw units)."""
        price = self.case.index_price
        return price.mid - (price.min if self.case.is_long else price.max)

    @property
    def shift(self) -> int:
        """USD more equity (remaining collateral) the adapter counts than getLiquidationPrice:
        the fees the contract's token-unit rounding drops, the closing fee the SDK takes at the
        balance-not-improved factor where the close improves balance, less the pnl the pool cap
        takes off (the adapter keeps the current cap as a cost)."""
        return self.fee_truncation + self.fee_factor_gap - self.pnl_cap

    @property
    def reader_capped_impact(self) -> bool:
        """Reader.getPositionInfo's totalImpactUsd was capped at -MAX_POSITION_IMPACT_FACTOR
        (priceImpactDiffUsd > 0) above the liquidation test's own floor,
        -MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS: the adapter then counts less impact."""
        size = self.case.size_in_usd
        reader_floor = apply_factor(size, self.case.factors["maxPositionImpactFactorNegative"])
        liq_floor = apply_factor(size, self.case.factors["maxPositionImpactFactorForLiquidations"])
        return int(self.sdk["priceImpactDiffUsd"]) > 0 and reader_floor < liq_floor

    @property
    def min_factor_above(self) -> bool:
        f = self.case.factors
        return f["minCollateralFactor"] > f["minCollateralFactorForLiquidation"]


def _tokens(case: Case) -> MarketTokens:
    m = case.market
    return MarketTokens(m.address, m.index.token, m.long.token, m.short.token)


def _params(case: Case) -> MarketParams:
    f = case.factors
    return MarketParams(
        min_collateral_factor=f["minCollateralFactor"],
        min_collateral_factor_for_liquidation=f["minCollateralFactorForLiquidation"],
        max_impact_factor_for_liquidations=f["maxPositionImpactFactorForLiquidations"],
        position_fee_factor=f["positionFeeFactorForBalanceWasNotImproved"],
        pool_long=f["longPoolAmount"],
        pool_short=f["shortPoolAmount"],
        open_interest_in_tokens_long=f["longInterestInTokens"],
        open_interest_in_tokens_short=f["shortInterestInTokens"],
        open_interest_long=f["longInterestUsd"],
        open_interest_short=f["shortInterestUsd"],
        funding_factor_per_second=0,
    )


def reader_info(case: Case, sdk: Mapping[str, Any]) -> RawPositionInfo:
    """What Reader.getPositionInfo would report, as the SDK figures it: the SDK's pnl and
    closing fee; its model of ExecutionPriceResult.totalImpactUsd, which is the
    totalImpactDeltaUsd of getNetPriceImpactDeltaUsdForDecrease plus its priceImpactDiffUsd
    (the Reader floors the impact at -size * MAX_POSITION_IMPACT_FACTOR); and fees in
    collateral token units rounded down, as PositionPricingUtils.getPositionFees has them."""
    price_min = case.collateral_price.min
    position_fee_amount = int(sdk["closingFeeUsd"]) // price_min
    borrowing_fee_amount = case.borrowing_fee_usd // price_min
    raw = RawPosition(
        key="0x" + _position_key(case).hex(),
        account=case.account,
        market=case.market.address,
        collateral_token=case.collateral.address,
        size_in_usd=case.size_in_usd,
        size_in_tokens=case.size_in_tokens,
        collateral_amount=case.collateral_amount,
        pending_impact_amount=case.pending_impact_amount,
        is_long=case.is_long,
        increased_at_time=1,
    )
    return RawPositionInfo(
        position=raw,
        collateral_price_min=price_min,
        total_cost_amount=position_fee_amount + borrowing_fee_amount + case.funding_fee_amount,
        position_fee_amount=position_fee_amount,
        borrowing_fee_usd=case.borrowing_fee_usd,
        funding_fee_amount=case.funding_fee_amount,
        price_impact_usd=int(sdk["closePriceImpactDeltaUsd"]),
        total_impact_usd=int(sdk["netPriceImpactDeltaUsd"]) + int(sdk["priceImpactDiffUsd"]),
        base_pnl_usd=int(sdk["pnl"]),
        price_impact_diff_usd=int(sdk["priceImpactDiffUsd"]),
    )


def _raw(price: Any) -> int | None:
    return None if price is None else int(price.raw)


def evaluate(case: Case, sdk: Mapping[str, Any]) -> Row:
    tokens, params = _tokens(case), _params(case)
    info = reader_info(case, sdk)
    market = map_market(tokens, case.index_price, params, case.min_collateral_usd)
    position = map_position(info, tokens, market, params)
    # The worst price impact the liquidation test counts: any cost at least
    # size * MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS, which the adapter caps to that.
    worst = map_position(replace(info, total_impact_usd=-case.size_in_usd), tokens, market, params)
    price_min = case.collateral_price.min
    fees_usd = int(sdk["closingFeeUsd"]) + case.borrowing_fee_usd
    fees_in_units = int(sdk["closingFeeUsd"]) // price_min + case.borrowing_fee_usd // price_min
    pick = case.index_price.min if case.is_long else case.index_price.max
    linear = position_pnl_usd(case.size_in_usd, case.size_in_tokens, pick, case.is_long)
    fee_not_improved = case.factors["positionFeeFactorForBalanceWasNotImproved"]
    return Row(
        case=case,
        sdk=sdk,
        info=info,
        market=market,
        position=position,
        liquidation_price=_raw(margin.liquidation_price(position, market)),
        liquidation_price_max_impact=_raw(margin.liquidation_price(worst, market)),
        equity=margin.equity(position, market).raw,
        leverage=margin.leverage(position, market),
        pnl=margin.pnl(position, market).raw,
        fee_truncation=fees_usd - fees_in_units * price_min,
        fee_factor_gap=apply_factor(case.size_in_usd, fee_not_improved) - int(sdk["closingFeeUsd"]),
        pnl_cap=max(0, linear - int(sdk["pnl"])),
    )


def aligned_leverage_args(row: Row) -> dict[str, int]:
    """getLeverage's arguments for the adapter's leverage: the notional at the mark over the
    liquidation test's remaining collateral (collateral + pnl - every cost the Reader counts
    + the price impact the test counts, a cost entering as a fee)."""
    case = row.case
    impact = capped_price_impact(
        row.info.total_impact_usd,
        case.size_in_usd,
        case.factors["maxPositionImpactFactorForLiquidations"],
    )
    return {
        "sizeInUsd": case.size_in_tokens * case.index_price.mid,
        "collateralUsd": row.info.collateral_usd,
        "pnl": row.info.base_pnl_usd,
        "pendingBorrowingFeesUsd": row.info.total_cost_usd,
        "pendingFundingFeesUsd": -impact,
    }


@pytest.fixture(scope="session")
def sdk_results(gmx_sdk: Sdk) -> list[tuple[Case, Mapping[str, Any]]]:
    """Every generated case, and the many-digit variants, through the SDK: one node run."""
    cases = generate()
    cases += many_digit_variants(cases)
    answer = run_math(gmx_sdk, {"positions": [sdk_case(c) for c in cases]})
    results = answer["positions"]
    assert [r["id"] for r in results] == [c.id for c in cases], "the SDK answered out of order"
    return list(zip(cases, results, strict=True))


@pytest.fixture(scope="session")
def rows(gmx_sdk: Sdk, sdk_results: list[tuple[Case, Mapping[str, Any]]]) -> list[Row]:
    """The generated cases through the adapter, then the SDK's getLeverage on the adapter's
    definition of leverage (a second node run)."""
    evaluated = [evaluate(c, r) for c, r in sdk_results if c.id < MANY_DIGITS_ID]
    aligned = run_math(gmx_sdk, {"leverage": [aligned_leverage_args(r) for r in evaluated]})
    return [
        replace(r, sdk_leverage_aligned=lev)
        for r, lev in zip(evaluated, aligned["leverage"], strict=True)
    ]


# --- comparisons -------------------------------------------------------------------------------

SIDES = ("long", "short")
COLLATERALS = ("other", "index", "equivalent")
EQUIVALENT_REASON = (
    "collateral the SDK counts as the index token without being it (WBTC backing the "
    "synthetic BTC index: getIsEquivalentTokens): its value moves with the price, but the "
    "adapter recognises only the index token itself (the same address) as moving collateral; "
    "it would need GMX's token equivalences per chain (the SDK's tokens config)"
)


def _select(rows: Iterable[Row], side: str, collateral: str) -> list[Row]:
    return [
        r
        for r in rows
        if r.case.is_long == (side == "long")
        and r.collateral_kind == collateral
        and not r.reader_capped_impact
    ]


def _categories(
    xfail: Callable[[str, str], str | None] = lambda side, collateral: None,
) -> list[Any]:
    """(side, collateral kind) parameters; `xfail` names the reason a category is expected to
    fail until the adapter changes (strict: it must fail)."""
    out = []
    for side in SIDES:
        for collateral in COLLATERALS:
            reason = xfail(side, collateral)
            marks = []
            if reason is not None:
                marks.append(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))
            out.append(
                pytest.param(side, collateral, id=f"{side}-{collateral}-collateral", marks=marks)
            )
    return out


def _equivalent(side: str, collateral: str) -> str | None:
    return EQUIVALENT_REASON if collateral == "equivalent" else None


def _record(title: str, lines: Sequence[str]) -> None:
    SUMMARY[title] = list(lines)


def _report(failures: Sequence[str], count: int, what: str) -> None:
    """Fail (AssertionError, which the xfail marks expect) listing the first differences."""
    shown = "\n".join(failures[:12])
    more = f"\n... and {len(failures) - 12} more" if len(failures) > 12 else ""
    assert not failures, f"{what}: {len(failures)} of {count} cases differ:\n{shown}{more}"


def test_generated_cases_cover_every_kind(rows: list[Row]) -> None:
    """At least 1,000 cases, each side and collateral kind well represented, and each effect
    the comparisons allow for present; the SDK's pipeline and the direct getLiquidationPrice
    call agree."""
    assert len(rows) >= 1_000
    kinds = Counter((r.case.is_long, r.collateral_is_index) for r in rows)
    assert all(kinds[(long, index)] >= 150 for long in (True, False) for index in (True, False)), (
        kinds
    )
    effects = {
        "spread": sum(r.case.index_price.min != r.case.index_price.max for r in rows),
        "pending impact": sum(r.case.pending_impact_amount != 0 for r in rows),
        "positive closing impact": sum(int(r.sdk["netPriceImpactDeltaUsd"]) > 0 for r in rows),
        "negative closing impact": sum(int(r.sdk["netPriceImpactDeltaUsd"]) < 0 for r in rows),
        "impact beyond MAX_POSITION_IMPACT_FACTOR": sum(
            int(r.sdk["priceImpactDiffUsd"]) > 0 for r in rows
        ),
        "Reader cap above the liquidation floor": sum(r.reader_capped_impact for r in rows),
        "pnl capped by the pool": sum(r.pnl_cap > 0 for r in rows),
        "closing fee factor gap": sum(r.fee_factor_gap > 0 for r in rows),
        "MIN_COLLATERAL_FACTOR above the liquidation factor": sum(r.min_factor_above for r in rows),
        "equity at or below zero": sum(r.equity <= 0 for r in rows),
    }
    assert all(n >= 10 for n in effects.values()), effects
    _record(
        f"generated cases: {len(rows)} (seed {SEED})",
        [f"{k}: {n}" for k, n in effects.items()],
    )
    wrong = [
        r.case.id for r in rows if r.sdk["liquidationPrice"] != r.sdk["liquidationPriceDirect"]
    ]
    assert not wrong, (
        f"getLiquidationPrice called directly disagrees with getPositionsInfo: {wrong[:10]}"
    )


@dataclass(slots=True)
class LiquidationStats:
    """What a liquidation price comparison found; relative figures are shares of the mark."""

    compared: int = 0
    failures: list[str] = field(default_factory=list)
    largest: Decimal = Decimal(0)  # largest |difference|, the explained shift included
    largest_residual: int = 0  # largest |difference - explained shift|, raw units
    largest_residual_share: Decimal = Decimal(0)
    residual_below: int = 0  # cases more than one unit below GMX's after the shift
    residual_above: int = 0
    healthy: int = 0  # cases GMX would not liquidate at the current price
    healthy_below: int = 0
    healthy_above: int = 0
    largest_healthy_share: Decimal = Decimal(0)
    causes: dict[str, Decimal] = field(default_factory=dict)  # largest share per shift cause


def _sdk_raw(row: Row, field_name: str) -> int | None:
    """An SDK liquidation price (1e30 USD per whole token) in raw units (per smallest unit);
    the SDK builds it as a whole number of raw units times 10**decimals."""
    value = row.sdk[field_name]
    return None if value is None else int(value) // 10**row.case.market.index.decimals


def _compare_liquidation(
    rows: Sequence[Row], ours: Callable[[Row], int | None], sdk_field: str
) -> LiquidationStats:
    """Liquidation prices after moving the adapter's to GMX's side (Row.offset) and the
    explained shift (Row.shift: a long's price falls by shift / sizeInTokens, a short's
    rises by it). What is left must be within one raw unit: getLiquidationPrice truncates the
    raw price, the adapter rounds a long's up and a short's down. Where getLiquidationPrice
    gives no price (at or below zero), the adapter's must be none or at most the allowed
    difference above zero."""
    stats = LiquidationStats()
    for r in rows:
        q, mark = r.case.size_in_tokens, r.case.index_price.mid
        # collateral in the index token moves with the price: equity's slope is q + c for a
        # long, q - c (in size) for a short, so a USD shift moves the price by shift / slope
        c = r.case.collateral_amount if r.collateral_kind == "index" else 0
        slope = q + c if r.case.is_long else q - c
        base = -(r.shift // slope) if r.case.is_long else r.shift // slope
        # the SDK values index collateral at the price its pnl uses (min for a long, max for
        # a short), the adapter at the collateral's min price as GMX's Reader: a spread of
        # the price between them, times c / slope, moves the crossing
        spread = r.case.index_price.max - r.case.index_price.min
        allowed = 1 + (spread * c) // slope + 1 if c else 1
        for cause, usd in (
            ("pnl cap", r.pnl_cap),
            ("closing fee factor", r.fee_factor_gap),
            ("fee rounding", r.fee_truncation),
        ):
            share = Decimal(usd) / q / mark
            stats.causes[cause] = max(stats.causes.get(cause, Decimal(0)), share)
        sdk, adapter = _sdk_raw(r, sdk_field), ours(r)
        stats.compared += 1
        if adapter is None and sdk is None:
            continue
        if sdk is None:
            assert adapter is not None
            delta, ok = adapter - r.offset, adapter - r.offset <= base + allowed
        elif adapter is None:
            delta, ok = -sdk - r.offset, -sdk - r.offset >= base - allowed
        else:
            delta = adapter - r.offset - sdk
            ok = abs(delta - base) <= allowed
        residual = delta - base
        pick = r.case.index_price.min if r.case.is_long else r.case.index_price.max
        if sdk is not None and (sdk < pick if r.case.is_long else sdk > pick):
            stats.healthy += 1
            stats.healthy_below += residual < -1
            stats.healthy_above += residual > 1
            share = Decimal(abs(residual)) / mark
            stats.largest_healthy_share = max(stats.largest_healthy_share, share)
        stats.largest = max(stats.largest, Decimal(abs(delta)) / mark)
        stats.largest_residual = max(stats.largest_residual, abs(residual))
        stats.largest_residual_share = max(
            stats.largest_residual_share, Decimal(abs(residual)) / mark
        )
        stats.residual_below += residual < -1
        stats.residual_above += residual > 1
        if not ok:
            side = "long" if r.case.is_long else "short"
            stats.failures.append(
                f"case {r.case.id} ({r.case.market.name} {side}, collateral "
                f"{r.case.collateral.symbol}): adapter {adapter} raw (offset {r.offset}), SDK "
                f"{sdk} raw, difference {delta}, allowed {base} +- {allowed}"
            )
    return stats


def _liquidation_lines(stats: LiquidationStats) -> list[str]:
    causes = ", ".join(f"{k} {v:.2e}" for k, v in stats.causes.items())
    return [
        f"{stats.compared} cases; beyond the explained shift: largest {stats.largest_residual} "
        f"raw units ({stats.largest_residual_share:.2e} of the mark), {stats.residual_below} "
        f"cases below GMX's, {stats.residual_above} above",
        f"of the {stats.healthy} GMX would not liquidate at the current price: "
        f"{stats.healthy_below} below GMX's, {stats.healthy_above} above, largest "
        f"{stats.largest_healthy_share:.2e} of the mark",
        f"largest difference with the shift {stats.largest:.2e} of the mark; largest shift per "
        f"cause (share of the mark): {causes}",
    ]


@pytest.mark.parametrize(("side", "collateral"), _categories(_equivalent))
@pytest.mark.parametrize(
    "impact",
    [pytest.param("reader", id="closing-impact"), pytest.param("max", id="max-impact")],
)
def test_liquidation_price(rows: list[Row], side: str, collateral: str, impact: str) -> None:
    """margin.liquidation_price of the mapped position against getLiquidationPrice, with the
    closing price impact (the adapter from Reader's totalImpactUsd) or the maximum one
    (useMaxPriceImpact; the adapter given a cost beyond the liquidation cap). The SDK runs
    with minCollateralFactorForLiquidation raised to MIN_COLLATERAL_FACTOR where that is
    larger, as the adapter's maintenance factor is the larger of the two; there the adapter
    must also be at least as near the mark as GMX's own figure (conservative)."""
    selected = _select(rows, side, collateral)
    suffix = "MaxImpact" if impact == "max" else ""

    def ours(r: Row) -> int | None:
        return r.liquidation_price_max_impact if impact == "max" else r.liquidation_price

    stats = _compare_liquidation(selected, ours, "liquidationPriceRaisedFactor" + suffix)
    as_is = "liquidationPriceMaxImpact" if impact == "max" else "liquidationPriceDirect"
    nearer = Decimal(0)
    raised = [r for r in selected if r.min_factor_above]
    for r in raised:
        adapter, gmx_raw = ours(r), _sdk_raw(r, as_is)
        if adapter is None or gmx_raw is None:
            continue
        q = r.case.size_in_tokens
        base = -(r.shift // q) if r.case.is_long else r.shift // q
        residual = adapter - r.offset - gmx_raw - base
        toward_mark = residual if r.case.is_long else -residual
        nearer = max(nearer, Decimal(toward_mark) / r.case.index_price.mid)
        if collateral == "other" and toward_mark < -1:
            stats.failures.append(
                f"case {r.case.id}: with the larger maintenance factor the adapter is "
                f"{-toward_mark} raw units farther from the mark than GMX"
            )
    lines = _liquidation_lines(stats)
    if collateral == "other":
        lines.append(
            f"MIN_COLLATERAL_FACTOR above the liquidation factor in {len(raised)} cases: the "
            f"adapter's price up to {nearer:.2e} of the mark nearer to it than GMX's own"
        )
    _record(f"liquidation price, {side}, {collateral} collateral, {impact} impact", lines)
    _report(stats.failures, stats.compared, f"liquidation price ({side}, {collateral}, {impact})")


def _equity_expected(r: Row) -> int:
    """The SDK's net value turned into the liquidation test's remaining collateral: the
    closing impact it counts (Reader's totalImpactUsd) replaced by the one the liquidation
    test counts (a gain as 0, a cost capped at MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS),
    plus the fees the contract's token-unit rounding drops."""
    counted = capped_price_impact(
        r.info.total_impact_usd,
        r.case.size_in_usd,
        r.case.factors["maxPositionImpactFactorForLiquidations"],
    )
    return int(r.sdk["netValue"]) - r.info.total_impact_usd + counted + r.fee_truncation


def _usd(raw: int) -> str:
    return f"{Decimal(raw).scaleb(-30):.2e} USD"


def _compare_remaining(
    rows: Sequence[Row],
    title: str,
    ours: Callable[[Row], int],
    sdk_field: str,
    base: Callable[[Row], int],
) -> None:
    """`ours` against the SDK's `sdk_field` moved by `_equity_expected` (`base` is what both
    subtract from the net value: nothing, or the collateral); the adapter's equity rounds
    down, so it may be one unit (1e-30 USD) below."""
    failures = []
    largest = residual = 0
    for r in rows:
        value = ours(r)
        expected = _equity_expected(r) - base(r)
        largest = max(largest, abs(value - int(r.sdk[sdk_field])))
        residual = max(residual, abs(expected - value))
        if not 0 <= expected - value <= 1:
            failures.append(
                f"case {r.case.id}: adapter {value}, expected {expected} (SDK {sdk_field} "
                f"{r.sdk[sdk_field]}), difference {expected - value}"
            )
        if r.info.collateral_usd != int(r.sdk["collateralUsd"]):
            theirs = r.sdk["collateralUsd"]
            failures.append(f"case {r.case.id}: collateral {r.info.collateral_usd}, SDK {theirs}")
    _record(
        title,
        [
            f"{len(rows)} cases; largest difference from the SDK's {sdk_field}: {_usd(largest)} "
            f"(the closing impact the liquidation test counts differently, fee rounding)",
            f"largest difference once those are translated: {residual} units of 1e-30 USD",
        ],
    )
    _report(failures, len(rows), title)


@pytest.mark.parametrize(("side", "collateral"), _categories())
def test_net_value(rows: list[Row], side: str, collateral: str) -> None:
    """margin.equity (GMX's remaining collateral) against getPositionNetValue, translated as
    `_equity_expected` says, and collateral_usd against the SDK's collateralUsd."""
    _compare_remaining(
        _select(rows, side, collateral),
        f"net value, {side}, {collateral} collateral",
        lambda r: r.equity,
        "netValue",
        lambda r: 0,
    )


@pytest.mark.parametrize(("side", "collateral"), _categories())
def test_pnl_after_fees(rows: list[Row], side: str, collateral: str) -> None:
    """equity - collateral_usd against getPositionPnlAfterFees, translated as for net value."""
    _compare_remaining(
        _select(rows, side, collateral),
        f"pnl after fees, {side}, {collateral} collateral",
        lambda r: r.equity - r.position.collateral_usd.raw,
        "pnlAfterFees",
        lambda r: int(r.sdk["collateralUsd"]),
    )


@pytest.mark.parametrize(("side", "collateral"), _categories())
def test_leverage(rows: list[Row], side: str, collateral: str) -> None:
    """margin.leverage (notional at the mark over remaining collateral, rounded up to 18
    places) against getLeverage given the same definition (basis points, truncated): the
    adapter's value truncated to basis points must equal the SDK's, or exceed it by one where
    its own rounding up crossed a basis point. GMX's displayed leverage (sizeInUsd over
    collateral + pnl - pending fees, without the closing fee and impact) is reported, not
    compared: it is another definition."""
    selected = _select(rows, side, collateral)
    failures = []
    ratios: list[Decimal] = []
    for r in selected:
        sdk = r.sdk_leverage_aligned
        if r.leverage is None or sdk is None:
            if (r.leverage is None) != (sdk is None):
                failures.append(f"case {r.case.id}: adapter {r.leverage}, SDK {sdk}")
            continue
        truncated = int(r.leverage * BPS)
        if not 0 <= truncated - sdk <= 1:
            failures.append(
                f"case {r.case.id}: adapter {r.leverage} ({truncated} bps), SDK {sdk} bps"
            )
        shown = r.sdk["leverageWithPnl"]
        if shown is not None and int(shown) > 0:
            ratios.append(r.leverage * BPS / Decimal(int(shown)))
    ratios.sort()
    quantiles = ", ".join(
        f"{name} {ratios[int(q * (len(ratios) - 1))]:.3f}"
        for name, q in (("median", 0.5), ("90th percentile", 0.9), ("largest", 1.0))
    )
    _record(
        f"leverage, {side}, {collateral} collateral",
        [
            f"{len(selected)} cases; equal to getLeverage on the same definition to the basis "
            "point",
            f"the adapter's leverage over GMX's displayed one (leverageWithPnl): {quantiles}",
        ],
    )
    _report(failures, len(selected), f"leverage ({side}, {collateral} collateral)")


@pytest.mark.parametrize(("side", "collateral"), _categories())
def test_pnl(rows: list[Row], side: str, collateral: str) -> None:
    """gmx_math.position_pnl_usd at the conservative price equals getPositionPnlUsd where the
    pool does not cap the pnl; margin.pnl (at the mark, from the rounded entry price) equals
    it moved to the mark, less at most sizeInTokens / 1e18 + 1 units: the entry price carries
    18 digits beyond GMX's price precision, rounded against the trader."""
    selected = [r for r in _select(rows, side, collateral) if r.pnl_cap == 0]
    failures = []
    largest = 0
    for r in selected:
        c = r.case
        pick = c.index_price.min if c.is_long else c.index_price.max
        ours = position_pnl_usd(c.size_in_usd, c.size_in_tokens, pick, c.is_long)
        if ours != int(r.sdk["pnl"]):
            failures.append(f"case {c.id}: position_pnl_usd {ours}, SDK pnl {r.sdk['pnl']}")
        moved = int(r.sdk["pnl"]) + c.size_in_tokens * (c.index_price.mid - pick) * (
            1 if c.is_long else -1
        )
        largest = max(largest, abs(moved - r.pnl))
        if not 0 <= moved - r.pnl <= c.size_in_tokens // 10**18 + 1:
            failures.append(f"case {c.id}: margin.pnl {r.pnl}, SDK pnl at the mark {moved}")
    _record(
        f"pnl, {side}, {collateral} collateral",
        [
            f"{len(selected)} uncapped cases; position_pnl_usd equal; margin.pnl at most {largest} "
            "units (1e-30 USD) below the SDK's pnl at the mark"
        ],
    )
    _report(failures, len(selected), f"pnl ({side}, {collateral} collateral)")


@pytest.mark.parametrize("quantity", ["liquidation-price", "net-value"])
def test_reader_capped_impact(rows: list[Row], quantity: str) -> None:
    """Where Reader's cap on totalImpactUsd is above the liquidation test's floor, the
    adapter's remaining collateral should still be GMX's: the liquidation price against
    getLiquidationPrice (which counts the impact the way the contract's test does), and
    equity against the net value with the impact the contract's test counts."""
    selected = [r for r in rows if r.reader_capped_impact and not r.collateral_is_index]
    assert selected
    if quantity == "liquidation-price":
        stats = _compare_liquidation(
            selected, lambda r: r.liquidation_price, "liquidationPriceRaisedFactor"
        )
        _record("liquidation price where the Reader capped the impact", _liquidation_lines(stats))
        _report(
            stats.failures, stats.compared, "liquidation price where the Reader capped the impact"
        )
        return
    failures = []
    for r in selected:
        uncapped = r.info.total_impact_usd - int(r.sdk["priceImpactDiffUsd"])
        counted = capped_price_impact(
            uncapped, r.case.size_in_usd, r.case.factors["maxPositionImpactFactorForLiquidations"]
        )
        expected = int(r.sdk["netValue"]) - r.info.total_impact_usd + counted + r.fee_truncation
        if not 0 <= expected - r.equity <= 1:
            failures.append(
                f"case {r.case.id}: equity {r.equity}, GMX's remaining collateral {expected}"
            )
    _report(failures, len(selected), "equity where the Reader capped the impact")


def test_collateral_factor_with_many_digits(
    sdk_results: list[tuple[Case, Mapping[str, Any]]],
) -> None:
    """Positions whose market's collateral factors have 28 significant digits: the adapter's
    liquidation price must still be GMX's, as for the usual few-digit factors."""
    variants = [(c, r) for c, r in sdk_results if c.id >= MANY_DIGITS_ID]
    assert len(variants) >= 20
    selected = [evaluate(c, r) for c, r in variants]
    stats = _compare_liquidation(
        selected, lambda r: r.liquidation_price, "liquidationPriceRaisedFactor"
    )
    _report(stats.failures, stats.compared, "liquidation price with many-digit collateral factors")
