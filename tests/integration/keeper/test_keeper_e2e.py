"""`keeper run` as a real subprocess against the reference exchange on Anvil: price paths,
budgets, cross accounts, dry run, the halt switch, a crash and restart, and `config check`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from web3.exceptions import ContractLogicError

from keeper.testing.anvil import free_port
from keeper.testing.devnet import Devnet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
KEEPER = str(Path(sys.executable).with_name("keeper"))
USDC = 10**6


def write_config(
    devnet: Devnet,
    tmp_path: Path,
    *,
    per_position: str = "5000",
    per_day: str = "20000",
    extra: str = "",
) -> tuple[Path, int]:
    d = devnet.deployment
    port = free_port()
    text = f"""
[keeper]
journal = "journal.sqlite"
halt_file = "HALT"
{extra}

[chain]
chain_id = {d.chain_id}
rpc = ["{devnet.chain.url}"]
confirmations = 0
poll_interval_s = "0.05"
replace_after_blocks = 3
multicall = "{d.multicall}"

[venue]
kind = "reference"
exchange = "{d.exchange}"
lens = "{d.lens}"

[accounts]
watch = ["{d.trader}"]

[signer]
source = "env"
key_env = "KEEPER_TEST_KEY"

[thresholds]
top_up_below = "0.05"
top_up_to = "0.08"
reduce_below = "0.04"
close_below = "0.03"

[budget]
token_decimals = 6
max_top_up_per_position = "{per_position}"
max_spend_per_day = "{per_day}"
reserve = "1000"

