#!/usr/bin/env python3
"""Benchmark: how fast the keeper reacts at L2 block speed, with and without a
misbehaving endpoint, and whether the reference venue's garbage-collector pause pays.

Scenarios: interval mining at 1 s and 0.25 s blocks (Anvil's own timer: `--block-time 0.25`
works on Anvil 1.7.1; its evm_setIntervalMining takes whole seconds only) x 1, 100 and 1,000
watched positions (the trader's one, plus accounts of 20 positions each, and one of 19, made
by scripts/bench_snapshot.py's `populate`) x two endpoints, the first behind a FaultProxy
failing 0% or 20% of requests (HTTP 429 and 500, garbage, truncated answers and
5 s hangs, a third of the faults; two hangs forced after each move, as in
tests/integration/keeper/test_reaction_faulty_endpoint.py), the second direct.

Each scenario starts from the same chain state (evm_snapshot / evm_revert) and a new journal,
runs the keeper as a child process of its own (`--keeper-child`: the Keeper built as
keeper/runtime.py builds it, with the FailoverRpc of the config's [rpc], metrics recorded
but not served) and, after `--warmup-s` of blocks (so that the latency windows behind
timeouts and hedging fill; without it the first move meets a cold keeper), moves the ETH
price `--moves` times: each move takes the trader's 10x long from 8% (after the last top-up)
to a 4.5% margin ratio, which calls for a top-up; the next move comes once the keeper has
ticked on the block after the top-up's. It prints:

- blocks from the price move's block to the top-up's block (p50, p99, max);
- per tick, from the moment the block stream handed the head over: to the policy's
  decision, to the top-up's eth_sendRawTransaction leaving for the endpoints, to the first
  endpoint accepting it (p50, p99), the venue read and the whole tick;
- RPC round trips per tick, counted per request at the endpoint clients inside FailoverRpc:
  the venue read (its own count, the requests on the wire with hedges and retries, and the
  sequential rounds: the longest chain of requests each sent after the previous answered),
  the requests before the send (simulation, gas, fees, nonce, head), the sends, what follows
  in the tick (receipts), and the block stream's polls per block;
- where the head-to-sent time goes (medians over the ticks that sent a top-up);
- each of the reaction goals, met or not.

GC: at 1,000 positions and 0.25 s blocks without faults, runs with `_CollectorPause` as it
is and with it replaced by a no-op context manager (`--gc-mode off` in the child), alternated,
`--gc-runs` of each, each of `--gc-moves` moves: over 100 ticks, so that the full collection
the pause makes every 100th read is in; the medians and p99 of read time, head to decided,
head to sent and tick time, the collector's own time inside ticks (gc.callbacks), and the
saving in %.

p99 is the nearest rank: with 20 moves it is the slowest one. Times are this machine's
(2 cores, shared with the node, the proxy and whatever else runs): run it on a quiet one.

    .venv/bin/python scripts/bench_reaction.py [--quick] [--scenario PATTERN,...] [--json]
        [--save FILE] [--workdir DIR] [--moves N] [--poll-s S] [--gc-runs N] [--gc-moves N]
        [--gc-alt off|freeze] [--max-scenario-s S] [--warmup-s S] [--seed N]

Scenario names: `1s-1000-f20` (block time, positions, fault %), `0.25s-1-f0`, ..., and `gc`;
PATTERN is a glob (`'1s-*'`, `'*-f20'`, `gc`). `--quick`: 5 moves, 2 GC runs of 5 moves each
(too short to include the pause's own full collection).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import fnmatch
import gc
import json
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_snapshot

from bench_snapshot import MARKETS, PER_ACCOUNT, populate
from eth_hash.auto import keccak

import keeper.loop as loop_module
import keeper.venues.reference as reference_module
from keeper import policy
from keeper.chain.blocks import BlockStream, NewHead
from keeper.chain.jsonrpc import JsonRpc, RpcError, endpoint_label, request_data
from keeper.chain.multicall import MULTICALL3_ADDRESS
from keeper.chain.rpc import SEND_METHOD, FailoverRpc, make_endpoint
from keeper.config import Config, describe_rpc, load
from keeper.journal import open_journal
from keeper.loop import Keeper, LoopSettings, TickReport
from keeper.metrics import KeeperMetrics, MetricsSettings
from keeper.model import Severity
from keeper.runtime import (
    OpsEvents,
    key_source,
    resolve_budget,
    thresholds_for,
    timeout_policy,
    tx_config,
)
from keeper.signer import load_signer
from keeper.testing.anvil import Anvil
from keeper.testing.devnet import Devnet, MarketSpec, deploy
from keeper.testing.faultproxy import FaultProxy
from keeper.txs import TxManager
from keeper.venues.base import VenueRead, Watch
from keeper.venues.reference import ReferenceVenue

T = TypeVar("T")

BLOCK_TIMES = (1.0, 0.25)
POSITIONS = (1, 100, 1_000)
FAULT_RATES = (0, 20)
FAULT_KINDS = {"hang": 2.0, "http429": 1.0, "http500": 1.0, "garbage": 1.0, "truncated": 1.0}
HANG_S = 5.0
FORCED_HANGS = 2  # after each move, as the integration test does
TARGET_RATIO = Decimal("0.045")  # between reduce_below (4%) and top_up_below (5%)
CLOSE_FEE = Decimal("0.001")
GC_SCENARIO = "gc"
MARGIN_ADDED = "0x" + keccak(b"MarginAdded(bytes32,address,uint256,int256)").hex()


# -- the keeper child: the Keeper in a process of its own, timed ---------------------------------

PHASE: contextvars.ContextVar[str] = contextvars.ContextVar("phase", default="idle")
TICK: contextvars.ContextVar[int] = contextvars.ContextVar("tick", default=-1)


@dataclass
class TickRecord:
    """One tick's timestamps (perf_counter seconds, the child's clock) and counts."""

    block: int
    skipped: int
    head_at: float  # the block stream handed the head over
    start: float
    read_start: float | None = None
    read_end: float | None = None
    read_trips: int = 0  # the venue's own count (VenueRead.round_trips)
    decide_start: float | None = None
    decided: float | None = None
    end: float | None = None
    positions: int = 0
    actions: int = 0
    sent: list[str] = field(default_factory=list)
    gc_s: float = 0.0  # the collector's own time inside the tick
    gc_runs: list[int] = field(default_factory=lambda: [0, 0, 0])


# (tick index or -1, phase, method, endpoint index, started, ended, outcome)
Request = tuple[int, str, str, int, float, float, str]


class Recorder:
    def __init__(self) -> None:
        self.ticks: list[TickRecord] = []
        self.requests: list[Request] = []
        self.arrivals: dict[int, float] = {}
        self.gc_idle_s = 0.0
        self._gc_started = 0.0

    def on_gc(self, phase: str, info: Mapping[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        index = TICK.get()
        if index >= 0:
            rec = self.ticks[index]
            rec.gc_s += took
            rec.gc_runs[int(info.get("generation", 0))] += 1
        else:
            self.gc_idle_s += took

    def current(self) -> TickRecord | None:
        index = TICK.get()
        return self.ticks[index] if index >= 0 else None


REC = Recorder()


class CountedEndpoint:
    """An endpoint client inside FailoverRpc that records every request: which tick and phase
    sent it, when it left and came back, and how it ended."""

    def __init__(self, inner: JsonRpc, label: str, index: int) -> None:
        self.inner = inner
        self.label = label
        self.index = index

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        return await self._timed(method, self.inner.request(method, params))

    async def request_data(self, method: str, params: Sequence[Any] = ()) -> bytes:
        return await self._timed(method, request_data(self.inner, method, params))

    async def _timed(self, method: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await call
        except RpcError as exc:
            outcome = type(exc).__name__
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            REC.requests.append(
                (TICK.get(), PHASE.get(), method, self.index, started, time.perf_counter(), outcome)
            )

    async def close(self) -> None:
        closer = getattr(self.inner, "close", None)
        if closer is not None:
            await closer()


class TimedVenue(ReferenceVenue):
    async def read(self, watch: Watch, *, block: int | None = None) -> VenueRead:
        rec = REC.current()
        token = PHASE.set("read")
        started = time.perf_counter()
        try:
            out = await super().read(watch, block=block)
        finally:
            PHASE.reset(token)
        if rec is not None and rec.read_start is None:
            rec.read_start, rec.read_end = started, time.perf_counter()
            rec.read_trips = out.round_trips
        return out


class TimedStream(BlockStream):
    async def next(self) -> NewHead:
        token = PHASE.set("poll")
        try:
            head = await super().next()
        finally:
            PHASE.reset(token)
        REC.arrivals[head.number] = time.perf_counter()
        return head


class TimedKeeper(Keeper):
    async def tick(self, head: NewHead) -> TickReport:
        started = time.perf_counter()
        rec = TickRecord(head.number, head.skipped, REC.arrivals.get(head.number, started), started)
        REC.ticks.append(rec)
        tick_token = TICK.set(len(REC.ticks) - 1)
        phase_token = PHASE.set("tick")
        try:
            report = await super().tick(head)
        finally:
            rec.end = time.perf_counter()
            PHASE.reset(phase_token)
            TICK.reset(tick_token)
        rec.positions = report.positions
        rec.actions = len(report.actions)
        rec.sent = [s.outcome for s in report.sent]
        return report


class ChildEvents:
    """The loop's reports to the metrics (as `keeper run` records them), and a line per tick
    on stdout for the bench."""

    def __init__(self, inner: OpsEvents) -> None:
        self.inner = inner

    def tick_done(self, report: TickReport) -> None:
        self.inner.tick_done(report)
        print(f"tick {report.block_number}", flush=True)

    def alert(self, code: str, severity: Severity, message: str, *, key: str = "") -> None:
        self.inner.alert(code, severity, message, key=key)


def _timed_decide(inner: Any) -> Any:
    def decide(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        out = inner(*args, **kwargs)
        rec = REC.current()
        if rec is not None:
            rec.decide_start, rec.decided = started, time.perf_counter()
        return out

    return decide


def bench_rpc(config: Config) -> FailoverRpc:
    """keeper.runtime.rpc_for's FailoverRpc, over endpoint clients that record each request."""
    r = config.rpc
    timeouts = {kind: timeout_policy(t) for kind, t in r.timeouts.items()}
    backstop = max(float(t.cap_s) for t in r.timeouts.values())
    clients = [
        CountedEndpoint(
            make_endpoint(url, timeout=backstop, transport=config.chain.transport),
            endpoint_label(url),
            i,
        )
        for i, url in enumerate(config.chain.rpc)
    ]
    return FailoverRpc(
        clients,
        max_lag=config.chain.lag_blocks,
        timeouts=timeouts,
        hedge=r.hedge,
        hedge_floor=float(r.hedge_floor_s),
        broadcast=r.broadcast,
    )


