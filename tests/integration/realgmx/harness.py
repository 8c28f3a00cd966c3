"""GMX v2's own contracts on a local Anvil, and the moves tests make on them.

The chain is an Anvil state (`<repo>/../shared/realgmx`, or $KEEPER_REALGMX_DIR) holding
gmx-synthetics as its own deploy scripts deploy it: the DataStore, Reader, ExchangeRouter,
OrderHandler, the GmOracleProvider with its test signer, mock reference feeds and the WETH/USD
[WETH-USDC] market with liquidity. `addresses.json` beside the state names every contract,
token, market and account.

- `locate_realgmx()` finds the directory (`RealGmxUnavailable` says why it cannot);
  `unpack_state()` gunzips the state; `RealGmxAnvil` runs Anvil on it with the flags it was
  made with; `running_realgmx()` does all three and yields the node and a `RealGmx`.
- `RealGmx` drives the chain as GMX's users and keepers do: a trader's orders go through
  ExchangeRouter.multicall(sendWnt, sendTokens, createOrder); the order keeper (account 0)
  executes them with prices signed by the oracle signer (GmOracleProvider reports, EIP-191
  signatures); the reference feeds (mock Chainlink, 8 decimals) are moved with `set_feed_prices`;
  the node's clock and mining with `sync_clock`, `advance_time` and `interval_mining`.

Prices are Decimal USD per whole token (`Decimal(5000)` for ETH), or a (min, max) pair. Every
transaction is signed locally with Anvil's public test keys and sent raw.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, Self

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address
from web3.types import RPCEndpoint, TxReceipt

from keeper.abis import abi_type
from keeper.chain.revert import RevertReason
from keeper.testing.anvil import Anvil, find_anvil
from keeper.testing.devnet import DevChain, dev_account
from keeper.units import CONTEXT
from keeper.venues.base import MinedTx, TxPlan
from keeper.venues.codec import ContractFn
from keeper.venues.gmx import (
    EVENT_LOG2_TOPIC,
    EVENT_ORDER_CANCELLED,
    EVENT_ORDER_EXECUTED,
    ZERO_ADDRESS,
    CreateOrder,
    GmxDeployment,
    GmxFn,
    RawPosition,
    decode_gmx_error,
    encode_create_order,
    event_strings,
    gmx_abi,
    order_key_of,
)
from keeper.venues.gmx_math import (
    FLOAT_PRECISION,
    GasParams,
    OrderType,
    data_key,
    name_key,
    position_key,
)
from tests.integration.gmx.deploy import mined
from tests.integration.gmx.keeper_run import venue_section

__all__ = [
    "ADDRESSES_FILE",
    "GAS_KEYS",
    "MISSING_REASON",
    "REALGMX_ENV",
    "STATE_FILE",
    "USD",
    "GmxCallError",
    "GmxMarketInfo",
    "LaggingEndpoint",
    "LiquidationView",
    "OrderCreated",
    "OrderFate",
    "OrderOutcome",
    "PendingOrder",
    "Quote",
    "RealGmx",
    "RealGmxAddresses",
    "RealGmxAnvil",
    "RealGmxUnavailable",
    "locate_realgmx",
    "oracle_value",
    "running_realgmx",
    "unpack_state",
]

REALGMX_ENV: Final = "KEEPER_REALGMX_DIR"
STATE_FILE: Final = "gmx-anvil-state.json.gz"
ADDRESSES_FILE: Final = "addresses.json"
MISSING_REASON: Final = (
    "../shared/realgmx not found: GMX's own contracts are not available in this clone"
)
REPO: Final = Path(__file__).resolve().parents[3]

USD: Final = FLOAT_PRECISION
CHAIN_ID: Final = 31337
FEED_DECIMALS: Final = 8
ORDER_GAS: Final = 8_000_000
EXECUTE_GAS: Final = 30_000_000
TX_GAS: Final = 1_000_000
MAX_PRICE_VALUE: Final = 2**32 - 1
SIGNER_INFO: Final = 1  # one signer, OracleStore index 0
ORACLE_SALT_TEXT: Final = "xget-oracle-v1"
KEEPER_INDEX: Final = 0
TRADER_INDEX: Final = 1
LP_INDEX: Final = 2
ORACLE_SIGNER_INDEX: Final = 10
EVENT_ORDER_FROZEN: Final = keccak(b"OrderFrozen")

GAS_KEYS: Final[Mapping[str, bytes]] = {
    # Keys.sol at the deployed commit: what GasUtils.estimateExecuteOrderGasLimit and
    # adjustGasLimitForEstimate read, by the GasParams field each one fills
    "base_amount": name_key("ESTIMATED_GAS_FEE_BASE_AMOUNT_V2_1"),
    "per_oracle_price": name_key("ESTIMATED_GAS_FEE_PER_ORACLE_PRICE"),
    "multiplier_factor": name_key("ESTIMATED_GAS_FEE_MULTIPLIER_FACTOR"),
    "increase_order_gas_limit": name_key("INCREASE_ORDER_GAS_LIMIT"),  # increaseOrderGasLimitKey()
    "decrease_order_gas_limit": name_key("DECREASE_ORDER_GAS_LIMIT"),  # decreaseOrderGasLimitKey()
    "single_swap_gas_limit": name_key("SINGLE_SWAP_GAS_LIMIT"),  # singleSwapGasLimitKey()
}
"""The DataStore keys of GMX's execution-fee estimate, as GMX's Keys.sol computes them."""

Quote = Decimal | tuple[Decimal, Decimal]
"""A price in USD per whole token: one value (min = max) or a (min, max) pair."""

_REPORT = "(address,uint256,uint256,uint256,uint256,uint256,bytes32,uint256[],uint256[],bytes[])"
_DIGEST_TYPES = (
    "bytes32",
    "uint256",
    "uint256",
    "uint256",
    "bytes32",
    "address",
    "bytes32",
    "uint256",
    "uint256",
    "uint256",
)
_EVENT_DATA = next(
    abi_type(i)
    for e in gmx_abi("EventEmitter")
    if e.get("name") == "EventLog2"
    for i in e["inputs"]
    if i["name"] == "eventData"
)

# GMX functions the keeper's ABI fragments leave out (a keeper never calls them).
_EXECUTE_ORDER = ContractFn(
    "OrderHandler", "executeOrder", ("bytes32", "(address[],address[],bytes[])"), ()
)
_SET_UINT = ContractFn("DataStore", "setUint", ("bytes32", "uint256"), ("uint256",))
_SET_ANSWER = ContractFn("MockPriceFeed", "setAnswer", ("int256",), ())
_LATEST_ANSWER = ContractFn("MockPriceFeed", "latestAnswer", (), ("int256",))
_MINT = ContractFn("MintableToken", "mint", ("address", "uint256"), ())
_GET_SIGNER = ContractFn("OracleStore", "getSigner", ("uint256",), ("address",))
_GET_UINT = GmxFn.of("DataStore", "getUint")
_GET_ADDRESS = GmxFn.of("DataStore", "getAddress")
_GET_BYTES32 = GmxFn.of("DataStore", "getBytes32")
_GET_MARKET = GmxFn.of("Reader", "getMarket")
_GET_POSITION = GmxFn.of("Reader", "getPosition")
_ACCOUNT_ORDERS = GmxFn.of("Reader", "getAccountOrders")
_IS_LIQUIDATABLE = GmxFn.of("Reader", "isPositionLiquidatable")
_MULTICALL = GmxFn.of("ExchangeRouter", "multicall")
_SEND_WNT = GmxFn.of("ExchangeRouter", "sendWnt")
_SEND_TOKENS = GmxFn.of("ExchangeRouter", "sendTokens")
_BALANCE_OF = GmxFn.of("ERC20", "balanceOf")
_ALLOWANCE = GmxFn.of("ERC20", "allowance")
_APPROVE = GmxFn.of("ERC20", "approve")
_DECIMALS = GmxFn.of("ERC20", "decimals")
_SYMBOL = GmxFn.of("ERC20", "symbol")


# --- where the state is, and a node on it ---------------------------------------------------


class RealGmxUnavailable(RuntimeError):  # noqa: N818 - it reads as the condition it names
    """The GMX state is not there; the message says where it was looked for."""


def locate_realgmx(repo: Path = REPO) -> Path:
    """The directory holding the GMX state and its addresses: $KEEPER_REALGMX_DIR when set,
    else `<repo>/../shared/realgmx`. RealGmxUnavailable when it lacks either file."""
    explicit = os.environ.get(REALGMX_ENV)
    where = Path(explicit) if explicit else repo.parent / "shared" / "realgmx"
    if all((where / name).is_file() for name in (STATE_FILE, ADDRESSES_FILE)):
        return where
    if explicit:
        raise RealGmxUnavailable(
            f"{REALGMX_ENV}={explicit} does not hold {STATE_FILE} and {ADDRESSES_FILE}: "
            "GMX's own contracts are not available"
        )
    raise RealGmxUnavailable(MISSING_REASON)


def unpack_state(source: Path, into: Path) -> Path:
    """Gunzips `source`/gmx-anvil-state.json.gz into the directory `into`; the JSON's path."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / STATE_FILE.removesuffix(".gz")
    with gzip.open(source / STATE_FILE, "rb") as packed, target.open("wb") as out:
        shutil.copyfileobj(packed, out, length=1 << 20)
    return target


