"""The keeper inside your own asyncio program: its loop, one report per block, beside your
own tasks; Ctrl-C (or cancelling the task) stops it after its bookkeeping.

    KEEPER_PRIVATE_KEY=0x... python examples/embedded_keeper.py CONFIG [--blocks N]
"""

from __future__ import annotations

import argparse
import asyncio

import keeper


async def heartbeat() -> None:
    """Your program's own work, running beside the keeper."""
    while True:
        await asyncio.sleep(5)
        print("still here")


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("--blocks", type=int, help="stop after N blocks")
    args = p.parse_args()

    beat = asyncio.create_task(heartbeat())
    try:
        async with await keeper.Client.from_config(args.config) as client:
            async for report in client.protect(ticks=args.blocks):
                lowest = report.lowest_ratio
                print(
                    f"block {report.block_number}: {report.positions} position(s), lowest ratio "
                    f"{'-' if lowest is None else f'{lowest:.4%}'}, "
                    f"{len(report.actions)} action(s) {[a.kind for a in report.actions]}"
                )
    finally:
        beat.cancel()


if __name__ == "__main__":
    asyncio.run(main())
