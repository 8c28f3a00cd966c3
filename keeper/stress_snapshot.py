"""A `Snapshot` as JSON and back, losslessly: the file `keeper stress --snapshot` replays.

`keeper positions --json` writes it under the key "snapshot" beside its table rows, so a read
saved today can be stressed later without the chain. Every amount and price is kept as its
raw integer (a decimal string, so no JSON reader rounds it) with its decimals; rates are
decimal strings. `snapshot_from_json` checks every field and raises `SnapshotFormatError`
naming the one that is wrong (`snapshot.positions[2].size.raw`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

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

__all__ = ["FORMAT_VERSION", "SnapshotFormatError", "snapshot_from_json", "snapshot_to_json"]

FORMAT_VERSION = 1
"""The version written in the JSON; a file of another version is refused."""

_RATES = (
    "maintenance_rate",
    "close_fee_rate",
    "liquidation_fee_rate",
    "funding_rate_long",
    "funding_rate_short",
    "borrowing_rate_long",
    "borrowing_rate_short",
)


class SnapshotFormatError(ValueError):
    """The JSON is not a snapshot this version reads; the message names the field."""


def _fixed(value: TokenAmount | Usd | Price) -> dict[str, Any]:
    return {"raw": str(value.raw), "decimals": value.decimals}


def _token(token: Token) -> dict[str, Any]:
    return {"address": token.address, "symbol": token.symbol, "decimals": token.decimals}


def snapshot_to_json(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON-ready data (see the module's docstring)."""
    w = snapshot.wallet
    return {
        "version": FORMAT_VERSION,
        "block_number": snapshot.block_number,
        "block_time": snapshot.block_time,
        "wallet": {
            "address": w.address,
            "token": _token(w.token),
            "balance": _fixed(w.balance),
            "native_balance": _fixed(w.native_balance),
        },
        "markets": [
            {
                "venue": m.venue,
                "market_id": m.market_id,
                "index_token": _token(m.index_token),
                "usd_decimals": m.usd_decimals,
                "mark_price": _fixed(m.mark_price),
                "basis": m.basis.value,
                "strictness": m.strictness.value,
                "min_collateral_usd": (
                    None if m.min_collateral_usd is None else _fixed(m.min_collateral_usd)
                ),
                **{name: str(getattr(m, name)) for name in _RATES},
                "close_quote": (
                    None
                    if m.close_quote is None
                    else {
                        "fee_rate": str(m.close_quote.fee_rate),
                        "impact_rate": str(m.close_quote.impact_rate),
                    }
                ),
            }
            for m in snapshot.markets
        ],
        "positions": [
            {
                "venue": p.venue,
                "key": p.key,
                "account": p.account,
                "market_id": p.market_id,
                "side": p.side.value,
                "size": _fixed(p.size),
                "entry_price": _fixed(p.entry_price),
                "collateral_token": _token(p.collateral_token),
                "collateral": _fixed(p.collateral),
                "collateral_price": _fixed(p.collateral_price),
                "collateral_usd": _fixed(p.collateral_usd),
                "fees": _fixed(p.fees),
                "mode": p.mode.value,
                "cross_account": p.cross_account,
            }
            for p in snapshot.positions
        ],
        "accounts": [
            {
                "venue": a.venue,
                "key": a.key,
                "account": a.account,
                "collateral_token": _token(a.collateral_token),
                "collateral": _fixed(a.collateral),
                "collateral_price": _fixed(a.collateral_price),
                "collateral_usd": _fixed(a.collateral_usd),
                "position_keys": list(a.position_keys),
            }
            for a in snapshot.accounts
        ],
        "funds": (
            None
            if snapshot.funds is None
            else {account: str(amount.raw) for account, amount in snapshot.funds.items()}
        ),
    }


