"""The keeper's settings: a TOML file plus environment overrides, validated in one pass.

`load(path)` returns a `Config` or raises `ConfigError` listing every problem, each with the
exact key (``chain.rpc[1]``, ``thresholds.markets."reference:0".top_up_to``) and what was
expected. Money and ratios are written as strings (``"0.08"``) or integers: TOML floats are
refused, since they are not exact.

Environment overrides: ``KEEPER__SECTION__KEY=value`` sets ``section.key`` (double
underscores separate levels; names are case-insensitive). The value is read as a TOML value
when it parses as one (``5``, ``true``, ``["a", "b"]``, ``"x"``), else as a plain string, so
``KEEPER__CHAIN__RPC='["https://a", "https://b"]'`` and ``KEEPER__SIGNER__SOURCE=none`` work.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from eth_utils.address import is_checksum_address, is_hex_address, to_checksum_address

from keeper.chain.jsonrpc import endpoint_label
from keeper.journal import JournalTarget, PostgresTarget, is_postgres_url
from keeper.margin import Metric
from keeper.policy import Budget, MarketThresholds, ThresholdError, Thresholds
from keeper.units import TokenAmount

ENV_PREFIX: Final = "KEEPER__"
DEVNET_CHAIN_IDS: Final = frozenset({31337, 1337})

# chain id -> (name, kind of L1 fee accounting)
KNOWN_CHAINS: Final[Mapping[int, tuple[str, str]]] = {
    1: ("ethereum", "plain"),
    10: ("optimism", "op"),
    8453: ("base", "op"),
    42161: ("arbitrum", "arbitrum"),
    43114: ("avalanche", "plain"),
    43113: ("avalanche-fuji", "plain"),
    421614: ("arbitrum-sepolia", "arbitrum"),
    3637: ("botanix", "plain"),
    31337: ("anvil", "plain"),
    1337: ("devnet", "plain"),
}
CHAIN_KINDS: Final = ("plain", "op", "arbitrum")
HTTP_TRANSPORTS: Final = ("aiohttp", "web3")
DEFAULT_TRANSPORT: Final = "aiohttp"
VENUE_KINDS: Final = ("reference", "gmx", "gains")
GMX_PRESETS: Final = ("arbitrum", "avalanche", "botanix", "avalanche-fuji", "arbitrum-sepolia")
GMX_ADDRESS_KEYS: Final = (
    "data_store",
    "reader",
    "exchange_router",
    "router",
    "order_vault",
    "role_store",
    "referral_storage",
    "event_emitter",
)
GMX_OPTIONAL_ADDRESS_KEYS: Final = ("subaccount_router",)
GAINS_PRESETS: Final = ("arbitrum", "base", "polygon", "apechain", "arbitrum-sepolia")
GAINS_ADDRESS_KEYS: Final = ("diamond",)
SIGNER_SOURCES: Final = ("keystore", "env", "none")
ALERT_KINDS: Final = ("webhook", "slack", "discord", "telegram")
TELEGRAM_API: Final = "https://api.telegram.org"
SEVERITIES: Final = ("info", "warning", "critical")
RPC_CALL_KINDS: Final = ("head", "read", "call", "logs", "send")  # keeper.chain.timeouts.CallKind
RPC_TIMEOUT_KEYS: Final = (
    "timeout_floor_s",
    "timeout_cap_s",
    "timeout_multiple",
    "timeout_initial_s",
)
MAX_RPC_TIMEOUT_S: Final = Decimal(600)


@dataclass(frozen=True, slots=True)
class Problem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(ValueError):
    """The configuration is invalid; `problems` lists every one of them."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"{source}: {len(self.problems)} problem(s) in the configuration:\n{lines}"
        )


@dataclass(frozen=True, slots=True)
class ChainConfig:
    chain_id: int
    name: str
    kind: str
    rpc: tuple[str, ...] = field(repr=False)
    confirmations: int
    max_fee_per_gas: int  # wei
    max_priority_fee_per_gas: int  # wei
    gas_margin: Decimal
    lag_blocks: int
    poll_interval_s: Decimal
    replace_after_blocks: int
    receipt_timeout_s: int
    multicall: str | None  # None: the venue's own (a GMX preset's), else the canonical one
    sequencer_uptime_feed: str | None
    sequencer_grace_s: int
    transport: str = "aiohttp"  # HTTP endpoints: our aiohttp client, or web3's provider

    @property
    def is_devnet(self) -> bool:
        return self.chain_id in DEVNET_CHAIN_IDS

    @property
    def rpc_labels(self) -> tuple[str, ...]:
        """The endpoints without credentials, for logs and metrics."""
        return tuple(
            endpoint_label(url) if "://" in url else f"ipc://{Path(url).name}" for url in self.rpc
        )


@dataclass(frozen=True, slots=True)
class VenueConfig:
    kind: str
    addresses: Mapping[str, str]
    preset: str | None = None


@dataclass(frozen=True, slots=True)
class SignerConfig:
    source: str
    keystore: Path | None = None
    password_env: str | None = None
    password_file: Path | None = None
    key_env: str | None = None
    allow_raw_key: bool = False


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    host: str
    port: int
    max_block_age_s: int
    max_rpc_silence_s: int


