"""Chain helpers for tests on Anvil, local or forked: accounts, ETH and ERC-20 balances, price
feeds, mining and time.

Every helper takes the node first: an `Anvil`, a URL, or anything with a `url` (a `DevChain`,
a `Devnet`). `Chain` bundles them for one node; the plugin's `chain` fixture is one for the
session's node. Errors name the call and the contract.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal, Protocol

from eth_abi.abi import decode, encode
from eth_hash.auto import keccak
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address

from keeper.testing.anvil import AnvilError, rpc_request
from keeper.testing.fixed_feed import (
    ANSWER_SLOT,
    DECIMALS_SLOT,
    DESCRIPTION_SLOT,
    ROUND_SLOT,
    RUNTIME,
    UPDATED_AT_SLOT,
)

UINT256: Final = 2**256
FIXED_FEED_CODE: Final = "0x" + RUNTIME
# Added to (or taken from) a storage word to see whether balanceOf follows it exactly.
PROBE_DELTA: Final = 0x5EED_CAFE


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


Node = str | HasUrl


class ChainHelperError(RuntimeError):
    """A helper could not do what it was asked; the message names the call and the contract."""


class TokenSlotError(ChainHelperError):
    """No storage slot of the token holds the account's balance."""


# -- transport -----------------------------------------------------------------------------------


def node_url(node: Node) -> str:
    """The JSON-RPC URL of `node`."""
    return node if isinstance(node, str) else node.url


def rpc(node: Node, method: str, *params: Any) -> Any:
    """One JSON-RPC call to `node`; AnvilError naming the method on failure."""
    return rpc_request(node_url(node), method, params)


def _word(value: int) -> str:
    return "0x" + (value % UINT256).to_bytes(32, "big").hex()


def _calldata(signature: str, types: Sequence[str] = (), args: Sequence[Any] = ()) -> bytes:
    return function_signature_to_4byte_selector(signature) + encode(list(types), list(args))


def eth_call(
    node: Node,
    to: str,
    data: bytes,
    *,
    sender: str | None = None,
    block: str | int = "latest",
    state: dict[str, Any] | None = None,
) -> bytes:
    """eth_call of `data` on `to`, optionally with a state override; the returned bytes."""
    tx: dict[str, Any] = {"to": to_checksum_address(to), "data": "0x" + data.hex()}
    if sender is not None:
        tx["from"] = to_checksum_address(sender)
    tag = hex(block) if isinstance(block, int) else block
    params: list[Any] = [tx, tag] + ([state] if state else [])
    result = rpc(node, "eth_call", *params)
    return bytes.fromhex(str(result).removeprefix("0x"))


def _view(node: Node, to: str, signature: str, out: Sequence[str], *args_types: Any) -> Any:
    """Calls the view `signature` (args as (type, value) pairs) and decodes `out`."""
    types = [t for t, _ in args_types]
    values = [v for _, v in args_types]
    raw = eth_call(node, to, _calldata(signature, types, values))
    try:
        decoded = decode(list(out), raw)
    except Exception as exc:
        raise ChainHelperError(f"{signature} on {to}: undecodable answer 0x{raw.hex()}") from exc
    return decoded[0] if len(out) == 1 else decoded


# -- chain state ---------------------------------------------------------------------------------


def block_number(node: Node) -> int:
    return int(rpc(node, "eth_blockNumber"), 16)


def latest_timestamp(node: Node) -> int:
    """The timestamp of the latest block."""
    return int(rpc(node, "eth_getBlockByNumber", "latest", False)["timestamp"], 16)


def mine(node: Node, blocks: int = 1, *, interval_s: int | None = None) -> int:
    """Mines `blocks` blocks (`interval_s` seconds apart when given); returns the new head."""
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    if interval_s is None:
        rpc(node, "anvil_mine", hex(blocks))
    else:
        rpc(node, "anvil_mine", hex(blocks), hex(interval_s))
    return block_number(node)


def advance_time(node: Node, seconds: int, *, mine_block: bool = True) -> int:
    """Moves the clock `seconds` forward; mines a block at the new time unless told not to.

    Returns the latest block's timestamp afterwards."""
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    rpc(node, "evm_increaseTime", hex(seconds))
    if mine_block:
        rpc(node, "evm_mine")
    return latest_timestamp(node)


def set_next_block_timestamp(node: Node, timestamp: int) -> None:
    rpc(node, "evm_setNextBlockTimestamp", hex(timestamp))


