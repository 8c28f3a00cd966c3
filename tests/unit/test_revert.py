"""Revert decoding: Error(string), Panic(uint256), custom errors from the shipped ABIs."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode
from eth_hash.auto import keccak

from keeper.chain.jsonrpc import RpcResponseError
from keeper.chain.revert import (
    ERROR_SELECTOR,
    PANIC_SELECTOR,
    decode_revert,
    errors_of,
    is_revert,
    revert_data,
    shipped_errors,
)


def selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


def test_error_string() -> None:
    reason = decode_revert(ERROR_SELECTOR + encode(["string"], ["too late"]))
    assert reason.name == "Error"
    assert reason.message == "Error: too late"
    assert str(reason) == reason.message


@pytest.mark.parametrize(
    ("code", "text"), [(0x11, "arithmetic overflow"), (0x12, "division"), (0x99, "unknown")]
)
def test_panic(code: int, text: str) -> None:
    reason = decode_revert("0x" + (PANIC_SELECTOR + encode(["uint256"], [code])).hex())
    assert reason.name == "Panic"
    assert text in reason.message
    assert reason.message.startswith(f"Panic(0x{code:02x})")


def test_custom_error_from_shipped_abis() -> None:
    data = selector("InsufficientAllowance(uint256,uint256)") + encode(
        ["uint256", "uint256"], [3, 5]
    )
    reason = decode_revert(data)
    assert reason.name == "InsufficientAllowance"
    assert reason.args == (("allowance", "3"), ("needed", "5"))
    assert reason.message == "InsufficientAllowance(allowance=3, needed=5)"
    assert reason.selector == "0x" + data[:4].hex()


def test_shipped_table_covers_the_exchange() -> None:
    names = {e.name for e in shipped_errors().values()}
    assert {"InsufficientAllowance", "InsufficientBalance", "ZeroAddress"} <= names
    assert len(names) > 5  # PerpExchange's errors too


def test_extra_abis_and_tuples() -> None:
    abi = [
        {
            "type": "error",
            "name": "Bad",
            "inputs": [
                {
                    "name": "p",
                    "type": "tuple",
                    "components": [
                        {"name": "a", "type": "address"},
                        {"name": "b", "type": "bytes"},
                    ],
                },
                {"name": "xs", "type": "uint8[]"},
            ],
        }
    ]
    [err] = errors_of(abi)
    assert err.signature == "Bad((address,bytes),uint8[])"
    data = err.selector + encode(
        ["(address,bytes)", "uint8[]"], [("0x" + "11" * 20, b"\x01"), [1, 2]]
    )
    assert decode_revert(data).name == ""  # unknown without the ABI
    reason = decode_revert(data, [abi])
    assert reason.message == "Bad(p=(0x" + "11" * 20 + ", 0x01), xs=(1, 2))"


@pytest.mark.parametrize("data", [None, b"", "0x", "0x1234", "zz", b"\xde\xad\xbe\xef\x00"])
def test_undecodable_never_raises(data: bytes | str | None) -> None:
    reason = decode_revert(data)
    assert reason.name == ""
    assert reason.message


def test_garbage_after_known_selector() -> None:
    reason = decode_revert(ERROR_SELECTOR + b"\x00" * 3)
    assert reason.name == ""
    assert "unknown error 0x08c379a0" in reason.message


def test_revert_data_from_node_errors() -> None:
    plain = RpcResponseError("eth_call", 3, "execution reverted", "0xdeadbeef")
    assert revert_data(plain) == bytes.fromhex("deadbeef")
    nested = RpcResponseError("eth_call", -32000, "reverted", {"data": "0xcafebabe"})
    assert revert_data(nested) == bytes.fromhex("cafebabe")
    in_text = RpcResponseError("eth_call", -32000, "execution reverted: 0x08c379a0abcd")
    assert revert_data(in_text) == bytes.fromhex("08c379a0abcd")
    assert revert_data(RpcResponseError("eth_call", -32000, "execution reverted")) is None
    assert is_revert(plain)
    assert is_revert(in_text)
    assert not is_revert(RpcResponseError("eth_call", -32000, "insufficient funds for gas"))