class RealGmxAnvil(Anvil):
    """Anvil on the GMX state with the flags the state was made with (README): contract size
    limit 100000, 20 accounts, a 1e9 block gas limit, chain id 31337."""

    def __init__(
        self, state: Path, *, port: int | None = None, startup_timeout: float = 120.0
    ) -> None:
        super().__init__(chain_id=CHAIN_ID, port=port, startup_timeout=startup_timeout)
        self.state = state

    def command(self) -> list[str]:
        return [
            find_anvil(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--code-size-limit",
            "100000",
            "--accounts",
            "20",
            "--gas-limit",
            "1000000000",
            "--chain-id",
            str(self.chain_id),
            "--load-state",
            str(self.state),
        ]


# --- addresses ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GmxMarketInfo:
    """A GMX market: its market token (the market's id) and its index, long and short tokens."""

    market_token: str
    index_token: str
    long_token: str
    short_token: str

    @property
    def tokens(self) -> tuple[str, ...]:
        """The distinct tokens an execution needs prices for: index, long, short."""
        out: list[str] = []
        for t in (self.index_token, self.long_token, self.short_token):
            if t != ZERO_ADDRESS and t not in out:
                out.append(t)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class RealGmxAddresses:
    """addresses.json: contracts and tokens by name, markets by name and by market token, the
    default market (WETH/USD [WETH-USDC]), and the accounts by role."""

    chain_id: int
    contracts: Mapping[str, str]
    tokens: Mapping[str, str]
    markets: Mapping[str, GmxMarketInfo]
    default_market: str
    accounts: Mapping[str, str]

    @classmethod
    def load(cls, path: Path) -> Self:
        data = json.loads(path.read_text())

        def checksum(table: Mapping[str, str]) -> dict[str, str]:
            return {k: to_checksum_address(v) for k, v in table.items()}

        markets = {
            name: GmxMarketInfo(
                to_checksum_address(m["marketToken"]),
                to_checksum_address(m["indexToken"]),
                to_checksum_address(m["longToken"]),
                to_checksum_address(m["shortToken"]),
            )
            for name, m in data["markets"].items()
        }
        accounts = {
            role: to_checksum_address(entry["address"])
            for role, entry in data["accounts"].items()
            if isinstance(entry, dict) and "address" in entry
        }
        return cls(
            chain_id=int(data["chainId"]),
            contracts=checksum(data["contracts"]),
            tokens=checksum(data["tokens"]),
            markets=markets,
            default_market=to_checksum_address(data["market"]),
            accounts=accounts,
        )

    def contract(self, name: str) -> str:
        try:
            return self.contracts[name]
        except KeyError:
            raise KeyError(f"no GMX contract {name!r} in {ADDRESSES_FILE}") from None

    def token(self, symbol: str) -> str:
        try:
            return self.tokens[symbol]
        except KeyError:
            raise KeyError(f"no token {symbol!r}; tokens: {sorted(self.tokens)}") from None

    def market(self, name_or_token: str | None = None) -> GmxMarketInfo:
        """A market by name ("WETH/USD[WETH-USDC]") or market token; None: the default."""
        key = name_or_token or self.default_market
        found = self.markets.get(key)
        if found is None and key.startswith("0x") and len(key) == 42:
            found = self.markets.get(to_checksum_address(key))
        if found is None:
            raise KeyError(f"no GMX market {key!r} in {ADDRESSES_FILE}")
        return found


# --- results -----------------------------------------------------------------------------------


class GmxCallError(AssertionError):
    """A call or transaction to GMX reverted; `reason` is the decoded revert."""

    def __init__(self, what: str, reason: RevertReason) -> None:
        super().__init__(f"{what} reverted: {reason.message}")
        self.reason = reason


class OrderFate(StrEnum):
    """What the order keeper's executeOrder did with an order."""

    EXECUTED = "executed"
    CANCELLED = "cancelled"
    FROZEN = "frozen"


@dataclass(frozen=True, slots=True)
class OrderCreated:
    """An order a user's multicall created: its key and the mined transaction."""

    key: bytes
    receipt: TxReceipt
    mined: MinedTx


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    """executeOrder's effect on one order; `reason` and `error` explain a cancel or freeze."""

    key: bytes
    fate: OrderFate
    receipt: TxReceipt
    reason: str = ""
    error: RevertReason | None = None

    @property
    def executed(self) -> bool:
        return self.fate is OrderFate.EXECUTED


@dataclass(frozen=True, slots=True)
class PendingOrder:
    """An order in the DataStore (Reader.getAccountOrders), the fields tests look at."""

    key: bytes
    account: str
    market: str
    collateral_token: str
    order_type: OrderType
    is_long: bool
    size_delta_usd: int
    collateral_delta_amount: int
    acceptable_price: int
    execution_fee: int
    updated_at: int
    frozen: bool


@dataclass(frozen=True, slots=True)
class LiquidationView:
    """Reader.isPositionLiquidatable's answer (USD at 1e30)."""

    liquidatable: bool
    reason: str
    remaining_collateral_usd: int
    min_collateral_usd: int
    min_collateral_usd_for_leverage: int


# --- prices ------------------------------------------------------------------------------------


def _bounds(quote: Quote) -> tuple[Decimal, Decimal]:
    low, high = quote if isinstance(quote, tuple) else (quote, quote)
    if not 0 < low <= high:
        raise ValueError(f"price: need 0 < min <= max, got {low}, {high}")
    return Decimal(low), Decimal(high)


def _gmx_raw(usd: Decimal, decimals: int) -> int:
    """USD per whole token -> GMX's USD (1e30) per smallest unit; exact or ValueError."""
    raw = CONTEXT.multiply(usd, Decimal(10) ** (30 - decimals))
    if raw != raw.to_integral_value():
        raise ValueError(f"price {usd} is not a whole number of GMX units for {decimals} decimals")
    return int(raw)


def oracle_value(raw_min: int, raw_max: int) -> tuple[int, int, int]:
    """(min value, max value, precision) with value * 10**precision == raw and the values
    fitting uint32, at the smallest such precision; ValueError when a price has more
    significant digits than that."""
    precision = 0
    while raw_max // 10**precision > MAX_PRICE_VALUE:
        precision += 1
    unit = 10**precision
    if raw_min % unit or raw_max % unit:
        raise ValueError(
            f"oracle prices {raw_min}, {raw_max} have more significant digits than a uint32 holds"
        )
    return raw_min // unit, raw_max // unit, precision


# --- the chain ---------------------------------------------------------------------------------


class RealGmx:
    """GMX's own deployment on the node at `url`, with the accounts acting on it.

    `keeper` (account 0) holds CONTROLLER and ORDER_KEEPER; `trader` (account 1) trades; `lp`
    (account 2) provided the liquidity; `oracle_signer` (mnemonic account 10) is OracleStore
    signer 0 and signs the oracle reports.
    """

    def __init__(self, url: str, addresses: RealGmxAddresses) -> None:
        self.url = url
        self.addresses = addresses
        self.chain = DevChain(url)
        self.chain_id = int(self.chain.w3.eth.chain_id)
        if self.chain_id != addresses.chain_id:
            raise RuntimeError(
                f"the node at {url} is chain {self.chain_id}, the GMX state is for chain "
                f"{addresses.chain_id}"
            )
        self.keeper = dev_account(KEEPER_INDEX)
        self.trader = dev_account(TRADER_INDEX)
        self.lp = dev_account(LP_INDEX)
        self.oracle_signer = dev_account(ORACLE_SIGNER_INDEX)
        c = addresses.contract
        self.deployment = GmxDeployment(
            chain_id=self.chain_id,
            data_store=c("DataStore"),
            reader=c("Reader"),
            exchange_router=c("ExchangeRouter"),
            router=c("Router"),
            order_vault=c("OrderVault"),
            role_store=c("RoleStore"),
            referral_storage=c("ReferralStorage"),
            event_emitter=c("EventEmitter"),
            multicall=c("Multicall3"),
            subaccount_router=c("SubaccountRouter"),
        )
        self._decimals: dict[str, int] = {}
        self._check_accounts()

    def _check_accounts(self) -> None:
        expected = {
            "keeper": self.keeper.address,
            "trader": self.trader.address,
            "lp": self.lp.address,
            "oracleSigner": self.oracle_signer.address,
        }
        for role, address in expected.items():
            listed = self.addresses.accounts.get(role)
            if listed is not None and listed != address:
                raise RuntimeError(f"{ADDRESSES_FILE}: {role} is {listed}, expected {address}")
        data = self.eth_call(self.addresses.contract("OracleStore"), _GET_SIGNER.encode(0))
        (signer,) = _GET_SIGNER.decode(data)
        if to_checksum_address(signer) != self.oracle_signer.address:
            raise RuntimeError(
                f"OracleStore signer 0 is {signer}, not the oracle signer "
                f"{self.oracle_signer.address}: reports would not verify"
            )

    # -- addresses ------------------------------------------------------------------------------

    @property
    def usdc(self) -> str:
        return self.addresses.token("USDC")

    @property
    def weth(self) -> str:
        return self.addresses.token("WETH")

    @property
    def market(self) -> GmxMarketInfo:
        """The WETH/USD [WETH-USDC] market."""
        return self.addresses.market()

    def config_sections(self) -> dict[str, dict[str, Any]]:
        """The [chain] and [venue] tables of a keeper config for this deployment (merge the
        rest of the config around them)."""
        d = self.deployment
        chain = {"chain_id": self.chain_id, "rpc": [self.url], "multicall": d.multicall}
        return {"chain": chain, "venue": venue_section(d)}

    # -- transport ------------------------------------------------------------------------------

    def rpc(self, method: str, *params: Any) -> Any:
        return self.chain.rpc(method, *params)

    def eth_call(
        self,
        to: str,
        data: bytes,
        *,
        sender: str | None = None,
        value: int = 0,
        gas_price: int | None = None,
        gas: int | None = None,
        block: int | str = "latest",
    ) -> bytes:
        """eth_call; GmxCallError with the decoded revert when it reverts."""
        call: dict[str, Any] = {"to": to, "data": "0x" + data.hex(), "value": hex(value)}
        if sender is not None:
            call["from"] = sender
        if gas_price is not None:
            call["gasPrice"] = hex(gas_price)
        if gas is not None:
            call["gas"] = hex(gas)
        tag = block if isinstance(block, str) else hex(block)
        response = self.chain.w3.provider.make_request(RPCEndpoint("eth_call"), [call, tag])
        error = response.get("error")
        if error is not None:
            raw = error.get("data") if isinstance(error, dict) else None
            reason = self.decode_error(str(raw) if isinstance(raw, str) else None)
            if not reason.data and isinstance(error, dict):
                reason = RevertReason(b"", "", (("message", str(error.get("message"))),))
            raise GmxCallError(f"eth_call to {to}", reason)
        return bytes.fromhex(str(response["result"])[2:])

    def decode_error(self, data: bytes | str | None) -> RevertReason:
        """GMX revert data decoded with the GMX errors the keeper ships."""
        return decode_gmx_error(data)

    def gas_price(self) -> int:
        """The node's eth_gasPrice (what GmxVenue.gas_price reads)."""
        return int(self.chain.w3.eth.gas_price)

    def send(
        self,
        account: LocalAccount,
        to: str,
        data: bytes,
        *,
        value: int = 0,
        gas: int = TX_GAS,
        gas_price: int | None = None,
        what: str = "transaction",
        expect_success: bool = True,
    ) -> TxReceipt:
        """Signs and sends one type-2 transaction and waits for its receipt.

        The transaction pays exactly `gas_price` per gas (default: the node's gas price): max
        fee and priority fee are both set to it, so tx.gasprice inside GMX is `gas_price`.
        A revert is a GmxCallError (replayed as an eth_call for its reason) unless
        `expect_success` is False.
        """
        w3 = self.chain.w3
        price = self.gas_price() if gas_price is None else gas_price
        tx: dict[str, Any] = {
            "to": to_checksum_address(to),
            "data": data,
            "value": value,
            "gas": gas,
            "chainId": self.chain_id,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "type": 2,
            "maxFeePerGas": price,
            "maxPriorityFeePerGas": price,
        }
        signed = account.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(signed.raw_transaction), timeout=60
        )
        if receipt["status"] != 1 and expect_success:
            block = int(receipt["blockNumber"]) - 1
            try:
                self.eth_call(
                    to,
                    data,
                    sender=account.address,
                    value=value,
                    gas=gas,
                    gas_price=price,
                    block=block,
                )
            except GmxCallError as exc:
                raise GmxCallError(f"{what} (block {block + 1})", exc.reason) from None
            raise GmxCallError(f"{what} (block {block + 1})", RevertReason(b"", ""))
        return receipt

    def send_plan(
        self, account: LocalAccount, plan: TxPlan, *, gas_price: int | None = None
    ) -> list[MinedTx]:
        """Sends a venue's plan step by step from `account` (each mined before the next)."""
        if to_checksum_address(plan.sender) != account.address:
            raise ValueError(f"the plan is for {plan.sender}, not {account.address}")
        done: list[MinedTx] = []
        for step in plan.steps:
            receipt = self.send(
                account,
                step.to,
                step.data,
                value=step.value,
                gas=ORDER_GAS,
                gas_price=gas_price,
                what=step.description,
            )
            done.append(mined(receipt))
        return done

    # -- chain control --------------------------------------------------------------------------

    def snapshot(self) -> str:
        return self.chain.snapshot()

    def revert(self, snapshot_id: str) -> None:
        self.chain.revert(snapshot_id)

    def mine(self, blocks: int = 1) -> None:
        self.chain.mine(blocks)

    def block_number(self) -> int:
        return self.chain.block_number()

    def block_time(self) -> int:
        """The latest block's timestamp."""
        return int(self.chain.w3.eth.get_block("latest")["timestamp"])

    def advance_time(self, seconds: int) -> None:
        """Moves the chain's clock forward and mines one block at the new time."""
        self.chain.advance_time(seconds)

    def sync_clock(self) -> int:
        """Mines a block stamped with the wall clock (never before the latest block): the
        state's blocks are as old as the state, and a keeper measures a block's age by it.
        The new block's time."""
        stamp = max(int(time.time()), self.block_time() + 1)
        self.rpc("evm_setNextBlockTimestamp", stamp)
        self.mine()
        return stamp

    def interval_mining(self, seconds: int) -> None:
        """Anvil mines a block every `seconds` seconds, transactions or not (they wait for
        it); 0 puts back Anvil's default of one block per transaction."""
        if seconds < 0:
            raise ValueError(f"interval mining: {seconds} s")
        self.rpc("evm_setIntervalMining", seconds)
        if seconds == 0:
            self.rpc("evm_setAutomine", True)

    # -- DataStore ------------------------------------------------------------------------------

    def get_uint(self, key: bytes) -> int:
        return int(
            _GET_UINT.decode(self.eth_call(self.deployment.data_store, _GET_UINT.encode(key)))[0]
        )

    def get_address(self, key: bytes) -> str:
        data = self.eth_call(self.deployment.data_store, _GET_ADDRESS.encode(key))
        return to_checksum_address(_GET_ADDRESS.decode(data)[0])

    def get_bytes32(self, key: bytes) -> bytes:
        data = self.eth_call(self.deployment.data_store, _GET_BYTES32.encode(key))
        return bytes(_GET_BYTES32.decode(data)[0])

    def set_uint(self, key: bytes, value: int) -> None:
        """DataStore.setUint as the keeper account (it holds CONTROLLER)."""
        self.send(
            self.keeper,
            self.deployment.data_store,
            _SET_UINT.encode(key, value),
            what=f"DataStore.setUint(0x{key.hex()}, {value})",
        )

    def gas_params(self) -> GasParams:
        """The execution-fee settings read with GMX's own keys (GAS_KEYS)."""
        return GasParams(**{field: self.get_uint(key) for field, key in GAS_KEYS.items()})

    def set_gas_params(self, params: GasParams) -> None:
        """Writes the execution-fee settings under GMX's own keys (GAS_KEYS)."""
        for field, key in GAS_KEYS.items():
            self.set_uint(key, int(getattr(params, field)))

    # -- tokens ---------------------------------------------------------------------------------

    def decimals(self, token: str) -> int:
        found = self._decimals.get(token)
        if found is None:
            found = int(_DECIMALS.decode(self.eth_call(token, _DECIMALS.encode()))[0])
            self._decimals[token] = found
        return found

    def symbol(self, token: str) -> str:
        """The token's own symbol (the WETH of addresses.json calls itself WNT)."""
        return str(_SYMBOL.decode(self.eth_call(token, _SYMBOL.encode()))[0])

    def units(self, token: str, amount: Decimal | int) -> int:
        """`amount` whole tokens in the token's smallest unit (exact, or ValueError)."""
        raw = CONTEXT.multiply(Decimal(amount), Decimal(10) ** self.decimals(token))
        if raw != raw.to_integral_value():
            raise ValueError(f"{amount} has more decimals than token {token} has")
        return int(raw)

    def balance(self, token: str, account: str) -> int:
        return int(_BALANCE_OF.decode(self.eth_call(token, _BALANCE_OF.encode(account)))[0])

    def allowance(self, token: str, owner: str, spender: str) -> int:
        data = self.eth_call(token, _ALLOWANCE.encode(owner, spender))
        return int(_ALLOWANCE.decode(data)[0])

    def mint(self, token: str, to: str, amount: int) -> None:
        """Mints `amount` (smallest units) of a test token; anyone may."""
        self.send(self.keeper, token, _MINT.encode(to, amount), what=f"mint {amount} of {token}")

    def mint_usdc(self, to: str, amount: Decimal | int) -> int:
        """Mints `amount` whole USDC to `to`; the raw amount minted."""
        raw = self.units(self.usdc, amount)
        self.mint(self.usdc, to, raw)
        return raw

    def approve(self, account: LocalAccount, token: str, spender: str, amount: int) -> None:
        self.send(
            account, token, _APPROVE.encode(spender, amount), what=f"approve {spender} {amount}"
        )

    # -- prices ---------------------------------------------------------------------------------

    def prices(self, eth: Decimal | int, usdc: Decimal | int = 1) -> dict[str, Quote]:
        """Prices of the WETH/USD [WETH-USDC] market's tokens."""
        return {self.weth: Decimal(eth), self.usdc: Decimal(usdc)}

    def feed_of(self, token: str) -> str:
        """The token's reference feed (DataStore PRICE_FEED), a MockPriceFeed here."""
        feed = self.get_address(data_key("PRICE_FEED", ("address", token)))
        if feed == ZERO_ADDRESS:
            raise KeyError(f"token {token} has no reference price feed")
        return feed

    def set_feed_prices(self, prices: Mapping[str, Quote]) -> None:
        """Sets each token's reference feed to its price (the middle of a (min, max) pair),
        at the feed's 8 decimals (exact, or ValueError)."""
        for token, quote in prices.items():
            low, high = _bounds(quote)
            answer = CONTEXT.multiply((low + high) / 2, Decimal(10) ** FEED_DECIMALS)
            if answer != answer.to_integral_value():
                raise ValueError(f"feed price {answer} of {token} has more than 8 decimals")
            self.send(
                self.keeper,
                self.feed_of(token),
                _SET_ANSWER.encode(int(answer)),
                what=f"setAnswer {token}",
            )

    def feed_price(self, token: str) -> Decimal:
        data = self.eth_call(self.feed_of(token), _LATEST_ANSWER.encode())
        return Decimal(int(_LATEST_ANSWER.decode(data)[0])).scaleb(-FEED_DECIMALS)

    def gmx_price(self, token: str, quote: Quote) -> tuple[int, int]:
        """Price.Props (min, max) of `token`: USD (1e30) per smallest unit."""
        low, high = _bounds(quote)
        decimals = self.decimals(token)
        return _gmx_raw(low, decimals), _gmx_raw(high, decimals)

    def market_prices(
        self, prices: Mapping[str, Quote], market: GmxMarketInfo | None = None
    ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """MarketUtils.MarketPrices (index, long, short) for Reader calls."""
        m = market or self.market
        index, long_token, short_token = (
            self.gmx_price(t, prices[t]) for t in (m.index_token, m.long_token, m.short_token)
        )
        return index, long_token, short_token

    # -- oracle ---------------------------------------------------------------------------------

    def oracle_params(
        self, prices: Mapping[str, Quote], *, block: int | None = None
    ) -> tuple[list[str], list[str], list[bytes]]:
        """OracleUtils.SetPricesParams (tokens, providers, data): one GmOracleProvider report
        per token, signed by the oracle signer, for `block` (default: the latest block, which
        executeOrder's block follows)."""
        header = self.chain.w3.eth.get_block(block if block is not None else "latest")
        number, timestamp = int(header["number"]), int(header["timestamp"])
        block_hash = bytes(header["hash"])
        oracle = self.addresses.contract("Oracle")
        salt = keccak(abi_encode(["uint256", "string"], [self.chain_id, ORACLE_SALT_TEXT]))
        tokens, providers, data = [], [], []
        for token, quote in prices.items():
            provider = self.get_address(
                data_key("ORACLE_PROVIDER_FOR_TOKEN", ("address", oracle), ("address", token))
            )
            oracle_type = self.get_bytes32(data_key("ORACLE_TYPE", ("address", token)))
            min_value, max_value, precision = oracle_value(*self.gmx_price(token, quote))
            digest = keccak(
                abi_encode(
                    list(_DIGEST_TYPES),
                    [
                        salt,
                        number,
                        number,
                        timestamp,
                        block_hash,
                        token,
                        oracle_type,
                        10**precision,
                        min_value,
                        max_value,
                    ],
                )
            )
            signed = Account.sign_message(encode_defunct(primitive=digest), self.oracle_signer.key)
            report = (
                token,
                SIGNER_INFO,
                precision,
                number,
                number,
                timestamp,
                block_hash,
                [min_value],
                [max_value],
                [bytes(signed.signature)],
            )
            tokens.append(token)
            providers.append(provider)
            data.append(abi_encode([_REPORT], [report]))
        return tokens, providers, data

    # -- orders ---------------------------------------------------------------------------------

    def order_call(self, order: CreateOrder) -> tuple[bytes, int]:
        """The ExchangeRouter.multicall a user sends for `order`, and its value:
        sendWnt(OrderVault, fee), sendTokens(collateral, OrderVault, amount) for an increase,
        createOrder. WETH collateral goes with the fee as native value (sendWnt)."""
        d = self.deployment
        token = order.initial_collateral_token
        amount = order.initial_collateral_delta_amount if order.order_type.increase else 0
        native = token == self.weth
        wnt = order.execution_fee + (amount if native else 0)
        calls = [_SEND_WNT.encode(d.order_vault, wnt)]
        if amount and not native:
            calls.append(_SEND_TOKENS.encode(token, d.order_vault, amount))
        calls.append(encode_create_order(order))
        return _MULTICALL.encode(calls), wnt

    def approve_collateral(self, account: LocalAccount, order: CreateOrder) -> None:
        """Approves the Router to take an increase order's collateral, if not yet allowed."""
        token = order.initial_collateral_token
        amount = order.initial_collateral_delta_amount if order.order_type.increase else 0
        if not amount or token == self.weth:
            return
        router = self.deployment.router
        if self.allowance(token, account.address, router) < amount:
            self.approve(account, token, router, amount)

    def create_order(
        self, account: LocalAccount, order: CreateOrder, *, gas_price: int | None = None
    ) -> OrderCreated:
        """Creates `order` as a user does (`approve_collateral`, then `order_call`'s
        multicall at `gas_price`, default the node's); GmxCallError when GMX refuses it."""
        self.approve_collateral(account, order)
        data, value = self.order_call(order)
        receipt = self.send(
            account,
            self.deployment.exchange_router,
            data,
            value=value,
            gas=ORDER_GAS,
            gas_price=gas_price,
            what=f"createOrder {order.order_type.name}",
        )
        done = mined(receipt)
        key = order_key_of(done.logs, self.deployment.event_emitter)
        if key is None:
            raise AssertionError(
                f"createOrder mined in block {done.block_number} without an OrderCreated event"
            )
        return OrderCreated(key, receipt, done)

    def increase_order(
        self,
        account: str,
        *,
        collateral_amount: int,
        size_usd: Decimal | int,
        is_long: bool,
        collateral_token: str | None = None,
        market: GmxMarketInfo | None = None,
        execution_fee: int = 0,
    ) -> CreateOrder:
        """A MarketIncrease of `size_usd` USD with `collateral_amount` (smallest units) of
        `collateral_token` (default USDC), any price accepted."""
        m = market or self.market
        size = CONTEXT.multiply(Decimal(size_usd), Decimal(USD))
        if size != size.to_integral_value():
            raise ValueError(f"size {size_usd} USD is not a whole number of GMX units")
        return CreateOrder(
            receiver=account,
            cancellation_receiver=account,
            market=m.market_token,
            initial_collateral_token=collateral_token or self.usdc,
            order_type=OrderType.MARKET_INCREASE,
            is_long=is_long,
            size_delta_usd=int(size),
            initial_collateral_delta_amount=collateral_amount,
            acceptable_price=2**256 - 1 if is_long else 0,
            execution_fee=execution_fee,
        )

    def open_position(
        self,
        account: LocalAccount,
        *,
        collateral_amount: int,
        size_usd: Decimal | int,
        is_long: bool,
        prices: Mapping[str, Quote],
        collateral_token: str | None = None,
        market: GmxMarketInfo | None = None,
    ) -> str:
        """Opens (or increases) a position with the account's own order, executed at `prices`
        (the reference feeds are moved to them first); the position key (0x hex)."""
        m = market or self.market
        token = collateral_token or self.usdc
        order = self.increase_order(
            account.address,
            collateral_amount=collateral_amount,
            size_usd=size_usd,
            is_long=is_long,
            collateral_token=token,
            market=m,
        )
        self.set_feed_prices(prices)
        created = self.create_order(account, order)
        outcome = self.execute_order(created.key, prices)
        if not outcome.executed:
            raise AssertionError(f"opening the position: order {outcome.fate}: {outcome.reason}")
        return "0x" + position_key(account.address, m.market_token, token, is_long).hex()

    def pending_orders(self, account: str) -> list[PendingOrder]:
        """The account's orders in the DataStore (Reader.getAccountOrders)."""
        d = self.deployment
        data = self.eth_call(d.reader, _ACCOUNT_ORDERS.encode(d.data_store, account, 0, 1000))
        (infos,) = _ACCOUNT_ORDERS.decode(data)
        out = []
        for key, (addresses, numbers, flags, _data) in infos:
            out.append(
                PendingOrder(
                    key=bytes(key),
                    account=to_checksum_address(addresses[0]),
                    market=to_checksum_address(addresses[5]),
                    collateral_token=to_checksum_address(addresses[6]),
                    order_type=OrderType(numbers[0]),
                    is_long=bool(flags[0]),
                    size_delta_usd=int(numbers[2]),
                    collateral_delta_amount=int(numbers[3]),
                    acceptable_price=int(numbers[5]),
                    execution_fee=int(numbers[6]),
                    updated_at=int(numbers[9]),
                    frozen=bool(flags[2]),
                )
            )
        return out

    def execute_order(
        self, key: bytes, prices: Mapping[str, Quote], *, block: int | None = None
    ) -> OrderOutcome:
        """OrderHandler.executeOrder as the order keeper, with `prices` signed for `block`
        (default: the latest). GMX executes the order, or cancels or freezes it when it cannot
        be filled: the outcome says which, and why. GmxCallError when executeOrder itself
        reverts (bad oracle data, an unknown order)."""
        handler = self.addresses.contract("OrderHandler")
        params = self.oracle_params(prices, block=block)
        data = _EXECUTE_ORDER.encode(key, params)
        # simulated in the pending block: the reports must be for an earlier block
        self.eth_call(handler, data, sender=self.keeper.address, gas=EXECUTE_GAS, block="pending")
        receipt = self.send(
            self.keeper, handler, data, gas=EXECUTE_GAS, what=f"executeOrder 0x{key.hex()}"
        )
        return self._outcome(key, receipt)

    def execute_pending(self, account: str, prices: Mapping[str, Quote]) -> list[OrderOutcome]:
        """Executes every pending order of `account` at `prices`, oldest first, as GMX's
        order keeper does; what GMX did with each."""
        orders = sorted(self.pending_orders(account), key=lambda o: o.updated_at)
        return [self.execute_order(o.key, prices) for o in orders]

    def _outcome(self, key: bytes, receipt: TxReceipt) -> OrderOutcome:
        fates = {
            EVENT_ORDER_EXECUTED: OrderFate.EXECUTED,
            EVENT_ORDER_CANCELLED: OrderFate.CANCELLED,
            EVENT_ORDER_FROZEN: OrderFate.FROZEN,
        }
        emitter = self.deployment.event_emitter.lower()
        for log in receipt["logs"]:
            topics = [bytes(t) for t in log["topics"]]
            if (
                str(log["address"]).lower() != emitter
                or len(topics) < 3
                or topics[0] != EVENT_LOG2_TOPIC
                or topics[1] not in fates
                or topics[2] != key
            ):
                continue
            fate = fates[topics[1]]
            if fate is OrderFate.EXECUTED:
                return OrderOutcome(key, fate, receipt)
            payload = bytes(log["data"])
            reason = event_strings(payload).get("reason", "")
            reason_bytes = _event_bytes(payload).get("reasonBytes", b"")
            return OrderOutcome(key, fate, receipt, reason, self.decode_error(reason_bytes))
        raise AssertionError(
            f"executeOrder 0x{key.hex()} mined in block {receipt['blockNumber']} without an "
            "OrderExecuted, OrderCancelled or OrderFrozen event"
        )

    # -- positions ------------------------------------------------------------------------------

    def position(self, key: str) -> RawPosition:
        """Reader.getPosition (an empty position has size 0)."""
        d = self.deployment
        data = self.eth_call(d.reader, _GET_POSITION.encode(d.data_store, bytes.fromhex(key[2:])))
        (props,) = _GET_POSITION.decode(data)
        return RawPosition.decode(props)

    def is_liquidatable(
        self,
        key: str,
        prices: Mapping[str, Quote],
        *,
        market: GmxMarketInfo | None = None,
        validate_min_collateral_usd: bool = True,
        for_liquidation: bool = True,
    ) -> LiquidationView:
        """Reader.isPositionLiquidatable at `prices` (GMX's liquidation keeper passes True,
        True: the MIN_COLLATERAL_USD floor and MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION)."""
        d = self.deployment
        m = market or self.market
        (props,) = _GET_MARKET.decode(
            self.eth_call(d.reader, _GET_MARKET.encode(d.data_store, m.market_token))
        )
        data = _IS_LIQUIDATABLE.encode(
            d.data_store,
            d.referral_storage,
            bytes.fromhex(key[2:]),
            tuple(props),
            self.market_prices(prices, m),
            validate_min_collateral_usd,
            for_liquidation,
        )
        flag, reason, info = _IS_LIQUIDATABLE.decode(self.eth_call(d.reader, data))
        remaining, floor, for_leverage = (int(x) for x in info)
        return LiquidationView(bool(flag), str(reason), remaining, floor, for_leverage)


def _event_bytes(data: bytes) -> dict[str, bytes]:
    """The bytesItems of an EventLog2's data (e.g. OrderCancelled's "reasonBytes")."""
    _sender, _name, event = abi_decode(["address", "string", _EVENT_DATA], data)
    return {str(k): bytes(v) for k, v in event[5][0]}


class LaggingEndpoint:
    """A JSON-RPC endpoint in front of a node that answers as the node does, except that what
    the node indexes after a block's state lags behind it: a transaction's receipt is answered
    null for `receipt_lag_s` seconds after the node first had it, and eth_getLogs leaves out a
    block's logs for `log_lag_s` seconds after they were first asked for, while balances,
    nonces and contract state are current. So do a node still storing a new block's receipts
    and logs, and an endpoint behind a load balancer whose backends are not all at the same
    block. `url` is where to point a client; `close()` stops it."""

    def __init__(self, upstream: str, *, receipt_lag_s: float = 0, log_lag_s: float = 0) -> None:
        self.upstream = upstream
        self.receipt_lag_s = receipt_lag_s
        self.log_lag_s = log_lag_s
        self.held_receipts = 0  # receipts answered null
        self.held_logs = 0  # logs left out
        self._first_seen: dict[str, float] = {}  # tx or block hash -> when the node had it
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = urllib.request.Request(
                    endpoint.upstream, body, {"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=30) as resp:
                    answer = json.loads(resp.read())
                calls = json.loads(body)
                if isinstance(calls, list):
                    by_id = {c.get("id"): c for c in calls}
                    answer = [endpoint.lag(by_id.get(a.get("id"), {}), a) for a in answer]
                else:
                    answer = endpoint.lag(calls, answer)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _young(self, key: str, lag_s: float) -> bool:
        with self._lock:
            first = self._first_seen.setdefault(key.lower(), time.monotonic())
        return time.monotonic() - first < lag_s

    def lag(self, call: Mapping[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        method, result = call.get("method"), answer.get("result")
        if (
            method == "eth_getTransactionReceipt"
            and result
            and self._young("tx:" + str(call["params"][0]), self.receipt_lag_s)
        ):
            self.held_receipts += 1
            return {**answer, "result": None}
        if method == "eth_getLogs" and isinstance(result, list) and self.log_lag_s > 0:
            kept = [e for e in result if not self._young(str(e["blockHash"]), self.log_lag_s)]
            self.held_logs += len(result) - len(kept)
            return {**answer, "result": kept}
        return answer

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def running_realgmx(
    source: Path | None = None, workdir: Path | None = None
) -> Iterator[tuple[RealGmxAnvil, RealGmx]]:
    """Unpacks the state (into `workdir`, default a temporary directory), starts Anvil on it
    and yields the node and a RealGmx; the node is stopped on exit."""
    where = source or locate_realgmx()
    addresses = RealGmxAddresses.load(where / ADDRESSES_FILE)
    with tempfile.TemporaryDirectory(prefix="realgmx-") as scratch:
        state = unpack_state(where, workdir or Path(scratch))
        node = RealGmxAnvil(state)
        node.start()
        try:
            yield node, RealGmx(node.url, addresses)
        finally:
            node.stop()
