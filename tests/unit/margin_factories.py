"""Builders for markets, positions and snapshots in unit tests (human values in, raw out)."""

from __future__ import annotations

from decimal import Decimal

from keeper.model import (
    Basis,
    CloseQuote,
    CrossAccount,
    MarginMode,
    Market,
    Position,
    Side,
    Snapshot,
    Strictness,
    Token,
    Wallet,
)
from keeper.units import Price, TokenAmount, Usd

USDC = Token("0xUSDC", "USDC", 6)
WETH = Token("0xWETH", "WETH", 18)
TOK = Token("0xTOK", "TOK", 18)
ETH_NATIVE = Token("native", "ETH", 18)

REF = "refex"
GMX = "gmx"


def D(text: str | int) -> Decimal:  # noqa: N802 - reads like a literal
    return Decimal(text)


def ref_market(
    mark: str = "2.5",
    *,
    m: str = "0",
    f: str = "0",
    basis: Basis = Basis.MARK,
    market_id: str = "TOK-USD",
    liq_fee: str = "0",
    impact: str | None = None,
    funding_long: str = "0",
    funding_short: str = "0",
    floor: str | None = None,
) -> Market:
    """A market of our reference exchange: USD at 6 decimals, prices and sizes at 18."""
    return Market(
        venue=REF,
        market_id=market_id,
        index_token=TOK,
        usd_decimals=6,
        mark_price=Price.from_value_exact(mark, 18),
        maintenance_rate=D(m),
        basis=basis,
        strictness=Strictness.LT,
        min_collateral_usd=None if floor is None else Usd.from_value_exact(floor, 6),
        close_fee_rate=D(f),
        liquidation_fee_rate=D(liq_fee),
        funding_rate_long=D(funding_long),
        funding_rate_short=D(funding_short),
        close_quote=None if impact is None else CloseQuote(D(f), D(impact)),
    )


def ref_position(
    side: str = "long",
    size: str = "1000",
    entry: str = "2.5",
    collateral: str = "250",
    *,
    fees: str = "0",
    key: str = "p1",
    market_id: str = "TOK-USD",
    cross_account: str | None = None,
) -> Position:
    """A position on the reference exchange with USDC collateral at $1."""
    return Position(
        venue=REF,
        key=key,
        account="0xTrader",
        market_id=market_id,
        side=Side(side),
        size=TokenAmount.from_value_exact(size, 18),
        entry_price=Price.from_value_exact(entry, 18),
        collateral_token=USDC,
        collateral=TokenAmount.from_value_exact(collateral, 6),
        collateral_price=Price.from_value_exact(1, 18),
        collateral_usd=Usd.from_value_exact(collateral, 6),
        fees=Usd.from_value_exact(fees, 6),
        mode=MarginMode.CROSS if cross_account else MarginMode.ISOLATED,
        cross_account=cross_account,
    )


def ref_account(balance: str, keys: tuple[str, ...], key: str = "acct") -> CrossAccount:
    return CrossAccount(
        venue=REF,
        key=key,
        account="0xTrader",
        collateral_token=USDC,
        collateral=TokenAmount.from_value_exact(balance, 6),
        collateral_price=Price.from_value_exact(1, 18),
        collateral_usd=Usd.from_value_exact(balance, 6),
        position_keys=keys,
    )


def wallet(balance: str = "10000", token: Token = USDC) -> Wallet:
    return Wallet(
        address="0xKeeper",
        token=token,
        balance=TokenAmount.from_value_exact(balance, token.decimals),
        native_balance=TokenAmount.from_value_exact("1", 18),
    )


def snapshot(
    markets: tuple[Market, ...],
    positions: tuple[Position, ...],
    *,
    accounts: tuple[CrossAccount, ...] = (),
    balance: str = "10000",
    block: int = 1000,
) -> Snapshot:
    return Snapshot(
        block_number=block,
        block_time=1_700_000_000 + block,
        wallet=wallet(balance),
        markets=markets,
        positions=positions,
        accounts=accounts,
    )


def usdc(amount: str) -> TokenAmount:
    return TokenAmount.from_value_exact(amount, 6)
