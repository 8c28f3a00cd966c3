"""`keeper run` at block speed while one of its two endpoints misbehaves: the devnet mining a
block a second, the first endpoint behind a FaultProxy failing 20% of requests (HTTP 429 and
500, garbage, truncated answers, and 5 s hangs, a third of the faults), the second direct.
Each price move that calls for a top-up is met by one mined within two blocks.

With a fixed 10 s timeout, no hedging and sends to one endpoint (`[rpc]` timeout_floor_s =
timeout_cap_s = "10", hedge = false, broadcast = false), a hang on the way holds the tick for
its whole 5 s and the top-up lands 5 to 6 blocks after the move; the two hangs forced after
each move make sure the way meets some.
"""

from __future__ import annotations

import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import pytest

from keeper.testing.devnet import Devnet
from keeper.testing.helpers import Chain
from keeper.testing.plugin import FaultProxyFactory, KeeperProcessFactory
from keeper.testing.process import KeeperProcess

pytestmark = pytest.mark.integration

BLOCK_S = 1  # Anvil's interval mining takes whole seconds
MOVES = ("1880", "1815", "1752")  # each takes a 10x long from 8% (after a top-up) below 5%
MAX_BLOCKS = 2  # robust on a loaded 2-core machine; a 5 s hang waited out is 5 blocks


def top_ups(journal: Path) -> list[str]:
    """The hashes of the keeper's top-up transactions, oldest first."""
    if not journal.exists():
        return []
    with sqlite3.connect(journal) as db:
        try:
            rows = db.execute(
                "SELECT t.tx_hash FROM intents i JOIN transactions t ON t.intent_id = i.id"
                " WHERE i.kind = 'top_up' AND t.tx_hash IS NOT NULL ORDER BY t.id"
            ).fetchall()
        except sqlite3.OperationalError:
            return []
    return [str(r[0]) for r in rows]


def wait_for_head(proc: KeeperProcess, devnet: Devnet) -> None:
    head = devnet.chain.block_number()
    proc.wait_for(lambda: (proc.last_block() or -1) >= head, 20.0, f"the keeper at block {head}")


def test_top_ups_land_within_two_blocks_while_an_endpoint_hangs_and_fails(
    devnet: Devnet,
    chain: Chain,
    fault_proxy: FaultProxyFactory,
    keeper_process: KeeperProcessFactory,
    tmp_path: Path,
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    kinds = {"hang": 2.0, "http429": 1.0, "http500": 1.0, "garbage": 1.0, "truncated": 1.0}
    proxy = fault_proxy(devnet.url, rate=0.2, kinds=kinds, seed=19, hang_s=5.0)
    config = devnet.keeper_config(
        tmp_path / "keeper.toml",
        keeper={"journal": "journal.sqlite"},
        chain={"rpc": [proxy.url, devnet.url], "poll_interval_s": "0.05"},
        accounts={"watch": [devnet.deployment.trader]},
        thresholds={"cooldown_blocks": 0, "hysteresis": "0", "markets": None},
        metrics={"max_block_age_s": 100_000},
    )
    chain.set_interval_mining(BLOCK_S)
    run = keeper_process(config, devnet.keeper_env())
    journal = tmp_path / "journal.sqlite"
    lags: list[int] = []
    for i, price in enumerate(MOVES):
        wait_for_head(run, devnet)
        moved = devnet.set_price("ETH", Decimal(price))["blockNumber"]
        proxy.force("hang", 2)
        started = time.monotonic()

        def sent(n: int = i) -> bool:
            return len(top_ups(journal)) > n

        run.wait_for(sent, 30.0, f"top-up {i + 1} sent")
        tx_hash = top_ups(journal)[i]

        def mined(h: str = tx_hash) -> bool:
            return devnet.chain.rpc("eth_getTransactionReceipt", h) is not None

        run.wait_for(mined, 30.0, f"top-up {i + 1} mined")
        landed = int(devnet.chain.rpc("eth_getTransactionReceipt", tx_hash)["blockNumber"], 16)
        lags.append(landed - moved)
        print(
            f"move {i + 1} to {price}: in block {moved}, top-up in block {landed} "
            f"({time.monotonic() - started:.2f}s after the move was mined)"
        )
    faults = proxy.faults
    print(f"proxy: {proxy.requests} requests, faults {faults}; lags {lags}")
    assert faults.get("hang", 0) >= len(MOVES) * 2
    assert proxy.injected > 0.1 * proxy.requests
    assert all(1 <= lag <= MAX_BLOCKS for lag in lags), lags
    assert devnet.exchange.functions.positions(key).call().collateral > 2_000 * 10**6
    assert run.stop() == 0