@dataclass(frozen=True, slots=True)
class AlertSinkConfig:
    kind: str
    url: str = field(repr=False)
    min_severity: str
    min_interval_s: int
    token: str = field(default="", repr=False)
    chat_id: str | None = None

    @property
    def label(self) -> str:
        """The sink without secrets: its kind and host."""
        return f"{self.kind}:{urlsplit(self.url).hostname or '?'}"


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """[budget]: what top-ups may spend, in one token, the one the keeper's wallet pays them in.

    `token` is an address or a symbol, resolved against the venue's collateral tokens at start
    (None: the venue's only collateral token; GMX needs it named); `token_decimals` is checked
    against the token's own decimals when given, else they are read from the token. The amounts
    are in whole tokens, as written; `in_units` turns them into the token's smallest units.
    """

    token: str | None
    token_decimals: int | None
    max_top_up_per_position: Decimal
    max_spend_per_day: Decimal
    reserve: Decimal

    def problems(self, decimals: int) -> list[Problem]:
        """An amount with more decimals than the token has, each named by its key."""
        out = []
        for name in BUDGET_AMOUNTS:
            value: Decimal = getattr(self, name)
            raw = value.scaleb(decimals)
            if raw != raw.to_integral_value():
                out.append(
                    Problem(
                        f"budget.{name}",
                        f"expected an amount with at most {decimals} decimals (the token's), "
                        f"got {value}",
                    )
                )
        return out

    def in_units(self, decimals: int, *, source: str = "<config>") -> Budget:
        """The budget in units of a token with `decimals`; ConfigError if an amount does not
        fit them."""
        problems = self.problems(decimals)
        if problems:
            raise ConfigError(source, problems)
        amounts = {
            name: TokenAmount(int(getattr(self, name).scaleb(decimals)), decimals)
            for name in BUDGET_AMOUNTS
        }
        return Budget(**amounts)


@dataclass(frozen=True, slots=True)
class RpcTimeoutConfig:
    """One kind of call's request timeout: `multiple` times the endpoint's recent p99 latency
    for that kind, within [`floor_s`, `cap_s`]; `initial_s` (None: 2 s, or the floor or the cap
    when 2 s is outside them) until the endpoint has answered enough such calls
    (keeper/chain/timeouts.py)."""

    floor_s: Decimal = Decimal("0.25")
    cap_s: Decimal = Decimal(10)
    multiple: Decimal = Decimal(4)
    initial_s: Decimal | None = None


def _default_rpc_timeouts() -> dict[str, RpcTimeoutConfig]:
    return dict.fromkeys(RPC_CALL_KINDS, RpcTimeoutConfig())


@dataclass(frozen=True, slots=True)
class RpcConfig:
    """[rpc]: how requests to the endpoints of chain.rpc are timed and spread.

    ``timeout_floor_s`` / ``timeout_cap_s`` / ``timeout_multiple`` / ``timeout_initial_s`` set
    `RpcTimeoutConfig` for every kind of call; a sub-table per kind (``[rpc.call]``,
    ``[rpc.logs]``, ...; kinds: head, read, call, logs, send) overrides them for that kind.
    `hedge`: a read not answered within the endpoint's recent p95 (at least `hedge_floor_s`)
    is also sent to the next endpoint (a healthy one first), the first answer winning.
    `broadcast`: a transaction is sent to every endpoint at once, the first acceptance
    counting (keeper/chain/rpc.py).
    """

    timeouts: Mapping[str, RpcTimeoutConfig] = field(default_factory=_default_rpc_timeouts)
    hedge: bool = True
    hedge_floor_s: Decimal = Decimal("0.05")
    broadcast: bool = True


@dataclass(frozen=True, slots=True)
class LeaderConfig:
    """[leader]: replicas with the same chain and signer share one journal, and the one that
    holds the lease acts. The leader renews it every block (and every third of its length
    while no block comes); it expires `lease_seconds` after the last renewal, or once the
    chain is `lease_blocks` past the block of the last renewal, whichever comes first. On by
    default with a Postgres journal, off with SQLite unless `enabled = true`."""

    lease_ms: int = 3000
    lease_blocks: int | None = None


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    mode: str  # "active" or "observer"
    dry_run: bool
    journal: JournalTarget
    """keeper.journal: a SQLite file (relative to the config file), or a postgresql:// URL
    (keeper.journal_password_env / journal_password_file say where its password is)."""
    halt_file: Path | None
    chain: ChainConfig
    venue: VenueConfig
    accounts: tuple[str, ...]
    signer: SignerConfig
    thresholds: Thresholds
    budget: BudgetConfig
    metrics: MetricsConfig | None
    alerts: tuple[AlertSinkConfig, ...]
    alert_dedup_window_s: int
    delegated: bool = False
    """accounts.delegated: the signer is a delegate of every watched account (a GMX
    subaccount, an operator of the reference exchange), not the account itself: it pays gas,
    top-ups come from each account's own wallet, and the keeper starts only while every grant
    is active."""
    delegation_check_blocks: int = 100
    """accounts.delegation_check_blocks: in delegated mode, the grants are checked again every
    this many blocks, and alerted on when lost or soon unusable."""
    leader: LeaderConfig | None = None
    """[leader]: the lease that lets one of several replicas act (None: no lease)."""
    rpc: RpcConfig = field(default_factory=RpcConfig)
    """[rpc]: request timeouts from each endpoint's latency, hedged reads, broadcast sends."""

    @property
    def sends(self) -> bool:
        """Whether this keeper may sign and send at all."""
        return self.mode == "active" and not self.dry_run


# -- reading -------------------------------------------------------------------------------------


def _env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> list[Problem]:
    problems: list[Problem] = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not parts or any(not p for p in parts):
            problems.append(Problem(name, "expected KEEPER__SECTION__KEY (double underscores)"))
            continue
        raw = environ[name]
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(Problem(name, f"{part} is not a table in the file"))
                break
            node = child
        else:
            node[parts[-1]] = value
    return problems


