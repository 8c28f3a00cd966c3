"""Replicas of `keeper run` sharing one Postgres journal, against a devnet with interval
mining, under faults: the leader killed (SIGKILL), frozen (SIGSTOP, then SIGCONT once another
leads), cut off from the database, and Postgres itself restarted, at random moments.

Each round opens a 12x ETH long for the trader (the keeper acts for it as its approved
operator), then moves the price so that the position needs one top-up (its margin ratio falls
from 8.2% to 4.4%, between `reduce_below` and `top_up_below`), and five blocks later moves it
again so that, had nobody topped it up, it would be liquidatable (2.4% against a 2.5%
maintenance margin). A liquidator watches every block. The fault is injected at a random
moment from 1.5 s before the first move to 1 s after it. What a round checks:

- duplicates: top-ups (MarginAdded from the keeper's key) beyond the one the round needs,
  and any other keeper action on the position (one top-up restores it to 8%: nothing else is
  ever needed), plus keeper transactions on chain that the journal does not hold;
- lost: intents still open once the round settled, or expired without being signed;
- liquidated: the position liquidated although one top-up would have saved it;
- failover: blocks from the fault to a leader again (another replica for kill, freeze and
  cut; any, with its lease renewed after the restart, for a Postgres restart).

`run_chaos` is both the CI test's engine (a few rounds) and scripts/bench_failover.py's.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from web3 import Web3

from keeper.journal import OPEN_STATUSES, IntentStatus, Journal, Lease
from keeper.testing.anvil import Anvil
from keeper.testing.devnet import Devnet, deploy
from keeper.testing.postgres import PostgresServer
from keeper.testing.process import KeeperProcess

FAULTS = ("kill", "freeze", "cut", "pg_restart")
PASSWORD_ENV = "KEEPER_JOURNAL_PASSWORD"
BASE_PRICE = Decimal(2000)
FIRST_MOVE = Decimal("0.96")  # ratio 8.2% -> 4.4%: one top-up
SECOND_MOVE = Decimal("0.94")  # 2.4% without it (liquidatable), 6% with it
COLLATERAL = Decimal(1000)
SIZE = Decimal(6)  # 12,000 USD at 2,000: 12x
MARGIN_ADDED = "0x" + Web3.keccak(text="MarginAdded(bytes32,address,uint256,int256)").hex()
LIQUIDATED = (
    "0x"
    + Web3.keccak(
        text="PositionLiquidated(bytes32,address,address,uint256,uint256,int256,int256,uint256)"
    ).hex()
)
DECREASED = (
    "0x"
    + Web3.keccak(
        text="PositionDecreased(bytes32,address,uint256,uint256,uint256,int256,uint256,int256,uint256)"
    ).hex()
)


class TcpProxy:
    """A TCP relay to a local port that can be cut: `cut(s)` closes every connection through
    it and refuses new ones for `s` seconds (the replica behind it loses its database)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._cut_until = 0.0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if time.monotonic() < self._cut_until:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def cut(self, seconds: float) -> None:
        self._cut_until = time.monotonic() + seconds
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self.cut(0)


@dataclass
class Replica:
    name: str
    config: Path
    env: dict[str, str]
    proxy: TcpProxy
    process: KeeperProcess | None = None
    frozen: bool = False
    earlier_output: str = ""  # of its processes before the current one

    def start(self) -> None:
        if self.process is not None:
            self.earlier_output += self.process.output()
            self.process.close()
        self.process = KeeperProcess(self.config, self.env, args=("--log-level", "INFO"))
        self.process.start()

    def close(self) -> None:
        if self.process is not None:
            self.process.close()

    def output(self) -> str:
        return self.earlier_output + (self.process.output() if self.process else "")

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


@dataclass
class Round:
    number: int
    fault: str
    offset_s: float
    top_ups: int = 0
    other_actions: int = 0
    liquidated: bool = False
    failover_blocks: int | None = None
    leaders: tuple[int, int] = (0, 0)  # lease epochs before and after


