"""`keeper demo`: the keeper protecting a trader's positions through a sharp price move on a
local devnet, beside the same price path without it.

It starts Anvil, deploys the reference exchange (keeper.testing.devnet), opens an isolated
ETH long and BTC short at different leverages and a cross account with an ETH and a BTC leg,
then pushes a price path: a drift, then a sharp fall in ETH and spike in BTC. Every price step
is one block. A liquidator looks at every price block and liquidates whatever it can; then the
real keeper (Keeper, ReferenceVenue, TxManager, Journal in a temp dir) ticks on each new block
in this process, so the run is deterministic and fast. The keeper never holds the trader's
key: the trader approved the keeper's key as an operator (PerpExchange.approveOperator),
which tops up from the trader's wallet, reduces and closes, every payout to the trader. The
chain is then reverted to a snapshot taken before the path and the same prices are replayed
with no keeper.

Money is exact (integers with their decimals); floats appear only at the chart's boundary.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from web3.types import TxParams

from keeper import margin
from keeper.chain.blocks import BlockStream, NewHead
from keeper.chain.jsonrpc import RpcError
from keeper.chain.rpc import FailoverRpc
from keeper.journal import IntentStatus, Journal
from keeper.loop import Keeper, LoopSettings, TickReport
from keeper.margin import Metric
from keeper.model import Action, Alert, Close, MarginMode, Reduce, Severity, Snapshot, TopUp
from keeper.policy import Budget, MarketThresholds, Thresholds
from keeper.signer import Signer
from keeper.testing.anvil import Anvil
from keeper.testing.devnet import FEED_DECIMALS, USDC_DECIMALS, Devnet, DevnetError, deploy, scaled
from keeper.txs import FeePolicy, TxConfig, TxManager
from keeper.units import TokenAmount
from keeper.venues.base import VenueError, Watch
from keeper.venues.reference import ReferenceVenue

__all__ = [
    "DEMO_BUDGET",
    "DEMO_THRESHOLDS",
    "DemoError",
    "DemoOptions",
    "price_path",
    "run_demo",
]

ETH, BTC = "ETH", "BTC"
BLOCK_SECONDS = 2
USDC = 10**USDC_DECIMALS

DEMO_THRESHOLDS = Thresholds(
    MarketThresholds(
        top_up_below=Decimal("0.06"),
        top_up_to=Decimal("0.10"),
        reduce_below=Decimal("0.045"),
        close_below=Decimal("0.035"),
        metric=Metric.RATIO,
        cooldown_blocks=2,
    ),
)
"""Margin ratio thresholds (equity / notional); maintenance is 2.5% (ETH) and 2% (BTC)."""

DEMO_BUDGET = Budget(
    max_top_up_per_position=TokenAmount(1_200 * USDC, USDC_DECIMALS),
    max_spend_per_day=TokenAmount(3_500 * USDC, USDC_DECIMALS),
    reserve=TokenAmount(1_000 * USDC, USDC_DECIMALS),
)
"""What the keeper may spend on top-ups: beyond it, it reduces or closes instead."""


class DemoError(RuntimeError):
    """The demo could not run: the message says what failed."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    out: Path | None = None  # where the chart goes (None: a fresh temp dir)
    chart: bool = True
    seed: int | None = None  # noise on the path (None: the path as designed)
    as_json: bool = False  # print the summary as one JSON object (and no table)


# --- the price path ---------------------------------------------------------------------------

# (ETH move, BTC move) per block, in per mille of the previous price
_DESIGN: tuple[tuple[int, int], ...] = (
    (0, 0), (0, 0),  # calm
    (-3, 2), (2, -1), (-4, 3), (-2, 2), (-6, 4), (-5, 3), (-8, 6), (-6, 5),  # a drift
    (-18, 12), (-22, 15), (-25, 16), (-22, 15), (-15, 10),  # the sharp move
    (-5, 3), (4, -3),  # the bottom
    (15, -10), (20, -12), (18, -12), (12, -8), (10, -6), (5, -3), (0, 0),  # the rebound
)  # fmt: skip