class _Reader:
    """Walks the raw TOML tree, converting values and collecting problems by key path."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._seen: set[str] = set()

    def fail(self, key: str, message: str) -> None:
        self.problems.append(Problem(key, message))

    def table(self, data: Mapping[str, Any], name: str, path: str) -> dict[str, Any]:
        key = f"{path}.{name}" if path else name
        value = data.get(name, {})
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {type(value).__name__}")
            return {}
        return value

    def unknown(self, data: Mapping[str, Any], path: str, allowed: Sequence[str]) -> None:
        for name in data:
            if name not in allowed:
                key = f"{path}.{name}" if path else name
                self.fail(key, f"unknown key; expected one of: {', '.join(allowed)}")

    def get(
        self, data: Mapping[str, Any], name: str, path: str, kind: type, default: Any = ...
    ) -> Any:
        key = f"{path}.{name}" if path else name
        if name not in data:
            if default is ...:
                self.fail(key, f"missing; expected {_kind_name(kind)}")
                return None
            return default
        value = data[name]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            self.fail(key, f"expected a whole number, got {value!r}")
            return None
        if kind is bool and not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {value!r}")
            return None
        if kind is str and not isinstance(value, str):
            self.fail(key, f"expected a string, got {value!r}")
            return None
        return value

    def decimal(
        self, data: Mapping[str, Any], name: str, path: str, default: Any = ...
    ) -> Decimal | None:
        key = f"{path}.{name}" if path else name
        if name not in data:
            if default is ...:
                self.fail(key, 'missing; expected a decimal string such as "0.08"')
            return None if default is ... else default
        value = data[name]
        if isinstance(value, float):
            self.fail(key, f'write decimals as strings ("{value}"): floats are not exact')
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.fail(key, f"expected a decimal string, got {value!r}")
            return None
        try:
            number = Decimal(value)
        except InvalidOperation:
            self.fail(key, f"expected a decimal number, got {value!r}")
            return None
        if not number.is_finite():
            self.fail(key, f"expected a finite number, got {value!r}")
            return None
        return number

    def choice(
        self,
        data: Mapping[str, Any],
        name: str,
        path: str,
        options: Sequence[str],
        default: Any = ...,
    ) -> str | None:
        value = self.get(data, name, path, str, default)
        if value is None or value == default:
            return value  # type: ignore[no-any-return]
        if value not in options:
            key = f"{path}.{name}" if path else name
            self.fail(key, f"expected one of {', '.join(options)}; got {value!r}")
            return None
        return str(value)

    def address(self, value: Any, key: str) -> str | None:
        if not isinstance(value, str) or not is_hex_address(value):
            self.fail(key, f"expected a 0x-prefixed 20-byte hex address, got {value!r}")
            return None
        if (
            value != value.lower()
            and value[2:] != value[2:].upper()
            and not is_checksum_address(value)
        ):
            self.fail(key, f"{value} has mixed case but a wrong checksum (a typo?)")
            return None
        return str(to_checksum_address(value))

    def url(self, value: Any, key: str, schemes: Sequence[str]) -> str | None:
        if not isinstance(value, str):
            self.fail(key, f"expected a URL string, got {type(value).__name__}")
            return None
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            self.fail(
                key,
                f"expected a {'/'.join(s + '://' for s in schemes)} URL, "
                f"got {endpoint_label(value) if parts.hostname else repr(value)}",
            )
            return None
        return value

    def positive(self, value: int | None, key: str, *, zero_ok: bool = False) -> int | None:
        if value is None:
            return None
        if value < 0 or (value == 0 and not zero_ok):
            self.fail(key, f"expected a number {'>= 0' if zero_ok else '> 0'}, got {value}")
            return None
        return value


def _kind_name(kind: type) -> str:
    return {int: "a whole number", bool: "true or false", str: "a string"}.get(kind, str(kind))


def _gwei(reader: _Reader, data: Mapping[str, Any], name: str, path: str, default: str) -> int:
    value = reader.decimal(data, name, path, Decimal(default))
    if value is None:
        return 0
    wei = value * 10**9
    if wei < 0 or wei != wei.to_integral_value():
        reader.fail(
            f"{path}.{name}", f"expected a gwei amount >= 0 with at most 9 decimals, got {value}"
        )
        return 0
    return int(wei)


# -- sections ------------------------------------------------------------------------------------


def _chain(r: _Reader, data: Mapping[str, Any], base: Path) -> ChainConfig | None:
    p = "chain"
    t = r.table(data, "chain", "")
    r.unknown(
        t,
        p,
        (
            "chain_id",
            "name",
            "kind",
            "rpc",
            "confirmations",
            "max_fee_gwei",
            "max_priority_fee_gwei",
            "gas_margin",
            "lag_blocks",
            "poll_interval_s",
            "replace_after_blocks",
            "receipt_timeout_s",
            "multicall",
            "sequencer_uptime_feed",
            "sequencer_grace_s",
            "transport",
        ),
    )
    transport = r.choice(t, "transport", p, HTTP_TRANSPORTS, DEFAULT_TRANSPORT)
    chain_id = r.positive(r.get(t, "chain_id", p, int), f"{p}.chain_id")
    known_name, known_kind = KNOWN_CHAINS.get(chain_id or 0, (f"chain-{chain_id}", "plain"))
    name = r.get(t, "name", p, str, known_name)
    kind = r.choice(t, "kind", p, CHAIN_KINDS, known_kind)
    raw_rpc = t.get("rpc")
    rpc: list[str] = []
    if raw_rpc is None:
        r.fail(f"{p}.rpc", "missing; expected a list of endpoint URLs in failover order")
    elif isinstance(raw_rpc, str):
        raw_rpc = [raw_rpc]
    if isinstance(raw_rpc, list):
        if not raw_rpc:
            r.fail(f"{p}.rpc", "expected at least one endpoint URL")
        for i, url in enumerate(raw_rpc):
            if isinstance(url, str) and url and "://" not in url:
                rpc.append(str(base / url))  # a node's IPC socket, relative to the config
                continue
            ok = r.url(url, f"{p}.rpc[{i}]", ("http", "https", "ws", "wss"))
            if ok:
                rpc.append(ok)
    elif raw_rpc is not None:
        r.fail(f"{p}.rpc", f"expected a list of URLs, got {type(raw_rpc).__name__}")
    confirmations = r.positive(
        r.get(t, "confirmations", p, int, 1), f"{p}.confirmations", zero_ok=True
    )
    max_fee = _gwei(r, t, "max_fee_gwei", p, "100")
    max_tip = _gwei(r, t, "max_priority_fee_gwei", p, "2")
    if max_fee and max_tip > max_fee:
        r.fail(f"{p}.max_priority_fee_gwei", "must be <= max_fee_gwei")
    margin = r.decimal(t, "gas_margin", p, Decimal("1.25"))
    if margin is not None and not Decimal(1) <= margin <= Decimal(5):
        r.fail(f"{p}.gas_margin", f"expected a factor between 1 and 5, got {margin}")
    lag = r.positive(r.get(t, "lag_blocks", p, int, 5), f"{p}.lag_blocks", zero_ok=True)
    poll = r.decimal(t, "poll_interval_s", p, Decimal("0.5"))
    if poll is not None and poll <= 0:
        r.fail(f"{p}.poll_interval_s", f"expected a number of seconds > 0, got {poll}")
    replace = r.positive(r.get(t, "replace_after_blocks", p, int, 3), f"{p}.replace_after_blocks")
    timeout = r.positive(r.get(t, "receipt_timeout_s", p, int, 120), f"{p}.receipt_timeout_s")
    multicall = r.address(t["multicall"], f"{p}.multicall") if "multicall" in t else None
    feed = t.get("sequencer_uptime_feed")
    sequencer = r.address(feed, f"{p}.sequencer_uptime_feed") if feed is not None else None
    grace = r.positive(
        r.get(t, "sequencer_grace_s", p, int, 3600), f"{p}.sequencer_grace_s", zero_ok=True
    )
    if None in (
        chain_id,
        name,
        kind,
        confirmations,
        margin,
        lag,
        poll,
        replace,
        timeout,
        grace,
    ) or ("multicall" in t and multicall is None):
        return None
    if not rpc or len(rpc) != len(raw_rpc or []):
        return None
    return ChainConfig(
        chain_id=chain_id or 0,
        name=str(name),
        kind=str(kind),
        rpc=tuple(rpc),
        confirmations=confirmations or 0,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=max_tip,
        gas_margin=margin or Decimal(1),
        lag_blocks=lag or 0,
        poll_interval_s=poll or Decimal(1),
        replace_after_blocks=replace or 1,
        receipt_timeout_s=timeout or 1,
        multicall=multicall,
        sequencer_uptime_feed=sequencer,
        sequencer_grace_s=grace or 0,
        transport=transport or DEFAULT_TRANSPORT,
    )


def _venue(r: _Reader, data: Mapping[str, Any]) -> VenueConfig | None:
    p = "venue"
    t = r.table(data, "venue", "")
    kind = r.choice(t, "kind", p, VENUE_KINDS)
    if kind is None:
        return None
    addresses: dict[str, str] = {}
    if kind == "reference":
        r.unknown(t, p, ("kind", "exchange", "lens"))
        for name in ("exchange", "lens"):
            if name not in t:
                r.fail(f"{p}.{name}", "missing; expected the contract's address")
                continue
            ok = r.address(t[name], f"{p}.{name}")
            if ok:
                addresses[name] = ok
        return VenueConfig(kind=kind, addresses=addresses) if len(addresses) == 2 else None
    if kind == "gains":
        r.unknown(t, p, ("kind", "preset", *GAINS_ADDRESS_KEYS))
        preset = r.choice(t, "preset", p, GAINS_PRESETS, None)
        for name in GAINS_ADDRESS_KEYS:
            if name in t:
                ok = r.address(t[name], f"{p}.{name}")
                if ok:
                    addresses[name] = ok
            elif preset is None:
                r.fail(
                    f"{p}.{name}",
                    f"missing; give the address, or a preset ({', '.join(GAINS_PRESETS)})",
                )
        return VenueConfig(kind=kind, addresses=addresses, preset=preset)
    r.unknown(t, p, ("kind", "preset", *GMX_ADDRESS_KEYS, *GMX_OPTIONAL_ADDRESS_KEYS))
    preset = r.choice(t, "preset", p, GMX_PRESETS, None)
    for name in GMX_ADDRESS_KEYS:
        if name in t:
            ok = r.address(t[name], f"{p}.{name}")
            if ok:
                addresses[name] = ok
        elif preset is None:
            r.fail(
                f"{p}.{name}", f"missing; give the address, or a preset ({', '.join(GMX_PRESETS)})"
            )
    for name in GMX_OPTIONAL_ADDRESS_KEYS:
        if name in t:
            ok = r.address(t[name], f"{p}.{name}")
            if ok:
                addresses[name] = ok
    return VenueConfig(kind=kind, addresses=addresses, preset=preset)


def _accounts(r: _Reader, data: Mapping[str, Any]) -> tuple[str, ...]:
    t = r.table(data, "accounts", "")
    r.unknown(t, "accounts", ("watch", "delegated", "delegation_check_blocks"))
    watch = t.get("watch")
    if not isinstance(watch, list) or not watch:
        r.fail("accounts.watch", "expected a non-empty list of account addresses")
        return ()
    out: list[str] = []
    for i, value in enumerate(watch):
        ok = r.address(value, f"accounts.watch[{i}]")
        if ok:
            if ok in out:
                r.fail(f"accounts.watch[{i}]", f"{ok} is listed twice")
            out.append(ok)
    return tuple(out)


def _signer(
    r: _Reader, data: Mapping[str, Any], base: Path, mode: str | None
) -> SignerConfig | None:
    p = "signer"
    t = r.table(data, "signer", "")
    r.unknown(
        t, p, ("source", "keystore", "password_env", "password_file", "key_env", "allow_raw_key")
    )
    source = r.choice(t, "source", p, SIGNER_SOURCES, "none" if mode == "observer" else ...)
    if source is None:
        return None
    allow_raw = bool(r.get(t, "allow_raw_key", p, bool, False))
    if source == "keystore":
        ks = r.get(t, "keystore", p, str)
        password_env = r.get(t, "password_env", p, str, None)
        password_file = r.get(t, "password_file", p, str, None)
        if password_env and password_file:
            r.fail(f"{p}.password_file", "give password_env or password_file, not both")
        path = (base / ks) if ks else None
        if path is not None and not path.is_file():
            r.fail(f"{p}.keystore", f"no keystore file at {path}")
        pw_path = (base / password_file) if password_file else None
        if pw_path is not None and not pw_path.is_file():
            r.fail(f"{p}.password_file", f"no file at {pw_path}")
        return SignerConfig(
            source=source,
            keystore=path,
            password_env=password_env,
            password_file=pw_path,
            allow_raw_key=allow_raw,
        )
    if source == "env":
        key_env = r.get(t, "key_env", p, str, "KEEPER_PRIVATE_KEY")
        return SignerConfig(source=source, key_env=key_env, allow_raw_key=allow_raw)
    if mode == "active":
        r.fail(f"{p}.source", 'mode "active" needs a key: source "keystore" or "env"')
    return SignerConfig(source="none")


THRESHOLD_KEYS: Final = (
    "metric",
    "top_up_below",
    "top_up_to",
    "reduce_below",
    "close_below",
    "withdraw_above",
    "projection_seconds",
    "cooldown_blocks",
    "hysteresis",
)


def _market_thresholds(
    r: _Reader, t: Mapping[str, Any], path: str, base: MarketThresholds | None
) -> MarketThresholds | None:
    r.unknown(t, path, (*THRESHOLD_KEYS, "markets") if base is None else THRESHOLD_KEYS)
    values: dict[str, Any] = {}
    for name in (
        "top_up_below",
        "top_up_to",
        "reduce_below",
        "close_below",
        "withdraw_above",
        "hysteresis",
    ):
        fallback: Any = getattr(base, name) if base is not None else ...
        if name in ("withdraw_above", "hysteresis") and base is None:
            fallback = None if name == "withdraw_above" else Decimal(0)
        values[name] = r.decimal(t, name, path, fallback)
    metric = r.choice(
        t, "metric", path, tuple(m.value for m in Metric), base.metric.value if base else "ratio"
    )
    for name, default in (("projection_seconds", 0), ("cooldown_blocks", 0)):
        fallback = getattr(base, name) if base is not None else default
        values[name] = r.positive(
            r.get(t, name, path, int, fallback), f"{path}.{name}", zero_ok=True
        )
    required = ("top_up_below", "top_up_to", "reduce_below", "close_below", "hysteresis")
    if metric is None or any(
        values[n] is None for n in (*required, "projection_seconds", "cooldown_blocks")
    ):
        return None
    try:
        return MarketThresholds(metric=Metric(metric), **values)
    except ThresholdError as exc:
        field_name, _, message = str(exc).partition(": ")
        r.fail(f"{path}.{field_name}", message or str(exc))
        return None


def _thresholds(r: _Reader, data: Mapping[str, Any]) -> Thresholds | None:
    t = r.table(data, "thresholds", "")
    default = _market_thresholds(r, t, "thresholds", None)
    markets = r.table(t, "markets", "thresholds")
    overrides: dict[str, MarketThresholds] = {}
    venue_kind = data.get("venue", {}).get("kind") if isinstance(data.get("venue"), dict) else None
    for market, sub in markets.items():
        path = f'thresholds.markets."{market}"'
        prefix, colon, ident = market.partition(":")
        if colon and (prefix != venue_kind or not ident):
            r.fail(
                path,
                f'expected "MARKET_ID" or "{venue_kind or "VENUE"}:MARKET_ID" '
                "(the venue.kind, then the market's id)",
            )
            continue
        if not isinstance(sub, dict):
            r.fail(path, "expected a table of thresholds")
            continue
        if default is None:
            # the defaults are broken; still report what is wrong in the override itself
            r.unknown(sub, path, THRESHOLD_KEYS)
            for name in sub:
                if name not in ("metric", "projection_seconds", "cooldown_blocks"):
                    r.decimal(sub, name, path, None)
            continue
        found = _market_thresholds(r, sub, path, default)
        if found is not None:
            overrides[market] = found
    return Thresholds(default=default, overrides=overrides) if default is not None else None


BUDGET_AMOUNTS: Final = ("max_top_up_per_position", "max_spend_per_day", "reserve")


def _budget(r: _Reader, data: Mapping[str, Any], venue_kind: str | None) -> BudgetConfig | None:
    p = "budget"
    t = r.table(data, "budget", "")
    r.unknown(t, p, ("token", "token_decimals", *BUDGET_AMOUNTS))
    token = r.get(t, "token", p, str, None)
    if token is not None:
        token = token.strip()
        if token.lower().startswith("0x"):
            token = r.address(token, f"{p}.token")
        elif not re.fullmatch(r"[A-Za-z0-9.+_-]{1,32}", token):
            r.fail(
                f"{p}.token", f"expected a token symbol such as USDC or an address, got {token!r}"
            )
            token = None
    elif venue_kind == "gmx" and "token" not in t:
        r.fail(
            f"{p}.token",
            "missing; GMX positions hold any of their market's tokens as collateral: name the "
            'token the wallet pays top-ups in (a symbol such as "USDC", or its address)',
        )
    elif venue_kind == "gains" and "token" not in t:
        r.fail(
            f"{p}.token",
            "missing; Gains trades hold any of the diamond's collaterals (USDC, DAI, WETH, ...): "
            'name the token the wallet pays top-ups in (a symbol such as "USDC", or its address)',
        )
    decimals = r.get(t, "token_decimals", p, int, None)
    if decimals is not None and not 0 <= decimals <= 36:
        r.fail(f"{p}.token_decimals", f"expected 0..36, got {decimals}")
        decimals = None
    amounts: dict[str, Decimal] = {}
    for name in BUDGET_AMOUNTS:
        value = r.decimal(t, name, p)
        if value is None:
            continue
        if value < 0:
            r.fail(f"{p}.{name}", f"expected an amount >= 0, got {value}")
            continue
        amounts[name] = value
    if len(amounts) != len(BUDGET_AMOUNTS):
        return None
    budget = BudgetConfig(token=token, token_decimals=decimals, **amounts)
    if decimals is not None:
        for problem in budget.problems(decimals):
            r.problems.append(problem)
    if amounts["max_top_up_per_position"] > amounts["max_spend_per_day"]:
        r.fail(f"{p}.max_top_up_per_position", "must be <= max_spend_per_day")
    return budget


def _metrics(r: _Reader, data: Mapping[str, Any]) -> MetricsConfig | None:
    if "metrics" not in data:
        return None
    p = "metrics"
    t = r.table(data, "metrics", "")
    r.unknown(t, p, ("listen", "max_block_age_s", "max_rpc_silence_s"))
    listen = r.get(t, "listen", p, str, "127.0.0.1:9464")
    host, port = "127.0.0.1", 9464
    if listen is not None:
        m = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})", listen)
        if not m or int(m.group(2)) > 65535:
            r.fail(f"{p}.listen", f'expected "host:port", got {listen!r}')
        else:
            host, port = m.group(1).strip("[]"), int(m.group(2))
    age = r.positive(r.get(t, "max_block_age_s", p, int, 60), f"{p}.max_block_age_s")
    silence = r.positive(r.get(t, "max_rpc_silence_s", p, int, 60), f"{p}.max_rpc_silence_s")
    return MetricsConfig(
        host=host, port=port, max_block_age_s=age or 60, max_rpc_silence_s=silence or 60
    )


def _alerts(
    r: _Reader, data: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[AlertSinkConfig, ...]:
    raw = data.get("alerts", [])
    if not isinstance(raw, list):
        r.fail("alerts", "expected an array of tables ([[alerts]])")
        return ()
    sinks: list[AlertSinkConfig] = []
    for i, t in enumerate(raw):
        p = f"alerts[{i}]"
        if not isinstance(t, dict):
            r.fail(p, "expected a table")
            continue
        r.unknown(
            t,
            p,
            ("kind", "url", "url_env", "token_env", "chat_id", "min_severity", "min_interval_s"),
        )
        kind = r.choice(t, "kind", p, ALERT_KINDS)
        url: str | None = None
        if "url" in t and "url_env" in t:
            r.fail(f"{p}.url_env", "give url or url_env, not both")
        elif "url_env" in t:
            url = _secret_env(r, t, "url_env", p, environ)
            if url is not None:
                url = r.url(url, f"{p}.url_env ({t['url_env']})", ("http", "https"))
        elif "url" in t:
            url = r.url(t["url"], f"{p}.url", ("http", "https"))
        elif kind == "telegram":
            url = TELEGRAM_API
        elif kind is not None:
            r.fail(f"{p}.url", "missing; give url or url_env (the name of a variable holding it)")
        token: str | None = None
        if kind == "telegram":
            if "token_env" not in t:
                r.fail(f"{p}.token_env", "missing; telegram needs the bot token's variable name")
            else:
                token = _secret_env(r, t, "token_env", p, environ)
        elif "token_env" in t:
            r.fail(f"{p}.token_env", "only telegram sinks take a token (put it in the url)")
        chat_id = t.get("chat_id")
        if kind == "telegram" and chat_id is None:
            r.fail(f"{p}.chat_id", "missing; telegram needs the chat id to send to")
        if chat_id is not None and (
            isinstance(chat_id, bool) or not isinstance(chat_id, int | str)
        ):
            r.fail(f"{p}.chat_id", f"expected a string or number, got {chat_id!r}")
        severity = r.choice(t, "min_severity", p, SEVERITIES, "warning")
        interval = r.positive(
            r.get(t, "min_interval_s", p, int, 0), f"{p}.min_interval_s", zero_ok=True
        )
        if kind and url and severity and interval is not None and (kind != "telegram" or token):
            sinks.append(
                AlertSinkConfig(
                    kind=kind,
                    url=url,
                    token=token or "",
                    chat_id=None if chat_id is None else str(chat_id),
                    min_severity=severity,
                    min_interval_s=interval,
                )
            )
    return tuple(sinks)


def _secret_env(
    r: _Reader, t: Mapping[str, Any], name: str, path: str, environ: Mapping[str, str]
) -> str | None:
    env_name = r.get(t, name, path, str)
    if env_name is None:
        return None
    value = environ.get(env_name)
    if not value:
        r.fail(f"{path}.{name}", f"the environment variable {env_name} is not set")
        return None
    return value


TOP_LEVEL: Final = (
    "keeper",
    "leader",
    "chain",
    "rpc",
    "venue",
    "accounts",
    "signer",
    "thresholds",
    "budget",
    "metrics",
    "alerts",
)


def _journal(r: _Reader, k: Mapping[str, Any], base: Path) -> JournalTarget | None:
    text = r.get(k, "journal", "keeper", str, "keeper-journal.sqlite")
    env_name = r.get(k, "journal_password_env", "keeper", str, None)
    file_name = r.get(k, "journal_password_file", "keeper", str, None)
    if text is None:
        return None
    if not is_postgres_url(text):
        if env_name is not None or file_name is not None:
            key = "journal_password_env" if env_name is not None else "journal_password_file"
            r.fail(f"keeper.{key}", "only for a Postgres journal (a postgresql:// URL)")
        return base / str(text)
    if env_name is not None and file_name is not None:
        r.fail("keeper.journal_password_env", "give journal_password_env or _file, not both")
        return None
    try:
        return PostgresTarget(
            text,
            password_env=env_name,
            password_file=(base / file_name) if file_name is not None else None,
        )
    except ValueError as exc:
        r.fail("keeper.journal", str(exc))  # the URL itself is never repeated: it may hold a secret
        return None


def _rpc_timeout(
    r: _Reader, t: Mapping[str, Any], p: str, base: RpcTimeoutConfig
) -> RpcTimeoutConfig:
    """The timeout keys of table `t` at key path `p`, those left out taken from `base`."""

    def seconds(name: str, default: Decimal | None) -> Decimal | None:
        value = r.decimal(t, name, p, default)
        if value is not None and not 0 < value <= MAX_RPC_TIMEOUT_S:
            r.fail(f"{p}.{name}", f"expected seconds > 0 and <= {MAX_RPC_TIMEOUT_S}, got {value}")
            return None
        return value

    floor = seconds("timeout_floor_s", base.floor_s)
    cap = seconds("timeout_cap_s", base.cap_s)
    initial = seconds("timeout_initial_s", base.initial_s)
    multiple = r.decimal(t, "timeout_multiple", p, base.multiple)
    if multiple is not None and not 1 <= multiple <= 100:
        r.fail(f"{p}.timeout_multiple", f"expected a factor from 1 to 100, got {multiple}")
        multiple = None
    if floor is not None and cap is not None and cap < floor:
        r.fail(f"{p}.timeout_cap_s", f"must be >= timeout_floor_s ({floor}), got {cap}")
    elif (
        initial is not None
        and floor is not None
        and cap is not None
        and not floor <= initial <= cap
    ):
        r.fail(
            f"{p}.timeout_initial_s",
            f"expected seconds from timeout_floor_s ({floor}) to timeout_cap_s ({cap}), "
            f"got {initial}",
        )
    return RpcTimeoutConfig(
        floor_s=floor or base.floor_s,
        cap_s=cap or base.cap_s,
        multiple=multiple or base.multiple,
        initial_s=initial,
    )


def _rpc(r: _Reader, data: Mapping[str, Any]) -> RpcConfig:
    p = "rpc"
    t = r.table(data, "rpc", "")
    r.unknown(t, p, (*RPC_TIMEOUT_KEYS, "hedge", "hedge_floor_s", "broadcast", *RPC_CALL_KINDS))
    base = _rpc_timeout(r, t, p, RpcTimeoutConfig())
    timeouts: dict[str, RpcTimeoutConfig] = {}
    for kind in RPC_CALL_KINDS:
        if kind not in t:
            timeouts[kind] = base
            continue
        sub = r.table(t, kind, p)
        r.unknown(sub, f"{p}.{kind}", RPC_TIMEOUT_KEYS)
        timeouts[kind] = _rpc_timeout(r, sub, f"{p}.{kind}", base)
    hedge = r.get(t, "hedge", p, bool, True)
    hedge_floor = r.decimal(t, "hedge_floor_s", p, Decimal("0.05"))
    if hedge_floor is not None and not 0 <= hedge_floor <= MAX_RPC_TIMEOUT_S:
        r.fail(
            f"{p}.hedge_floor_s",
            f"expected seconds >= 0 and <= {MAX_RPC_TIMEOUT_S}, got {hedge_floor}",
        )
        hedge_floor = None
    broadcast = r.get(t, "broadcast", p, bool, True)
    return RpcConfig(
        timeouts=timeouts,
        hedge=bool(hedge) if hedge is not None else True,
        hedge_floor_s=Decimal("0.05") if hedge_floor is None else hedge_floor,
        broadcast=bool(broadcast) if broadcast is not None else True,
    )


def _leader(
    r: _Reader, data: Mapping[str, Any], journal: JournalTarget | None
) -> LeaderConfig | None:
    t = r.table(data, "leader", "")
    r.unknown(t, "leader", ("enabled", "lease_seconds", "lease_blocks"))
    enabled = r.get(t, "enabled", "leader", bool, isinstance(journal, PostgresTarget))
    seconds = r.decimal(t, "lease_seconds", "leader", Decimal(3))
    if seconds is not None and not Decimal("0.2") <= seconds <= Decimal(600):
        r.fail("leader.lease_seconds", f"expected seconds between 0.2 and 600, got {seconds}")
        seconds = None
    blocks = r.positive(r.get(t, "lease_blocks", "leader", int, None), "leader.lease_blocks")
    if not enabled or seconds is None:
        return None
    return LeaderConfig(lease_ms=int(seconds * 1000), lease_blocks=blocks)


def parse(
    data: dict[str, Any],
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validates a TOML tree (env overrides applied) into a Config, or raises ConfigError."""
    env = dict(os.environ if environ is None else environ)
    r = _Reader()
    r.problems.extend(_env_overrides(data, env))
    base = base_dir or Path.cwd()
    r.unknown(data, "", TOP_LEVEL)
    k = r.table(data, "keeper", "")
    r.unknown(
        k,
        "keeper",
        (
            "mode",
            "dry_run",
            "journal",
            "journal_password_env",
            "journal_password_file",
            "halt_file",
            "alert_dedup_window_s",
        ),
    )
    mode = r.choice(k, "mode", "keeper", ("active", "observer"), "active")
    dry_run = r.get(k, "dry_run", "keeper", bool, False)
    journal = _journal(r, k, base)
    leader = _leader(r, data, journal)
    halt = r.get(k, "halt_file", "keeper", str, None)
    dedup = r.positive(
        r.get(k, "alert_dedup_window_s", "keeper", int, 600),
        "keeper.alert_dedup_window_s",
        zero_ok=True,
    )
    chain = _chain(r, data, base)
    rpc = _rpc(r, data)
    venue = _venue(r, data)
    accounts = _accounts(r, data)
    accounts_table = r.table(data, "accounts", "")
    delegated = r.get(accounts_table, "delegated", "accounts", bool, False)
    check_blocks = r.positive(
        r.get(accounts_table, "delegation_check_blocks", "accounts", int, 100),
        "accounts.delegation_check_blocks",
    )
    signer = _signer(r, data, base, mode)
    thresholds = _thresholds(r, data)
    budget = _budget(r, data, venue.kind if venue else None)
    metrics = _metrics(r, data)
    alerts = _alerts(r, data, env)
    if (
        chain is not None
        and signer is not None
        and signer.source == "env"
        and not (chain.is_devnet or signer.allow_raw_key)
    ):
        r.fail(
            "signer.source",
            f"a raw key from the environment is refused on chain {chain.chain_id} "
            "(not a devnet); use a keystore, or set signer.allow_raw_key = true",
        )
    if r.problems:
        raise ConfigError(source, r.problems)
    if not (chain and venue and signer and thresholds and budget and mode and journal):
        raise ConfigError(source, [Problem("(config)", "incomplete after validation")])
    return Config(
        source=source,
        mode=mode,
        dry_run=bool(dry_run),
        journal=journal,
        leader=leader,
        halt_file=(base / halt) if halt else None,
        chain=chain,
        rpc=rpc,
        venue=venue,
        accounts=accounts,
        delegated=bool(delegated),
        delegation_check_blocks=int(check_blocks) if check_blocks else 100,
        signer=signer,
        thresholds=thresholds,
        budget=budget,
        metrics=metrics,
        alerts=alerts,
        alert_dedup_window_s=dedup or 0,
    )


