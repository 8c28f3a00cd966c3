"""Venue adapters behind one protocol (base.py); one module per venue.

- `base`: the `Venue` protocol and the venue-neutral types it speaks (`Watch`, `VenueRead`,
  `TxRequest`, `TxPlan`, `MinedTx`, `ActionState`, `PoolState`).
- `reference`: our reference exchange (contracts/src), isolated and cross margin.
- `gmx`: GMX v2 (orders executed later by GMX's keepers); `gmx_math`: its pure math.
- `gains`: Gains Network gTrade (one diamond per chain; market actions answered later by
  its oracles); `gains_math`: its liquidation rule in integers.
- `codec`: fast ABI coding for the shapes read thousands of times per tick.
"""

from keeper.venues.base import (
    ActionState,
    Execution,
    MinedTx,
    PoolState,
    ReadIssue,
    TxPlan,
    TxRequest,
    Venue,
    VenueDecodeError,
    VenueError,
    VenueRead,
    Watch,
)

__all__ = [
    "ActionState",
    "Execution",
    "MinedTx",
    "PoolState",
    "ReadIssue",
    "TxPlan",
    "TxRequest",
    "Venue",
    "VenueDecodeError",
    "VenueError",
    "VenueRead",
    "Watch",
]