def automine_enabled(node: Node) -> bool:
    return bool(rpc(node, "anvil_getAutomine"))


def set_automine(node: Node, enabled: bool) -> None:
    """Automine on: every transaction is mined at once in its own block (Anvil's default)."""
    rpc(node, "evm_setAutomine", enabled)


def set_interval_mining(node: Node, seconds: int) -> None:
    """A block every `seconds` seconds (transactions wait for it); 0 stops interval mining.

    Turn automine back on with `set_automine(node, True)`."""
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    rpc(node, "evm_setIntervalMining", seconds)


def interval_mining(node: Node) -> int | None:
    """The interval-mining period in seconds, or None when blocks are not made on a timer."""
    seconds = rpc(node, "anvil_getIntervalMining")
    return None if not seconds else int(seconds)


@contextlib.contextmanager
def manual_mining(node: Node) -> Iterator[None]:
    """Automine off inside the block (mine with `mine`); turned back on afterwards."""
    set_automine(node, False)
    try:
        yield
    finally:
        set_automine(node, True)


def snapshot(node: Node) -> str:
    return str(rpc(node, "evm_snapshot"))


def revert(node: Node, snapshot_id: str) -> None:
    if not rpc(node, "evm_revert", snapshot_id):
        raise ChainHelperError(f"evm_revert({snapshot_id}) failed: the chain was not restored")


def get_storage(node: Node, address: str, slot: int | str) -> int:
    key = _word(slot) if isinstance(slot, int) else slot
    return int(rpc(node, "eth_getStorageAt", to_checksum_address(address), key, "latest"), 16)


def set_storage(node: Node, address: str, slot: int | str, value: int) -> None:
    key = _word(slot) if isinstance(slot, int) else slot
    rpc(node, "anvil_setStorageAt", to_checksum_address(address), key, _word(value))


def get_code(node: Node, address: str) -> str:
    return str(rpc(node, "eth_getCode", to_checksum_address(address), "latest"))


def set_code(node: Node, address: str, code: str) -> None:
    rpc(node, "anvil_setCode", to_checksum_address(address), code)


# -- accounts ------------------------------------------------------------------------------------

# (url, address) pairs impersonated through `impersonate`; `send_as` leaves those impersonated.
_impersonated: set[tuple[str, str]] = set()


def impersonate(node: Node, address: str) -> str:
    """Lets `eth_sendTransaction` send from `address` without its key; returns it checksummed."""
    who = to_checksum_address(address)
    rpc(node, "anvil_impersonateAccount", who)
    _impersonated.add((node_url(node), who))
    return who


def stop_impersonating(node: Node, address: str) -> None:
    who = to_checksum_address(address)
    rpc(node, "anvil_stopImpersonatingAccount", who)
    _impersonated.discard((node_url(node), who))


@contextlib.contextmanager
def impersonating(node: Node, address: str) -> Iterator[str]:
    """Impersonates `address` inside the block; yields it checksummed."""
    who = impersonate(node, address)
    try:
        yield who
    finally:
        stop_impersonating(node, who)


def eth_balance(node: Node, address: str) -> int:
    return int(rpc(node, "eth_getBalance", to_checksum_address(address), "latest"), 16)


def set_balance(node: Node, address: str, wei: int) -> None:
    """Sets the ETH balance of `address` to `wei`."""
    if wei < 0:
        raise ValueError(f"wei must be >= 0, got {wei}")
    rpc(node, "anvil_setBalance", to_checksum_address(address), hex(wei))


