"""The GMX v2 adapter (gmx-synthetics; ABIs in abis/gmx/, commit in its README).

Units: USD and factors at 1e30; prices in USD (1e30) per smallest token unit, which is
`Price.gmx(raw, token_decimals)`. GMX executes orders later at oracle prices, so reads use the
side of the min/max price that is conservative for the trader (Reader does the same: a long's
pnl at the min price, a short's at the max).

Mapping onto keeper/model.py:

- `Market`: id = the market token address; index token from Reader.getMarket; mark = the middle
  of the index token's min and max price; `Basis.ENTRY` (GMX's min collateral is a factor of
  sizeInUsd, the size at entry), `Strictness.LT` (GMX liquidates when the remaining
  collateral is below the minimum, strictly), `min_collateral_usd` = MIN_COLLATERAL_USD,
  maintenance rate = the larger of MIN_COLLATERAL_FACTOR and MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION
  of the market; `close_fee_rate` 0 (the close fee is in each position's `fees`, GMX charges it
  on sizeInUsd, not on the notional at the mark), `close_quote` = the market's position fee
  factor; funding per second from SAVED_FUNDING_FACTOR_PER_SECOND (the paying side pays the
  factor on its size, the other side earns it spread over its own open interest). Borrowing
  rates are not modelled (0): the borrowing accrued so far is in `fees`.
- `Position`: key = the GMX position key; size = sizeInTokens; entry = sizeInUsd / sizeInTokens
  (18 extra digits, rounded against the trader); collateral valued at the collateral token's min
  price; `fees` makes the model's equity equal GMX's remaining collateral in its liquidation
  test: the total cost of closing from Reader.getPositionInfo (position fee, borrowing, funding),
  the capped price impact of closing (pending impact included), and the difference between the
  model's pnl at the mark and GMX's capped pnl at the conservative price.

A read pins a block, then: one Multicall3 batch (block, time, MIN_COLLATERAL_USD, the wallet,
Reader.getAccountPositions per account), Reader.getMarket and token facts for markets not seen
before (cached), one batch of DataStore parameters per read, the prices (PriceSource), and
Reader.getPositionInfo per position in batches of `chunk_size`.

Writes are GMX orders sent through ExchangeRouter.multicall: top-up = MarketIncrease with
sizeDeltaUsd 0 (sendWnt for the execution fee, sendTokens for the collateral to the OrderVault,
createOrder; the collateral's approval to the Router is its own step; WETH/WAVAX collateral is
sent as native value with the fee), reduce and close = MarketDecrease with an acceptable price
`slippage` away from the mark. Before an order is sent, `simulate_execution` has GMX create and
execute it in one eth_call (simulateExecuteLatestOrder at the prices of the read the action was
decided on), as GMX's interface does: an order GMX would cancel at execution is refused with
GMX's reason instead of being sent. GMX's own order keepers execute them later: `action_state`
follows the order (OrderCreated / OrderExecuted / OrderCancelled events of the EventEmitter, and
the DataStore's ORDER_LIST), `cancel_if_expired` builds the cancel for an order left past
REQUEST_EXPIRATION_TIME, and `reprice` recomputes the execution fee for a replacement at a
higher gas price (`gmx_rebuild` wires it to the transaction manager).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, Protocol, Self

import aiohttp
from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from keeper.abis import abi as shipped_abi
from keeper.abis import abi_type
from keeper.chain.jsonrpc import JsonRpc, RpcError, RpcResponseError
from keeper.chain.multicall import MULTICALL3_ADDRESS, Call, CallResult, Multicall
from keeper.chain.revert import RevertReason, decode_revert, is_revert, revert_data
from keeper.chain.rpc import Reads
from keeper.model import (
    Action,
    Alert,
    Basis,
    Close,
    CloseQuote,
    Market,
    Position,
    Reduce,
    Scope,
    Side,
    Snapshot,
    Strictness,
    Token,
    TopUp,
    Wallet,
    Withdraw,
)
from keeper.txs import TxRequest as ManagerRequest
from keeper.units import CONTEXT, Price, TokenAmount, Usd
from keeper.venues.base import (
    ActionState,
    Delegation,
    Execution,
    MinedTx,
    OpenInterest,
    PoolState,
    ReadIssue,
    TxPlan,
    TxRequest,
    VenueDecodeError,
    VenueError,
    VenueRead,
    Watch,
    call_data,
    checked_address,
    limit_problems,
    pin_block,
)
from keeper.venues.codec import ContractFn
from keeper.venues.gmx_math import (
    FLOAT_PRECISION,
    GasParams,
    OrderType,
    capped_price_impact,
    data_key,
    execution_fee,
    factor,
    name_key,
    position_key,
)

__all__ = [
    "ARBITRUM",
    "ARBITRUM_SEPOLIA",
    "AVALANCHE",
    "AVALANCHE_FUJI",
    "BOTANIX",
    "END_OF_ORACLE_SIMULATION",
    "NAME",
    "PRESETS",
    "SIMULATION_TIME_AHEAD",
    "ChainlinkPriceSource",
    "FallbackPriceSource",
    "GmxApiPriceSource",
    "GmxDeployment",
    "GmxFn",
    "GmxVenue",
    "MarketTokens",
    "PriceSource",
    "PriceUnavailableError",
    "RawPosition",
    "RawPositionInfo",
    "TokenPrice",
    "create_order_of",
    "decode_create_order",
    "decode_gmx_error",
    "encode_create_order",
    "encode_simulation",
    "gmx_abi",
    "gmx_rebuild",
    "map_market",
    "map_position",
    "order_key_of",
]

log = logging.getLogger(__name__)

NAME = "gmx"
USD_DECIMALS = 30
ENTRY_EXTRA_DIGITS = 18
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
MAX_UINT256 = 2**256 - 1
DEFAULT_CHUNK_SIZE = 100
DEFAULT_MAX_POSITIONS = 1000

# DataStore keys the adapter reads (Keys.sol).
MIN_COLLATERAL_USD = name_key("MIN_COLLATERAL_USD")
MIN_POSITION_SIZE_USD = name_key("MIN_POSITION_SIZE_USD")
REQUEST_EXPIRATION_TIME = name_key("REQUEST_EXPIRATION_TIME")
ORDER_LIST = name_key("ORDER_LIST")
WNT = name_key("WNT")
ESTIMATED_GAS_FEE_BASE_AMOUNT_V2_1 = name_key("ESTIMATED_GAS_FEE_BASE_AMOUNT_V2_1")
ESTIMATED_GAS_FEE_PER_ORACLE_PRICE = name_key("ESTIMATED_GAS_FEE_PER_ORACLE_PRICE")
ESTIMATED_GAS_FEE_MULTIPLIER_FACTOR = name_key("ESTIMATED_GAS_FEE_MULTIPLIER_FACTOR")
# Keys.increaseOrderGasLimitKey() and friends return the plain name keys
INCREASE_ORDER_GAS_LIMIT = name_key("INCREASE_ORDER_GAS_LIMIT")
DECREASE_ORDER_GAS_LIMIT = name_key("DECREASE_ORDER_GAS_LIMIT")
SINGLE_SWAP_GAS_LIMIT = name_key("SINGLE_SWAP_GAS_LIMIT")
ROUTER_PLUGIN = name_key("ROUTER_PLUGIN")
# SubaccountRouter counts every createOrder, updateOrder and cancelOrder as one of these
SUBACCOUNT_ORDER_ACTION = name_key("SUBACCOUNT_ORDER_ACTION")
ORDER_KEEPER = name_key("ORDER_KEEPER")
USER_INITIATED_CANCEL = "USER_INITIATED_CANCEL"
# Errors.EndOfOracleSimulation: how GMX ends a simulated execution that went through
END_OF_ORACLE_SIMULATION = "EndOfOracleSimulation"
# seconds after the latest block that simulated oracle prices are stamped (GMX's SDK: 10); GMX
# needs them no older than the order (created in that block) and no later than its expiry
SIMULATION_TIME_AHEAD = 10

EVENT_ORDER_CREATED = keccak(b"OrderCreated")
EVENT_ORDER_EXECUTED = keccak(b"OrderExecuted")
EVENT_ORDER_CANCELLED = keccak(b"OrderCancelled")


def market_keys(market: str, long_token: str, short_token: str) -> list[bytes]:
    """The per-market DataStore keys read each tick, in the order `_MarketParams` takes them."""
    a = ("address", market)
    keys = [
        data_key("MIN_COLLATERAL_FACTOR", a),
        data_key("MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION", a),
        data_key("MAX_POSITION_IMPACT_FACTOR_FOR_LIQUIDATIONS", a),
        data_key("POSITION_FEE_FACTOR", a, ("bool", False)),
        data_key("POOL_AMOUNT", a, ("address", long_token)),
        data_key("POOL_AMOUNT", a, ("address", short_token)),
    ]
    for is_long in (True, False):
        for token in (long_token, short_token):
            keys.append(
                data_key("OPEN_INTEREST_IN_TOKENS", a, ("address", token), ("bool", is_long))
            )
    for is_long in (True, False):
        for token in (long_token, short_token):
            keys.append(data_key("OPEN_INTEREST", a, ("address", token), ("bool", is_long)))
    return keys


def subaccount_keys(account: str, subaccount: str) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """SubaccountUtils' DataStore keys for `subaccount` of `account` (Keys.sol): the account's
    subaccount list, the order-action count allowed, used, and expiry, and the auto top-up."""
    a, s = ("address", account), ("address", subaccount)
    action = ("bytes32", SUBACCOUNT_ORDER_ACTION)
    return (
        data_key("SUBACCOUNT_LIST", a),
        data_key("MAX_ALLOWED_SUBACCOUNT_ACTION_COUNT", a, s, action),
        data_key("SUBACCOUNT_ACTION_COUNT", a, s, action),
        data_key("SUBACCOUNT_EXPIRES_AT", a, s, action),
        data_key("SUBACCOUNT_AUTO_TOP_UP_AMOUNT", a, s),
    )


def funding_key(market: str) -> bytes:
    return data_key("SAVED_FUNDING_FACTOR_PER_SECOND", ("address", market))


# --- ABIs --------------------------------------------------------------------------------------


@cache
def gmx_abi(name: str) -> list[dict[str, Any]]:
    """One of the hand-written GMX ABI fragments in abis/gmx/ (e.g. "Reader")."""
    path = resources.files("keeper.abis").joinpath("gmx").joinpath(f"{name}.json")
    if not path.is_file():
        raise LookupError(f"no GMX ABI named {name!r} in abis/gmx")
    entries: list[dict[str, Any]] = json.loads(path.read_text())["abi"]
    return entries


@dataclass(frozen=True, slots=True)
class GmxFn(ContractFn):
    """One function of a GMX ABI fragment (abis/gmx), or of a shipped ABI."""

    @classmethod
    def of(cls, contract: str, name: str, *, shipped: bool = False) -> Self:
        return cls.from_abi(contract, name, shipped_abi(contract) if shipped else gmx_abi(contract))


_GET_UINT = GmxFn.of("DataStore", "getUint")
_GET_INT = GmxFn.of("DataStore", "getInt")
_GET_ADDRESS = GmxFn.of("DataStore", "getAddress")
_CONTAINS = GmxFn.of("DataStore", "containsBytes32")
_CONTAINS_ADDRESS = GmxFn.of("DataStore", "containsAddress")
_GET_BOOL = GmxFn.of("DataStore", "getBool")
_GET_BYTES32 = GmxFn.of("DataStore", "getBytes32")
_SUB_MULTICALL = GmxFn.of("SubaccountRouter", "multicall")
_ADD_SUBACCOUNT = GmxFn.of("SubaccountRouter", "addSubaccount")
_SET_MAX_ACTIONS = GmxFn.of("SubaccountRouter", "setMaxAllowedSubaccountActionCount")
_SET_EXPIRES_AT = GmxFn.of("SubaccountRouter", "setSubaccountExpiresAt")
_SET_AUTO_TOP_UP = GmxFn.of("SubaccountRouter", "setSubaccountAutoTopUpAmount")
_SUB_SEND_WNT = GmxFn.of("SubaccountRouter", "sendWnt")
_SUB_CREATE_ORDER = GmxFn.of("SubaccountRouter", "createOrder")
_HAS_ROLE = GmxFn.of("RoleStore", "hasRole")
_GET_MARKET = GmxFn.of("Reader", "getMarket")
_GET_MARKETS = GmxFn.of("Reader", "getMarkets")
_GET_POSITION = GmxFn.of("Reader", "getPosition")
_ACCOUNT_POSITIONS = GmxFn.of("Reader", "getAccountPositions")
_POSITION_INFO = GmxFn.of("Reader", "getPositionInfo")
_ACCOUNT_ORDERS = GmxFn.of("Reader", "getAccountOrders")
_GET_ORDER = GmxFn.of("Reader", "getOrder")
_MULTICALL = GmxFn.of("ExchangeRouter", "multicall")
_SEND_WNT = GmxFn.of("ExchangeRouter", "sendWnt")
_SEND_TOKENS = GmxFn.of("ExchangeRouter", "sendTokens")
_CREATE_ORDER = GmxFn.of("ExchangeRouter", "createOrder")
_CANCEL_ORDER = GmxFn.of("ExchangeRouter", "cancelOrder")
_SIMULATE_ORDER = GmxFn.of("ExchangeRouter", "simulateExecuteLatestOrder")
_BALANCE_OF = GmxFn.of("ERC20", "balanceOf")
_ALLOWANCE = GmxFn.of("ERC20", "allowance")
_APPROVE = GmxFn.of("ERC20", "approve")
_DECIMALS = GmxFn.of("ERC20", "decimals")
_SYMBOL = GmxFn.of("ERC20", "symbol")
_LATEST_ROUND = GmxFn.of("AggregatorV3Interface", "latestRoundData", shipped=True)
_ETH_BALANCE = GmxFn.of("Multicall3", "getEthBalance", shipped=True)
_BLOCK_TIME = GmxFn.of("Multicall3", "getCurrentBlockTimestamp", shipped=True)
_BLOCK_NUMBER = GmxFn.of("Multicall3", "getBlockNumber", shipped=True)

_EVENT_LOG_DATA = next(
    abi_type(i)
    for e in gmx_abi("EventEmitter")
    if e.get("name") == "EventLog2"
    for i in e["inputs"]
    if i["name"] == "eventData"
)
EVENT_LOG1_TOPIC = keccak(f"EventLog1(address,string,string,bytes32,{_EVENT_LOG_DATA})".encode())
EVENT_LOG2_TOPIC = keccak(
    f"EventLog2(address,string,string,bytes32,bytes32,{_EVENT_LOG_DATA})".encode()
)


# --- deployments -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GmxDeployment:
    """The GMX v2 contracts of one chain; every address can be overridden (`with_overrides`)."""

    chain_id: int
    data_store: str
    reader: str
    exchange_router: str
    router: str
    order_vault: str
    role_store: str
    referral_storage: str
    event_emitter: str
    multicall: str = MULTICALL3_ADDRESS
    api_url: str | None = None
    subaccount_router: str | None = None
    """SubaccountRouter: where a subaccount key acts for the account that added it (None: the
    deployment has none, and the keeper can act only with the account's own key)."""

    def with_overrides(self, **addresses: str | int | None) -> GmxDeployment:
        """A copy with some fields replaced; unknown names are an error naming them."""
        unknown = set(addresses) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"gmx deployment: unknown field(s) {sorted(unknown)}")
        return replace(self, **addresses)  # type: ignore[arg-type]