def price_path(seed: int | None = None) -> list[dict[str, Decimal]]:
    """Prices per step, exact to the cent: the design, plus seeded noise when `seed` is given."""
    rng = random.Random(seed) if seed is not None else None
    eth, btc = Decimal(2000), Decimal(60000)
    path = [{ETH: eth, BTC: btc}]
    for d_eth, d_btc in _DESIGN:
        if rng is not None:
            d_eth += rng.randint(-3, 3)
            d_btc += rng.randint(-2, 2)
        eth = (eth * (1000 + d_eth) / 1000).quantize(Decimal("0.01"))
        btc = (btc * (1000 + d_btc) / 1000).quantize(Decimal("0.01"))
        path.append({ETH: eth, BTC: btc})
    return path


# --- what is watched ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subject:
    """One thing that can be liquidated: an isolated position, or the cross account."""

    label: str
    symbol: str | None  # isolated: its market; cross: None
    long: bool
    key: str  # isolated: the position key (0x...); cross: the account address
    leg_keys: tuple[str, ...] = ()

    @property
    def cross(self) -> bool:
        return self.symbol is None

    def owns(self, key: str) -> bool:
        return key.lower() == self.key.lower() or key.lower() in {k.lower() for k in self.leg_keys}


def open_positions(devnet: Devnet) -> list[Subject]:
    """The trader's book: ETH long 12x and BTC short 8x isolated, and a cross account."""
    trader = devnet.account("trader")
    eth_long = devnet.open_isolated(trader, ETH, long=True, collateral="1667", size="10")
    btc_short = devnet.open_isolated(trader, BTC, long=False, collateral="3750", size="0.5")
    devnet.deposit_cross(trader, "4000")
    leg_eth = devnet.open_cross(trader, ETH, long=True, size="8")
    leg_btc = devnet.open_cross(trader, BTC, long=False, size="0.3")
    return [
        Subject("ETH long 12x", ETH, True, "0x" + eth_long.hex()),
        Subject("BTC short 8x", BTC, False, "0x" + btc_short.hex()),
        Subject(
            "cross ETH+BTC",
            None,
            False,
            trader.address,
            ("0x" + leg_eth.hex(), "0x" + leg_btc.hex()),
        ),
    ]


def ratios(snapshot: Snapshot, subjects: Sequence[Subject]) -> dict[str, Decimal | None]:
    """Each subject's margin ratio in the snapshot (None: closed or liquidated)."""
    out: dict[str, Decimal | None] = {}
    for s in subjects:
        value: Decimal | None = None
        if s.cross:
            for a in snapshot.accounts:
                if a.account.lower() == s.key.lower():
                    legs = [(p, snapshot.market_of(p)) for p in snapshot.positions_of(a)]
                    if legs:
                        value = margin.cross_margin_ratio(a, legs)
        else:
            for p in snapshot.positions:
                if p.key.lower() == s.key.lower() and p.mode is MarginMode.ISOLATED:
                    value = margin.margin_ratio(p, snapshot.market_of(p))
        out[s.label] = value
    return out


def account_value(snapshot: Snapshot, trader: str) -> int:
    """The trader's USDC (6 decimals): wallet, plus what closing everything would return."""
    total = snapshot.wallet.balance.raw
    decimals = snapshot.wallet.balance.decimals
    for p in snapshot.positions:
        if p.account.lower() == trader.lower() and p.mode is MarginMode.ISOLATED:
            total += max(0, margin.equity(p, snapshot.market_of(p)).rescale_floor(decimals).raw)
    for a in snapshot.accounts:
        if a.account.lower() == trader.lower():
            legs = [(p, snapshot.market_of(p)) for p in snapshot.positions_of(a)]
            equity = margin.cross_equity(a, legs) if legs else None
            total += max(0, equity.rescale_floor(decimals).raw) if equity else a.collateral.raw
    return total


# --- one run of the path --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Liquidation:
    step: int
    block: int
    subject: str
    ratio: Decimal | None  # its margin ratio at the price block
    gas_used: int


@dataclass(frozen=True, slots=True)
class ActionDone:
    """One of the keeper's actions, from its journal and its receipt."""

    kind: str
    subject: str
    status: str
    trigger_step: int
    trigger_block: int  # the price block that triggered it
    included_block: int | None
    gas_used: int
    fee_wei: int
    spend: int  # USDC raw (top-ups)
    detail: str

    @property
    def blocks_to_inclusion(self) -> int | None:
        if self.included_block is None:
            return None
        return self.included_block - self.trigger_block