def load(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Reads and validates a TOML config file; relative paths in it are relative to the file."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(
            str(file), [Problem("(file)", f"cannot read it: {exc.strerror}")]
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file), [Problem("(syntax)", str(exc))]) from None
    return parse(data, source=str(file), base_dir=file.resolve().parent, environ=environ)


def describe(config: Config) -> Iterator[str]:
    """Lines summarising a valid config, without secrets (RPC URLs as host labels only)."""
    c = config
    yield f"mode: {c.mode}{' (dry run)' if c.dry_run else ''}"
    endpoints = ", ".join(c.chain.rpc_labels)
    yield f"chain: {c.chain.name} (id {c.chain.chain_id}, {c.chain.kind}) via {endpoints}"
    yield f"rpc: {describe_rpc(c.rpc)}"
    preset = f" preset {c.venue.preset}" if c.venue.preset else ""
    yield f"venue: {c.venue.kind} {dict(c.venue.addresses)}{preset}"
    yield f"accounts: {len(c.accounts)} watched"
    b = c.budget
    token = b.token or "the venue's collateral token"
    yield (
        f"budget: in {token}: top-ups up to {b.max_top_up_per_position} each, "
        f"{b.max_spend_per_day} a day, {b.reserve} kept in reserve"
    )
    yield f"signer: {c.signer.source}"
    yield f"journal: {c.journal}"
    if c.leader is not None:
        blocks = f" or {c.leader.lease_blocks} blocks" if c.leader.lease_blocks else ""
        yield f"leader lease: {Decimal(c.leader.lease_ms) / 1000}s{blocks}"
    yield f"alerts: {', '.join(s.label for s in c.alerts) or 'none'}"
    if c.metrics:
        yield f"metrics: {c.metrics.host}:{c.metrics.port}"


def describe_rpc(rpc: RpcConfig) -> str:
    """[rpc] in a line: the timeouts per kind of call (kinds alike shown once), hedging and
    broadcasting."""
    groups: dict[RpcTimeoutConfig, list[str]] = {}
    for kind, t in rpc.timeouts.items():
        groups.setdefault(t, []).append(kind)
    parts = []
    for t, kinds in groups.items():
        first = t.initial_s if t.initial_s is not None else min(max(Decimal(2), t.floor_s), t.cap_s)
        start = f", {first}s at first"
        where = "" if len(groups) == 1 else f"{'/'.join(kinds)} "
        parts.append(f"{where}{t.multiple}x p99 within {t.floor_s}-{t.cap_s}s{start}")
    hedge = f"reads hedged after p95 (>= {rpc.hedge_floor_s}s)" if rpc.hedge else "no hedging"
    send = "sends to every endpoint" if rpc.broadcast else "sends to one endpoint"
    return f"timeouts {'; '.join(parts)}; {hedge}; {send}"
