"""The scripts in examples/ run against the devnet as a user runs them (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from keeper.testing.devnet import Devnet
from tests.integration.keeper.test_keeper_e2e import write_config

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def reader_args(devnet: Devnet, url: str) -> list[str]:
    d = devnet.deployment
    return [url, d.exchange, d.lens, d.trader, "--multicall", d.multicall]


def test_read_positions_over_http_and_websocket(devnet: Devnet) -> None:
    devnet.open_isolated(devnet.account("trader"), "ETH", long=True, collateral=2_000, size=10)
    for url in (devnet.url, devnet.url.replace("http", "ws")):
        out = run("read_positions.py", *reader_args(devnet, url))
        assert "1 position(s)" in out
        assert "ETH long 10 (isolated): margin ratio" in out


def test_top_up_with_its_preview(devnet: Devnet, tmp_path: Path) -> None:
    devnet.open_isolated(devnet.account("trader"), "ETH", long=True, collateral=2_000, size=10)
    config = write_config(devnet, tmp_path)
    out = run("top_up_with_preview.py", str(config), "ETH:long", "250", env=devnet.keeper_env())
    lines = dict(line.split(None, 2)[::2] for line in out.splitlines() if line.startswith("margin"))
    assert "->" in lines["margin"], out
    assert "liquidation price" in out
    assert out.strip().splitlines()[-1].startswith("done 0x"), out


def test_the_embedded_keeper_and_the_notebook_script(devnet: Devnet, tmp_path: Path) -> None:
    devnet.open_isolated(devnet.account("trader"), "ETH", long=True, collateral=2_000, size=10)
    devnet.set_price("ETH", Decimal(1_890))  # a ratio of 4.8%: below top_up_below, above reduce
    config = write_config(devnet, tmp_path)
    out = run("embedded_keeper.py", str(config), "--blocks", "1", env=devnet.keeper_env())
    assert "1 position(s)" in out
    assert "['top_up']" in out, out
    out = run("notebook_sync.py", *reader_args(devnet, devnet.url))
    assert "markets: ETH" in out
    assert "ETH long ratio" in out
    assert ": ratio " in out  # the what-if at a 10% lower mark