@dataclass
class Row:
    step: int
    block: int
    prices: dict[str, Decimal]
    seen: dict[str, Decimal | None]  # ratios at the price block
    after: dict[str, Decimal | None]  # ratios at the end of the step
    notes: list[str] = field(default_factory=list)
    actions: list[tuple[str, str]] = field(default_factory=list)  # (kind, subject)


@dataclass
class RunResult:
    keeper: bool
    rows: list[Row] = field(default_factory=list)
    liquidations: list[Liquidation] = field(default_factory=list)
    actions: list[ActionDone] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    start_value: int = 0
    end_value: int = 0
    seconds: float = 0.0


@dataclass
class _Events:
    """The loop's reports, kept for the table."""

    alerts: list[tuple[str, Severity, str]] = field(default_factory=list)

    def tick_done(self, report: TickReport) -> None:
        return None

    def alert(self, code: str, severity: Severity, message: str, *, key: str = "") -> None:
        self.alerts.append((code, severity, message))


class _Run:
    """Drives one pass over the path, with the keeper or without it."""

    def __init__(
        self,
        *,
        devnet: Devnet,
        subjects: Sequence[Subject],
        venue: ReferenceVenue,
        stream: BlockStream,
        keeper: Keeper | None,
        events: _Events,
        printer: _Printer | None,
    ) -> None:
        self.devnet = devnet
        self.subjects = subjects
        self.venue = venue
        self.stream = stream
        self.keeper = keeper
        self.events = events
        self.printer = printer
        self.trader = devnet.account("trader")
        self.watch = Watch((self.trader.address,), self.trader.address)
        self.result = RunResult(keeper=keeper is not None)
        self.symbols = {str(i): s for s, i in devnet.deployment.market_ids.items()}
        self.price_blocks: list[int] = []

    async def go(self, path: Sequence[dict[str, Decimal]]) -> RunResult:
        started = time.monotonic()
        head = await self.stream.poll_once()
        if self.keeper is not None and head is not None:
            await self.keeper.tick(head)
        start = await self.venue.read(self.watch)
        self.result.start_value = account_value(start.snapshot, self.trader.address)
        for step, prices in enumerate(path[1:], 1):
            await self.step(step, prices)
        await self.settle()
        end = await self.venue.read(self.watch)
        self.result.end_value = account_value(end.snapshot, self.trader.address)
        if self.keeper is not None:
            self.result.actions = self.collect_actions()
        self.result.alerts = [f"{code}: {message}" for code, _, message in self.events.alerts]
        self.result.seconds = time.monotonic() - started
        return self.result

    async def step(self, step: int, prices: dict[str, Decimal]) -> None:
        block = set_prices(self.devnet, prices)
        self.price_blocks.append(block)
        seen = ratios((await self.venue.read(self.watch, block=block)).snapshot, self.subjects)
        row = Row(step, block, prices, seen, {})
        self.liquidate(step, block, seen, row)
        if self.keeper is not None:
            await self.tick_new_blocks(row)
        row.after = ratios((await self.venue.read(self.watch)).snapshot, self.subjects)
        self.result.rows.append(row)
        if self.printer is not None:
            self.printer.row(row)

    def liquidate(self, step: int, block: int, seen: dict[str, Decimal | None], row: Row) -> None:
        """The liquidator's pass at the price block: whatever the exchange lets it take."""
        d = self.devnet
        for s in self.subjects:
            if seen[s.label] is None:
                continue
            if s.cross:
                can = bool(
                    d.lens.functions.getCrossAccount(self.trader.address).call().liquidatable
                )
            else:
                can = d.is_liquidatable(bytes.fromhex(s.key[2:]))
            if not can:
                continue
            try:
                receipt = (
                    d.liquidate_cross(self.trader.address)
                    if s.cross
                    else d.liquidate(self.trader.address, s.symbol or "", long=s.long)
                )
            except DevnetError as exc:
                row.notes.append(f"liquidation of {s.label} failed: {exc}")
                continue
            self.result.liquidations.append(
                Liquidation(step, block, s.label, seen[s.label], int(receipt["gasUsed"]))
            )
            row.notes.append(f"LIQUIDATED {s.label}")

    async def tick_new_blocks(self, row: Row) -> None:
        """The keeper ticks on each block it has not seen: the price block, then its own."""
        assert self.keeper is not None
        for _ in range(6):
            await wait_mined(self.devnet)
            head = await self.stream.poll_once()
            if not isinstance(head, NewHead):
                return
            try:
                report = await self.keeper.tick(head)
            except (RpcError, VenueError) as exc:  # as `keeper run` does: next block, again
                row.notes.append(f"tick failed: {exc}")
                continue
            self.note_report(report, row)
        await wait_mined(self.devnet)

    def note_report(self, report: TickReport, row: Row) -> None:
        for action in report.actions:
            text = describe(action, self.subjects, self.symbols)
            sent = [s for s in report.sent if s.key == action.key and s.kind == action.kind]
            if any(s.outcome in ("failed", "skipped") for s in sent):
                text += f" ({','.join(s.outcome for s in sent)})"
            elif sent:
                row.actions.append((action.kind, self.subject_of(action.key)))
            elif not isinstance(action, Alert):
                continue
            if text not in row.notes:
                row.notes.append(text)

    async def settle(self) -> None:
        """A few more blocks, so the keeper's last transactions are confirmed and recorded."""
        if self.keeper is None:
            return
        for _ in range(3):
            if not self.keeper.journal.open_intents(self.venue.name):
                return
            self.devnet.chain.mine()
            head = await self.stream.poll_once()
            if isinstance(head, NewHead):
                await self.keeper.tick(head)
            await wait_mined(self.devnet)

    def subject_of(self, key: str) -> str:
        for s in self.subjects:
            if s.owns(key):
                return s.label
        return key

    def trigger(self, block: int) -> tuple[int, int]:
        """The price step (1-based) and block at or before `block`."""
        found = (0, block)
        for i, b in enumerate(self.price_blocks, 1):
            if b <= block:
                found = (i, b)
        return found

    def collect_actions(self) -> list[ActionDone]:
        assert self.keeper is not None
        journal = self.keeper.journal
        w3 = self.devnet.w3
        out: list[ActionDone] = []
        for intent in sorted(
            journal.history(venue=self.venue.name, limit=1000), key=lambda i: i.id
        ):
            if intent.kind == "approve":
                continue
            step, trigger_block = self.trigger(intent.created_block or 0)
            gas = fee = 0
            included: int | None = None
            for tx in journal.transactions(intent.id):
                try:
                    receipt = w3.eth.get_transaction_receipt(tx.hash)  # type: ignore[arg-type]
                except Exception:  # not mined (replaced or dropped): web3 raises its own types
                    continue
                gas += int(receipt["gasUsed"])
                fee += int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
                included = int(receipt["blockNumber"])
            spend = intent.spend_amount or 0
            if intent.status is not IntentStatus.DONE:
                spend = 0
            out.append(
                ActionDone(
                    kind=intent.kind,
                    subject=self.subject_of(intent.position_key),
                    status=intent.status.value,
                    trigger_step=step,
                    trigger_block=trigger_block,
                    included_block=included,
                    gas_used=gas,
                    fee_wei=fee,
                    spend=spend,
                    detail=intent.reason or "",
                )
            )
        return out


