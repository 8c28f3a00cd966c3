"""`keeper devnet`: a local chain with the reference exchange and a ready keeper config.

Starts Anvil, deploys the exchange with its markets and pool liquidity (keeper.testing.devnet),
funds the trader (and opens a sample ETH long unless told not to), writes a keeper config for
that trader, prints the addresses and what to run next, and runs until SIGINT or SIGTERM,
which stop Anvil (exit 0). Exit 1 when Anvil cannot start, the deployment fails or Anvil dies.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from decimal import Decimal
from pathlib import Path
from types import FrameType

from keeper.testing.anvil import Anvil, AnvilError
from keeper.testing.devnet import KEY_ENV, Devnet, DevnetError, deploy

__all__ = ["SAMPLE_POSITION", "run_devnet", "write_config"]

SAMPLE_POSITION = ("ETH", "2000", "10")
"""The sample position: market, USDC collateral, size in tokens (a 10x long at 2000)."""


def write_config(devnet: Devnet, path: Path) -> Path:
    """The keeper config for the devnet's trader at `path`, written atomically (a reader never
    sees half a file); the journal and halt file sit next to it. The keeper signs as the
    devnet's operator, which the trader has approved (accounts.delegated), never as the
    trader."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    devnet.keeper_config(
        tmp,
        keeper={"journal": f"{path.stem}-journal.sqlite", "halt_file": f"{path.stem}.HALT"},
        accounts={"watch": [devnet.deployment.trader], "delegated": True},
    )
    os.replace(tmp, path)
    return path


def journal_of(config: Path) -> Path:
    return config.resolve().with_name(f"{config.stem}-journal.sqlite")


def run_devnet(
    *,
    config_out: Path,
    port: int | None = None,
    block_time: Decimal | None = None,
    open_position: bool = True,
) -> int:
    """Runs the devnet until SIGINT/SIGTERM; the exit status.

    A whole `block_time` is set once the deployment is done (automine deploys at once); a
    fraction of a second has no RPC to set it (Anvil's evm_setIntervalMining takes whole
    seconds), so Anvil starts with it and the deployment waits for its blocks."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    whole = block_time is not None and block_time == block_time.to_integral_value()
    anvil = Anvil(port=port, block_time=None if whole or block_time is None else float(block_time))
    try:
        try:
            anvil.start()
        except AnvilError as exc:
            print(f"keeper devnet: {exc}", file=sys.stderr)
            return 1
        try:
            devnet = deploy(anvil.url)
            if open_position:
                symbol, collateral, size = SAMPLE_POSITION
                devnet.open_isolated(
                    devnet.account("trader"), symbol, long=True, collateral=collateral, size=size
                )
            devnet.approve_operator(devnet.account("trader"))
            if block_time is not None and whole:
                anvil.rpc("evm_setIntervalMining", int(block_time))
            old_journal = journal_of(config_out)
            if old_journal.exists():  # from an earlier devnet: its chain is gone
                old_journal.unlink()
                print(f"removed {old_journal} (the journal of an earlier devnet)")
            config = write_config(devnet, config_out)
        except (DevnetError, AnvilError, OSError) as exc:
            print(f"keeper devnet: {exc}", file=sys.stderr)
            return 1
        _print_ready(devnet, config, block_time=block_time, position=open_position)
        while not stop.wait(0.5):
            try:
                anvil.check_alive()
            except AnvilError as exc:
                if stop.wait(0.3):  # Ctrl-C in a terminal reaches Anvil too
                    break
                print(f"keeper devnet: {exc}", file=sys.stderr)
                return 1
        print("keeper devnet: stopping", flush=True)
        return 0
    finally:
        anvil.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_ready(
    devnet: Devnet, config: Path, *, block_time: Decimal | None, position: bool
) -> None:
    d = devnet.deployment
    operator = devnet.account("operator")
    owner = devnet.account("owner")
    mining = f"a block every {block_time}s" if block_time else "a block per transaction"
    lines = [
        "keeper devnet: ready",
        f"  rpc        {devnet.url} (chain {d.chain_id}, {mining})",
        f"  exchange   {d.exchange}",
        f"  lens       {d.lens}",
        f"  multicall  {d.multicall}",
        f"  usdc       {d.usdc}",
    ]
    for spec in devnet.markets:
        lines.append(
            f"  market {d.market_ids[spec.symbol]}   {spec.symbol} at {spec.price}, "
            f"price feed {d.feeds[spec.symbol]}"
        )
    held = ""
    if position:
        symbol, collateral, size = SAMPLE_POSITION
        held = f"; {symbol} long {size} with {collateral} USDC isolated"
    lines += [
        f"  trader     {d.trader} (USDC funded, exchange approved{held})",
        f"  operator   {operator.address} (the keeper's key: approved by the trader to top up "
        "from its wallet, reduce and close, paying only the trader)",
        f"  config     {config}",
        "",
        "In another shell (the operator's key, Anvil's public test key: for this devnet only):",
        f"  export {KEY_ENV}=0x{bytes(operator.key).hex()}",
        f"  keeper config check {config}",
        f"  keeper positions --config {config}",
        f"  keeper run --config {config}",
        f"  keeper delegate --config {config}   (the trader's grant to the operator)",
        "Move a price as the feeds' oracle (8 decimals; ETH to 1880):",
        f'  cast send {d.feeds["ETH"]} "setAnswer(int256)" 188000000000 '
        f"--rpc-url {devnet.url} --private-key 0x{bytes(owner.key).hex()}",
        "Ctrl-C stops the devnet.",
    ]
    print("\n".join(lines), flush=True)
