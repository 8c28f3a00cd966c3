"""The command line and the Python API with venue.kind = "gains": `keeper config check`
(offline and --online), `keeper positions --config` (also with a pair whose feed has no code),
manual top-up, reduce, withdraw and close followed until the oracle answers them (`keeper
top-up | reduce | withdraw | close --yes`), examples/base-gains.toml made for the test
deployment driven through `keeper delegate` (the grant shown, then sent with the trader's key)
and `keeper run` (a top-up as the trader's trading delegate), reverts decoded by the diamond's
ABI in what `keeper run` sends, and `keeper.connect(..., venue="gains")`."""

from __future__ import annotations

import json
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_hash.auto import keccak

import keeper
from keeper.chain.revert import decode_revert
from keeper.cli import main
from keeper.config import load
from keeper.runtime import open_runtime
from keeper.testing.devnet import to_toml
from keeper.venues.gains_math import PendingOrderType
from tests.integration.gains.deploy import BTC, ETH, PRICE, USDC, GainsDevnet

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "base-gains.toml"


def write_config(gains: GainsDevnet, path: Path, *, delegated: bool = False) -> Path:
    path.write_text(
        f"""
[keeper]
mode = "active"
journal = "journal.sqlite"

[chain]
chain_id = {gains.deployment.chain_id}
rpc = ["{gains.url}"]
confirmations = 0
max_fee_gwei = "50"
max_priority_fee_gwei = "1"

[venue]
kind = "gains"
diamond = "{gains.deployment.diamond}"

[accounts]
watch = ["{gains.trader.address}"]
delegated = {"true" if delegated else "false"}

[signer]
source = "env"
key_env = "GAINS_TEST_KEY"

[thresholds]
metric = "distance"
top_up_below = "0.03"
top_up_to = "0.06"
reduce_below = "0.01"
close_below = "0.005"

[budget]
token = "USDC"
max_top_up_per_position = "1000"
max_spend_per_day = "5000"
reserve = "0"
"""
    )
    return path


