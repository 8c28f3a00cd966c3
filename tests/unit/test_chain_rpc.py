"""The RPC layer without a node: parsing, error classification, endpoint order, failover rules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from eth_hash.auto import keccak

from keeper.chain.jsonrpc import (
    JsonRpc,
    RpcBlockUnavailableError,
    RpcError,
    RpcMalformedResponseError,
    RpcResponseError,
    RpcSendOutcomeUnknownError,
    RpcTimeoutError,
    RpcTransportError,
    endpoint_label,
    parse_response,
)
from keeper.chain.rpc import (
    BlockHeader,
    ErrorKind,
    FailoverRpc,
    block_param,
    classify_error,
    order_endpoints,
    pinned_block,
    should_fail_over,
)

# -- parsing --


def test_parse_response_result_and_errors() -> None:
    assert parse_response("m", "e", 200, b'{"jsonrpc":"2.0","id":1,"result":"0x1"}') == "0x1"
    with pytest.raises(RpcResponseError) as info:
        parse_response(
            "eth_call",
            "e",
            200,
            b'{"id":1,"error":{"code":3,"message":"execution reverted","data":"0xab"}}',
        )
    assert (info.value.code, info.value.rpc_message, info.value.data) == (
        3,
        "execution reverted",
        "0xab",
    )
    assert info.value.status is None
    with pytest.raises(RpcResponseError) as info:
        parse_response("m", "e", 429, b'{"id":1,"error":{"code":-32005,"message":"slow down"}}')
    assert info.value.status == 429


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (200, b'{"jsonrpc":"2.0","id":1,"res', RpcMalformedResponseError, "not JSON"),
        (200, b"", RpcMalformedResponseError, "empty answer"),
        (200, b"[1, 2]", RpcMalformedResponseError, "not an object"),
        (200, b'{"id":1}', RpcMalformedResponseError, "neither result nor error"),
        (200, b'{"id":1,"error":"boom"}', RpcMalformedResponseError, "malformed error"),
        (200, b'{"id":7,"result":"0x1"}', RpcMalformedResponseError, "id 7, expected 1"),
        (502, b"<html>bad gateway</html>", RpcTransportError, "HTTP 502"),
        (503, b'{"id":1}', RpcTransportError, "HTTP 503"),
    ],
)
def test_parse_response_malformed(
    status: int, body: bytes, error: type[RpcError], text: str
) -> None:
    with pytest.raises(error, match=text) as info:
        parse_response("eth_blockNumber", "http://node", status, body, expected_id=1)
    assert str(info.value).startswith("eth_blockNumber at http://node: ")


def test_http_429_never_arrived_but_5xx_may_have() -> None:
    with pytest.raises(RpcTransportError) as info:
        parse_response("m", "e", 429, b"Too Many Requests")
    assert not info.value.may_have_arrived
    with pytest.raises(RpcTransportError) as info:
        parse_response("m", "e", 500, b"oops")
    assert info.value.may_have_arrived


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("https://arb-mainnet.g.alchemy.com/v2/SECRETKEY", "https://arb-mainnet.g.alchemy.com/…"),
        ("https://user:pw@node.example:8443/", "https://node.example:8443"),
        ("https://rpc.example/?apikey=SECRET", "https://rpc.example/…"),
        ("ws://[::1]:8546", "ws://[::1]:8546"),
        ("not a url", "<invalid url>"),
    ],
)
def test_endpoint_label_hides_secrets(url: str, label: str) -> None:
    assert endpoint_label(url) == label


def test_block_header_parsing() -> None:
    raw = {
        "number": "0x10",
        "hash": "0xaa",
        "parentHash": "0xbb",
        "timestamp": "0x64",
        "baseFeePerGas": "0x7",
    }
    assert BlockHeader.from_json("m", raw) == BlockHeader(16, "0xaa", "0xbb", 100, 7)
    assert BlockHeader.from_json("m", {**raw, "baseFeePerGas": None}).base_fee is None
    with pytest.raises(RpcMalformedResponseError, match="malformed block"):
        BlockHeader.from_json("m", {**raw, "number": 16})
    with pytest.raises(RpcMalformedResponseError, match="malformed block"):
        BlockHeader.from_json("m", {"number": "0x1"})
    with pytest.raises(RpcMalformedResponseError, match="not an object"):
        BlockHeader.from_json("m", "0x1")


def test_block_param() -> None:
    assert block_param(255) == "0xff"
    assert block_param("latest") == "latest"
    with pytest.raises(ValueError, match="unknown block tag"):
        block_param("newest")
    with pytest.raises(ValueError, match="negative"):
        block_param(-1)
    with pytest.raises(TypeError):
        block_param(True)


@pytest.mark.parametrize(
    ("method", "params", "block"),
    [
        ("eth_call", [{"to": "0x1"}, "0x10"], 16),
        ("eth_call", [{"to": "0x1"}, "latest"], None),
        ("eth_call", [{"to": "0x1"}], None),
        ("eth_getBalance", ["0x1", {"blockNumber": "0x5"}], 5),
        ("eth_getBalance", ["0x1", {"blockHash": "0xab"}], None),
        ("eth_getStorageAt", ["0x1", "0x0", "0x9"], 9),
        ("eth_getBlockByNumber", ["0x3", False], 3),
        ("eth_blockNumber", [], None),
        ("eth_getLogs", [{"fromBlock": "0x1"}], None),
    ],
)
def test_pinned_block(method: str, params: list[Any], block: int | None) -> None:
    assert pinned_block(method, params) == block


# -- classification --


def response(code: int, message: str, status: int | None = None) -> RpcResponseError:
    return RpcResponseError("eth_call", code, message, status=status)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RpcTransportError("m", "refused", may_have_arrived=False), ErrorKind.CONNECT),
        (RpcTimeoutError("m", "timed out"), ErrorKind.TIMEOUT),
        (RpcTransportError("m", "reset"), ErrorKind.TRANSPORT),
        (RpcTransportError("m", "HTTP 429", status=429), ErrorKind.RATE_LIMITED),
        (RpcTransportError("m", "HTTP 413", status=413), ErrorKind.TOO_LARGE),
        (RpcTransportError("m", "HTTP 502", status=502), ErrorKind.SERVER),
        (RpcTransportError("m", "HTTP 404", status=404), ErrorKind.TRANSPORT),
        (RpcMalformedResponseError("m", "garbage"), ErrorKind.MALFORMED),
        (response(3, "execution reverted"), ErrorKind.CALLER),
        (response(-32000, "execution reverted: not owner"), ErrorKind.CALLER),
        (response(-32602, "invalid argument 0: hex string has odd length"), ErrorKind.CALLER),
        (response(-32000, "nonce too low: next nonce 5, tx nonce 4"), ErrorKind.CALLER),
        (response(-32000, "replacement transaction underpriced"), ErrorKind.CALLER),
        (response(-32000, "insufficient funds for gas * price + value"), ErrorKind.CALLER),
        (response(-32000, "already known"), ErrorKind.CALLER),
        (response(-32000, "some error nobody has heard of"), ErrorKind.CALLER),
        (response(-32000, "header not found"), ErrorKind.MISSING_BLOCK),
        (response(-32000, "unknown block"), ErrorKind.MISSING_BLOCK),
        (
            response(-32602, "BlockOutOfRangeError: block height is 3 but requested was 9"),
            ErrorKind.MISSING_BLOCK,
        ),
        (response(-32000, "out of gas"), ErrorKind.TOO_LARGE),
        (response(-32000, "gas required exceeds allowance (50000000)"), ErrorKind.TOO_LARGE),
        (response(-32000, "Response size exceeded"), ErrorKind.TOO_LARGE),
        (response(-32000, "execution aborted (timeout = 5s)"), ErrorKind.TOO_LARGE),
        (response(-32603, "request entity too large"), ErrorKind.TOO_LARGE),
        (response(-32005, "limit exceeded"), ErrorKind.RATE_LIMITED),
        (response(-32000, "Your app has exceeded its compute units"), ErrorKind.RATE_LIMITED),
        (response(-32000, "whatever", status=429), ErrorKind.RATE_LIMITED),
        (response(-32603, "Internal error"), ErrorKind.NODE),
        (response(-32000, "missing trie node abc (path )"), ErrorKind.NODE),
        (response(-32000, "upstream connect error"), ErrorKind.NODE),
        (response(-32601, "the method eth_foo does not exist/is not available"), ErrorKind.NODE),
        (response(-32099, "whatever", status=503), ErrorKind.SERVER),
        (RpcBlockUnavailableError("m", 5), ErrorKind.MISSING_BLOCK),
    ],
)
def test_classify_error(error: RpcError, kind: ErrorKind) -> None:
    assert classify_error(error) is kind


def test_what_fails_over() -> None:
    assert should_fail_over(RpcTimeoutError("m", "t"))
    assert should_fail_over(response(-32000, "header not found"))
    assert not should_fail_over(response(3, "execution reverted"))
    assert not should_fail_over(response(-32000, "out of gas"))
    assert not should_fail_over(ValueError("not an RpcError"))


# -- endpoint order --


@pytest.mark.parametrize(
    ("heads", "cooling", "block", "order"),
    [
        ([None, None, None], [False] * 3, None, [0, 1, 2]),  # configured order
        ([100, 101, 99], [False] * 3, None, [0, 1, 2]),  # all within max_lag: as configured
        ([90, 100, 95], [False] * 3, None, [1, 2, 0]),  # lagging ones last, furthest first
        ([100, 100, 100], [True, False, False], None, [1, 2, 0]),  # cooling down last
        ([90, None, 100], [False] * 3, None, [1, 2, 0]),  # unknown head: not lagging
        ([99, None, 101], [False] * 3, 100, [2, 1, 0]),  # pinned: has it, unknown, lacks it
        ([101, 100], [True, False], 100, [1, 0]),  # health before having the block
    ],
)
def test_order_endpoints(
    heads: list[int | None], cooling: list[bool], block: int | None, order: list[int]
) -> None:
    assert order_endpoints(heads, cooling, max_lag=3, block=block) == order


# -- FailoverRpc with scripted endpoints --

Answer = Any | RpcError | Callable[[str, Sequence[Any]], Any]


class Scripted:
    """A fake endpoint: answers from `script` (by method), raising RpcErrors it holds."""

    def __init__(self, name: str, **script: Answer) -> None:
        self.label = name
        self.script = script
        self.calls: list[tuple[str, list[Any]]] = []

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        self.calls.append((method, list(params)))
        answer = self.script.get(method, self.script.get("default"))
        if callable(answer) and not isinstance(answer, RpcError):
            answer = answer(method, params)
        if isinstance(answer, RpcError):
            raise answer
        return answer

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]


def failover(*endpoints: JsonRpc, **kw: Any) -> FailoverRpc:
    kw.setdefault("retry_wait", 0.0)
    kw.setdefault("retry_wait_max", 0.0)
    return FailoverRpc(list(endpoints), **kw)


REFUSED = RpcTransportError("m", "refused", may_have_arrived=False)
TIMEOUT = RpcTimeoutError("m", "timed out")
REVERT = RpcResponseError("eth_call", 3, "execution reverted", "0x08c379a0")


async def test_caller_error_is_raised_at_once() -> None:
    a, b = Scripted("a", eth_call=REVERT), Scripted("b", eth_call="0x")
    rpc = failover(a, b)
    with pytest.raises(RpcResponseError) as info:
        await rpc.eth_call("0x" + "11" * 20, b"")
    assert info.value is REVERT
    assert b.calls == []
    assert rpc.stats()[0].errors == {"caller": 1}
    assert rpc.stats()[0].healthy  # it answered: not its fault


async def test_unwell_endpoint_is_failed_over_and_retried() -> None:
    answers: list[Answer] = [TIMEOUT, TIMEOUT, "0x2a"]
    a = Scripted("a", eth_chainId=lambda m, p: answers.pop(0))
    rpc = failover(a, attempts=3, cooldown=0.0)
    assert await rpc.chain_id() == 42
    assert rpc.round_trips == 3
    (stats,) = rpc.stats()
    assert stats.errors == {"timeout": 2}
    assert (stats.requests, stats.answers) == (3, 1)


async def test_all_endpoints_fail_raises_the_last_error() -> None:
    a = Scripted("a", default=REFUSED)
    b = Scripted("b", default=RpcTransportError("m", "HTTP 502", status=502))
    rpc = failover(a, b, attempts=2, cooldown=0.0)
    with pytest.raises(RpcTransportError, match="502"):
        await rpc.block_number()
    assert len(a.calls) == len(b.calls) == 2


async def test_cooldown_uses_the_clock() -> None:
    now = [0.0]
    a, b = Scripted("a", default=TIMEOUT), Scripted("b", default="0x1")
    rpc = failover(a, b, cooldown=1.0, clock=lambda: now[0])
    await rpc.block_number()
    await rpc.block_number()
    assert len(a.calls) == 1  # cooling down: b first
    assert not rpc.stats()[0].healthy
    now[0] = 1.5
    await rpc.block_number()
    assert len(a.calls) == 2  # cooled down: asked again, fails again, now for 2 s
    now[0] = 3.0
    await rpc.block_number()
    assert len(a.calls) == 2
    assert rpc.stats()[0].consecutive_failures == 2


async def test_null_block_is_skipped_and_a_missing_block_everywhere_is_unavailable() -> None:
    block = {"number": "0x5", "hash": "0x05", "parentHash": "0x04", "timestamp": "0x1"}
    a, b = Scripted("a", eth_getBlockByNumber=None), Scripted("b", eth_getBlockByNumber=block)
    rpc = failover(a, b)
    assert (await rpc.get_block(5)).number == 5
    assert rpc.stats()[0].skipped == 1
    assert rpc.stats()[1].head == 5
    none = failover(Scripted("c", eth_getBlockByNumber=None), attempts=2)
    with pytest.raises(RpcBlockUnavailableError) as info:
        await none.get_block(5)
    assert info.value.block == 5


async def test_pinned_read_skips_an_endpoint_whose_head_is_behind() -> None:
    a = Scripted("a", eth_blockNumber="0x9", eth_getBalance="0x1")
    b = Scripted("b", eth_blockNumber="0xa", eth_getBalance="0x2")
    rpc = failover(a, b, max_lag=100)
    await rpc.refresh_heads()
    a.calls.clear()
    assert await rpc.get_balance("0x" + "22" * 20, 10) == 2
    assert a.calls == []  # b is known to have block 10: asked first
    b.script["eth_getBalance"] = TIMEOUT
    with pytest.raises(RpcTimeoutError):
        await rpc.get_balance("0x" + "22" * 20, 10)
    # a was asked for its head again (once per pass) but never for the balance.
    assert set(a.methods()) == {"eth_blockNumber"}
    assert rpc.stats()[0].skipped == 3


async def test_convenience_reads_reject_malformed_results() -> None:
    rpc = failover(Scripted("a", eth_blockNumber="42", eth_getCode="0xzz", eth_chainId=1))
    with pytest.raises(RpcMalformedResponseError, match="eth_blockNumber"):
        await rpc.block_number()
    with pytest.raises(RpcMalformedResponseError, match="eth_getCode"):
        await rpc.get_code("0x" + "33" * 20)
    with pytest.raises(RpcMalformedResponseError, match="eth_chainId"):
        await rpc.chain_id()


RAW_TX = "0x02f86b827a6980"  # any bytes: only hashed here


async def test_send_goes_to_one_endpoint_and_reports_an_unknown_outcome() -> None:
    a = Scripted("a", eth_sendRawTransaction=TIMEOUT)
    b = Scripted("b", eth_sendRawTransaction="0xhash")
    rpc = failover(a, b, broadcast=False)
    with pytest.raises(RpcSendOutcomeUnknownError) as info:
        await rpc.send_raw_transaction(RAW_TX)
    assert info.value.tx_hash == "0x" + keccak(bytes.fromhex(RAW_TX[2:])).hex()
    assert info.value.tx_hash in str(info.value)
    assert b.calls == []
    assert len(a.calls) == 1


@pytest.mark.parametrize(
    "error",
    [
        RpcMalformedResponseError("m", "garbage"),
        RpcTransportError("m", "HTTP 502", status=502),
        RpcResponseError("m", -32603, "internal error"),
    ],
)
async def test_send_outcome_unknown_for_answers_that_do_not_say(error: RpcError) -> None:
    rpc = failover(Scripted("a", eth_sendRawTransaction=error), Scripted("b"), broadcast=False)
    with pytest.raises(RpcSendOutcomeUnknownError):
        await rpc.send_raw_transaction(RAW_TX)


@pytest.mark.parametrize(
    "error",
    [REFUSED, RpcTransportError("m", "HTTP 429", status=429, may_have_arrived=False)],
)
async def test_send_moves_on_only_when_it_certainly_did_not_arrive(error: RpcError) -> None:
    a = Scripted("a", eth_sendRawTransaction=error)
    b = Scripted("b", eth_sendRawTransaction="0xbeef")
    for rpc in (failover(a, b, broadcast=False), failover(a, b)):
        assert await rpc.send_raw_transaction(RAW_TX) == "0xbeef"


async def test_send_rejections_are_raised_as_they_are() -> None:
    nonce = RpcResponseError("eth_sendRawTransaction", -32000, "nonce too low")
    b = Scripted("b")
    rpc = failover(Scripted("a", eth_sendRawTransaction=nonce), b, broadcast=False)
    with pytest.raises(RpcResponseError, match="nonce too low"):
        await rpc.send_raw_transaction(RAW_TX)
    assert b.calls == []


async def test_unlisted_methods_are_not_retried() -> None:
    a = Scripted("a", default=TIMEOUT)
    rpc = failover(a, Scripted("b"), attempts=5)
    with pytest.raises(RpcTimeoutError):
        await rpc.request("anvil_mine", ["0x1"])
    assert len(a.calls) == 1


async def test_stats_are_copies() -> None:
    rpc = failover(Scripted("a", default=TIMEOUT), attempts=1)
    with pytest.raises(RpcTimeoutError):
        await rpc.block_number()
    snapshot = rpc.stats()[0]
    snapshot.errors["timeout"] = 99
    snapshot.latency_buckets[0.005] = 99
    assert rpc.stats()[0].errors == {"timeout": 1}
    assert rpc.stats()[0].latency_buckets[0.005] == 1


def test_duplicate_labels_are_made_distinct() -> None:
    rpc = FailoverRpc(["https://p.example/v2/KEY1", "https://p.example/v2/KEY2"])
    assert rpc.labels == ["https://p.example/…", "https://p.example/…#1"]
    assert "KEY" not in repr(rpc)
    with pytest.raises(ValueError, match="at least one"):
        FailoverRpc([])