ARBITRUM = GmxDeployment(
    chain_id=42161,
    data_store="0xFD70de6b91282D8017aA4E741e9Ae325CAb992d8",
    reader="0x470fbC46bcC0f16532691Df360A07d8Bf5ee0789",
    exchange_router="0x1C3fa76e6E1088bCE750f23a5BFcffa1efEF6A41",
    router="0x7452c558d45f8afC8c83dAe62C3f8A5BE19c71f6",
    order_vault="0x31eF83a530Fde1B38EE9A18093A333D8Bbbc40D5",
    role_store="0x3c3d99FD298f679DBC2CEcd132b4eC4d0F5e6e72",
    referral_storage="0xe6fab3F0c7199b0d34d7FbE83394fc0e0D06e99d",
    event_emitter="0xC8ee91A54287DB53897056e12D9819156D3822Fb",
    subaccount_router="0xdD00F639725E19a209880A44962Bc93b51B1B161",
    api_url="https://arbitrum-api.gmxinfra.io",
)
AVALANCHE = GmxDeployment(
    chain_id=43114,
    data_store="0x2F0b22339414ADeD7D5F06f9D604c7fF5b2fe3f6",
    reader="0x62Cb8740E6986B29dC671B2EB596676f60590A5B",
    exchange_router="0x8f550E53DFe96C055D5Bdb267c21F268fCAF63B2",
    router="0x820F5FfC5b525cD4d88Cd91aCf2c28F16530Cc68",
    order_vault="0xD3D60D22d415aD43b7e64b510D86A30f19B1B12C",
    role_store="0xA44F830B6a2B6fa76657a3B92C1fe74fcB7C6AfD",
    referral_storage="0x827ED045002eCdAbEb6e2b0d1604cf5fC3d322F8",
    event_emitter="0xDb17B211c34240B014ab6d61d4A31FA0C0e20c26",
    subaccount_router="0xf43F559774d2cF7882e6E846fCb87BDe183a6Da7",
    api_url="https://avalanche-api.gmxinfra.io",
)
# Chains GMX's SDK (@gmx-io/sdk 1.4.0, configs/contracts) lists with the same contracts;
# RoleStore from gmx-synthetics' deployments; each with GMX's own Multicall3 there.
BOTANIX = GmxDeployment(
    chain_id=3637,
    data_store="0xA23B81a89Ab9D7D89fF8fc1b5d8508fB75Cc094d",
    reader="0x922766ca6234cD49A483b5ee8D86cA3590D0Fb0E",
    exchange_router="0xBCB5eA3a84886Ce45FBBf09eBF0e883071cB2Dc8",
    router="0x3d472afcd66F954Fe4909EEcDd5c940e9a99290c",
    order_vault="0xe52B3700D17B45dE9de7205DEe4685B4B9EC612D",
    role_store="0x51Aa17ca59E9e9C3cEc3c3c05c2B35f473b35D39",
    referral_storage=ZERO_ADDRESS,  # GMX runs Botanix without one (its referral code allows it)
    event_emitter="0xAf2E131d483cedE068e21a9228aD91E623a989C2",
    multicall="0x4BaA24f93a657f0c1b4A0Ffc72B91011E35cA46b",
    subaccount_router="0xa1793126B6Dc2f7F254a6c0E2F8013D2180C0D10",
    api_url="https://botanix-api.gmxinfra.io",
)
AVALANCHE_FUJI = GmxDeployment(
    chain_id=43113,
    data_store="0xEA1BFb4Ea9A412dCCd63454AbC127431eBB0F0d4",
    reader="0xf82Cc6EB57F8FF86bc5c5e90B8BA83DbBFB517eE",
    exchange_router="0x0a458C96Ac0B2a130DA4BdF1aAdD4cb7Be036d11",
    router="0x5e7d61e4C52123ADF651961e4833aCc349b61491",
    order_vault="0x25D23e8E655727F2687CC808BB9589525A6F599B",
    role_store="0x19a8085537078e7847a332A76ABaDD5b02B1e736",
    referral_storage="0x192e82A18a4ab446dD9968f055431b60640B155D",
    event_emitter="0xc67D98AC5803aFD776958622CeEE332A0B2CabB9",
    multicall="0x966D1F5c54a714C6443205F0Ec49eEF81F10fdfD",
    subaccount_router="0xD5EE3ECAF5754CE5Ff74847d0caf094EBB12ed5e",
    api_url="https://synthetics-api-avax-fuji-upovm.ondigitalocean.app",
)
ARBITRUM_SEPOLIA = GmxDeployment(
    chain_id=421614,
    data_store="0xCF4c2C4c53157BcC01A596e3788fFF69cBBCD201",
    reader="0x4750376b9378294138Cf7B7D69a2d243f4940f71",
    exchange_router="0xEd50B2A1eF0C35DAaF08Da6486971180237909c3",
    router="0x72F13a44C8ba16a678CAD549F17bc9e06d2B8bD2",
    order_vault="0x1b8AC606de71686fd2a1AEDEcb6E0EFba28909a2",
    role_store="0x433E3C47885b929aEcE4149E3c835E565a20D95c",
    referral_storage="0xBbCdA58c228Bb29B5769778181c81Ac8aC546c11",
    event_emitter="0xa973c2692C1556E1a3d478e745e9a75624AEDc73",
    multicall="0xD84793ae65842fFac5C20Ab8eaBD699ea1FC79F3",
    subaccount_router="0xCF45A7E8bB46738f454eC6766631E5612DA90836",
    api_url="https://dolphin-app-a2dup.ondigitalocean.app",
)
PRESETS: Mapping[str, GmxDeployment] = {
    "arbitrum": ARBITRUM,
    "avalanche": AVALANCHE,
    "botanix": BOTANIX,
    "avalanche-fuji": AVALANCHE_FUJI,
    "arbitrum-sepolia": ARBITRUM_SEPOLIA,
}


# --- prices ----------------------------------------------------------------------------------


class PriceUnavailableError(VenueError):
    """No price source could price a token."""


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """GMX's Price.Props: USD (1e30) per smallest token unit, the low and the high end."""

    min: int
    max: int

    def __post_init__(self) -> None:
        if not 0 < self.min <= self.max:
            raise ValueError(f"price: need 0 < min <= max, got {self.min}, {self.max}")

    @property
    def mid(self) -> int:
        return (self.min + self.max) // 2


class PriceSource(Protocol):
    """Where prices come from: `prices(tokens, block)` prices every token or raises
    PriceUnavailableError naming the ones it could not price."""

    name: str

    async def prices(self, tokens: Sequence[str], *, block: int) -> dict[str, TokenPrice]: ...


