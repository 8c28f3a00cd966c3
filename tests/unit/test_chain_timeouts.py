"""Timeouts from latency windows, hedged reads and broadcast sends, over endpoints that answer
after scripted delays (no node)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from keeper.chain.jsonrpc import (
    RpcResponseError,
    RpcSendOutcomeUnknownError,
    RpcTimeoutError,
    RpcTransportError,
    transaction_hash,
)
from keeper.chain.rpc import FailoverRpc
from keeper.chain.timeouts import CallKind, LatencyWindow, TimeoutPolicy, call_kind

# -- the window and the policy --


def test_latency_window_quantiles_roll_over_the_last_answers() -> None:
    window = LatencyWindow(100)
    assert LatencyWindow().p99 is None
    for ms in range(1, 101):
        window.add(ms / 1000)
    assert (window.p95, window.p99, window.quantile(1.0)) == (0.095, 0.099, 0.1)
    for _ in range(100):
        window.add(0.001)  # the slow ones age out
    assert len(window) == 100
    assert window.p99 == 0.001
    with pytest.raises(ValueError, match="quantile"):
        window.quantile(0)
    with pytest.raises(ValueError, match="at least 1"):
        LatencyWindow(0)


def test_timeout_is_a_multiple_of_the_p99_within_floor_and_cap() -> None:
    policy = TimeoutPolicy(floor=0.25, cap=10.0, multiple=4.0, min_samples=5)
    window = LatencyWindow()
    assert policy.timeout(window) == 2.0  # no history: DEFAULT_INITIAL
    assert TimeoutPolicy(initial=5.0).timeout(window) == 5.0
    assert TimeoutPolicy(floor=3.0).timeout(window) == 3.0  # within floor and cap
    assert TimeoutPolicy(floor=0.1, cap=1.0).timeout(window) == 1.0
    for _ in range(4):
        window.add(0.2)
    assert policy.timeout(window) == 2.0  # not enough yet
    window.add(0.2)
    assert policy.timeout(window) == pytest.approx(0.8)
    fast = LatencyWindow()
    for _ in range(5):
        fast.add(0.001)
    assert policy.timeout(fast) == 0.25  # the floor
    slow = LatencyWindow()
    for _ in range(5):
        slow.add(5.0)
    assert policy.timeout(slow) == 10.0  # the cap
    assert TimeoutPolicy.fixed(3.0).timeout(fast) == 3.0


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"floor": 0.0}, "0 < floor <= cap"),
        ({"floor": 2.0, "cap": 1.0}, "0 < floor <= cap"),
        ({"multiple": 0.5}, "at least 1"),
        ({"initial": 20.0}, "outside"),
        ({"min_samples": 0}, "min_samples"),
    ],
)
def test_timeout_policy_refuses_settings_that_make_no_sense(kw: dict[str, Any], text: str) -> None:
    with pytest.raises(ValueError, match=text):
        TimeoutPolicy(**kw)


def test_call_kinds() -> None:
    assert call_kind("eth_blockNumber") is CallKind.HEAD
    assert call_kind("eth_getBlockByNumber") is CallKind.HEAD
    assert call_kind("eth_call") is CallKind.CALL
    assert call_kind("eth_estimateGas") is CallKind.CALL
    assert call_kind("eth_getLogs") is CallKind.LOGS
    assert call_kind("eth_getBalance") is CallKind.READ
    assert call_kind("eth_sendRawTransaction", read=False) is CallKind.SEND


# -- endpoints that take their time --

Behaviour = Callable[[str, list[Any]], Any]


class Timed:
    """A fake endpoint: `answer(method, params)` gives (delay in seconds, result or RpcError)."""

    def __init__(self, label: str, answer: Behaviour) -> None:
        self.label = label
        self.answer = answer
        self.calls: list[tuple[str, list[Any]]] = []
        self.finished = 0

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        self.calls.append((method, list(params)))
        delay, result = self.answer(method, list(params))
        await asyncio.sleep(delay)
        self.finished += 1
        if isinstance(result, Exception):
            raise result
        return result

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)


def fast(result: Any = "0x1", delay: float = 0.002) -> Behaviour:
    return lambda method, params: (delay, result)


def hangs_after(n: int, *, hang: float = 5.0, result: Any = "0x1") -> Behaviour:
    """Answers the first `n` calls at once, then hangs once for `hang` seconds, then answers."""
    seen = [0]

    def answer(method: str, params: list[Any]) -> tuple[float, Any]:
        seen[0] += 1
        return (hang if seen[0] == n + 1 else 0.002), result

    return answer


WARM = 20  # answers that make a window settled (DEFAULT_MIN_SAMPLES)


def failover(*endpoints: Timed, **kw: Any) -> FailoverRpc:
    kw.setdefault("retry_wait", 0.0)
    kw.setdefault("retry_wait_max", 0.0)
    return FailoverRpc(list(endpoints), **kw)


async def warm(rpc: FailoverRpc, method: str = "eth_getBalance", n: int = WARM) -> None:
    for _ in range(n):
        await rpc.request(method, ["0x" + "11" * 20, "latest"])


async def timed(coro: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = await coro
    return result, time.perf_counter() - started


async def test_a_hang_costs_a_timeout_from_the_endpoints_history_not_the_cap() -> None:
    a = Timed("a", hangs_after(WARM))
    rpc = failover(a, hedge=False, cooldown=0.0)
    await warm(rpc)
    assert rpc.stats()[0].timeouts["read"] == 0.25  # 4 x a p99 of ~2 ms: the floor
    result, took = await timed(rpc.get_balance("0x" + "11" * 20))
    assert result == 1
    assert 0.25 <= took < 1.0  # one timeout at the floor, then the retry answers
    (stats,) = rpc.stats()
    assert stats.errors == {"timeout": 1}
    assert stats.p99["read"] < 0.1  # the hang taught the window nothing
    assert stats.timeouts["call"] == 2.0  # no eth_call answered yet: the initial timeout
    await rpc.close()


async def test_a_hang_before_there_is_history_is_cut_at_the_initial_timeout() -> None:
    a = Timed("a", hangs_after(0, hang=3.0))
    rpc = failover(a, timeouts=TimeoutPolicy(initial=0.3), cooldown=0.0)
    result, took = await timed(rpc.get_balance("0x" + "11" * 20))
    assert result == 1
    assert 0.3 <= took < 1.0
    (stats,) = rpc.stats()
    assert stats.errors == {"timeout": 1}
    assert stats.p99["read"] < 0.1  # not learnt: it would have made the hang the p99
    await rpc.close()


async def test_the_latency_of_an_answer_nobody_waited_for_is_not_learnt() -> None:
    slow_once = hangs_after(WARM, hang=0.15)  # slower than the hedge, within the timeout
    a, b = Timed("a", slow_once), Timed("b", fast("0x2"))
    rpc = failover(a, b)
    await warm(rpc)
    assert await rpc.get_balance("0x" + "11" * 20) == 2
    await asyncio.sleep(0.2)
    assert a.finished == WARM + 1  # it answered, late...
    (sa, _) = rpc.stats()
    assert sa.answers == WARM + 1
    assert sa.p99["read"] < 0.1  # ...and its window does not hold it
    await rpc.close()


async def test_each_timeout_in_a_row_doubles_the_next_and_an_answer_resets_it() -> None:
    calls = [0]

    def answer(method: str, params: list[Any]) -> tuple[float, Any]:
        calls[0] += 1
        return (0.35 if 5 < calls[0] <= 8 else 0.001), "0x1"  # slower than its history, a while

    a = Timed("a", answer)
    policy = TimeoutPolicy(floor=0.1, cap=5.0, min_samples=5)
    rpc = failover(a, timeouts=policy, hedge=False, cooldown=0.0, attempts=1)
    await warm(rpc, n=5)
    for expected in (0.1, 0.2):
        assert rpc.stats()[0].timeouts["read"] == pytest.approx(expected)
        with pytest.raises(RpcTimeoutError, match=f"after {expected}s"):
            await rpc.get_balance("0x" + "11" * 20)
    assert rpc.stats()[0].timeouts["read"] == pytest.approx(0.4)
    assert await rpc.get_balance("0x" + "11" * 20) == 1  # the third try waits long enough
    learnt = rpc.stats()[0].timeouts["read"]
    assert learnt == pytest.approx(4 * 0.35, rel=0.2)  # back to 4 x p99, which holds it now
    await rpc.close()
    retried = failover(Timed("b", hangs_after(5, hang=0.3)), timeouts=policy, hedge=False)
    await warm(retried, n=5)
    result, took = await timed(retried.get_balance("0x" + "11" * 20))
    assert result == 1
    assert 0.1 <= took < 0.3  # the retry pass (twice as long) answered
    await retried.close()


async def test_a_slow_read_is_hedged_to_the_next_endpoint_and_the_loser_still_counts() -> None:
    a = Timed("a", hangs_after(WARM, hang=0.6))
    b = Timed("b", fast("0x2"))
    rpc = failover(a, b, cooldown=30.0)
    await warm(rpc)
    assert b.calls == []
    result, took = await timed(rpc.get_balance("0x" + "11" * 20))
    assert result == 2
    assert took < 0.2  # hedged after a's p95 (the 50 ms hedge floor), not its 250 ms timeout
    sa, sb = rpc.stats()
    assert (sa.hedges, sb.hedges, sb.hedge_wins) == (0, 1, 1)
    await asyncio.sleep(0.35)  # a's own request times out in the background...
    sa, _ = rpc.stats()
    assert sa.errors == {"timeout": 1}
    assert not sa.healthy  # ...and a cools down: the next read goes to b first
    assert await rpc.get_balance("0x" + "11" * 20) == 2
    assert a.count("eth_getBalance") == WARM + 1
    await rpc.close()


async def test_a_hedge_reads_at_the_same_block_as_the_request_it_hedges() -> None:
    a = Timed("a", hangs_after(WARM, hang=0.5))
    b = Timed("b", fast())
    rpc = failover(a, b)
    await warm(rpc, "eth_call")
    tx = {"to": "0x" + "22" * 20, "data": "0x"}
    assert await rpc.request("eth_call", [tx, "latest"], block=7) == "0x1"
    assert a.calls[-1] == ("eth_call", [tx, "0x7"])  # the tag pinned to the block asked for
    assert b.calls == [("eth_call", [tx, "0x7"])]
    assert await rpc.request("eth_call", [tx], block=8) == "0x1"
    assert a.calls[-1] == ("eth_call", [tx, "0x8"])
    await rpc.close()


async def test_a_hedge_goes_to_an_endpoint_cooling_down_when_no_other_is_left() -> None:
    refused = RpcTransportError("eth_blockNumber", "refused", may_have_arrived=False)
    a = Timed("a", hangs_after(WARM + 1, hang=0.4))  # the head refresh is its 21st call
    b = Timed("b", fast(refused))
    rpc = failover(a, b, cooldown=30.0)
    await warm(rpc)
    await rpc.refresh_heads()  # b refuses: cooling down now
    assert not rpc.stats()[1].healthy
    b.answer = fast("0x2")  # its trouble is over, though nobody knows yet
    result, took = await timed(rpc.get_balance("0x" + "11" * 20))
    assert (result, rpc.stats()[1].hedges) == (2, 1)
    assert took < 0.2
    await rpc.close()


async def test_without_hedging_a_hang_is_waited_for_until_its_timeout() -> None:
    a = Timed("a", hangs_after(WARM, hang=0.4))
    b = Timed("b", fast("0x2"))
    rpc = failover(a, b, hedge=False)
    await warm(rpc)
    result, took = await timed(rpc.get_balance("0x" + "11" * 20))
    assert result == 2  # a timed out: b asked next
    assert 0.25 <= took < 0.4
    assert rpc.stats()[1].hedges == 0
    await rpc.close()


async def test_without_history_a_read_is_hedged_after_hedge_initial() -> None:
    a = Timed("a", lambda method, params: (1.0, "0x1"))
    b = Timed("b", fast("0x2"))
    rpc = failover(a, b, hedge_initial=0.1)
    result, took = await timed(rpc.get_balance("0x" + "11" * 20))
    assert result == 2
    assert 0.1 <= took < 0.5
    await rpc.close()  # a's request, still running, is cancelled
    assert a.finished == 0


async def test_a_kind_without_history_is_hedged_at_the_pace_of_the_endpoints_other_kinds() -> None:
    # fee history, nonces and receipts come once per action: their windows fill slowly, and a
    # hang on one of them must not cost hedge_initial when the endpoint's pace is known
    a = Timed("a", hangs_after(WARM, hang=1.0))
    b = Timed("b", fast("0x2"))
    rpc = failover(a, b, hedge_initial=0.5)
    await warm(rpc, "eth_call")  # only eth_call (kind "call") has history
    result, took = await timed(rpc.get_balance("0x" + "11" * 20))  # kind "read": none
    assert result == 2
    assert took < 0.3  # the hedge floor (0.05 s) and b's answer, not the 0.5 s initial
    assert rpc.stats()[1].hedge_wins == 1
    await rpc.close()


async def test_an_endpoint_that_learnt_a_hang_is_hedged_no_later_than_hedge_initial() -> None:
    # a hang answered within a doubled timeout enters the window: its p95 must not become
    # the wait of every read after it
    slow = Timed("a", lambda method, params: (0.6, "0x1"))
    b = Timed("b", fast("0x2"))
    rpc = failover(slow, b, hedge_initial=0.1, timeout=5.0)
    window = rpc._endpoints[0].latency[CallKind.READ]
    for _ in range(WARM):
        window.add(0.6)  # the endpoint's reads took 0.6 s: its p95 is 0.6 s
    result, took = await timed(rpc.get_balance("0x" + "11" * 20))
    assert result == 2
    assert took < 0.4  # hedged after 0.1 s, not 0.6 s
    await rpc.close()


# -- broadcast sends --

RAW = "0x02f86b827a6980"
HASH = transaction_hash(RAW)
NONCE_LOW = RpcResponseError("eth_sendRawTransaction", -32000, "nonce too low")
KNOWN = RpcResponseError("eth_sendRawTransaction", -32000, "already known")
TIMEOUT = RpcTimeoutError("eth_sendRawTransaction", "timed out")


async def test_a_send_goes_to_every_endpoint_and_the_first_acceptance_returns() -> None:
    a = Timed("a", lambda method, params: (5.0, HASH))
    b = Timed("b", fast(HASH, delay=0.01))
    rpc = failover(a, b)
    result, took = await timed(rpc.send_raw_transaction(RAW))
    assert result == HASH
    assert took < 0.5
    assert a.count("eth_sendRawTransaction") == b.count("eth_sendRawTransaction") == 1
    await rpc.close()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (KNOWN, TIMEOUT),  # "already known": it has these bytes: sent
        (NONCE_LOW, HASH),  # the other endpoint's acceptance wins over an echo
    ],
)
async def test_a_send_someone_accepted_is_sent(first: Any, second: Any) -> None:
    a = Timed("a", fast(first, delay=0.001))
    b = Timed("b", fast(second, delay=0.05))
    rpc = failover(a, b)
    assert await rpc.send_raw_transaction(RAW) == HASH
    await rpc.close()


async def test_a_send_nobody_accepted() -> None:
    rejected = failover(Timed("a", fast(NONCE_LOW)), Timed("b", fast(NONCE_LOW)))
    with pytest.raises(RpcResponseError, match="nonce too low"):
        await rejected.send_raw_transaction(RAW)
    maybe = failover(Timed("a", fast(TIMEOUT)), Timed("b", fast(NONCE_LOW)))
    with pytest.raises(RpcSendOutcomeUnknownError) as info:  # a may have it: look it up
        await maybe.send_raw_transaction(RAW)
    assert info.value.tx_hash == HASH


async def test_a_send_goes_to_endpoints_cooling_down_too() -> None:
    refused = RpcTransportError("eth_blockNumber", "refused", may_have_arrived=False)

    def hangs_on_sends(method: str, params: list[Any]) -> tuple[float, Any]:
        return (5.0, HASH) if method == "eth_sendRawTransaction" else (0.001, "0x1")

    a = Timed("a", hangs_on_sends)  # healthy, and hangs
    b = Timed("b", fast(refused))
    rpc = failover(a, b, cooldown=30.0)
    await rpc.refresh_heads()  # b refuses: cooling down
    b.answer = fast(HASH)
    result, took = await timed(rpc.send_raw_transaction(RAW))
    assert (result, b.count("eth_sendRawTransaction")) == (HASH, 1)
    assert took < 0.5
    await rpc.close()
    refused_everywhere = failover(Timed("a", fast(refused)), Timed("b", fast(refused)))
    with pytest.raises(RpcTransportError, match="refused"):
        await refused_everywhere.send_raw_transaction(RAW)
