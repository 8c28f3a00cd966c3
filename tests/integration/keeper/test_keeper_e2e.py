"""`keeper run` as a real subprocess against the reference exchange on Anvil: price paths,
budgets, cross accounts, dry run, the halt switch, a crash and restart, and `config check`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from web3.exceptions import ContractLogicError

from keeper.testing.devnet import Devnet
from keeper.testing.plugin import KeeperProcessFactory
from keeper.testing.process import KeeperProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
KEEPER = str(Path(sys.executable).with_name("keeper"))
USDC = 10**6


THRESHOLDS = {
    "top_up_below": "0.05",
    "top_up_to": "0.08",
    "reduce_below": "0.04",
    "close_below": "0.03",
    "cooldown_blocks": 0,
    "hysteresis": "0",
    "markets": None,
}


def write_config(
    devnet: Devnet,
    tmp_path: Path,
    *,
    per_position: str = "5000",
    per_day: str = "20000",
    **overrides: Any,
) -> Path:
    """The plugin's devnet config, watching the trader only, with these thresholds and budget."""
    settings: dict[str, Any] = {
        "keeper": {"journal": "journal.sqlite"},
        "chain": {"poll_interval_s": "0.05", "replace_after_blocks": 3},
        "accounts": {"watch": [devnet.deployment.trader]},
        "thresholds": THRESHOLDS,
        "budget": {"max_top_up_per_position": per_position, "max_spend_per_day": per_day},
        "metrics": {"max_block_age_s": 100_000},
    }
    for section, value in overrides.items():
        merged = settings.get(section)
        if isinstance(merged, dict) and isinstance(value, dict):
            settings[section] = {**merged, **value}
        else:
            settings[section] = value
    return devnet.keeper_config(tmp_path / "keeper.toml", **settings)


def open_intents(proc: KeeperProcess) -> int:
    if not proc.journal_path.exists():
        return 0
    with sqlite3.connect(proc.journal_path) as db:
        try:
            row = db.execute(
                "SELECT COUNT(*) FROM intents WHERE status IN "
                "('decided','signed','sent','mined','awaiting_execution')"
            ).fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(row[0])


def settle(proc: KeeperProcess, devnet: Devnet, timeout: float = 20.0) -> None:
    """Until the keeper has processed the chain's head and nothing of it is in flight."""

    def settled() -> bool:
        head = devnet.chain.block_number()
        if (proc.last_block() or -1) < head or open_intents(proc):
            return False
        time.sleep(0.15)
        return devnet.chain.block_number() == head

    proc.wait_for(settled, timeout, "the keeper to settle at the chain's head")


