"""`keeper positions` against the devnet: in-process through main(argv), and as a real
subprocess of the installed `keeper` command."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from keeper.cli import main
from keeper.testing.devnet import Devnet
from keeper.venues.base import Watch
from keeper.venues.reference import ReferenceVenue
from tests.integration.venues.support import open_book

pytestmark = pytest.mark.integration

KEEPER = Path(sys.executable).parent / "keeper"


def argv(devnet: Devnet, *extra: str) -> list[str]:
    d = devnet.deployment
    return [
        "positions",
        "--rpc",
        devnet.chain.url,
        "--exchange",
        d.exchange,
        "--lens",
        d.lens,
        "--multicall",
        d.multicall,
        "--account",
        d.trader,
        "--account",
        d.cross_trader,
        *extra,
    ]


async def test_json_matches_the_snapshot(
    devnet: Devnet, venue: ReferenceVenue, capsys: pytest.CaptureFixture[str]
) -> None:
    open_book(devnet)
    devnet.set_price("ETH", Decimal("1900"))
    d = devnet.deployment
    snap = await venue.snapshot(Watch((d.trader, d.cross_trader)))
    # main runs its own event loop: off this test's loop, in a thread
    assert (
        await asyncio.to_thread(main, argv(devnet, "--json", "--block", str(snap.block_number)))
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["block"] == snap.block_number
    assert len(data["positions"]) == 5
    by_key = {row["key"]: row for row in data["positions"]}
    for p in snap.positions:
        row = by_key[p.key]
        assert row["size"] == format(p.size.value.normalize(), "f")
        assert row["side"] == p.side.value
        assert row["mode"] == p.mode.value
        assert row["market"] == ("ETH" if p.market_id == "0" else "BTC")
        for field in ("margin_ratio", "pnl", "equity", "mark_price"):
            assert isinstance(row[field], str)
            Decimal(row[field])
        if p.mode.value == "cross":
            assert row["collateral"] is None
        else:
            assert Decimal(row["collateral"]) == p.collateral_usd.value
    (account,) = data["cross_accounts"]
    assert account["account"] == d.cross_trader
    assert Decimal(account["balance"]) == snap.accounts[0].collateral_usd.value
    assert data["issues"] == []


def test_table_in_process(devnet: Devnet, capsys: pytest.CaptureFixture[str]) -> None:
    open_book(devnet)
    assert main(argv(devnet)) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[1]
    for column in ("market", "side", "size", "collateral", "margin ratio", "liq. price", "pnl"):
        assert column in header
    assert "cross account" in out
    assert out.count(devnet.deployment.trader) == 3


def test_subprocess_of_the_installed_command(devnet: Devnet) -> None:
    open_book(devnet)
    done = subprocess.run(
        [str(KEEPER), *argv(devnet, "--json")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert len(data["positions"]) == 5
    bad = subprocess.run(
        [str(KEEPER), *argv(devnet, "--block", "x")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "--block: not a block number" in bad.stderr


def test_wrong_lens_and_missing_multicall_exit_1(
    devnet: Devnet, capsys: pytest.CaptureFixture[str]
) -> None:
    d = devnet.deployment
    args = argv(devnet)
    args[args.index("--lens") + 1] = d.usdc
    assert main(args) == 1
    assert "no PerpLens" in capsys.readouterr().err
    assert main(argv(devnet, "--block", str(10**9))) == 1
    assert "keeper positions: error:" in capsys.readouterr().err
    args = [a for a in argv(devnet) if a not in ("--multicall", d.multicall)]
    assert main(args) == 1
    assert "pass --multicall" in capsys.readouterr().err
