"""The keeper as an operator of the reference exchange (accounts.delegated): `keeper run`
signs with the operator's key, tops up from the trader's wallet and closes paying the trader;
it refuses to start without the trader's grant; the running loop alerts when a grant is lost
or runs low; `keeper delegate` shows the grant and sends its setup with the trader's key."""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from keeper.testing.devnet import Devnet
from keeper.testing.plugin import KeeperProcessFactory
from tests.integration.keeper.test_keeper_e2e import (
    KEEPER,
    journal_rows,
    position,
    settle,
    write_config,
)

pytestmark = pytest.mark.integration

USDC = 10**6


def keeper_as(
    devnet: Devnet, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The `keeper` command, signing with the devnet operator's key (and `env` besides)."""
    return subprocess.run(
        [KEEPER, *args],
        env={**devnet.keeper_env("operator"), **(env or {}), "PATH": str(Path(KEEPER).parent)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def operator_config(devnet: Devnet, tmp_path: Path, **overrides: Any) -> Path:
    accounts = {"watch": [devnet.deployment.trader], "delegated": True}
    return write_config(devnet, tmp_path, accounts=accounts, **overrides)


def test_keeper_run_as_operator_tops_up_from_the_traders_wallet_and_reduces(
    devnet: Devnet, tmp_path: Path, keeper_process: KeeperProcessFactory
) -> None:
    d = devnet.deployment
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    # the budget keeps a reserve of 1,000 USDC in the trader's wallet, counted against what
    # the grant lets the keeper take: 600 USDC payable in all
    devnet.approve_operator(trader, top_up_limit=1_600)
    config = operator_config(devnet, tmp_path)
    operator_usdc = devnet.usdc_balance(d.operator)
    wallet = devnet.usdc_balance(d.trader)
    run = keeper_process(config, devnet.keeper_env("operator"))
    settle(run, devnet)
    before = position(devnet, key).collateral
    devnet.set_price("ETH", Decimal("1880"))
    run.wait_for(lambda: position(devnet, key).collateral > before)
    settle(run, devnet)
    [(text,)] = journal_rows(config, "SELECT spend_amount FROM intents WHERE kind = 'top_up'")
    amount = int(text)
    assert 0 < amount <= 600 * USDC
    assert devnet.usdc_balance(d.trader) == wallet - amount  # paid by the trader's wallet
    [(sender,)] = journal_rows(config, "SELECT DISTINCT sender FROM transactions")
    assert sender == d.operator

    # the grant's top-up limit is spent: the next fall is met by reductions
    price = Decimal("1880")
    while price > Decimal("1780"):
        price -= Decimal("20")
        devnet.set_price("ETH", price)
        settle(run, devnet)
        assert not devnet.exchange.functions.isLiquidatable(key).call()
    kinds = {k for (k,) in journal_rows(config, "SELECT kind FROM intents WHERE status='done'")}
    assert "reduce" in kinds
    assert run.stop() == 0

    # a close by hand with the operator's key pays what is left to the trader
    wallet = devnet.usdc_balance(d.trader)
    done = keeper_as(devnet, "close", "ETH:long", "--config", str(config), "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert position(devnet, key).size == 0
    assert devnet.usdc_balance(d.trader) > wallet
    assert devnet.usdc_balance(d.operator) == operator_usdc  # the operator never got a token


def test_keeper_run_refuses_to_start_without_the_traders_grant(
    devnet: Devnet, tmp_path: Path
) -> None:
    config = operator_config(devnet, tmp_path)
    done = keeper_as(devnet, "run", "--config", str(config))
    assert done.returncode == 1, done.stderr
    d = devnet.deployment
    assert f"{d.operator} cannot act for {d.trader}" in done.stderr
    assert "has not approved" in done.stderr
    assert "keeper delegate" in done.stderr


def test_keeper_delegate_shows_the_grant_and_sends_its_setup_with_the_traders_key(
    devnet: Devnet, tmp_path: Path
) -> None:
    d = devnet.deployment
    config = operator_config(devnet, tmp_path)
    env = {"TRADER_KEY": "0x" + bytes(devnet.account("trader").key).hex()}

    def keeper(*args: str) -> subprocess.CompletedProcess[str]:
        return keeper_as(devnet, "delegate", "--config", str(config), *args, env=env)

    shown = keeper("--max-actions", "40", "--days", "7", "--top-up-limit", "900")
    assert shown.returncode == 0, shown.stderr
    assert f"delegate {d.operator} on refex" in shown.stdout
    assert "NOT ACTIVE" in shown.stdout
    assert f"cast send {d.exchange} 0x" in shown.stdout
    assert "40 actions" in shown.stdout

    sent = keeper("--max-actions", "40", "--days", "7", "--top-up-limit", "900", "--json",
                  "--send-key-env", "TRADER_KEY")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    report = json.loads(sent.stdout)
    [row] = report["accounts"]
    assert [tx["status"] for tx in row["sent"]] == ["done", "done"]
    assert row["active"]
    assert row["actions_left"] == 40
    assert row["top_up_left"] == "900.000000"
    grant = devnet.exchange.functions.operatorGrant(d.trader, d.operator).call()
    assert (grant.actionsLeft, grant.topUpLeft) == (40, 900 * USDC)
    [(kind, status, sender)] = set(
        journal_rows(
            config,
            "SELECT i.kind, i.status, t.sender FROM intents i JOIN transactions t"
            " ON t.intent_id = i.id",
        )
    )
    assert (kind, status, sender) == ("delegation_setup", "done", d.trader)

    # bad arguments name the flag; the main key must be a watched account
    assert "--top-up-limit" in keeper("--top-up-limit", "lots").stderr
    assert "--delegate" in keeper("--delegate", "0x12").stderr
    assert "--auto-top-up is GMX's" in keeper("--auto-top-up", "5").stderr
    env["OTHER_KEY"] = "0x" + bytes(devnet.account("liquidator").key).hex()
    wrong = keeper("--send-key-env", "OTHER_KEY")
    assert wrong.returncode == 1
    assert "none of the watched accounts" in wrong.stderr
