"""/metrics and /healthz over real HTTP on 127.0.0.1, port 0."""

from __future__ import annotations

import json
from decimal import Decimal

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from keeper.alerts import AlertCode, Alerter, SinkKind, SinkSettings
from keeper.chain.rpc import EndpointStats
from keeper.metrics import KeeperMetrics, MetricsServer, MetricsSettings
from keeper.model import Severity
from keeper.units import TokenAmount
from tests.integration.ops.conftest import Receiver


class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.headers["Content-Type"], await resp.text()


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_and_healthz_of_a_running_keeper() -> None:
    clock = FakeClock()
    stats = [EndpointStats("http://127.0.0.1:8545", requests=4, answers=3, errors={"timeout": 1})]
    metrics = KeeperMetrics(
        MetricsSettings(port=0, max_block_age_s=30, max_rpc_silence_s=60),
        clock=clock,
        rpc_source=lambda: stats,
    )
    async with MetricsServer(metrics) as server:
        assert server.port > 0
        status, ctype, body = await get(f"{server.url}/healthz")
        assert status == 503
        assert ctype.startswith("application/json")
        assert json.loads(body)["reasons"] == ["no block processed yet"]

        metrics.record_tick(
            block_number=1234,
            block_time=int(clock.t) - 3,
            seconds=0.42,
            positions=5,
            accounts=1,
            lowest_ratio=Decimal("0.085"),
        )
        metrics.action("top_up", "sent")
        metrics.fees_spent(21_000 * 10**9)
        metrics.wallet_balance("USDC", TokenAmount(2_500_000_000, 6))
        status, _, body = await get(f"{server.url}/healthz")
        assert status == 200
        assert json.loads(body) == {
            "status": "ok",
            "reasons": [],
            "block": 1234,
            "block_age_s": 3.0,
            "rpc_silence_s": 0.0,
        }

        status, ctype, body = await get(f"{server.url}/metrics")
        assert status == 200
        assert ctype.startswith("text/plain")
        s = scrape(body)
        assert s[("keeper_blocks_processed_total", ())] == 1
        assert s[("keeper_last_block_number", ())] == 1234
        assert s[("keeper_last_block_age_seconds", ())] == 3
        assert s[("keeper_positions_watched", ())] == 5
        assert s[("keeper_lowest_margin_ratio", ())] == 0.085
        assert s[("keeper_tick_seconds_count", ())] == 1
        assert s[("keeper_actions_total", (("kind", "top_up"), ("result", "sent")))] == 1
        assert s[("keeper_fees_spent_wei_total", ())] == 21_000 * 10**9
        assert s[("keeper_wallet_balance_tokens", (("token", "USDC"),))] == 2500
        endpoint = (("endpoint", "http://127.0.0.1:8545"),)
        assert s[("keeper_rpc_requests_total", endpoint)] == 4
        assert s[("keeper_rpc_errors_total", (*endpoint, ("kind", "timeout")))] == 1

        clock.t += 40  # blocks stop
        status, _, body = await get(f"{server.url}/healthz")
        assert status == 503
        assert json.loads(body)["reasons"] == ["last block 1234 is 43s old (max 30s)"]
        clock.t += 30  # and the RPC answers nothing new
        status, _, body = await get(f"{server.url}/healthz")
        assert status == 503
        assert json.loads(body)["reasons"][1] == "no successful RPC call for 70s (max 60s)"

        metrics.block_processed(1235, int(clock.t))
        status, _, _ = await get(f"{server.url}/healthz")
        assert status == 200
        url = server.url
    with pytest.raises(aiohttp.ClientConnectionError):  # stopped: the port is closed
        await get(f"{url}/healthz")


async def test_two_servers_in_one_process() -> None:
    a, b = KeeperMetrics(MetricsSettings(port=0)), KeeperMetrics(MetricsSettings(port=0))
    a.block_processed(1, 0)
    async with MetricsServer(a) as sa, MetricsServer(b) as sb:
        assert sa.port != sb.port
        assert "keeper_blocks_processed_total 1.0" in (await get(f"{sa.url}/metrics"))[2]
        assert "keeper_blocks_processed_total 0.0" in (await get(f"{sb.url}/metrics"))[2]
        url = sa.url
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(f"{url}/metrics")


async def test_alert_deliveries_show_in_metrics(receiver: Receiver) -> None:
    metrics = KeeperMetrics(MetricsSettings(port=0))
    alerter = Alerter(
        [SinkSettings(SinkKind.SLACK, url=f"{receiver.url}/slack/x")],
        observer=metrics.alert_delivered,
    )
    alerter.alert(AlertCode.SEQUENCER_DOWN, Severity.CRITICAL, "sequencer down")
    await alerter.close()
    async with MetricsServer(metrics) as server:
        s = scrape((await get(f"{server.url}/metrics"))[2])
    assert s[("keeper_alerts_total", (("result", "sent"), ("sink", "slack")))] == 1