async def wait_mined(devnet: Devnet, timeout: float = 10.0) -> None:
    """Until Anvil has mined what was sent (automine mines a moment after the send returns),
    so that reads and ticks see a chain that does not move under them."""
    deadline = time.monotonic() + timeout
    while True:
        status = devnet.chain.rpc("txpool_status")
        if int(status["pending"], 16) == 0:
            return
        if time.monotonic() > deadline:
            raise DemoError(f"transactions still pending after {timeout}s: {status}")
        await asyncio.sleep(0.005)


def set_prices(devnet: Devnet, prices: dict[str, Decimal]) -> int:
    """Every feed's new answer in one block (automine paused); that block's number."""
    chain = devnet.chain
    w3 = devnet.w3
    owner = devnet.account("owner")
    chain.rpc("evm_setAutomine", False)
    hashes = []
    try:
        nonce = w3.eth.get_transaction_count(owner.address, "pending")
        base_fee = chain.next_base_fee()
        for i, (symbol, price) in enumerate(sorted(prices.items())):
            call = devnet.feed(symbol).functions.setAnswer(
                scaled(price, FEED_DECIMALS, f"{symbol} price")
            )
            params = {
                "from": owner.address,
                "nonce": nonce + i,
                "gas": 200_000,
                "maxPriorityFeePerGas": 10**9,
                "maxFeePerGas": 2 * base_fee + 10**9,
                "chainId": w3.eth.chain_id,
                "type": 2,
            }
            tx = call.build_transaction(cast(TxParams, params))
            signed = owner.sign_transaction(cast(dict[str, Any], tx))
            hashes.append(w3.eth.send_raw_transaction(signed.raw_transaction))
        chain.mine()
    finally:
        chain.rpc("evm_setAutomine", True)
    block = 0
    for h in hashes:
        receipt = w3.eth.get_transaction_receipt(h)
        if receipt["status"] != 1:
            raise DemoError(f"setting a price reverted in block {receipt['blockNumber']}")
        block = int(receipt["blockNumber"])
    return block


