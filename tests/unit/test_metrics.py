"""KeeperMetrics: figures in, Prometheus exposition and the health verdict out (no HTTP)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from keeper.chain.rpc import EndpointStats
from keeper.metrics import KeeperMetrics, MetricsSettings
from keeper.units import TokenAmount


class FakeClock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(m: KeeperMetrics) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: KeeperMetrics, name: str, **labels: str) -> float:
    return samples(m)[(name, tuple(sorted(labels.items())))]


def endpoint(label: str, requests: int, answers: int, **errors: int) -> EndpointStats:
    s = EndpointStats(label=label, requests=requests, answers=answers, errors=dict(errors))
    s.latency_buckets = dict.fromkeys(s.latency_buckets, answers)
    s.latency_sum = 0.5
    s.head = 42
    return s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics(clock: FakeClock) -> KeeperMetrics:
    return KeeperMetrics(MetricsSettings(max_block_age_s=60, max_rpc_silence_s=30), clock=clock)


def test_tick_figures_are_exposed(metrics: KeeperMetrics, clock: FakeClock) -> None:
    metrics.record_tick(
        block_number=100,
        block_time=int(clock.t) - 4,
        seconds=0.3,
        positions=7,
        accounts=2,
        lowest_ratio=Decimal("0.0625"),
        skipped_blocks=1,
    )
    metrics.record_tick(
        block_number=101, block_time=int(clock.t) - 2, seconds=1.5, positions=6, accounts=2
    )
    s = samples(metrics)
    assert s[("keeper_blocks_processed_total", ())] == 2
    assert s[("keeper_blocks_skipped_total", ())] == 1
    assert s[("keeper_last_block_number", ())] == 101
    assert s[("keeper_last_block_age_seconds", ())] == 2
    assert s[("keeper_positions_watched", ())] == 6
    assert s[("keeper_accounts_watched", ())] == 2
    assert s[("keeper_tick_seconds_count", ())] == 2
    assert s[("keeper_tick_seconds_sum", ())] == pytest.approx(1.8)
    assert s[("keeper_tick_seconds_bucket", (("le", "0.5"),))] == 1
    assert s[("keeper_tick_seconds_bucket", (("le", "2.0"),))] == 2
    # the second tick watched nothing with a ratio: unknown, not a stale figure
    assert math.isnan(s[("keeper_lowest_margin_ratio", ())])


def test_lowest_ratio_is_decimal_in_float_out(metrics: KeeperMetrics) -> None:
    metrics.lowest_margin_ratio(Decimal("0.0712"))
    assert value(metrics, "keeper_lowest_margin_ratio") == 0.0712
    with pytest.raises(TypeError, match="lowest margin ratio must be a Decimal"):
        metrics.lowest_margin_ratio(0.07)  # type: ignore[arg-type]


def test_money_is_exact_until_exposition(metrics: KeeperMetrics) -> None:
    metrics.fees_spent(10**18 + 1)
    metrics.fees_spent(2)
    assert metrics.fees_spent_wei == 10**18 + 3
    assert value(metrics, "keeper_fees_spent_wei_total") == float(10**18 + 3)
    with pytest.raises(TypeError, match=r"fees spent \(wei\) must be an int"):
        metrics.fees_spent(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"fees spent \(wei\) must be >= 0"):
        metrics.fees_spent(-1)
    metrics.wallet_balance("USDC", TokenAmount(1_234_560_000, 6))
    metrics.wallet_balance("ETH", TokenAmount(5 * 10**17, 18))
    assert value(metrics, "keeper_wallet_balance_tokens", token="USDC") == 1234.56
    assert value(metrics, "keeper_wallet_balance_tokens", token="ETH") == 0.5
    with pytest.raises(TypeError, match="wallet balance must be a TokenAmount"):
        metrics.wallet_balance("USDC", 5)  # type: ignore[arg-type]


def test_actions_by_kind_and_result(metrics: KeeperMetrics) -> None:
    metrics.action("top_up", "sent")
    metrics.action("top_up", "sent")
    metrics.action("close", "failed")
    assert value(metrics, "keeper_actions_total", kind="top_up", result="sent") == 2
    assert value(metrics, "keeper_actions_total", kind="close", result="failed") == 1
    with pytest.raises(ValueError, match="action kind"):
        metrics.action("", "sent")


def test_rpc_stats_by_endpoint(metrics: KeeperMetrics) -> None:
    metrics.observe_rpc(
        [endpoint("http://a:1", 10, 8, timeout=2), endpoint("https://b", 3, 1, server=1, connect=1)]
    )
    s = samples(metrics)
    assert s[("keeper_rpc_requests_total", (("endpoint", "http://a:1"),))] == 10
    assert s[("keeper_rpc_answers_total", (("endpoint", "https://b"),))] == 1
    assert s[("keeper_rpc_errors_total", (("endpoint", "http://a:1"), ("kind", "timeout")))] == 2
    assert s[("keeper_rpc_errors_total", (("endpoint", "https://b"), ("kind", "connect")))] == 1
    assert s[("keeper_rpc_endpoint_head", (("endpoint", "https://b"),))] == 42
    assert s[("keeper_rpc_latency_seconds_count", (("endpoint", "http://a:1"),))] == 8
    assert (
        s[("keeper_rpc_latency_seconds_bucket", (("endpoint", "https://b"), ("le", "+Inf")))] == 1
    )


def test_rpc_hedges_and_timeouts_by_endpoint(metrics: KeeperMetrics) -> None:
    a = endpoint("http://a:1", 10, 8)
    a.hedges, a.hedge_wins, a.timeouts = 4, 3, {"head": 0.25, "call": 1.5}
    metrics.observe_rpc([a])
    s = samples(metrics)
    assert s[("keeper_rpc_hedges_total", (("endpoint", "http://a:1"),))] == 4
    assert s[("keeper_rpc_hedge_wins_total", (("endpoint", "http://a:1"),))] == 3
    key = ("keeper_rpc_timeout_seconds", (("endpoint", "http://a:1"), ("kind", "call")))
    assert s[key] == 1.5


def test_rpc_source_is_polled_at_scrape(clock: FakeClock) -> None:
    stats = [endpoint("http://a:1", 1, 1)]
    m = KeeperMetrics(clock=clock, rpc_source=lambda: stats)
    assert value(m, "keeper_rpc_requests_total", endpoint="http://a:1") == 1
    stats = [endpoint("http://a:1", 5, 5)]
    assert value(m, "keeper_rpc_requests_total", endpoint="http://a:1") == 5


def test_registries_do_not_collide(clock: FakeClock) -> None:
    a, b = KeeperMetrics(clock=clock), KeeperMetrics(clock=clock)
    a.action("close", "sent")
    assert value(a, "keeper_actions_total", kind="close", result="sent") == 1
    assert ("keeper_actions_total", (("kind", "close"), ("result", "sent"))) not in samples(b)
    assert REGISTRY.get_sample_value("keeper_blocks_processed_total") is None


def test_healthz_before_first_block(metrics: KeeperMetrics) -> None:
    health = metrics.health()
    assert not health.ok
    assert health.reasons == ("no block processed yet",)
    assert health.to_json()["status"] == "unhealthy"
    assert math.isnan(value(metrics, "keeper_last_block_age_seconds"))


def test_healthz_follows_block_age(metrics: KeeperMetrics, clock: FakeClock) -> None:
    metrics.block_processed(7, int(clock.t))
    assert metrics.health().ok
    clock.t += 60
    metrics.rpc_succeeded()  # the RPC answers, but no new block comes
    assert metrics.health().ok  # at the threshold, not beyond it
    clock.t += 1
    health = metrics.health()
    assert not health.ok
    assert health.reasons == ("last block 7 is 61s old (max 60s)",)
    assert health.block_number == 7
    assert health.block_age_s == 61
    metrics.block_processed(8, int(clock.t))
    assert metrics.health().ok


def test_block_ahead_of_the_clock_is_age_zero(metrics: KeeperMetrics, clock: FakeClock) -> None:
    metrics.block_processed(1, int(clock.t) + 30)
    assert metrics.block_age() == 0
    assert metrics.health().ok


def test_healthz_rpc_stuck(clock: FakeClock) -> None:
    stats = [endpoint("http://a:1", 5, 5)]
    m = KeeperMetrics(
        MetricsSettings(max_block_age_s=600, max_rpc_silence_s=30),
        clock=clock,
        rpc_source=lambda: stats,
    )
    m.block_processed(1, int(clock.t))
    clock.t += 20
    stats = [endpoint("http://a:1", 9, 7, timeout=2)]  # answers went up: a call succeeded
    assert m.health().ok
    clock.t += 25
    stats = [endpoint("http://a:1", 15, 7, timeout=8)]  # only errors since
    assert m.health().ok  # 25 s of silence
    clock.t += 10
    health = m.health()
    assert not health.ok
    assert health.reasons == ("no successful RPC call for 35s (max 30s)",)
    assert value(m, "keeper_rpc_silence_seconds") == 35


def test_both_reasons_at_once(metrics: KeeperMetrics, clock: FakeClock) -> None:
    metrics.block_processed(3, int(clock.t))
    clock.t += 100
    assert metrics.health().reasons == (
        "last block 3 is 100s old (max 60s)",
        "no successful RPC call for 100s (max 30s)",
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"port": 70000}, ValueError, r"metrics port must be in \[0, 65535\]"),
        ({"port": "80"}, TypeError, "metrics port must be an int"),
        ({"max_block_age_s": 0}, ValueError, "max_block_age_s must be positive"),
        ({"max_rpc_silence_s": math.inf}, ValueError, "max_rpc_silence_s must be positive"),
        ({"host": ""}, ValueError, "metrics host"),
        ({"namespace": "1x"}, ValueError, "namespace"),
    ],
)
def test_settings_errors_name_the_field(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        MetricsSettings(**kwargs)  # type: ignore[arg-type]


def test_settings_defaults_and_port_zero() -> None:
    s = MetricsSettings(port=0)
    assert (s.host, s.port, s.max_block_age_s, s.max_rpc_silence_s) == ("127.0.0.1", 0, 120, 120)


def test_the_replica_role_in_metrics_and_health(metrics: KeeperMetrics, clock: FakeClock) -> None:
    assert ("keeper_leader", ()) not in samples(metrics)  # no lease: no role
    assert "role" not in metrics.health().to_json()
    metrics.record_tick(block_number=5, block_time=int(clock()), seconds=0.1, positions=1)
    metrics.leadership("leader", 7)
    assert value(metrics, "keeper_leader") == 1.0
    assert value(metrics, "keeper_lease_epoch") == 7.0
    body = metrics.health().to_json()
    assert (body["status"], body["role"], body["epoch"]) == ("ok", "leader", 7)
    metrics.leadership("standby", None)
    assert value(metrics, "keeper_leader") == 0.0
    assert math.isnan(value(metrics, "keeper_lease_epoch"))
    body = metrics.health().to_json()
    assert (body["status"], body["role"], body["epoch"]) == ("ok", "standby", None)
