"""`keeper stress`: what a price move would do to the watched positions, before it happens.

The watched positions are read once (through the Python API, `keeper.client.Client`), or
loaded from a saved snapshot (`keeper positions --json`), and a price path is replayed over
them block by block in pure simulation: nothing is signed or sent. The same path runs twice,
without the keeper (a liquidator takes whatever the venue lets it) and with it: the keeper's
decisions come from `keeper.policy.decide`, the same function `keeper run` calls, on a
simulated snapshot of each block, with a simulated history (what is in flight, recent actions
for cooldowns and hysteresis, the rolling day's spend) in place of the journal.

What is modelled, and how:

- Liquidation: the venue's own rule as its adapter states it (`Market.basis`, `strictness`,
  `min_collateral_usd`; `keeper.margin.is_liquidatable` and `cross_is_liquidatable`). A
  subject is liquidated at the first block whose state makes it liquidatable, before any
  transaction of the keeper's that lands later.
- Prices: each market's mark follows the path (markets are named by their index token); a
  collateral that is the index token of a market (GMX's WETH) is valued at that mark.
- Funding and borrowing: accrued every block at the rates of the read (`Market.rate_per_second`
  on the venue's basis notional at that block's mark, `keeper.margin.project`), rounded up.
- The keeper: the configured thresholds (per market), cooldowns, hysteresis and projection,
  the budget (per top-up, per rolling day of block time, the reserve), and the wallet: top-ups
  are paid from it (delegated mode: from each account's wallet), payouts of reductions and
  closes go back to the account, and gas is paid from its native balance (an action the
  wallet cannot pay gas for is not sent).
- Inclusion: `next`, a block every `block_seconds` with the path's next price, and the
  transactions decided on a block land in the next one; `serial`, one transaction per block
  mined on demand (a devnet's automine, as `keeper demo` runs): liquidations and the keeper's
  transactions each take a block at the same prices, and the keeper looks again once they are
  mined, before the path's next price block.
- Costs of actions: the close fee and price impact of what a reduction or close takes off,
  at the venue's quoted rates (`Market.close_cost_rate`: for the reference exchange its fee and
  marginal impact at the read's skew, counted as a cost even where the venue would pay it),
  as the policy counts them; gas per action kind as measured on the venue (`GAS_PER_ACTION`)
  at the current base fee plus the configured priority fee, and on GMX the execution fee the
  venue asks at that gas price.

What is approximated: rates stay those of the read (the skew that sets them moves with the
keeper's and the liquidator's trades on chain, and with other traders'); the reference
exchange charges funding since its market's last transaction at the price of the moment, so
on a quiet market the figures differ by cents; a reduction's profit is taken as paid out (the
margin module's conservative model); no other traders, no failed or reorganised transactions,
and GMX orders are taken as executed in the block after their creation.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation, localcontext
from enum import StrEnum
from pathlib import Path
from typing import Any

from keeper import margin
from keeper.config import DEVNET_CHAIN_IDS, Config, ConfigError
from keeper.demo import Liquidation, Row, RunResult, Subject, ratios
from keeper.margin import Leg
from keeper.model import (
    Action,
    Alert,
    Close,
    CrossAccount,
    MarginMode,
    Market,
    Position,
    Reduce,
    Scope,
    Side,
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
)
from keeper.stress_snapshot import SnapshotFormatError, snapshot_from_json
from keeper.units import CONTEXT, Price, TokenAmount, Usd

__all__ = [
    "GAS_PER_ACTION",
    "ChainModel",
    "Inclusion",
    "PricePath",
    "SimAction",
    "SimRun",
    "StressError",
    "StressOptions",
    "Sweep",
    "build_path",
    "parse_sweep",
    "run_stress",
    "simulate",
]

DAY_SECONDS = 86_400
MAX_BLOCKS = 200_000
"""The most price blocks one run replays (a longer path needs a larger --block-time)."""
DEVNET_BLOCK_SECONDS = Decimal(2)
"""Block spacing assumed on a devnet (`keeper demo` sets its blocks 2 s apart)."""
KEEPER_ROUNDS = 6
"""Serial inclusion: how often the keeper looks again within one price step (the demo's)."""

GAS_PER_ACTION: Mapping[str, Mapping[str, int]] = {
    "refex": {
        "top_up:isolated": 150_000,
        "top_up:cross": 56_000,
        "withdraw:isolated": 150_000,
        "withdraw:cross": 90_000,
        "reduce:isolated": 149_000,
        "reduce:cross": 160_000,
        "close:isolated": 150_000,
        "close:cross": 198_000,
    },
    "gmx": {
        "top_up:isolated": 700_000,
        "withdraw:isolated": 700_000,
        "reduce:isolated": 700_000,
        "close:isolated": 700_000,
    },
}
"""Gas per action kind and margin mode, by venue name. The reference exchange's are its
operator calls' receipts on Anvil (`keeper demo`'s, with the funding update the first call
after a price move pays); GMX's are an allowance for creating the order (its execution, paid
for by the execution fee, comes on top)."""
_DEFAULT_GAS = 300_000


class StressError(ValueError):
    """Bad input to a stress run; the message starts with the argument or field it names."""


class Inclusion(StrEnum):
    """When the keeper's transactions land (see the module's docstring)."""

    NEXT = "next"
    SERIAL = "serial"


@dataclass(frozen=True, slots=True)
class ChainModel:
    """The chain as the simulation sees it: block spacing, inclusion, and gas.

    `gas_price_wei` prices every action's gas (`gas_per_action`, keys as in `GAS_PER_ACTION`);
    `extra_fee_wei` adds a fee per action kind paid in the native token (GMX's execution fee).
    `gas_limited`: the wallet's native balance must pay for gas (False when no wallet is known).
    """

    block_seconds: Decimal
    inclusion: Inclusion = Inclusion.NEXT
    gas_price_wei: int = 0
    gas_per_action: Mapping[str, int] = field(default_factory=dict)
    extra_fee_wei: Mapping[str, int] = field(default_factory=dict)
    gas_limited: bool = True

    def gas(self, key: str) -> int:
        return self.gas_per_action.get(key, _DEFAULT_GAS)

    def cost_wei(self, key: str) -> int:
        return self.gas(key) * self.gas_price_wei + self.extra_fee_wei.get(
            key.split(":", maxsplit=1)[0], 0
        )


# --- parsing -----------------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str, *, name: str) -> Decimal:
    """`90s`, `15m`, `1h`, `1.5h`, `2d` (or bare seconds) as seconds; StressError naming `name`."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise StressError(f"{name}: expected a duration such as 90s, 15m, 1h or 2d, got {text!r}")
    seconds = Decimal(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds <= 0:
        raise StressError(f"{name}: the duration must be positive, got {text!r}")
    return seconds


def parse_percent(text: str, *, name: str) -> Decimal:
    """`-30%` as -0.3 (a trailing % is required); StressError naming `name`."""
    m = re.fullmatch(r"\s*([+-]?\d+(?:\.\d+)?)\s*%\s*", text)
    if not m:
        raise StressError(f"{name}: expected a percentage such as -30% or +25%, got {text!r}")
    return Decimal(m.group(1)) / 100


@dataclass(frozen=True, slots=True)
class _Move:
    kind: str  # crash, spike, drift
    change: Decimal  # the whole move (crash, spike) or per hour (drift), as a fraction
    seconds: Decimal

    def factor(self, t: Decimal) -> Decimal:
        """The price at `t` seconds into the move, as a multiple of its start."""
        t = min(t, self.seconds)
        with localcontext(CONTEXT):
            if self.kind == "drift":
                return (1 + self.change) ** (t / 3600)
            return 1 + self.change * t / self.seconds

    def describe(self) -> str:
        pct = f"{(self.change * 100).normalize():+f}%"
        if self.kind == "drift":
            return f"drift {pct}/h for {_span(self.seconds)}"
        return f"{self.kind} {pct} over {_span(self.seconds)}"


def _span(seconds: Decimal) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds.normalize():f}s"


def parse_move(text: str, *, name: str = "--path") -> tuple[str | None, _Move]:
    """`[MARKET=]crash:-30%:1h`, `spike:+25%:15m`, `drift:-2%/h:24h` -> (market or None for
    every market, the move)."""
    market: str | None = None
    spec = text.strip()
    if "=" in spec:
        market, _, spec = spec.partition("=")
        market = market.strip().upper()
        if not re.fullmatch(r"[A-Z0-9.+_-]{1,32}", market):
            raise StressError(f"{name}: {text!r}: expected MARKET=SCENARIO, e.g. ETH=crash:-30%:1h")
    parts = [p.strip() for p in spec.split(":")]
    if len(parts) != 3 or parts[0] not in ("crash", "spike", "drift"):
        raise StressError(
            f"{name}: {text!r}: expected crash:-PCT%:DURATION, spike:+PCT%:DURATION or "
            "drift:PCT%/h:DURATION (optionally MARKET= first)"
        )
    kind, amount, span = parts
    seconds = parse_duration(span, name=f"{name} {text!r}")
    if kind == "drift":
        if not amount.endswith("/h"):
            raise StressError(f"{name}: {text!r}: a drift is a rate per hour, such as -2%/h")
        change = parse_percent(amount[:-2], name=f"{name} {text!r}")
    else:
        change = parse_percent(amount, name=f"{name} {text!r}")
        if kind == "crash" and change >= 0:
            raise StressError(f"{name}: {text!r}: a crash falls: give a negative percentage")
        if kind == "spike" and change <= 0:
            raise StressError(f"{name}: {text!r}: a spike rises: give a positive percentage")
    if change <= -1:
        raise StressError(f"{name}: {text!r}: a price cannot fall by 100% or more")
    return market, _Move(kind, change, seconds)


# --- the price path ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PricePath:
    """The price of each market (by index token symbol) at each price block after the read;
    a market the path does not name keeps its price."""

    steps: tuple[Mapping[str, Decimal], ...]
    description: str

    def __post_init__(self) -> None:
        if not self.steps:
            raise StressError("path: it has no price blocks")
        if len(self.steps) > MAX_BLOCKS:
            raise StressError(
                f"path: {len(self.steps)} price blocks, more than {MAX_BLOCKS}: give a larger "
                "--block-time (the keeper then looks less often) or a shorter path"
            )

    @classmethod
    def of_steps(cls, steps: Sequence[Mapping[str, Decimal]], description: str) -> PricePath:
        """A path given block by block (`keeper.demo.price_path()[1:]`, say)."""
        return cls(tuple({k.upper(): v for k, v in s.items()} for s in steps), description)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted({s for step in self.steps for s in step}))


def start_marks(snapshot: Snapshot) -> dict[str, Decimal]:
    """Each index token's mark in the snapshot (the first market's, where several share one)."""
    out: dict[str, Decimal] = {}
    for m in snapshot.markets:
        out.setdefault(m.index_token.symbol.upper(), m.mark_price.value)
    return out


def _read_csv(
    path: Path, marks: Mapping[str, Decimal]
) -> tuple[list[Decimal], dict[str, list[Decimal]]]:
    """The CSV's times (seconds from its first row) and prices per market column."""
    name = f"--path-csv {path}"
    try:
        with path.open(newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except OSError as exc:
        raise StressError(f"{name}: cannot read it: {exc.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise StressError(f"{name}: not a CSV file: {exc}") from None
    if len(rows) < 3:
        raise StressError(
            f"{name}: expected a header (timestamp, MARKET, ...) and at least two rows"
        )
    header = [h.strip() for h in rows[0]]
    if header[0].lower() not in ("timestamp", "time"):
        raise StressError(f"{name}: the first column must be timestamp, got {header[0]!r}")
    symbols = [h.upper() for h in header[1:]]
    if not symbols or len(set(symbols)) != len(symbols):
        raise StressError(f"{name}: expected one column per market after timestamp, each once")
    for s in symbols:
        if s not in marks:
            raise StressError(f"{name}: column {s}: no watched market has index token {s}")
    times: list[Decimal] = []
    prices: dict[str, list[Decimal]] = {s: [] for s in symbols}
    for line, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise StressError(
                f"{name}: line {line}: expected {len(header)} columns, got {len(row)}"
            )
        times.append(_timestamp(row[0].strip(), f"{name}: line {line}: timestamp"))
        if len(times) > 1 and times[-1] <= times[-2]:
            raise StressError(f"{name}: line {line}: timestamps must increase")
        for s, cell in zip(symbols, row[1:], strict=True):
            try:
                price = Decimal(cell.strip())
            except InvalidOperation:
                price = Decimal(-1)
            if not price.is_finite() or price <= 0:
                raise StressError(f"{name}: line {line}: {s}: expected a price > 0, got {cell!r}")
            prices[s].append(price)
    return [t - times[0] for t in times], prices


def _timestamp(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
        if value.is_finite():
            return value
    except InvalidOperation:
        pass
    try:
        return Decimal(int(datetime.fromisoformat(text).timestamp()))
    except ValueError:
        raise StressError(f"{name}: expected unix seconds or an ISO time, got {text!r}") from None


def _interpolate(times: Sequence[Decimal], values: Sequence[Decimal], t: Decimal) -> Decimal:
    if t >= times[-1]:
        return values[-1]
    i = max(k for k in range(len(times)) if times[k] <= t)
    span = times[i + 1] - times[i]
    with localcontext(CONTEXT):
        return values[i] + (values[i + 1] - values[i]) * (t - times[i]) / span


def build_path(
    marks: Mapping[str, Decimal],
    *,
    block_seconds: Decimal,
    moves: Sequence[str] = (),
    csv_path: Path | None = None,
    noise: Decimal | None = None,
    seed: int | None = None,
) -> PricePath:
    """The path from `--path` specs (per market, or for every market of `marks`; a market's
    specs run one after the other), a `--path-csv` file (absolute prices, linearly
    interpolated at each block's time) and seeded noise (a random walk of at most `noise` of
    the price per block, drawn in millionths: no float). StressError naming the argument."""
    if not moves and csv_path is None:
        raise StressError("--path: give a scenario (e.g. --path crash:-30%:1h) or --path-csv")
    per_market: dict[str, list[_Move]] = {}
    common: list[_Move] = []
    for text in moves:
        market, move = parse_move(text)
        if market is None:
            common.append(move)
        elif market not in marks:
            known = ", ".join(sorted(marks)) or "none"
            raise StressError(f"--path: {text!r}: no watched market {market} (markets: {known})")
        else:
            per_market.setdefault(market, []).append(move)
    plans: dict[str, list[_Move]] = {}
    if common:
        plans = {s: list(common) for s in marks}
    plans.update(per_market)
    csv_times: list[Decimal] = []
    csv_prices: dict[str, list[Decimal]] = {}
    if csv_path is not None:
        csv_times, csv_prices = _read_csv(csv_path, marks)
        both = sorted(set(csv_prices) & set(per_market))
        if both:
            raise StressError(f"--path-csv: {', '.join(both)} also has a --path scenario")
        for s in csv_prices:
            plans.pop(s, None)
    total = max(
        [sum((m.seconds for m in p), Decimal(0)) for p in plans.values()]
        + ([csv_times[-1]] if csv_times else [])
    )
    count = int((total / block_seconds).to_integral_value(rounding="ROUND_CEILING"))
    if count > MAX_BLOCKS:
        raise StressError(
            f"--path: {count} blocks of {block_seconds.normalize():f} s, more than "
            f"{MAX_BLOCKS}: give a larger --block-time (the keeper then looks less often)"
        )
    if noise is not None and not Decimal(0) < noise < 1:
        raise StressError(f"--noise: expected a percentage in (0%, 100%), got {noise * 100}%")
    rng = random.Random(0 if seed is None else seed) if noise is not None else None
    span = int(noise * 1_000_000) if noise is not None else 0
    walk = dict.fromkeys(marks, Decimal(1))
    steps: list[dict[str, Decimal]] = []
    for i in range(1, count + 1):
        t = min(block_seconds * i, total)
        step: dict[str, Decimal] = {}
        for symbol, plan in plans.items():
            factor, start = Decimal(1), Decimal(0)
            for move in plan:
                factor *= move.factor(max(Decimal(0), t - start))
                start += move.seconds
            step[symbol] = marks[symbol] * factor
        for symbol, series in csv_prices.items():
            step[symbol] = _interpolate(csv_times, series, t)
        if rng is not None:
            for symbol in sorted(marks):
                walk[symbol] *= 1 + Decimal(rng.randint(-span, span)) / 1_000_000
                step[symbol] = step.get(symbol, marks[symbol]) * walk[symbol]
        steps.append(
            {s: p.quantize(Decimal("1e-18"), rounding=ROUND_DOWN) for s, p in step.items()}
        )
    parts = [f"{s} {'; '.join(m.describe() for m in p)}" for s, p in sorted(per_market.items())]
    if common:
        parts.insert(0, "every market: " + "; ".join(m.describe() for m in common))
    if csv_path is not None:
        parts.append(f"{', '.join(csv_prices)} from {csv_path.name}")
    if noise is not None:
        parts.append(f"noise up to {(noise * 100).normalize():f}% a block (seed {seed or 0})")
    return PricePath(tuple(steps), "; ".join(parts))


# --- the simulation ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimAction:
    """One action of the simulated keeper: decided on `decided_block` (price step `step`),
    included on `included_block` (None: not sent, or not carried out), and its figures."""

    subject: str  # the Subject's key (position key, or the cross account's)
    kind: str
    key: str
    step: int
    decided_block: int
    included_block: int | None
    status: str  # done, failed, obsolete, not_sent
    reason_code: str
    reason: str
    amount: str  # top-up / withdraw: tokens; reduce: size; close: ""
    spend: int  # raw units of the wallet's token (top-ups done)
    cost_usd: Usd | None  # close fee and impact of what a reduce or close took off
    gas: int
    fee_wei: int
    detail: str = ""


@dataclass
class SimRun:
    """One replay of the path: rows per price step (the demo's, for the chart), liquidations,
    the keeper's actions and alerts, and the figures of the summary."""

    keeper: bool
    result: RunResult
    actions: list[SimAction] = field(default_factory=list)
    alerts: list[tuple[int, str, str, str]] = field(default_factory=list)  # step, key, code, msg
    worst: dict[str, tuple[Decimal, int]] = field(default_factory=dict)  # key -> (ratio, step)
    shortfall: dict[str, Usd] = field(default_factory=dict)  # key -> most below the line
    liquidated_at: dict[str, Liquidation] = field(default_factory=dict)
    spend_events: list[tuple[Decimal, int]] = field(default_factory=list)  # seconds, raw
    paid_in_usd: Decimal = Decimal(0)
    paid_out_usd: Decimal = Decimal(0)
    start_equity_usd: Decimal = Decimal(0)
    end_equity_usd: Decimal = Decimal(0)
    blocks: int = 0
    end_state: dict[str, str] = field(default_factory=dict)  # key -> open/reduced/closed/...

    @property
    def pnl_usd(self) -> Decimal:
        """End equity plus what came out, less start equity and what went in (top-ups)."""
        return self.end_equity_usd + self.paid_out_usd - self.start_equity_usd - self.paid_in_usd

    def done(self, kind: str | None = None) -> list[SimAction]:
        return [a for a in self.actions if a.status == "done" and kind in (None, a.kind)]


def subjects_of(snapshot: Snapshot) -> list[Subject]:
    """What can be liquidated in the snapshot: each isolated position and each cross account,
    labelled for tables (market and side; the account when several are watched)."""
    accounts = {p.account for p in snapshot.positions}
    many = len(accounts) > 1
    out: list[Subject] = []
    for p in snapshot.positions:
        if p.mode is not MarginMode.ISOLATED:
            continue
        symbol = snapshot.market_of(p).index_token.symbol
        label = f"{symbol} {p.side.value}" + (f" {_short(p.account)}" if many else "")
        out.append(Subject(label, symbol, p.side is Side.LONG, p.key))
    for a in snapshot.accounts:
        legs = "+".join(snapshot.market_of(p).index_token.symbol for p in snapshot.positions_of(a))
        label = f"cross {legs}" + (f" {_short(a.account)}" if many else "")
        out.append(Subject(label, None, False, a.key, tuple(a.position_keys)))
    labels = [s.label for s in out]
    return [
        replace(s, label=f"{s.label} {s.key[:8]}") if labels.count(s.label) > 1 else s for s in out
    ]


def _short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def _gas_key(action: Action, snapshot: Snapshot) -> str:
    if isinstance(action, TopUp | Withdraw):
        return f"{action.kind}:{'cross' if action.scope is Scope.ACCOUNT else 'isolated'}"
    try:
        cross = snapshot.position(action.venue, action.key).mode is MarginMode.CROSS
    except KeyError:
        cross = False
    return f"{action.kind}:{'cross' if cross else 'isolated'}"


def _amount(action: Action) -> str:
    if isinstance(action, TopUp | Withdraw):
        return str(action.amount)
    if isinstance(action, Reduce):
        return str(action.size_delta)
    return ""


@dataclass
class _Pending:
    action: Action
    step: int
    block: int
    due: int
    gas: int
    fee: int


class _Sim:
    """The state of one replay: positions, accounts, wallet, history, block clock."""

    def __init__(
        self,
        snapshot: Snapshot,
        path: PricePath,
        thresholds: Thresholds,
        budget: Budget,
        chain: ChainModel,
        *,
        keeper: bool,
        liquidations: bool,
        spent_before: TokenAmount | None,
    ) -> None:
        self.path = path
        self.thresholds = thresholds
        self.budget = budget
        self.chain = chain
        self.keeper = keeper
        self.liquidations = liquidations
        self.subjects = subjects_of(snapshot)
        self.block = snapshot.block_number
        self.time0 = Decimal(snapshot.block_time)
        self.elapsed = Decimal(0)
        self.markets = {(m.venue, m.market_id): m for m in snapshot.markets}
        self.positions = {p.key: p for p in snapshot.positions}
        self.accounts = {a.key: a for a in snapshot.accounts}
        self.emptied: dict[str, CrossAccount] = {}  # cross accounts left without positions
        self.wallet = snapshot.wallet
        self.funds = None if snapshot.funds is None else dict(snapshot.funds)
        self.recent: list[RecentAction] = []
        self.pending: list[_Pending] = []
        self.run = SimRun(keeper, RunResult(keeper=keeper))
        if spent_before:
            self.run.spend_events.append((Decimal(-1), spent_before.raw))
        self.unsent: dict[str, str] = {}  # key -> kind last not sent (said once)
        self.history_blocks = 4 * max(
            1, *(t.cooldown_blocks for t in (thresholds.default, *thresholds.overrides.values()))
        )

    # -- the clock ------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        return int(self.time0 + self.elapsed)

    def next_block(self) -> None:
        """One block later: funding and borrowing accrue over the whole seconds it adds."""
        before = self.now
        self.block += 1
        self.elapsed += self.chain.block_seconds
        seconds = self.now - before
        if seconds > 0:
            for key, p in self.positions.items():
                self.positions[key] = margin.project(p, self.market_of(p), seconds)
        self.run.blocks += 1

    def market_of(self, p: Position) -> Market:
        return self.markets[(p.venue, p.market_id)]

    def set_prices(self, prices: Mapping[str, Decimal], base: Mapping[str, Decimal]) -> None:
        for k, m in self.markets.items():
            symbol = m.index_token.symbol.upper()
            if symbol not in prices:
                continue
            ratio = prices[symbol] / base[symbol] if base[symbol] else Decimal(1)
            value = self.start_mark[k] * ratio
            raw = int(value.scaleb(m.mark_price.decimals, CONTEXT).to_integral_value(ROUND_DOWN))
            self.markets[k] = replace(m, mark_price=Price(max(raw, 1), m.mark_price.decimals))
        by_token = {m.index_token.address: m.mark_price for m in self.markets.values()}
        for key, p in self.positions.items():
            price = by_token.get(p.collateral_token.address)
            if price is not None and p.mode is MarginMode.ISOLATED:
                usd = p.collateral.to_usd_floor(price, p.collateral_usd.decimals)
                self.positions[key] = replace(p, collateral_price=price, collateral_usd=usd)

    # -- views ----------------------------------------------------------------------------------

    def legs(self, account: CrossAccount) -> list[Leg]:
        return [
            (self.positions[k], self.market_of(self.positions[k])) for k in account.position_keys
        ]

    def snapshot(self) -> Snapshot:
        wallet = self.wallet
        return Snapshot(
            block_number=self.block,
            block_time=self.now,
            wallet=wallet,
            markets=tuple(self.markets.values()),
            positions=tuple(self.positions.values()),
            accounts=tuple(self.accounts.values()),
            funds=self.funds,
        )

    def equity_usd(self) -> Decimal:
        total = Decimal(0)
        for p in self.positions.values():
            if p.mode is MarginMode.ISOLATED:
                total += max(Decimal(0), margin.equity(p, self.market_of(p)).value)
        for a in self.accounts.values():
            total += max(Decimal(0), margin.cross_equity(a, self.legs(a)).value)
        for a in self.emptied.values():
            total += a.collateral_usd.value
        return total

    def liquidatable(self, s: Subject) -> bool | None:
        """None when the subject is gone (closed or liquidated)."""
        if s.cross:
            a = self.accounts.get(s.key)
            return None if a is None else margin.cross_is_liquidatable(a, self.legs(a))
        p = self.positions.get(s.key)
        return None if p is None else margin.is_liquidatable(p, self.market_of(p))

    def below_line(self, s: Subject) -> Usd | None:
        """How far equity is below what keeps the subject from liquidation (<= 0: above it)."""
        if s.cross:
            a = self.accounts.get(s.key)
            if a is None:
                return None
            legs = self.legs(a)
            eq, mm = margin.cross_equity(a, legs), margin.cross_maintenance_margin(a, legs)
            markets = [m for _, m in legs]
        else:
            p = self.positions.get(s.key)
            if p is None:
                return None
            m = self.market_of(p)
            eq, mm, markets = margin.equity(p, m), margin.maintenance_margin(p, m), [m]
        need = mm
        for m in markets:
            if m.min_collateral_usd is not None:
                need = need.max(m.min_collateral_usd)
        if any(m.strictness.value == "le" for m in markets):
            need = need + Usd(1, need.decimals)
        return need - eq

    # -- one path -------------------------------------------------------------------------------

    def go(self) -> SimRun:
        run = self.run
        base = start_marks(self.snapshot())
        self.start_mark = {k: m.mark_price.value for k, m in self.markets.items()}
        run.start_equity_usd = self.equity_usd()
        if self.keeper:
            self.keeper_rounds(0, Row(0, self.block, dict(base), {}, {}))
        for step, prices in enumerate(self.path.steps, 1):
            self.next_block()
            self.set_prices(prices, base)
            snap = self.snapshot()
            row = Row(step, self.block, dict(prices), ratios(snap, self.subjects), {})
            self.land_due(row)
            self.track(step, row)
            if self.liquidations:
                self.liquidate(step, row)
            if self.keeper:
                self.keeper_rounds(step, row)
            row.after = ratios(self.snapshot(), self.subjects)
            run.result.rows.append(row)
        self.settle()
        run.end_equity_usd = self.equity_usd()
        for s in self.subjects:
            if s.key in run.liquidated_at:
                run.end_state[s.key] = "liquidated"
            elif self.liquidatable(s) is None:
                run.end_state[s.key] = "closed"
            elif any(a.subject == s.key and a.kind == "reduce" for a in run.done()):
                run.end_state[s.key] = "reduced"
            else:
                run.end_state[s.key] = "open"
        return run

    def track(self, step: int, row: Row) -> None:
        for s in self.subjects:
            ratio = row.seen.get(s.label)
            if ratio is not None:
                worst = self.run.worst.get(s.key)
                if worst is None or ratio < worst[0]:
                    self.run.worst[s.key] = (ratio, step)
            below = self.below_line(s)
            if below is not None:
                known = self.run.shortfall.get(s.key)
                if known is None or below > known:
                    self.run.shortfall[s.key] = below

    def liquidate(self, step: int, row: Row) -> None:
        for s in self.subjects:
            if not self.liquidatable(s):
                continue
            ratio = row.seen.get(s.label)
            liq = Liquidation(step, self.block, s.label, ratio, 0)
            self.run.result.liquidations.append(liq)
            self.run.liquidated_at[s.key] = liq
            row.notes.append(f"LIQUIDATED {s.label}")
            if self.chain.inclusion is Inclusion.SERIAL:
                self.next_block()  # the liquidator's transaction is a block of its own
            if s.cross:
                account = self.accounts.pop(s.key)
                for k in account.position_keys:
                    self.positions.pop(k, None)
            else:
                self.positions.pop(s.key, None)

    # -- the keeper -----------------------------------------------------------------------------

    def history(self) -> History:
        since = self.block - self.history_blocks
        window = self.elapsed - DAY_SECONDS
        spent = sum(raw for t, raw in self.run.spend_events if t > window)
        return History(
            open_intents=frozenset(p.action.key for p in self.pending),
            recent=tuple(r for r in self.recent if r.block_number >= since),
            spent_in_window=TokenAmount(spent, self.wallet.token.decimals),
        )

    def keeper_rounds(self, step: int, row: Row) -> None:
        rounds = KEEPER_ROUNDS if self.chain.inclusion is Inclusion.SERIAL else 1
        for _ in range(rounds):
            sent = self.keeper_tick(step, row)
            if self.chain.inclusion is Inclusion.NEXT or not sent:
                return
            while self.pending:  # one transaction per block, each at these prices
                self.next_block()
                self.land_due(row, force=True)

    def keeper_tick(self, step: int, row: Row) -> int:
        """The keeper's look at the current block: decide, and send what it decides."""
        snap = self.snapshot()
        actions = decide(snap, self.thresholds, self.budget, self.history())
        sent = 0
        in_flight = {p.action.key for p in self.pending}
        due = self.block + 1
        for action in actions:
            subject = self.subject_of(action.key)
            if isinstance(action, Alert):
                self.run.alerts.append((step, subject, action.reason.code, action.reason.message))
                note = f"alert {self.label(subject)}: {action.reason.code}"
                if note not in row.notes:
                    row.notes.append(note)
                continue
            if action.key in in_flight:
                continue
            key = _gas_key(action, snap)
            gas, fee = self.chain.gas(key), self.chain.cost_wei(key)
            native = self.wallet.native_balance
            if self.chain.gas_limited and native.raw < fee:
                if self.unsent.get(action.key) == action.kind:
                    continue  # said once, as the journal records a skipped action once
                self.unsent[action.key] = action.kind
                self.record(action, step, None, "not_sent", 0, None, 0, 0,
                            f"the wallet has {native} of the native token for gas, needs "
                            f"{TokenAmount(fee, native.decimals)}")  # fmt: skip
                continue
            self.wallet = replace(
                self.wallet, native_balance=TokenAmount(native.raw - fee, native.decimals)
            )
            self.unsent.pop(action.key, None)
            self.recent.append(RecentAction(action.key, self.block, action.kind))
            self.pending.append(_Pending(action, step, self.block, due, gas, fee))
            in_flight.add(action.key)
            if self.chain.inclusion is Inclusion.SERIAL:
                due += 1
            sent += 1
        return sent

    def land_due(self, row: Row, *, force: bool = False) -> None:
        """The transactions included in this block (serial: the first one in line)."""
        while self.pending and (self.pending[0].due <= self.block or force):
            p = self.pending.pop(0)
            self.carry_out(p, row)
            if force:
                return

    def carry_out(self, p: _Pending, row: Row) -> None:
        action = p.action
        status, detail, spend, cost = self.apply(action)
        self.record(action, p.step, self.block if status != "obsolete" else None, status, spend,
                    cost, p.gas, p.fee, detail, decided=p.block)  # fmt: skip
        if status == "done":
            text = self.describe(action)
            row.notes.append(text)
            row.actions.append((action.kind, self.label(self.subject_of(action.key))))

    def record(  # noqa: PLR0917 (one action's figures)
        self,
        action: Action,
        step: int,
        included: int | None,
        status: str,
        spend: int,
        cost: Usd | None,
        gas: int,
        fee: int,
        detail: str,
        *,
        decided: int | None = None,
    ) -> None:
        self.run.actions.append(
            SimAction(
                subject=self.subject_of(action.key),
                kind=action.kind,
                key=action.key,
                step=step,
                decided_block=self.block if decided is None else decided,
                included_block=included,
                status=status,
                reason_code=action.reason.code,
                reason=action.reason.message,
                amount=_amount(action),
                spend=spend,
                cost_usd=cost,
                gas=gas,
                fee_wei=fee,
                detail=detail,
            )
        )

    def subject_of(self, key: str) -> str:
        for s in self.subjects:
            if s.owns(key):
                return s.key
        return key

    def label(self, key: str) -> str:
        return next((s.label for s in self.subjects if s.key == key), key[:10])

    def describe(self, action: Action) -> str:
        label = self.label(self.subject_of(action.key))
        if isinstance(action, TopUp | Withdraw):
            sign = "+" if isinstance(action, TopUp) else "-"
            return f"{action.kind.replace('_', '-')} {label} {sign}{action.amount}"
        if isinstance(action, Reduce):
            return f"reduce {label} -{action.size_delta}"
        return f"{action.kind} {label}"

    # -- what an action does ----------------------------------------------------------------------

    def _payer(self, account: str) -> TokenAmount | None:
        if self.funds is not None:
            return self.funds.get(account, self.wallet.balance.zero())
        if self.wallet.address.lower() == account.lower() or not _known(self.wallet.address):
            return self.wallet.balance
        return None

    def _pay(self, account: str, delta: int) -> None:
        """`delta` raw units of the wallet's token into (negative: out of) `account`'s payer."""
        zero = self.wallet.balance.zero()
        if self.funds is not None:
            have = self.funds.get(account, zero)
            self.funds[account] = TokenAmount(have.raw + delta, have.decimals)
        elif self.wallet.address.lower() == account.lower() or not _known(self.wallet.address):
            self.wallet = replace(
                self.wallet, balance=TokenAmount(self.wallet.balance.raw + delta, zero.decimals)
            )

    def _payout(self, account: str, usd: Usd, position: Position | CrossAccount) -> None:
        """What a reduce or close pays the trader, into the account's wallet when it holds the
        wallet's token (counted in the P&L whatever the token)."""
        if usd.raw <= 0:
            return
        self.run.paid_out_usd += usd.value
        if position.collateral_token == self.wallet.token and position.collateral_price.raw > 0:
            tokens = usd.to_tokens_floor(position.collateral_price, position.collateral.decimals)
            self._pay(account, tokens.raw)

    def apply(self, action: Action) -> tuple[str, str, int, Usd | None]:
        """Carry `action` out on the state: (status, detail, spend, close cost in USD)."""
        if isinstance(action, TopUp | Withdraw):
            return self._collateral(action)
        p = self.positions.get(action.key)
        if p is None:
            return "obsolete", "the position is gone", 0, None
        m = self.market_of(p)
        if isinstance(action, Reduce):
            if action.size_delta >= p.size:
                return "failed", "the cut is not smaller than the position", 0, None
            cut = replace(p, size=action.size_delta)
            cost = margin.notional(cut, m).mul_ceil(m.close_cost_rate())
            gain = margin.pnl(cut, m).max(cost.zero())
            if p.mode is MarginMode.ISOLATED:
                self.positions[p.key] = margin.after_reduce(p, m, action.size_delta)
                self._payout(p.account, gain, p)
            else:
                a = self.accounts[str(p.cross_account)]
                new_a, legs = margin.cross_after_reduce(a, self.legs(a), p.key, action.size_delta)
                self.accounts[a.key] = new_a
                for leg, _ in legs:
                    self.positions[leg.key] = leg
                self._payout(a.account, gain, a)
            return "done", "", 0, cost
        if isinstance(action, Close):
            cost = margin.notional(p, m).mul_ceil(m.close_cost_rate())
            if p.mode is MarginMode.ISOLATED:
                impact = margin.notional(p, m).mul_ceil(m.close_cost_rate() - m.close_fee_rate)
                returns = (margin.equity(p, m) - impact).max(impact.zero())
                del self.positions[p.key]
                self._payout(p.account, returns, p)
                return "done", "", 0, cost
            a = self.accounts[str(p.cross_account)]
            delta = margin.pnl(p, m) - p.fees - cost
            if (a.collateral_usd + delta).raw < 0:
                return "failed", "the cross balance cannot pay the close's loss", 0, None
            tokens = (
                delta.to_tokens_floor(a.collateral_price, a.collateral.decimals)
                if a.collateral_price.raw > 0
                else a.collateral.zero()
            )
            a = margin.add_account_collateral(a, tokens)
            a = replace(a, position_keys=tuple(k for k in a.position_keys if k != p.key))
            del self.positions[p.key]
            if a.position_keys:
                self.accounts[a.key] = a
            else:
                del self.accounts[a.key]
                self.emptied[a.key] = a
            return "done", "", 0, cost
        return "failed", f"{action.kind}: not an action the simulation carries out", 0, None

    def _collateral(self, action: TopUp | Withdraw) -> tuple[str, str, int, Usd | None]:
        top_up = isinstance(action, TopUp)
        if top_up:
            payer = self._payer(action.account)
            if payer is not None and payer < action.amount:
                return "failed", f"the wallet holds {payer}, less than the top-up", 0, None
        amount = action.amount if top_up else -action.amount
        if action.scope is Scope.ACCOUNT:
            a = self.accounts.get(action.key)
            if a is None:
                return "obsolete", "the cross account is gone", 0, None
            price = a.collateral_price
            self.accounts[a.key] = margin.add_account_collateral(a, amount)
        else:
            p = self.positions.get(action.key)
            if p is None:
                return "obsolete", "the position is gone", 0, None
            price = p.collateral_price
            self.positions[p.key] = margin.add_collateral(p, amount)
        usd = price.times(action.amount.value)
        if top_up:
            self._pay(action.account, -action.amount.raw)
            self.run.paid_in_usd += usd
            self.run.spend_events.append((self.elapsed, action.amount.raw))
            return "done", "", action.amount.raw, None
        self._pay(action.account, action.amount.raw)
        self.run.paid_out_usd += usd
        return "done", "", 0, None

    def settle(self) -> None:
        """What is still in flight at the end of the path lands in the blocks after it."""
        row = self.run.result.rows[-1] if self.run.result.rows else Row(0, self.block, {}, {}, {})
        while self.pending:
            self.next_block()
            self.land_due(row, force=self.chain.inclusion is Inclusion.SERIAL)


def _known(address: str) -> bool:
    return int(address, 16) != 0 if address.startswith("0x") else bool(address)


def simulate(
    snapshot: Snapshot,
    path: PricePath,
    thresholds: Thresholds,
    budget: Budget,
    chain: ChainModel,
    *,
    keeper: bool = True,
    liquidations: bool = True,
    spent_before: TokenAmount | None = None,
) -> SimRun:
    """Replays `path` over `snapshot` (see the module's docstring): with the keeper deciding
    through `keeper.policy.decide`, or without it; `liquidations=False` leaves liquidatable
    subjects in place (to measure how far below the line they go). `spent_before` is what
    top-ups spent in the rolling day before the read (the journal's)."""
    sim = _Sim(
        snapshot, path, thresholds, budget, chain,
        keeper=keeper, liquidations=liquidations, spent_before=spent_before,
    )  # fmt: skip
    return sim.go()


# --- sweeps ------------------------------------------------------------------------------------

_SWEEP_THRESHOLDS = (
    "top_up_below",
    "top_up_to",
    "reduce_below",
    "close_below",
    "withdraw_above",
    "hysteresis",
    "projection_seconds",
    "cooldown_blocks",
)
_SWEEP_BUDGET = ("max_top_up_per_position", "max_spend_per_day", "reserve")
MAX_SWEEP_VALUES = 100


@dataclass(frozen=True, slots=True)
class Sweep:
    """`--sweep key=a..b:step`: one setting (`thresholds.FIELD`, for the defaults and every
    market's override, or `budget.FIELD` in whole tokens) over the values a, a+step, ..., b."""

    key: str
    values: tuple[Decimal, ...]

    @property
    def section(self) -> str:
        return self.key.partition(".")[0]

    @property
    def name(self) -> str:
        return self.key.partition(".")[2]

    def thresholds(self, base: Thresholds, value: Decimal) -> Thresholds:
        """`base` with the field set to `value` everywhere; StressError when that makes a
        market's thresholds inconsistent (the message names the value and the rule)."""
        if self.section != "thresholds":
            return base
        field_value: Any = value
        if self.name in ("projection_seconds", "cooldown_blocks"):
            field_value = int(value)

        def one(t: MarketThresholds) -> MarketThresholds:
            try:
                return replace(t, **{self.name: field_value})
            except ThresholdError as exc:
                raise StressError(f"--sweep {self.key}={value}: {exc}") from None

        return Thresholds(one(base.default), {k: one(v) for k, v in base.overrides.items()})

    def budget(self, base: Budget, value: Decimal) -> Budget:
        if self.section != "budget":
            return base
        old: TokenAmount = getattr(base, self.name)
        raw = value.scaleb(old.decimals)
        if raw != raw.to_integral_value():
            raise StressError(
                f"--sweep {self.key}: {value} has more decimals than the token's {old.decimals}"
            )
        return replace(base, **{self.name: TokenAmount(int(raw), old.decimals)})


def parse_sweep(text: str) -> Sweep:
    """`thresholds.top_up_below=0.03..0.08:0.01` -> Sweep; StressError naming --sweep."""
    key, eq, spec = text.partition("=")
    key = key.strip()
    name = key.partition(".")[2]
    allowed = [f"thresholds.{n}" for n in _SWEEP_THRESHOLDS] + [
        f"budget.{n}" for n in _SWEEP_BUDGET
    ]
    if not eq or key not in allowed:
        raise StressError(
            f"--sweep: expected KEY=A..B:STEP with KEY one of {', '.join(allowed)}, got {text!r}"
        )
    m = re.fullmatch(r"\s*([0-9.]+)\s*\.\.\s*([0-9.]+)\s*:\s*([0-9.]+)\s*", spec)
    numbers: list[Decimal] = []
    if m:
        try:
            numbers = [Decimal(g) for g in m.groups()]
        except InvalidOperation:
            numbers = []
    if len(numbers) != 3:
        raise StressError(
            f"--sweep {key}: expected A..B:STEP such as 0.03..0.08:0.01, got {spec!r}"
        )
    low, high, step = numbers
    if step <= 0 or high < low:
        raise StressError(f"--sweep {key}: expected A <= B and a STEP > 0, got {spec!r}")
    count = int((high - low) / step) + 1
    if count > MAX_SWEEP_VALUES:
        raise StressError(f"--sweep {key}: {count} values, at most {MAX_SWEEP_VALUES}")
    values = tuple(low + step * i for i in range(count))
    if name in ("projection_seconds", "cooldown_blocks") and any(v != int(v) for v in values):
        raise StressError(f"--sweep {key}: a whole number of {name.split('_')[0]}s, got {spec!r}")
    return Sweep(key, values)


# --- the report --------------------------------------------------------------------------------


def _s(value: Decimal | Usd | TokenAmount | None) -> str | None:
    if value is None:
        return None
    number = value if isinstance(value, Decimal) else value.value
    text = format(number.normalize(CONTEXT), "f")
    return "0" if text in ("-0", "") else text


def _pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{(value * 100).quantize(Decimal('0.01'), ROUND_DOWN)}%"


def _usd(value: Decimal | Usd | None) -> str:
    if value is None:
        return "-"
    number = value if isinstance(value, Decimal) else value.value
    return f"{number.quantize(Decimal('0.01'), ROUND_DOWN):f}"


def _rolling_day_max(events: Sequence[tuple[Decimal, int]]) -> int:
    """The most spent inside any rolling day of the events (seconds, raw)."""
    best = 0
    for t, _ in events:
        best = max(best, sum(raw for u, raw in events if t - DAY_SECONDS < u <= t))
    return best


@dataclass(frozen=True, slots=True)
class _Setup:
    snapshot: Snapshot
    path: PricePath
    thresholds: Thresholds
    budget: Budget
    chain: ChainModel
    spent_before: TokenAmount | None


def _unbounded(setup: _Setup) -> tuple[Snapshot, Budget, ChainModel]:
    """The same book with the budget's caps and the wallet out of the way."""
    snap = setup.snapshot
    token = snap.wallet.token
    huge = TokenAmount(10 ** (token.decimals + 18), token.decimals)
    budget = Budget(huge, huge, huge.zero())
    funds = None if snap.funds is None else dict.fromkeys(snap.funds, huge)
    if funds is not None:
        for p in snap.positions:
            funds.setdefault(p.account, huge)
    wallet = replace(snap.wallet, balance=huge)
    unbounded = replace(snap, wallet=wallet, funds=funds)
    return unbounded, budget, replace(setup.chain, gas_limited=False)


def _runs(setup: _Setup, thresholds: Thresholds, budget: Budget) -> SimRun:
    return simulate(
        setup.snapshot, setup.path, thresholds, budget, setup.chain,
        spent_before=setup.spent_before,
    )  # fmt: skip


def _not_saved(run: SimRun, key: str) -> list[str]:
    """Why the keeper with this budget and wallet could not keep `key` whole."""
    why = []
    if key in run.liquidated_at:
        why.append(f"liquidated at step {run.liquidated_at[key].step}")
    codes = {
        a.reason_code for a in run.done() if a.subject == key and a.kind in ("reduce", "close")
    }
    if codes:
        why.append("reduced or closed: " + ", ".join(sorted(codes)))
    short = {code for _, k, code, _ in run.alerts if k == key and code == "budget_exhausted"}
    short |= {
        a.reason_code
        for a in run.done("top_up")
        if a.subject == key and a.reason_code == "top_up_partial"
    }
    if short and not codes and key not in run.liquidated_at:
        why.append("the budget ran short: " + ", ".join(sorted(short)))
    failed = [a for a in run.actions if a.subject == key and a.status in ("failed", "not_sent")]
    if failed:
        why.append("not carried out: " + "; ".join(f"{a.kind} ({a.detail})" for a in failed))
    return why


def report(setup: _Setup, *, sweep: Sweep | None = None) -> dict[str, Any]:
    """Both runs, the run with the budget's caps lifted for what would save the subjects the
    budget cannot, the run without liquidations for how much collateral a gap would need, and
    the sweep's runs: as JSON-ready data."""
    snap = setup.snapshot
    with_keeper = _runs(setup, setup.thresholds, setup.budget)
    without = simulate(snap, setup.path, setup.thresholds, setup.budget, setup.chain, keeper=False)
    held = simulate(
        snap, setup.path, setup.thresholds, setup.budget, setup.chain,
        keeper=False, liquidations=False,
    )  # fmt: skip
    token = snap.wallet.token
    subjects = subjects_of(snap)
    troubled = [s for s in subjects if _not_saved(with_keeper, s.key)]
    free: SimRun | None = None
    if troubled:
        u_snap, u_budget, u_chain = _unbounded(setup)
        free = simulate(u_snap, setup.path, setup.thresholds, u_budget, u_chain)
    rows = []
    for s in subjects:
        mine = [a for a in with_keeper.actions if a.subject == s.key]
        done = [a for a in mine if a.status == "done"]
        item: dict[str, Any] = {
            "subject": s.label,
            "key": s.key,
            "kind": "cross account" if s.cross else "isolated position",
            "without_keeper": _fate(without, s),
            "with_keeper": {
                **_fate(with_keeper, s),
                "end": with_keeper.end_state.get(s.key),
                "spent": str(TokenAmount(sum(a.spend for a in done), token.decimals)),
                "fees_and_impact_usd": _s(
                    sum((a.cost_usd.value for a in done if a.cost_usd is not None), Decimal(0))
                ),
                "gas": sum(a.gas for a in done),
                "gas_fees_wei": sum(a.fee_wei for a in mine if a.status != "not_sent"),
                "actions": [_action_json(a, token.decimals) for a in mine],
                "alerts": sorted({code for _, k, code, _ in with_keeper.alerts if k == s.key}),
            },
            "not_saved": _not_saved(with_keeper, s.key),
            "would_save": None,
        }
        if item["not_saved"] and free is not None:
            item["would_save"] = _would_save(free, held, s, token.decimals)
        rows.append(item)
    data: dict[str, Any] = {
        "block": snap.block_number,
        "block_time": snap.block_time,
        "venue": snap.markets[0].venue if snap.markets else None,
        "path": setup.path.description,
        "price_blocks": len(setup.path.steps),
        "block_seconds": _s(setup.chain.block_seconds),
        "inclusion": setup.chain.inclusion.value,
        "gas_price_gwei": _s(Decimal(setup.chain.gas_price_wei).scaleb(-9)),
        "wallet": {
            "address": snap.wallet.address,
            "balance": str(snap.wallet.balance),
            "token": token.symbol,
            "native_balance": str(snap.wallet.native_balance),
            "funds": None if snap.funds is None else {a: str(v) for a, v in snap.funds.items()},
        },
        "subjects": rows,
        "summary": {
            "with_keeper": _totals(with_keeper, token.decimals),
            "without_keeper": _totals(without, token.decimals),
            "liquidations_avoided": len(without.liquidated_at) - len(with_keeper.liquidated_at),
        },
        "sweep": None,
    }
    data["_runs"] = (with_keeper, without)
    if sweep is not None:
        data["sweep"] = _sweep(setup, sweep)
    return data


def _fate(run: SimRun, s: Subject) -> dict[str, Any]:
    liq = run.liquidated_at.get(s.key)
    worst = run.worst.get(s.key)
    return {
        "liquidated": None
        if liq is None
        else {"step": liq.step, "block": liq.block, "ratio": _s(liq.ratio)},
        "worst_ratio": None if worst is None else _s(worst[0]),
        "worst_step": None if worst is None else worst[1],
    }


def _action_json(a: SimAction, decimals: int) -> dict[str, Any]:
    return {
        "kind": a.kind,
        "step": a.step,
        "decided_block": a.decided_block,
        "included_block": a.included_block,
        "status": a.status,
        "amount": a.amount or None,
        "spend": str(TokenAmount(a.spend, decimals)),
        "fees_and_impact_usd": _s(a.cost_usd),
        "gas": a.gas,
        "gas_fee_wei": a.fee_wei,
        "reason_code": a.reason_code,
        "reason": a.reason,
        "detail": a.detail or None,
    }


def _totals(run: SimRun, decimals: int) -> dict[str, Any]:
    done = run.done()
    fees = sum(a.fee_wei for a in run.actions if a.status != "not_sent")
    return {
        "liquidations": len(run.liquidated_at),
        "top_ups": len(run.done("top_up")),
        "withdrawals": len(run.done("withdraw")),
        "reductions": len(run.done("reduce")),
        "closes": len(run.done("close")),
        "not_done": sum(1 for a in run.actions if a.status != "done"),
        "spent": str(TokenAmount(sum(a.spend for a in done), decimals)),
        "fees_and_impact_usd": _s(
            sum((a.cost_usd.value for a in done if a.cost_usd is not None), Decimal(0))
        ),
        "gas": sum(a.gas for a in done),
        "gas_fees_eth": _s(Decimal(fees).scaleb(-18)),
        "pnl_usd": _s(run.pnl_usd),
        "blocks": run.blocks,
    }


def _would_save(free: SimRun, held: SimRun, s: Subject, decimals: int) -> dict[str, Any]:
    """What keeps `s` whole: the top-ups the keeper makes when the budget's caps and the wallet
    do not bind, or, when even those cannot (the move outruns the keeper), the collateral it
    would need from the start."""
    top_ups = [a for a in free.done("top_up") if a.subject == s.key]
    whole = not _not_saved(free, s.key)
    out: dict[str, Any] = {
        "by_top_ups": whole,
        "top_ups": len(top_ups),
        "largest_top_up": str(TokenAmount(max((a.spend for a in top_ups), default=0), decimals)),
        "total": str(TokenAmount(sum(a.spend for a in top_ups), decimals)),
        "day_spend_all_positions": str(TokenAmount(_rolling_day_max(free.spend_events), decimals)),
        "collateral_from_start_usd": None,
    }
    below = held.shortfall.get(s.key)
    if not whole and below is not None and below.raw > 0:
        out["collateral_from_start_usd"] = _s(below)
    return out


def _sweep(setup: _Setup, sweep: Sweep) -> dict[str, Any]:
    token = setup.snapshot.wallet.token
    rows = []
    for value in sweep.values:
        th = sweep.thresholds(setup.thresholds, value)
        budget = sweep.budget(setup.budget, value)
        run = _runs(setup, th, budget)
        totals = _totals(run, token.decimals)
        rows.append({"value": _s(value), **totals})
    return {"key": sweep.key, "rows": rows}


# --- printing ----------------------------------------------------------------------------------


def print_report(data: dict[str, Any]) -> None:
    """The report as text (see `keeper stress --help`)."""
    w = data["wallet"]
    funds = w["funds"]
    payer = (
        "each account's wallet (delegated): "
        + ", ".join(f"{_short(a)} {v}" for a, v in funds.items())
        if funds is not None
        else f"{w['balance']} {w['token']} in {_short(w['address'])}"
    )
    print(f"stress at block {data['block']} ({data['venue']}): {data['path']}")
    print(
        f"  {data['price_blocks']} price blocks of {data['block_seconds']} s, inclusion "
        f"{data['inclusion']}, gas at {data['gas_price_gwei']} gwei; top-ups from {payer}"
    )
    print()
    head = ("subject", "without the keeper", "worst", "with the keeper", "worst", "end",
            "actions", "spent", "gas")  # fmt: skip
    table = []
    for r in data["subjects"]:
        wo, wi = r["without_keeper"], r["with_keeper"]
        kinds: dict[str, int] = {}
        for a in wi["actions"]:
            if a["status"] == "done":
                kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
        table.append(
            (
                r["subject"],
                _liq_text(wo["liquidated"]),
                _pct(_dec(wo["worst_ratio"])),
                _liq_text(wi["liquidated"]),
                _pct(_dec(wi["worst_ratio"])),
                wi["end"] or "-",
                ", ".join(f"{n} {k.replace('_', '-')}" for k, n in kinds.items()) or "none",
                wi["spent"],
                str(wi["gas"]),
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(n) for h, n in zip(head, widths, strict=True)).rstrip())
    for row in table:
        print("  ".join(c.ljust(n) for c, n in zip(row, widths, strict=True)).rstrip())
    s = data["summary"]
    wi, wo = s["with_keeper"], s["without_keeper"]
    print()
    print("summary                          with the keeper    without it")
    print(f"  liquidations                 {wi['liquidations']:>18}  {wo['liquidations']:>12}")
    pnl_with, pnl_without = _usd(_dec(wi["pnl_usd"])), _usd(_dec(wo["pnl_usd"]))
    print(f"  P&L over the path (USD)      {pnl_with:>18}  {pnl_without:>12}")
    print("    (equity at the end plus what came out, less equity at the start and top-ups)")
    print(f"  liquidations avoided         {s['liquidations_avoided']}")
    print(
        f"  keeper actions               {wi['top_ups']} top-ups, {wi['reductions']} reductions, "
        f"{wi['closes']} closes, {wi['withdrawals']} withdrawals ({wi['not_done']} not done)"
    )
    print(f"  collateral spent on top-ups  {wi['spent']} {w['token']}")
    print(f"  fees and impact of cuts      {_usd(_dec(wi['fees_and_impact_usd']))} USD")
    print(f"  gas                          {wi['gas']} ({wi['gas_fees_eth']} ETH)")
    actions = [(r["subject"], a) for r in data["subjects"] for a in r["with_keeper"]["actions"]]
    if actions:
        print()
        print("  step  block  included  subject          action     amount                  reason")
        for subject, a in sorted(actions, key=lambda x: (x[1]["decided_block"], x[1]["step"])):
            status = "" if a["status"] == "done" else f"  [{a['status']}: {a['detail']}]"
            print(
                f"  {a['step']:>4}  {a['decided_block']:>5}  {a['included_block']!s:>8}  "
                f"{subject:<15.15}  {a['kind']:<9}  {a['amount'] or '':<22.22}  "
                f"{a['reason_code']}{status}"
            )
    for r in data["subjects"]:
        if not r["not_saved"]:
            continue
        print()
        print(f"  {r['subject']}: not saved with this budget: {'; '.join(r['not_saved'])}")
        ws = r["would_save"]
        if ws is None:
            continue
        if ws["by_top_ups"]:
            print(
                f"    saved by top-ups with caps lifted: {ws['top_ups']} top-ups, {ws['total']} "
                f"{w['token']} in all, the largest {ws['largest_top_up']}: needs "
                f"max_top_up_per_position >= {ws['largest_top_up']} and max_spend_per_day >= "
                f"{ws['day_spend_all_positions']} (all positions), with the wallet to pay it"
            )
        elif ws["collateral_from_start_usd"] is not None:
            print(
                "    no top-up saves it (the move outruns the keeper): it needs "
                f"{_usd(_dec(ws['collateral_from_start_usd']))} USD more collateral from the "
                "start, or a smaller size"
            )
        else:
            print("    not saved even with the budget's caps lifted")
    if data["sweep"]:
        sw = data["sweep"]
        print()
        print(f"sweep {sw['key']}: liquidations and spend with the keeper, per value")
        print("  value         liquidations  top-ups  reductions  closes  spent              gas")
        for r in sw["rows"]:
            print(
                f"  {r['value']:<12}  {r['liquidations']:>12}  {r['top_ups']:>7}  "
                f"{r['reductions']:>10}  {r['closes']:>6}  {r['spent']:<17}  {r['gas']}"
            )


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _liq_text(liq: dict[str, Any] | None) -> str:
    return "survives" if liq is None else f"liquidated, step {liq['step']}"


# --- the command -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StressOptions:
    """`keeper stress`'s arguments, as given on the command line (parsed by `run_stress`)."""

    config: Path
    snapshot: Path | None = None
    paths: tuple[str, ...] = ()
    path_csv: Path | None = None
    noise: str | None = None
    seed: int | None = None
    block_time: str | None = None
    inclusion: str | None = None
    gas_price_gwei: str | None = None
    wallet_balance: str | None = None
    sweep: str | None = None
    as_json: bool = False
    chart: Path | None = None


@dataclass(frozen=True, slots=True)
class _Read:
    snapshot: Snapshot
    thresholds: Thresholds
    budget: Budget
    chain_id: int
    gas_price_wei: int | None  # None: not read (a snapshot file)
    block_seconds: Decimal | None  # measured, None: not measured
    spent_before: TokenAmount | None
    execution_fees: Mapping[str, int]
    notes: tuple[str, ...]
    source: str


def _positive_decimal(text: str, name: str, *, allow_zero: bool = False) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0 or (value == 0 and not allow_zero):
        raise StressError(
            f"{name}: expected a number {'>= 0' if allow_zero else '> 0'}, got {text!r}"
        )
    return value


def _load_snapshot_file(path: Path) -> Snapshot:
    name = f"--snapshot {path}"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise StressError(f"{name}: cannot read it: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StressError(f"{name}: not JSON: {exc}") from None
    if isinstance(data, dict) and "snapshot" in data:
        data = data["snapshot"]
    elif isinstance(data, dict) and "positions" in data and "version" not in data:
        raise StressError(
            f'{name}: no "snapshot" in it: save it with `keeper positions --config FILE '
            "--json` of this version"
        )
    try:
        return snapshot_from_json(data)
    except SnapshotFormatError as exc:
        raise StressError(f"{name}: {exc}") from None


def _from_file(config: Config, path: Path) -> _Read:
    from keeper.runtime import thresholds_for  # noqa: PLC0415 (venues and web3: slow to import)

    snap = _load_snapshot_file(path)
    if not snap.markets:
        raise StressError(f"--snapshot {path}: no markets in it")
    token = snap.wallet.token
    wanted = config.budget.token
    if wanted is not None and wanted.lower() not in (token.symbol.lower(), token.address.lower()):
        raise StressError(
            f"budget.token: {wanted}, but the snapshot's wallet holds {token.symbol} "
            f"({token.address})"
        )
    budget = config.budget.in_units(token.decimals, source=config.source)
    notes = ("read from a file: gas is priced at --gas-price-gwei (default 0)",)
    return _Read(
        snap, thresholds_for(config, snap.markets[0].venue), budget, config.chain.chain_id,
        None, None, None, {}, notes, str(path),
    )  # fmt: skip


async def _from_chain(config: Config) -> _Read:
    import os  # noqa: PLC0415

    from keeper.client import Client  # noqa: PLC0415 (web3: slow to import)
    from keeper.loop import history_from_journal  # noqa: PLC0415
    from keeper.signer import SignerError  # noqa: PLC0415

    notes: list[str] = []
    try:
        client = await Client.from_config(config.source)
    except SignerError as exc:  # the key is not needed to simulate: read as an observer
        notes.append(f"the key could not be loaded ({exc}): no wallet; see --wallet-balance")
        env = {**os.environ, "KEEPER__KEEPER__MODE": "observer", "KEEPER__SIGNER__SOURCE": "none"}
        client = await Client.from_config(config.source, environ=env)
    async with client:
        snap = await client.snapshot()
        assert client.thresholds is not None
        assert client.budget is not None
        head = await client.rpc.get_block(snap.block_number)
        tip = config.chain.max_priority_fee_per_gas
        base = head.base_fee or 0
        gas_price = min(base + tip, config.chain.max_fee_per_gas)
        seconds: Decimal | None = None
        span = min(1000, head.number)
        if span >= 10 and config.chain.chain_id not in DEVNET_CHAIN_IDS:
            earlier = await client.rpc.get_block(head.number - span)
            if head.timestamp > earlier.timestamp:
                seconds = Decimal(head.timestamp - earlier.timestamp) / span
        fees: dict[str, int] = {}
        estimate = getattr(client.venue, "estimate_execution_fee", None)
        if callable(estimate):  # GMX: every order pays the venue's keepers an execution fee
            from keeper.venues.gmx_math import OrderType  # noqa: PLC0415

            increase = await estimate(OrderType.MARKET_INCREASE, gas_price)
            decrease = await estimate(OrderType.MARKET_DECREASE, gas_price)
            fees = {"top_up": increase, "withdraw": decrease, "reduce": decrease, "close": decrease}
        spent: TokenAmount | None = None
        if client.signer is not None and client.wallet_token is not None:
            history = history_from_journal(
                client.journal, client.venue.name, client.wallet_token.address,
                client.budget.reserve.decimals, since_block=snap.block_number,
            )  # fmt: skip
            spent = history.spent_in_window
            if spent:
                notes.append(f"the journal's top-ups of the last day ({spent}) count against it")
        return _Read(
            snap, client.thresholds, client.budget, config.chain.chain_id, gas_price, seconds,
            spent, fees, tuple(notes), "chain",
        )  # fmt: skip


def _setup(options: StressOptions, config: Config, read: _Read) -> tuple[_Setup, list[str]]:
    notes = list(read.notes)
    snap = read.snapshot
    if options.block_time is not None:
        seconds = _positive_decimal(options.block_time, "--block-time")
    elif read.block_seconds is not None:
        seconds = read.block_seconds
        notes.append(f"blocks {seconds.normalize():f} s apart (the chain's last 1000 blocks)")
    else:
        seconds = DEVNET_BLOCK_SECONDS
        notes.append(f"blocks {seconds} s apart (assumed; --block-time sets it)")
    devnet = read.chain_id in DEVNET_CHAIN_IDS
    if options.inclusion is None:
        inclusion = Inclusion.SERIAL if devnet else Inclusion.NEXT
    else:
        try:
            inclusion = Inclusion(options.inclusion)
        except ValueError:
            raise StressError(
                f"--inclusion: expected next or serial, got {options.inclusion!r}"
            ) from None
    if options.gas_price_gwei is not None:
        gwei = _positive_decimal(options.gas_price_gwei, "--gas-price-gwei", allow_zero=True)
        gas_price = int(gwei * 10**9)
    else:
        gas_price = read.gas_price_wei or 0
    token = snap.wallet.token
    if options.wallet_balance is not None:
        amount = _positive_decimal(options.wallet_balance, "--wallet-balance", allow_zero=True)
        raw = amount.scaleb(token.decimals)
        if raw != raw.to_integral_value():
            raise StressError(
                f"--wallet-balance: {amount} has more decimals than {token.symbol}'s "
                f"{token.decimals}"
            )
        balance = TokenAmount(int(raw), token.decimals)
        funds = None if snap.funds is None else dict.fromkeys(snap.funds, balance)
        snap = replace(snap, wallet=replace(snap.wallet, balance=balance), funds=funds)
    elif not _known(snap.wallet.address) and snap.funds is None:
        notes.append("no wallet is known (no key): top-ups cannot be paid; see --wallet-balance")
    venue = snap.markets[0].venue if snap.markets else ""
    chain = ChainModel(
        block_seconds=seconds,
        inclusion=inclusion,
        gas_price_wei=gas_price,
        gas_per_action=GAS_PER_ACTION.get(venue, {}),
        extra_fee_wei=read.execution_fees,
        gas_limited=_known(snap.wallet.address),
    )
    noise = None if options.noise is None else parse_percent(options.noise, name="--noise")
    if noise is not None and noise <= 0:
        raise StressError(f"--noise: expected a positive percentage, got {options.noise!r}")
    if options.seed is not None and noise is None:
        raise StressError("--seed: goes with --noise (the seed of its random walk)")
    path = build_path(
        start_marks(snap),
        block_seconds=seconds,
        moves=options.paths,
        csv_path=options.path_csv,
        noise=noise,
        seed=options.seed,
    )
    return _Setup(snap, path, read.thresholds, read.budget, chain, read.spent_before), notes


def _chart(out: Path, setup: _Setup, data: dict[str, Any], runs: tuple[SimRun, SimRun]) -> Path:
    from keeper.demo_chart import write_chart  # noqa: PLC0415 (matplotlib: slow to import)

    snap = setup.snapshot
    base = start_marks(snap)
    symbols = [s for s in setup.path.symbols if s in base] or sorted(base)
    prices = [{s: base[s] for s in symbols}]
    for step in setup.path.steps:
        prices.append({s: step.get(s, prices[-1][s]) for s in symbols})
    maintenance: dict[Decimal, list[str]] = {}
    for m in snap.markets:
        if any(p.market_id == m.market_id for p in snap.positions):
            maintenance.setdefault(m.maintenance_rate, []).append(m.index_token.symbol)
    lines = [(rate, f"{'/'.join(sorted(set(n)))} maintenance") for rate, n in maintenance.items()]
    with_keeper, without = runs
    return write_chart(
        out, prices, subjects_of(snap), with_keeper.result, without.result,
        thresholds=setup.thresholds.default, maintenance=lines,
        title=f"keeper stress: {setup.path.description}"[:110],
        xlabel=f"price block ({setup.chain.block_seconds.normalize():f} s each)",
    )  # fmt: skip


def run_stress(options: StressOptions) -> int:
    """`keeper stress`: prints the report; the exit status (0 done, 1 the chain could not be
    read, 2 bad arguments, config or snapshot file)."""
    from keeper.chain.jsonrpc import RpcError  # noqa: PLC0415
    from keeper.config import load  # noqa: PLC0415
    from keeper.runtime import StartError  # noqa: PLC0415
    from keeper.signer import SignerError  # noqa: PLC0415
    from keeper.venues.base import VenueError  # noqa: PLC0415

    started = time.monotonic()
    try:
        config = load(options.config)
        sweep = parse_sweep(options.sweep) if options.sweep is not None else None
        if options.chart is not None and options.chart.suffix.lower() != ".png":
            raise StressError(f"--chart: expected a .png file name, got {options.chart}")
        if options.snapshot is not None:
            read = _from_file(config, options.snapshot)
        else:
            read = asyncio.run(_from_chain(config))
        setup, notes = _setup(options, config, read)
        data = report(setup, sweep=sweep)
    except (StressError, ConfigError) as exc:
        print(f"keeper stress: {exc}", file=sys.stderr)
        return 2
    except (StartError, SignerError, RpcError, VenueError) as exc:
        print(f"keeper stress: cannot read the positions: {exc}", file=sys.stderr)
        return 1
    runs = data.pop("_runs")
    data["source"] = read.source
    data["notes"] = notes
    data["chart"] = None
    if options.chart is not None:
        options.chart.parent.mkdir(parents=True, exist_ok=True)
        data["chart"] = str(_chart(options.chart, setup, data, runs))
    data["seconds"] = round(time.monotonic() - started, 2)
    if options.as_json:
        print(json.dumps(data, indent=2))
        return 0
    print_report(data)
    for note in notes:
        print(f"note: {note}")
    if data["chart"]:
        print(f"chart: {data['chart']}")
    print(f"done in {data['seconds']}s")
    return 0