def describe(action: Action, subjects: Sequence[Subject], symbols: dict[str, str]) -> str:
    """One action, short, for the table (sizes rounded down to 4 places for reading)."""
    label = next((s.label for s in subjects if s.owns(action.key)), action.key[:10])
    if isinstance(action, TopUp):
        return f"top-up {label} +{usdc(action.amount.raw)}"
    if isinstance(action, Reduce):
        size = action.size_delta.value.quantize(Decimal("0.0001"), rounding=ROUND_DOWN)
        return f"reduce {label} -{size} {symbols.get(action.market_id, action.market_id)}"
    if isinstance(action, Close):
        return f"close {label} ({symbols.get(action.market_id, action.market_id)})"
    if isinstance(action, Alert):
        return f"alert {label}: {action.reason.code}"
    return f"{action.kind} {label}"


# --- formatting ---------------------------------------------------------------------------------


def usdc(raw: int) -> str:
    """An exact USDC amount with its 6 decimals."""
    return str(TokenAmount(raw, USDC_DECIMALS))


def pct(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return f"{(value * 100).quantize(Decimal('0.01'))}%"


class _Printer:
    """The running table."""

    def __init__(self, subjects: Sequence[Subject]) -> None:
        self.subjects = subjects
        self.widths = [4, 6, 9, 10, *(max(12, len(s.label)) for s in subjects)]
        heads = ["step", "block", "ETH", "BTC", *(s.label for s in subjects)]
        print(self._line(heads) + "  actions")

    def _line(self, cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, self.widths, strict=True))

    def row(self, row: Row) -> None:
        cells = [
            str(row.step),
            str(row.block),
            f"{row.prices[ETH]:f}",
            f"{row.prices[BTC]:f}",
            *(self._ratio(row, s.label) for s in self.subjects),
        ]
        print(self._line(cells) + "  " + "; ".join(row.notes), flush=True)

    @staticmethod
    def _ratio(row: Row, label: str) -> str:
        seen, after = row.seen.get(label), row.after.get(label)
        if seen is not None and after is not None and after != seen and after > seen:
            return f"{pct(seen)}>{pct(after)}"
        return pct(seen)


# --- the summary --------------------------------------------------------------------------------