def send_as(
    node: Node,
    sender: str,
    to: str,
    data: bytes = b"",
    *,
    value: int = 0,
    gas: int | None = None,
    what: str = "transaction",
) -> str:
    """Sends a transaction from `sender` by impersonation; returns its hash.

    It is simulated first (ChainHelperError with the revert when it would fail); the gas limit
    is `gas`, or the estimate with headroom. With automine on, the receipt is checked
    (ChainHelperError when it reverted); with automine off it waits for a block. `sender` is
    impersonated for the call only, unless it already was.
    """
    who = to_checksum_address(sender)
    tx: dict[str, Any] = {
        "from": who,
        "to": to_checksum_address(to),
        "data": "0x" + data.hex(),
        "value": hex(value),
    }
    try:
        rpc(node, "eth_call", tx, "latest")
        # headroom over the estimate: state may change before inclusion
        tx["gas"] = hex(gas or int(rpc(node, "eth_estimateGas", tx), 16) * 3 // 2 + 50_000)
    except AnvilError as exc:
        raise ChainHelperError(f"{what} from {who} to {tx['to']} would revert: {exc}") from None
    already = (node_url(node), who) in _impersonated
    if not already:
        rpc(node, "anvil_impersonateAccount", who)
    try:
        tx_hash = str(rpc(node, "eth_sendTransaction", tx))
    finally:
        if not already:
            rpc(node, "anvil_stopImpersonatingAccount", who)
    if automine_enabled(node):
        receipt = wait_for_receipt(node, tx_hash, what=f"{what} from {who}")
        if int(receipt["status"], 16) != 1:
            raise ChainHelperError(
                f"{what} from {who} ({tx_hash}) reverted in block {int(receipt['blockNumber'], 16)}"
            )
    return tx_hash


def wait_for_receipt(
    node: Node, tx_hash: str, *, timeout: float = 10.0, what: str = "transaction"
) -> dict[str, Any]:
    """The receipt of `tx_hash`, waiting for it: Anvil's automine can answer
    eth_sendTransaction a moment before the block with the receipt is there."""
    deadline = time.monotonic() + timeout
    receipt = rpc(node, "eth_getTransactionReceipt", tx_hash)
    while receipt is None and time.monotonic() < deadline:
        time.sleep(0.02)
        receipt = rpc(node, "eth_getTransactionReceipt", tx_hash)
    if receipt is None:
        raise ChainHelperError(f"{what} ({tx_hash}) was not mined within {timeout:g}s")
    found: dict[str, Any] = receipt
    return found


# -- ERC-20 balances -----------------------------------------------------------------------------

SlotLayout = Literal["mapping", "vyper", "traced"]


@dataclass(frozen=True, slots=True)
class BalanceSlot:
    """Where `token` keeps `account`'s balance.

    `layout` is "mapping" (keccak(account . slot), Solidity's mapping), "vyper"
    (keccak(slot . account)) or "traced" (a key balanceOf read, such as a namespaced or
    otherwise computed one); `mapping_slot` is the mapping's slot for the first two.
    """

    token: str
    account: str
    key: str
    layout: SlotLayout
    mapping_slot: int | None


def token_balance(node: Node, token: str, account: str) -> int:
    """balanceOf(account) on `token`."""
    raw = eth_call(
        node, token, _calldata("balanceOf(address)", ["address"], [to_checksum_address(account)])
    )
    if len(raw) < 32:
        raise ChainHelperError(f"balanceOf on {token}: not an ERC-20 (answer 0x{raw.hex()})")
    return int.from_bytes(raw[:32], "big")


def _token_label(node: Node, token: str) -> str:
    try:
        symbol = _view(node, token, "symbol()", ["string"])
    except (AnvilError, ChainHelperError):
        return to_checksum_address(token)
    return f"{symbol} ({to_checksum_address(token)})"


def _mapping_keys(account: str, max_slot: int) -> dict[str, tuple[SlotLayout, int]]:
    keys: dict[str, tuple[SlotLayout, int]] = {}
    for slot in range(max_slot + 1):
        solidity = "0x" + keccak(encode(["address", "uint256"], [account, slot])).hex()
        vyper = "0x" + keccak(encode(["uint256", "address"], [slot, account])).hex()
        keys.setdefault(solidity, ("mapping", slot))
        keys.setdefault(vyper, ("vyper", slot))
    return keys


def _traced_keys(node: Node, token: str, account: str) -> list[str]:
    """The storage keys of `token` that balanceOf(account) reads (prestateTracer), if any."""
    tx = {
        "to": token,
        "data": "0x" + _calldata("balanceOf(address)", ["address"], [account]).hex(),
    }
    try:
        trace = rpc(node, "debug_traceCall", tx, "latest", {"tracer": "prestateTracer"})
    except AnvilError:
        return []
    if not isinstance(trace, dict):
        return []
    for address, state in trace.items():
        if address.lower() == token.lower() and isinstance(state, dict):
            return [str(k) for k in (state.get("storage") or {})]
    return []


def _follows(node: Node, token: str, account: str, key: str, balance: int) -> bool:
    """Whether writing `key` moves balanceOf(account) by exactly the delta written."""
    raw = get_storage(node, token, key)
    if raw + PROBE_DELTA < UINT256:
        probe, expected = raw + PROBE_DELTA, balance + PROBE_DELTA
    else:
        probe, expected = raw - PROBE_DELTA, balance - PROBE_DELTA
    data = _calldata("balanceOf(address)", ["address"], [account])
    try:
        got = eth_call(node, token, data, state={token: {"stateDiff": {key: _word(probe)}}})
    except AnvilError:
        return False
    return len(got) >= 32 and int.from_bytes(got[:32], "big") == expected


def find_balance_slot(
    node: Node, token: str, account: str, *, max_slot: int = 64, trace: bool = True
) -> BalanceSlot:
    """Finds the storage word holding `account`'s balance of `token`, without changing state.

    Tries the keys balanceOf reads (when the node traces calls and `trace` is on), then
    Solidity mapping keys keccak(account . slot) and Vyper keys keccak(slot . account) for
    slots 0..max_slot. A key counts when overriding it (eth_call state override) changes
    balanceOf by exactly the amount added to the word, so balances packed with other bits in
    the same word (USDC's blacklist flag) are found too. TokenSlotError when none does.
    """
    token = to_checksum_address(token)
    account = to_checksum_address(account)
    balance = token_balance(node, token, account)
    computed = _mapping_keys(account, max_slot)
    tried: set[str] = set()
    traced = _traced_keys(node, token, account) if trace else []
    for key in [*traced, *computed]:
        if key in tried:
            continue
        tried.add(key)
        if _follows(node, token, account, key, balance):
            if key in computed:
                layout, slot = computed[key]
                return BalanceSlot(token, account, key, layout, slot)
            return BalanceSlot(token, account, key, "traced", None)
    how = "the keys balanceOf reads, " if traced else ""
    raise TokenSlotError(
        f"no storage slot of token {_token_label(node, token)} holds the balance of {account}: "
        f"tried {how}Solidity and Vyper mapping slots 0..{max_slot}; balanceOf may be computed "
        "(rebasing or shares); give the account tokens by a transfer from a holder instead "
        "(impersonate it with send_as)"
    )


def set_token_balance(node: Node, token: str, account: str, amount: int) -> BalanceSlot:
    """Sets `account`'s balance of `token` to `amount` (raw units) by writing its storage.

    Other bits packed into the same word are kept. totalSupply is left as it is. Returns the
    slot written; TokenSlotError when none is found or the write does not read back.
    """
    if amount < 0:
        raise ValueError(f"amount must be >= 0, got {amount}")
    found = find_balance_slot(node, token, account)
    raw = get_storage(node, found.token, found.key)
    before = token_balance(node, found.token, found.account)
    new = raw - before + amount
    if not 0 <= new < UINT256:
        raise TokenSlotError(
            f"{amount} does not fit the balance word of {_token_label(node, token)}"
        )
    set_storage(node, found.token, found.key, new)
    after = token_balance(node, found.token, found.account)
    if after != amount:
        set_storage(node, found.token, found.key, raw)
        raise TokenSlotError(
            f"writing the balance of {found.account} on {_token_label(node, token)} read back "
            f"{after}, not {amount} (the amount overflows the bits the token keeps it in?)"
        )
    return found


# -- price feeds ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedRound:
    """latestRoundData of a Chainlink-style feed."""

    round_id: int
    answer: int
    started_at: int
    updated_at: int
    answered_in_round: int


def feed_round(node: Node, feed: str) -> FeedRound:
    values = _view(
        node, feed, "latestRoundData()", ["uint80", "int256", "uint256", "uint256", "uint80"]
    )
    return FeedRound(*(int(v) for v in values))


def feed_decimals(node: Node, feed: str) -> int:
    return int(_view(node, feed, "decimals()", ["uint8"]))


def _feed_oracle(node: Node, feed: str, answer: int) -> str | None:
    """The oracle account when `feed` takes `setAnswer(int256)` from an `oracle()` account."""
    try:
        oracle = str(_view(node, feed, "oracle()", ["address"]))
        eth_call(node, feed, _calldata("setAnswer(int256)", ["int256"], [answer]), sender=oracle)
    except (AnvilError, ChainHelperError):
        return None
    return to_checksum_address(oracle)


def _write_string(node: Node, address: str, slot: int, text: str) -> None:
    data = text.encode()
    if len(data) < 32:
        set_storage(
            node, address, slot, int.from_bytes(data.ljust(31, b"\0"), "big") << 8 | len(data) * 2
        )
        return
    set_storage(node, address, slot, len(data) * 2 + 1)
    base = int.from_bytes(keccak(slot.to_bytes(32, "big")), "big")
    for i in range(0, len(data), 32):
        word = data[i : i + 32].ljust(32, b"\0")
        set_storage(node, address, (base + i // 32) % UINT256, int.from_bytes(word, "big"))


def replace_feed(
    node: Node,
    feed: str,
    answer: int,
    *,
    updated_at: int | None = None,
    decimals: int | None = None,
    description: str | None = None,
) -> FeedRound:
    """Replaces `feed`'s code (anvil_setCode) with a feed answering `answer`; returns its round.

    The feed keeps its decimals, description and round numbering (the next round), unless
    given; `updated_at` defaults to the latest block's timestamp, so the answer is fresh.
    """
    feed = to_checksum_address(feed)
    fixed = get_code(node, feed).lower() == FIXED_FEED_CODE.lower()
    previous_round = 0
    if decimals is None:
        try:
            decimals = feed_decimals(node, feed)
        except (AnvilError, ChainHelperError):
            decimals = 8
    if description is None and not fixed:
        try:
            description = str(_view(node, feed, "description()", ["string"]))
        except (AnvilError, ChainHelperError):
            description = ""
    try:
        previous_round = feed_round(node, feed).round_id
    except (AnvilError, ChainHelperError):
        previous_round = 0
    if not 0 <= decimals <= 77:
        raise ValueError(f"decimals must be 0..77, got {decimals}")
    if not fixed:
        set_code(node, feed, FIXED_FEED_CODE)
    round_id = (previous_round + 1) % 2**80
    set_storage(node, feed, ANSWER_SLOT, answer)
    set_storage(
        node, feed, UPDATED_AT_SLOT, latest_timestamp(node) if updated_at is None else updated_at
    )
    set_storage(node, feed, ROUND_SLOT, round_id)
    set_storage(node, feed, DECIMALS_SLOT, decimals)
    if description is not None:
        _write_string(node, feed, DESCRIPTION_SLOT, description)
    return feed_round(node, feed)


FeedMethod = Literal["auto", "oracle", "replace"]


def set_feed_answer(
    node: Node,
    feed: str,
    answer: int,
    *,
    method: FeedMethod = "auto",
    updated_at: int | None = None,
) -> Literal["oracle", "replace"]:
    """Makes `feed`'s latestRoundData answer `answer` (raw, in the feed's decimals).

    "oracle": sends `setAnswer(answer)` as the feed's `oracle()` account (our PriceFeed; the
    devnet's feeds), by impersonation, so a round is pushed as in real life. "replace":
    `replace_feed`. "auto" takes the oracle's way when the feed has one and `updated_at` is not
    given, else replaces. Returns the way taken.
    """
    feed = to_checksum_address(feed)
    if method not in ("auto", "oracle", "replace"):
        raise ValueError(f"method must be auto, oracle or replace, got {method!r}")
    oracle = None
    if method != "replace" and updated_at is None:
        oracle = _feed_oracle(node, feed, answer)
    if method == "oracle" and oracle is None:
        raise ChainHelperError(
            f"feed {feed} has no oracle() account that may call setAnswer({answer})"
            + ("" if updated_at is None else " (and updated_at needs method='replace')")
        )
    if oracle is not None:
        if eth_balance(node, oracle) < 10**17:
            set_balance(node, oracle, 10**18)
        data = _calldata("setAnswer(int256)", ["int256"], [answer])
        send_as(node, oracle, feed, data, what=f"setAnswer({answer}) on feed {feed}")
        return "oracle"
    replace_feed(node, feed, answer, updated_at=updated_at)
    return "replace"


def set_feed_price(
    node: Node,
    feed: str,
    price: Decimal | str | int,
    *,
    method: FeedMethod = "auto",
    updated_at: int | None = None,
) -> Literal["oracle", "replace"]:
    """`set_feed_answer` with a price in human units, scaled by the feed's decimals."""
    decimals = feed_decimals(node, feed)
    raw = Decimal(price) * (Decimal(10) ** decimals)
    if raw != raw.to_integral_value():
        raise ValueError(f"price {price} has more than the feed's {decimals} decimals")
    return set_feed_answer(node, feed, int(raw), method=method, updated_at=updated_at)


# -- one node ------------------------------------------------------------------------------------


class Chain:
    """The helpers above bound to one node, plus `restore()` to undo what a test changed outside
    the chain's state (impersonations, mining mode). The plugin's `chain` fixture is one."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._impersonated: set[str] = set()
        self._automine = automine_enabled(node)
        self._interval = interval_mining(node)

    @property
    def url(self) -> str:
        return node_url(self.node)

    def rpc(self, method: str, *params: Any) -> Any:
        return rpc(self.node, method, *params)

    # accounts
    def impersonate(self, address: str) -> str:
        who = impersonate(self.node, address)
        self._impersonated.add(who)
        return who

    def stop_impersonating(self, address: str) -> None:
        stop_impersonating(self.node, address)
        self._impersonated.discard(to_checksum_address(address))

    @contextlib.contextmanager
    def impersonating(self, address: str) -> Iterator[str]:
        who = self.impersonate(address)
        try:
            yield who
        finally:
            self.stop_impersonating(who)

    def send_as(self, sender: str, to: str, data: bytes = b"", **kw: Any) -> str:
        return send_as(self.node, sender, to, data, **kw)

    def wait_for_receipt(self, tx_hash: str, **kw: Any) -> dict[str, Any]:
        return wait_for_receipt(self.node, tx_hash, **kw)

    def set_balance(self, address: str, wei: int) -> None:
        set_balance(self.node, address, wei)

    def eth_balance(self, address: str) -> int:
        return eth_balance(self.node, address)

    # tokens
    def token_balance(self, token: str, account: str) -> int:
        return token_balance(self.node, token, account)

    def find_balance_slot(self, token: str, account: str, **kw: Any) -> BalanceSlot:
        return find_balance_slot(self.node, token, account, **kw)

    def set_token_balance(self, token: str, account: str, amount: int) -> BalanceSlot:
        return set_token_balance(self.node, token, account, amount)

    # feeds
    def feed_round(self, feed: str) -> FeedRound:
        return feed_round(self.node, feed)

    def set_feed_answer(self, feed: str, answer: int, **kw: Any) -> str:
        return set_feed_answer(self.node, feed, answer, **kw)

    def set_feed_price(self, feed: str, price: Decimal | str | int, **kw: Any) -> str:
        return set_feed_price(self.node, feed, price, **kw)

    def replace_feed(self, feed: str, answer: int, **kw: Any) -> FeedRound:
        return replace_feed(self.node, feed, answer, **kw)

    # blocks and time
    def block_number(self) -> int:
        return block_number(self.node)

    def latest_timestamp(self) -> int:
        return latest_timestamp(self.node)

    def mine(self, blocks: int = 1, *, interval_s: int | None = None) -> int:
        return mine(self.node, blocks, interval_s=interval_s)

    def advance_time(self, seconds: int, *, mine_block: bool = True) -> int:
        return advance_time(self.node, seconds, mine_block=mine_block)

    def set_next_block_timestamp(self, timestamp: int) -> None:
        set_next_block_timestamp(self.node, timestamp)

    def automine_enabled(self) -> bool:
        return automine_enabled(self.node)

    def set_automine(self, enabled: bool) -> None:
        set_automine(self.node, enabled)

    def set_interval_mining(self, seconds: int) -> None:
        set_interval_mining(self.node, seconds)

    def interval_mining(self) -> int | None:
        return interval_mining(self.node)

    def manual_mining(self) -> contextlib.AbstractContextManager[None]:
        return manual_mining(self.node)

    def snapshot(self) -> str:
        return snapshot(self.node)

    def revert(self, snapshot_id: str) -> None:
        revert(self.node, snapshot_id)

    def get_storage(self, address: str, slot: int | str) -> int:
        return get_storage(self.node, address, slot)

    def set_storage(self, address: str, slot: int | str, value: int) -> None:
        set_storage(self.node, address, slot, value)

    def get_code(self, address: str) -> str:
        return get_code(self.node, address)

    def set_code(self, address: str, code: str) -> None:
        set_code(self.node, address, code)

    def restore(self) -> None:
        """Stops the impersonations started here and puts the mining mode back as it was."""
        for who in sorted(self._impersonated):
            stop_impersonating(self.node, who)
        self._impersonated.clear()
        if self._interval:
            set_interval_mining(self.node, self._interval)
        else:
            set_interval_mining(self.node, 0)  # leaves automine off: set it next
            set_automine(self.node, self._automine)