async def _child(config_path: Path, out: Path, gc_mode: str) -> int:
    """The keeper, timed; `gc_mode`: "pause" (as shipped), "off" (`_CollectorPause` replaced
    by a no-op), "freeze" (a no-op too, and everything alive once the keeper is built moved
    out of the collector's sight with gc.freeze())."""
    if gc_mode in ("off", "freeze"):
        setattr(reference_module, "_COLLECTOR_PAUSE", contextlib.nullcontext())  # noqa: B010
    setattr(loop_module, "decide", _timed_decide(policy.decide))  # noqa: B010
    gc.callbacks.append(REC.on_gc)
    config = load(config_path)
    rpc = bench_rpc(config)
    addresses = config.venue.addresses
    venue = await TimedVenue.connect(
        rpc,
        exchange=addresses["exchange"],
        lens=addresses["lens"],
        multicall=config.chain.multicall or MULTICALL3_ADDRESS,
    )
    token, budget = await resolve_budget(config, venue)
    signer = load_signer(key_source(config), config.chain.chain_id)
    if signer is None:
        raise SystemExit("the bench's keeper needs a key")
    journal = open_journal(config.journal)
    txs = TxManager(rpc, journal, signer, tx_config(config), decode_error=venue.decode_error)
    metrics = KeeperMetrics(MetricsSettings(port=0), rpc_source=rpc.stats)
    stream = TimedStream(
        rpc, poll_interval=float(config.chain.poll_interval_s), heads=rpc.head_source()
    )
    keeper = TimedKeeper(
        venue=venue,
        rpc=rpc,
        stream=stream,
        journal=journal,
        watch=Watch(config.accounts, signer.address, token.address),
        thresholds=thresholds_for(config, venue.name),
        budget=budget,
        settings=LoopSettings(venue_token=token.address, halt_file=config.halt_file),
        txs=txs,
        events=ChildEvents(OpsEvents(metrics, None, rpc)),
    )
    if gc_mode == "freeze":
        gc.collect()
        gc.freeze()
    try:
        code = await keeper.run()
    finally:
        stats = [
            {
                "label": s.label,
                "requests": s.requests,
                "answers": s.answers,
                "errors": s.errors,
                "hedges": s.hedges,
                "hedge_wins": s.hedge_wins,
                "p99": s.p99,
                "timeouts": s.timeouts,
            }
            for s in rpc.stats()
        ]
        await stream.close()
        await rpc.close()
        journal.close()
        data = {
            "rpc": describe_rpc(config.rpc),
            "hedge": config.rpc.hedge,
            "broadcast": config.rpc.broadcast,
            "gc_mode": gc_mode,
            "ticks": [asdict(t) for t in REC.ticks],
            "requests": REC.requests,
            "stats": stats,
            "polls": stream.polls,
            "poll_errors": stream.errors,
            "gc_idle_s": REC.gc_idle_s,
        }
        out.write_text(json.dumps(data))
    return code


