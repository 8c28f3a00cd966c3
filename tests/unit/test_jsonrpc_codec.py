"""The JSON-RPC request encoder and the plain-result reader give what json.dumps / json.loads
would, and leave to the full parse everything they are not sure of."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.jsonrpc import (
    RpcMalformedResponseError,
    RpcResponseError,
    RpcTransportError,
    encode_request,
    parse_data_response,
    parse_response,
    request_data,
)

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.text(alphabet="0123456789abcdefx", min_size=1030, max_size=1100),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.integers(min_value=0, max_value=2**53), st.text(), st.lists(_json_values, max_size=4))
def test_encode_request_is_the_request_object(
    request_id: int, method: str, params: list[Any]
) -> None:
    body = encode_request(request_id, method, params)
    assert json.loads(body) == {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": method,
        "params": params,
    }


def test_encode_request_escapes_what_needs_escaping() -> None:
    params = [{"data": 'a"b\\c\n', "to": "0x" + "ab" * 20}, "latest", "é", ["\x01"], (1, 2)]
    body = encode_request(3, "eth_call", params)
    assert json.loads(body)["params"] == [
        {"data": 'a"b\\c\n', "to": "0x" + "ab" * 20},
        "latest",
        "é",
        ["\x01"],
        [1, 2],
    ]
    # hex data goes in as it is, without escapes or spaces
    data = "0x" + "0f" * 5000
    assert encode_request(1, "eth_call", [{"data": data}, "0x10"]) == (
        b'{"jsonrpc":"2.0","id":1,"method":"eth_call","params":[{"data":"'
        + data.encode()
        + b'"},"0x10"]}'
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":7,"result":"0x' + b"ab" * 3000 + b'"}',
        b'{"jsonrpc":"2.0","id":7,"result":"0x1"}\n',
        b'{"jsonrpc":"2.0","id":7,"result":""}',
        b'{"jsonrpc":"2.0","id":7,"result":"latest"}',
        # not the plain form: parsed in full, same answer
        b'{"jsonrpc":"2.0","id":7,"result":"a\\"b"}',
        b'{"jsonrpc":"2.0","id":7,"result":"\\u00e9"}',
        b'{"jsonrpc":"2.0","id":7,"result":"0x1","extra":"x"}',
        b'{"id":7,"jsonrpc":"2.0","result":"0x1"}',
        b'{"jsonrpc": "2.0", "id": 7, "result": "0x1"}',
        b'{"jsonrpc":"2.0","id":7,"result":{"number":"0x1"}}',
        b'{"jsonrpc":"2.0","id":7,"result":null}',
        '{"jsonrpc":"2.0","id":7,"result":"é"}'.encode(),
    ],
)
def test_parse_response_results(body: bytes) -> None:
    assert parse_response("m", "e", 200, body, expected_id=7) == json.loads(body)["result"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":70,"result":"0x1"}',  # another id (a prefix of it)
        b'{"jsonrpc":"2.0","id":8,"result":"0x1"}',
        b'{"jsonrpc":"2.0","id":7,"result":"0x1',  # cut short
        b'{"jsonrpc":"2.0","id":7,"result":"}',
        b'{"jsonrpc":"2.0","id":7,"result":"0x\x01"}',  # a raw control character
    ],
)
def test_parse_response_refuses_what_json_refuses(body: bytes) -> None:
    with pytest.raises(RpcMalformedResponseError):
        parse_response("m", "e", 200, body, expected_id=7)


def test_parse_response_error_and_http_status_still_win() -> None:
    error = b'{"jsonrpc":"2.0","id":7,"error":{"code":3,"message":"x"}}'
    with pytest.raises(RpcResponseError):
        parse_response("m", "e", 200, error, expected_id=7)
    with pytest.raises(RpcTransportError, match="HTTP 500"):
        parse_response("m", "e", 500, b'{"jsonrpc":"2.0","id":7,"result":"0x1"}', expected_id=7)


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":7,"result":"0x' + b"ab" * 3000 + b'"}',
        b'{"jsonrpc":"2.0","id":7,"result":"0x"}\n',
        b'{"id":7,"jsonrpc":"2.0","result":"0x01ff"}',  # another order: the full parse
        b'{"jsonrpc":"2.0","id":7,"result":"0x01","extra":1}',
    ],
)
def test_parse_data_response_is_the_result_as_bytes(body: bytes) -> None:
    result = json.loads(body)["result"]
    assert parse_data_response("m", "e", 200, body, expected_id=7) == bytes.fromhex(result[2:])


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":7,"result":"0xabc"}',  # odd length
        b'{"jsonrpc":"2.0","id":7,"result":"0xab cd"}',  # whitespace: fromhex would take it
        b'{"jsonrpc":"2.0","id":7,"result":"0xzz"}',
        b'{"jsonrpc":"2.0","id":7,"result":"abcd"}',  # no 0x
        b'{"jsonrpc":"2.0","id":7,"result":1}',
        b'{"jsonrpc":"2.0","id":7,"result":"0x' + b"ab" * 3000 + b'\n"}',
        b'{"jsonrpc":"2.0","id":7,"result":"0x12',  # cut short
        b'{"jsonrpc":"2.0","id":8,"result":"0x12"}',  # another id
    ],
)
def test_parse_data_response_refuses_what_is_not_hex_data(body: bytes) -> None:
    with pytest.raises(RpcMalformedResponseError, match=r"^m at e: "):
        parse_data_response("m", "e", 200, body, expected_id=7)


def test_parse_data_response_errors_win() -> None:
    error = b'{"jsonrpc":"2.0","id":7,"error":{"code":3,"message":"x","data":"0x01"}}'
    with pytest.raises(RpcResponseError):
        parse_data_response("m", "e", 200, error, expected_id=7)
    with pytest.raises(RpcTransportError, match="HTTP 502"):
        parse_data_response("m", "e", 502, b'{"jsonrpc":"2.0","id":7,"result":"0x"}', expected_id=7)


class _PlainRpc:
    """A JsonRpc without request_data."""

    def __init__(self, result: object) -> None:
        self.result = result

    async def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        return self.result


def test_request_data_decodes_for_a_client_without_it() -> None:
    assert asyncio.run(request_data(_PlainRpc("0x01ab"), "eth_call")) == b"\x01\xab"
    with pytest.raises(RpcMalformedResponseError, match="eth_call: result is not hex data"):
        asyncio.run(request_data(_PlainRpc("0x01 ab"), "eth_call"))
    with pytest.raises(RpcMalformedResponseError, match="eth_call: result is not hex data"):
        asyncio.run(request_data(_PlainRpc(None), "eth_call"))
