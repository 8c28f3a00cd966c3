"""Metrics, health and alerts of a real `keeper run` process against Anvil."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from keeper.testing.anvil import Anvil, free_port
from keeper.testing.devnet import Devnet, deploy
from keeper.testing.plugin import KeeperProcessFactory
from tests.integration.keeper.test_keeper_e2e import settle, write_config

pytestmark = pytest.mark.integration


class Receiver:
    """A local webhook receiver (stdlib HTTP server in a thread) that keeps what it got."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_metrics_and_health_show_the_running_keeper(
    devnet: Devnet, tmp_path: Path, keeper_process: KeeperProcessFactory
) -> None:
    trader = devnet.account("trader")
    devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    config = write_config(devnet, tmp_path)
    proc = keeper_process(config, devnet.keeper_env())
    settle(proc, devnet)
    head = devnet.chain.block_number()
    health = proc.health()
    assert health is not None
    assert health["status"] == "ok"
    assert health["block"] == head
    assert proc.metric("keeper_last_block_number") == head
    assert (proc.metric("keeper_blocks_processed_total") or 0) >= 1
    assert proc.metric("keeper_positions_watched") == 1
    ratio = proc.metric("keeper_lowest_margin_ratio")
    assert ratio is not None
    assert 0.08 < ratio < 0.12  # 10x: about 10% less the fees
    devnet.set_price("ETH", Decimal("1880"))
    proc.wait_for(
        lambda: (proc.metric("keeper_actions_total", kind="top_up", result="sent") or 0) >= 1
    )
    settle(proc, devnet)
    assert (proc.metric("keeper_wallet_balance_tokens", token="collateral") or 0) > 0
    text = proc.metrics()
    assert "keeper_tick_seconds_bucket" in text
    assert "keeper_rpc_requests_total" in text
    assert proc.stop() == 0


def test_healthz_turns_503_when_blocks_stop(
    tmp_path: Path, keeper_process: KeeperProcessFactory
) -> None:
    # a node of its own: its block times follow the wall clock (the shared node's may not)
    with Anvil() as node:
        devnet = deploy(node.url)
        config = write_config(devnet, tmp_path, metrics={"max_block_age_s": 2})
        proc = keeper_process(config, devnet.keeper_env())
        devnet.chain.mine()
        proc.wait_for(lambda: (proc.health() or {}).get("status") == "ok", 10, "healthy")
        # no transactions, no blocks: the last block ages
        proc.wait_for(lambda: (proc.health() or {}).get("status") == "unhealthy", 10, "503")
        health = proc.health()
        assert health is not None
        assert any("block" in reason for reason in health["reasons"]), health
        devnet.chain.mine()
        proc.wait_for(lambda: (proc.health() or {}).get("status") == "ok", 10, "healthy again")
        assert proc.stop() == 0


def test_alerts_reach_a_webhook_and_a_dead_one_does_not_slow_a_tick(
    devnet: Devnet, tmp_path: Path, keeper_process: KeeperProcessFactory, receiver: Receiver
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    config = write_config(
        devnet,
        tmp_path,
        alerts=[
            {"kind": "webhook", "url": dead, "min_severity": "info"},
            {"kind": "webhook", "url": receiver.url, "min_severity": "info"},
        ],
    )
    proc = keeper_process(config, devnet.keeper_env())
    settle(proc, devnet)
    before = devnet.exchange.functions.positions(key).call().collateral
    moved = devnet.set_price("ETH", Decimal("1880"))["blockNumber"]
    proc.wait_for(lambda: devnet.exchange.functions.positions(key).call().collateral > before)
    settle(proc, devnet)
    proc.wait_for(lambda: any(b.get("code") == "action_sent" for b in receiver.bodies), 10)
    sent = [b for b in receiver.bodies if b.get("code") == "action_sent"]
    assert "top_up" in json.dumps(sent[0])
    # the dead sink did not hold the keeper up: the top-up still landed in the next block
    block = devnet.chain.rpc("eth_getBlockByNumber", hex(moved + 1), True)
    senders = {tx["from"].lower() for tx in block["transactions"]}
    assert trader.address.lower() in senders
    assert proc.stop() == 0
    assert "nobody-listens" not in proc.output()  # webhook URLs are secrets: never logged
