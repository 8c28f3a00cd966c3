"""Gains Network gTrade's liquidation rule in integers, as GNSMultiCollatDiamond computes it.

Precisions (Gains' own): prices `PRICE_PRECISION` (1e10), leverage `LEVERAGE_PRECISION` (1e3),
percentages `...P` in 1e10 per cent (`PERCENT` = 1e12 is 100%), collateral amounts in the
collateral token's smallest unit, collateral USD prices 1e8, the fee group's minimum position
size in USD at 1e3, the counter-trade fee multiplier at 1e3, the partial close multiplier at
1e18.

The rule (`liquidation_price`): a trade is liquidated when the pair price reaches

    openPrice -/+ openPrice * (collateral * liqThresholdP - fees) / (collateral * leverage)
              +/- openPrice * closingSpreadP          (long: minus, plus; short: plus, minus)

where `fees` = the closing fee on the position size (`closing_fee`) + (pending holding fees -
realized pnl) * partialCloseMultiplier + additional fees, `liqThresholdP` runs linearly with
the leverage between the trade's liquidation parameters (`liq_threshold_p`), and the closing
spread is half the pair spread capped at maxLiqSpreadP (`closing_spread_p`, only for trades of
contracts v9.2 and later whose parameters set a maximum). Divisions truncate toward zero, as
Solidity's do; a result at or below zero is zero. `tests/conformance/` holds this to the
Gains SDK's floating-point liquidation math, and to the test deployment's
getTradeLiquidationPrice exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "LEGACY_LIQ_THRESHOLD_P",
    "LEVERAGE_PRECISION",
    "MULTIPLIER_PRECISION",
    "PERCENT",
    "PRICE_PRECISION",
    "CancelReason",
    "ContractsVersion",
    "LiquidationParams",
    "PendingOrderType",
    "closing_fee",
    "closing_spread_p",
    "liq_threshold_p",
    "liquidation_price",
    "position_size",
    "tdiv",
]

PRICE_PRECISION = 10**10
LEVERAGE_PRECISION = 10**3
PERCENT = 100 * 10**10
MULTIPLIER_PRECISION = 10**18
LEGACY_LIQ_THRESHOLD_P = 90 * 10**10
"""The threshold of trades whose liquidation parameters are unset (90%)."""


class PendingOrderType(IntEnum):
    """ITradingStorage.PendingOrderType."""

    MARKET_OPEN = 0
    MARKET_CLOSE = 1
    LIMIT_OPEN = 2
    STOP_OPEN = 3
    TP_CLOSE = 4
    SL_CLOSE = 5
    LIQ_CLOSE = 6
    UPDATE_LEVERAGE = 7
    MARKET_PARTIAL_OPEN = 8
    MARKET_PARTIAL_CLOSE = 9


class CancelReason(IntEnum):
    """ITradingCallbacks.CancelReason."""

    NONE = 0
    PAUSED = 1
    MARKET_CLOSED = 2
    SLIPPAGE = 3
    TP_REACHED = 4
    SL_REACHED = 5
    EXPOSURE_LIMITS = 6
    PRICE_IMPACT = 7
    MAX_LEVERAGE = 8
    NO_TRADE = 9
    WRONG_TRADE = 10
    NOT_HIT = 11
    LIQ_REACHED = 12
    COUNTER_TRADE_CANCELED = 13


class ContractsVersion(IntEnum):
    """ITradingStorage.ContractsVersion: the version a trade was opened under."""

    BEFORE_V9_2 = 0
    V9_2 = 1
    V10 = 2


@dataclass(frozen=True, slots=True)
class LiquidationParams:
    """IPairsStorage.GroupLiquidationParams (percentages 1e10 per cent, leverages 1e3)."""

    max_liq_spread_p: int
    start_liq_threshold_p: int
    end_liq_threshold_p: int
    start_leverage: int
    end_leverage: int

    @property
    def unset(self) -> bool:
        """Gains falls back to the legacy 90% threshold when any parameter is zero."""
        return 0 in (
            self.max_liq_spread_p,
            self.start_liq_threshold_p,
            self.end_liq_threshold_p,
            self.start_leverage,
            self.end_leverage,
        )


def tdiv(numerator: int, denominator: int) -> int:
    """Integer division truncating toward zero (Solidity's `/` on signed integers)."""
    if denominator == 0:
        raise ZeroDivisionError("tdiv by zero")
    q = abs(numerator) // abs(denominator)
    return q if (numerator >= 0) == (denominator > 0) else -q


def position_size(collateral: int, leverage: int) -> int:
    """The position size in collateral units: collateral * leverage (1e3), rounded down."""
    return collateral * leverage // LEVERAGE_PRECISION


def liq_threshold_p(params: LiquidationParams, leverage: int) -> int:
    """The share of the collateral a trade may lose before liquidation (1e10 per cent): the
    start threshold up to and at the start leverage, the end threshold at and from the end
    leverage, linear (rounded down) between; 90% when the parameters are unset.

    At the ends the comparisons include equality, as Gains' getLiqPnlThresholdP does since
    the fix for its division by zero when startLeverage equals endLeverage (elsewhere the
    interpolation gives the end thresholds exactly, so only that case differs)."""
    if params.unset:
        return LEGACY_LIQ_THRESHOLD_P
    if leverage <= params.start_leverage:
        return params.start_liq_threshold_p
    if leverage >= params.end_leverage:
        return params.end_liq_threshold_p
    drop = (leverage - params.start_leverage) * (
        params.start_liq_threshold_p - params.end_liq_threshold_p
    )
    return params.start_liq_threshold_p - drop // (params.end_leverage - params.start_leverage)


def closing_fee(
    size: int,
    *,
    fee_p: int,
    min_position_size_usd: int,
    collateral_precision: int,
    collateral_price_usd: int,
    counter_trade_multiplier: int = LEVERAGE_PRECISION,
) -> int:
    """The fee on closing `size` (collateral units): `fee_p` (1e10 per cent) of the size times
    the counter-trade multiplier (1e3; 1000 for ordinary trades), and of at least the fee
    group's minimum position size (USD at 1e3) in collateral at `collateral_price_usd` (1e8)."""
    if collateral_price_usd <= 0:
        raise ValueError(f"collateral price must be positive, got {collateral_price_usd}")
    basis = size * counter_trade_multiplier // LEVERAGE_PRECISION
    minimum = min_position_size_usd * 10**5 * collateral_precision // collateral_price_usd
    return max(basis, minimum) * fee_p // PERCENT


def closing_spread_p(pair_spread_p: int, params: LiquidationParams) -> int:
    """The spread a liquidation closes at (1e10 per cent): half the pair's, at most
    maxLiqSpreadP."""
    return min(pair_spread_p // 2, params.max_liq_spread_p)


def liquidation_price(
    *,
    open_price: int,
    long: bool,
    collateral: int,
    leverage: int,
    closing_fee_collateral: int,
    holding_fees_collateral: int,
    realized_pnl_collateral: int,
    params: LiquidationParams,
    pair_spread_p: int,
    version: ContractsVersion = ContractsVersion.V10,
    partial_close_multiplier: int = MULTIPLIER_PRECISION,
    additional_fee_collateral: int = 0,
) -> int:
    """Gains' liquidation price (1e10) of a trade; see the module's docstring.

    `holding_fees_collateral` is getTradePendingHoldingFeesCollateral's totalFeeCollateral
    (signed: funding can be income), `realized_pnl_collateral` the trade's realized pnl less
    its realized trading fees (TradeFeesData). ValueError for a zero collateral, leverage or
    open price."""
    if collateral <= 0 or leverage <= 0 or open_price <= 0:
        raise ValueError(
            f"liquidation price: collateral {collateral}, leverage {leverage} and open price "
            f"{open_price} must be positive"
        )
    fees = (
        closing_fee_collateral
        + tdiv(
            (holding_fees_collateral - realized_pnl_collateral) * partial_close_multiplier,
            MULTIPLIER_PRECISION,
        )
        + additional_fee_collateral
    )
    threshold = liq_threshold_p(params, leverage)
    liq_negative_pnl = collateral * threshold // PERCENT
    distance = tdiv(
        open_price * (liq_negative_pnl - fees) * LEVERAGE_PRECISION, collateral * leverage
    )
    if version >= ContractsVersion.V9_2 and params.max_liq_spread_p > 0:
        distance -= open_price * closing_spread_p(pair_spread_p, params) // PERCENT
    price = open_price - distance if long else open_price + distance
    return max(price, 0)
