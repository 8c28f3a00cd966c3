"""GMX v2 arithmetic as pure functions: DataStore keys, the liquidation test, execution fees.

Everything here mirrors gmx-synthetics (the commit named in abis/gmx/README.md) and does
no I/O, so it is unit-tested on its own. Values are GMX's raw integers: USD and factors at 1e30
(FLOAT_PRECISION), token amounts in the token's smallest unit, prices in USD (1e30) per smallest
unit of the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from enum import IntEnum

from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak

from keeper.units import CONTEXT

__all__ = [
    "FLOAT_PRECISION",
    "GasParams",
    "LiquidationCheck",
    "OrderType",
    "apply_factor",
    "data_key",
    "estimate_execution_gas_limit",
    "execution_fee",
    "factor",
    "liquidation_check",
    "min_execution_fee",
    "name_key",
    "position_key",
    "position_pnl_usd",
]

FLOAT_PRECISION = 10**30


class OrderType(IntEnum):
    """Order.OrderType, in GMX's declaration order (the ABI encodes the index)."""

    MARKET_SWAP = 0
    LIMIT_SWAP = 1
    MARKET_INCREASE = 2
    LIMIT_INCREASE = 3
    MARKET_DECREASE = 4
    LIMIT_DECREASE = 5
    STOP_LOSS_DECREASE = 6
    LIQUIDATION = 7
    STOP_INCREASE = 8

    @property
    def increase(self) -> bool:
        return self in (
            OrderType.MARKET_INCREASE,
            OrderType.LIMIT_INCREASE,
            OrderType.STOP_INCREASE,
        )


# --- DataStore keys (Keys.sol: keccak256(abi.encode(...))) -----------------------------------


def name_key(name: str) -> bytes:
    """keccak256(abi.encode(name)): a global DataStore key such as MIN_COLLATERAL_USD."""
    return keccak(abi_encode(["string"], [name]))


def data_key(name: str, *args: tuple[str, object]) -> bytes:
    """keccak256(abi.encode(name_key(name), args...)): a keyed DataStore key.

    `args` are (abi type, value) pairs, e.g. `data_key("MIN_COLLATERAL_FACTOR", ("address", m))`.
    (Keys.increaseOrderGasLimitKey() and friends are plain `name_key`s.)
    """
    types = ["bytes32", *(t for t, _ in args)]
    values = [name_key(name), *(v for _, v in args)]
    return keccak(abi_encode(types, values))


def position_key(account: str, market: str, collateral_token: str, is_long: bool) -> bytes:
    """PositionUtils.getPositionKey: keccak256(abi.encode(account, market, collateral, isLong))."""
    return keccak(
        abi_encode(
            ["address", "address", "address", "bool"], [account, market, collateral_token, is_long]
        )
    )


# --- precision -------------------------------------------------------------------------------


def apply_factor(value: int, factor_raw: int) -> int:
    """Precision.applyFactor: value * factor / 1e30, rounded toward zero (GMX's mulDiv)."""
    product = value * factor_raw
    quotient = abs(product) // FLOAT_PRECISION
    return quotient if product >= 0 else -quotient


def factor(raw: int) -> Decimal:
    """A 1e30 factor as an exact Decimal fraction."""
    return Decimal(raw).scaleb(-30, CONTEXT)


def position_pnl_usd(size_in_usd: int, size_in_tokens: int, price: int, is_long: bool) -> int:
    """The position's pnl at `price` (1e30 per token unit): value minus cost (long), or the
    opposite (short). GMX prices a long's pnl at the min price and a short's at the max."""
    value = size_in_tokens * price
    return value - size_in_usd if is_long else size_in_usd - value


# --- the liquidation test --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiquidationCheck:
    """PositionUtils.isPositionLiquidatable's answer: the flag, its reason ("" when healthy),
    and the figures it compared (USD at 1e30)."""

    liquidatable: bool
    reason: str
    remaining_collateral_usd: int
    min_collateral_usd: int
    min_collateral_usd_for_leverage: int
    capped_price_impact_usd: int


def capped_price_impact(
    price_impact_usd: int, size_in_usd: int, max_impact_factor_for_liquidations: int
) -> int:
    """The price impact GMX counts in the liquidation test: a gain counts as 0, a cost is
    capped at size * MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS."""
    if price_impact_usd >= 0:
        return 0
    floor = -apply_factor(size_in_usd, max_impact_factor_for_liquidations)
    return max(price_impact_usd, floor)