[metrics]
listen = "127.0.0.1:{port}"
max_block_age_s = 100000
"""
    path = tmp_path / "keeper.toml"
    path.write_text(text)
    return path, port


class KeeperRun:
    """`keeper run --config FILE` in a subprocess, with its /healthz and its journal."""

    def __init__(self, devnet: Devnet, config: Path, port: int, *args: str, **env: str) -> None:
        self.devnet = devnet
        self.config = config
        self.port = port
        self.log = config.with_suffix(f".{time.monotonic_ns()}.log")
        environ = dict(os.environ)
        environ["KEEPER_TEST_KEY"] = devnet.account("trader").key.hex()
        environ.update(env)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [KEEPER, "run", "--config", str(config), "--log-level", "DEBUG", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environ,
                cwd=ROOT,
            )

    def output(self) -> str:
        return self.log.read_text()

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                data: dict[str, Any] = json.loads(r.read())
                return data
        except urllib.error.HTTPError as exc:
            unhealthy: dict[str, Any] = json.loads(exc.read())
            return unhealthy
        except OSError:
            return None

    def processed(self) -> int:
        h = self.health()
        return -1 if h is None or h.get("block") is None else int(h["block"])

    def open_intents(self) -> int:
        path = self.config.parent / "journal.sqlite"
        if not path.exists():
            return 0
        with sqlite3.connect(path) as db:
            try:
                row = db.execute(
                    "SELECT COUNT(*) FROM intents WHERE status IN "
                    "('decided','signed','sent','mined','awaiting_execution')"
                ).fetchone()
            except sqlite3.OperationalError:
                return 0
        return int(row[0])

    def settle(self, timeout: float = 20.0) -> None:
        """Until the keeper has processed the chain's head and nothing of it is in flight."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"keeper exited {self.proc.returncode}:\n{self.output()}")
            head = self.devnet.chain.block_number()
            if self.processed() >= head and self.open_intents() == 0:
                time.sleep(0.15)
                if self.devnet.chain.block_number() == head:
                    return
            time.sleep(0.05)
        raise AssertionError(f"keeper did not settle in {timeout}s:\n{self.output()[-4000:]}")

    def wait(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"keeper exited {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out:\n{self.output()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"keeper ignored {sig}:\n{self.output()}") from None
        return int(self.proc.returncode)


@pytest.fixture
def runs() -> Iterator[list[KeeperRun]]:
    started: list[KeeperRun] = []
    yield started
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def start(
    runs: list[KeeperRun], devnet: Devnet, config: Path, port: int, *a: str, **e: str
) -> KeeperRun:
    run = KeeperRun(devnet, config, port, *a, **e)
    runs.append(run)
    run.wait(lambda: run.processed() >= 0)
    return run


def journal_rows(config: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(config.parent / "journal.sqlite") as db:
        return list(db.execute(sql).fetchall())


def position(devnet: Devnet, key: bytes) -> Any:
    return devnet.exchange.functions.positions(key).call()


def test_a_falling_price_is_met_by_a_top_up_in_the_next_block(
    devnet: Devnet, tmp_path: Path, runs: list[KeeperRun]
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    config, port = write_config(devnet, tmp_path)
    run = start(runs, devnet, config, port)
    run.settle()
    before = position(devnet, key).collateral
    moved = devnet.set_price("ETH", Decimal("1880"))["blockNumber"]
    run.wait(lambda: position(devnet, key).collateral > before)
    run.settle()
    [(status, tx_hash)] = journal_rows(
        config,
        "SELECT i.status, t.tx_hash FROM intents i JOIN transactions t ON t.intent_id = i.id"
        " WHERE i.kind = 'top_up'",
    )
    assert status == "done"
    mined_in = devnet.w3.eth.get_transaction_receipt(tx_hash)["blockNumber"]
    print(f"price moved in block {moved}; top-up mined in block {mined_in}")
    assert mined_in == moved + 1
    assert run.stop() == 0
    assert "stopped cleanly" in run.output()


def test_a_fall_beyond_the_budget_is_reduced_or_closed_never_liquidated(
    devnet: Devnet, tmp_path: Path, runs: list[KeeperRun]
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    config, port = write_config(devnet, tmp_path, per_position="300", per_day="600")
    run = start(runs, devnet, config, port)
    run.settle()
    price = Decimal("2000")
    liquidator = devnet.account("liquidator")
    while price > Decimal("1500"):
        price -= Decimal("20")
        devnet.set_price("ETH", price)
        run.settle()
        p = position(devnet, key)
        if p.size == 0:
            break
        assert not devnet.is_liquidatable(key), f"liquidatable at {price}"
        with pytest.raises(ContractLogicError):  # NotLiquidatable
            devnet.exchange.functions.liquidate(trader.address, 0, True).call(
                {"from": liquidator.address}
            )
    kinds = [k for (k,) in journal_rows(config, "SELECT kind FROM intents WHERE status='done'")]
    assert "top_up" in kinds
    assert {"reduce", "close"} & set(kinds), kinds
    spent = sum(
        int(a)
        for (a,) in journal_rows(
            config, "SELECT spend_amount FROM intents WHERE kind='top_up' AND status='done'"
        )
    )
    assert spent <= 600 * USDC
    print(f"path down to {price}: actions {kinds}, spent {Decimal(spent) / USDC} USDC")
    assert run.stop() == 0


def test_a_cross_account_is_protected(
    devnet: Devnet, tmp_path: Path, runs: list[KeeperRun]
) -> None:
    trader = devnet.account("trader")
    devnet.deposit_cross(trader, 2_000)
    devnet.open_cross(trader, "ETH", long=True, size=10)
    config, port = write_config(devnet, tmp_path)
    run = start(runs, devnet, config, port)
    run.settle()
    lens = devnet.lens.functions
    before = lens.getCrossAccount(trader.address).call().balance
    devnet.set_price("ETH", Decimal("1880"))
    run.wait(lambda: lens.getCrossAccount(trader.address).call().balance > before)
    run.settle()
    account = lens.getCrossAccount(trader.address).call()
    assert not account.liquidatable
    [(kind, status)] = journal_rows(
        config, "SELECT kind, status FROM intents WHERE kind != 'approve'"
    )
    assert (kind, status) == ("top_up", "done")
    assert run.stop() == 0


def test_dry_run_sends_nothing(devnet: Devnet, tmp_path: Path, runs: list[KeeperRun]) -> None:
    trader = devnet.account("trader")
    devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    config, port = write_config(devnet, tmp_path)
    run = start(runs, devnet, config, port, "--dry-run")
    nonce = devnet.w3.eth.get_transaction_count(trader.address)
    devnet.set_price("ETH", Decimal("1880"))
    run.wait(lambda: bool(journal_rows(config, "SELECT id FROM intents")))
    run.settle()
    devnet.chain.mine(3)
    run.settle()
    assert devnet.w3.eth.get_transaction_count(trader.address) == nonce
    rows = journal_rows(config, "SELECT kind, status FROM intents")
    assert rows == [("top_up", "skipped")]
    assert run.stop() == 0


def test_the_halt_switch_stops_sending_within_one_block(
    devnet: Devnet, tmp_path: Path, runs: list[KeeperRun]
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    config, port = write_config(devnet, tmp_path)
    run = start(runs, devnet, config, port)
    run.settle()
    (config.parent / "HALT").touch()
    nonce = devnet.w3.eth.get_transaction_count(trader.address)
    devnet.set_price("ETH", Decimal("1880"))  # the very next block after the halt
    run.settle()
    devnet.chain.mine(2)
    run.settle()
    assert devnet.w3.eth.get_transaction_count(trader.address) == nonce
    (config.parent / "HALT").unlink()
    devnet.set_price("ETH", Decimal("1875"))
    run.wait(lambda: devnet.w3.eth.get_transaction_count(trader.address) > nonce)
    run.settle()
    assert position(devnet, key).collateral > 2_000 * USDC - 100 * USDC
    # SIGUSR1 toggles the same halt
    run.proc.send_signal(signal.SIGUSR1)
    run.wait(lambda: "halted: nothing will be sent" in run.output())
    assert run.stop() == 0


@pytest.mark.parametrize("crash_at", ["after_journal_commit", "after_broadcast"])
def test_a_restart_mid_action_sends_nothing_twice(
    devnet: Devnet, tmp_path: Path, runs: list[KeeperRun], crash_at: str
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    config, port = write_config(devnet, tmp_path)
    run = start(runs, devnet, config, port, KEEPER_CRASH_AT=crash_at)
    run.settle()
    nonce = devnet.w3.eth.get_transaction_count(trader.address)
    before = position(devnet, key).collateral
    devnet.set_price("ETH", Decimal("1880"))
    run.proc.wait(20)
    assert run.proc.returncode == -signal.SIGKILL, run.output()
    again = start(runs, devnet, config, port)
    again.wait(lambda: position(devnet, key).collateral > before)
    again.settle()
    devnet.chain.mine(2)
    again.settle()
    assert devnet.w3.eth.get_transaction_count(trader.address) == nonce + 1
    rows = journal_rows(config, "SELECT kind, status FROM intents")
    assert rows == [("top_up", "done")]
    assert again.stop() == 0


def test_config_check_names_every_mistake(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        (ROOT / "examples" / "devnet.toml")
        .read_text()
        .replace('max_fee_gwei = "50"', "max_fee_gwei = 50.5")
        .replace('top_up_to = "0.08"', 'top_up_to = "0.01"')
        .replace("chain_id = 31337", "chain_id = -5")
        .replace('lens = "0x2279B7A0a67DB372996a5FaB50D91eAA73d2eBe6"', 'lens = "nope"')
    )
    done = subprocess.run(
        [KEEPER, "config", "check", str(bad)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    for key in ("chain.max_fee_gwei", "thresholds.top_up_to", "chain.chain_id", "venue.lens"):
        assert key in done.stderr, done.stderr
    ok = subprocess.run(
        [KEEPER, "config", "check", str(ROOT / "examples" / "devnet.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
