"""Top up a position, after looking at what it would change.

    KEEPER_PRIVATE_KEY=0x... python examples/top_up_with_preview.py CONFIG POSITION AMOUNT

CONFIG is a keeper config (`keeper devnet` writes one), POSITION a key or MARKET:SIDE as
`keeper positions` shows it (ETH:long), AMOUNT in whole collateral tokens. The top-up goes
through the same journal and nonces as a `keeper run` on that config.
"""

from __future__ import annotations

import argparse
import asyncio

import keeper


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("position")
    p.add_argument("amount")
    args = p.parse_args()

    async with await keeper.Client.from_config(args.config) as client:
        plan = await client.prepare_top_up(args.position, args.amount)
        shown = plan.preview
        if shown is not None:
            print(f"margin ratio       {shown.ratio_before:.4%} -> {shown.ratio_after:.4%}")
            print(f"liquidation price  {shown.liquidation_before} -> {shown.liquidation_after}")
        for step in plan.steps:
            print(f"step: {step.description}; gas {step.gas}; revert {step.revert}")
        print(f"at most {plan.max_cost_wei} wei of gas")
        if not plan.ok:
            print("not sent: the simulation failed")
            return 1
        outcome = await client.send(plan)
        print(f"{outcome.status} {outcome.tx_hash}")
        return 0 if outcome.done else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
