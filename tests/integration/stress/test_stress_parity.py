"""`keeper stress` against real chains: its simulation of the demo's path beside what the demo
does on chain with the reference exchange, and the command reading a devnet without writing."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import keeper
from keeper import demo
from keeper.cli import main
from keeper.demo import DEMO_BUDGET, DEMO_THRESHOLDS, DemoOptions
from keeper.model import Snapshot
from keeper.stress import GAS_PER_ACTION, ChainModel, Inclusion, PricePath, simulate
from keeper.testing.anvil import Anvil
from keeper.testing.devnet import KEY_ENV, Devnet, deploy

pytestmark = pytest.mark.integration

AMOUNT_TOLERANCE = Decimal("0.01")
"""USDC: what the simulation's top-ups may differ by from the chain's. The exchange charges
funding since its market's last transaction at the price of the moment; the simulation accrues
it every block (the difference over the demo's path is below a tenth of a cent)."""
SIZE_TOLERANCE = Decimal("0.0001")
"""Relative: a cut's size, sized from the same equity."""
GAS_TOLERANCE = Decimal("0.15")
"""Relative: the simulation's gas per action kind against the receipts'."""


async def read_book(devnet: Devnet, journal: Path) -> Snapshot:
    """The demo's book through the Python API, as the keeper's operator key sees it."""
    d = devnet.deployment
    client = await keeper.connect(
        devnet.url,
        venue="reference",
        addresses={"exchange": d.exchange, "lens": d.lens},
        multicall=d.multicall,
        accounts=[d.trader],
        signer=devnet.account("operator"),
        delegated=True,
        budget_token=d.usdc,
        journal=journal,
    )
    async with client:
        return await client.snapshot()


def cut_size(reason: str) -> Decimal:
    found = re.search(r"cutting ([0-9.]+) of", reason)
    assert found, reason
    return Decimal(found.group(1))


def test_on_the_demos_path_the_simulation_does_what_the_demo_does_on_chain() -> None:
    with Anvil() as anvil, tempfile.TemporaryDirectory() as tmp:
        devnet = deploy(anvil.url)
        subjects = demo.setup(devnet)
        book = asyncio.run(read_book(devnet, Path(tmp) / "api.sqlite"))
        path = PricePath.of_steps(demo.price_path()[1:], "the demo's path")
        chain = ChainModel(Decimal(demo.BLOCK_SECONDS), Inclusion.SERIAL, 10**9,
                           GAS_PER_ACTION["refex"])  # fmt: skip
        with_keeper = simulate(book, path, DEMO_THRESHOLDS, DEMO_BUDGET, chain)
        without = simulate(book, path, DEMO_THRESHOLDS, DEMO_BUDGET, chain, keeper=False)
        options = DemoOptions(chart=False, as_json=True)
        on_chain = asyncio.run(demo._demo(devnet, options, Path(tmp), subjects))

    label = {s.key.lower(): s.label for s in subjects}
    # liquidations without the keeper: the same positions, at the same step and block
    assert [(label[k.lower()], x.step, x.block) for k, x in without.liquidated_at.items()] == [
        (x["subject"], x["step"], x["block"]) for x in on_chain["without_keeper"]["liquidated"]
    ]
    assert on_chain["without_keeper"]["liquidations"] > 0
    assert (
        with_keeper.liquidated_at
        == {}
        == {x["subject"]: x for x in on_chain["with_keeper"]["liquidated"]}
    )
    # the keeper's actions: kind, position, the price step and block that triggered each, and
    # the block that included it
    simulated = [a for a in with_keeper.actions if a.status == "done"]
    assert len(with_keeper.actions) == len(simulated) == len(on_chain["actions"]) > 0
    for sim, real in zip(simulated, on_chain["actions"], strict=True):
        assert real["status"] == "done"
        assert (label[sim.subject.lower()], sim.kind) == (real["subject"], real["kind"])
        assert (sim.step, sim.decided_block) == (real["trigger_step"], real["trigger_block"])
        assert sim.included_block == real["included_block"]
        assert sim.reason_code == real["reason"].split(":")[0]
        if sim.kind == "top_up":
            assert abs(Decimal(sim.amount) - Decimal(real["spend_usdc"])) <= AMOUNT_TOLERANCE
        if sim.kind == "reduce":
            real_size = cut_size(real["reason"])
            assert abs(Decimal(sim.amount) / real_size - 1) <= SIZE_TOLERANCE
        gas = Decimal(sim.gas)
        assert abs(gas / real["gas_used"] - 1) <= GAS_TOLERANCE, (sim.kind, real["gas_used"])
    spent = Decimal(sum(a.spend for a in simulated)).scaleb(-6)
    assert abs(spent - Decimal(on_chain["collateral_spent_usdc"])) <= AMOUNT_TOLERANCE * 4


@pytest.fixture
def long_book(devnet: Devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ETH long at about 10x of the devnet's trader, and a config where the trader's own
    key is the keeper's (the wallet pays top-ups)."""
    trader = devnet.account("trader")
    devnet.open_isolated(trader, "ETH", long=True, collateral="2000", size="10")
    for name, value in devnet.keeper_env("trader").items():
        monkeypatch.setenv(name, value)
    assert KEY_ENV in devnet.keeper_env("trader")
    return devnet.keeper_config(
        tmp_path / "keeper.toml", accounts={"watch": [trader.address]}, metrics=None
    )


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_the_command_reads_the_devnet_sends_nothing_and_a_saved_read_replays_the_same(
    devnet: Devnet,
    long_book: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trader = devnet.account("trader").address
    block, balance = devnet.chain.block_number(), devnet.usdc_balance(trader)
    nonce = devnet.w3.eth.get_transaction_count(trader)
    path = ("--path", "ETH=crash:-30%:30m", "--block-time", "6")
    live = run_json(capsys, "stress", "--config", str(long_book), *path, "--json")
    # nothing was written to the chain
    assert devnet.chain.block_number() == block
    assert devnet.usdc_balance(trader) == balance
    assert devnet.w3.eth.get_transaction_count(trader) == nonce

    assert live["source"] == "chain"
    assert live["inclusion"] == "serial"
    (eth,) = live["subjects"]
    assert eth["without_keeper"]["liquidated"] is not None
    assert eth["with_keeper"]["liquidated"] is None
    assert live["summary"]["liquidations_avoided"] == 1
    top_ups = [a for a in eth["with_keeper"]["actions"] if a["kind"] == "top_up"]
    assert top_ups
    assert all(a["status"] == "done" for a in top_ups)
    assert Decimal(live["gas_price_gwei"]) > 0
    assert live["wallet"]["balance"] == str(Decimal(balance).scaleb(-6))

    saved = tmp_path / "positions.json"
    saved.write_text(
        json.dumps(run_json(capsys, "positions", "--config", str(long_book), "--json"))
    )
    replay = run_json(
        capsys, "stress", "--config", str(long_book), "--snapshot", str(saved), *path,
        "--wallet-balance", live["wallet"]["balance"],
        "--gas-price-gwei", live["gas_price_gwei"], "--json",
    )  # fmt: skip
    assert replay["source"] == str(saved)

    def actions(data: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (a["kind"], a["step"], a["amount"], a["status"], a["gas_fee_wei"])
            for r in data["subjects"]
            for a in r["with_keeper"]["actions"]
        ]

    assert actions(replay) == actions(live)
    assert replay["summary"] == live["summary"]