def child_main(config_path: Path, out: Path, gc_mode: str) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    return asyncio.run(_child(config_path, out, gc_mode))


# -- the bench: chain, proxy, price moves ------------------------------------------------------


class IntervalAnvil(Anvil):
    """An Anvil that mines on its own timer (`--block-time`): populate()'s automine switches
    are dropped (switching automine on would stop the timer, and a fractional interval
    cannot be set again over RPC)."""

    def rpc(self, method: str, *params: Any) -> Any:
        if method == "evm_setAutomine":
            return None
        return super().rpc(method, *params)


@dataclass
class Rig:
    """A node with the exchange, the background positions and the trader's position, at a
    snapshot each scenario starts from."""

    block_time: float
    node: Anvil
    devnet: Devnet
    accounts: list[str]  # the background accounts, PER_ACCOUNT positions each but the last
    background: int  # positions in them
    key: bytes  # the trader's ETH position
    snapshot: str = ""

    def watched(self, positions: int) -> list[str]:
        """Background accounts holding `positions` positions in all: full ones, and the last
        (partial) one when that makes the count."""
        full, rest = divmod(positions, PER_ACCOUNT)
        last = self.background - PER_ACCOUNT * (len(self.accounts) - 1) if self.accounts else 0
        whole = len(self.accounts) - (0 < last < PER_ACCOUNT)
        if full > whole or (rest and rest != last):
            raise RuntimeError(f"no background accounts hold exactly {positions} positions")
        return self.accounts[:full] + (self.accounts[-1:] if rest else [])

    def reset(self) -> None:
        if self.snapshot and not self.node.rpc("evm_revert", self.snapshot):
            raise RuntimeError("evm_revert failed")
        self.snapshot = str(self.node.rpc("evm_snapshot"))


@contextlib.contextmanager
def rig(block_time: float, background: int) -> Iterator[Rig]:
    whole = float(block_time).is_integer()
    extra = ["--gas-limit", "4000000000"]
    node = (
        Anvil(extra_args=extra) if whole else IntervalAnvil(block_time=block_time, extra_args=extra)
    )
    with node:
        specs = [
            MarketSpec(
                symbol=f"M{i}",
                price=Decimal(100 + i),
                impact_factor=Decimal(0),
                max_long_oi=Decimal(10**9),
                max_short_oi=Decimal(10**9),
            )
            for i in range(MARKETS)
        ]
        specs.append(MarketSpec(symbol="ETH", price=Decimal(2000)))  # the trader's, alone
        devnet = deploy(node.url, markets=specs, pool_liquidity=Decimal(10**9))
        accounts = populate(node, devnet.deployment, background) if background else []
        trader = devnet.account("trader")
        key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
        if whole:
            node.rpc("evm_setIntervalMining", int(block_time))
        r = Rig(block_time, node, devnet, accounts, background, key)
        r.reset()
        yield r


def target_price(devnet: Devnet, key: bytes) -> Decimal:
    """The ETH price at which the trader's long has a TARGET_RATIO margin ratio (funding left
    out: a few cents here)."""
    p = devnet.exchange.functions.positions(key).call()
    q = Decimal(p.size) / Decimal(10**18)
    entry = Decimal(p.entryPrice) / Decimal(10**18)
    collateral = Decimal(p.collateral) / Decimal(10**6)
    price = (q * entry - collateral) / (q * (1 - CLOSE_FEE - TARGET_RATIO))
    return price.quantize(Decimal("0.01"), rounding=ROUND_DOWN)


def margin_added_block(devnet: Devnet, key: bytes, since: int) -> int | None:
    logs = devnet.chain.rpc(
        "eth_getLogs",
        {
            "fromBlock": hex(since),
            "toBlock": "latest",
            "address": devnet.deployment.exchange,
            "topics": [MARGIN_ADDED, "0x" + key.hex()],
        },
    )
    return min((int(e["blockNumber"], 16) for e in logs), default=None)


class KeeperChild:
    """This script's `--keeper-child` as a process: its ticks followed on its stdout."""

    def __init__(self, config: Path, out: Path, env: Mapping[str, str], gc_mode: str) -> None:
        self.config = config
        self.out = out
        self.env = {**os.environ, **env}
        self.gc_mode = gc_mode
        self.block = -1
        self.log = out.with_suffix(".log")
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._log_file: IO[str] | None = None

    def start(self) -> KeeperChild:
        self._log_file = self.log.open("w")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--keeper-child", str(self.config)]
        cmd += [str(self.out), "--gc-mode", self.gc_mode]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._log_file, env=self.env, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            word, _, number = line.partition(" ")
            if word == "tick":
                self.block = max(self.block, int(number))

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""

    def wait_block(self, block: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.block < block:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"the keeper exited ({self._proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the keeper did not tick on block {block}:\n{self.tail()}")
            time.sleep(0.01)

    def stop(self) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
        if not self.out.exists():
            raise RuntimeError(f"the keeper wrote no figures ({proc.returncode}):\n{self.tail()}")
        data: dict[str, Any] = json.loads(self.out.read_text())
        return data


