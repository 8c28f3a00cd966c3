"""The blocking API, as in a notebook cell: no `await`, works beside a running event loop.

python examples/notebook_sync.py URL EXCHANGE LENS ACCOUNT [--multicall ADDRESS]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from keeper import Price, equity, liquidation_price, margin_ratio, sync


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("exchange")
    p.add_argument("lens")
    p.add_argument("account")
    p.add_argument("--multicall", default="0xcA11bde05977b3631167028862bE2a173976CA11")
    args = p.parse_args()

    addresses = {"exchange": args.exchange, "lens": args.lens}
    with sync.connect(
        args.url, addresses=addresses, multicall=args.multicall, accounts=[args.account]
    ) as client:
        markets = client.markets()
        print("markets:", ", ".join(f"{m.index_token.symbol} {m.mark_price}" for m in markets))
        for v in client.positions():
            # the same margin functions, on the model types, for your own calculations
            p_, m = v.position, v.market
            print(v.symbol, p_.side.value, "ratio", f"{margin_ratio(p_, m):.4%}",
                  "equity", equity(p_, m), "liquidation", liquidation_price(p_, m))  # fmt: skip
            # what-if: the same position at a mark 10% lower (integer math on the raw price)
            lower = replace(m, mark_price=Price(m.mark_price.raw * 9 // 10, m.mark_price.decimals))
            print(f"  at {lower.mark_price}: ratio {margin_ratio(p_, lower):.4%}")


if __name__ == "__main__":
    main()