class ChainlinkPriceSource:
    """On-chain prices: the Chainlink-compatible feed GMX's DataStore names for each token
    (PRICE_FEED), scaled by PRICE_FEED_MULTIPLIER as ChainlinkPriceFeedUtils does
    (answer * multiplier / 1e30); min = max. Read at the pinned block."""

    name = "chainlink"

    def __init__(self, multicall: Multicall, data_store: str, *, stable: Mapping[str, int] = {}):
        self._multicall = multicall
        self._data_store = data_store
        self._stable = dict(stable)  # token -> fixed price (1e30 per unit), e.g. for tests
        self._feeds: dict[str, tuple[str, int]] = {}

    async def prices(self, tokens: Sequence[str], *, block: int) -> dict[str, TokenPrice]:
        ds = self._data_store
        unknown = [t for t in tokens if t not in self._feeds and t not in self._stable]
        if unknown:
            calls: list[Call] = []
            for t in unknown:
                calls.append(Call(ds, _GET_ADDRESS.encode(data_key("PRICE_FEED", ("address", t)))))
                calls.append(
                    Call(ds, _GET_UINT.encode(data_key("PRICE_FEED_MULTIPLIER", ("address", t))))
                )
            results = await self._multicall.aggregate(calls, block=block)
            for i, t in enumerate(unknown):
                feed_r, mult_r = results[2 * i], results[2 * i + 1]
                if not (feed_r.success and mult_r.success):
                    continue
                feed = to_checksum_address(_GET_ADDRESS.decode(feed_r.data)[0])
                mult = int(_GET_UINT.decode(mult_r.data)[0])
                if feed != ZERO_ADDRESS and mult > 0:
                    self._feeds[t] = (feed, mult)
        out = {t: TokenPrice(p, p) for t, p in self._stable.items() if t in tokens}
        feeds = [t for t in tokens if t in self._feeds and t not in out]
        rounds = await self._multicall.aggregate(
            [Call(self._feeds[t][0], _LATEST_ROUND.encode()) for t in feeds], block=block
        )
        for t, r in zip(feeds, rounds, strict=True):
            if not r.success:
                continue
            answer = int(_LATEST_ROUND.decode(r.data)[1])
            price = answer * self._feeds[t][1] // FLOAT_PRECISION
            if price > 0:
                out[t] = TokenPrice(price, price)
        missing = [t for t in tokens if t not in out]
        if missing:
            raise PriceUnavailableError(f"chainlink: no usable price feed for {missing}")
        return out


class GmxApiPriceSource:
    """GMX's public price API (`{api_url}/prices/tickers`: minPrice and maxPrice per token,
    already in GMX units) over aiohttp. The API serves the latest prices: `block` is ignored."""

    name = "gmx-api"

    def __init__(self, api_url: str, *, timeout: float = 5.0) -> None:
        self.url = api_url.rstrip("/") + "/prices/tickers"
        self.timeout = timeout

    async def prices(self, tokens: Sequence[str], *, block: int) -> dict[str, TokenPrice]:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as s,
                s.get(self.url) as answer,
            ):
                answer.raise_for_status()
                tickers = await answer.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise PriceUnavailableError(f"gmx-api: {self.url} failed: {exc}") from None
        return self.parse(tickers, tokens)

    @staticmethod
    def parse(tickers: Any, tokens: Sequence[str]) -> dict[str, TokenPrice]:
        """The tickers answer -> prices of `tokens` (PriceUnavailableError for missing ones)."""
        if not isinstance(tickers, list):
            raise PriceUnavailableError("gmx-api: the tickers answer is not a list")
        by_address: dict[str, TokenPrice] = {}
        for entry in tickers:
            try:
                address = str(entry["tokenAddress"]).lower()
                by_address[address] = TokenPrice(int(entry["minPrice"]), int(entry["maxPrice"]))
            except (KeyError, TypeError, ValueError):
                continue
        out = {t: by_address[t.lower()] for t in tokens if t.lower() in by_address}
        missing = [t for t in tokens if t not in out]
        if missing:
            raise PriceUnavailableError(f"gmx-api: no price for {missing}")
        return out


class FallbackPriceSource:
    """The first source's prices, with the tokens it could not price asked of the next."""

    def __init__(self, *sources: PriceSource) -> None:
        if not sources:
            raise ValueError("FallbackPriceSource needs at least one source")
        self.sources = sources
        self.name = "+".join(s.name for s in sources)

    async def prices(self, tokens: Sequence[str], *, block: int) -> dict[str, TokenPrice]:
        out: dict[str, TokenPrice] = {}
        errors: list[str] = []
        for source in self.sources:
            wanted = [t for t in tokens if t not in out]
            if not wanted:
                break
            try:
                out.update(await source.prices(wanted, block=block))
            except PriceUnavailableError as exc:
                errors.append(str(exc))
                for t in wanted:  # a source may price some tokens one by one
                    try:
                        out.update(await source.prices([t], block=block))
                    except PriceUnavailableError:
                        continue
        missing = [t for t in tokens if t not in out]
        if missing:
            raise PriceUnavailableError(f"no source priced {missing}: " + "; ".join(errors))
        return out


# --- raw shapes and pure mapping -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MarketTokens:
    """Reader.getMarket: a market's tokens, with their decimals and symbols."""

    market: str
    index: Token
    long: Token
    short: Token

    def token(self, address: str) -> Token:
        for t in (self.long, self.short, self.index):
            if t.address == address:
                return t
        raise VenueError(f"market {self.market}: {address} is not one of its tokens")


@dataclass(frozen=True, slots=True)
class RawPosition:
    """Position.Props as Reader returns it (raw GMX units)."""

    key: str
    account: str
    market: str
    collateral_token: str
    size_in_usd: int
    size_in_tokens: int
    collateral_amount: int
    pending_impact_amount: int
    is_long: bool
    increased_at_time: int

    @classmethod
    def decode(cls, props: Sequence[Any]) -> RawPosition:
        (account, market, collateral), numbers, (is_long,) = props
        account, market, collateral = (
            to_checksum_address(account),
            to_checksum_address(market),
            to_checksum_address(collateral),
        )
        return cls(
            key="0x" + position_key(account, market, collateral, bool(is_long)).hex(),
            account=account,
            market=market,
            collateral_token=collateral,
            size_in_usd=int(numbers[0]),
            size_in_tokens=int(numbers[1]),
            collateral_amount=int(numbers[2]),
            pending_impact_amount=int(numbers[3]),
            is_long=bool(is_long),
            increased_at_time=int(numbers[8]),
        )


@dataclass(frozen=True, slots=True)
class RawPositionInfo:
    """What the adapter uses of Reader.getPositionInfo (closing the whole position)."""

    position: RawPosition
    collateral_price_min: int
    total_cost_amount: int
    position_fee_amount: int
    borrowing_fee_usd: int
    funding_fee_amount: int
    price_impact_usd: int
    total_impact_usd: int
    base_pnl_usd: int
    price_impact_diff_usd: int = 0  # what Reader cut off total_impact_usd at its own cap

    @classmethod
    def decode(cls, data: bytes) -> RawPositionInfo:
        ((_key, position, fees, execution, base_pnl, _uncapped, _after),) = _POSITION_INFO.decode(
            data
        )
        funding, borrowing, collateral_price = fees[2], fees[3], fees[6]
        return cls(
            position=RawPosition.decode(position),
            collateral_price_min=int(collateral_price[0]),
            total_cost_amount=int(fees[15]),
            position_fee_amount=int(fees[13]),
            borrowing_fee_usd=int(borrowing[0]),
            funding_fee_amount=int(funding[0]),
            price_impact_usd=int(execution[0]),
            total_impact_usd=int(execution[4]),
            base_pnl_usd=int(base_pnl),
            price_impact_diff_usd=int(execution[5]),
        )

    @property
    def collateral_usd(self) -> int:
        return self.position.collateral_amount * self.collateral_price_min

    @property
    def total_cost_usd(self) -> int:
        return self.total_cost_amount * self.collateral_price_min


@dataclass(frozen=True, slots=True)
class MarketParams:
    """The DataStore values behind one market's liquidation test and pool state (raw)."""

    min_collateral_factor: int
    min_collateral_factor_for_liquidation: int
    max_impact_factor_for_liquidations: int
    position_fee_factor: int
    pool_long: int
    pool_short: int
    open_interest_in_tokens_long: int
    open_interest_in_tokens_short: int
    open_interest_long: int
    open_interest_short: int
    funding_factor_per_second: int

    @property
    def maintenance_factor(self) -> int:
        return max(self.min_collateral_factor, self.min_collateral_factor_for_liquidation)

    @classmethod
    def from_values(cls, values: Sequence[int], funding: int) -> MarketParams:
        oi_tokens = values[6:10]
        oi_usd = values[10:14]
        return cls(
            min_collateral_factor=values[0],
            min_collateral_factor_for_liquidation=values[1],
            max_impact_factor_for_liquidations=values[2],
            position_fee_factor=values[3],
            pool_long=values[4],
            pool_short=values[5],
            open_interest_in_tokens_long=oi_tokens[0] + oi_tokens[1],
            open_interest_in_tokens_short=oi_tokens[2] + oi_tokens[3],
            open_interest_long=oi_usd[0] + oi_usd[1],
            open_interest_short=oi_usd[2] + oi_usd[3],
            funding_factor_per_second=funding,
        )


def funding_rates(params: MarketParams) -> tuple[Decimal, Decimal]:
    """Per-second funding for (longs, shorts), positive: pays. GMX: the side named by the sign
    of the saved funding factor pays it on its size; the other side shares that amount."""
    rate = factor(abs(params.funding_factor_per_second))
    longs_pay = params.funding_factor_per_second > 0
    payer, receiver = (
        (params.open_interest_long, params.open_interest_short)
        if longs_pay
        else (params.open_interest_short, params.open_interest_long)
    )
    earned = Decimal(0) if receiver == 0 else -CONTEXT.divide(rate * payer, Decimal(receiver))
    return (rate, earned) if longs_pay else (earned, rate)


def map_market(
    tokens: MarketTokens,
    index_price: TokenPrice,
    params: MarketParams,
    min_collateral_usd: int,
    *,
    venue: str = NAME,
) -> Market:
    """A GMX market as a model Market (see the module's docstring)."""
    long_rate, short_rate = funding_rates(params)
    return Market(
        venue=venue,
        market_id=tokens.market,
        index_token=tokens.index,
        usd_decimals=USD_DECIMALS,
        mark_price=Price.gmx(index_price.mid, tokens.index.decimals),
        maintenance_rate=factor(params.maintenance_factor),
        basis=Basis.ENTRY,
        strictness=Strictness.LT,
        min_collateral_usd=Usd(min_collateral_usd, USD_DECIMALS),
        close_fee_rate=Decimal(0),
        liquidation_fee_rate=Decimal(0),
        funding_rate_long=long_rate,
        funding_rate_short=short_rate,
        close_quote=CloseQuote(fee_rate=factor(params.position_fee_factor), impact_rate=Decimal(0)),
    )


