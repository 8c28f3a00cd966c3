"""`keeper devnet` as a subprocess: it writes a config the other commands use, and Ctrl-C stops
it and its Anvil cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keeper.testing.anvil import AnvilError, free_port, rpc_request

pytestmark = pytest.mark.integration

KEEPER = str(Path(sys.executable).with_name("keeper"))


@pytest.fixture
def devnet_proc(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, int, Path]]:
    port = free_port()
    config = tmp_path / "dn" / "keeper.toml"
    log = tmp_path / "devnet.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [KEEPER, "devnet", "--port", str(port), "--config-out", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
    try:
        yield proc, config, port, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(path: Path, proc: subprocess.Popen[str], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"keeper devnet exited {proc.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no config after {timeout}s:\n{log.read_text()}")
        time.sleep(0.1)


def test_devnet_writes_a_working_config_and_stops_on_ctrl_c(
    devnet_proc: tuple[subprocess.Popen[str], Path, int, Path],
) -> None:
    proc, config, port, log = devnet_proc
    wait_for(config, proc, log)
    deadline = time.monotonic() + 10
    while "Ctrl-C stops the devnet" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    out = log.read_text()
    found = re.search(r"export KEEPER_PRIVATE_KEY=(0x[0-9a-f]{64})", out)
    assert found, out
    env = {**os.environ, "KEEPER_PRIVATE_KEY": found.group(1)}

    check = subprocess.run(
        [KEEPER, "config", "check", "--json", str(config)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["ok"] is True

    positions = subprocess.run(
        [KEEPER, "positions", "--config", str(config), "--json"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert positions.returncode == 0, positions.stderr
    data = json.loads(positions.stdout)
    [row] = data["positions"]  # the sample ETH long
    assert (row["market"], row["side"], row["size"]) == ("ETH", "long", "10")

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0, log.read_text()
    assert "stopping" in log.read_text()
    with pytest.raises(AnvilError):
        rpc_request(f"http://127.0.0.1:{port}", "eth_chainId", timeout=1)


def test_devnet_refuses_a_bad_block_time(tmp_path: Path) -> None:
    done = subprocess.run(
        [KEEPER, "devnet", "--block-time", "0", "--config-out", str(tmp_path / "k.toml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--block-time" in done.stderr
    assert not (tmp_path / "k.toml").exists()


def test_devnet_mines_at_a_fraction_of_a_second(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "k.toml"
    log = tmp_path / "devnet.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [KEEPER, "devnet", "--port", str(port), "--config-out", str(config),
             "--block-time", "0.25"],
            stdout=out, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        )  # fmt: skip
    try:
        wait_for(config, proc, log, timeout=120)
        url = f"http://127.0.0.1:{port}"
        first = int(str(rpc_request(url, "eth_blockNumber")), 16)
        time.sleep(2)
        mined = int(str(rpc_request(url, "eth_blockNumber")), 16) - first
        assert 5 <= mined <= 10, f"{mined} blocks in 2 s at 0.25 s a block"
        assert "a block every 0.25s" in log.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, log.read_text()
