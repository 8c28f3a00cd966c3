"""`keeper run` in subaccount mode on GMX's own contracts: the keeper signs with a subaccount
key the trader added through SubaccountRouter (accounts.delegated), tops up from the trader's
wallet and closes for the trader; and it refuses to start for an account that never added it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from keeper.chain.jsonrpc import HttpJsonRpc
from keeper.testing.devnet import KEY_ENV, dev_account
from keeper.venues.gmx import GmxVenue
from tests.integration.realgmx.harness import RealGmx
from tests.integration.realgmx.test_realgmx_keeper import (
    Guarded,
    Scene,
    gmx_settings,
    guard,
    intents,
    ratio_at,
    receiver,
    scene,
    write_config,
)
from tests.integration.realgmx.test_realgmx_venue import COLLATERAL

__all__ = ["guard", "receiver", "scene"]  # the fixtures this module shares

SUBACCOUNT_INDEX = 7


async def add_subaccount(gmx: RealGmx, subaccount: str) -> None:
    """The trader, with its main key, sends what the adapter's delegation_setup builds."""
    rpc = HttpJsonRpc(gmx.url, timeout=30)
    try:
        venue = await GmxVenue.connect(rpc, gmx.deployment, wallet_token=gmx.usdc)
        steps = await venue.delegation_setup(
            gmx.trader.address,
            subaccount,
            max_actions=20,
            expires_at=gmx.block_time() + 7 * 86400,
            token=gmx.usdc,
        )
    finally:
        await rpc.close()
    for step in steps:
        gmx.send(gmx.trader, step.to, step.data, value=step.value, what=step.description)


def delegated_config(scene: Scene, **changes: object) -> Path:
    settings = gmx_settings(scene.gmx, scene.tmp, scene.receiver.url, **changes)  # type: ignore[arg-type]
    settings["accounts"]["delegated"] = True
    return write_config(scene.tmp / "delegated.toml", settings)


def test_keeper_run_as_a_subaccount_tops_up_and_closes_for_the_trader(
    scene: Scene, guard: Callable[[Path], Guarded]
) -> None:
    gmx, key, trader = scene.gmx, scene.key, scene.gmx.trader.address
    sub = dev_account(SUBACCOUNT_INDEX)
    asyncio.run(add_subaccount(gmx, sub.address))
    scene.env[KEY_ENV] = "0x" + bytes(sub.key).hex()  # the keeper holds the subaccount key only
    # close_below raised to 0.015 as in test_keeper_run_closes_below_close_below (the example's
    # 0.011 lies past GMX's liquidation price for this position)
    guarded = guard(delegated_config(scene, thresholds={"close_below": "0.015"}))
    wallet = gmx.balance(gmx.usdc, trader)
    sub_eth = gmx.chain.w3.eth.get_balance(sub.address)
    assert guarded.move(4200) == []
    # 3,820: ratio 0.0183, under top_up_below 0.02: 828 USDC from the trader's wallet
    (top_up,) = guarded.move(3820)
    assert top_up.executed, top_up
    rows = intents(scene.journal)
    # no approval of the keeper's own: the trader approved the Router in the setup
    assert [(r["kind"], r["status"]) for r in rows] == [("top_up", "done")]
    spent = int(rows[0]["spend_amount"])
    assert spent == 828 * 10**6
    assert gmx.position(key).collateral_amount == COLLATERAL * 10**6 + spent
    assert gmx.balance(gmx.usdc, trader) == wallet - spent
    assert ratio_at(gmx, key, Decimal(3820)) >= Decimal("0.04")
    # 3,720: equity 13,328 + 10 (3,720 - 5,000) = 528 USDC, ratio 0.0142 under close_below;
    # GMX liquidates only below 3,717.2
    (close,) = guarded.move(3720)
    assert close.executed, close
    assert gmx.position(key).size_in_usd == 0
    assert gmx.balance(gmx.usdc, trader) == wallet - spent + 528 * 10**6, "paid to the trader"
    assert gmx.balance(gmx.usdc, sub.address) == 0
    assert gmx.chain.w3.eth.get_balance(sub.address) < sub_eth, "the subaccount paid the gas"
    assert [(r["kind"], r["status"]) for r in intents(scene.journal)] == [
        ("top_up", "done"),
        ("close", "done"),
    ]
    guarded.stop()


def test_keeper_run_refuses_to_start_for_an_account_that_never_added_it(scene: Scene) -> None:
    sub = dev_account(SUBACCOUNT_INDEX)
    scene.env[KEY_ENV] = "0x" + bytes(sub.key).hex()
    done = scene.cli("run", "--config", str(delegated_config(scene)), timeout=60)
    assert done.returncode != 0
    assert "accounts.delegated" in done.stderr, done.stderr
    assert "not a subaccount" in done.stderr, done.stderr


def test_gmx_subaccount_prints_the_setup_the_trader_sends_and_the_state(scene: Scene) -> None:
    gmx, trader = scene.gmx, scene.gmx.trader.address
    sub = dev_account(SUBACCOUNT_INDEX)
    scene.env[KEY_ENV] = "0x" + bytes(sub.key).hex()
    config = str(delegated_config(scene))
    args = ("gmx", "subaccount", "--config", config, "--max-actions", "5", "--days", "7")
    done = scene.cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["delegate"] == sub.address
    (row,) = report["accounts"]
    assert row["account"] == trader
    assert not row["active"]
    assert row["sent"] is None
    assert any("not a subaccount" in p for p in row["problems"]), row
    router = gmx.deployment.subaccount_router
    assert [tx["to"] for tx in row["setup"]] == [router, gmx.usdc]

    # the trader's main key sends them, through the journal
    scene.env["TRADER_MAIN_KEY"] = "0x" + bytes(gmx.trader.key).hex()
    sent = scene.cli(*args, "--json", "--send-key-env", "TRADER_MAIN_KEY")
    assert sent.returncode == 0, sent.stderr
    (row,) = json.loads(sent.stdout)["accounts"]
    assert [tx["status"] for tx in row["sent"]] == ["done", "done"], row["sent"]
    assert row["active"], row
    assert bytes(gmx.trader.key).hex() not in sent.stdout + sent.stderr

    after = json.loads(scene.cli(*args, "--json").stdout)["accounts"][0]
    assert after["active"], after
    assert after["actions_left"] == 5
    assert after["expires_at"] >= gmx.block_time() + 7 * 86400 - 60
    text = scene.cli(*args)
    assert text.returncode == 0, text.stderr
    assert f"account {trader}: active" in text.stdout
    assert "cast send" in text.stdout
    assert bytes(sub.key).hex() not in text.stdout + text.stderr


def test_gmx_subaccount_refuses_bad_arguments(scene: Scene) -> None:
    config = str(delegated_config(scene))
    for bad in (["--max-actions", "0"], ["--days", "-1"], ["--subaccount", "0x12"]):
        done = scene.cli("gmx", "subaccount", "--config", config, *bad)
        assert done.returncode == 2, (bad, done.stderr)
        assert bad[0] in done.stderr, done.stderr