def summary(
    with_keeper: RunResult, without: RunResult, subjects: Sequence[Subject]
) -> dict[str, Any]:
    """The comparison as JSON-friendly data (amounts as exact decimal strings)."""
    done = [a for a in with_keeper.actions if a.status == IntentStatus.DONE.value]
    blocks = [a.blocks_to_inclusion for a in done if a.blocks_to_inclusion is not None]
    gas = sum(a.gas_used for a in with_keeper.actions)
    fees = sum(a.fee_wei for a in with_keeper.actions)

    def run(r: RunResult) -> dict[str, Any]:
        return {
            "liquidations": len(r.liquidations),
            "liquidated": [
                {"subject": x.subject, "step": x.step, "block": x.block, "ratio": str(x.ratio)}
                for x in r.liquidations
            ],
            "start_value_usdc": usdc(r.start_value),
            "end_value_usdc": usdc(r.end_value),
            "change_usdc": usdc(r.end_value - r.start_value),
            "seconds": round(r.seconds, 2),
        }

    return {
        "positions": [s.label for s in subjects],
        "steps": len(with_keeper.rows),
        "with_keeper": run(with_keeper),
        "without_keeper": run(without),
        "liquidations_avoided": len(without.liquidations) - len(with_keeper.liquidations),
        "top_ups": sum(1 for a in done if a.kind == "top_up"),
        "reductions": sum(1 for a in done if a.kind == "reduce"),
        "closes": sum(1 for a in done if a.kind == "close"),
        "failed_actions": sum(1 for a in with_keeper.actions if a.status != "done"),
        "collateral_spent_usdc": usdc(sum(a.spend for a in done)),
        "gas_used": gas,
        "gas_fees_eth": f"{Decimal(fees).scaleb(-18):f}",
        "blocks_to_inclusion": {
            "max": max(blocks, default=None),
            "mean": str(
                (Decimal(sum(blocks)) / len(blocks)).quantize(Decimal("0.01")) if blocks else None
            ),
        },
        "actions": [
            {
                "kind": a.kind,
                "subject": a.subject,
                "status": a.status,
                "trigger_step": a.trigger_step,
                "trigger_block": a.trigger_block,
                "included_block": a.included_block,
                "blocks_to_inclusion": a.blocks_to_inclusion,
                "gas_used": a.gas_used,
                "spend_usdc": usdc(a.spend),
                "reason": a.detail,
            }
            for a in with_keeper.actions
        ],
        "pnl_difference_usdc": usdc(with_keeper.end_value - without.end_value),
        "chart": None,
    }


def print_summary(data: dict[str, Any]) -> None:
    w, wo = data["with_keeper"], data["without_keeper"]
    print()
    print("summary                          with the keeper    without it")
    print(f"  liquidations                 {w['liquidations']:>18}  {wo['liquidations']:>12}")
    print(f"  trader's P&L over the path   {w['change_usdc']:>18}  {wo['change_usdc']:>12}  USDC")
    print("    (wallet plus what closing every position would return, end minus start)")
    print()
    print(f"  liquidations avoided         {data['liquidations_avoided']}")
    for x in wo["liquidated"]:
        print(f"    without the keeper: {x['subject']} liquidated at step {x['step']}")
    print(
        f"  keeper actions               {data['top_ups']} top-ups, {data['reductions']} "
        f"reductions, {data['closes']} closes ({data['failed_actions']} not done)"
    )
    print(f"  collateral spent on top-ups  {data['collateral_spent_usdc']} USDC")
    print(f"  gas used (receipts)          {data['gas_used']} ({data['gas_fees_eth']} ETH)")
    b = data["blocks_to_inclusion"]
    print(f"  blocks, price move -> tx     max {b['max']}, mean {b['mean']}")
    print(f"  P&L with minus without       {data['pnl_difference_usdc']} USDC")
    print()
    print("  action    position         trigger (step/block)  included  blocks  gas     spent")
    for a in data["actions"]:
        print(
            f"  {a['kind']:<9} {a['subject']:<16} {a['trigger_step']:>6} / {a['trigger_block']:<10}"
            f"  {a['included_block']!s:>8}  {a['blocks_to_inclusion']!s:>6}  "
            f"{a['gas_used']:>6}  {a['spend_usdc'] if a['kind'] == 'top_up' else '-'}"
            + ("" if a["status"] == "done" else f"  [{a['status']}]")
        )


# --- the whole demo -----------------------------------------------------------------------------


async def _build_keeper(
    devnet: Devnet, rpc: FailoverRpc, venue: ReferenceVenue, stream: BlockStream, workdir: Path
) -> tuple[Keeper, _Events]:
    d = devnet.deployment
    trader: LocalAccount = devnet.account("trader")
    journal = Journal(workdir / "journal.sqlite")
    # the keeper signs as the operator the trader approved, never with the trader's key
    signer = Signer.from_key(devnet.account("operator").key)
    txs = TxManager(rpc, journal, signer, TxConfig(chain_id=d.chain_id, fees=FeePolicy(10**11)))
    events = _Events()
    keeper = Keeper(
        venue=venue,
        rpc=rpc,
        stream=stream,
        journal=journal,
        watch=Watch(
            (trader.address,), signer.address, venue.collateral_token.address, delegated=True
        ),
        thresholds=DEMO_THRESHOLDS,
        budget=DEMO_BUDGET,
        settings=LoopSettings(
            venue_token=venue.collateral_token.address, delegation_check_blocks=10
        ),
        txs=txs,
        events=events,
    )
    return keeper, events


