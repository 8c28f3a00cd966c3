"""Read positions with an AsyncWeb3 you already have (its provider, headers, middleware...).

    python examples/read_positions.py URL EXCHANGE LENS ACCOUNT [--multicall ADDRESS]

URL may be http(s):// or ws(s)://; `keeper devnet` prints the addresses of its exchange.
"""

from __future__ import annotations

import argparse
import asyncio

from web3 import AsyncWeb3
from web3.providers.persistent import WebSocketProvider
from web3.providers.rpc import AsyncHTTPProvider

import keeper


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("exchange")
    p.add_argument("lens")
    p.add_argument("account")
    p.add_argument("--multicall", default="0xcA11bde05977b3631167028862bE2a173976CA11")
    args = p.parse_args()

    if args.url.startswith("ws"):
        w3 = await AsyncWeb3(WebSocketProvider(args.url))
    else:
        w3 = AsyncWeb3(AsyncHTTPProvider(args.url, request_kwargs={"timeout": 10}))
    addresses = {"exchange": args.exchange, "lens": args.lens}
    async with await keeper.connect(
        w3, addresses=addresses, multicall=args.multicall, accounts=[args.account]
    ) as client:
        views = await client.positions()
        print(f"{len(views)} position(s) at block {views[0].block_number if views else '-'}")
        for v in views:
            p_ = v.position
            print(
                f"{v.symbol} {p_.side.value} {p_.size.value.normalize():f} ({p_.mode.value}): "
                f"margin ratio {v.margin_ratio:.4%}, liquidation price {v.liquidation_price}, "
                f"distance {v.distance_to_liquidation}, equity {v.equity}"
            )
    await w3.provider.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
