"""The `keeper` command: `calc` (the margin calculator), `positions` (read from the chain),
`run` (the keeper), `history` (the journal), `top-up | reduce | close | withdraw` (manual
actions through the keeper's journal), `config check`, `keystore create`, `delegate` and
`gmx subaccount` (the grants traders give the keeper's key), `stress` (a price path replayed
over the watched positions in simulation), and `devnet` and `demo` (a local chain to try it
on; the keeper through a price crash, with and without it).

`main(argv)` returns the exit status: 0 on success, 2 on bad input (argparse's convention,
with a message naming the flag).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from eth_utils.address import is_address, to_checksum_address

from keeper import journal_cmd, margin
from keeper.chain.jsonrpc import RpcError
from keeper.chain.multicall import MULTICALL3_ADDRESS
from keeper.chain.rpc import FailoverRpc
from keeper.client import Client
from keeper.config import Config, ConfigError, describe, load
from keeper.journal import JournalError, open_journal
from keeper.manual import ManualError
from keeper.model import (
    Basis,
    CrossAccount,
    MarginMode,
    Market,
    Position,
    Side,
    Snapshot,
    Token,
)
from keeper.runtime import (
    StartError,
    check_against_chain,
    connect_venue,
    rpc_for,
    run_keeper,
)
from keeper.signer import KeySource, Signer, SignerError, load_signer
from keeper.stress_snapshot import snapshot_to_json
from keeper.units import (
    Price,
    TokenAmount,
    Usd,
    div_ceil,
    div_floor,
    parse_decimal,
    quantize_ceil,
    quantize_floor,
)
from keeper.venues.base import ReadIssue, VenueError, Watch
from keeper.venues.reference import ReferenceVenue
from keeper.views import position_views

__all__ = ["main"]

CALC_DECIMALS = 18
"""Sizes, prices and USD amounts in `keeper calc` are exact to 18 decimal places."""

MAX_LEVERAGE = Decimal(1000)

_USD = Token("USD", "USD", CALC_DECIMALS)
_INDEX = Token("INDEX", "INDEX", CALC_DECIMALS)
_ONE = Price.from_value_exact(1, CALC_DECIMALS)

CALC_EPILOG = """\
Sizes are in tokens, prices in USD per token, amounts in USD, rates as fractions (0.005 is
0.5%), all exact to 18 decimal places. The mark defaults to the entry price; maintenance
rate, close fee and accrued fees default to 0. --fees are accrued funding and borrowing
(negative: income). Equity is collateral + pnl - fees - close fee on the notional at the mark.

--json prints one object; numbers are decimal strings, null where there is none:
  side, size, entry_price, mark_price        the inputs
  collateral                                 margin posted (given, or notional at entry / leverage)
  notional                                   size x mark
  leverage                                   notional / equity (null when equity <= 0)
  initial_margin                             notional at entry / the leverage asked for (or
                                             posted collateral when --collateral is given)
  equity, margin_ratio                       equity, equity / notional
  maintenance_rate, basis, maintenance_margin
  pnl, return_on_margin                      pnl at the mark, pnl / collateral
  liquidation_price, distance_to_liquidation signed: (mark - liq) / mark for a long,
                                             (liq - mark) / mark for a short; negative: past it
  liquidatable                               true or false

