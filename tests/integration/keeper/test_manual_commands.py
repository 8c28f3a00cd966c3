"""`keeper top-up | withdraw | reduce | close`, `history` and `positions --config` against the
devnet, through the keeper's journal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keeper.chain.rpc import FailoverRpc
from keeper.cli import main
from keeper.journal import Journal
from keeper.loop import SequencerFeed, sequencer_hold
from keeper.testing.devnet import Devnet
from tests.integration.keeper.test_keeper_e2e import write_config

pytestmark = pytest.mark.integration
USDC = 10**6


@pytest.fixture
def config(devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in devnet.keeper_env().items():
        monkeypatch.setenv(name, value)
    return write_config(devnet, tmp_path)


def funding_settled(devnet: Devnet, event: str) -> int:
    """The funding settled by the latest `event` (MarginAdded/MarginRemoved) of the exchange."""
    head = devnet.chain.block_number()
    logs = getattr(devnet.exchange.events, event)().get_logs(from_block=head - 3, to_block=head)
    return int(logs[-1]["args"]["fundingSettled"])


def stored(devnet: Devnet, key: bytes) -> tuple[int, int]:
    p = devnet.exchange.functions.positions(key).call()
    return int(p.size), int(p.collateral)


def test_top_up_withdraw_reduce_close_by_hand(
    devnet: Devnet, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    size, collateral = stored(devnet, key)
    hexkey = "0x" + key.hex()
    devnet.chain.advance_time(600)  # funding accrues (longs pay: the market is all long)

    assert main(["top-up", hexkey, "150", "--config", str(config), "--yes"]) == 0
    out = capsys.readouterr().out
    assert "top_up on position" in out
    assert "simulated ok" in out
    assert "margin ratio " in out
    assert ", liquidation price " in out  # before -> after, beside gas and cost
    # funding accrued since the last change is settled into the collateral on every change
    collateral -= funding_settled(devnet, "MarginAdded")
    assert stored(devnet, key) == (size, collateral + 150 * USDC)

    devnet.chain.advance_time(600)
    assert main(["withdraw", "ETH:long", "50.5", "--config", str(config), "--yes"]) == 0
    settled = funding_settled(devnet, "MarginRemoved")
    assert settled > 0
    collateral -= settled
    assert stored(devnet, key)[1] == collateral + 150 * USDC - 50_500_000

    capsys.readouterr()
    assert main(["reduce", hexkey, "4", "--config", str(config), "--yes", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["prepared"]["action"] == "reduce"
    assert lines[-1]["results"][-1]["status"] == "done"
    assert stored(devnet, key)[0] == size - 4 * 10**18

    assert main(["close", "ETH:long", "--config", str(config), "--yes"]) == 0
    assert stored(devnet, key)[0] == 0

    capsys.readouterr()
    assert main(["history", "--config", str(config), "--json", "--position", hexkey]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [i["kind"] for i in history["intents"]] == ["close", "reduce", "withdraw", "top_up"]
    assert {i["status"] for i in history["intents"]} == {"done"}
    assert all(i["transactions"] for i in history["intents"])
    assert main(["history", "--config", str(config), "--since", "1h"]) == 0
    assert "top_up" in capsys.readouterr().out


def test_cross_account_top_up_by_hand(devnet: Devnet, config: Path) -> None:
    trader = devnet.account("trader")
    devnet.deposit_cross(trader, 1_000)
    devnet.open_cross(trader, "ETH", long=True, size=2)
    lens = devnet.lens.functions
    before = lens.getCrossAccount(trader.address).call().balance
    assert main(["top-up", "cross", "25", "--config", str(config), "--yes"]) == 0
    assert lens.getCrossAccount(trader.address).call().balance == before + 25 * USDC


def test_a_manual_action_never_races_an_open_intent(
    devnet: Devnet, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trader = devnet.account("trader")
    key = devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    hexkey = "0x" + key.hex()
    journal = Journal(config.parent / "journal.sqlite")
    try:
        journal.open_intent("refex", hexkey, "top_up", {"scope": "position"}, block=1)
    finally:
        journal.close()
    assert main(["top-up", hexkey, "10", "--config", str(config), "--yes"]) == 1
    err = capsys.readouterr().err
    assert "already open" in err
    assert stored(devnet, key)[1] < 2_000 * USDC


def test_bad_manual_input_is_refused_clearly(
    devnet: Devnet, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trader = devnet.account("trader")
    devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    nonce = devnet.w3.eth.get_transaction_count(trader.address)
    assert main(["top-up", "ETH:short", "10", "--config", str(config), "--yes"]) == 1
    assert "no open position" in capsys.readouterr().err
    assert main(["top-up", "ETH:long", "-3", "--config", str(config), "--yes"]) == 1
    assert "AMOUNT" in capsys.readouterr().err
    assert main(["reduce", "ETH:long", "10", "--config", str(config), "--yes"]) == 1
    assert "use close" in capsys.readouterr().err
    # more than the position can give back: the simulation reverts and nothing is sent
    assert main(["withdraw", "ETH:long", "1900", "--config", str(config), "--yes"]) == 1
    captured = capsys.readouterr()
    assert "would revert" in captured.out
    assert devnet.w3.eth.get_transaction_count(trader.address) == nonce
    assert main(["top-up", "ETH:long", "10", "--config", str(config)]) == 1  # no terminal
    assert "--yes" in capsys.readouterr().err


def test_positions_from_the_config(
    devnet: Devnet, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trader = devnet.account("trader")
    devnet.open_isolated(trader, "ETH", long=True, collateral=2_000, size=10)
    assert main(["positions", "--config", str(config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["positions"]) == 1


async def test_sequencer_feed_holds_actions_while_down_and_in_grace(devnet: Devnet) -> None:
    owner = devnet.account("owner")
    feed = devnet.chain.deploy_contract(owner, "PriceFeed", "L2 Sequencer Uptime", owner.address)
    contract = devnet.chain.contract("PriceFeed", feed)
    rpc = FailoverRpc([devnet.chain.url])
    setting = SequencerFeed(feed, grace_seconds=3600)
    try:
        devnet.chain.send(owner, contract.functions.setAnswer(1))  # down
        block = devnet.chain.block_number()
        now = int(devnet.w3.eth.get_block(block)["timestamp"])
        assert await sequencer_hold(rpc, setting, block, now) == "sequencer down"
        devnet.chain.send(owner, contract.functions.setAnswer(0))  # back up: grace period
        block = devnet.chain.block_number()
        now = int(devnet.w3.eth.get_block(block)["timestamp"])
        held = await sequencer_hold(rpc, setting, block, now)
        assert held is not None
        assert "grace" in held
        devnet.chain.advance_time(3601)
        block = devnet.chain.block_number()
        now = int(devnet.w3.eth.get_block(block)["timestamp"])
        assert await sequencer_hold(rpc, setting, block, now) is None
    finally:
        await rpc.close()
