#!/usr/bin/env python3
"""Benchmark: one Snapshot of N positions of the reference exchange on a local Anvil.

For N = 100, 1,000 and 10,000 it prints the round trips a `ReferenceVenue.read` makes (bound:
ceil(N / 500) + 2), its time (a read at the block just read, so the eth_blockNumber pin,
well under a millisecond here, is not timed), and three comparisons:

- naive: one web3.py (AsyncWeb3) contract call `exchange.positions(key)` per position, awaited
  one after another (the key lists not even counted); for N > 1,000 a sample of 1,000 is
  timed and extrapolated;
- gathered: the same web3.py calls under asyncio.gather (sampled likewise above 2,000);
- raw: the very eth_calls the read sent, replayed over the same HTTP client with the same
  concurrency, each answer read to its result string but not decoded: the node's own time
  plus transport.

A third table reads the same positions over web3.py's own providers (`Web3Rpc`: HTTP and
WebSocket) beside our aiohttp client, alternated, to choose the default HTTP transport.

How positions are made: a fresh Anvil (block gas limit 4e9) with the reference exchange and
eight markets; per account (addresses 0x...100000 onwards, impersonated, funded with
anvil_setBalance) one mint, one approve, one cross deposit, then 16 isolated and 4 cross
opens (longs twice the size of shorts, so funding flows), all sent as JSON-RPC batches of
eth_sendTransaction with automine off and mined in a few blocks; then an hour passes, so the
positions carry accrued funding to decode (the script prints how many). Reads and raw
replays alternate, 25 of each; the times are medians, "/ raw" is the ratio of the medians
and "paired" the median of the 25 ratios of a read to the raw replay run right after it
(this machine's speed drifts from minute to minute, which moves both alike). A second table
gives the mean and the slowest of the same runs (a full garbage collection, every 100th
read, lands in some reads and not in others). Usage: .venv/bin/python scripts/bench_snapshot.py
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_abi.abi import encode
from eth_hash.auto import keccak
from web3 import AsyncHTTPProvider, AsyncWeb3

from keeper.abis import abi
from keeper.chain.jsonrpc import HttpJsonRpc
from keeper.chain.web3rpc import web3_endpoint
from keeper.testing.anvil import Anvil
from keeper.testing.devnet import Deployment, MarketSpec, deploy
from keeper.venues.base import Watch
from keeper.venues.reference import ReferenceVenue

SIZES = (100, 1_000, 10_000)
MARKETS = 8
ISOLATED_PER_ACCOUNT = 2 * MARKETS  # long and short in every market
CROSS_PER_ACCOUNT = 4
PER_ACCOUNT = ISOLATED_PER_ACCOUNT + CROSS_PER_ACCOUNT
RUNS = 25
NAIVE_SAMPLE = 1_000
GATHER_SAMPLE = 2_000


def _sel(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


def _batch(url: str, requests: Sequence[tuple[str, list[Any]]]) -> list[Any]:
    body = [
        {"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(requests)
    ]
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        answers: list[Any] = json.loads(resp.read())
    errors = [a for a in answers if "error" in a]
    if errors:
        raise RuntimeError(f"batch failed: {errors[:3]}")
    return answers


def populate(node: Anvil, d: Deployment, positions: int) -> list[str]:
    """Make `positions` positions in ceil(positions / 20) accounts; returns the accounts."""
    count = math.ceil(positions / PER_ACCOUNT)
    accounts = [f"0x{0x100000 + i:040x}" for i in range(count)]
    node.rpc("anvil_autoImpersonateAccount", True)
    node.rpc("evm_setAutomine", False)
    _batch(node.url, [("anvil_setBalance", [a, hex(10**20)]) for a in accounts])
    sends: list[tuple[str, list[Any]]] = []
    left = positions
    for account in accounts:
        txs = [
            (
                d.usdc,
                _sel("mint(address,uint256)") + encode(["address", "uint256"], [account, 10**13]),
            ),
            (
                d.usdc,
                _sel("approve(address,uint256)")
                + encode(["address", "uint256"], [d.exchange, 2**256 - 1]),
            ),
            (d.exchange, _sel("depositCross(uint256)") + encode(["uint256"], [10**11])),
        ]
        here = min(PER_ACCOUNT, left)
        left -= here
        for j in range(here):
            market = j % MARKETS
            is_long = j < MARKETS if j < ISOLATED_PER_ACCOUNT else j % 2 == 0
            size = 2 * 10**17 if is_long else 10**17  # longs outweigh shorts: funding flows
            if j < ISOLATED_PER_ACCOUNT:
                data = _sel("openPosition(uint256,bool,uint256,uint256)") + encode(
                    ["uint256", "bool", "uint256", "uint256"], [market, is_long, 10**8, size]
                )
            else:
                data = _sel("openCross(uint256,bool,uint256)") + encode(
                    ["uint256", "bool", "uint256"], [market, is_long, size]
                )
            txs.append((d.exchange, data))
        for nonce, (to, data) in enumerate(txs):
            tx = {
                "from": account,
                "to": to,
                "data": "0x" + data.hex(),
                "gas": hex(3_000_000),
                "nonce": hex(nonce),
                "maxFeePerGas": hex(10**11),
                "maxPriorityFeePerGas": hex(1),
            }
            sends.append(("eth_sendTransaction", [tx]))
    for start in range(0, len(sends), 2_000):
        _batch(node.url, sends[start : start + 2_000])
    while int(node.rpc("txpool_status")["pending"], 16):
        node.rpc("anvil_mine", "0x1")
    node.rpc("evm_setAutomine", True)
    node.rpc("evm_increaseTime", 3600)  # funding accrues on every position
    node.rpc("evm_mine")
    return accounts


class Recorder:
    """A JsonRpc that forwards and records every request (to replay them raw)."""

    def __init__(self, inner: HttpJsonRpc) -> None:
        self.inner = inner
        self.log: list[tuple[str, list[Any]]] = []

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        self.log.append((method, list(params)))
        return await self.inner.request(method, params)

    async def request_data(self, method: str, params: Sequence[Any] = ()) -> bytes:
        self.log.append((method, list(params)))
        return await self.inner.request_data(method, params)


async def run_rounds(
    *fns: Callable[[], Awaitable[Any]], runs: int = RUNS
) -> tuple[list[float], ...]:
    """Times of each of `fns`, run in turn `runs` times (so load from elsewhere hits all)."""
    times: tuple[list[float], ...] = tuple([] for _ in fns)
    for _ in range(runs):
        for fn, out in zip(fns, times, strict=True):
            started = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - started)
    return times


async def bench(node: Anvil, d: Deployment, accounts: list[str]) -> None:
    rpc = HttpJsonRpc(node.url, timeout=120)
    recorder = Recorder(rpc)
    venue = await ReferenceVenue.connect(
        recorder, exchange=d.exchange, lens=d.lens, multicall=d.multicall
    )
    # the same venue over web3.py's providers (Web3Rpc): HTTP, and a WebSocket
    clients = {
        name: web3_endpoint(url, timeout=120)
        for name, url in (("web3 http", node.url), ("web3 ws", node.ws_url))
    }
    over_web3 = {
        name: await ReferenceVenue.connect(
            client, exchange=d.exchange, lens=d.lens, multicall=d.multicall
        )
        for name, client in clients.items()
    }
    transports: list[tuple[int, float, dict[str, float]]] = []
    w3 = AsyncWeb3(AsyncHTTPProvider(node.url, request_kwargs={"timeout": 120}))
    exchange = w3.eth.contract(address=w3.to_checksum_address(d.exchange), abi=abi("PerpExchange"))
    everyone = await venue.read(Watch(tuple(accounts), wallet=d.trader))
    owing = sum(p.fees.raw != 0 for p in everyone.snapshot.positions)
    print(f"funding accrued (fees not zero) on {owing:,} of {len(everyone.snapshot.positions):,}")
    rows = []
    for n in SIZES:
        watch = Watch(tuple(accounts[: math.ceil(n / PER_ACCOUNT)]), wallet=d.trader)
        read = await venue.read(watch)
        block = read.snapshot.block_number
        assert len(read.snapshot.positions) == n, len(read.snapshot.positions)
        trips = read.round_trips

        async def one_read(w: Watch = watch, b: int = block) -> None:
            await venue.read(w, block=b)

        recorder.log.clear()
        await venue.read(watch, block=block)
        log = list(recorder.log)
        meta, chunks = log[0], log[1:]
        limit = asyncio.Semaphore(4)  # the venue's default max_concurrency

        async def replay_chunk(
            method: str, params: list[Any], limit: asyncio.Semaphore = limit
        ) -> Any:
            async with limit:
                return await rpc.request(method, params)

        async def raw(
            meta: tuple[str, list[Any]] = meta,
            chunks: list[tuple[str, list[Any]]] = chunks,
        ) -> None:
            await rpc.request(*meta)
            await asyncio.gather(*(replay_chunk(m, p) for m, p in chunks))

        snapshot_times, raw_times = await run_rounds(one_read, raw)
        snapshot_s, raw_s = statistics.median(snapshot_times), statistics.median(raw_times)

        def read_over(v: ReferenceVenue, w: Watch = watch, b: int = block) -> Awaitable[Any]:
            return v.read(w, block=b)

        ours, *others = await run_rounds(
            one_read, *(lambda v=v: read_over(v) for v in over_web3.values())
        )
        transports.append(
            (
                n,
                statistics.median(ours),
                {name: statistics.median(t) for name, t in zip(over_web3, others, strict=True)},
            )
        )
        paired = statistics.median(s / r for s, r in zip(snapshot_times, raw_times, strict=True))
        keys = [bytes.fromhex(p.key[2:]) for p in read.snapshot.positions]

        sample = keys[:NAIVE_SAMPLE]
        started = time.perf_counter()
        for key in sample:
            await exchange.functions.positions(key).call(block_identifier=block)
        naive_s = (time.perf_counter() - started) * n / len(sample)

        sample = keys[:GATHER_SAMPLE]
        started = time.perf_counter()
        await asyncio.gather(
            *(exchange.functions.positions(k).call(block_identifier=block) for k in sample)
        )
        gathered_s = (time.perf_counter() - started) * n / len(sample)
        rows.append(
            (
                n,
                trips,
                math.ceil(n / 500) + 2,
                snapshot_s,
                paired,
                naive_s,
                n > NAIVE_SAMPLE,
                gathered_s,
                n > GATHER_SAMPLE,
                raw_s,
                (statistics.mean(snapshot_times), max(snapshot_times), statistics.mean(raw_times)),
            )
        )
    await rpc.close()
    await w3.provider.disconnect()
    for client in clients.values():
        await client.close()
    print()
    print(
        f"{'N':>6}  {'round trips':>11}  {'bound':>5}  {'snapshot s':>10}  {'naive s':>9}  "
        f"{'x naive':>8}  {'gathered s':>10}  {'x gathered':>10}  {'raw s':>7}  {'/ raw':>6}  "
        f"{'paired':>6}"
    )
    for n, trips, bound, snap_s, paired, naive_s, ns, gath_s, gs, raw_s, _ in rows:
        print(
            f"{n:>6}  {trips:>11}  {bound:>5}  {snap_s:>10.3f}  {naive_s:>8.2f}{'*' if ns else ' '}"
            f"  {naive_s / snap_s:>7.1f}x  {gath_s:>9.2f}{'*' if gs else ' '}"
            f"  {gath_s / snap_s:>9.1f}x  {raw_s:>7.3f}  {snap_s / raw_s:>5.2f}x"
            f"  {paired:>5.2f}x"
        )
    print(
        f"* extrapolated from the first {NAIVE_SAMPLE:,} (naive) or {GATHER_SAMPLE:,} "
        "(gathered) positions"
    )
    print()
    print(
        f"{'N':>6}  {'snapshot s':>10}  {'mean s':>7}  {'max s':>7}  {'raw mean s':>10}  "
        f"{'mean / raw mean':>15}   (the same {RUNS} reads and raw replays, alternated)"
    )
    for n, *_, (snap_mean, snap_max, raw_mean) in rows:
        median = next(r[3] for r in rows if r[0] == n)
        print(
            f"{n:>6}  {median:>10.3f}  {snap_mean:>7.3f}  {snap_max:>7.3f}  {raw_mean:>10.3f}  "
            f"{snap_mean / raw_mean:>14.2f}x"
        )
    print_transports(transports)


def print_transports(rows: Sequence[tuple[int, float, dict[str, float]]]) -> None:
    names = list(rows[0][2]) if rows else []
    print()
    head = "".join(f"  {name + ' s':>11}  {name + ' / ours':>15}" for name in names)
    print(f"{'N':>6}  {'aiohttp s':>10}{head}   (the same reads over each transport, {RUNS} each)")
    for n, ours, others in rows:
        cells = "".join(f"  {others[k]:>11.3f}  {others[k] / ours:>14.2f}x" for k in names)
        print(f"{n:>6}  {ours:>10.3f}{cells}")


def main() -> int:
    print(__doc__.split("\n\n")[0])
    with Anvil(extra_args=["--gas-limit", "4000000000"]) as node:
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
        devnet = deploy(node.url, markets=specs, pool_liquidity=Decimal(10**9))
        started = time.perf_counter()
        accounts = populate(node, devnet.deployment, max(SIZES))
        print(
            f"made {max(SIZES):,} positions in {len(accounts)} accounts "
            f"({ISOLATED_PER_ACCOUNT} isolated + {CROSS_PER_ACCOUNT} cross each, {MARKETS} "
            f"markets) with impersonated eth_sendTransaction batches, automine off: "
            f"{time.perf_counter() - started:.1f} s"
        )
        asyncio.run(bench(node, devnet.deployment, accounts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