@contextmanager
def answering(gains: GainsDevnet, usd: int) -> Iterator[None]:
    """Gains' oracle, in a thread: every pending order of the trader answered at `usd`."""
    trader = gains.trader.address
    stop = threading.Event()

    def oracle() -> None:
        while not stop.is_set():
            for order in gains.pending_orders(trader):
                gains.fulfill(trader, order[2], usd * PRICE)
            time.sleep(0.2)

    thread = threading.Thread(target=oracle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def example_config(gains: GainsDevnet, path: Path) -> Path:
    """examples/base-gains.toml with only what the test deployment needs changed: the chain
    (this node, its chain id, Anvil's fees, no sequencer feed), the diamond instead of the Base
    preset, the trader watched, the keeper's key from GAINS_TEST_KEY, the journal beside the
    file, no metrics server or alert sink. Delegated, thresholds and budget as the example."""
    settings: dict[str, Any] = tomllib.loads(EXAMPLE.read_text())
    settings["keeper"].update(journal="journal.sqlite", halt_file="HALT")
    chain = settings["chain"]
    del chain["sequencer_uptime_feed"], chain["sequencer_grace_s"]
    chain.update(
        chain_id=gains.deployment.chain_id,
        rpc=[gains.url],
        confirmations=0,
        max_fee_gwei="50",
        max_priority_fee_gwei="1",
        poll_interval_s="0.2",
    )
    settings["venue"] = {"kind": "gains", "diamond": gains.deployment.diamond}
    settings["accounts"]["watch"] = [gains.trader.address]
    settings["signer"] = {"source": "env", "key_env": "GAINS_TEST_KEY"}
    del settings["metrics"], settings["alerts"]
    path.write_text(to_toml(settings))
    return path


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """`keeper ARGS --json`: its exit code and output (the manual commands print one object
    a line: `prepared`, then `results`; merged)."""
    capsys.readouterr()
    code = main([*args, "--json"])
    out: dict[str, Any] = {}
    for line in capsys.readouterr().out.splitlines():
        out.update(json.loads(line))
    return code, out


def test_config_check_and_positions(
    gains: GainsDevnet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = gains.open(ETH, True, 1_000 * USDC, 20_000, 2000)
    path = write_config(gains, tmp_path / "gains.toml")
    assert main(["config", "check", str(path)]) == 0
    assert main(["config", "check", "--online", str(path)]) == 0
    out = capsys.readouterr().out
    assert "venue gains connected" in out
    assert "watched: 1 position(s)" in out
    assert main(["positions", "--config", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    [p] = data["positions"]
    assert p["key"] == f"{gains.trader.address}:{index}"
    liq = gains.liquidation_price(gains.trader.address, index, 2000 * PRICE)
    assert Decimal(p["liquidation_price"]) == Decimal(liq).scaleb(-10)


def test_positions_of_a_pair_whose_feed_has_no_code_are_left_out_named(
    gains: GainsDevnet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eth = gains.open(ETH, True, 1_000 * USDC, 10_000, 2000)
    gains.open(BTC, True, 1_000 * USDC, 10_000, 60_000)
    # a feed address without code answers Multicall3 with success and no data
    gains.chain.rpc("anvil_setCode", gains.addresses["Feed1"], "0x")
    path = write_config(gains, tmp_path / "gains.toml")
    code, data = run_json(capsys, "positions", "--config", str(path))
    assert code == 0, data
    assert [p["key"] for p in data["positions"]] == [f"{gains.trader.address}:{eth}"]
    assert [(i["kind"], i["key"]) for i in data["issues"]] == [("price_invalid", "1")]
    assert main(["positions", "--config", str(path)]) == 0
    shown = capsys.readouterr()
    assert "ETH/USD" in shown.out
    assert "warning: pair 1 (BTC/USD): its feeds give no price" in shown.err


def test_a_config_without_the_diamond_or_budget_token_is_refused(
    gains: GainsDevnet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(gains, tmp_path / "gains.toml")
    text = path.read_text().replace(f'diamond = "{gains.deployment.diamond}"', 'preset = "base2"')
    path.write_text(text.replace('token = "USDC"\n', ""))
    assert main(["config", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "venue.preset" in err
    assert "venue.diamond" in err
    assert "budget.token" in err


def test_manual_top_up_waits_for_the_oracle(
    gains: GainsDevnet,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trader = gains.trader.address
    index = gains.open(ETH, True, 1_000 * USDC, 20_000, 2000)
    path = write_config(gains, tmp_path / "gains.toml")
    monkeypatch.setenv("GAINS_TEST_KEY", gains.trader.key.hex())
    with answering(gains, 2000):  # the top-up, once it is stored
        code = main(["top-up", f"{trader}:{index}", "200", "--config", str(path), "--yes"])
    out = capsys.readouterr()
    assert code == 0, out
    assert gains.trade(trader, index).leverage < 20_000


def test_manual_reduce_withdraw_and_close_wait_for_the_oracle(
    gains: GainsDevnet,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trader = gains.trader.address
    short = gains.open(ETH, False, 1_000 * USDC, 30_000, 2000)
    long = gains.open(ETH, True, 1_000 * USDC, 10_000, 2000)
    path = write_config(gains, tmp_path / "gains.toml")
    monkeypatch.setenv("GAINS_TEST_KEY", gains.trader.key.hex())
    size = Decimal(gains.trade(trader, short).collateral_amount) * 30 / 2000 / USDC
    with answering(gains, 2000):
        # MARKET:SIDE names the pair by its symbol; SIZE is in the pair's base token
        code, out = run_json(
            capsys, "reduce", "ETH/USD:short", str(size / 2), "--config", str(path), "--yes"
        )
        assert code == 0, out
        assert "decreasePositionSize" in out["prepared"]["steps"][0]["description"]
        assert gains.trade(trader, short).leverage == 15_000
        # a withdrawal is the leverage raised at the same size: the freed collateral paid out
        balance = gains.balance(trader)
        code, out = run_json(
            capsys, "withdraw", f"{trader}:{short}", "100", "--config", str(path), "--yes"
        )
        assert code == 0, out
        assert "updateLeverage" in out["prepared"]["steps"][0]["description"]
        assert gains.trade(trader, short).leverage > 15_000
        assert 99 * USDC < gains.balance(trader) - balance <= 100 * USDC
        balance = gains.balance(trader)
        code, out = run_json(capsys, "close", f"{trader}:{long}", "--config", str(path), "--yes")
    assert code == 0, out
    assert [r["status"] for r in out["results"]] == ["done"]
    assert not gains.trade(trader, long).is_open
    assert gains.balance(trader) > balance  # the collateral, less the closing fee
    assert gains.trade(trader, short).is_open


def test_the_base_example_delegates_and_runs_as_the_traders_delegate(
    gains: GainsDevnet,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trader, delegate = gains.trader.address, gains.keeper.address
    index = gains.open(ETH, True, 1_000 * USDC, 20_000, 2000)
    path = example_config(gains, tmp_path / "keeper.toml")
    monkeypatch.setenv("GAINS_TEST_KEY", gains.keeper.key.hex())
    monkeypatch.setenv("GAINS_TRADER_KEY", gains.trader.key.hex())
    assert main(["config", "check", str(path)]) == 0

    # the grant, not given yet: what the trader sends, and keeper run refuses to start
    code, report = run_json(capsys, "delegate", "--config", str(path))
    assert code == 0, report
    assert (report["venue"], report["delegate"], report["token"]) == ("gains", delegate, "USDC")
    [row] = report["accounts"]
    assert not row["active"]
    assert row["actions_left"] is None  # Gains sets no action count or expiry on a delegate
    assert row["expires_at"] is None
    assert row["problems"] == [f"{trader} has named no trading delegate (setTradingDelegate)"]
    setup = [tx["description"] for tx in row["setup"]]
    assert setup[0].startswith("Gains setTradingDelegate")
    assert setup[1].startswith("approve the Gains diamond")
    assert [tx["to"] for tx in row["setup"]] == [gains.deployment.diamond, gains.usdc]
    assert main(["run", "--config", str(path), "--ticks", "1"]) == 1
    assert "has named no trading delegate" in capsys.readouterr().err
    assert main(["delegate", "--config", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "no action count or expiry" in shown
    assert "cast send" in shown

    # the trader sends it with its own key; the grant is then active
    code, report = run_json(
        capsys, "delegate", "--config", str(path), "--send-key-env", "GAINS_TRADER_KEY"
    )
    assert code == 0, report
    [row] = report["accounts"]
    assert row["active"]
    assert [tx["status"] for tx in row["sent"]] == ["done", "done"]
    assert gains.diamond.functions.getTradingDelegate(trader).call() == delegate
    assert main(["config", "check", "--online", str(path)]) == 0
    assert "watched: 1 position(s)" in capsys.readouterr().out

    # the price falls near the liquidation price: keeper run tops up as the delegate
    gains.set_price(ETH, 1950)
    wallet = gains.balance(trader)
    assert main(["run", "--config", str(path), "--ticks", "1"]) == 0
    [order] = gains.pending_orders(trader)
    assert order[4] == PendingOrderType.UPDATE_LEVERAGE
    assert gains.balance(trader) < wallet  # paid from the trader's wallet
    assert gains.balance(delegate) == 0
    assert gains.trade(trader, index).leverage == 20_000  # until the oracle answers
    gains.fulfill(trader, order[2], 1950 * PRICE)
    assert main(["run", "--config", str(path), "--ticks", "1"]) == 0
    assert gains.trade(trader, index).leverage < 20_000
    code, history = run_json(capsys, "history", "--config", str(path))
    assert code == 0
    top_ups = [i for i in history["intents"] if i["kind"] == "top_up"]
    assert [i["status"] for i in top_ups] == ["done"], history


async def test_keeper_runs_transactions_decode_every_gains_error(
    gains: GainsDevnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what `keeper run` and the manual commands send with: reverts decode by the diamond's
    # ABI (abis/gains), not only by our test deployment's, which lacks most Gains errors
    monkeypatch.setenv("GAINS_TEST_KEY", gains.trader.key.hex())
    config = load(write_config(gains, tmp_path / "gains.toml"))
    async with await open_runtime(config, need_signer=True) as runtime:
        assert runtime.txs is not None
        data = keccak(b"PriceImpactTooHigh()")[:4]
        assert decode_revert(data).name == ""  # unknown to abis/*.json
        assert runtime.txs.decode_error is not None
        assert runtime.txs.decode_error(data).name == "PriceImpactTooHigh"


async def test_the_python_api_connects_to_gains(gains: GainsDevnet) -> None:
    index = gains.open(ETH, False, 500 * USDC, 10_000, 2000)
    async with await keeper.connect(
        gains.url,
        venue="gains",
        addresses={"diamond": gains.deployment.diamond},
        accounts=[gains.trader.address],
    ) as client:
        [view] = await client.positions()
    assert view.position.key == f"{gains.trader.address}:{index}"
    assert view.symbol == "ETH/USD"
    liq = gains.liquidation_price(gains.trader.address, index, 2000 * PRICE)
    assert view.liquidation_price is not None
    assert view.liquidation_price.raw * 10**10 // 10**view.liquidation_price.decimals == liq
