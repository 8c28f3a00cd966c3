"""Decode revert data: Error(string), Panic(uint256) and custom errors from the shipped ABIs.

`decode_revert(data)` turns the bytes a reverted call returned into a `RevertReason` with the
error's name, its arguments and a one-line `message`. Custom errors are looked up by selector
in every ABI under abis plus any the caller adds (venue adapters pass their own).
`revert_data(exc)` digs the revert bytes out of the error a node sent back for an eth_call or
eth_estimateGas (nodes put it in `data`, in `data.data`, or only in the message).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_hash.auto import keccak

from keeper.abis import abi_type
from keeper.chain.jsonrpc import RpcResponseError

ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)

PANIC_CODES: Mapping[int, str] = {
    0x00: "generic compiler panic",
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "invalid storage byte array encoding",
    0x31: "pop on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to a zero-initialised function",
}


@dataclass(frozen=True, slots=True)
class CustomError:
    """One error of an ABI: name, argument types and names, and its 4-byte selector."""

    name: str
    types: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.types)})"

    @property
    def selector(self) -> bytes:
        return keccak(self.signature.encode())[:4]


@dataclass(frozen=True, slots=True)
class RevertReason:
    """A decoded revert. `name` is "Error", "Panic", a custom error's name, or "" when unknown.

    `args` are (name, value) pairs with values as strings (ints in decimal, bytes in hex), so
    the reason goes to the journal and to alerts unchanged.
    """

    data: bytes
    name: str
    args: tuple[tuple[str, str], ...] = ()

    @property
    def selector(self) -> str:
        return "0x" + self.data[:4].hex()

    @property
    def message(self) -> str:
        if not self.data:
            return "reverted without data"
        if not self.name:
            return f"unknown error {self.selector} (data 0x{self.data.hex()[:200]})"
        if self.name == "Error" and self.args:
            return f"Error: {self.args[0][1]}"
        if self.name == "Panic" and self.args:
            code = int(self.args[0][1])
            return f"Panic(0x{code:02x}): {PANIC_CODES.get(code, 'unknown panic code')}"
        inner = ", ".join(f"{k}={v}" if k else v for k, v in self.args)
        return f"{self.name}({inner})"

    def __str__(self) -> str:
        return self.message


def errors_of(entries: Iterable[Mapping[str, Any]]) -> list[CustomError]:
    """The custom errors declared in one ABI."""
    found = []
    for entry in entries:
        if entry.get("type") != "error":
            continue
        inputs = entry.get("inputs", [])
        found.append(
            CustomError(
                name=str(entry["name"]),
                types=tuple(abi_type(i) for i in inputs),
                names=tuple(str(i.get("name", "")) for i in inputs),
            )
        )
    return found


@cache
def shipped_errors() -> Mapping[bytes, CustomError]:
    """Custom errors of every ABI shipped in abis, by selector."""
    table: dict[bytes, CustomError] = {}
    for path in resources.files("keeper.abis").iterdir():
        if not path.name.endswith(".json"):
            continue
        data = json.loads(path.read_text())
        entries = data.get("abi", []) if isinstance(data, dict) else data
        for err in errors_of(entries):
            table.setdefault(err.selector, err)
    return table


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    return str(value)


def decode_revert(
    data: bytes | str | None, extra_abis: Sequence[Iterable[Mapping[str, Any]]] = ()
) -> RevertReason:
    """Decode revert data; never raises (undecodable data gives name "")."""
    if data is None:
        raw = b""
    elif isinstance(data, str):
        try:
            raw = bytes.fromhex(data.removeprefix("0x"))
        except ValueError:
            raw = b""
    else:
        raw = bytes(data)
    if len(raw) < 4:
        return RevertReason(raw, "")
    selector, body = raw[:4], raw[4:]
    try:
        if selector == ERROR_SELECTOR:
            (text,) = abi_decode(["string"], body)
            return RevertReason(raw, "Error", (("message", str(text)),))
        if selector == PANIC_SELECTOR:
            (code,) = abi_decode(["uint256"], body)
            return RevertReason(raw, "Panic", (("code", str(code)),))
        table = dict(shipped_errors())
        for entries in extra_abis:
            for err in errors_of(entries):
                table[err.selector] = err
        found = table.get(selector)
        if found is None:
            return RevertReason(raw, "")
        values = abi_decode(list(found.types), body)
        return RevertReason(
            raw, found.name, tuple((n, _show(v)) for n, v in zip(found.names, values, strict=True))
        )
    except (DecodingError, ValueError, OverflowError):
        return RevertReason(raw, "")


_HEX_IN_MESSAGE = re.compile(r"0x[0-9a-fA-F]{8,}")


def revert_data(exc: RpcResponseError) -> bytes | None:
    """The revert bytes a node returned with an error, or None when it sent none."""
    candidates: list[Any] = [exc.data]
    if isinstance(exc.data, Mapping):
        candidates = [exc.data.get("data"), exc.data.get("result")]
    for value in candidates:
        if isinstance(value, str) and value.startswith("0x"):
            try:
                return bytes.fromhex(value[2:])
            except ValueError:
                continue
    match = _HEX_IN_MESSAGE.search(exc.rpc_message)
    if match is not None and len(match.group()) % 2 == 0:
        return bytes.fromhex(match.group()[2:])
    return None


def is_revert(exc: RpcResponseError) -> bool:
    """True when the node's error says the call reverted (rather than being refused)."""
    text = exc.rpc_message.lower()
    return exc.code == 3 or "revert" in text