@dataclass(frozen=True)
class Scenario:
    block_time: float
    positions: int
    faults: int  # % of requests to the first endpoint that fail

    @property
    def name(self) -> str:
        return f"{self.block_time:g}s-{self.positions}-f{self.faults}"


@dataclass
class Run:
    scenario: Scenario
    gc_mode: str
    moves: list[tuple[int, int | None]]  # (block of the move, block of the top-up or None)
    start_block: int
    data: dict[str, Any]
    faults: dict[str, int]
    proxy_requests: int
    seconds: float


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RunOptions:
    poll_s: str  # chain.poll_interval_s
    seed: int  # the fault proxy's
    max_s: float  # no new move after this many seconds
    warmup_s: float  # blocks ticked before the first move (the latency windows fill)


def run_once(
    r: Rig, sc: Scenario, work: Path, options: RunOptions, *, moves: int, gc_mode: str = "pause"
) -> Run:
    """One keeper run on a fresh copy of the rig's chain: `moves` price moves, each waited for
    until the top-up lands (or 10 s of blocks pass)."""
    r.reset()
    devnet = r.devnet
    started = time.monotonic()
    background = r.watched(sc.positions - 1)  # and the trader's position
    where = Path(tempfile.mkdtemp(prefix=f"{sc.name}-{gc_mode}-", dir=work))
    rate = sc.faults / 100
    proxy = FaultProxy(r.node.url, rate=rate, kinds=FAULT_KINDS, seed=options.seed, hang_s=HANG_S)
    with proxy:
        config = devnet.keeper_config(
            where / "keeper.toml",
            keeper={"journal": "journal.sqlite"},
            chain={"rpc": [proxy.url, r.node.url], "poll_interval_s": options.poll_s},
            accounts={"watch": [devnet.deployment.trader, *background]},
            thresholds={"cooldown_blocks": 0, "hysteresis": "0", "markets": None},
            budget={"max_spend_per_day": "100000000"},
            metrics=None,
        )
        child = KeeperChild(config, where / "figures.json", devnet.keeper_env("trader"), gc_mode)
        child.start()
        out: list[tuple[int, int | None]] = []
        try:
            child.wait_block(devnet.chain.block_number(), 90.0)
            child.wait_block(child.block + math.ceil(options.warmup_s / r.block_time), 60.0)
            start_block = child.block
            wait_blocks = max(8, math.ceil(10 / r.block_time))
            for _ in range(moves):
                if time.monotonic() - started > options.max_s:
                    break
                price = target_price(devnet, r.key)
                moved = int(devnet.set_price("ETH", price)["blockNumber"])
                if rate:
                    proxy.force("hang", FORCED_HANGS)
                landed = None
                deadline = time.monotonic() + wait_blocks * r.block_time + 5
                while landed is None and time.monotonic() < deadline:
                    landed = margin_added_block(devnet, r.key, moved)
                    if landed is None:
                        time.sleep(0.02)
                out.append((moved, landed))
                child.wait_block((landed or devnet.chain.block_number()) + 1, 60.0)
        finally:
            data = child.stop()
        faults, requests = proxy.faults, proxy.requests
    (where / "moves.json").write_text(json.dumps({"start_block": start_block, "moves": out}))
    return Run(sc, gc_mode, out, start_block, data, faults, requests, time.monotonic() - started)


def gc_compare(
    r: Rig, work: Path, options: RunOptions, *, runs: int, moves: int, alt: str = "off"
) -> list[Run]:
    """`runs` runs with `_CollectorPause` as it is and `runs` in the `alt` mode (see
    `_child`), alternated, at 1,000 positions without faults."""
    sc = Scenario(r.block_time, 1000, 0)
    out = []
    for i in range(2 * runs):
        mode = ("pause", alt)[i % 2]
        out.append(run_once(r, sc, work, options, moves=moves, gc_mode=mode))
        progress(f"gc run {i + 1}/{2 * runs} ({mode}): {out[-1].seconds:.0f} s")
    return out


# -- figures -----------------------------------------------------------------------------------


class Req(NamedTuple):
    tick: int
    phase: str
    method: str
    endpoint: int
    start: float
    end: float
    outcome: str


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def rounds(spans: Sequence[Req]) -> int:
    """The longest chain of requests each sent after the one before it was answered."""
    ordered = sorted(spans, key=lambda s: s.start)
    depth: list[int] = []
    for i, s in enumerate(ordered):
        before = [depth[j] for j in range(i) if ordered[j].end <= s.start]
        depth.append(1 + max(before, default=0))
    return max(depth, default=0)


@dataclass
class TickFigures:
    block: int
    sent: bool
    head_to_decided: float | None
    head_to_send: float | None  # the top-up's eth_sendRawTransaction leaves
    head_to_accepted: float | None  # the first endpoint accepts it
    head_to_read: float
    read: float | None
    read_to_decide: float | None  # the journal: open intents checked, history
    decide: float | None  # the policy
    decided_to_send: float | None
    send_rtt: float | None
    tick: float
    read_trips: int
    read_wire: int
    read_rounds: int
    prep_wire: int  # before the send: simulation, gas, fees, nonce, head
    prep_rounds: int
    send_wire: int
    after_wire: int  # the rest of the tick (receipts of what is in flight)
    gc_s: float
    gc_full: int
    prep_methods: tuple[str, ...] = ()  # before the send, in the order sent
    after_methods: tuple[str, ...] = ()


