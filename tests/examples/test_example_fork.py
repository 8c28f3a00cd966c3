"""Example: test that the keeper protects a position, on a fork of your chain or a local devnet.

Copy this file into your project's tests; the fixtures come from perp-keeper's pytest plugin,
which pytest loads by itself once perp-keeper is installed.

    pytest tests/examples                                   # a local Anvil devnet
    pytest tests/examples --fork-url "$ARBITRUM_RPC_URL"    # a fork of Arbitrum (or
    KEEPER_FORK_URL=... KEEPER_FORK_BLOCK=... pytest ...    # pin it to a block)

On a fork, `devnet` deploys the reference exchange onto the forked chain; everything else is
the same. The steps: an account of our own is funded (ETH, and USDC written into the token's
balance slot), opens a 10x long, a keeper watching it is started as a real `keeper run`
process, the price feed falls 6%, and the keeper tops the position up in the next block.
"""

from __future__ import annotations

import json
import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from keeper.cli import main as keeper_cli
from keeper.testing.devnet import KEY_ENV, Devnet
from keeper.testing.helpers import Chain
from keeper.testing.plugin import KeeperProcessFactory

pytestmark = pytest.mark.integration

USDC = 10**6


def positions(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """`keeper positions --config FILE --json`: the watched accounts' positions."""
    capsys.readouterr()
    assert keeper_cli(["positions", "--config", str(config), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)["positions"]


def history(config: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """`keeper history --config FILE --json`: what the keeper decided and sent."""
    capsys.readouterr()
    assert keeper_cli(["history", "--config", str(config), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_keeper_tops_up_a_long_after_the_price_falls(
    devnet: Devnet,
    chain: Chain,
    keeper_process: KeeperProcessFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    usdc, feed = devnet.deployment.usdc, devnet.deployment.feeds["ETH"]

    # 1. Our own account: ETH for gas, and USDC by writing the token's balance slot.
    me = Account.create()
    chain.set_balance(me.address, 10 * 10**18)
    chain.set_token_balance(usdc, me.address, 50_000 * USDC)
    devnet.approve(me)

    # 2. A 10x long: 10 ETH at 2,000 on 2,000 USDC of collateral.
    key = devnet.open_isolated(me, "ETH", long=True, collateral=2_000, size=10)

    # 3. A keeper that watches this account and signs with its key.
    config = devnet.keeper_config(tmp_path / "keeper.toml", accounts={"watch": [me.address]})
    keeper = keeper_process(config, env={KEY_ENV: me.key.hex()})
    keeper.wait_for(lambda: (keeper.last_block() or -1) >= chain.block_number(), what="the head")
    [before] = positions(config, capsys)
    assert before["key"] == "0x" + key.hex()
    assert Decimal(before["margin_ratio"]) > Decimal("0.05")  # safe: nothing to do

    # 4. The price falls 6% (on the devnet through the feed's oracle; on a fork a feed without
    #    one would have its code replaced): the margin ratio drops below top_up_below (5%).
    chain.set_feed_price(feed, "1880")
    moved = chain.block_number()
    [unsafe] = positions(config, capsys, "--block", str(moved))
    assert Decimal(unsafe["margin_ratio"]) < Decimal("0.05")

    # 5. The keeper tops the position up to top_up_to (8%), in the next block.
    def topped_up() -> bool:
        return int(devnet.exchange.functions.positions(key).call().collateral) > 2_000 * USDC

    keeper.wait_for(topped_up, timeout=30, what="a top-up")
    [after] = positions(config, capsys)
    assert Decimal(after["margin_ratio"]) >= Decimal("0.075")

    # 6. It stops cleanly on SIGTERM, and its journal says what it did.
    assert keeper.stop(signal.SIGTERM) == 0
    [intent] = history(config, capsys)["intents"]
    assert (intent["kind"], intent["status"]) == ("top_up", "done")
    assert intent["position"] == "0x" + key.hex()
    assert [tx["block"] for tx in intent["transactions"]] == [moved + 1]
