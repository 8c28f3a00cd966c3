"""Request timeouts from what an endpoint has been doing: rolling latency windows per kind of
call, and the timeout (and hedge delay) they give.

A fixed timeout has to be long enough for the slowest legitimate answer, so a request that
hangs costs that long. Here each endpoint keeps, for each `CallKind`, the latencies of its
last `size` answers (`LatencyWindow`), and `TimeoutPolicy.timeout` is `multiple` times their
p99, within `floor` and `cap`. Until `min_samples` answers are in, it is `initial`
(`DEFAULT_INITIAL`, 2 s, within floor and cap, unless configured). A hang then costs a few
times the endpoint's usual slowest answer, not the cap.

Each timeout in a row doubles the next one (of that kind, at that endpoint: `backoff`), up to
the cap, and an answer puts it back, as TCP does with its retransmission timeout. A call that
became slower than its history (a bigger batch) thus gets a longer wait on its retry, or on
the next tick, until it is answered and teaches the window; a hang here and there costs the
short timeout.

Only answers someone waited for count (results, and JSON-RPC error objects, which the node
worked out too). A timed-out request says nothing about how long an answer would have taken;
an answer that came after another endpoint's (a hedged read's loser, a broadcast's echo) is
known only to be slow, and recording the hangs that end within the timeout would make them
the p99: the timeout would grow to the cap on an endpoint that hangs often, and stay there.
For the same reason the initial timeout is short rather than the cap: a hang met before the
window fills is cut off, not learnt. A call that really is slower than that (a big first
batch) times out, and its retry, which waits twice as long, is answered and teaches the
window.

Kinds are kept apart because their latencies differ by orders of magnitude: a head poll takes
a millisecond where a Multicall3 batch over thousands of positions takes a second.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections import deque
from dataclasses import dataclass

__all__ = [
    "DEFAULT_CAP",
    "DEFAULT_FLOOR",
    "DEFAULT_INITIAL",
    "DEFAULT_MIN_SAMPLES",
    "DEFAULT_MULTIPLE",
    "DEFAULT_WINDOW",
    "HEAD_METHODS",
    "LOG_METHODS",
    "SIMULATION_METHODS",
    "CallKind",
    "LatencyWindow",
    "TimeoutPolicy",
    "call_kind",
]

DEFAULT_FLOOR = 0.25
"""Seconds: no request is given less, however fast the endpoint has been."""
DEFAULT_CAP = 10.0
"""Seconds: no request is given more (the fixed timeout of old)."""
DEFAULT_MULTIPLE = 4.0
"""The timeout is this many times the recent p99 latency."""
DEFAULT_INITIAL = 2.0
"""Seconds: the timeout until a window holds `DEFAULT_MIN_SAMPLES` answers (within floor and
cap)."""
DEFAULT_MIN_SAMPLES = 5
"""Answers needed in a window before its quantiles are used (few: an underestimate costs a
timeout and a retry that waits twice as long)."""
DEFAULT_WINDOW = 200
"""Answers kept per endpoint and kind."""


class CallKind(enum.StrEnum):
    """What a call is, for its timeout: each kind has its own latency window and policy."""

    HEAD = "head"  # eth_blockNumber, blocks by number or hash: small, polled all the time
    READ = "read"  # other small reads: balances, nonces, receipts, fees, chain id
    CALL = "call"  # eth_call, eth_estimateGas, eth_createAccessList: may run a big batch
    LOGS = "logs"  # eth_getLogs, eth_getBlockReceipts: may scan many blocks
    SEND = "send"  # eth_sendRawTransaction, and anything else that is not a read


HEAD_METHODS = frozenset({"eth_blockNumber", "eth_getBlockByNumber", "eth_getBlockByHash"})
"""The methods of kind `CallKind.HEAD`."""
SIMULATION_METHODS = frozenset({"eth_call", "eth_estimateGas", "eth_createAccessList"})
"""The methods of kind `CallKind.CALL`."""
LOG_METHODS = frozenset({"eth_getLogs", "eth_getBlockReceipts"})
"""The methods of kind `CallKind.LOGS`."""


def call_kind(method: str, *, read: bool = True) -> CallKind:
    """The kind of `method`; `read` says whether it is an idempotent read at all (the caller
    knows its allowlist: `keeper.chain.rpc.READ_METHODS`); anything else is SEND."""
    if not read:
        return CallKind.SEND
    if method in HEAD_METHODS:
        return CallKind.HEAD
    if method in SIMULATION_METHODS:
        return CallKind.CALL
    if method in LOG_METHODS:
        return CallKind.LOGS
    return CallKind.READ


class LatencyWindow:
    """The last `size` latencies (seconds), with their quantiles at hand.

    Kept twice: in arrival order (to drop the oldest) and sorted (so a quantile is a lookup;
    adding is a bisection and a memmove of at most `size` floats).
    """

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 1:
            raise ValueError(f"a latency window holds at least 1 sample, not {size}")
        self.size = size
        self._order: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._order)

    def add(self, seconds: float) -> None:
        """One more answer that took `seconds`; the oldest is forgotten once `size` are in."""
        if len(self._order) == self.size:
            oldest = self._order.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, oldest)]
        self._order.append(seconds)
        bisect.insort(self._sorted, seconds)

    def quantile(self, q: float) -> float | None:
        """The nearest-rank `q` quantile (0 < q <= 1) of the window; None when it is empty."""
        if not 0 < q <= 1:
            raise ValueError(f"a quantile is in (0, 1], not {q}")
        if not self._sorted:
            return None
        return self._sorted[max(math.ceil(q * len(self._sorted)) - 1, 0)]

    @property
    def p95(self) -> float | None:
        return self.quantile(0.95)

    @property
    def p99(self) -> float | None:
        return self.quantile(0.99)


@dataclass(frozen=True, slots=True)
class TimeoutPolicy:
    """How long to wait for one request: `multiple` times the endpoint's recent p99 for the
    kind of call, within [`floor`, `cap`] (seconds); `initial` (None: `DEFAULT_INITIAL` within
    floor and cap) until the window holds `min_samples` answers; doubled for each timeout in a
    row (`backoff`), up to the cap. ValueError for settings that make no sense."""

    floor: float = DEFAULT_FLOOR
    cap: float = DEFAULT_CAP
    multiple: float = DEFAULT_MULTIPLE
    initial: float | None = None
    min_samples: int = DEFAULT_MIN_SAMPLES

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.cap:
            raise ValueError(f"timeouts need 0 < floor <= cap, got {self.floor} and {self.cap}")
        if self.multiple < 1:
            raise ValueError(f"the timeout multiple must be at least 1, not {self.multiple}")
        if self.initial is not None and not self.floor <= self.initial <= self.cap:
            raise ValueError(
                f"the initial timeout {self.initial} is outside [{self.floor}, {self.cap}]"
            )
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, not {self.min_samples}")

    @classmethod
    def fixed(cls, seconds: float) -> TimeoutPolicy:
        """Always `seconds`, whatever the endpoint does (the old behaviour)."""
        return cls(floor=seconds, cap=seconds, multiple=1.0)

    @property
    def first(self) -> float:
        """The timeout while there is not enough history."""
        if self.initial is not None:
            return self.initial
        return min(max(DEFAULT_INITIAL, self.floor), self.cap)

    def settled(self, window: LatencyWindow) -> bool:
        """Whether `window` holds enough answers for its quantiles to be used."""
        return len(window) >= self.min_samples

    def timeout(self, window: LatencyWindow, backoff: int = 0) -> float:
        """The timeout for the next request of this kind to the endpoint `window` is of, after
        `backoff` timeouts in a row there."""
        p99 = window.p99
        if p99 is None or not self.settled(window):
            base = self.first
        else:
            base = max(self.multiple * p99, self.floor)
        return min(base * (1 << min(max(backoff, 0), 30)), self.cap)