def tick_figures(run: Run) -> list[TickFigures]:
    data = run.data
    by_tick: dict[int, list[Req]] = {}
    for raw in data["requests"]:
        req = Req(*raw)
        if req.tick >= 0:
            by_tick.setdefault(req.tick, []).append(req)
    out = []
    for index, t in enumerate(data["ticks"]):
        if t["block"] <= run.start_block or t["end"] is None:
            continue  # warm-up: before the first move
        reqs = by_tick.get(index, [])
        reads = [q for q in reqs if q.phase == "read"]
        sends = [q for q in reqs if q.method == SEND_METHOD]
        head = t["head_at"]
        sent = bool(t["sent"]) and bool(sends)
        send0 = min((q.start for q in sends), default=None) if sent else None
        accepted = min((q.end for q in sends if q.outcome == "ok"), default=None) if sent else None
        others = [q for q in reqs if q.phase != "read" and q.method != SEND_METHOD]
        prep = [q for q in others if send0 is not None and q.start < send0]
        decided = t["decided"]
        out.append(
            TickFigures(
                block=t["block"],
                sent=sent,
                head_to_decided=None if decided is None else decided - head,
                head_to_send=None if send0 is None else send0 - head,
                head_to_accepted=None if accepted is None else accepted - head,
                head_to_read=(t["read_start"] or t["start"]) - head,
                read=None if t["read_start"] is None else t["read_end"] - t["read_start"],
                read_to_decide=(
                    None
                    if t["decide_start"] is None or t["read_end"] is None
                    else t["decide_start"] - t["read_end"]
                ),
                decide=None if decided is None else decided - t["decide_start"],
                decided_to_send=None if send0 is None or decided is None else send0 - decided,
                send_rtt=None if accepted is None or send0 is None else accepted - send0,
                tick=t["end"] - head,
                read_trips=t["read_trips"],
                read_wire=len(reads),
                read_rounds=rounds(reads),
                prep_wire=len(prep),
                prep_rounds=rounds(prep),
                send_wire=len(sends),
                after_wire=len(others) - len(prep),
                gc_s=t["gc_s"],
                gc_full=t["gc_runs"][2],
                prep_methods=tuple(q.method for q in sorted(prep, key=lambda q: q.start)),
                after_methods=tuple(
                    q.method for q in sorted(others, key=lambda q: q.start) if q not in prep
                ),
            )
        )
    return out


def _vals(ticks: Sequence[TickFigures], name: str, *, sent_only: bool = False) -> list[float]:
    values = [getattr(t, name) for t in ticks if t.sent or not sent_only]
    return [float(v) for v in values if v is not None]


def _typical(sequences: Sequence[tuple[str, ...]]) -> list[str]:
    """The most common of `sequences` (methods in the order sent)."""
    if not sequences:
        return []
    return list(Counter(sequences).most_common(1)[0][0])


def summarize(runs: Sequence[Run]) -> dict[str, Any]:
    """One scenario's figures over its runs (times in ms)."""
    ticks = [t for run in runs for t in tick_figures(run)]
    lags = [float(landed - moved) for run in runs for moved, landed in run.moves if landed]
    missed = sum(1 for run in runs for _, landed in run.moves if landed is None)
    action = [t for t in ticks if t.sent]

    def ms(name: str, q: float, *, sent_only: bool = False) -> float | None:
        v = quantile(_vals(ticks, name, sent_only=sent_only), q)
        return None if v is None else v * 1000

    def count(name: str, q: float, *, sent_only: bool = False) -> float | None:
        return quantile(_vals(ticks, name, sent_only=sent_only), q)

    polls = sum(
        1 for run in runs for raw in run.data["requests"] if raw[1] == "poll" and raw[0] < 0
    )
    blocks = sum(
        max((t["block"] for t in run.data["ticks"]), default=0)
        - min((t["block"] for t in run.data["ticks"]), default=0)
        + 1
        for run in runs
    )
    stats = [s for run in runs for s in run.data["stats"]]
    faults: dict[str, int] = {}
    for run in runs:
        for kind, n in run.faults.items():
            faults[kind] = faults.get(kind, 0) + n
    first = runs[0]
    return {
        "scenario": first.scenario.name,
        "block_time_s": first.scenario.block_time,
        "fault_rate": first.scenario.faults / 100,
        "gc_mode": first.gc_mode,
        "positions": max((t["positions"] for t in first.data["ticks"]), default=0),
        "moves": len(lags) + missed,
        "missed": missed,
        "ticks": len(ticks),
        "action_ticks": len(action),
        "lag_blocks": {
            "p50": quantile(lags, 0.5),
            "p99": quantile(lags, 0.99),
            "max": max(lags, default=None),
            "all": lags,
        },
        "head_to_decided_ms": {
            "p50": ms("head_to_decided", 0.5),
            "p99": ms("head_to_decided", 0.99),
        },
        "head_to_sent_ms": {
            "p50": ms("head_to_send", 0.5, sent_only=True),
            "p99": ms("head_to_send", 0.99, sent_only=True),
        },
        "head_to_accepted_ms": {
            "p50": ms("head_to_accepted", 0.5, sent_only=True),
            "p99": ms("head_to_accepted", 0.99, sent_only=True),
        },
        "read_ms": {"p50": ms("read", 0.5), "p99": ms("read", 0.99)},
        "tick_ms": {"p50": ms("tick", 0.5), "p99": ms("tick", 0.99)},
        "breakdown_ms": {  # medians over the ticks that sent a top-up
            name: ms(name, 0.5, sent_only=True)
            for name in (
                "head_to_read",
                "read",
                "read_to_decide",
                "decide",
                "decided_to_send",
                "send_rtt",
            )
        },
        "round_trips": {
            "read_venue": {"p50": count("read_trips", 0.5), "max": count("read_trips", 1.0)},
            "read_wire": {"p50": count("read_wire", 0.5), "max": count("read_wire", 1.0)},
            "read_rounds": {
                "p50": count("read_rounds", 0.5),
                "p99": count("read_rounds", 0.99),
                "max": count("read_rounds", 1.0),
            },
            "prep_wire": {"p50": count("prep_wire", 0.5, sent_only=True)},
            "prep_rounds": {"p50": count("prep_rounds", 0.5, sent_only=True)},
            "send_wire": {"p50": count("send_wire", 0.5, sent_only=True)},
            "after_send_wire": {"p50": count("after_wire", 0.5, sent_only=True)},
            "idle_tick_wire": {
                "p50": quantile(
                    [float(t.read_wire + t.after_wire) for t in ticks if not t.sent], 0.5
                )
            },
            "polls_per_block": polls / blocks if blocks else None,
        },
        "prep_sequence": _typical([t.prep_methods for t in action]),
        "after_sequence": _typical([t.after_methods for t in action]),
        "gc_ms_per_tick": {
            "mean": 1000 * statistics.fmean(_vals(ticks, "gc_s")) if ticks else None,
            "full_collections": sum(t.gc_full for t in ticks),
        },
        "proxy": {
            "requests": sum(run.proxy_requests for run in runs),
            "faults": faults,
        },
        "endpoints": [
            {k: s[k] for k in ("label", "requests", "errors", "hedges", "hedge_wins")}
            for s in stats
        ],
        "rpc": first.data["rpc"],
        "seconds": sum(run.seconds for run in runs),
    }