def liquidation_check(
    *,
    size_in_usd: int,
    collateral_usd: int,
    pnl_usd: int,
    price_impact_usd: int,
    total_cost_usd: int,
    max_impact_factor_for_liquidations: int,
    min_collateral_factor: int,
    min_collateral_usd: int,
    validate_min_collateral_usd: bool = True,
) -> LiquidationCheck:
    """GMX's liquidation test, in its order:

    remaining = collateral (at the collateral's min price) + pnl (capped, conservative side)
                + capped price impact of closing - all costs (position fee, borrowing, funding);
    liquidatable if remaining < MIN_COLLATERAL_USD (when validated), if remaining <= 0, or if
    remaining < size * min collateral factor ("min collateral for leverage").
    """
    impact = capped_price_impact(price_impact_usd, size_in_usd, max_impact_factor_for_liquidations)
    remaining = collateral_usd + pnl_usd + impact - total_cost_usd
    for_leverage = apply_factor(size_in_usd, min_collateral_factor)

    def result(flag: bool, reason: str) -> LiquidationCheck:
        return LiquidationCheck(flag, reason, remaining, min_collateral_usd, for_leverage, impact)

    if validate_min_collateral_usd and remaining < min_collateral_usd:
        return result(True, "min collateral")
    if remaining <= 0:
        return result(True, "< 0")
    if remaining < for_leverage:
        return result(True, "min collateral for leverage")
    return result(False, "")


# --- execution fees --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GasParams:
    """The DataStore's execution-fee estimation values (GasUtils.adjustGasLimitForEstimate)."""

    base_amount: int  # ESTIMATED_GAS_FEE_BASE_AMOUNT_V2_1
    per_oracle_price: int  # ESTIMATED_GAS_FEE_PER_ORACLE_PRICE
    multiplier_factor: int  # ESTIMATED_GAS_FEE_MULTIPLIER_FACTOR (1e30 = 1x)
    increase_order_gas_limit: int  # increaseOrderGasLimitKey()
    decrease_order_gas_limit: int  # decreaseOrderGasLimitKey()
    single_swap_gas_limit: int  # singleSwapGasLimitKey()


def estimate_execution_gas_limit(
    params: GasParams, order_type: OrderType, *, swaps: int = 0, callback_gas_limit: int = 0
) -> int:
    """The gas limit GMX charges an order's execution fee for.

    estimateExecuteIncrease/DecreaseOrderGasLimit (order gas limit + swaps + callback), then
    adjustGasLimitForEstimate: base + per-oracle-price * (3 + swaps) + estimate * multiplier.
    """
    if order_type.increase:
        estimated = params.increase_order_gas_limit
    elif order_type in (
        OrderType.MARKET_DECREASE,
        OrderType.LIMIT_DECREASE,
        OrderType.STOP_LOSS_DECREASE,
    ):
        estimated = params.decrease_order_gas_limit
    else:
        raise ValueError(f"execution fee: order type {order_type.name} is not supported")
    estimated += params.single_swap_gas_limit * swaps + callback_gas_limit
    oracle_prices = 3 + swaps
    base = params.base_amount + params.per_oracle_price * oracle_prices
    return base + apply_factor(estimated, params.multiplier_factor)


def min_execution_fee(gas_limit: int, gas_price: int) -> int:
    """GasUtils.validateExecutionFee's minimum: gas limit * tx.gasprice."""
    return gas_limit * gas_price


def execution_fee(
    params: GasParams,
    order_type: OrderType,
    gas_price: int,
    *,
    margin: Decimal = Decimal("1.2"),
    swaps: int = 0,
    callback_gas_limit: int = 0,
) -> int:
    """The execution fee to send: GMX's minimum at `gas_price`, times `margin` (>= 1), rounded
    up. Pass the highest gas price the transaction may pay (its max fee per gas) so that
    InsufficientExecutionFee cannot happen."""
    if margin < 1:
        raise ValueError(f"execution fee margin must be >= 1, got {margin}")
    if gas_price < 0:
        raise ValueError("gas price must not be negative")
    limit = estimate_execution_gas_limit(
        params, order_type, swaps=swaps, callback_gas_limit=callback_gas_limit
    )
    minimum = Decimal(min_execution_fee(limit, gas_price))
    return int(CONTEXT.multiply(minimum, margin).to_integral_value(rounding=ROUND_CEILING))