keeper calc cross --balance B --position long:SIZE:ENTRY[:MARK] ... prints, with --json:
  balance, equity, total_notional, margin_ratio, maintenance_margin, liquidatable, and
  positions: a list of {side, size, entry_price, mark_price, notional, pnl,
  maintenance_margin, liquidation_price, distance_to_liquidation}, where the liquidation
  price is the mark at which the account becomes liquidatable if that position alone moves.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors exit 2 through `main` rather than from deep inside."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level parser, and the `calc` and `calc cross` parsers (for their errors)."""
    parser = _Parser(prog="keeper", description="Protect leveraged perpetual positions.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    calc = commands.add_parser(
        "calc",
        help="margin calculator: notional, leverage, pnl, liquidation price",
        description="Margin calculator for one isolated position (or `calc cross`).",
        epilog=CALC_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    calc.add_argument("--side", choices=["long", "short"])
    calc.add_argument("--size", metavar="TOKENS")
    calc.add_argument("--entry", metavar="PRICE")
    calc.add_argument("--collateral", metavar="AMOUNT")
    calc.add_argument("--leverage", metavar="X")
    calc.add_argument("--price", metavar="MARK", help="mark price (default: the entry)")
    calc.add_argument("--fees", metavar="AMOUNT", help="accrued fees (negative: income)")
    _common(calc)

    cross_ = calc.add_subparsers(dest="calc_mode", parser_class=_Parser)
    cross = cross_.add_parser(
        "cross",
        help="a cross-margin account",
        description="Margin calculator for a cross-margin account.",
        epilog=CALC_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cross.add_argument("--balance", metavar="AMOUNT", required=True)
    cross.add_argument(
        "--position",
        metavar="SIDE:SIZE:ENTRY[:MARK]",
        action="append",
        required=True,
        help="long:SIZE:ENTRY[:MARK] or short:...; repeat for each position",
    )
    _common(cross)
    _positions_parser(commands)
    _operator_parsers(commands)
    journal_cmd.add_parsers(commands)
    _demo_parsers(commands)
    _delegate_parsers(commands)
    _stress_parser(commands)
    return parser, calc, cross


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--maintenance", metavar="RATE")
    parser.add_argument("--basis", choices=["mark", "entry"], default="mark")
    parser.add_argument("--close-fee", metavar="RATE", default="0")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


# --- parsing inputs ----------------------------------------------------------------------------


def _number(parser: argparse.ArgumentParser, flag: str, text: str) -> Decimal:
    try:
        value = parse_decimal(text, name=flag)
    except (TypeError, ValueError):
        parser.error(f"{flag}: not a number: {text!r}")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -CALC_DECIMALS:
        parser.error(f"{flag}: more than {CALC_DECIMALS} decimal places: {text}")
    return value


def _positive(parser: argparse.ArgumentParser, flag: str, text: str) -> Decimal:
    value = _number(parser, flag, text)
    if value <= 0:
        parser.error(f"{flag}: must be greater than zero, got {text}")
    return value


def _rate(parser: argparse.ArgumentParser, flag: str, text: str) -> Decimal:
    value = _number(parser, flag, text)
    if not Decimal(0) <= value < Decimal(1):
        parser.error(f"{flag}: must be in [0, 1), got {text}")
    return value


def _market(parser: argparse.ArgumentParser, args: argparse.Namespace, mark: Decimal) -> Market:
    return Market(
        venue="calc",
        market_id="calc",
        index_token=_INDEX,
        usd_decimals=CALC_DECIMALS,
        mark_price=Price.from_value_exact(mark, CALC_DECIMALS),
        maintenance_rate=_rate(parser, "--maintenance", args.maintenance or "0"),
        basis=Basis(args.basis),
        close_fee_rate=_rate(parser, "--close-fee", args.close_fee),
    )


def _position(
    market: Market, side: Side, *, size: Decimal, entry: Decimal, collateral: Decimal, fees: Decimal
) -> Position:
    """A position in `market`; in cross margin (account "calc") unless market_id is "calc"."""
    cross = market.market_id != "calc"
    return Position(
        venue="calc",
        key=market.market_id,
        account="calc",
        market_id=market.market_id,
        side=side,
        size=TokenAmount.from_value_exact(size, CALC_DECIMALS),
        entry_price=Price.from_value_exact(entry, CALC_DECIMALS),
        collateral_token=_USD,
        collateral=TokenAmount.from_value_exact(collateral, CALC_DECIMALS),
        collateral_price=_ONE,
        collateral_usd=Usd.from_value_exact(collateral, CALC_DECIMALS),
        fees=Usd.from_value_exact(fees, CALC_DECIMALS),
        mode=MarginMode.CROSS if cross else MarginMode.ISOLATED,
        cross_account="calc" if cross else None,
    )


# --- output ------------------------------------------------------------------------------------


def _s(value: Decimal | Usd | Price | None) -> str | None:
    if value is None:
        return None
    number = value if isinstance(value, Decimal) else value.value
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _show(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


NO_MAINTENANCE = "(no --maintenance rate given: liquidation at zero equity)"


def _emit(
    data: dict[str, Any],
    as_json: bool,
    labels: Sequence[tuple[str, str]],
    *,
    maintenance_given: bool = True,
) -> None:
    if as_json:
        print(json.dumps(data))
        return
    width = max(len(label) for _, label in labels)
    for key, label in labels:
        note = f" {NO_MAINTENANCE}" if key == "maintenance_margin" and not maintenance_given else ""
        print(f"{label:<{width}}  {_show(data[key])}{note}")


def _calc(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    for flag, value in (("--side", args.side), ("--size", args.size), ("--entry", args.entry)):
        if value is None:
            parser.error(f"{flag} is required (or use `keeper calc cross`)")
    if (args.collateral is None) == (args.leverage is None):
        parser.error("give exactly one of --collateral and --leverage")
    size = _positive(parser, "--size", args.size)
    entry = _positive(parser, "--entry", args.entry)
    mark = entry if args.price is None else _positive(parser, "--price", args.price)
    fees = Decimal(0) if args.fees is None else _number(parser, "--fees", args.fees)
    entry_notional = size * entry
    if args.leverage is not None:
        lev = _positive(parser, "--leverage", args.leverage)
        if lev > MAX_LEVERAGE:
            parser.error(f"--leverage: at most {MAX_LEVERAGE}x, got {args.leverage}")
        collateral = quantize_ceil(div_ceil(entry_notional, lev), CALC_DECIMALS)
    else:
        collateral = _positive(parser, "--collateral", args.collateral)
    market = _market(parser, args, mark)
    position = _position(
        market, Side(args.side), size=size, entry=entry, collateral=collateral, fees=fees
    )
    pnl = margin.pnl(position, market)
    data: dict[str, Any] = {
        "side": args.side,
        "size": _s(size),
        "entry_price": _s(entry),
        "mark_price": _s(mark),
        "collateral": _s(collateral),
        "notional": _s(margin.notional(position, market)),
        "leverage": _s(margin.leverage(position, market)),
        "initial_margin": _s(collateral),
        "equity": _s(margin.equity(position, market)),
        "margin_ratio": _s(margin.margin_ratio(position, market)),
        "maintenance_rate": _s(market.maintenance_rate),
        "basis": args.basis,
        "maintenance_margin": _s(margin.maintenance_margin(position, market)),
        "pnl": _s(pnl),
        "return_on_margin": _s(
            quantize_floor(div_floor(pnl.value, collateral), margin.RATIO_PLACES)
        ),
        "liquidation_price": _s(margin.liquidation_price(position, market)),
        "distance_to_liquidation": _s(margin.distance_to_liquidation(position, market)),
        "liquidatable": margin.is_liquidatable(position, market),
    }
    _emit(data, args.json, _ISOLATED_LABELS, maintenance_given=args.maintenance is not None)
    return 0


_ISOLATED_LABELS = (
    ("side", "side"),
    ("size", "size"),
    ("entry_price", "entry price"),
    ("mark_price", "mark price"),
    ("collateral", "collateral"),
    ("notional", "notional"),
    ("leverage", "leverage"),
    ("initial_margin", "initial margin"),
    ("equity", "equity"),
    ("margin_ratio", "margin ratio"),
    ("maintenance_margin", "maintenance margin"),
    ("pnl", "pnl"),
    ("return_on_margin", "return on margin"),
    ("liquidation_price", "liquidation price"),
    ("distance_to_liquidation", "distance to liquidation"),
    ("liquidatable", "liquidatable"),
)


def _calc_cross(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    balance = _number(parser, "--balance", args.balance)
    if balance < 0:
        parser.error(f"--balance: must not be negative, got {args.balance}")
    base = _market(parser, args, Decimal(1))
    legs: list[margin.Leg] = []
    for i, spec in enumerate(args.position):
        parts = spec.split(":")
        if len(parts) not in (3, 4) or parts[0] not in ("long", "short"):
            parser.error(f"--position: expected long|short:SIZE:ENTRY[:MARK], got {spec!r}")
        size = _positive(parser, "--position", parts[1])
        entry = _positive(parser, "--position", parts[2])
        mark = entry if len(parts) == 3 else _positive(parser, "--position", parts[3])
        market = replace(
            base, market_id=f"p{i}", mark_price=Price.from_value_exact(mark, CALC_DECIMALS)
        )
        position = _position(
            market, Side(parts[0]), size=size, entry=entry, collateral=Decimal(0), fees=Decimal(0)
        )
        legs.append((position, market))
    account = CrossAccount(
        venue="calc",
        key="calc",
        account="calc",
        collateral_token=_USD,
        collateral=TokenAmount.from_value_exact(balance, CALC_DECIMALS),
        collateral_price=_ONE,
        collateral_usd=Usd.from_value_exact(balance, CALC_DECIMALS),
        position_keys=tuple(p.key for p, _ in legs),
    )
    positions = [
        {
            "side": p.side.value,
            "size": _s(p.size.value),
            "entry_price": _s(p.entry_price),
            "mark_price": _s(m.mark_price),
            "notional": _s(margin.notional(p, m)),
            "pnl": _s(margin.pnl(p, m)),
            "maintenance_margin": _s(margin.maintenance_margin(p, m)),
            "liquidation_price": _s(margin.cross_liquidation_price(account, legs, p.key)),
            "distance_to_liquidation": _s(
                margin.cross_distance_to_liquidation(account, legs, p.key)
            ),
        }
        for p, m in legs
    ]
    data: dict[str, Any] = {
        "balance": _s(balance),
        "equity": _s(margin.cross_equity(account, legs)),
        "total_notional": _s(margin.cross_notional(account, legs)),
        "margin_ratio": _s(margin.cross_margin_ratio(account, legs)),
        "maintenance_margin": _s(margin.cross_maintenance_margin(account, legs)),
        "liquidatable": margin.cross_is_liquidatable(account, legs),
        "positions": positions,
    }
    if args.json:
        print(json.dumps(data))
        return 0
    _emit(data, False, _CROSS_LABELS, maintenance_given=args.maintenance is not None)
    for i, row in enumerate(positions):
        liq, dist = row["liquidation_price"], row["distance_to_liquidation"]
        print(
            f"position {i}: {row['side']} {row['size']} at {row['entry_price']}, mark "
            f"{row['mark_price']}: notional {row['notional']}, pnl {row['pnl']}, "
            f"liquidation price {liq or 'none'} (distance {dist or 'none'})"
        )
    return 0


_CROSS_LABELS = (
    ("balance", "balance"),
    ("equity", "equity"),
    ("total_notional", "total notional"),
    ("margin_ratio", "margin ratio"),
    ("maintenance_margin", "maintenance margin"),
    ("liquidatable", "liquidatable"),
)


# --- positions ---------------------------------------------------------------------------------

POSITIONS_EPILOG = """\
Reads every position of the given accounts at one block (the latest unless --block is given)
in a few batched calls, and prints one row per position: market, side, margin mode, size,
collateral, margin ratio, liquidation price, signed distance to liquidation (negative: past
it) and pnl at the mark; then each cross account with its balance, equity and margin ratio.
With --config, the config's venue (the reference exchange or GMX v2) and accounts; without
it, the reference exchange named by --rpc, --exchange and --lens. The table shows ratios in
percent, USD in cents and liquidation prices at the precision of the market's price (rounded
toward the mark); --json keeps full precision.

--lens is the PerpLens deployed for the exchange; --multicall defaults to the chain-wide
Multicall3 (0xcA11bde05977b3631167028862bE2a173976CA11). --rpc may be repeated: the endpoints
fail over to each other.

--json prints one object; numbers are decimal strings (ratios as fractions), null where there
is none: block, block_time, positions (account, key, market_id, market, side, mode, size,
entry_price, mark_price, collateral, funding_fee, notional, pnl, equity, margin_ratio,
maintenance_margin, liquidation_price, distance_to_liquidation, liquidatable; for cross
positions collateral is null and the figures are the account's), cross_accounts (account,
balance, equity, total_notional, margin_ratio, maintenance_margin, liquidatable,
position_keys) and issues (kind, key, message) for what could not be read.
Exit status: 0, 2 on bad input, 1 when the chain could not be read.
"""

_ADDRESS_CHARS = frozenset("0123456789abcdefABCDEF")


def _positions_parser(commands: Any) -> None:
    p = commands.add_parser(
        "positions",
        help="the watched accounts' positions, margin ratios and liquidation prices",
        description="Positions and cross accounts of the given accounts, read from the chain.",
        epilog=POSITIONS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="read the rest from a keeper config")
    p.add_argument("--rpc", metavar="URL", action="append", help="repeatable")
    p.add_argument("--exchange", metavar="ADDRESS", help="the PerpExchange")
    p.add_argument("--lens", metavar="ADDRESS", help="its PerpLens")
    p.add_argument("--multicall", metavar="ADDRESS", help="Multicall3 (default: canonical)")
    p.add_argument("--account", metavar="ADDRESS", action="append")
    p.add_argument("--block", metavar="N", help="block number to read at (default: latest)")
    p.add_argument("--timeout", metavar="SECONDS", default="10", help="per request")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(parser=p)


def _address(parser: argparse.ArgumentParser, flag: str, text: str) -> str:
    body = text[2:] if text[:2] in ("0x", "0X") else ""
    if len(body) != 40 or not set(body) <= _ADDRESS_CHARS:
        parser.error(f"{flag}: not an address (0x and 40 hex digits): {text!r}")
    return "0x" + body


def _url(parser: argparse.ArgumentParser, text: str) -> str:
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port
    except ValueError:
        ok = False
    if not ok:
        parser.error(f"--rpc: not an http(s) URL: {text!r}")
    return text


def _positions_command(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if args.config:
        loaded = _load_config(args.config)
        if loaded is None:
            return 2
        if loaded.venue.kind != "reference":
            return _positions_of_config(loaded, args)
        args.rpc = args.rpc or list(loaded.chain.rpc)
        args.exchange = args.exchange or loaded.venue.addresses["exchange"]
        args.lens = args.lens or loaded.venue.addresses["lens"]
        args.multicall = args.multicall or loaded.chain.multicall
        args.account = args.account or list(loaded.accounts)
    for flag in ("rpc", "exchange", "lens", "account"):
        if not getattr(args, flag):
            parser.error(f"--{flag} is required (or --config FILE)")
    urls = [_url(parser, u) for u in args.rpc]
    exchange = _address(parser, "--exchange", args.exchange)
    lens = _address(parser, "--lens", args.lens)
    multicall = (
        MULTICALL3_ADDRESS
        if args.multicall is None
        else _address(parser, "--multicall", args.multicall)
    )
    accounts = [_address(parser, "--account", a) for a in args.account]
    if len({a.lower() for a in accounts}) != len(accounts):
        parser.error("--account: an account is given twice")
    block: int | None = None
    if args.block is not None:
        if not args.block.isdigit():
            parser.error(f"--block: not a block number: {args.block!r}")
        block = int(args.block)
    timeout = _positive(parser, "--timeout", args.timeout)
    try:
        data = asyncio.run(
            _read_positions(
                urls,
                exchange=exchange,
                lens=lens,
                multicall=multicall,
                accounts=accounts,
                block=block,
                timeout=float(timeout),
            )
        )
    except (RpcError, VenueError) as exc:
        print(f"keeper positions: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data))
    else:
        _print_positions(data)
    return 0


def _positions_of_config(config: Config, args: argparse.Namespace) -> int:
    """`positions --config` for any venue the runtime can connect (GMX included)."""
    block: int | None = None
    if args.block is not None:
        if not args.block.isdigit():
            args.parser.error(f"--block: not a block number: {args.block!r}")
        block = int(args.block)
    accounts = tuple(args.account or config.accounts)

    async def read() -> dict[str, Any]:
        async with rpc_for(config) as rpc:
            venue = await connect_venue(config, rpc)
            got = await venue.read(Watch(accounts), block=block)
        snap = got.snapshot

        def symbol(market_id: str) -> str:
            return snap.market(venue.name, market_id).index_token.symbol

        return _positions_data(snap, symbol, got.issues)

    try:
        data = asyncio.run(read())
    except (RpcError, VenueError, StartError) as exc:
        print(f"keeper positions: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data))
    else:
        _print_positions(data)
    return 0


async def _read_positions(
    urls: list[str],
    *,
    exchange: str,
    lens: str,
    multicall: str,
    accounts: list[str],
    block: int | None,
    timeout: float,
) -> dict[str, Any]:
    async with FailoverRpc(urls, timeout=timeout) as rpc:
        try:
            venue = await ReferenceVenue.connect(
                rpc, exchange=exchange, lens=lens, multicall=multicall
            )
        except VenueError as exc:
            hint = "" if "Multicall3" not in str(exc) else " (pass --multicall)"
            raise VenueError(f"{exc}{hint}") from None
        read = await venue.read(Watch(tuple(accounts)), block=block)
    return _positions_data(read.snapshot, venue.symbol, read.issues)


def _positions_data(
    snapshot: Snapshot, symbol: Callable[[str], str], issues: Sequence[ReadIssue]
) -> dict[str, Any]:
    legs_of = {
        a.key: [(p, snapshot.market_of(p)) for p in snapshot.positions_of(a)]
        for a in snapshot.accounts
    }
    rows: list[dict[str, Any]] = []
    for v in position_views(snapshot):
        p = v.position
        cross = p.mode is MarginMode.CROSS
        rows.append(
            {
                "account": p.account,
                "key": p.key,
                "market_id": p.market_id,
                "market": symbol(p.market_id),
                "side": p.side.value,
                "mode": p.mode.value,
                "size": _s(p.size.value),
                "entry_price": _s(p.entry_price),
                "mark_price": _s(v.market.mark_price),
                "collateral": None if cross else _s(p.collateral_usd),
                "funding_fee": _s(p.fees),
                "notional": _s(v.notional),
                "pnl": _s(v.pnl),
                "equity": _s(v.equity),
                "margin_ratio": _s(v.margin_ratio),
                "maintenance_margin": _s(v.maintenance_margin),
                "liquidation_price": _s(v.liquidation_price),
                "distance_to_liquidation": _s(v.distance_to_liquidation),
                "liquidatable": v.liquidatable,
            }
        )
    cross_rows = [
        {
            "account": a.account,
            "balance": _s(a.collateral_usd),
            "equity": _s(margin.cross_equity(a, legs_of[a.key])),
            "total_notional": _s(margin.cross_notional(a, legs_of[a.key])),
            "margin_ratio": _s(margin.cross_margin_ratio(a, legs_of[a.key])),
            "maintenance_margin": _s(margin.cross_maintenance_margin(a, legs_of[a.key])),
            "liquidatable": margin.cross_is_liquidatable(a, legs_of[a.key]),
            "position_keys": list(a.position_keys),
        }
        for a in snapshot.accounts
    ]
    return {
        "block": snapshot.block_number,
        "block_time": snapshot.block_time,
        "positions": rows,
        "cross_accounts": cross_rows,
        "issues": [{"kind": i.kind, "key": i.key, "message": i.message} for i in issues],
        "snapshot": snapshot_to_json(snapshot),  # what `keeper stress --snapshot` replays
    }


def _percent(value: str | None) -> str:
    if value is None:
        return "-"
    return f"{quantize_floor(Decimal(value) * 100, 2)}%"


PRICE_DIGITS = 6  # significant digits of a price in the table, as the market's mark has them


def _price_text(value: str | None, mark: str, side: str) -> str:
    """A liquidation price at the precision of the market's mark price (six significant
    digits, at least two decimals), rounded toward the mark: up for a long, down for a short."""
    if value is None:
        return "none"
    places = max(2, PRICE_DIGITS - (Decimal(mark).adjusted() + 1))
    price = Decimal(value)
    rounded = quantize_ceil(price, places) if side == "long" else quantize_floor(price, places)
    return f"{rounded:f}"


def _usd_text(value: str | None) -> str:
    """A USD figure in cents, rounded down."""
    return "-" if value is None else f"{quantize_floor(Decimal(value), 2):f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _print_positions(data: dict[str, Any]) -> None:
    print(f"block {data['block']} (time {data['block_time']})")
    positions = data["positions"]
    if not positions:
        print("no open positions")
    else:
        _table(
            (
                "account",
                "market",
                "side",
                "mode",
                "size",
                "collateral",
                "margin ratio",
                "liq. price",
                "distance",
                "pnl",
            ),
            [
                (
                    r["account"],
                    r["market"],
                    r["side"],
                    r["mode"],
                    r["size"],
                    _usd_text(r["collateral"]),
                    _percent(r["margin_ratio"]),
                    _price_text(r["liquidation_price"], r["mark_price"], r["side"]),
                    _percent(r["distance_to_liquidation"]),
                    _usd_text(r["pnl"]),
                )
                for r in positions
            ],
        )
    if data["cross_accounts"]:
        print()
        _table(
            ("cross account", "balance", "equity", "margin ratio", "maintenance", "liquidatable"),
            [
                (
                    a["account"],
                    _usd_text(a["balance"]),
                    _usd_text(a["equity"]),
                    _percent(a["margin_ratio"]),
                    _usd_text(a["maintenance_margin"]),
                    _show(a["liquidatable"]),
                )
                for a in data["cross_accounts"]
            ],
        )
    for issue in data["issues"]:
        print(f"warning: {issue['message']}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the `keeper` command; returns the exit status (2: bad input)."""
    parser, calc, cross = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "positions":
            return _positions_command(args)
        if args.command in _OPERATOR_COMMANDS:
            return _OPERATOR_COMMANDS[args.command](args)
        if args.command in journal_cmd.COMMANDS:
            return journal_cmd.COMMANDS[args.command](args)
        if args.command == "calc":
            if args.calc_mode == "cross":
                return _calc_cross(cross, args)
            return _calc(calc, args)
        parser.error(f"unknown command {args.command}")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2


# -- operator commands: config check, run, history, manual actions --------------------------

RUN_EPILOG = """\
Signals: SIGINT/SIGTERM stop after the current block (exit 0); SIGUSR1 toggles a halt
(nothing is sent while halted; so does the config's halt_file while it exists).
Exit codes: 0 stopped cleanly, 1 could not start, 2 bad config or arguments, 3 fatal error.
"""


def _operator_parsers(commands: Any) -> None:
    config = commands.add_parser(
        "config", help="check a config file", description="Configuration tools."
    )
    config_sub = config.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    check = config_sub.add_parser(
        "check",
        help="report every problem in a config file",
        description="Validate a keeper config file (TOML plus KEEPER__ environment overrides); "
        "every problem is reported with its exact key.",
    )
    check.add_argument("file", metavar="FILE")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument(
        "--online",
        action="store_true",
        help="also connect to the chain as `keeper run` would (no key needed): chain id, the "
        "venue's contracts, the budget's token and its decimals, the watched positions",
    )
    check.set_defaults(parser=check)

    run = commands.add_parser(
        "run",
        help="run the keeper",
        description="Watch the configured accounts block by block and protect their positions.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", metavar="FILE", required=True)
    run.add_argument("--dry-run", action="store_true", help="decide and record, never sign or send")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--ticks", metavar="N", type=int, help="stop after N blocks (for scripts)")
    run.set_defaults(parser=run)

    history = commands.add_parser(
        "history",
        help="the journal: intents, transactions, outcomes",
        description="What the keeper (and manual commands) decided, sent and got, newest first.",
    )
    history.add_argument("--config", metavar="FILE", required=True)
    history.add_argument("--position", metavar="KEY", help="only this position (or account)")
    history.add_argument("--since", metavar="WHEN", help="ISO time, or an age like 2h, 3d, 30m")
    history.add_argument("--until", metavar="WHEN", help="ISO time, or an age")
    history.add_argument("--limit", type=int, default=50)
    history.add_argument("--json", action="store_true", help="print one JSON object")
    history.set_defaults(parser=history)

    for name, kind, what, arg in (
        ("top-up", "top_up", "add collateral to a position or cross account", "AMOUNT"),
        ("withdraw", "withdraw", "take collateral back from a position or account", "AMOUNT"),
        ("reduce", "reduce", "cut a position's size by SIZE index tokens", "SIZE"),
        ("close", "close", "close a whole position", None),
    ):
        sub = commands.add_parser(
            name,
            help=what,
            description=f"{what[0].upper()}{what[1:]}: simulated first, shown with its cost, sent "
            "after you confirm, through the keeper's journal (never racing a running keeper). "
            "POSITION is a key as `keeper positions` shows it, MARKET:SIDE of your account "
            "(e.g. ETH:long, or ETH:long:cross), or `cross` for your cross account.",
        )
        sub.add_argument("position", metavar="POSITION")
        if arg is not None:
            sub.add_argument("amount", metavar=arg)
        sub.add_argument("--config", metavar="FILE", required=True)
        sub.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        sub.add_argument("--json", action="store_true", help="print JSON objects")
        sub.add_argument(
            "--no-wait",
            action="store_true",
            help="on a venue that executes later (GMX), return once the order is mined instead "
            "of following it until it is executed, cancelled or expired",
        )
        sub.add_argument(
            "--wait-timeout",
            metavar="SECONDS",
            type=float,
            default=900.0,
            help="how long to follow a delayed order (default 900)",
        )
        sub.set_defaults(parser=sub, action_kind=kind)


def _load_config(path: str) -> Config | None:
    try:
        return load(path)
    except ConfigError as exc:
        print(f"keeper: {exc}", file=sys.stderr)
        return None


def _config_check(args: argparse.Namespace) -> int:
    notes: list[str] = []
    try:
        config = load(args.file)
        if args.online:
            notes = asyncio.run(check_against_chain(config))
    except ConfigError as exc:
        if args.json:
            problems = [{"key": p.key, "message": p.message} for p in exc.problems]
            print(json.dumps({"file": args.file, "ok": False, "problems": problems}))
        else:
            print(str(exc), file=sys.stderr)
        return 1
    except (StartError, RpcError, VenueError) as exc:
        if args.json:
            problem = {"key": "(chain)", "message": str(exc)}
            print(json.dumps({"file": args.file, "ok": False, "problems": [problem]}))
        else:
            print(f"{args.file}: the chain check failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"file": args.file, "ok": True, "problems": [], "online": notes}))
    else:
        print(f"{args.file}: ok")
        for line in describe(config):
            print(f"  {line}")
        for line in notes:
            print(f"  {line}")
    return 0


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = _load_config(args.config)
    if config is None:
        return 2
    if args.ticks is not None and args.ticks < 1:
        args.parser.error("--ticks: must be at least 1")
    try:
        return asyncio.run(run_keeper(config, dry_run=args.dry_run, stop_after_ticks=args.ticks))
    except ConfigError as exc:
        print(f"keeper run: {exc}", file=sys.stderr)
        return 2
    except (StartError, SignerError, RpcError, VenueError) as exc:
        print(f"keeper run: cannot start: {exc}", file=sys.stderr)
        return 1


def _when(parser: argparse.ArgumentParser, flag: str, text: str | None) -> int | None:
    """Milliseconds since the epoch from an ISO time or an age (30m, 2h, 3d)."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1:] in units:
        return int(time.time() * 1000) - int(text[:-1]) * units[text[-1]] * 1000
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        parser.error(f"{flag}: expected an ISO time or an age like 2h, got {text!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _history(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    if config is None:
        return 2
    if args.limit < 1:
        args.parser.error("--limit: must be at least 1")
    since = _when(args.parser, "--since", args.since)
    until = _when(args.parser, "--until", args.until)
    if isinstance(config.journal, Path) and not config.journal.exists():
        print(f"keeper history: no journal at {config.journal} yet", file=sys.stderr)
        return 1
    try:
        journal = open_journal(config.journal)
    except JournalError as exc:
        print(f"keeper history: {exc}", file=sys.stderr)
        return 1
    try:
        intents = journal.history(
            position_key=args.position, since_ms=since, until_ms=until, limit=args.limit
        )
        rows: list[dict[str, Any]] = []
        for i in intents:
            txs = journal.transactions(i.id)
            rows.append(
                {
                    "id": i.id,
                    "time": datetime.fromtimestamp(i.created_at_ms / 1000, UTC).isoformat(),
                    "block": i.created_block,
                    "venue": i.venue,
                    "position": i.position_key,
                    "seq": i.seq,
                    "kind": i.kind,
                    "status": i.status.value,
                    "failure": i.failure,
                    "reason": i.reason,
                    "transactions": [
                        {
                            "hash": t.hash,
                            "nonce": t.nonce,
                            "kind": t.kind.value,
                            "status": t.status.value,
                            "max_fee": t.max_fee,
                            "block": t.block_number,
                        }
                        for t in txs
                    ],
                }
            )
    finally:
        journal.close()
    if args.json:
        print(json.dumps({"journal": str(config.journal), "intents": rows}))
        return 0
    if not rows:
        print("no intents")
        return 0
    _table(
        ["id", "time", "block", "position", "kind", "status", "txs", "reason"],
        [
            [
                str(r["id"]),
                r["time"][:19],
                str(r["block"]),
                _short(r["position"]),
                r["kind"],
                r["status"] + (f" ({r['failure']})" if r["failure"] else ""),
                ",".join(f"{t['nonce']}:{t['status']}" for t in r["transactions"]) or "-",
                (r["reason"] or "")[:60],
            ]
            for r in rows
        ],
    )
    return 0


def _short(key: str) -> str:
    return key if len(key) <= 20 else f"{key[:10]}…{key[-6:]}"


def _manual(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    if config is None:
        return 2
    name = args.parser.prog.split()[-1]
    if not args.wait_timeout > 0:
        args.parser.error(
            f"--wait-timeout: must be a positive number of seconds, got {args.wait_timeout}"
        )

    async def go() -> int:
        client = await Client.from_config(args.config, prompt=not args.yes)
        async with client:
            if client.txs is None:
                raise StartError("this command sends transactions: the config has no key (signer)")
            prepared = await client.prepare(
                args.action_kind, args.position, getattr(args, "amount", None)
            )
            summary = prepared.summary()
            if args.json:
                print(json.dumps({"prepared": summary}))
            else:
                _print_prepared(summary)
            if not prepared.ok:
                print(f"keeper {name}: not sent: the simulation failed", file=sys.stderr)
                return 1
            if not args.yes:
                if not sys.stdin.isatty():
                    print(f"keeper {name}: pass --yes to send without a terminal", file=sys.stderr)
                    return 1
                if input("send it? [y/N] ").strip().lower() not in ("y", "yes"):
                    print("not sent")
                    return 1
            outcome = await client.send(prepared, wait=not args.no_wait, timeout=args.wait_timeout)
            unfinished = () if args.no_wait else ("awaiting_execution",)
            failed = False
            out = []
            for step in outcome.steps:
                failed = (
                    failed
                    or step.failure is not None
                    or step.status in ("failed", "obsolete", "cancelled", "expired", *unfinished)
                )
                out.append(
                    {
                        "intent": step.intent_id,
                        "kind": step.kind,
                        "status": step.status,
                        "failure": step.failure,
                        "tx": step.tx_hash,
                        "detail": step.detail,
                    }
                )
            if args.json:
                print(json.dumps({"results": out}))
            else:
                for r in out:
                    tail = f" ({r['failure']}: {r['detail']})" if r["failure"] else ""
                    print(f"{r['kind']}: {r['status']} {r['tx'] or ''}{tail}")
            return 1 if failed else 0

    try:
        return asyncio.run(go())
    except ConfigError as exc:
        print(f"keeper {name}: {exc}", file=sys.stderr)
        return 2
    except (ManualError, StartError, SignerError, RpcError, VenueError) as exc:
        print(f"keeper {name}: {exc}", file=sys.stderr)
        return 1


def _print_prepared(summary: dict[str, Any]) -> None:
    print(f"{summary['action']} on {summary['subject']}")
    for i, step in enumerate(summary["steps"], 1):
        gas = step["gas"] if step["gas"] is not None else "after the step before is mined"
        state = (
            "would revert: " + step["revert"]
            if step["revert"]
            else (
                "simulated ok" if step["simulated"] else "simulated once the step before is mined"
            )
        )
        print(f"  {i}. {step['description']} (to {step['to']}): gas {gas}; {state}")
    shown = summary.get("preview")
    if shown is not None:
        ratio = shown["margin_ratio"]
        after = "closed" if shown["closed"] else _percent(ratio["after"])
        line = f"  margin ratio {_percent(ratio['before'])} -> {after}"
        liq = shown["liquidation_price"]
        if shown["mark_price"] is not None and not (liq["before"] is None is liq["after"]):
            mark, side = shown["mark_price"], shown["side"]
            new = "none" if shown["closed"] else _price_text(liq["after"], mark, side)
            line += f", liquidation price {_price_text(liq['before'], mark, side)} -> {new}"
        print(line)
    if summary["fee_problem"]:
        print(f"  fees: {summary['fee_problem']}")
    elif summary["max_cost_wei"] is not None:
        gwei = Decimal(summary["max_fee_per_gas"]) / Decimal(10**9)
        eth = Decimal(summary["max_cost_wei"]) / Decimal(10**18)
        print(f"  cost: at most {eth} ETH (max fee {gwei} gwei per gas)")


_OPERATOR_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "config": _config_check,
    "run": _run,
    "history": _history,
    "top-up": _manual,
    "withdraw": _manual,
    "reduce": _manual,
    "close": _manual,
}


# -- delegate, gmx subaccount ---------------------------------------------------------------------

DELEGATE_EPILOG = """\
The trader sends the printed transactions with the main key (its own wallet, or
`cast send TO DATA --value VALUE`), or lets this command send them: --send-key-env VAR
(a raw key, on a devnet or with signer.allow_raw_key) or --send-keystore FILE. The
keeper's key (the config's signer, or --delegate) then acts only within the grant:
at most --max-actions actions until the expiry, top-ups from the trader's wallet up to
--top-up-limit, every payout to the trader. Set accounts.delegated = true in the config
to run the keeper this way.
"""


def _delegate_arguments(p: argparse.ArgumentParser, delegate_flag: str, what: str) -> None:
    p.add_argument("--config", metavar="FILE", required=True)
    p.add_argument(
        delegate_flag,
        dest="delegate",
        metavar="ADDRESS",
        help=f"the keeper's address, the {what} (default: the config's signer's)",
    )
    p.add_argument("--max-actions", metavar="N", type=int, default=1000)
    p.add_argument("--days", metavar="D", type=int, default=90, help="grant length in days")
    p.add_argument(
        "--top-up-limit",
        metavar="AMOUNT",
        help="most the keeper may pay into positions from the trader's wallet, in whole "
        "tokens of the budget's token (default: unlimited)",
    )
    p.add_argument(
        "--auto-top-up",
        metavar="WEI",
        type=int,
        default=0,
        help="GMX: most WNT (wei) paid back to the subaccount per action for its gas (0: none)",
    )
    key = p.add_mutually_exclusive_group()
    key.add_argument(
        "--send-key-env", metavar="VAR", help="send the setup with the main key in $VAR"
    )
    key.add_argument(
        "--send-keystore", metavar="FILE", help="send the setup with the main key's keystore"
    )
    p.add_argument(
        "--password-env", metavar="VAR", help="the keystore's password in $VAR (else: asked)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(parser=p)


def _delegate_parsers(commands: Any) -> None:
    delegate = commands.add_parser(
        "delegate",
        help="the grant a trader gives the keeper's key, and its setup",
        description="Show each watched account's grant to the keeper's key (a GMX subaccount, "
        "an operator of the reference exchange), and the transactions the trader sends with "
        "the main key to give it; with --send-key-env or --send-keystore, send them.",
        epilog=DELEGATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _delegate_arguments(delegate, "--delegate", "delegate")
    gmx = commands.add_parser("gmx", help="GMX tools", description="GMX v2 tools.")
    gmx_sub = gmx.add_subparsers(dest="gmx_command", required=True, parser_class=_Parser)
    sub = gmx_sub.add_parser(
        "subaccount",
        help="the subaccount setup the trader sends, and its state",
        description="`keeper delegate` for GMX: each watched account's grant to the keeper's "
        "subaccount key, and the transactions the trader sends with the main key to give it: "
        "addSubaccount, the maximum order action count, the expiry, optionally the auto "
        "top-up of the subaccount's gas money, and the approval of GMX's Router for top-ups.",
        epilog=DELEGATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _delegate_arguments(sub, "--subaccount", "subaccount")


def _delegate_command(args: argparse.Namespace) -> int:
    from keeper.delegate_cmd import DelegateOptions, delegation_report  # noqa: PLC0415

    config = _load_config(args.config)
    if config is None:
        return 2
    if args.command == "gmx" and config.venue.kind != "gmx":
        print(f"keeper: {args.config}: venue.kind is {config.venue.kind}, not gmx", file=sys.stderr)
        return 2
    for name in ("max_actions", "days"):
        if getattr(args, name) <= 0:
            print(f"keeper: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            return 2
    if args.auto_top_up < 0:
        print("keeper: --auto-top-up must not be negative", file=sys.stderr)
        return 2
    if args.auto_top_up and config.venue.kind != "gmx":
        print("keeper: --auto-top-up is GMX's (the subaccount's gas money)", file=sys.stderr)
        return 2
    flag = "--subaccount" if args.command == "gmx" else "--delegate"
    if args.delegate is not None and not is_address(args.delegate):
        print(f"keeper: {flag}: {args.delegate!r} is not an address", file=sys.stderr)
        return 2
    limit: Decimal | None = None
    if args.top_up_limit is not None:
        limit = _whole_tokens(args.top_up_limit, "--top-up-limit")
        if limit is None:
            return 2
    if args.password_env and not args.send_keystore:
        print("keeper: --password-env goes with --send-keystore", file=sys.stderr)
        return 2
    try:
        main = _main_key(args, config)
        report = asyncio.run(
            delegation_report(
                config,
                DelegateOptions(
                    delegate=to_checksum_address(args.delegate) if args.delegate else None,
                    max_actions=args.max_actions,
                    days=args.days,
                    top_up_limit=limit,
                    auto_top_up=args.auto_top_up,
                    main_key=main,
                ),
            )
        )
    except (StartError, RpcError, VenueError, SignerError) as exc:
        print(f"keeper: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        _print_delegations(report)
    failed = any(row["sent"] and row["sent"][-1]["status"] != "done" for row in report["accounts"])
    return 1 if failed else 0


def _whole_tokens(text: str, flag: str) -> Decimal | None:
    """`text` as a non-negative amount of whole tokens; None (after saying why) when not."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0:
        print(f"keeper: {flag}: {text!r} is not an amount (whole tokens, >= 0)", file=sys.stderr)
        return None
    return value


def _main_key(args: argparse.Namespace, config: Config) -> Signer | None:
    if args.send_key_env:
        source = KeySource(
            kind="env", key_env=args.send_key_env, allow_raw_key=config.signer.allow_raw_key
        )
    elif args.send_keystore:
        source = KeySource(
            kind="keystore",
            keystore=args.send_keystore,
            password_env=args.password_env,
            prompt=args.password_env is None,
        )
    else:
        return None
    return load_signer(source, config.chain.chain_id)


def _print_delegations(report: dict[str, Any]) -> None:
    print(f"delegate {report['delegate']} on {report['venue']}, chain {report['chain_id']}")
    for row in report["accounts"]:
        state = "active" if row["active"] else "NOT ACTIVE"
        print(f"\naccount {row['account']}: {state}")
        if row["actions_left"] is None and row["expires_at"] is None:
            # Gains: a trading delegate holds until the trader removes it
            print("  no action count or expiry on this venue: it holds until the trader ends it")
        else:
            print(f"  actions left {row['actions_left']}, expires at {row['expires_at']}")
        print(f"  top-ups it can pay now: {row['top_up_left']} {report['token']}")
        for problem in row["problems"]:
            print(f"  ! {problem}")
        if row["sent"] is not None:
            print("  sent with the main key:")
            for tx in row["sent"]:
                print(f"    {tx['description']}: {tx['status']} {tx['tx_hash'] or ''}")
                if tx["status"] != "done":
                    print(f"      {tx['failure'] or ''} {tx['detail']}")
            continue
        print("  the trader sends, with the main key:")
        for tx in row["setup"]:
            print(f"    {tx['description']}")
            print(f"      cast send {tx['to']} {tx['data']} --value {tx['value']}")


_OPERATOR_COMMANDS["gmx"] = _delegate_command
_OPERATOR_COMMANDS["delegate"] = _delegate_command


# -- demo, devnet, keystore ---------------------------------------------------------------------


def _demo_parsers(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="watch the keeper protect positions through a price crash (local devnet)",
        description="Starts a local devnet (Anvil), opens leveraged positions, drives a sharp "
        "price move block by block while the keeper protects them, then replays the same path "
        "without the keeper; prints a running table, a summary and the path of a PNG chart.",
    )
    demo.add_argument("--out", metavar="DIR", help="where the chart goes (default: a temp dir)")
    demo.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    demo.add_argument("--seed", type=int, help="add seeded noise to the price path")
    demo.add_argument("--json", action="store_true", help="print only the summary, as JSON")
    demo.set_defaults(parser=demo)

    devnet = commands.add_parser(
        "devnet",
        help="a local chain with the reference exchange and a ready keeper config",
        description="Starts Anvil, deploys the reference exchange with markets and liquidity, "
        "funds a trader, writes a keeper config for it and runs until Ctrl-C (SIGINT/SIGTERM "
        "stop Anvil; exit 0).",
    )
    devnet.add_argument("--port", type=int, help="Anvil's port (default: a free one)")
    devnet.add_argument(
        "--config-out",
        metavar="FILE",
        default="keeper-devnet.toml",
        help="where to write the keeper config (default: %(default)s)",
    )
    devnet.add_argument(
        "--block-time",
        metavar="S",
        help="mine a block every S seconds, fractions too such as 0.25 (default: one per "
        "transaction)",
    )
    devnet.add_argument(
        "--no-position", action="store_true", help="do not open the sample ETH long"
    )
    devnet.set_defaults(parser=devnet)

    keystore = commands.add_parser(
        "keystore", help="encrypted key files", description="Encrypted keystore tools."
    )
    keystore_sub = keystore.add_subparsers(
        dest="keystore_command", required=True, parser_class=_Parser
    )
    create = keystore_sub.add_parser(
        "create",
        help="encrypt a private key into a keystore file",
        description="Encrypts a private key into an eth-account keystore (scrypt) readable only "
        "by you (0600). The key is read from a hidden prompt, or from stdin when it is not a "
        "terminal; the password from --password-env NAME, else a hidden prompt (asked twice). "
        "Neither is ever echoed or written unencrypted.",
    )
    create.add_argument("--out", metavar="FILE", required=True, help="the keystore file to write")
    create.add_argument("--password-env", metavar="NAME", help="read the password from $NAME")
    create.add_argument("--force", action="store_true", help="overwrite an existing file")
    create.set_defaults(parser=create)


def _demo_command(args: argparse.Namespace) -> int:
    from keeper.demo import DemoOptions, run_demo  # noqa: PLC0415 (starts web3 and Anvil helpers)

    return run_demo(
        DemoOptions(
            out=Path(args.out) if args.out else None,
            chart=not args.no_chart,
            seed=args.seed,
            as_json=args.json,
        )
    )


def _devnet_command(args: argparse.Namespace) -> int:
    from keeper.devnet_cmd import run_devnet  # noqa: PLC0415 (as above)

    block_time: Decimal | None = None
    if args.block_time is not None:
        try:
            block_time = Decimal(args.block_time)
        except InvalidOperation:
            block_time = None
        if block_time is None or not block_time.is_finite() or not 0 < block_time <= 3600:
            args.parser.error(f"--block-time: expected seconds in (0, 3600], got {args.block_time}")
    if args.port is not None and not 0 < args.port < 65536:
        args.parser.error(f"--port: not a port: {args.port}")
    return run_devnet(
        config_out=Path(args.config_out),
        port=args.port,
        block_time=block_time,
        open_position=not args.no_position,
    )


def _keystore_command(args: argparse.Namespace) -> int:
    from keeper.signer import create_keystore  # noqa: PLC0415 (looked up late: tests lighten it)

    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"keeper keystore create: {out} exists (pass --force to overwrite)", file=sys.stderr)
        return 1
    if not out.parent.is_dir():
        print(f"keeper keystore create: no directory {out.parent}", file=sys.stderr)
        return 1
    try:
        if sys.stdin.isatty():
            key = getpass.getpass("Private key (hex, hidden): ")
        else:
            key = sys.stdin.readline()
        key = key.strip()
        if not key:
            print("keeper keystore create: no key given", file=sys.stderr)
            return 1
        if args.password_env:
            password = os.environ.get(args.password_env)
            if not password:
                print(
                    f"keeper keystore create: the variable {args.password_env} is not set",
                    file=sys.stderr,
                )
                return 1
        else:
            password = getpass.getpass("Keystore password: ")
            if password != getpass.getpass("Again: "):
                print("keeper keystore create: the passwords differ", file=sys.stderr)
                return 1
            if not password:
                print("keeper keystore create: an empty password is refused", file=sys.stderr)
                return 1
        address = create_keystore(out, key, password)
    except (SignerError, OSError, EOFError) as exc:
        print(f"keeper keystore create: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} for {address}")
    return 0


# -- stress ------------------------------------------------------------------------------------

STRESS_EPILOG = """\
Paths (--path, repeatable; MARKET= names one market by its index token, else every market):
  crash:-30%:1h     a linear fall to -30% over an hour
  spike:+25%:15m    a linear rise to +25% over 15 minutes
  drift:-2%/h:24h   -2% an hour, compounded, for a day
A market's scenarios run one after the other. --path-csv FILE: a header `timestamp,ETH,...`,
then unix seconds (or ISO times) and prices, interpolated at each block. --noise 0.3% adds a
seeded random walk of at most that much a block (--seed N).

The positions are read once through the config's venue (or from --snapshot FILE, the output
of `keeper positions --config FILE --json`) and the path is replayed block by block, without
the keeper and with it, in simulation only: nothing is signed or sent. Modelled: the venue's
liquidation rule; funding and borrowing at the rates of the read on the venue's basis, every
block; the config's thresholds, cooldowns, hysteresis and projection through the same policy
as `keeper run`; the budget (per top-up, per rolling day, reserve) and the wallet (top-ups paid
from it, payouts back, gas from its native balance); the close fee and price impact of cuts
at the venue's quoted rates; gas per action kind as measured on the venue, at the read's base
fee plus the configured priority fee (GMX: plus its execution fee). Approximated: rates stay
those of the read (on chain they follow the skew), a cut's profit is taken as paid out, no
other traders, every transaction succeeds. --inclusion next (default on live chains): a block
every --block-time seconds (default: measured over the chain's last 1000 blocks), the keeper's
transactions land in the next block; serial (default on devnets): one transaction per block,
mined on demand, as Anvil does.

Output: per position and cross account, liquidated or not without the keeper and with it, the
worst margin ratio, the keeper's actions (block, reason), collateral and gas spent; for what the
budget or wallet cannot save, the top-ups that would (caps lifted) or the collateral it needs
from the start. --sweep KEY=A..B:STEP (thresholds.FIELD or budget.FIELD, e.g.
thresholds.top_up_below=0.03..0.08:0.01) replays the path per value. --json prints one object;
--chart FILE.png draws prices and margin ratios with and without the keeper.
Exit status: 0, 1 when the chain cannot be read, 2 on bad arguments, config or snapshot file.
"""


def _stress_parser(commands: Any) -> None:
    p = commands.add_parser(
        "stress",
        help="what a price move would do to the watched positions, with and without the keeper",
        description="Replay a price path over the watched positions in simulation: which "
        "survive, what the keeper would do and spend, and what it cannot save.",
        epilog=STRESS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", required=True)
    p.add_argument("--snapshot", metavar="FILE", help="`keeper positions --json` output")
    p.add_argument("--path", metavar="SPEC", action="append", default=[], help="repeatable")
    p.add_argument("--path-csv", metavar="FILE", help="timestamp and price per market")
    p.add_argument("--noise", metavar="PCT", help="seeded random walk, at most PCT a block")
    p.add_argument("--seed", metavar="N", type=int, help="the noise's seed (default 0)")
    p.add_argument("--block-time", metavar="S", help="seconds between blocks")
    p.add_argument("--inclusion", choices=["next", "serial"], help="when transactions land")
    p.add_argument("--gas-price-gwei", metavar="G", help="price gas at G gwei")
    p.add_argument(
        "--wallet-balance", metavar="AMOUNT", help="the wallet's budget token, whole tokens"
    )
    p.add_argument("--sweep", metavar="KEY=A..B:STEP", help="replay per value of one setting")
    p.add_argument("--chart", metavar="FILE", help="write a PNG chart")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(parser=p)


def _stress_command(args: argparse.Namespace) -> int:
    from keeper.stress import StressOptions, run_stress  # noqa: PLC0415 (as above)

    return run_stress(
        StressOptions(
            config=Path(args.config),
            snapshot=Path(args.snapshot) if args.snapshot else None,
            paths=tuple(args.path),
            path_csv=Path(args.path_csv) if args.path_csv else None,
            noise=args.noise,
            seed=args.seed,
            block_time=args.block_time,
            inclusion=args.inclusion,
            gas_price_gwei=args.gas_price_gwei,
            wallet_balance=args.wallet_balance,
            sweep=args.sweep,
            as_json=args.json,
            chart=Path(args.chart) if args.chart else None,
        )
    )


_OPERATOR_COMMANDS["stress"] = _stress_command
_OPERATOR_COMMANDS["demo"] = _demo_command
_OPERATOR_COMMANDS["devnet"] = _devnet_command
_OPERATOR_COMMANDS["keystore"] = _keystore_command


if __name__ == "__main__":
    sys.exit(main())