# -- tables ------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_tables(
    rows: Sequence[dict[str, Any]], goals: Sequence[tuple[str, str, str, bool | None]]
) -> None:
    if not rows:
        return
    print("\nReaction (lag: blocks from the price move's block to the top-up's; times in ms from")
    print("the head handed over by the block stream; p99 is the slowest of the moves)")
    print(
        f"{'scenario':<14} {'pos':>5} {'moves':>5} {'lag p50':>7} {'p99':>4} {'max':>4}  "
        f"{'->sent p50':>10} {'p99':>6}  {'->accepted p99':>14}  {'->decided p50':>13} "
        f"{'p99':>6}  {'read p50':>8} {'p99':>6}  {'tick p50':>8} {'p99':>6}"
    )
    for r in rows:
        lag, sent, acc = r["lag_blocks"], r["head_to_sent_ms"], r["head_to_accepted_ms"]
        dec, read, tick = r["head_to_decided_ms"], r["read_ms"], r["tick_ms"]
        moves = f"{r['moves']}" + (f"/{r['missed']}!" if r["missed"] else "")
        print(
            f"{r['scenario']:<14} {r['positions']:>5} {moves:>5} {fmt(lag['p50'], 0):>7} "
            f"{fmt(lag['p99'], 0):>4} {fmt(lag['max'], 0):>4}  {fmt(sent['p50']):>10} "
            f"{fmt(sent['p99']):>6}  {fmt(acc['p99']):>14}  {fmt(dec['p50']):>13} "
            f"{fmt(dec['p99']):>6}  {fmt(read['p50']):>8} {fmt(read['p99']):>6}  "
            f"{fmt(tick['p50']):>8} {fmt(tick['p99']):>6}"
        )
    print("\nRPC round trips per tick (requests on the wire, both endpoints; read rounds: the")
    print("longest chain of requests each sent after the previous answered; prep/send/after:")
    print("ticks that sent a top-up; idle: the other ticks' requests; polls: the block stream's)")
    print(
        f"{'scenario':<14} {'read venue':>10} {'read wire p50/max':>17} {'rounds p50/p99/max':>18}"
        f"  {'prep (rounds)':>13} {'send':>4} {'after':>5} {'idle':>4} {'polls/block':>11}"
        f"  {'faults injected':<22} hedges(won)"
    )
    for r in rows:
        t = r["round_trips"]
        faults = ",".join(f"{k}:{v}" for k, v in sorted(r["proxy"]["faults"].items())) or "-"
        hedges = "/".join(f"{e['hedges']}({e['hedge_wins']})" for e in r["endpoints"][:2])
        rds = t["read_rounds"]
        print(
            f"{r['scenario']:<14} {fmt(t['read_venue']['p50'], 0):>10} "
            f"{fmt(t['read_wire']['p50'], 0) + '/' + fmt(t['read_wire']['max'], 0):>17} "
            f"{'/'.join(fmt(rds[k], 0) for k in ('p50', 'p99', 'max')):>18}  "
            f"{fmt(t['prep_wire']['p50'], 0) + ' (' + fmt(t['prep_rounds']['p50'], 0) + ')':>13} "
            f"{fmt(t['send_wire']['p50'], 0):>4} {fmt(t['after_send_wire']['p50'], 0):>5} "
            f"{fmt(t['idle_tick_wire']['p50'], 0):>4} {fmt(t['polls_per_block']):>11}  "
            f"{faults:<22} {hedges}"
        )
    print("\nWhere head -> sent goes (medians over the ticks that sent a top-up, ms): head to")
    print("read start, the read, read end to the policy (journal: open intents, history), the")
    print("policy (decide), decided to the send leaving (simulate, estimate gas, fee history,")
    print("nonce, head, sign, journal), send to first acceptance; GC: the collector's mean ms per")
    print("tick (all ticks), full collections inside ticks")
    print(
        f"{'scenario':<14} {'->read':>7} {'read':>7} {'journal':>7} {'decide':>7} {'->send':>7} "
        f"{'accept':>7}   {'gc ms/tick':>10} {'full gc':>7}"
    )
    for r in rows:
        b = r["breakdown_ms"]
        print(
            f"{r['scenario']:<14} {fmt(b['head_to_read']):>7} {fmt(b['read']):>7} "
            f"{fmt(b['read_to_decide']):>7} {fmt(b['decide']):>7} {fmt(b['decided_to_send']):>7} "
            f"{fmt(b['send_rtt']):>7}   {fmt(r['gc_ms_per_tick']['mean'], 2):>10} "
            f"{r['gc_ms_per_tick']['full_collections']:>7}"
        )
    print("\nTypical requests of a tick that sent a top-up, in the order sent:")
    for r in rows:
        prep = " ".join(m.removeprefix("eth_") for m in r["prep_sequence"])
        after = " ".join(m.removeprefix("eth_") for m in r["after_sequence"])
        print(f"{r['scenario']:<14} before the send: {prep}; after it: {after}")
    print("\nFailoverRpc as configured ([rpc] defaults):", rows[0]["rpc"])
    print("\nGoals")
    for goal, scenario, figure, met in goals:
        mark = "n/a" if met is None else ("met" if met else "FAILED")
        print(f"  {mark:<6} {goal:<44} {scenario:<14} {figure}")


