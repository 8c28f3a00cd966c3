"""A small keeper process for the crash and concurrency tests: journal + txs, nothing else.

    python -m tests.integration.txs.driver --rpc URL --journal PATH --position KEY [...]

The key comes from $KEEPER_DRIVER_KEY (a devnet chain only). On start it reconciles the
journal, then for each position that has never had an intent it opens one and sends a
1-wei transfer to --to; positions with an intent already (sent before a crash) are only
resolved. It prints one JSON line per outcome and exits 0 when every intent is closed.
KEEPER_CRASH_AT kills it at a lifecycle step (see keeper.txs.crash_point).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

from keeper.chain.rpc import FailoverRpc
from keeper.journal import Journal
from keeper.signer import key_from_env
from keeper.txs import FeePolicy, TxConfig, TxManager, TxOutcome, TxRequest

KEY_ENV = "KEEPER_DRIVER_KEY"
VENUE = "driver"


def config(chain_id: int) -> TxConfig:
    return TxConfig(
        chain_id=chain_id,
        fees=FeePolicy(max_fee_cap=500 * 10**9),
        gas_margin=Decimal("1.2"),
        confirmations=1,
        replace_after_blocks=3,
        receipt_timeout=30.0,
        poll_interval=0.05,
    )


def show(out: TxOutcome) -> None:
    print(
        json.dumps(
            {
                "intent": out.intent_id,
                "status": out.status.value,
                "failure": out.failure,
                "hash": out.tx_hash,
                "nonce": out.nonce,
            }
        ),
        flush=True,
    )


async def run(args: argparse.Namespace) -> int:
    journal = Journal(args.journal, password=os.environ.get("KEEPER_TEST_JOURNAL_PASSWORD"))
    rpc = FailoverRpc([args.rpc])
    try:
        chain_id = await rpc.chain_id()
        signer = key_from_env(KEY_ENV, chain_id)
        txs = TxManager(rpc, journal, signer, config(chain_id))
        for out in await txs.reconcile():
            show(out)
        if args.gate:
            await wait_at_gate(Path(args.gate))
        pending: list[asyncio.Task[TxOutcome]] = []
        for position in args.position:
            if journal.history(venue=VENUE, position_key=position, limit=1):
                continue  # decided before (maybe before a crash): reconcile resolved it
            intent, _ = journal.open_intent(
                VENUE, position, "transfer", {"to": args.to, "value": "1"}, reason="driver"
            )
            out = await txs.submit(TxRequest(intent.id, args.to, b"", 1))
            if out.is_open:
                pending.append(asyncio.create_task(txs.resolve(intent.id)))
            else:
                show(out)
        for out in await asyncio.gather(*pending):
            show(out)
        still_open = [i for i in journal.open_intents(VENUE) if i.position_key in args.position]
        return 1 if still_open else 0
    finally:
        await rpc.close()
        journal.close()


async def wait_at_gate(gate: Path, timeout: float = 60.0) -> None:
    """Say ready (a file next to the gate), then wait until the gate file exists, so several
    processes start sending at the same moment."""
    Path(f"{gate}.ready.{os.getpid()}").touch()
    deadline = time.monotonic() + timeout
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} never opened")
        await asyncio.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rpc", required=True)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--position", action="append", required=True)
    parser.add_argument("--to", default="0x000000000000000000000000000000000000dEaD")
    parser.add_argument("--gate", help="wait for this file to exist before sending")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