def journal_rows(config: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(config.parent / "journal.sqlite") as db:
        return list(db.execute(sql).fetchall())


def position(devnet: Devnet, key: bytes) -> Any:
    return devnet.exchange.functions.positions(key).call()


def test_a_falling_price_is_met_by_a_top_up_in_the_next_block(
    devnet: Devnet, tmp_path: Path, keeper_process: KeeperProcessFactory
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    config = write_config(devnet, tmp_path)
    run = keeper_process(config, devnet.keeper_env())
    settle(run, devnet)
    before = position(devnet, key).collateral
    moved = devnet.set_price("ETH", Decimal("1880"))["blockNumber"]
    run.wait_for(lambda: position(devnet, key).collateral > before)
    settle(run, devnet)
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
    devnet: Devnet, tmp_path: Path, keeper_process: KeeperProcessFactory
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    config = write_config(devnet, tmp_path, per_position="300", per_day="600")
    run = keeper_process(config, devnet.keeper_env())
    settle(run, devnet)
    price = Decimal("2000")
    liquidator = devnet.account("liquidator")
    while price > Decimal("1500"):
        price -= Decimal("20")
        devnet.set_price("ETH", price)
        settle(run, devnet)
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
    devnet: Devnet, tmp_path: Path, keeper_process: KeeperProcessFactory
) -> None:
    trader = devnet.account("trader")
    devnet.deposit_cross(trader, 2_000)
    devnet.open_cross(trader, "ETH", long=True, size=10)
    config = write_config(devnet, tmp_path)
    run = keeper_process(config, devnet.keeper_env())
    settle(run, devnet)
    lens = devnet.lens.functions
    before = lens.getCrossAccount(trader.address).call().balance
    devnet.set_price("ETH", Decimal("1880"))
    run.wait_for(lambda: lens.getCrossAccount(trader.address).call().balance > before)
    settle(run, devnet)
    account = lens.getCrossAccount(trader.address).call()
    assert not account.liquidatable
    [(kind, status)] = journal_rows(
        config, "SELECT kind, status FROM intents WHERE kind != 'approve'"
    )
    assert (kind, status) == ("top_up", "done")
    assert run.stop() == 0


def test_dry_run_sends_nothing(
    devnet: Devnet, tmp_path: Path, keeper_process: KeeperProcessFactory
) -> None:
    trader = devnet.account("trader")
    devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    config = write_config(devnet, tmp_path)
    run = keeper_process(config, devnet.keeper_env(), args=("--log-level", "DEBUG", "--dry-run"))
    nonce = devnet.w3.eth.get_transaction_count(trader.address)
    devnet.set_price("ETH", Decimal("1880"))
    run.wait_for(lambda: bool(journal_rows(config, "SELECT id FROM intents")))
    settle(run, devnet)
    devnet.chain.mine(3)
    settle(run, devnet)
    assert devnet.w3.eth.get_transaction_count(trader.address) == nonce
    rows = journal_rows(config, "SELECT kind, status FROM intents")
    assert rows == [("top_up", "skipped")]
    assert run.stop() == 0


def test_the_halt_switch_stops_sending_within_one_block(
    devnet: Devnet, tmp_path: Path, keeper_process: KeeperProcessFactory
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    config = write_config(devnet, tmp_path)
    run = keeper_process(config, devnet.keeper_env())
    settle(run, devnet)
    (config.parent / "HALT").touch()
    nonce = devnet.w3.eth.get_transaction_count(trader.address)
    devnet.set_price("ETH", Decimal("1880"))  # the very next block after the halt
    settle(run, devnet)
    devnet.chain.mine(2)
    settle(run, devnet)
    assert devnet.w3.eth.get_transaction_count(trader.address) == nonce
    (config.parent / "HALT").unlink()
    devnet.set_price("ETH", Decimal("1875"))
    run.wait_for(lambda: devnet.w3.eth.get_transaction_count(trader.address) > nonce)
    settle(run, devnet)
    assert position(devnet, key).collateral > 2_000 * USDC - 100 * USDC
    # SIGUSR1 toggles the same halt
    assert run.pid is not None
    os.kill(run.pid, signal.SIGUSR1)
    run.wait_for(lambda: "halted: nothing will be sent" in run.output())
    assert run.stop() == 0


@pytest.mark.parametrize("crash_at", ["after_journal_commit", "after_broadcast"])
def test_a_restart_mid_action_sends_nothing_twice(
    devnet: Devnet, tmp_path: Path, keeper_process: KeeperProcessFactory, crash_at: str
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    config = write_config(devnet, tmp_path)
    run = keeper_process(config, {**devnet.keeper_env(), "KEEPER_CRASH_AT": crash_at})
    settle(run, devnet)
    nonce = devnet.w3.eth.get_transaction_count(trader.address)
    before = position(devnet, key).collateral
    devnet.set_price("ETH", Decimal("1880"))
    run.wait_for(lambda: not run.running, 20, "the crash point")
    assert run.stop() == -signal.SIGKILL, run.output()
    again = keeper_process(config, devnet.keeper_env())
    again.wait_for(lambda: position(devnet, key).collateral > before)
    settle(again, devnet)
    devnet.chain.mine(2)
    settle(again, devnet)
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


def test_the_budget_token_is_checked_against_the_chain(devnet: Devnet, tmp_path: Path) -> None:
    env = {**os.environ, **devnet.keeper_env()}
    good = write_config(devnet, tmp_path)
    done = subprocess.run(
        [KEEPER, "config", "check", "--online", str(good)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    usdc = devnet.deployment.usdc
    assert f"budget token: USDC ({usdc}), 6 decimals" in done.stdout, done.stdout
    assert "watched: 0 position(s), 0 cross account(s)" in done.stdout, done.stdout

    wrong = write_config(devnet, tmp_path, budget={"token_decimals": 18})
    for command in (["config", "check", "--online", str(wrong)], ["run", "--config", str(wrong)]):
        done = subprocess.run(
            [KEEPER, *command], capture_output=True, text=True, check=False, timeout=60, env=env
        )
        assert done.returncode == (1 if command[0] == "config" else 2), done.stderr
        assert "budget.token_decimals: 18, but USDC" in done.stderr, done.stderr
        assert "has 6 decimals on this chain" in done.stderr

    other = write_config(devnet, tmp_path, budget={"token": "WETH", "token_decimals": None})
    done = subprocess.run(
        [KEEPER, "run", "--config", str(other)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert "budget.token: WETH is not a collateral token of the venue" in done.stderr
    assert f"USDC ({usdc})" in done.stderr
