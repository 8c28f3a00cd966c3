"""Prometheus metrics and a health check, served over HTTP by aiohttp.

`KeeperMetrics` holds the keeper's figures on a registry of its own (never the process-wide
default, so several keepers or tests share a process without colliding). The loop feeds it
(`record_tick`, or the finer `block_processed`, `tick_finished`, `action`, `fees_spent`,
`wallet_balance`, `observe_rpc`); `MetricsServer` serves it as an async context manager:

- `GET /metrics`: the Prometheus text exposition.
- `GET /healthz`: 200 with a small JSON body when healthy; 503 with the reasons before the
  first block, when the last block is older than `max_block_age_s` (by its own timestamp),
  or when no RPC call has succeeded for `max_rpc_silence_s`.

Money stays exact here: fees are summed as integer wei and balances kept as `TokenAmount`;
they become floats only in the exposition itself, which is all floats. Time comes from an
injectable clock (Unix seconds) so tests are exact without sleeping.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Self

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from keeper.chain.rpc import EndpointStats
from keeper.units import TokenAmount

__all__ = [
    "TICK_BUCKETS",
    "Health",
    "KeeperMetrics",
    "MetricsServer",
    "MetricsSettings",
    "build_app",
]

log = logging.getLogger(__name__)

# Tick latency histogram bucket upper bounds, in seconds.
TICK_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

Clock = Callable[[], float]
RpcSource = Callable[[], Sequence[EndpointStats]]


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Where /metrics and /healthz listen (port 0: any free port) and the health thresholds."""

    host: str = "127.0.0.1"
    port: int = 9464
    max_block_age_s: float = 120.0
    max_rpc_silence_s: float = 120.0
    namespace: str = "keeper"

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("metrics host must not be empty")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise TypeError(f"metrics port must be an int, got {type(self.port).__name__}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"metrics port must be in [0, 65535], got {self.port}")
        for name in ("max_block_age_s", "max_rpc_silence_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"metrics {name} must be a number of seconds")
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"metrics {name} must be positive, got {value}")
        if not self.namespace.replace("_", "").isalnum() or self.namespace[0].isdigit():
            raise ValueError(f"metrics namespace {self.namespace!r} is not a metric name prefix")


@dataclass(frozen=True, slots=True)
class Health:
    """The health check's verdict: `reasons` is empty when healthy."""

    ok: bool
    reasons: tuple[str, ...]
    block_number: int | None
    block_age_s: float | None
    rpc_silence_s: float | None
    role: str | None = None  # with a leader lease: "leader" or "standby" (both are healthy)
    epoch: int | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "status": "ok" if self.ok else "unhealthy",
            "reasons": list(self.reasons),
            "block": self.block_number,
            "block_age_s": _round(self.block_age_s),
            "rpc_silence_s": _round(self.rpc_silence_s),
        }
        if self.role is not None:
            out["role"] = self.role
            out["epoch"] = self.epoch
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _require_int(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _require_label(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


class KeeperMetrics:
    """The keeper's Prometheus metrics (on an own registry) and its health verdict.

    `rpc_source`, when given, is polled at every scrape and health check (e.g.
    `FailoverRpc.stats`); `observe_rpc(stats)` pushes the same snapshots instead.
    """

    def __init__(
        self,
        settings: MetricsSettings | None = None,
        *,
        clock: Clock = time.time,
        rpc_source: RpcSource | None = None,
    ) -> None:
        self.settings = settings or MetricsSettings()
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._rpc_source = rpc_source
        ns = self.settings.namespace
        reg = self.registry
        self._blocks = Counter(
            "blocks_processed", "Blocks the keeper ticked on", namespace=ns, registry=reg
        )
        self._skipped = Counter(
            "blocks_skipped", "Blocks passed over to catch up with the head", namespace=ns,
            registry=reg,
        )  # fmt: skip
        self._tick = Histogram(
            "tick_seconds", "Time one tick took: read, decide, act, record", namespace=ns,
            registry=reg, buckets=TICK_BUCKETS,
        )  # fmt: skip
        self._positions = Gauge(
            "positions_watched", "Open positions in the last snapshot", namespace=ns, registry=reg
        )
        self._accounts = Gauge(
            "accounts_watched", "Cross accounts in the last snapshot", namespace=ns, registry=reg
        )
        self._actions = Counter(
            "actions", "Actions by kind and result", ["kind", "result"], namespace=ns,
            registry=reg,
        )  # fmt: skip
        self._alerts = Counter(
            "alerts", "Alert deliveries by sink and result", ["sink", "result"], namespace=ns,
            registry=reg,
        )  # fmt: skip
        self._block_number: int | None = None
        self._block_time: int | None = None
        self._block_seen_at: float | None = None
        self._lowest_ratio: Decimal | None = None
        self._fees_wei = 0
        self._balances: dict[str, TokenAmount] = {}
        self._rpc: list[EndpointStats] = []
        self._rpc_answers: int | None = None
        self._rpc_ok_at: float | None = None
        self._role: str | None = None
        self._epoch: int | None = None
        self._started_at = clock()
        reg.register(_Computed(self))

    # --- feeding ---------------------------------------------------------------------------

    def block_processed(self, number: int, block_time: int, *, skipped: int = 0) -> None:
        """A tick ran on block `number` (timestamp `block_time`, Unix seconds)."""
        _require_int("block number", number)
        _require_int("block time", block_time)
        _require_int("skipped blocks", skipped)
        now = self._clock()
        self._blocks.inc()
        if skipped:
            self._skipped.inc(skipped)
        self._block_number = number
        self._block_time = block_time
        self._block_seen_at = now
        self._rpc_ok_at = now  # the block came over RPC: a call succeeded

    def tick_finished(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"tick seconds must be a non-negative number, got {seconds!r}")
        self._tick.observe(seconds)

    def watched(self, positions: int, accounts: int = 0) -> None:
        self._positions.set(_require_int("positions", positions))
        self._accounts.set(_require_int("accounts", accounts))

    def lowest_margin_ratio(self, ratio: Decimal | None) -> None:
        """The lowest margin ratio watched (None: nothing watched); exposed as a float."""
        if ratio is not None and not isinstance(ratio, Decimal):
            raise TypeError(f"lowest margin ratio must be a Decimal, got {type(ratio).__name__}")
        self._lowest_ratio = ratio

    def action(self, kind: str, result: str, count: int = 1) -> None:
        """`count` actions of `kind` (top_up, reduce, ...) ended with `result` (sent, failed...)."""
        _require_label("action kind", kind)
        _require_label("action result", result)
        self._actions.labels(kind=kind, result=result).inc(_require_int("action count", count))

    def fees_spent(self, wei: int) -> None:
        """Gas fees paid, in wei (an int: summed exactly)."""
        self._fees_wei += _require_int("fees spent (wei)", wei)

    def wallet_balance(self, token: str, amount: TokenAmount) -> None:
        """The wallet's balance of `token` (a symbol or address: the label)."""
        _require_label("wallet token", token)
        if not isinstance(amount, TokenAmount):
            raise TypeError(f"wallet balance must be a TokenAmount, got {type(amount).__name__}")
        self._balances[token] = amount

    def alert_delivered(self, sink: str, result: str) -> None:
        """One alert delivery to `sink` ended with `result` (sent, failed, dropped)."""
        self._alerts.labels(sink=sink, result=result).inc()

    def observe_rpc(self, stats: Sequence[EndpointStats]) -> None:
        """A snapshot of the RPC's per-endpoint counts (`FailoverRpc.stats()`)."""
        self._rpc = [s.copy() for s in stats]
        answers = sum(s.answers for s in stats)
        if answers > 0 and (self._rpc_answers is None or answers > self._rpc_answers):
            self._rpc_ok_at = self._clock()
        self._rpc_answers = answers

    def leadership(self, role: str, epoch: int | None) -> None:
        """This replica's part in the leader lease: "leader" (at `epoch`) or "standby"."""
        self._role = role
        self._epoch = epoch

    def rpc_succeeded(self) -> None:
        """An RPC call succeeded now (for callers that do not feed `EndpointStats`)."""
        self._rpc_ok_at = self._clock()

    def record_tick(
        self,
        *,
        block_number: int,
        block_time: int,
        seconds: float,
        positions: int,
        accounts: int = 0,
        lowest_ratio: Decimal | None = None,
        skipped_blocks: int = 0,
    ) -> None:
        """One tick's figures at once (the fields of the loop's TickReport)."""
        self.block_processed(block_number, block_time, skipped=skipped_blocks)
        self.tick_finished(seconds)
        self.watched(positions, accounts)
        self.lowest_margin_ratio(lowest_ratio)

    # --- reading ---------------------------------------------------------------------------

    def poll_rpc(self) -> None:
        if self._rpc_source is not None:
            try:
                self.observe_rpc(self._rpc_source())
            except Exception:
                log.exception("metrics: reading the RPC stats failed")

    @property
    def fees_spent_wei(self) -> int:
        return self._fees_wei

    def block_age(self) -> float | None:
        """Seconds between now and the last block's timestamp (0 if the block is ahead)."""
        if self._block_time is None:
            return None
        return max(0.0, self._clock() - self._block_time)

    def rpc_silence(self) -> float:
        """Seconds since the last successful RPC call (since start when there was none)."""
        since = self._rpc_ok_at if self._rpc_ok_at is not None else self._started_at
        return max(0.0, self._clock() - since)

    def health(self) -> Health:
        self.poll_rpc()
        reasons: list[str] = []
        age = self.block_age()
        silence = self.rpc_silence()
        s = self.settings
        if age is None:
            reasons.append("no block processed yet")
        elif age > s.max_block_age_s:
            reasons.append(
                f"last block {self._block_number} is {age:.0f}s old (max {s.max_block_age_s:g}s)"
            )
        if silence > s.max_rpc_silence_s:
            reasons.append(
                f"no successful RPC call for {silence:.0f}s (max {s.max_rpc_silence_s:g}s)"
            )
        return Health(
            not reasons, tuple(reasons), self._block_number, age, silence, self._role, self._epoch
        )

    def exposition(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        self.poll_rpc()
        return generate_latest(self.registry)

    def _collect(self) -> Iterable[Metric]:
        ns = self.settings.namespace
        nan = math.nan
        yield GaugeMetricFamily(
            f"{ns}_last_block_number",
            "Number of the last block ticked on",
            value=nan if self._block_number is None else float(self._block_number),
        )
        yield GaugeMetricFamily(
            f"{ns}_last_block_timestamp_seconds",
            "Timestamp of the last block ticked on",
            value=nan if self._block_time is None else float(self._block_time),
        )
        age = self.block_age()
        yield GaugeMetricFamily(
            f"{ns}_last_block_age_seconds",
            "Seconds since the last block's timestamp",
            value=nan if age is None else age,
        )
        yield GaugeMetricFamily(
            f"{ns}_rpc_silence_seconds",
            "Seconds since the last successful RPC call",
            value=self.rpc_silence(),
        )
        yield GaugeMetricFamily(
            f"{ns}_lowest_margin_ratio",
            "Lowest margin ratio among watched positions and accounts",
            value=nan if self._lowest_ratio is None else float(self._lowest_ratio),
        )
        if self._role is not None:
            yield GaugeMetricFamily(
                f"{ns}_leader",
                "1 while this replica holds the leader lease, 0 while it stands by",
                value=1.0 if self._role == "leader" else 0.0,
            )
            yield GaugeMetricFamily(
                f"{ns}_lease_epoch",
                "The lease epoch this replica leads at (NaN while standing by)",
                value=nan if self._epoch is None else float(self._epoch),
            )
        yield CounterMetricFamily(
            f"{ns}_fees_spent_wei", "Gas fees paid, in wei", value=float(self._fees_wei)
        )
        balance = GaugeMetricFamily(
            f"{ns}_wallet_balance_tokens", "Wallet balance in whole tokens", labels=["token"]
        )
        for token, amount in sorted(self._balances.items()):
            balance.add_metric([token], float(amount.value))
        yield balance
        yield from self._collect_rpc(ns)

    def _collect_rpc(self, ns: str) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            f"{ns}_rpc_requests", "JSON-RPC requests sent, by endpoint", labels=["endpoint"]
        )
        answers = CounterMetricFamily(
            f"{ns}_rpc_answers", "JSON-RPC requests answered with a result", labels=["endpoint"]
        )
        errors = CounterMetricFamily(
            f"{ns}_rpc_errors", "JSON-RPC errors by endpoint and kind", labels=["endpoint", "kind"]
        )
        healthy = GaugeMetricFamily(
            f"{ns}_rpc_endpoint_healthy", "1 unless cooling down after errors", labels=["endpoint"]
        )
        head = GaugeMetricFamily(
            f"{ns}_rpc_endpoint_head", "Latest block the endpoint reported", labels=["endpoint"]
        )
        latency = HistogramMetricFamily(
            f"{ns}_rpc_latency_seconds", "JSON-RPC request latency", labels=["endpoint"]
        )
        hedges = CounterMetricFamily(
            f"{ns}_rpc_hedges",
            "Reads also sent to this endpoint because the one asked first was slow",
            labels=["endpoint"],
        )
        hedge_wins = CounterMetricFamily(
            f"{ns}_rpc_hedge_wins",
            "Hedged reads this endpoint answered first",
            labels=["endpoint"],
        )
        timeouts = GaugeMetricFamily(
            f"{ns}_rpc_timeout_seconds",
            "The timeout the next request would get, by endpoint and kind of call",
            labels=["endpoint", "kind"],
        )
        for s in self._rpc:
            requests.add_metric([s.label], float(s.requests))
            answers.add_metric([s.label], float(s.answers))
            for kind, n in sorted(s.errors.items()):
                errors.add_metric([s.label, kind], float(n))
            healthy.add_metric([s.label], 1.0 if s.healthy else 0.0)
            if s.head is not None:
                head.add_metric([s.label], float(s.head))
            buckets = [
                ("+Inf" if math.isinf(b) else repr(float(b)), float(n))
                for b, n in sorted(s.latency_buckets.items())
            ]
            if buckets and buckets[-1][0] != "+Inf":
                buckets.append(("+Inf", float(s.requests)))
            latency.add_metric([s.label], buckets, s.latency_sum)
            hedges.add_metric([s.label], float(s.hedges))
            hedge_wins.add_metric([s.label], float(s.hedge_wins))
            for kind, seconds in sorted(s.timeouts.items()):
                timeouts.add_metric([s.label, kind], seconds)
        yield from (requests, answers, errors, healthy, head, latency, hedges, hedge_wins, timeouts)


class _Computed(Collector):
    """Figures computed at scrape time or kept exact until then."""

    def __init__(self, metrics: KeeperMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics._collect())


def build_app(metrics: KeeperMetrics) -> web.Application:
    """An aiohttp app serving `/metrics` and `/healthz` for `metrics`."""

    async def get_metrics(_: web.Request) -> web.Response:
        resp = web.Response(body=metrics.exposition())
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def get_healthz(_: web.Request) -> web.Response:
        health = metrics.health()
        return web.Response(
            text=json.dumps(health.to_json()),
            status=200 if health.ok else 503,
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", get_healthz)
    return app


class MetricsServer:
    """`async with MetricsServer(metrics) as server:` serves until the block ends.

    Listens on `metrics.settings.host`/`port` unless `host`/`port` are given; `server.port` is
    the bound port (useful with port 0).
    """

    def __init__(
        self, metrics: KeeperMetrics, *, host: str | None = None, port: int | None = None
    ) -> None:
        self.metrics = metrics
        self.host = host if host is not None else metrics.settings.host
        self._want_port = port if port is not None else metrics.settings.port
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def __repr__(self) -> str:
        return f"MetricsServer({self.host!r}, {self._port or self._want_port})"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("metrics server is not running")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> Self:
        if self._runner is not None:
            raise RuntimeError("metrics server is already running")
        runner = web.AppRunner(build_app(self.metrics), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._want_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self._port = int(address[1])
        log.info("metrics: serving /metrics and /healthz on %s", self.url)
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        self._port = None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