def setup(devnet: Devnet) -> list[Subject]:
    """The demo's book on `devnet`: blocks 2 s apart from here on (whatever the wall clock
    does: funding accrues the same each run), the trader's positions opened and the keeper's
    key approved as the trader's operator."""
    devnet.chain.rpc("anvil_setBlockTimestampInterval", BLOCK_SECONDS)
    subjects = open_positions(devnet)
    devnet.approve_operator(devnet.account("trader"))
    return subjects


async def _demo(
    devnet: Devnet, options: DemoOptions, workdir: Path, subjects: list[Subject] | None = None
) -> dict[str, Any]:
    """Both runs of the path (`subjects`: the book `setup` opened; None: set it up here)."""
    say = _say(options)
    if subjects is None:
        subjects = setup(devnet)
    path = price_path(options.seed)
    d = devnet.deployment
    snapshot = devnet.chain.snapshot()
    rpc = FailoverRpc([devnet.chain.url])
    try:
        venue = await ReferenceVenue.connect(
            rpc, exchange=d.exchange, lens=d.lens, multicall=d.multicall
        )
        stream = BlockStream(rpc, poll_interval=0.05)
        keeper, events = await _build_keeper(devnet, rpc, venue, stream, workdir)
        say(
            f"\nwith the keeper: {len(path) - 1} price blocks; ratios at each price block "
            "(a>b: restored within the step)"
        )
        printer = None if options.as_json else _Printer(subjects)
        try:
            run = _Run(
                devnet=devnet, subjects=subjects, venue=venue, stream=stream, keeper=keeper,
                events=events, printer=printer,
            )  # fmt: skip
            with_keeper = await run.go(path)
        finally:
            keeper.journal.close()
        devnet.chain.revert(snapshot)
        say("\nthe same path without the keeper (a liquidator takes what it can):")
        stream = BlockStream(rpc, poll_interval=0.05)
        printer = None if options.as_json else _Printer(subjects)
        run = _Run(
            devnet=devnet, subjects=subjects, venue=venue, stream=stream, keeper=None,
            events=_Events(), printer=printer,
        )  # fmt: skip
        without = await run.go(path)
    finally:
        await rpc.close()
    data = summary(with_keeper, without, subjects)
    if options.chart:
        out = options.out or workdir
        out.mkdir(parents=True, exist_ok=True)
        from keeper.demo_chart import write_chart  # noqa: PLC0415 (matplotlib: slow to import)

        chart = write_chart(out / "keeper-demo.png", path, subjects, with_keeper, without)
        data["chart"] = str(chart)
    return data


def _say(options: DemoOptions) -> Any:
    def say(text: str) -> None:
        if not options.as_json:
            print(text, flush=True)

    return say


def run_demo(options: DemoOptions) -> int:
    """`keeper demo`: returns the exit status (0 done, 1 could not run)."""
    say = _say(options)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="keeper-demo-") as tmp:
        workdir = Path(tmp)
        try:
            with Anvil() as anvil:
                say(f"anvil on {anvil.url}; deploying the reference exchange...")
                devnet = deploy(anvil.url)
                say(
                    f"exchange {devnet.deployment.exchange}; trader "
                    f"{devnet.deployment.trader} opens 2 isolated positions and a cross account"
                )
                options_out = options
                if options.chart and options.out is None:
                    options_out = DemoOptions(
                        out=Path(tempfile.mkdtemp(prefix="keeper-demo-out-")),
                        chart=True,
                        seed=options.seed,
                        as_json=options.as_json,
                    )
                data = asyncio.run(_demo(devnet, options_out, workdir))
        except (DemoError, DevnetError, OSError, RuntimeError) as exc:
            print(f"keeper demo: {exc}", file=sys.stderr)
            return 1
    data["seconds"] = round(time.monotonic() - started, 1)
    if options.as_json:
        print(json.dumps(data, indent=2))
        return 0
    print_summary(data)
    if data["chart"]:
        print(f"\nchart: {data['chart']}")
    print(f"done in {data['seconds']}s")
    return 0