def goals_for(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, str, bool | None]]:
    out: list[tuple[str, str, str, bool | None]] = []
    for r in rows:
        lag, name = r["lag_blocks"], r["scenario"]
        p99 = lag["p99"]
        lag_met = (
            None
            if p99 is None
            else (p99 <= (1 if r["block_time_s"] == 1 else 2)) and not r["missed"]
        )
        if r["block_time_s"] == 1 and r["fault_rate"] > 0:
            out.append(
                (
                    "lag p99 <= 1 block at 1 s, faults on one of 2",
                    name,
                    f"p99 {fmt(p99, 0)}, missed {r['missed']}",
                    lag_met,
                )
            )
        if r["block_time_s"] == 0.25:
            out.append(
                (
                    "lag p99 <= 2 blocks at 0.25 s",
                    name,
                    f"p99 {fmt(p99, 0)}, missed {r['missed']}",
                    lag_met,
                )
            )
    for r in rows:
        if r["positions"] >= 1000:
            p99 = r["head_to_sent_ms"]["p99"]
            out.append(
                (
                    "head -> sent p99 < 50 ms at 1,000 positions",
                    r["scenario"],
                    f"p99 {fmt(p99)} ms",
                    None if p99 is None else p99 < 50,
                )
            )
    for r in rows:
        rds = r["round_trips"]["read_rounds"]
        venue = r["round_trips"]["read_venue"]
        out.append(
            (
                "<= 2 read round trips per tick (rounds p99)",
                r["scenario"],
                f"rounds p99 {fmt(rds['p99'], 0)} max {fmt(rds['max'], 0)}; "
                f"requests {fmt(venue['p50'], 0)}",
                None if rds["p99"] is None else rds["p99"] <= 2,
            )
        )
    return out


GC_METRICS = {
    "read": "read",
    "head_to_decided": "head -> decided",
    "head_to_send": "head -> sent",
    "tick": "head -> tick end",
    "gc_s": "collector in tick",
}


def gc_figures(runs: Sequence[Run], alt: str = "off") -> dict[str, Any]:
    """Per mode: medians over all its ticks, and per run; the collector's own time (mean per
    tick, and outside ticks); the pause's saving over `alt`, from the pooled medians and
    paired (the median of the ratios of each pause run to the `alt` run after it)."""
    per_mode: dict[str, dict[str, float | None]] = {}
    per_run: dict[str, list[dict[str, float | None]]] = {}
    for mode in ("pause", alt):
        mine = [r for r in runs if r.gc_mode == mode]
        ticks = [t for r in mine for t in tick_figures(r)]
        per_mode[mode] = {
            m: median(_vals(ticks, m, sent_only=m == "head_to_send")) for m in GC_METRICS
        }
        per_mode[mode]["gc_mean"] = statistics.fmean(_vals(ticks, "gc_s")) if ticks else None
        per_mode[mode]["tick_mean"] = statistics.fmean(_vals(ticks, "tick")) if ticks else None
        per_mode[mode]["tick_p99"] = quantile(_vals(ticks, "tick"), 0.99)
        per_mode[mode]["sent_p99"] = quantile(_vals(ticks, "head_to_send", sent_only=True), 0.99)
        per_mode[mode]["decided_p99"] = quantile(_vals(ticks, "head_to_decided"), 0.99)
        per_mode[mode]["ticks"] = float(len(ticks))
        per_mode[mode]["full_in_ticks"] = float(sum(t.gc_full for t in ticks))
        seconds = sum(r.seconds for r in mine)
        idle = sum(r.data["gc_idle_s"] for r in mine)
        per_mode[mode]["gc_idle_ms_per_s"] = 1000 * idle / seconds if seconds else None
        per_run[mode] = [
            {
                m: median(_vals(tick_figures(r), m, sent_only=m == "head_to_send"))
                for m in GC_METRICS
            }
            for r in mine
        ]
    saving: dict[str, float | None] = {}
    paired: dict[str, float | None] = {}
    for m in (*GC_METRICS, "gc_mean", "tick_mean", "tick_p99", "sent_p99", "decided_p99"):
        on, off = per_mode["pause"][m], per_mode[alt][m]
        saving[m] = None if not on or not off else 100 * (off - on) / off
    for m in GC_METRICS:
        ratios = []
        for a, b in zip(per_run["pause"], per_run[alt], strict=False):
            on, off = a[m], b[m]
            if on and off:
                ratios.append(on / off)
        paired[m] = None if not ratios else 100 * (1 - statistics.median(ratios))
    return {
        "alt": alt,
        "per_mode": per_mode,
        "per_run": per_run,
        "saving_pct": saving,
        "paired_pct": paired,
    }