class _In:
    """Reads one JSON object, naming the path of whatever is wrong."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise SnapshotFormatError(f"{path}: expected an object, got {type(data).__name__}")
        self.data = data
        self.path = path

    def fail(self, name: str, message: str) -> SnapshotFormatError:
        return SnapshotFormatError(f"{self.path}.{name}: {message}")

    def get(self, name: str) -> Any:
        if name not in self.data:
            raise self.fail(name, "missing")
        return self.data[name]

    def sub(self, name: str) -> _In:
        return _In(self.get(name), f"{self.path}.{name}")

    def str_(self, name: str) -> str:
        value = self.get(name)
        if not isinstance(value, str):
            raise self.fail(name, f"expected a string, got {value!r}")
        return value

    def int_(self, name: str, *, low: int = 0) -> int:
        value = self.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(name, f"expected a whole number >= {low}, got {value!r}")
        return value

    def raw(self, name: str) -> int:
        text = self.get(name)
        if not isinstance(text, str) or not text.lstrip("-").isdigit():
            raise self.fail(name, f"expected an integer as a decimal string, got {text!r}")
        return int(text)

    def rate(self, name: str) -> Decimal:
        text = self.get(name)
        try:
            value = Decimal(text) if isinstance(text, str) else None
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite():
            raise self.fail(name, f"expected a decimal string, got {text!r}")
        return value

    def choice(self, name: str, enum: type[Any]) -> Any:
        text = self.str_(name)
        try:
            return enum(text)
        except ValueError:
            options = ", ".join(e.value for e in enum)
            raise self.fail(name, f"expected one of {options}, got {text!r}") from None

    def fixed(self, name: str, cls: type[Any], decimals: int | None = None) -> Any:
        sub = self.sub(name)
        raw, scale = sub.raw("raw"), sub.int_("decimals")
        if decimals is not None and scale != decimals:
            raise sub.fail("decimals", f"expected {decimals}, got {scale}")
        try:
            return cls(raw, scale)
        except (TypeError, ValueError) as exc:
            raise SnapshotFormatError(f"{sub.path}: {exc}") from None

    def token(self, name: str) -> Token:
        sub = self.sub(name)
        return Token(sub.str_("address"), sub.str_("symbol"), sub.int_("decimals"))


def _market(item: _In) -> Market:
    quote = item.get("close_quote")
    floor = item.get("min_collateral_usd")
    usd_decimals = item.int_("usd_decimals")
    try:
        return Market(
            venue=item.str_("venue"),
            market_id=item.str_("market_id"),
            index_token=item.token("index_token"),
            usd_decimals=usd_decimals,
            mark_price=item.fixed("mark_price", Price),
            basis=item.choice("basis", Basis),
            strictness=item.choice("strictness", Strictness),
            min_collateral_usd=(
                None if floor is None else item.fixed("min_collateral_usd", Usd, usd_decimals)
            ),
            close_quote=(
                None
                if quote is None
                else CloseQuote(
                    item.sub("close_quote").rate("fee_rate"),
                    item.sub("close_quote").rate("impact_rate"),
                )
            ),
            **{name: item.rate(name) for name in _RATES},
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SnapshotFormatError):
            raise
        raise SnapshotFormatError(f"{item.path}: {exc}") from None


def _position(item: _In) -> Position:
    token = item.token("collateral_token")
    cross = item.get("cross_account")
    if cross is not None and not isinstance(cross, str):
        raise item.fail("cross_account", f"expected a string or null, got {cross!r}")
    try:
        return Position(
            venue=item.str_("venue"),
            key=item.str_("key"),
            account=item.str_("account"),
            market_id=item.str_("market_id"),
            side=item.choice("side", Side),
            size=item.fixed("size", TokenAmount),
            entry_price=item.fixed("entry_price", Price),
            collateral_token=token,
            collateral=item.fixed("collateral", TokenAmount, token.decimals),
            collateral_price=item.fixed("collateral_price", Price),
            collateral_usd=item.fixed("collateral_usd", Usd),
            fees=item.fixed("fees", Usd),
            mode=item.choice("mode", MarginMode),
            cross_account=cross,
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SnapshotFormatError):
            raise
        raise SnapshotFormatError(f"{item.path}: {exc}") from None


def _account(item: _In) -> CrossAccount:
    token = item.token("collateral_token")
    keys = item.get("position_keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise item.fail("position_keys", "expected a list of position keys")
    return CrossAccount(
        venue=item.str_("venue"),
        key=item.str_("key"),
        account=item.str_("account"),
        collateral_token=token,
        collateral=item.fixed("collateral", TokenAmount, token.decimals),
        collateral_price=item.fixed("collateral_price", Price),
        collateral_usd=item.fixed("collateral_usd", Usd),
        position_keys=tuple(keys),
    )


def _list(top: _In, name: str) -> list[_In]:
    items = top.get(name)
    if not isinstance(items, list):
        raise top.fail(name, "expected a list")
    return [_In(x, f"{top.path}.{name}[{i}]") for i, x in enumerate(items)]


def snapshot_from_json(data: Any, *, path: str = "snapshot") -> Snapshot:
    """The Snapshot written by `snapshot_to_json`; SnapshotFormatError naming the field that
    does not fit (`path` is the name of `data` in messages)."""
    top = _In(data, path)
    version = top.get("version")
    if version != FORMAT_VERSION:
        raise top.fail("version", f"expected {FORMAT_VERSION}, got {version!r}")
    w = top.sub("wallet")
    token = w.token("token")
    wallet = Wallet(
        address=w.str_("address"),
        token=token,
        balance=w.fixed("balance", TokenAmount, token.decimals),
        native_balance=w.fixed("native_balance", TokenAmount),
    )
    funds_data = top.get("funds")
    funds: dict[str, TokenAmount] | None = None
    if funds_data is not None:
        f = top.sub("funds")
        funds = {name: TokenAmount(f.raw(name), token.decimals) for name in f.data}
    try:
        return Snapshot(
            block_number=top.int_("block_number"),
            block_time=top.int_("block_time"),
            wallet=wallet,
            markets=tuple(_market(m) for m in _list(top, "markets")),
            positions=tuple(_position(p) for p in _list(top, "positions")),
            accounts=tuple(_account(a) for a in _list(top, "accounts")),
            funds=funds,
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SnapshotFormatError):
            raise
        raise SnapshotFormatError(f"{path}: {exc}") from None