@dataclass
class ChaosReport:
    rounds: list[Round] = field(default_factory=list)
    duplicates: int = 0
    unjournaled: int = 0
    lost: int = 0
    liquidated: int = 0
    missed: int = 0  # rounds where no top-up landed (and the position was not liquidated)
    spurious_takeovers: int = 0  # epoch changes in rounds without a fault that explains them
    fenced: int = 0  # writes the journal refused to a replica that had lost the lease
    stood_down: int = 0  # turns on which a replica found it no longer led
    seconds: float = 0.0

    def failover(self) -> list[int]:
        return [r.failover_blocks for r in self.rounds if r.failover_blocks is not None]

    def summary(self) -> dict[str, Any]:
        blocks = sorted(self.failover())

        def pct(p: float) -> int | None:
            if not blocks:
                return None
            return blocks[min(len(blocks) - 1, round(p * (len(blocks) - 1)))]

        by_fault = {
            f: sorted(
                r.failover_blocks
                for r in self.rounds
                if r.fault == f and r.failover_blocks is not None
            )
            for f in FAULTS
        }
        return {
            "rounds": len(self.rounds),
            "duplicate_actions_on_chain": self.duplicates,
            "unjournaled_transactions": self.unjournaled,
            "intents_lost": self.lost,
            "saveable_positions_liquidated": self.liquidated,
            "rounds_without_a_top_up": self.missed,
            "rounds_without_a_new_leader_in_30s": sum(
                1 for r in self.rounds if r.failover_blocks is None
            ),
            "failover_blocks": {
                "p50": pct(0.5),
                "p99": pct(0.99),
                "max": blocks[-1] if blocks else None,
                "mean": round(statistics.fmean(blocks), 2) if blocks else None,
            },
            "failover_blocks_by_fault": {
                f: {"n": len(v), "max": v[-1] if v else None, "p50": v[len(v) // 2] if v else None}
                for f, v in by_fault.items()
            },
            "spurious_takeovers": self.spurious_takeovers,
            "writes_fenced_off": self.fenced,
            "stood_down_at_a_turn": self.stood_down,
            "seconds": round(self.seconds, 1),
        }


class Cluster:
    """Postgres, Anvil with the reference exchange at 1 block per `block_time` seconds, and
    `replicas` keeper processes, each reaching Postgres through its own cuttable proxy."""

    def __init__(
        self,
        workdir: Path,
        *,
        replicas: int = 3,
        block_time: float = 1.0,
        lease_seconds: str = "2",
        lease_blocks: int = 2,
        extra_env: Mapping[int, Mapping[str, str]] | None = None,
    ) -> None:
        self.workdir = workdir
        self.extra_env = dict(extra_env or {})
        self.block_time = block_time
        self.lease_seconds = lease_seconds
        self.lease_blocks = lease_blocks
        self.count = replicas
        self.replicas: list[Replica] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Cluster:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for r in self.replicas:
            if r.frozen and r.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(r.pid, signal.SIGCONT)
        self._stack.close()

    def _start(self) -> None:
        self.pg = PostgresServer()
        self._stack.callback(self.pg.close)
        self.anvil = Anvil().start()
        self._stack.callback(self.anvil.stop)
        self.devnet: Devnet = deploy(self.anvil.url)
        d = self.devnet
        self.trader = d.account("trader")
        self.operator = d.account("operator").address
        d.approve(self.trader)
        d.approve_operator(self.trader, actions=1_000_000)
        self.key: bytes = d.exchange.functions.positionKey(
            self.trader.address, d.market_id("ETH"), True
        ).call()
        self.url = self.pg.create_database("keeper")
        self.journal = Journal(self.url, password=self.pg.password)  # the observer's own
        self._stack.callback(self.journal.close)
        self.anvil.rpc("evm_setIntervalMining", int(self.block_time))
        for i in range(self.count):
            proxy = TcpProxy(self.pg.port)
            self._stack.callback(proxy.close)
            via = f"postgresql://keeper@127.0.0.1:{proxy.port}/keeper"
            config = d.keeper_config(
                self.workdir / f"replica-{i}" / "keeper.toml",
                keeper={"journal": via, "journal_password_env": PASSWORD_ENV},
                leader={"lease_seconds": self.lease_seconds, "lease_blocks": self.lease_blocks},
                accounts={"watch": [self.trader.address], "delegated": True},
                budget={"max_spend_per_day": "10000000", "max_top_up_per_position": "5000"},
                chain={"poll_interval_s": "0.05"},
            )
            env = {**d.keeper_env("operator"), PASSWORD_ENV: self.pg.password}
            env.update(self.extra_env.get(i, {}))
            replica = Replica(f"replica-{i}", config, env, proxy)
            self.replicas.append(replica)
            self._stack.callback(replica.close)
            replica.start()
            if i == 0:  # the first one started leads
                self.wait_for_leader(timeout=30)

    # -- reading ---------------------------------------------------------------------------

    def head(self) -> int:
        return int(self.anvil.rpc("eth_blockNumber"), 16)

    def lease(self) -> Lease | None:
        leases = self.journal.leases()
        return leases[0] if leases else None

    def leader(self) -> Replica | None:
        lease = self.lease()
        if lease is None or lease.expired():
            return None
        pid = int(lease.owner.split(":")[1])
        return next((r for r in self.replicas if r.pid == pid), None)

    def wait_for_leader(self, *, timeout: float, other_than: str | None = None) -> Lease:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lease = self.lease()
            if lease is not None and not lease.expired() and lease.owner != other_than:
                return lease
            time.sleep(0.05)
        raise AssertionError(f"no leader within {timeout}s (lease: {self.lease()})")

    def keeper_actions(self, topic: str, start: int, end: int) -> int:
        """Events `topic` on the position from the keeper's transactions, blocks start..end."""
        operator = self.operator.lower()
        return sum(
            1
            for log in self.logs(topic, start, end)
            if self.sender(log["transactionHash"]) == operator
        )

    def logs(self, topic: str, start: int, end: int) -> list[dict[str, Any]]:
        got = self.anvil.rpc(
            "eth_getLogs",
            {
                "address": self.devnet.deployment.exchange,
                "fromBlock": hex(start),
                "toBlock": hex(end),
                "topics": [topic, "0x" + self.key.hex()],
            },
        )
        return list(got)

    def sender(self, tx_hash: str) -> str:
        tx = self.anvil.rpc("eth_getTransactionByHash", tx_hash)
        return str(tx["from"]).lower()

    # -- moves -----------------------------------------------------------------------------

    def open_position(self) -> None:
        d = self.devnet
        d.set_price("ETH", BASE_PRICE)
        if d.exchange.functions.positions(self.key).call()[4]:  # its size
            d.chain.send(self.trader, d.exchange.functions.closePosition(d.market_id("ETH"), True))
        d.open_isolated(self.trader, "ETH", long=True, collateral=COLLATERAL, size=SIZE)

    def settle(self, timeout: float = 30) -> None:
        """Until the journal has no open intent (what is in flight has landed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(i.status in OPEN_STATUSES for i in self.journal.open_intents()):
                return
            time.sleep(0.1)

    @contextlib.contextmanager
    def liquidator(self) -> Iterator[list[int]]:
        """Liquidates the position on any block it is liquidatable; yields those blocks."""
        stop = threading.Event()
        hits: list[int] = []
        chain = deploy_view(self.devnet)

        def watch() -> None:
            while not stop.is_set():
                with contextlib.suppress(Exception):
                    if chain.is_liquidatable(self.key):
                        chain.liquidate(self.trader.address, "ETH", long=True)
                        hits.append(self.head())
                stop.wait(0.1)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        try:
            yield hits
        finally:
            stop.set()
            thread.join()


def deploy_view(devnet: Devnet) -> Devnet:
    """Another connection to the same deployment (web3 objects are not shared by threads)."""
    from keeper.testing.devnet import DevChain  # noqa: PLC0415

    return Devnet(DevChain(devnet.url), devnet.deployment, devnet.markets)


def _fault(cluster: Cluster, kind: str, leader: Replica | None) -> Callable[[], None]:
    """Injects `kind` now; returns the heal to run once another leader took over."""
    lease_s = float(cluster.lease_seconds)
    if kind == "pg_restart":
        cluster.pg.restart()
        return lambda: None
    assert leader is not None
    assert leader.process is not None
    assert leader.pid is not None
    if kind == "kill":
        leader.process.kill()

        def restart() -> None:
            leader.start()

        return restart
    if kind == "freeze":
        os.kill(leader.pid, signal.SIGSTOP)
        leader.frozen = True

        def wake() -> None:
            assert leader.pid is not None
            os.kill(leader.pid, signal.SIGCONT)
            leader.frozen = False

        return wake
    if kind == "cut":
        leader.proxy.cut(lease_s * 2)
        return lambda: None
    raise ValueError(f"unknown fault {kind}")


def run_round(cluster: Cluster, number: int, kind: str, rng: random.Random) -> Round:
    bt = cluster.block_time
    cluster.settle()
    cluster.open_position()
    time.sleep(bt)
    r = Round(number, kind, round(rng.uniform(-1.5, 1.0) * bt, 2))
    start = cluster.head()
    before = cluster.lease()
    r.leaders = (before.epoch if before else 0, 0)
    leader = cluster.leader()
    d = cluster.devnet
    fault_head = fault_ms = 0
    with cluster.liquidator() as hits:
        if r.offset_s < 0:
            time.sleep(-r.offset_s)
            fault_head, fault_ms = cluster.head(), cluster.journal.now_ms()
            heal = _fault(cluster, kind, leader)
            d.set_price("ETH", BASE_PRICE * FIRST_MOVE)
        else:
            d.set_price("ETH", BASE_PRICE * FIRST_MOVE)
            time.sleep(r.offset_s)
            fault_head, fault_ms = cluster.head(), cluster.journal.now_ms()
            heal = _fault(cluster, kind, leader)
        # failover: another replica leads (any, renewed after the fault, for a restart)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                lease = cluster.lease()
                if lease is not None and not lease.expired():
                    ok = (
                        lease.renewed_at_ms > fault_ms
                        if kind == "pg_restart"
                        else leader is None or lease.owner.split(":")[1] != str(leader.pid)
                    )
                    if ok:
                        r.failover_blocks = cluster.head() - fault_head
                        break
            time.sleep(0.05)
        moved = cluster.head()
        while cluster.head() < moved + 5:
            time.sleep(0.1)
        d.set_price("ETH", BASE_PRICE * SECOND_MOVE)
        settled = cluster.head()
        while cluster.head() < settled + 2:
            time.sleep(0.1)
        heal()
        cluster.settle()
    end = cluster.head()
    after = cluster.lease()
    r.leaders = (r.leaders[0], after.epoch if after else 0)
    r.top_ups = cluster.keeper_actions(MARGIN_ADDED, start, end)
    r.other_actions = cluster.keeper_actions(DECREASED, start, end)
    r.liquidated = bool(hits) or bool(cluster.logs(LIQUIDATED, start, end))
    return r


def run_chaos(
    workdir: Path,
    *,
    rounds: int,
    seed: int = 1,
    faults: tuple[str, ...] = FAULTS,
    progress: Callable[[Round], None] | None = None,
    **cluster_args: Any,
) -> ChaosReport:
    rng = random.Random(seed)
    report = ChaosReport()
    started = time.monotonic()
    with Cluster(workdir, **cluster_args) as cluster:
        first_block = cluster.head()
        for n in range(rounds):
            kind = faults[n % len(faults)] if n < len(faults) else rng.choice(faults)
            r = run_round(cluster, n + 1, kind, rng)
            report.rounds.append(r)
            if progress is not None:
                progress(r)
        cluster.settle()
        report.seconds = time.monotonic() - started
        _audit(cluster, report, first_block)
    return report


def _audit(cluster: Cluster, report: ChaosReport, first_block: int) -> None:
    for r in report.rounds:
        if r.liquidated:
            report.liquidated += 1
        elif r.top_ups == 0:
            report.missed += 1
        report.duplicates += max(0, r.top_ups - 1) + r.other_actions
        if r.leaders[1] - r.leaders[0] > (2 if r.fault != "pg_restart" else 1):
            report.spurious_takeovers += r.leaders[1] - r.leaders[0] - 1
    outputs = [r.output() for r in cluster.replicas]
    report.fenced = sum(o.count("standing by: lease") for o in outputs)
    report.stood_down = sum(o.count("no longer the leader of") for o in outputs)
    journal = cluster.journal
    report.lost = sum(1 for i in journal.open_intents()) + sum(
        1
        for i in journal.history(limit=100_000)
        if i.status is IntentStatus.EXPIRED and not journal.transactions(i.id)
    )
    known = {t.hash.lower() for t in journal.transactions()}
    operator = cluster.operator.lower()
    head = cluster.head()
    for number in range(first_block, head + 1):
        block = cluster.anvil.rpc("eth_getBlockByNumber", hex(number), True)
        for tx in block["transactions"]:
            if str(tx["from"]).lower() == operator and tx["hash"].lower() not in known:
                report.unjournaled += 1