def print_gc(g: dict[str, Any]) -> None:
    alt = g["alt"]
    what = {"off": "a no-op (off)", "freeze": "a no-op and gc.freeze() at start (freeze)"}[alt]
    print(f"\nGC: _CollectorPause as is (pause) vs {what},")
    print("1,000 positions, 0.25 s blocks, no faults, runs alternated; medians over the ticks")
    print("after each run's warm-up, ms; saving: the pause's, of the pooled medians; paired:")
    print("the median over run pairs")
    pm = g["per_mode"]

    def ms(value: float | None) -> str:
        return fmt(None if value is None else value * 1000, 2)

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}%"

    print(f"{'':<20} {'pause':>8} {alt:>8} {'saving':>8} {'paired':>8}   per run (pause | {alt})")
    for key, label in GC_METRICS.items():
        runs = " | ".join(
            " ".join(fmt(None if r[key] is None else r[key] * 1000) for r in g["per_run"][mode])
            for mode in ("pause", alt)
        )
        print(
            f"{label:<20} {ms(pm['pause'][key]):>8} {ms(pm[alt][key]):>8} "
            f"{pct(g['saving_pct'][key]):>8} {pct(g['paired_pct'][key]):>8}   {runs}"
        )
    for key, label in (
        ("gc_mean", "collector, mean/tick"),
        ("tick_mean", "tick, mean"),
        ("decided_p99", "head -> decided p99"),
        ("sent_p99", "head -> sent p99"),
        ("tick_p99", "tick p99"),
    ):
        print(
            f"{label:<20} {ms(pm['pause'][key]):>8} {ms(pm[alt][key]):>8} "
            f"{pct(g['saving_pct'][key]):>8}"
        )
    print(
        f"ticks: pause {pm['pause']['ticks']:.0f}, {alt} {pm[alt]['ticks']:.0f}; full collections"
        f" inside ticks: pause {pm['pause']['full_in_ticks']:.0f}, {alt} "
        f"{pm[alt]['full_in_ticks']:.0f}; collector outside ticks (ms per s of run): pause "
        f"{fmt(pm['pause']['gc_idle_ms_per_s'], 2)}, {alt} {fmt(pm[alt]['gc_idle_ms_per_s'], 2)}"
    )
    alt_gc, alt_tick = pm[alt]["gc_mean"], pm[alt]["tick_mean"]
    if alt_gc is not None and alt_tick:
        print(
            f"{alt}: the collector takes {100 * alt_gc / alt_tick:.1f}% of the mean tick (the "
            "most the pause can save over it)"
        )
    s = g["saving_pct"]
    if alt == "off" and s["tick"] is not None:
        verdict = "keep it" if s["tick"] > 10 else "remove it (it saves no more than 10%)"
        print(
            f"tick time saved by the pause at 1,000 positions: median "
            f"{s['tick']:.1f}%, mean {pct(s['tick_mean'])}, p99 {pct(s['tick_p99'])}; by the "
            f"median: {verdict}"
        )


# -- main ---------------------------------------------------------------------------------------


def scenarios(patterns: Sequence[str]) -> tuple[list[Scenario], bool]:
    every = [Scenario(bt, n, f) for bt in BLOCK_TIMES for n in POSITIONS for f in FAULT_RATES]

    def wanted(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    return [s for s in every if wanted(s.name)], wanted(GC_SCENARIO)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="5 moves; 2 GC runs of 5 moves of each"
    )
    parser.add_argument(
        "--scenario", default="*", help="comma-separated globs; 'gc' for the GC runs"
    )
    parser.add_argument("--json", action="store_true", help="only the figures, as JSON")
    parser.add_argument("--moves", type=int, default=None, help="price moves per scenario (20)")
    parser.add_argument("--poll-s", default="0.05", help="chain.poll_interval_s (0.05)")
    parser.add_argument("--gc-runs", type=int, default=None, help="GC runs of each mode (3)")
    parser.add_argument(
        "--gc-alt",
        choices=("off", "freeze"),
        default="off",
        help="what the pause is compared with: a no-op (off), or a no-op and gc.freeze() once "
        "the keeper is built (freeze)",
    )
    parser.add_argument(
        "--gc-moves", type=int, default=None, help="price moves per GC run (30: over 100 ticks)"
    )
    parser.add_argument(
        "--max-scenario-s", type=float, default=75.0, help="no new move after this (75 s)"
    )
    parser.add_argument("--seed", type=int, default=19, help="the fault proxy's (19)")
    parser.add_argument(
        "--warmup-s", type=float, default=3.0, help="ticks before the first move (3 s of blocks)"
    )
    parser.add_argument("--save", metavar="FILE", help="also write the figures as JSON to FILE")
    parser.add_argument(
        "--workdir", metavar="DIR", help="keep each run's config, log and raw figures here"
    )
    parser.add_argument(
        "--keeper-child", nargs=2, metavar=("CONFIG", "OUT"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--gc-mode", choices=("pause", "off", "freeze"), default="pause", help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.keeper_child:
        return child_main(Path(args.keeper_child[0]), Path(args.keeper_child[1]), args.gc_mode)
    # the fault proxy stopped while it holds a hang logs the forward it cannot finish
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    moves = args.moves or (5 if args.quick else 20)
    gc_runs = args.gc_runs or (2 if args.quick else 3)
    gc_moves = args.gc_moves or (5 if args.quick else 30)
    chosen, with_gc = scenarios([p.strip() for p in args.scenario.split(",") if p.strip()])
    if not chosen and not with_gc:
        parser.error("--scenario matches nothing")
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    gc_result: dict[str, Any] | None = None
    options = RunOptions(args.poll_s, args.seed, args.max_scenario_s, args.warmup_s)
    with contextlib.ExitStack() as stack:
        if args.workdir:
            work = Path(args.workdir)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-reaction-")))
        times = {s.block_time for s in chosen} | ({0.25} if with_gc else set())
        for bt in sorted(times, reverse=True):
            here = [s for s in chosen if s.block_time == bt]
            gc_here = with_gc and bt == 0.25
            most = max([s.positions for s in here] + ([1000] if gc_here else []))
            background = most - 1  # 999: 49 accounts of 20 and one of 19
            progress(f"node at {bt:g} s blocks, {background} background positions ...")
            with rig(bt, background) as r:
                for sc in here:
                    run = run_once(r, sc, work, options, moves=moves)
                    row = summarize([run])
                    rows.append(row)
                    progress(
                        f"{sc.name}: {row['moves']} moves, lag {row['lag_blocks']['all']}, "
                        f"head->sent p99 {fmt(row['head_to_sent_ms']['p99'])} ms "
                        f"({run.seconds:.0f} s, {time.monotonic() - started:.0f} s in all)"
                    )
                if gc_here:
                    compared = gc_compare(
                        r, work, options, runs=gc_runs, moves=gc_moves, alt=args.gc_alt
                    )
                    gc_result = gc_figures(compared, args.gc_alt)
    order = {s.name: i for i, s in enumerate(scenarios(["*"])[0])}
    rows.sort(key=lambda r: order[r["scenario"]])
    goals = goals_for(rows)
    figures = {
        "scenarios": rows,
        "goals": [{"goal": g, "scenario": s, "figure": f, "met": m} for g, s, f, m in goals],
        "gc": gc_result,
        "seconds": time.monotonic() - started,
    }
    if args.save:
        Path(args.save).write_text(json.dumps(figures, indent=2))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_tables(rows, goals)
        if gc_result is not None:
            print_gc(gc_result)
        print(f"\n{time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
