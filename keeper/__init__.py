"""perp-keeper: protects leveraged perpetual positions from liquidation.

The API for scripts and notebooks; `keeper.sync` has the same, blocking.

- `connect(w3_or_urls, venue=..., ...)` or `Client.from_config(path)` gives a `Client`: an
  async context manager with `positions()`, `markets()`, `prepare_top_up()` /
  `prepare_reduce()` / `prepare_close()` / `prepare_withdraw()` (a `Plan`: simulated, priced,
  with a `Preview` of the margin ratio and liquidation price before -> after), `send(plan)`
  (an `Outcome`, through the same journal and nonces as `keeper run`) and `protect()` (the
  keeper's loop in your asyncio program, one `TickReport` per block). With
  `connect(..., delegated=True)` the key acts for accounts that named it as their delegate
  (a GMX subaccount, a reference-exchange operator); `delegations()` reads each grant (a
  `Delegation`).
- The model: `Position`, `Market`, `CrossAccount`, `Snapshot`, `Token`, `Side`,
  `MarginMode`; values `TokenAmount`, `Usd`, `Price` (integers with their scale; no float);
  `PositionView` (a position with its margin figures).
- The margin functions, pure, for calculators: `equity`, `margin_ratio`,
  `maintenance_margin`, `liquidation_price`, `distance_to_liquidation`, `leverage`, `pnl`,
  `notional`, `is_liquidatable`.
- The policy's settings: `Thresholds`, `MarketThresholds`, `Budget` (`budget_in` makes one).
- Errors: `ConfigError`, `ManualError`, `RpcError`, `VenueError`, `SignerError`.

Names load when first used, so `import keeper` is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "connect": "keeper.client",
    "Client": "keeper.client",
    "Outcome": "keeper.client",
    "budget_in": "keeper.client",
    "Plan": "keeper.manual",
    "ManualError": "keeper.manual",
    "PositionView": "keeper.views",
    "Preview": "keeper.views",
    "TickReport": "keeper.loop",
    "Position": "keeper.model",
    "Market": "keeper.model",
    "CrossAccount": "keeper.model",
    "Snapshot": "keeper.model",
    "Token": "keeper.model",
    "Side": "keeper.model",
    "MarginMode": "keeper.model",
    "TokenAmount": "keeper.units",
    "Usd": "keeper.units",
    "Price": "keeper.units",
    "Thresholds": "keeper.policy",
    "MarketThresholds": "keeper.policy",
    "Budget": "keeper.policy",
    "equity": "keeper.margin",
    "margin_ratio": "keeper.margin",
    "maintenance_margin": "keeper.margin",
    "liquidation_price": "keeper.margin",
    "distance_to_liquidation": "keeper.margin",
    "leverage": "keeper.margin",
    "pnl": "keeper.margin",
    "notional": "keeper.margin",
    "is_liquidatable": "keeper.margin",
    "ConfigError": "keeper.config",
    "RpcError": "keeper.chain.jsonrpc",
    "VenueError": "keeper.venues.base",
    "Delegation": "keeper.venues.base",
    "SignerError": "keeper.signer",
}

__all__ = [
    "Budget",
    "Client",
    "ConfigError",
    "CrossAccount",
    "Delegation",
    "ManualError",
    "MarginMode",
    "Market",
    "MarketThresholds",
    "Outcome",
    "Plan",
    "Position",
    "PositionView",
    "Preview",
    "Price",
    "RpcError",
    "Side",
    "SignerError",
    "Snapshot",
    "Thresholds",
    "TickReport",
    "Token",
    "TokenAmount",
    "Usd",
    "VenueError",
    "__version__",
    "budget_in",
    "connect",
    "distance_to_liquidation",
    "equity",
    "is_liquidatable",
    "leverage",
    "liquidation_price",
    "maintenance_margin",
    "margin_ratio",
    "notional",
    "pnl",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'keeper' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


if TYPE_CHECKING:
    from keeper.chain.jsonrpc import RpcError
    from keeper.client import Client, Outcome, budget_in, connect
    from keeper.config import ConfigError
    from keeper.loop import TickReport
    from keeper.manual import ManualError, Plan
    from keeper.margin import (
        distance_to_liquidation,
        equity,
        is_liquidatable,
        leverage,
        liquidation_price,
        maintenance_margin,
        margin_ratio,
        notional,
        pnl,
    )
    from keeper.model import CrossAccount, MarginMode, Market, Position, Side, Snapshot, Token
    from keeper.policy import Budget, MarketThresholds, Thresholds
    from keeper.signer import SignerError
    from keeper.units import Price, TokenAmount, Usd
    from keeper.venues.base import Delegation, VenueError
    from keeper.views import PositionView, Preview