def entry_price(size_in_usd: int, size_in_tokens: int, token_decimals: int, is_long: bool) -> Price:
    """sizeInUsd / sizeInTokens with 18 extra digits, rounded up for a long, down for a short
    (a higher entry lowers a long's pnl and raises its entry-basis requirement)."""
    scaled = size_in_usd * 10**ENTRY_EXTRA_DIGITS
    raw = -(-scaled // size_in_tokens) if is_long else scaled // size_in_tokens
    return Price(raw, 30 - token_decimals + ENTRY_EXTRA_DIGITS)


def map_position(
    info: RawPositionInfo,
    tokens: MarketTokens,
    market: Market,
    params: MarketParams,
    *,
    venue: str = NAME,
) -> Position:
    """A GMX position as a model Position whose equity is GMX's remaining collateral."""
    raw = info.position
    index = tokens.index
    collateral_token = tokens.token(raw.collateral_token)
    entry = entry_price(raw.size_in_usd, raw.size_in_tokens, index.decimals, raw.is_long)
    q = Decimal(raw.size_in_tokens).scaleb(-index.decimals, CONTEXT)
    move = CONTEXT.subtract(market.mark_price.value, entry.value)
    model_pnl = CONTEXT.multiply(q, move if raw.is_long else CONTEXT.minus(move))
    # Reader floors totalImpactUsd at MAX_POSITION_IMPACT_FACTOR (the excess is in
    # priceImpactDiffUsd); the liquidation test floors the uncapped impact at its own factor
    impact = capped_price_impact(
        info.total_impact_usd - info.price_impact_diff_usd,
        raw.size_in_usd,
        params.max_impact_factor_for_liquidations,
    )
    gmx_side = info.base_pnl_usd + impact - info.total_cost_usd  # what GMX adds to collateral
    fees_value = CONTEXT.subtract(model_pnl, Decimal(gmx_side).scaleb(-30, CONTEXT))
    return Position(
        venue=venue,
        key=raw.key,
        account=raw.account,
        market_id=raw.market,
        side=Side.LONG if raw.is_long else Side.SHORT,
        size=TokenAmount(raw.size_in_tokens, index.decimals),
        entry_price=entry,
        collateral_token=collateral_token,
        collateral=TokenAmount(raw.collateral_amount, collateral_token.decimals),
        collateral_price=Price.gmx(info.collateral_price_min, collateral_token.decimals),
        collateral_usd=Usd(info.collateral_usd, USD_DECIMALS),
        fees=Usd.from_value_ceil(fees_value, USD_DECIMALS),
    )


# --- order calldata --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateOrder:
    """IBaseOrderUtils.CreateOrderParams, the fields the adapter sets (the rest are zero)."""

    receiver: str
    cancellation_receiver: str
    market: str
    initial_collateral_token: str
    order_type: OrderType
    is_long: bool
    size_delta_usd: int = 0
    initial_collateral_delta_amount: int = 0
    acceptable_price: int = 0
    execution_fee: int = 0
    min_output_amount: int = 0
    should_unwrap_native_token: bool = False
    auto_cancel: bool = False
    referral_code: bytes = bytes(32)
    data_list: tuple[bytes, ...] = ()

    def as_tuple(self) -> tuple[Any, ...]:
        addresses: tuple[Any, ...] = (
            self.receiver,
            self.cancellation_receiver,
            ZERO_ADDRESS,  # callbackContract
            ZERO_ADDRESS,  # uiFeeReceiver
            self.market,
            self.initial_collateral_token,
            [],  # swapPath
        )
        numbers = (
            self.size_delta_usd,
            self.initial_collateral_delta_amount,
            0,  # triggerPrice
            self.acceptable_price,
            self.execution_fee,
            0,  # callbackGasLimit
            self.min_output_amount,
            0,  # validFromTime
        )
        return (
            addresses,
            numbers,
            int(self.order_type),
            0,  # decreasePositionSwapType: NoSwap
            self.is_long,
            self.should_unwrap_native_token,
            self.auto_cancel,
            self.referral_code,
            list(self.data_list),
        )


def encode_create_order(order: CreateOrder) -> bytes:
    """ExchangeRouter.createOrder calldata."""
    return _CREATE_ORDER.encode(order.as_tuple())


def decode_create_order(data: bytes) -> CreateOrder:
    """ExchangeRouter.createOrder calldata back to a CreateOrder."""
    (params,) = _CREATE_ORDER.decode_input(data)
    return create_order_of(params)


def create_order_of(params: Sequence[Any]) -> CreateOrder:
    """A decoded CreateOrderParams tuple (ExchangeRouter's or SubaccountRouter's createOrder)
    as a CreateOrder."""
    addresses, numbers, order_type, _swap, is_long, unwrap, auto, referral, data_list = params
    return CreateOrder(
        receiver=to_checksum_address(addresses[0]),
        cancellation_receiver=to_checksum_address(addresses[1]),
        market=to_checksum_address(addresses[4]),
        initial_collateral_token=to_checksum_address(addresses[5]),
        order_type=OrderType(order_type),
        is_long=bool(is_long),
        size_delta_usd=int(numbers[0]),
        initial_collateral_delta_amount=int(numbers[1]),
        acceptable_price=int(numbers[3]),
        execution_fee=int(numbers[4]),
        min_output_amount=int(numbers[6]),
        should_unwrap_native_token=bool(unwrap),
        auto_cancel=bool(auto),
        referral_code=bytes(referral),
        data_list=tuple(bytes(d) for d in data_list),
    )


def decode_gmx_error(data: bytes | str | None) -> RevertReason:
    """GMX revert data, decoded: custom errors of ExchangeRouter and SubaccountRouter, the
    GMX Errors we ship, ERC-20 errors."""
    return decode_revert(
        data, [gmx_abi("ExchangeRouter"), gmx_abi("SubaccountRouter"), shipped_abi("TestUSDC")]
    )


def encode_simulation(
    calls: Sequence[bytes], prices: Mapping[str, TokenPrice], timestamp: int
) -> bytes:
    """ExchangeRouter.multicall calldata that creates an order and simulates its execution:
    `calls` (an order's own multicall: sendWnt, sendTokens, createOrder) followed by
    simulateExecuteLatestOrder(OracleUtils.SimulatePricesParams) with `prices` as the primary
    prices (Price.Props per token, tokens in address order) and `timestamp` as both the min and
    the max oracle timestamp."""
    tokens = sorted(prices, key=str.lower)
    params = (
        [to_checksum_address(t) for t in tokens],
        [(prices[t].min, prices[t].max) for t in tokens],
        timestamp,
        timestamp,
    )
    return _MULTICALL.encode([*calls, _SIMULATE_ORDER.encode(params)])


def order_key_of(logs: Sequence[Any], event_emitter: str) -> bytes | None:
    """The order key of the OrderCreated EventLog2 among a receipt's logs (LogEntry), if any."""
    emitter = event_emitter.lower()
    for entry in logs:
        topics = entry.topics
        if (
            entry.address.lower() == emitter
            and len(topics) >= 3
            and topics[0] == EVENT_LOG2_TOPIC
            and topics[1] == EVENT_ORDER_CREATED
        ):
            return bytes(topics[2])
    return None


def event_strings(data: bytes, log2: bool = True) -> dict[str, str]:
    """The stringItems of an EventLog1/EventLog2's data (e.g. OrderCancelled's "reason")."""
    try:
        _sender, _name, event = abi_decode(["address", "string", _EVENT_LOG_DATA], data)
    except (DecodingError, ValueError) as exc:
        raise VenueDecodeError(f"EventLog{2 if log2 else 1}: data does not decode: {exc}") from None
    items = event[6][0]
    return {str(k): str(v) for k, v in items}


# --- the adapter -----------------------------------------------------------------------------


_checksum = checked_address
_ok = call_data


def _uint(result: CallResult, what: str) -> int:
    return int(_GET_UINT.decode(_ok(result, what))[0])


ORDER_GONE_GRACE_BLOCKS = 20
"""Blocks an order may be missing from ORDER_LIST with no OrderExecuted or OrderCancelled log
found before it is taken as cancelled."""


@dataclass(slots=True)
class _Cache:
    markets: dict[str, MarketTokens] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    collateral: tuple[Token, ...] | None = None
    # the block of the last read and the prices it was priced at
    prices: tuple[int, dict[str, TokenPrice]] | None = None
    # orders seen gone from ORDER_LIST with no log of their fate, and the block first seen so
    gone: dict[bytes, int] = field(default_factory=dict)


class GmxVenue:
    """GMX v2 behind the Venue protocol; make one with `connect()`."""

    execution = Execution.DELAYED

    def __init__(
        self,
        rpc: JsonRpc,
        deployment: GmxDeployment,
        *,
        wnt: str,
        prices: PriceSource | str | None = None,
        name: str = NAME,
        wallet_token: str | None = None,
        slippage: Decimal = Decimal("0.01"),
        fee_margin: Decimal = Decimal("1.2"),
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_positions: int = DEFAULT_MAX_POSITIONS,
        multicall_code_override: bool = False,
        send_blocked: str | None = None,
    ) -> None:
        if not Decimal(0) <= slippage < Decimal(1):
            raise ValueError(f"gmx slippage must be in [0, 1), got {slippage}")
        if fee_margin < 1:
            raise ValueError(f"gmx fee_margin must be >= 1, got {fee_margin}")
        self.rpc = rpc
        self.deployment = deployment
        self.name = name
        self.wnt = wnt
        self.slippage = slippage
        self.fee_margin = fee_margin
        self.chunk_size = chunk_size
        self.max_positions = max_positions
        self.wallet_token = wallet_token or wnt
        self.send_blocked = send_blocked
        self._reads = Reads(rpc)
        self._meta = Multicall(
            rpc,
            address=deployment.multicall,
            chunk_size=1_000_000,
            code_override=multicall_code_override,
        )
        self._batches = Multicall(
            rpc,
            address=deployment.multicall,
            chunk_size=chunk_size,
            code_override=multicall_code_override,
        )
        self.prices = (
            prices if prices is not None and not isinstance(prices, str) else self._source(prices)
        )
        self._cache = _Cache()

    def _source(self, spec: str | None) -> PriceSource:
        """A price source from a spec: "chainlink" (default), "api", or a comma-separated
        fallback order such as "chainlink,api"."""
        sources: list[PriceSource] = []
        for name in (spec or "chainlink").split(","):
            name = name.strip()
            if name == "chainlink":
                sources.append(ChainlinkPriceSource(self._meta, self.deployment.data_store))
            elif name == "api":
                if not self.deployment.api_url:
                    raise VenueError("gmx prices: 'api' needs the deployment's api_url")
                sources.append(GmxApiPriceSource(self.deployment.api_url))
            else:
                raise VenueError(f"gmx prices: unknown source {name!r} (chainlink, api)")
        return sources[0] if len(sources) == 1 else FallbackPriceSource(*sources)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        rpc: JsonRpc,
        deployment: GmxDeployment | str,
        *,
        overrides: Mapping[str, str] | None = None,
        **options: Any,
    ) -> GmxVenue:
        """Check the deployment and read its wrapped native token (WNT).

        `deployment` is a GmxDeployment or a preset name ("arbitrum", "avalanche");
        `overrides` replaces addresses of it. The chain id must match. When the
        ExchangeRouter does not hold ROUTER_PLUGIN in the RoleStore (stale addresses), the venue
        still reads but refuses to build transactions, saying so. See __init__ for `options`.
        """
        if isinstance(deployment, str):
            try:
                deployment = PRESETS[deployment]
            except KeyError:
                raise VenueError(
                    f"gmx: unknown deployment {deployment!r} (presets: {sorted(PRESETS)})"
                ) from None
        if overrides:
            deployment = deployment.with_overrides(**overrides)
        checked = {
            f: _checksum(getattr(deployment, f), f"gmx {f}")
            for f in (
                "data_store",
                "reader",
                "exchange_router",
                "router",
                "order_vault",
                "role_store",
                "referral_storage",
                "event_emitter",
                "multicall",
            )
        }
        deployment = replace(deployment, **checked)  # type: ignore[arg-type]
        reads = Reads(rpc)
        chain_id = await reads.chain_id()
        if chain_id != deployment.chain_id:
            raise VenueError(
                f"gmx: the RPC is chain {chain_id}, the deployment is for chain "
                f"{deployment.chain_id}"
            )
        for f in ("data_store", "reader", "exchange_router", "role_store"):
            if not await reads.get_code(checked[f]):
                raise VenueError(f"gmx: no contract at the {f} address {checked[f]}")
        code_override = bool(options.get("multicall_code_override", False))
        meta = Multicall(rpc, address=deployment.multicall, code_override=code_override)
        first = await meta.aggregate(
            [
                Call(deployment.data_store, _GET_ADDRESS.encode(WNT)),
                Call(
                    deployment.role_store,
                    _HAS_ROLE.encode(deployment.exchange_router, ROUTER_PLUGIN),
                ),
            ],
            block="latest",
        )
        wnt = to_checksum_address(
            _GET_ADDRESS.decode(_ok(first[0], "DataStore.getAddress(WNT)"))[0]
        )
        plugin = bool(_HAS_ROLE.decode(_ok(first[1], "RoleStore.hasRole"))[0])
        blocked = None
        if not plugin:
            blocked = (
                f"gmx: the ExchangeRouter {deployment.exchange_router} does not hold the "
                f"ROUTER_PLUGIN role in RoleStore {deployment.role_store}: the address is stale "
                "(GMX redeploys its routers); set the current one in the config"
            )
            log.error("%s", blocked)
        options.setdefault("send_blocked", blocked)
        return cls(rpc, deployment, wnt=wnt, **options)

    # -- reading --------------------------------------------------------------------------------

    async def read(self, watch: Watch, *, block: int | None = None) -> VenueRead:
        """The watched accounts' GMX positions at `block` (default latest)."""
        accounts = [_checksum(a, "account") for a in watch.accounts]
        if len(set(accounts)) != len(accounts):
            raise VenueError("watch: an account is listed twice")
        wallet = _checksum(watch.wallet, "wallet") if watch.wallet else None
        wallet_token_address = (
            _checksum(watch.wallet_token, "watch.wallet_token")
            if watch.wallet_token
            else self.wallet_token
        )
        trips = self._meta.round_trips + self._batches.round_trips
        number, extra = await pin_block(self._reads, block)
        d = self.deployment
        mc = d.multicall
        calls = [
            Call(mc, _BLOCK_NUMBER.encode()),
            Call(mc, _BLOCK_TIME.encode()),
            Call(d.data_store, _GET_UINT.encode(MIN_COLLATERAL_USD)),
        ]
        if wallet is not None:
            calls.append(Call(wallet_token_address, _BALANCE_OF.encode(wallet)))
            calls.append(Call(mc, _ETH_BALANCE.encode(wallet)))
        for account in accounts:
            calls.append(
                Call(
                    d.reader,
                    _ACCOUNT_POSITIONS.encode(d.data_store, account, 0, self.max_positions),
                )
            )
        if watch.delegated:  # top-ups come from each account's wallet through the Router
            for account in accounts:
                calls.append(Call(wallet_token_address, _BALANCE_OF.encode(account)))
                calls.append(Call(wallet_token_address, _ALLOWANCE.encode(account, d.router)))
        meta = await self._meta.aggregate(calls, block=number)
        if int(_BLOCK_NUMBER.decode(_ok(meta[0], "getBlockNumber"))[0]) != number:
            raise VenueDecodeError(f"the batch pinned to block {number} ran at another block")
        block_time = int(_BLOCK_TIME.decode(_ok(meta[1], "getCurrentBlockTimestamp"))[0])
        min_collateral_usd = _uint(meta[2], "DataStore MIN_COLLATERAL_USD")
        at = 3
        wallet_token = await self._token(wallet_token_address, number)
        if wallet is not None:
            balance = int(_BALANCE_OF.decode(_ok(meta[3], "wallet balanceOf"))[0])
            native = int(_ETH_BALANCE.decode(_ok(meta[4], "wallet getEthBalance"))[0])
            if wallet_token_address == self.wnt:
                balance = native  # top-ups in the wrapped native token are paid in native value
            wallet_state = Wallet(
                wallet, wallet_token, wallet_token.amount(balance), TokenAmount(native, 18)
            )
            at = 5
        else:
            wallet_state = Wallet(
                ZERO_ADDRESS, wallet_token, wallet_token.amount(0), TokenAmount(0, 18)
            )
        funds: dict[str, TokenAmount] | None = None
        if watch.delegated:
            funds = {}
            tail = meta[at + len(accounts) :]
            for i, account in enumerate(accounts):
                held = _uint(tail[2 * i], f"{wallet_token.symbol}.balanceOf({account})")
                allowed = _uint(tail[2 * i + 1], f"{wallet_token.symbol}.allowance({account})")
                funds[account] = wallet_token.amount(min(held, allowed))
        raw_positions: list[RawPosition] = []
        for account, result in zip(accounts, meta[at : at + len(accounts)], strict=True):
            (props,) = _ACCOUNT_POSITIONS.decode(_ok(result, f"getAccountPositions({account})"))
            for p in props:
                pos = RawPosition.decode(p)
                if pos.size_in_usd > 0 and pos.size_in_tokens > 0:
                    raw_positions.append(pos)
        market_ids = sorted({p.market for p in raw_positions})
        issues: list[ReadIssue] = []
        markets, params, prices = await self._priced_markets(
            market_ids, number, min_collateral_usd, issues
        )
        self._cache.prices = (number, dict(prices))
        priced = [p for p in raw_positions if p.market in markets]
        infos = await self._position_infos(priced, prices, number)
        positions = []
        for info in infos:
            m = info.position.market
            positions.append(
                map_position(info, self._cache.markets[m], markets[m], params[m], venue=self.name)
            )
        pool = self._pool(market_ids, markets, params, prices)
        snapshot = Snapshot(
            block_number=number,
            block_time=block_time,
            wallet=wallet_state,
            markets=tuple(markets.values()),
            positions=tuple(positions),
            funds=funds,
        )
        trips = self._meta.round_trips + self._batches.round_trips - trips + extra
        return VenueRead(snapshot, pool, tuple(issues), round_trips=trips)

    async def snapshot(self, watch: Watch, *, block: int | None = None) -> Snapshot:
        return (await self.read(watch, block=block)).snapshot

    async def markets(self, *, block: int | None = None) -> tuple[Market, ...]:
        """Every market of the deployment with an index token (Reader.getMarkets; swap-only
        markets are left out), priced and modelled as `read` models them, at `block`."""
        number, _ = await pin_block(self._reads, block)
        d = self.deployment
        results = await self._meta.aggregate(
            [
                Call(d.reader, _GET_MARKETS.encode(d.data_store, 0, self.max_positions)),
                Call(d.data_store, _GET_UINT.encode(MIN_COLLATERAL_USD)),
            ],
            block=number,
        )
        (props,) = _GET_MARKETS.decode(_ok(results[0], "Reader.getMarkets"))
        ids = [to_checksum_address(p[0]) for p in props if p[1] != ZERO_ADDRESS]
        min_collateral_usd = _uint(results[1], "DataStore MIN_COLLATERAL_USD")
        markets, _, _ = await self._priced_markets(ids, number, min_collateral_usd, [])
        return tuple(markets.values())

    async def _priced_markets(
        self,
        market_ids: Sequence[str],
        number: int,
        min_collateral_usd: int,
        issues: list[ReadIssue],
    ) -> tuple[dict[str, Market], dict[str, MarketParams], dict[str, TokenPrice]]:
        """The markets at block `number` with their parameters and token prices; a market a
        price source cannot price is left out and named in `issues`."""
        await self._learn_markets(market_ids, number)
        params = await self._market_params(market_ids, number)
        token_list = sorted(
            {
                t.address
                for m in market_ids
                for t in (
                    self._cache.markets[m].index,
                    self._cache.markets[m].long,
                    self._cache.markets[m].short,
                )
            }
        )
        prices: dict[str, TokenPrice] = {}
        if token_list:
            try:
                prices = await self.prices.prices(token_list, block=number)
            except PriceUnavailableError as exc:
                issues.append(ReadIssue("price_source", self.prices.name, str(exc)))
                for t in token_list:
                    try:
                        prices.update(await self.prices.prices([t], block=number))
                    except PriceUnavailableError:
                        continue
        markets: dict[str, Market] = {}
        for m in market_ids:
            tokens = self._cache.markets[m]
            if not all(t.address in prices for t in (tokens.index, tokens.long, tokens.short)):
                issues.append(
                    ReadIssue(
                        "price_invalid",
                        m,
                        f"market {m} ({tokens.index.symbol}): a token has no price; its "
                        "positions are left out",
                    )
                )
                continue
            markets[m] = map_market(
                tokens, prices[tokens.index.address], params[m], min_collateral_usd, venue=self.name
            )
        return markets, params, prices

    async def _token(self, address: str, block: int | str) -> Token:
        found = self._cache.tokens.get(address)
        if found is None:
            await self._learn_tokens([address], block)
            found = self._cache.tokens[address]
        return found

    async def _learn_tokens(self, addresses: Sequence[str], block: int | str) -> None:
        new = [a for a in dict.fromkeys(addresses) if a not in self._cache.tokens]
        if not new:
            return
        calls = []
        for a in new:
            calls += [Call(a, _DECIMALS.encode()), Call(a, _SYMBOL.encode())]
        results = await self._meta.aggregate(calls, block=block)
        for i, a in enumerate(new):
            dec_r, sym_r = results[2 * i], results[2 * i + 1]
            if dec_r.success and len(dec_r.data) == 32:
                decimals = int(_DECIMALS.decode(dec_r.data)[0])
                symbol = str(_SYMBOL.decode(sym_r.data)[0]) if sym_r.success else a[:8]
            else:
                # synthetic index tokens have no contract: GMX records their decimals nowhere
                # on chain the adapter reads, so they are taken as 18 (override: register_token)
                decimals, symbol = 18, a[:8]
            self._cache.tokens[a] = Token(a, symbol, decimals)

    async def collateral_tokens(self) -> tuple[Token, ...]:
        """Every long and short token of the deployment's markets (Reader.getMarkets), in the
        order GMX lists the markets; learnt once."""
        if self._cache.collateral is None:
            d = self.deployment
            data = await self._reads.eth_call(
                d.reader, _GET_MARKETS.encode(d.data_store, 0, self.max_positions)
            )
            (props,) = _GET_MARKETS.decode(data)
            addresses = [
                to_checksum_address(a) for p in props for a in (p[2], p[3]) if a != ZERO_ADDRESS
            ]
            await self._learn_tokens(addresses, "latest")
            self._cache.collateral = tuple(self._cache.tokens[a] for a in dict.fromkeys(addresses))
        return self._cache.collateral

    def register_token(self, token: Token) -> None:
        """Declare a token's decimals and symbol (synthetic index tokens have no contract)."""
        self._cache.tokens[_checksum(token.address, "token")] = token

    async def _learn_markets(self, market_ids: Sequence[str], block: int | str) -> None:
        new = [m for m in market_ids if m not in self._cache.markets]
        if not new:
            return
        d = self.deployment
        results = await self._meta.aggregate(
            [Call(d.reader, _GET_MARKET.encode(d.data_store, m)) for m in new], block=block
        )
        raw: dict[str, tuple[str, str, str]] = {}
        for m, r in zip(new, results, strict=True):
            (props,) = _GET_MARKET.decode(_ok(r, f"Reader.getMarket({m})"))
            raw[m] = (
                to_checksum_address(props[1]),
                to_checksum_address(props[2]),
                to_checksum_address(props[3]),
            )
        await self._learn_tokens([t for triple in raw.values() for t in triple], block)
        tokens = self._cache.tokens
        for m, (index, long_token, short_token) in raw.items():
            self._cache.markets[m] = MarketTokens(
                m, tokens[index], tokens[long_token], tokens[short_token]
            )

    async def _market_params(
        self, market_ids: Sequence[str], block: int
    ) -> dict[str, MarketParams]:
        if not market_ids:
            return {}
        ds = self.deployment.data_store
        calls: list[Call] = []
        sizes: list[int] = []
        for m in market_ids:
            t = self._cache.markets[m]
            keys = market_keys(m, t.long.address, t.short.address)
            sizes.append(len(keys))
            calls += [Call(ds, _GET_UINT.encode(k)) for k in keys]
            calls.append(Call(ds, _GET_INT.encode(funding_key(m))))
        results = await self._meta.aggregate(calls, block=block)
        out: dict[str, MarketParams] = {}
        at = 0
        for m, n in zip(market_ids, sizes, strict=True):
            values = [_uint(r, f"DataStore value of market {m}") for r in results[at : at + n]]
            funding = int(_GET_INT.decode(_ok(results[at + n], f"funding of {m}"))[0])
            out[m] = MarketParams.from_values(values, funding)
            at += n + 1
        return out

    async def _position_infos(
        self, positions: Sequence[RawPosition], prices: Mapping[str, TokenPrice], block: int
    ) -> list[RawPositionInfo]:
        d = self.deployment
        calls = []
        for p in positions:
            t = self._cache.markets[p.market]
            market_prices = tuple(
                (prices[x.address].min, prices[x.address].max) for x in (t.index, t.long, t.short)
            )
            calls.append(
                Call(
                    d.reader,
                    _POSITION_INFO.encode(
                        d.data_store,
                        d.referral_storage,
                        bytes.fromhex(p.key[2:]),
                        market_prices,
                        0,
                        ZERO_ADDRESS,
                        True,
                    ),
                )
            )
        results = await self._batches.aggregate(calls, block=block) if calls else []
        return [
            RawPositionInfo.decode(_ok(r, f"Reader.getPositionInfo({p.key})"))
            for p, r in zip(positions, results, strict=True)
        ]

    def _pool(
        self,
        market_ids: Sequence[str],
        markets: Mapping[str, Market],
        params: Mapping[str, MarketParams],
        prices: Mapping[str, TokenPrice],
    ) -> PoolState | None:
        if not markets:
            return None
        liquidity = 0
        reserved = 0
        oi: list[OpenInterest] = []
        for m in market_ids:
            if m not in markets:
                continue
            t, p = self._cache.markets[m], params[m]
            liquidity += p.pool_long * prices[t.long.address].min
            liquidity += p.pool_short * prices[t.short.address].min
            reserved += p.open_interest_long + p.open_interest_short
            oi.append(
                OpenInterest(
                    market_id=m,
                    long=TokenAmount(p.open_interest_in_tokens_long, t.index.decimals),
                    short=TokenAmount(p.open_interest_in_tokens_short, t.index.decimals),
                    funding_rate=factor(p.funding_factor_per_second),
                )
            )
        return PoolState(
            liquidity=Usd(liquidity, USD_DECIMALS),
            reserved=Usd(reserved, USD_DECIMALS),
            shares=None,
            open_interest=tuple(oi),
        )

    # -- fees -----------------------------------------------------------------------------------

    async def gas_params(self, block: int | str = "latest") -> GasParams:
        """The DataStore's execution-fee estimation values."""
        ds = self.deployment.data_store
        keys = [
            ESTIMATED_GAS_FEE_BASE_AMOUNT_V2_1,
            ESTIMATED_GAS_FEE_PER_ORACLE_PRICE,
            ESTIMATED_GAS_FEE_MULTIPLIER_FACTOR,
            INCREASE_ORDER_GAS_LIMIT,
            DECREASE_ORDER_GAS_LIMIT,
            SINGLE_SWAP_GAS_LIMIT,
        ]
        results = await self._meta.aggregate(
            [Call(ds, _GET_UINT.encode(k)) for k in keys], block=block
        )
        v = [_uint(r, "DataStore execution-fee key") for r in results]
        return GasParams(*v)

    async def gas_price(self) -> int:
        raw = await self._reads.request("eth_gasPrice", [])
        if not isinstance(raw, str):
            raise VenueError(f"eth_gasPrice: not a quantity: {raw!r}")
        return int(raw, 16)

    async def estimate_execution_fee(
        self, order_type: OrderType, gas_price: int | None = None
    ) -> int:
        """The execution fee to send now for `order_type` (gas price: the node's, or given)."""
        price = await self.gas_price() if gas_price is None else gas_price
        return execution_fee(await self.gas_params(), order_type, price, margin=self.fee_margin)

    async def reprice(self, data: bytes, value: int, max_fee_per_gas: int) -> tuple[bytes, int]:
        """A multicall of ours with its execution fee recomputed for `max_fee_per_gas` (never
        lowered): the new calldata and value. Anything else is returned unchanged."""
        if data[:4] != _MULTICALL.selector:
            return data, value
        (inner,) = _MULTICALL.decode_input(data)
        inner = [bytes(x) for x in inner]
        create_at = next((i for i, x in enumerate(inner) if x[:4] == _CREATE_ORDER.selector), None)
        if create_at is None:
            return data, value
        order = decode_create_order(inner[create_at])
        fee = execution_fee(
            await self.gas_params(), order.order_type, max_fee_per_gas, margin=self.fee_margin
        )
        if fee <= order.execution_fee:
            return data, value
        extra = fee - order.execution_fee
        for i, x in enumerate(inner):
            if x[:4] == _SEND_WNT.selector:
                receiver, amount = _SEND_WNT.decode_input(x)
                inner[i] = _SEND_WNT.encode(receiver, int(amount) + extra)
                break
        else:
            raise VenueError("reprice: the multicall has no sendWnt to raise the fee in")
        inner[create_at] = encode_create_order(replace(order, execution_fee=fee))
        return _MULTICALL.encode(inner), value + extra

    # -- acting ---------------------------------------------------------------------------------

    async def build(self, action: Action, snapshot: Snapshot, *, sender: str) -> TxPlan:
        """The transactions for `action` (see the module's docstring). GMX orders act for their
        sender: the keeper can act only on its own positions."""
        sender = _checksum(sender, "sender")
        if action.venue != self.name:
            raise VenueError(f"{action.kind}: action is for venue {action.venue}, not {self.name}")
        if isinstance(action, Alert):
            return TxPlan(action, sender, (), execution=Execution.DELAYED)
        if self.send_blocked:
            raise VenueError(self.send_blocked)
        if isinstance(action, Withdraw):
            raise VenueError(f"withdraw {action.key}: not supported on GMX by this keeper")
        d = self.deployment
        account = _checksum(action.account, "account")
        delegated = account != sender
        if delegated and d.subaccount_router is None:
            raise VenueError(
                f"{action.kind} {action.key}: {sender} cannot act on a position of {account}: "
                "this GMX deployment names no SubaccountRouter"
            )
        if isinstance(action, TopUp) and action.scope is not Scope.POSITION:
            raise VenueError(f"top_up {action.key}: GMX has no cross accounts")
        try:
            position = snapshot.position(self.name, action.key)
        except KeyError:
            raise VenueError(f"{action.kind}: no position {action.key} in the snapshot") from None
        market = snapshot.market_of(position)
        raw = await self._current(position)
        gas = await self.gas_params()
        gas_price = await self.gas_price()
        is_long = raw.is_long
        if isinstance(action, TopUp):
            token = raw.collateral_token
            if action.token.address.lower() != token.lower():
                raise VenueError(
                    f"top_up {action.key}: token {action.token.address} is not the position's "
                    f"collateral {token}"
                )
            amount = action.amount.raw
            if amount <= 0 or action.amount.decimals != position.collateral.decimals:
                raise VenueError(f"top_up {action.key}: amount must be positive, in {token}")
            fee = execution_fee(gas, OrderType.MARKET_INCREASE, gas_price, margin=self.fee_margin)
            order = CreateOrder(
                receiver=account,
                cancellation_receiver=account,
                market=raw.market,
                initial_collateral_token=token,
                order_type=OrderType.MARKET_INCREASE,
                is_long=is_long,
                initial_collateral_delta_amount=amount,
                acceptable_price=MAX_UINT256 if is_long else 0,
                execution_fee=fee,
            )
            if delegated:
                return await self._subaccount_top_up(action, sender, order, position)
            native = token == self.wnt
            inner = [_SEND_WNT.encode(d.order_vault, fee + amount if native else fee)]
            if not native:
                inner.append(_SEND_TOKENS.encode(token, d.order_vault, amount))
            inner.append(encode_create_order(order))
            step = TxRequest(
                d.exchange_router,
                _MULTICALL.encode(inner),
                value=fee + amount if native else fee,
                description=(
                    f"GMX MarketIncrease (top-up) {position.collateral_token.symbol} "
                    f"{action.amount} on {self._label(position)}, execution fee {fee} wei"
                ),
            )
            steps: list[TxRequest] = [step]
            approvals = 0
            if not native:
                (allowed,) = _ALLOWANCE.decode(
                    await self._reads.eth_call(token, _ALLOWANCE.encode(sender, d.router))
                )
                if int(allowed) < amount:
                    steps.insert(
                        0,
                        TxRequest(
                            token,
                            _APPROVE.encode(d.router, amount),
                            description=f"approve GMX Router {d.router} to take {action.amount}",
                        ),
                    )
                    approvals = 1
            return TxPlan(
                action, sender, tuple(steps), approvals=approvals, execution=Execution.DELAYED
            )
        size_delta = raw.size_in_usd
        text = "close"
        if isinstance(action, Reduce):
            delta = action.size_delta
            if delta.decimals != position.size.decimals or not 0 < delta.raw < raw.size_in_tokens:
                raise VenueError(
                    f"reduce {action.key}: size_delta {delta} must be positive and less than "
                    f"the position's size {position.size} (use Close)"
                )
            size_delta = raw.size_in_usd * delta.raw // raw.size_in_tokens
            text = f"reduce by {delta}"
            if await self._becomes_close(raw, size_delta):
                size_delta, text = raw.size_in_usd, f"reduce by {delta} (GMX will close it all)"
        else:
            assert isinstance(action, Close)
        fee = execution_fee(gas, OrderType.MARKET_DECREASE, gas_price, margin=self.fee_margin)
        acceptable = self._acceptable_decrease_price(market.mark_price.raw, is_long)
        order = CreateOrder(
            receiver=account,
            cancellation_receiver=account,
            market=raw.market,
            initial_collateral_token=raw.collateral_token,
            order_type=OrderType.MARKET_DECREASE,
            is_long=is_long,
            size_delta_usd=size_delta,
            acceptable_price=acceptable,
            execution_fee=fee,
            should_unwrap_native_token=raw.collateral_token == self.wnt,
        )
        description = (
            f"GMX MarketDecrease ({text}) {self._label(position)}, acceptable price "
            f"{acceptable}, execution fee {fee} wei"
        )
        if delegated:
            step = self._subaccount_step(order, account, f"{description}, as subaccount {sender}")
        else:
            inner = [_SEND_WNT.encode(d.order_vault, fee), encode_create_order(order)]
            step = TxRequest(
                d.exchange_router, _MULTICALL.encode(inner), value=fee, description=description
            )
        return TxPlan(action, sender, (step,), execution=Execution.DELAYED)

    def _subaccount_step(self, order: CreateOrder, account: str, description: str) -> TxRequest:
        """SubaccountRouter.multicall(sendWnt(OrderVault, fee), createOrder(account, order)):
        the subaccount pays the execution fee; GMX takes an increase order's collateral from
        the account's wallet through the Router and pays proceeds only to the account."""
        router = self._subaccount_router()
        inner = [
            _SUB_SEND_WNT.encode(self.deployment.order_vault, order.execution_fee),
            _SUB_CREATE_ORDER.encode(account, order.as_tuple()),
        ]
        return TxRequest(
            router, _SUB_MULTICALL.encode(inner), value=order.execution_fee, description=description
        )

    async def _subaccount_top_up(
        self, action: TopUp, sender: str, order: CreateOrder, position: Position
    ) -> TxPlan:
        """A top-up sent by subaccount `sender`: paid from the account's wallet, which must
        hold the amount and allow GMX's Router to take it (the account approves it, once, with
        its own key: `keeper gmx subaccount`)."""
        token, account, amount = order.initial_collateral_token, order.receiver, action.amount.raw
        router = self.deployment.router
        results = await self._meta.aggregate(
            [
                Call(token, _BALANCE_OF.encode(account)),
                Call(token, _ALLOWANCE.encode(account, router)),
            ],
            block="latest",
        )
        balance = _uint(results[0], f"{token}.balanceOf({account})")
        allowed = _uint(results[1], f"{token}.allowance({account}, Router)")
        if balance < amount or allowed < amount:
            raise VenueError(
                f"top_up {action.key}: {account} can pay {min(balance, allowed)} of the "
                f"{amount} needed (balance {balance}, allowance to GMX Router {router} "
                f"{allowed}); the trader approves the Router with its own key"
            )
        step = self._subaccount_step(
            order,
            account,
            f"GMX MarketIncrease (top-up) {position.collateral_token.symbol} {action.amount} "
            f"on {self._label(position)} from {account}'s wallet, as subaccount {sender}, "
            f"execution fee {order.execution_fee} wei",
        )
        return TxPlan(action, sender, (step,), execution=Execution.DELAYED)

    def _acceptable_decrease_price(self, mark: int, is_long: bool) -> int:
        """A long sells: at least mark * (1 - slippage); a short buys: at most mark * (1 + s)."""
        scale = 10**18
        s = int(self.slippage.scaleb(18, CONTEXT))
        if is_long:
            return mark * (scale - s) // scale
        return -(-mark * (scale + s) // scale)

    async def _becomes_close(self, raw: RawPosition, size_delta: int) -> bool:
        """GMX closes the whole position when what a decrease leaves is under
        MIN_POSITION_SIZE_USD (DecreasePositionUtils; the collateral variant of that rule
        depends on execution prices and is left to GMX)."""
        results = await self._meta.aggregate(
            [Call(self.deployment.data_store, _GET_UINT.encode(MIN_POSITION_SIZE_USD))],
            block="latest",
        )
        min_size = _uint(results[0], "DataStore MIN_POSITION_SIZE_USD")
        return raw.size_in_usd - size_delta < min_size

    async def _current(self, position: Position) -> RawPosition:
        d = self.deployment
        data = await self._reads.eth_call(
            d.reader, _GET_POSITION.encode(d.data_store, bytes.fromhex(position.key[2:]))
        )
        (props,) = _GET_POSITION.decode(data)
        raw = RawPosition.decode(props)
        if raw.size_in_usd == 0 or raw.key.lower() != position.key.lower():
            raise VenueError(f"position {position.key} is gone (closed or liquidated)")
        return raw

    def _label(self, position: Position) -> str:
        return f"{position.side.value} {position.market_id} {position.key}"

    # -- subaccounts ---------------------------------------------------------------------------

    def _subaccount_router(self) -> str:
        router = self.deployment.subaccount_router
        if router is None:
            raise VenueError(
                f"GMX deployment on chain {self.deployment.chain_id} names no SubaccountRouter "
                "(set venue.gmx.subaccount_router)"
            )
        return router

    async def delegation(
        self, account: str, delegate: str, *, token: str | None = None
    ) -> Delegation:
        """`delegate` as a subaccount of `account`, from the DataStore at the latest block:
        in the account's subaccount list, order actions left (SUBACCOUNT_ORDER_ACTION: every
        createOrder, updateOrder and cancelOrder through SubaccountRouter counts one), expiry,
        and the SubaccountRouter not disabled. With `token`, `top_up_left` is what the account's
        wallet can pay into positions: its balance, within its allowance to GMX's Router (the
        SubaccountRouter takes increase orders' collateral from the account through it)."""
        account = _checksum(account, "account")
        delegate = _checksum(delegate, "subaccount")
        d = self.deployment
        ds = d.data_store
        listed, allowed_key, used_key, expiry_key, _ = subaccount_keys(account, delegate)
        disabled = data_key("SUBACCOUNT_FEATURE_DISABLED", ("address", self._subaccount_router()))
        calls = [
            Call(ds, _CONTAINS_ADDRESS.encode(listed, delegate)),
            Call(ds, _GET_UINT.encode(allowed_key)),
            Call(ds, _GET_UINT.encode(used_key)),
            Call(ds, _GET_UINT.encode(expiry_key)),
            Call(ds, _GET_BOOL.encode(disabled)),
            Call(d.multicall, _BLOCK_TIME.encode()),
            Call(
                ds,
                _GET_BYTES32.encode(
                    data_key(
                        "SUBACCOUNT_INTEGRATION_ID", ("address", account), ("address", delegate)
                    )
                ),
            ),
        ]
        if token is not None:
            token = _checksum(token, "token")
            calls += [
                Call(token, _BALANCE_OF.encode(account)),
                Call(token, _ALLOWANCE.encode(account, d.router)),
            ]
        results = await self._meta.aggregate(calls, block="latest")
        (is_listed,) = _CONTAINS_ADDRESS.decode(_ok(results[0], "DataStore.containsAddress"))
        allowed = _uint(results[1], "DataStore MAX_ALLOWED_SUBACCOUNT_ACTION_COUNT")
        used = _uint(results[2], "DataStore SUBACCOUNT_ACTION_COUNT")
        expires_at = _uint(results[3], "DataStore SUBACCOUNT_EXPIRES_AT")
        (is_disabled,) = _GET_BOOL.decode(_ok(results[4], "DataStore.getBool"))
        now = _uint(results[5], "Multicall3.getCurrentBlockTimestamp")
        (integration,) = _GET_BYTES32.decode(_ok(results[6], "DataStore SUBACCOUNT_INTEGRATION_ID"))
        integration_off = False
        if any(integration):  # GMX refuses every action of a grant whose integration it disabled
            (integration_off,) = _GET_BOOL.decode(
                await self._reads.eth_call(
                    ds,
                    _GET_BOOL.encode(
                        data_key("SUBACCOUNT_INTEGRATION_DISABLED", ("bytes32", integration))
                    ),
                )
            )
        left = max(allowed - used, 0)
        problems: list[str] = []
        if not is_listed:
            problems.append(f"{delegate} is not a subaccount of {account} (addSubaccount)")
        if is_disabled:
            problems.append(f"GMX has disabled its SubaccountRouter {self._subaccount_router()}")
        if integration_off:
            problems.append(f"GMX has disabled the grant's integration id 0x{integration.hex()}")
        problems += limit_problems(
            left, expires_at, now, actions="order", used=f" ({used} of {allowed} used)"
        )
        top_up_left = None
        if token is not None:
            decimals = (await self._token(token, "latest")).decimals
            balance = _uint(results[7], f"{token}.balanceOf")
            allowance = _uint(results[8], f"{token}.allowance")
            top_up_left = TokenAmount(min(balance, allowance), decimals)
        return Delegation(
            account=account,
            delegate=delegate,
            active=is_listed
            and not (is_disabled or integration_off)
            and left > 0
            and now <= expires_at,
            actions_left=left,
            expires_at=expires_at,
            top_up_left=top_up_left,
            problems=tuple(problems),
        )

    async def delegation_setup(
        self,
        account: str,
        delegate: str,
        *,
        max_actions: int,
        expires_at: int,
        token: str,
        top_up_allowance: int | None = None,
        auto_top_up: int = 0,
    ) -> tuple[TxRequest, ...]:
        """What `account` sends with its own key so that `delegate` can act for it through
        SubaccountRouter: one SubaccountRouter.multicall of addSubaccount, the maximum order
        action count (`max_actions` in all, counting the ones already used) and the expiry
        (`expires_at`, unix seconds), and with `auto_top_up` > 0 the most wei of WNT GMX pays
        the subaccount back per action for its gas (from the account's WNT, approved to the
        Router); then `token` approved to GMX's Router (`top_up_allowance` raw units, default
        unlimited) so that top-ups are paid from the account's wallet."""
        account = _checksum(account, "account")
        delegate = _checksum(delegate, "subaccount")
        token = _checksum(token, "token")
        if max_actions <= 0:
            raise VenueError(f"subaccount setup: max_actions must be positive, got {max_actions}")
        if expires_at <= 0:
            raise VenueError(f"subaccount setup: expires_at must be positive, got {expires_at}")
        if auto_top_up < 0:
            raise VenueError(f"subaccount setup: auto_top_up must be >= 0, got {auto_top_up}")
        d = self.deployment
        router = self._subaccount_router()
        _, _, used_key, _, _ = subaccount_keys(account, delegate)
        (used,) = _GET_UINT.decode(
            await self._reads.eth_call(d.data_store, _GET_UINT.encode(used_key))
        )
        inner = [
            _ADD_SUBACCOUNT.encode(delegate),
            _SET_MAX_ACTIONS.encode(delegate, SUBACCOUNT_ORDER_ACTION, int(used) + max_actions),
            _SET_EXPIRES_AT.encode(delegate, SUBACCOUNT_ORDER_ACTION, expires_at),
        ]
        if auto_top_up:
            inner.append(_SET_AUTO_TOP_UP.encode(delegate, auto_top_up))
        steps = [
            TxRequest(
                router,
                _SUB_MULTICALL.encode(inner),
                description=(
                    f"SubaccountRouter: add subaccount {delegate} for {account}, "
                    f"{max_actions} more order actions, until {expires_at}"
                    + (f", auto top-up up to {auto_top_up} wei per action" if auto_top_up else "")
                ),
            ),
            TxRequest(
                token,
                _APPROVE.encode(
                    d.router, MAX_UINT256 if top_up_allowance is None else top_up_allowance
                ),
                description=f"approve GMX Router {d.router} to take {token} for top-ups",
            ),
        ]
        if auto_top_up and token.lower() != self.wnt.lower():
            steps.append(
                TxRequest(
                    self.wnt,
                    _APPROVE.encode(d.router, MAX_UINT256),
                    description=f"approve GMX Router {d.router} to take WNT for the auto top-up",
                )
            )
        return tuple(steps)

    # -- simulating the execution ---------------------------------------------------------------

    async def simulate_execution(self, plan: TxPlan, snapshot: Snapshot) -> RevertReason | None:
        """GMX's own verdict on the order the plan creates, before it is sent, as GMX's interface
        asks for it: the plan's ExchangeRouter.multicall with simulateExecuteLatestOrder
        appended, eth_call'd from the plan's sender with the step's value at the latest block.
        GMX creates the order and executes it at once, at the prices the snapshot was read at
        (the adapter's price source; min and max per token of the market), stamped
        SIMULATION_TIME_AHEAD seconds after that block, and then reverts: with
        EndOfOracleSimulation when the order executes (None here), or with the error that
        would cancel it at execution (LiquidatablePosition, OrderNotFulfillableAtAcceptablePrice,
        InsufficientCollateralUsd, ...), returned decoded. A plan without an order (an alert)
        has nothing to simulate: None. VenueError when the call returns instead of reverting
        (the address is not GMX's ExchangeRouter)."""
        found = self._order_step(plan)
        if found is None:
            return None
        step, calls, order = found
        await self._learn_markets([order.market], "latest")
        tokens = self._cache.markets[order.market]
        wanted = list(dict.fromkeys(t.address for t in (tokens.index, tokens.long, tokens.short)))
        prices = await self._prices_at(wanted, snapshot.block_number)
        head = await self._reads.get_block("latest")
        data = encode_simulation(calls, prices, head.timestamp + SIMULATION_TIME_AHEAD)
        try:
            await self._reads.eth_call(
                step.to, data, head.number, sender=order.receiver, value=step.value
            )
        except RpcResponseError as exc:
            if not is_revert(exc):
                raise
            reason = self.decode_error(revert_data(exc) or b"")
            return None if reason.name == END_OF_ORACLE_SIMULATION else reason
        raise VenueError(
            f"{plan.action.kind} {plan.action.key}: simulateExecuteLatestOrder at {step.to} "
            "returned instead of ending with EndOfOracleSimulation: not GMX's ExchangeRouter"
        )

    def _order_step(self, plan: TxPlan) -> tuple[TxRequest, list[bytes], CreateOrder] | None:
        """The plan's step creating an order, as an ExchangeRouter.multicall ending in
        createOrder, its inner calls and the order. A subaccount's step
        (SubaccountRouter.multicall with createOrder(account, order)) is given as the
        account's own ExchangeRouter call that creates the same order: sendWnt, sendTokens of
        an increase's collateral, createOrder (what the simulation runs, from the account)."""
        d = self.deployment
        router = d.exchange_router.lower()
        sub = (d.subaccount_router or "").lower()
        for step in reversed(plan.steps):
            to = step.to.lower()
            if to == router and step.data[:4] == _MULTICALL.selector:
                (inner,) = _MULTICALL.decode_input(step.data)
                calls = [bytes(x) for x in inner]
                for call in calls:
                    if call[:4] == _CREATE_ORDER.selector:
                        return step, calls, decode_create_order(call)
            if sub and to == sub and step.data[:4] == _SUB_MULTICALL.selector:
                (inner,) = _SUB_MULTICALL.decode_input(step.data)
                for call in (bytes(x) for x in inner):
                    if call[:4] != _SUB_CREATE_ORDER.selector:
                        continue
                    _account, params = _SUB_CREATE_ORDER.decode_input(call)
                    order = create_order_of(params)
                    own = [_SEND_WNT.encode(d.order_vault, order.execution_fee)]
                    if order.order_type is OrderType.MARKET_INCREASE:
                        own.append(
                            _SEND_TOKENS.encode(
                                order.initial_collateral_token,
                                d.order_vault,
                                order.initial_collateral_delta_amount,
                            )
                        )
                    own.append(encode_create_order(order))
                    return replace(step, to=d.exchange_router), own, order
        return None

    async def _prices_at(self, tokens: Sequence[str], block: int) -> dict[str, TokenPrice]:
        """The tokens' prices at `block`: those the read of that block used, else the price
        source's."""
        seen = self._cache.prices
        if seen is not None and seen[0] == block and all(t in seen[1] for t in tokens):
            return {t: seen[1][t] for t in tokens}
        return await self.prices.prices(tokens, block=block)

    # -- following orders -----------------------------------------------------------------------

    def order_key(self, mined: Sequence[MinedTx]) -> bytes | None:
        """The key of the order the plan created (from its OrderCreated event), if mined."""
        for tx in reversed(mined):
            key = order_key_of(tx.logs, self.deployment.event_emitter)
            if key is not None:
                return key
        return None

    async def action_state(self, plan: TxPlan, mined: Sequence[MinedTx]) -> ActionState:
        """PENDING until every step is mined; then the order's fate: AWAITING_EXECUTION while
        it is in the DataStore's ORDER_LIST, DONE on OrderExecuted, CANCELLED on OrderCancelled
        (EXPIRED when it was the user's cancel of an order past REQUEST_EXPIRATION_TIME)."""
        if any(not tx.success for tx in mined):
            return ActionState.FAILED
        if len(mined) < len(plan.steps):
            return ActionState.PENDING
        if not plan.steps:
            return ActionState.DONE
        key = self.order_key(mined)
        if key is None:
            raise VenueError(f"{plan.action.kind} {plan.action.key}: no OrderCreated event mined")
        outcome = await self._order_outcome(key, mined[-1].block_number)
        if outcome is not None:
            self._cache.gone.pop(key, None)
            return outcome
        head = await self._reads.block_number()
        (listed,) = _CONTAINS.decode(
            await self._reads.eth_call(
                self.deployment.data_store, _CONTAINS.encode(ORDER_LIST, key), head
            )
        )
        if listed:
            return ActionState.AWAITING_EXECUTION
        # Gone without an event we could find. A node may serve a block's state before its
        # logs (so may a load-balanced endpoint's backends): look again for a while before
        # taking it as cancelled (and reconsidering the action).
        first = self._cache.gone.setdefault(key, head)
        if head - first < ORDER_GONE_GRACE_BLOCKS:
            return ActionState.AWAITING_EXECUTION
        return ActionState.CANCELLED

    async def _order_outcome(self, key: bytes, from_block: int) -> ActionState | None:
        topics = [
            "0x" + EVENT_LOG2_TOPIC.hex(),
            ["0x" + EVENT_ORDER_EXECUTED.hex(), "0x" + EVENT_ORDER_CANCELLED.hex()],
            "0x" + key.hex(),
        ]
        logs = await self._reads.request(
            "eth_getLogs",
            [
                {
                    "address": self.deployment.event_emitter,
                    "fromBlock": hex(from_block),
                    "toBlock": "latest",
                    "topics": topics,
                }
            ],
        )
        if not isinstance(logs, list):
            raise VenueDecodeError(f"eth_getLogs: not a list: {logs!r:.80}")
        for entry in logs:
            name = bytes.fromhex(str(entry["topics"][1])[2:])
            if name == EVENT_ORDER_EXECUTED:
                return ActionState.DONE
            reason = event_strings(bytes.fromhex(str(entry["data"])[2:])).get("reason", "")
            if reason == USER_INITIATED_CANCEL:
                return ActionState.EXPIRED
            return ActionState.CANCELLED
        return None

    async def open_orders(self, account: str) -> list[tuple[bytes, CreateOrder, int]]:
        """Reader.getAccountOrders: the account's pending orders (key, params, updatedAtTime)."""
        d = self.deployment
        (infos,) = _ACCOUNT_ORDERS.decode(
            await self._reads.eth_call(
                d.reader,
                _ACCOUNT_ORDERS.encode(d.data_store, _checksum(account, "account"), 0, 1000),
            )
        )
        out = []
        for key, order in infos:
            addresses, numbers, flags, _data = order
            out.append(
                (
                    bytes(key),
                    CreateOrder(
                        receiver=to_checksum_address(addresses[1]),
                        cancellation_receiver=to_checksum_address(addresses[2]),
                        market=to_checksum_address(addresses[5]),
                        initial_collateral_token=to_checksum_address(addresses[6]),
                        order_type=OrderType(numbers[0]),
                        is_long=bool(flags[0]),
                        size_delta_usd=int(numbers[2]),
                        initial_collateral_delta_amount=int(numbers[3]),
                        acceptable_price=int(numbers[5]),
                        execution_fee=int(numbers[6]),
                        auto_cancel=bool(flags[3]),
                    ),
                    int(numbers[9]),
                )
            )
        return out

    async def cancel_if_expired(self, plan: TxPlan, mined: Sequence[MinedTx]) -> TxRequest | None:
        """The cancelOrder for the plan's order when it is still pending past GMX's
        REQUEST_EXPIRATION_TIME (GMX refuses a user's cancel of a market order before), else
        None. Once mined, action_state says EXPIRED."""
        key = self.order_key(mined)
        if key is None:
            return None
        d = self.deployment
        results = await self._meta.aggregate(
            [
                Call(d.data_store, _CONTAINS.encode(ORDER_LIST, key)),
                Call(d.data_store, _GET_UINT.encode(REQUEST_EXPIRATION_TIME)),
                Call(d.reader, _GET_ORDER.encode(d.data_store, key)),
                Call(d.multicall, _BLOCK_TIME.encode()),
            ],
            block="latest",
        )
        if not _CONTAINS.decode(_ok(results[0], "ORDER_LIST contains"))[0]:
            return None
        expiration = _uint(results[1], "REQUEST_EXPIRATION_TIME")
        (order,) = _GET_ORDER.decode(_ok(results[2], "Reader.getOrder"))
        updated_at = int(order[1][9])
        now = int(_BLOCK_TIME.decode(_ok(results[3], "block time"))[0])
        if now < updated_at + expiration:
            return None
        return TxRequest(
            d.exchange_router,
            _CANCEL_ORDER.encode(key),
            description=f"cancel GMX order 0x{key.hex()} unexecuted past {expiration} s",
        )

    def decode_error(self, data: bytes) -> RevertReason:
        """GMX revert data, decoded (custom errors of ExchangeRouter and SubaccountRouter and
        the GMX Errors we ship, ERC-20 errors)."""
        return decode_gmx_error(data)

    def decode_rpc_error(self, exc: RpcError) -> RevertReason | None:
        if not isinstance(exc, RpcResponseError):
            return None
        data = revert_data(exc)
        return None if data is None else self.decode_error(data)


def gmx_rebuild(venue: GmxVenue, journal: Any) -> Callable[[Any, Any], Awaitable[Any]]:
    """A `rebuild` hook for TxManager.resolve: the replacement carries an execution fee priced
    at the replacement's max fee per gas, so InsufficientExecutionFee cannot happen."""

    async def rebuild(intent: Any, fees: Any) -> ManagerRequest:
        last = journal.transactions(intent.id)[-1]
        data, value = await venue.reprice(bytes(last.data), int(last.value), int(fees.max_fee))
        return ManagerRequest(intent.id, last.to, data, value)

    return rebuild
