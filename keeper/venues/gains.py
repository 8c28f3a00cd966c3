"""The Gains Network gTrade adapter (GNSMultiCollatDiamond, contracts v10; ABI in abis/gains/).

gTrade runs every market of a chain from one contract, the diamond. A trader's trades are
isolated: each holds its own collateral (one of the diamond's collaterals: USDC, DAI, WETH, ...)
at a leverage, opened at a price; the diamond liquidates a trade when the pair's price reaches
its liquidation price, which it computes from per-pair liquidation parameters, the trade's
leverage, fees and holding fees (keeper/venues/gains_math.py). Market actions are pending
orders that Gains' oracle network answers later, like GMX orders: `Execution.DELAYED`.

Units: prices 1e10 (`Price(raw, 10)`), leverage 1e3, percentages 1e10 per cent, collateral in
its token's decimals, collateral USD prices 1e8; the model's USD is at `USD_DECIMALS` (30), so
every collateral's value is exact.

Mapping onto keeper/model.py:

- `Market`: one per pair; id = the pair index as a decimal string, index token `pair:<index>`
  named `FROM/TO` (18 decimals); mark = the pair's Chainlink feed as the diamond names it
  (`pairs(i).feed`: feed1, 1 / feed1 or feed1 / feed2), at 1e10. Gains' threshold depends on
  each trade's leverage, so the maintenance requirement cannot be one market rate: the market
  says `maintenance_rate` 0, `Basis.ENTRY`, `Strictness.LE` (Gains liquidates when the price
  reaches the liquidation price) and each position's `fees` carry the rest (below).
  `close_quote`: the pair's position size fee, and half its spread as the impact.
- `Position`: key `<trader>:<index>`; collateral and its USD value at the diamond's collateral
  price; size = collateral * leverage in USD at that price over the open price (18 decimals,
  rounded up); entry = the open price. `fees` is what makes the model's liquidation price equal
  Gains' (`liquidation_price` of gains_math, from the trade's own parameters, fees and holding
  fees at the mark): collateral_usd - size * |entry - liquidation price|. So the model's
  equity is the margin above Gains' liquidation point, and the margin ratio equals the signed
  distance to liquidation: thresholds mean the same in either metric on this venue.
  Gains' own figures per trade are in `GainsVenue.trades` after each read.

A read pins a block, then: one Multicall3 batch (block, time, the wallet, per account
getTrades, getTradeInfos, getTradesLiquidationParams, every collateral's USD price, and for
every pair seen before: its feeds, fee group, spread and counter-trade multiplier), the static
facts of pairs not seen before (cached), and one batch per trade of getTradeFeesData,
pairSpreadP and getTradePendingHoldingFeesCollateral at the mark (in chunks of `chunk_size`):
three round trips for any number of trades once the pairs are known.

Writes (each as the trader, or through delegatedTradingAction when the keeper is the
trader's trading delegate): top-up = updateLeverage to the leverage that keeps the position
size with the added collateral (the diamond takes the collateral when the order is stored:
an ERC-20 approval of the diamond precedes it); reduce = decreasePositionSize by leverage,
keeping the collateral; close = closeTradeMarket; withdraw = updateLeverage upwards (the freed
collateral is paid out). Reductions and closes carry the mark as the expected price (the
trade's own max slippage applies). Gains answers later: `action_state` follows the order (its
Id from the initiating event; MarketExecuted, MarketCloseCanceled, PositionSizeDecreaseExecuted,
LeverageUpdateExecuted with their cancel reasons, ChainlinkCallbackTimeout), and
`cancel_if_expired` builds cancelOrderAfterTimeout once getMarketOrdersTimeoutBlocks() blocks
have passed without an answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, Self

from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from keeper.abis import abi as shipped_abi
from keeper.abis import abi_type
from keeper.chain.jsonrpc import JsonRpc, RpcError, RpcResponseError
from keeper.chain.multicall import MULTICALL3_ADDRESS, Call, CallResult, Multicall
from keeper.chain.revert import RevertReason, decode_revert, revert_data
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
from keeper.units import Price, TokenAmount, Usd
from keeper.venues.base import (
    ActionState,
    Delegation,
    Execution,
    MinedTx,
    ReadIssue,
    TxPlan,
    TxRequest,
    VenueDecodeError,
    VenueError,
    VenueRead,
    Watch,
    call_data,
    checked_address,
    pin_block,
)
from keeper.venues.codec import ContractFn
from keeper.venues.gains_math import (
    LEVERAGE_PRECISION,
    PERCENT,
    PRICE_PRECISION,
    CancelReason,
    ContractsVersion,
    LiquidationParams,
    closing_fee,
    liquidation_price,
    position_size,
)

__all__ = [
    "APECHAIN",
    "ARBITRUM",
    "ARBITRUM_SEPOLIA",
    "BASE",
    "NAME",
    "POLYGON",
    "PRESETS",
    "USD_DECIMALS",
    "CollateralInfo",
    "FeeGroup",
    "GainsDeployment",
    "GainsFn",
    "GainsTrade",
    "GainsVenue",
    "OrderRef",
    "PairInfo",
    "PairState",
    "RawTrade",
    "decode_gains_error",
    "gains_abi",
    "map_market",
    "map_trade",
    "order_of",
    "parse_key",
    "trade_key",
]

log = logging.getLogger(__name__)

NAME = "gains"
USD_DECIMALS = 30
SIZE_DECIMALS = 18
COLLATERAL_PRICE_DECIMALS = 8
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
MAX_UINT256 = 2**256 - 1
DEFAULT_CHUNK_SIZE = 200
ORDER_GONE_GRACE_BLOCKS = 20
"""Blocks an order may be closed with no answer or timeout log found before it is taken as
cancelled (a node may serve a block's state before its logs)."""


# --- ABIs --------------------------------------------------------------------------------------


@cache
def gains_abi(name: str = "GNSMultiCollatDiamond") -> list[dict[str, Any]]:
    """One of the ABI fragments in abis/gains/ (taken from the Gains SDK's ABI)."""
    path = resources.files("keeper.abis").joinpath("gains").joinpath(f"{name}.json")
    if not path.is_file():
        raise LookupError(f"no Gains ABI named {name!r} in abis/gains")
    entries: list[dict[str, Any]] = json.loads(path.read_text())["abi"]
    return entries


@dataclass(frozen=True, slots=True)
class GainsFn(ContractFn):
    """One function of a Gains ABI fragment (abis/gains), or of a shipped ABI."""

    @classmethod
    def of(cls, contract: str, name: str, *, shipped: bool = False) -> Self:
        return cls.from_abi(
            contract, name, shipped_abi(contract) if shipped else gains_abi(contract)
        )


def _diamond(name: str) -> GainsFn:
    return GainsFn.of("GNSMultiCollatDiamond", name)


def _shipped(contract: str, name: str) -> GainsFn:
    return GainsFn.of(contract, name, shipped=True)


def _event_topic(name: str) -> bytes:
    for e in gains_abi():
        if e.get("type") == "event" and e.get("name") == name:
            return keccak(f"{name}({','.join(abi_type(i) for i in e['inputs'])})".encode())
    raise LookupError(f"no event {name} in the Gains ABI")


_GET_TRADES = _diamond("getTrades")
_GET_TRADE_INFOS = _diamond("getTradeInfos")
_GET_TRADES_LIQ = _diamond("getTradesLiquidationParams")
_GET_TRADE = _diamond("getTrade")
_GET_FEES_DATA = _diamond("getTradeFeesData")
_GET_HOLDING = _diamond("getTradePendingHoldingFeesCollateral")
_GET_COLLATERALS = _diamond("getCollaterals")
_GET_COLLATERAL_PRICE = _diamond("getCollateralPriceUsd")
_PAIRS = _diamond("pairs")
_PAIRS_COUNT = _diamond("pairsCount")
_FEES = _diamond("fees")
_PAIR_SPREAD = _diamond("pairSpreadP")
_MIN_LEVERAGE = _diamond("pairMinLeverage")
_MAX_LEVERAGE = _diamond("pairMaxLeverage")
_COUNTER_MULTIPLIER = _diamond("getPairCounterTradeFeeRateMultiplier")
_GET_PENDING = _diamond("getPendingOrder")
_TIMEOUT_BLOCKS = _diamond("getMarketOrdersTimeoutBlocks")
_GET_DELEGATE = _diamond("getTradingDelegate")
_SET_DELEGATE = _diamond("setTradingDelegate")
_DELEGATED = _diamond("delegatedTradingAction")
_UPDATE_LEVERAGE = _diamond("updateLeverage")
_DECREASE = _diamond("decreasePositionSize")
_CLOSE = _diamond("closeTradeMarket")
_CANCEL_TIMEOUT = _diamond("cancelOrderAfterTimeout")
_BALANCE_OF = _shipped("TestUSDC", "balanceOf")
_ALLOWANCE = _shipped("TestUSDC", "allowance")
_APPROVE = _shipped("TestUSDC", "approve")
_DECIMALS = _shipped("TestUSDC", "decimals")
_SYMBOL = _shipped("TestUSDC", "symbol")
_LATEST_ROUND = _shipped("AggregatorV3Interface", "latestRoundData")
_FEED_DECIMALS = _shipped("AggregatorV3Interface", "decimals")
_ETH_BALANCE = _shipped("Multicall3", "getEthBalance")
_BLOCK_TIME = _shipped("Multicall3", "getCurrentBlockTimestamp")
_BLOCK_NUMBER = _shipped("Multicall3", "getBlockNumber")

EVENT_MARKET_ORDER_INITIATED = _event_topic("MarketOrderInitiated")
EVENT_LEVERAGE_UPDATE_INITIATED = _event_topic("LeverageUpdateInitiated")
EVENT_POSITION_SIZE_UPDATE_INITIATED = _event_topic("PositionSizeUpdateInitiated")
EVENT_MARKET_EXECUTED = _event_topic("MarketExecuted")
EVENT_MARKET_OPEN_CANCELED = _event_topic("MarketOpenCanceled")
EVENT_MARKET_CLOSE_CANCELED = _event_topic("MarketCloseCanceled")
EVENT_DECREASE_EXECUTED = _event_topic("PositionSizeDecreaseExecuted")
EVENT_LEVERAGE_EXECUTED = _event_topic("LeverageUpdateExecuted")
EVENT_CALLBACK_TIMEOUT = _event_topic("ChainlinkCallbackTimeout")
_INITIATED = (
    EVENT_MARKET_ORDER_INITIATED,
    EVENT_LEVERAGE_UPDATE_INITIATED,
    EVENT_POSITION_SIZE_UPDATE_INITIATED,
)


def decode_gains_error(data: bytes | str | None) -> RevertReason:
    """Diamond revert data, decoded: every custom error of the diamond's ABI, ERC-20 errors."""
    return decode_revert(data, [gains_abi(), shipped_abi("TestUSDC")])


# --- deployments -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GainsDeployment:
    """The diamond of one chain and the Multicall3 reads go through; both can be overridden
    (`with_overrides`)."""

    chain_id: int
    diamond: str
    multicall: str = MULTICALL3_ADDRESS

    def with_overrides(self, **addresses: str | int) -> GainsDeployment:
        """A copy with some fields replaced; unknown names are an error naming them."""
        unknown = set(addresses) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"gains deployment: unknown field(s) {sorted(unknown)}")
        return replace(self, **addresses)  # type: ignore[arg-type]


# The Gains SDK's contracts/addresses.json (@gainsnetwork/sdk 1.8.7): gnsMultiCollatDiamond.
ARBITRUM = GainsDeployment(chain_id=42161, diamond="0xFF162c694eAA571f685030649814282eA457f169")
BASE = GainsDeployment(chain_id=8453, diamond="0x6cD5aC19a07518A8092eEFfDA4f1174C72704eeb")
POLYGON = GainsDeployment(chain_id=137, diamond="0x209A9A01980377916851af2cA075C2b170452018")
APECHAIN = GainsDeployment(chain_id=33139, diamond="0x2BE5D7058AdBa14Bc38E4A83E94A81f7491b0163")
ARBITRUM_SEPOLIA = GainsDeployment(
    chain_id=421614, diamond="0xd659a15812064C79E189fd950A189b15c75d3186"
)
PRESETS: Mapping[str, GainsDeployment] = {
    "arbitrum": ARBITRUM,
    "base": BASE,
    "polygon": POLYGON,
    "apechain": APECHAIN,
    "arbitrum-sepolia": ARBITRUM_SEPOLIA,
}


# --- raw shapes --------------------------------------------------------------------------------


def trade_key(trader: str, index: int) -> str:
    """A trade's position key: `<trader>:<index>`."""
    return f"{trader}:{index}"


def parse_key(key: str) -> tuple[str, int]:
    """`<trader>:<index>` back to the trader (checksummed) and the trade index; VenueError
    for anything else."""
    trader, colon, index = key.rpartition(":")
    if not colon or not index.isdigit():
        raise VenueError(f"{key!r} is not a Gains position key (<trader>:<index>)")
    return _checksum(trader, "position key"), int(index)


@dataclass(frozen=True, slots=True)
class RawTrade:
    """ITradingStorage.Trade, the fields the adapter uses (raw Gains units)."""

    user: str
    index: int
    pair_index: int
    leverage: int
    long: bool
    is_open: bool
    collateral_index: int
    collateral_amount: int
    open_price: int
    is_counter_trade: bool

    @classmethod
    def decode(cls, t: Sequence[Any]) -> RawTrade:
        return cls(
            user=to_checksum_address(t[0]),
            index=int(t[1]),
            pair_index=int(t[2]),
            leverage=int(t[3]),
            long=bool(t[4]),
            is_open=bool(t[5]),
            collateral_index=int(t[6]),
            collateral_amount=int(t[8]),
            open_price=int(t[9]),
            is_counter_trade=bool(t[12]),
        )

    @property
    def key(self) -> str:
        return trade_key(self.user, self.index)


@dataclass(frozen=True, slots=True)
class CollateralInfo:
    """ITradingStorage.Collateral with its token's symbol and decimals."""

    index: int
    token: Token
    precision: int
    active: bool


@dataclass(frozen=True, slots=True)
class PairInfo:
    """The static facts of IPairsStorage.Pair, learnt once: name, feeds, fee group index, and
    the decimals of its feeds."""

    index: int
    symbol: str
    feed1: str
    feed2: str
    feed_calculation: int
    fee_index: int
    feed1_decimals: int
    feed2_decimals: int

    @property
    def token(self) -> Token:
        return Token(f"pair:{self.index}", self.symbol, SIZE_DECIMALS)


@dataclass(frozen=True, slots=True)
class FeeGroup:
    """IPairsStorage.FeeGroup, the fields the liquidation rule uses."""

    total_position_size_fee_p: int
    min_position_size_usd: int


@dataclass(frozen=True, slots=True)
class PairState:
    """A pair at the read's block: its price (1e10; None when its feeds give none), spread,
    fee group and counter-trade fee multiplier."""

    info: PairInfo
    price: int | None
    spread_p: int
    fee: FeeGroup
    counter_trade_multiplier: int


@dataclass(frozen=True, slots=True)
class GainsTrade:
    """One trade as read, with what Gains' liquidation rule takes and gives: the closing fee
    and holding fees (collateral units), realized pnl net of realized trading fees, the
    trade's own liquidation parameters and the spread it would close at, and the resulting
    liquidation price (1e10), at the read's mark."""

    trade: RawTrade
    version: ContractsVersion
    params: LiquidationParams
    pair_spread_p: int
    closing_fee: int
    holding_fees: int
    realized_pnl: int
    collateral_price_usd: int
    mark: int
    liquidation_price: int


# --- pure mapping ------------------------------------------------------------------------------


def _feed_price(answer: int, decimals: int) -> int:
    return int(answer * PRICE_PRECISION // 10**decimals)


def pair_price(info: PairInfo, answer1: int, answer2: int | None) -> int | None:
    """The pair price (1e10) from its feeds' answers as the pair's feed calculation says
    (DEFAULT: feed1, INVERT: 1 / feed1, COMBINE: feed1 / feed2); None when it gives none."""
    if answer1 <= 0:
        return None
    p1 = _feed_price(answer1, info.feed1_decimals)
    if info.feed_calculation == 0:
        return p1 or None
    if info.feed_calculation == 1:
        return PRICE_PRECISION * PRICE_PRECISION // p1 if p1 > 0 else None
    if info.feed_calculation == 2 and answer2 is not None and answer2 > 0:
        p2 = _feed_price(answer2, info.feed2_decimals)
        return p1 * PRICE_PRECISION // p2 if p2 > 0 else None
    return None


def map_market(state: PairState, *, venue: str = NAME) -> Market:
    """A Gains pair as a model Market (see the module's docstring); its price must be known."""
    if state.price is None:
        raise VenueError(f"pair {state.info.index} ({state.info.symbol}) has no price")
    scale = Decimal(PERCENT)
    return Market(
        venue=venue,
        market_id=str(state.info.index),
        index_token=state.info.token,
        usd_decimals=USD_DECIMALS,
        mark_price=Price(state.price, 10),
        maintenance_rate=Decimal(0),
        basis=Basis.ENTRY,
        strictness=Strictness.LE,
        close_quote=CloseQuote(
            fee_rate=Decimal(state.fee.total_position_size_fee_p) / scale,
            impact_rate=Decimal(state.spread_p // 2) / scale,
        ),
    )


def map_trade(trade: GainsTrade, collateral: CollateralInfo, *, venue: str = NAME) -> Position:
    """A Gains trade as a model Position whose liquidation price is Gains' (module docstring).

    size (18 decimals, rounded up) = collateral * leverage * collateral price / open price;
    fees (USD at 30, rounded up: a long's liquidation price rises, a short's falls) =
    collateral_usd - size * |open price - liquidation price|."""
    t = trade.trade
    decimals = collateral.token.decimals
    if decimals > USD_DECIMALS - COLLATERAL_PRICE_DECIMALS:
        raise VenueError(f"collateral {collateral.token.symbol}: {decimals} decimals are too many")
    num = t.collateral_amount * t.leverage * trade.collateral_price_usd * 10 ** (SIZE_DECIMALS + 10)
    den = LEVERAGE_PRECISION * 10**decimals * 10**COLLATERAL_PRICE_DECIMALS * t.open_price
    size_raw = -(-num // den)
    collateral_usd = (
        t.collateral_amount
        * trade.collateral_price_usd
        * 10 ** (USD_DECIMALS - decimals - COLLATERAL_PRICE_DECIMALS)
    )
    distance = abs(t.open_price - trade.liquidation_price)
    # size (1e18) * price (1e10) -> USD at 1e28: times 100 to USD_DECIMALS
    fees_raw = collateral_usd - size_raw * distance * 10 ** (USD_DECIMALS - SIZE_DECIMALS - 10)
    return Position(
        venue=venue,
        key=t.key,
        account=t.user,
        market_id=str(t.pair_index),
        side=Side.LONG if t.long else Side.SHORT,
        size=TokenAmount(size_raw, SIZE_DECIMALS),
        entry_price=Price(t.open_price, 10),
        collateral_token=collateral.token,
        collateral=TokenAmount(t.collateral_amount, decimals),
        collateral_price=Price(trade.collateral_price_usd, COLLATERAL_PRICE_DECIMALS),
        collateral_usd=Usd(collateral_usd, USD_DECIMALS),
        fees=Usd(fees_raw, USD_DECIMALS),
    )


@dataclass(frozen=True, slots=True)
class OrderRef:
    """A pending order as its initiating event names it: ITradingStorage.Id (`user`,
    `index`), the pair, and what kind of order it is (the event's topic)."""

    user: str
    index: int
    pair_index: int
    event: bytes

    @property
    def key(self) -> bytes:
        """The order's Id as 24 bytes: the user's address, then the index (big-endian)."""
        return bytes.fromhex(self.user[2:]) + self.index.to_bytes(4, "big")


def _word(data: bytes, i: int) -> int:
    chunk = data[32 * i : 32 * (i + 1)]
    if len(chunk) != 32:
        raise VenueDecodeError(f"Gains event data: word {i} missing ({len(data)} bytes)")
    return int.from_bytes(chunk, "big")


def _order_id(data: bytes) -> tuple[str, int]:
    user = _word(data, 0)
    return to_checksum_address(user.to_bytes(32, "big")[12:]), _word(data, 1)


def order_of(logs: Sequence[Any], diamond: str) -> OrderRef | None:
    """The pending order a mined transaction stored, from its MarketOrderInitiated,
    LeverageUpdateInitiated or PositionSizeUpdateInitiated log (LogEntry), if any."""
    address = diamond.lower()
    for entry in logs:
        topics = entry.topics
        if entry.address.lower() != address or len(topics) < 3 or topics[0] not in _INITIATED:
            continue
        user, index = _order_id(bytes(entry.data))
        return OrderRef(user, index, int.from_bytes(topics[2], "big"), bytes(topics[0]))
    return None


# --- the adapter -------------------------------------------------------------------------------


_checksum = checked_address


def _ok(result: CallResult, what: str) -> bytes:
    return call_data(result, what, decode_gains_error)


def _one(fn: ContractFn, result: CallResult, what: str) -> Any:
    return fn.decode(_ok(result, what))[0]


def _feed_answer(result: CallResult) -> int | None:
    """A feed's latestRoundData answer; None when the call failed or its data is no round: a
    feed address without code (a pair's unused or retired feed) answers a Multicall3 call with
    success and no data, and must cost only that pair its price, not the whole read."""
    if not result.success:
        return None
    try:
        return int(_LATEST_ROUND.decode(result.data)[1])
    except VenueDecodeError:
        return None


def _feed_decimals(result: CallResult) -> int:
    """A feed's decimals; 8 (Chainlink's USD feeds') when it does not answer them."""
    if not result.success:
        return 8
    try:
        return int(_FEED_DECIMALS.decode(result.data)[0])
    except VenueDecodeError:
        return 8


def _params(raw: Sequence[Any]) -> LiquidationParams:
    return LiquidationParams(*(int(x) for x in raw))


@dataclass(slots=True)
class _Cache:
    collaterals: dict[int, CollateralInfo] = field(default_factory=dict)
    pairs: dict[int, PairInfo] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    gone: dict[bytes, int] = field(default_factory=dict)


class GainsVenue:
    """Gains Network gTrade behind the Venue protocol; make one with `connect()`."""

    execution = Execution.DELAYED

    def __init__(
        self,
        rpc: JsonRpc,
        deployment: GainsDeployment,
        *,
        collaterals: Sequence[CollateralInfo],
        name: str = NAME,
        wallet_token: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        multicall_code_override: bool = False,
    ) -> None:
        if not collaterals:
            raise VenueError(f"gains: the diamond {deployment.diamond} lists no collateral")
        if chunk_size <= 0:
            raise ValueError(f"gains chunk_size must be positive, got {chunk_size}")
        self.rpc = rpc
        self.deployment = deployment
        self.name = name
        self.chunk_size = chunk_size
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
        self._cache = _Cache(collaterals={c.index: c for c in collaterals})
        for c in collaterals:
            self._cache.tokens[c.token.address] = c.token
        self.wallet_token = (
            _checksum(wallet_token, "wallet_token") if wallet_token else self._default_token()
        )
        self.trades: dict[str, GainsTrade] = {}
        """The last read's trades by position key, with Gains' own figures."""

    def _default_token(self) -> str:
        active = [c for c in self._cache.collaterals.values() if c.active]
        for c in active:
            if c.token.symbol.upper().startswith("USDC"):
                return c.token.address
        return (active or list(self._cache.collaterals.values()))[0].token.address

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        rpc: JsonRpc,
        deployment: GainsDeployment | str,
        *,
        overrides: Mapping[str, str] | None = None,
        **options: Any,
    ) -> GainsVenue:
        """Check the deployment and learn the diamond's collaterals.

        `deployment` is a GainsDeployment or a preset name ("arbitrum", "base", "polygon",
        "apechain", "arbitrum-sepolia"); `overrides` replaces its addresses. The chain id must
        match; the diamond must answer getMarketOrdersTimeoutBlocks and getCollaterals. See
        __init__ for `options`."""
        if isinstance(deployment, str):
            try:
                deployment = PRESETS[deployment]
            except KeyError:
                raise VenueError(
                    f"gains: unknown deployment {deployment!r} (presets: {sorted(PRESETS)})"
                ) from None
        if overrides:
            try:
                deployment = deployment.with_overrides(**overrides)
            except ValueError as exc:
                raise VenueError(str(exc)) from None
        deployment = replace(
            deployment,
            diamond=_checksum(deployment.diamond, "gains diamond"),
            multicall=_checksum(deployment.multicall, "gains multicall"),
        )
        reads = Reads(rpc)
        chain_id = await reads.chain_id()
        if chain_id != deployment.chain_id:
            raise VenueError(
                f"gains: the RPC is chain {chain_id}, the deployment is for chain "
                f"{deployment.chain_id}"
            )
        if not await reads.get_code(deployment.diamond):
            raise VenueError(f"gains: no contract at the diamond address {deployment.diamond}")
        code_override = bool(options.get("multicall_code_override", False))
        meta = Multicall(rpc, address=deployment.multicall, code_override=code_override)
        d = deployment.diamond
        first = await meta.aggregate(
            [Call(d, _TIMEOUT_BLOCKS.encode()), Call(d, _GET_COLLATERALS.encode())],
            block="latest",
        )
        if not first[0].success or not first[1].success:
            raise VenueError(
                f"gains: {d} does not answer getMarketOrdersTimeoutBlocks and getCollaterals: "
                "not a Gains diamond (check venue.diamond)"
            )
        (raw,) = _GET_COLLATERALS.decode(first[1].data)
        addresses = [to_checksum_address(c[0]) for c in raw]
        calls = [Call(a, fn.encode()) for a in addresses for fn in (_DECIMALS, _SYMBOL)]
        facts = await meta.aggregate(calls, block="latest")
        collaterals = []
        for i, (c, address) in enumerate(zip(raw, addresses, strict=True)):
            dec_r, sym_r = facts[2 * i], facts[2 * i + 1]
            decimals = int(_one(_DECIMALS, dec_r, f"{address}.decimals"))
            symbol = str(_SYMBOL.decode(sym_r.data)[0]) if sym_r.success else address[:8]
            if 10**decimals != int(c[3]):
                raise VenueError(
                    f"gains: collateral {i + 1} ({symbol}) has {decimals} decimals but the "
                    f"diamond's precision is {int(c[3])}"
                )
            collaterals.append(
                CollateralInfo(i + 1, Token(address, symbol, decimals), int(c[3]), bool(c[1]))
            )
        return cls(rpc, deployment, collaterals=collaterals, **options)

    # -- reading --------------------------------------------------------------------------------

    async def collateral_tokens(self) -> tuple[Token, ...]:
        """The diamond's active collaterals' tokens, in Gains' collateral order."""
        return tuple(c.token for c in self._cache.collaterals.values() if c.active)

    def collateral(self, index: int) -> CollateralInfo:
        """Collateral `index` of the diamond (VenueError for an unknown one)."""
        try:
            return self._cache.collaterals[index]
        except KeyError:
            raise VenueError(f"gains: the diamond lists no collateral {index}") from None

    def _pair_calls(self, info: PairInfo) -> list[Call]:
        d = self.deployment.diamond
        feed2 = info.feed2 if info.feed_calculation == 2 else info.feed1
        return [
            Call(info.feed1, _LATEST_ROUND.encode()),
            Call(feed2, _LATEST_ROUND.encode()),
            Call(d, _PAIRS.encode(info.index)),
            Call(d, _FEES.encode(info.fee_index)),
            Call(d, _COUNTER_MULTIPLIER.encode(info.index)),
        ]

    def _pair_state(self, info: PairInfo, results: Sequence[CallResult]) -> PairState:
        what = f"pair {info.index} ({info.symbol})"
        r1, r2, pair_r, fee_r, mult_r = results
        answer1 = _feed_answer(r1) or 0
        answer2 = _feed_answer(r2)
        pair = _one(_PAIRS, pair_r, f"pairs({info.index})")
        fee = _one(_FEES, fee_r, f"fees({info.fee_index})")
        multiplier = int(_one(_COUNTER_MULTIPLIER, mult_r, f"{what} counter-trade multiplier"))
        if int(pair[5]) != info.fee_index:  # the diamond moved the pair to another fee group
            self._cache.pairs.pop(info.index, None)
        return PairState(
            info=info,
            price=pair_price(info, answer1, answer2),
            spread_p=int(pair[3]),
            fee=FeeGroup(int(fee[0]), int(fee[3])),
            counter_trade_multiplier=multiplier,
        )

    async def _learn_pairs(self, indices: Sequence[int], block: int | str) -> None:
        new = [i for i in dict.fromkeys(indices) if i not in self._cache.pairs]
        if not new:
            return
        d = self.deployment.diamond
        results = await self._meta.aggregate([Call(d, _PAIRS.encode(i)) for i in new], block=block)
        pairs = {i: _one(_PAIRS, r, f"pairs({i})") for i, r in zip(new, results, strict=True)}
        feeds = sorted(
            {to_checksum_address(a) for p in pairs.values() for a in p[2][:2]} - {ZERO_ADDRESS}
        )
        answers = await self._meta.aggregate(
            [Call(f, _FEED_DECIMALS.encode()) for f in feeds], block=block
        )
        decimals = {f: _feed_decimals(r) for f, r in zip(feeds, answers, strict=True)}
        for i, p in pairs.items():
            feed1, feed2 = to_checksum_address(p[2][0]), to_checksum_address(p[2][1])
            self._cache.pairs[i] = PairInfo(
                index=i,
                symbol=f"{p[0]}/{p[1]}",
                feed1=feed1,
                feed2=feed2,
                feed_calculation=int(p[2][2]),
                fee_index=int(p[5]),
                feed1_decimals=decimals.get(feed1, 8),
                feed2_decimals=decimals.get(feed2, 8),
            )

    async def read(self, watch: Watch, *, block: int | None = None) -> VenueRead:
        """The watched accounts' open Gains trades at `block` (default latest)."""
        accounts = [_checksum(a, "account") for a in watch.accounts]
        if len(set(accounts)) != len(accounts):
            raise VenueError("watch: an account is listed twice")
        wallet = _checksum(watch.wallet, "wallet") if watch.wallet else None
        token_address = (
            _checksum(watch.wallet_token, "watch.wallet_token")
            if watch.wallet_token
            else self.wallet_token
        )
        wallet_token = await self._token(token_address)
        trips = self._meta.round_trips + self._batches.round_trips
        number, extra = await pin_block(self._reads, block)
        d = self.deployment.diamond
        mc = self.deployment.multicall
        calls = [Call(mc, _BLOCK_NUMBER.encode()), Call(mc, _BLOCK_TIME.encode())]
        if wallet is not None:
            calls += [
                Call(token_address, _BALANCE_OF.encode(wallet)),
                Call(mc, _ETH_BALANCE.encode(wallet)),
            ]
        for a in accounts:
            calls += [
                Call(d, _GET_TRADES.encode(a)),
                Call(d, _GET_TRADE_INFOS.encode(a)),
                Call(d, _GET_TRADES_LIQ.encode(a)),
            ]
        if watch.delegated:
            for a in accounts:
                calls += [
                    Call(token_address, _BALANCE_OF.encode(a)),
                    Call(token_address, _ALLOWANCE.encode(a, d)),
                ]
        collateral_ids = sorted(self._cache.collaterals)
        calls += [Call(d, _GET_COLLATERAL_PRICE.encode(i)) for i in collateral_ids]
        known = sorted(self._cache.pairs)
        for i in known:
            calls += self._pair_calls(self._cache.pairs[i])
        meta = await self._meta.aggregate(calls, block=number)
        if int(_one(_BLOCK_NUMBER, meta[0], "getBlockNumber")) != number:
            raise VenueDecodeError(f"the batch pinned to block {number} ran at another block")
        block_time = int(_one(_BLOCK_TIME, meta[1], "getCurrentBlockTimestamp"))
        at = 2
        if wallet is not None:
            balance = int(_one(_BALANCE_OF, meta[2], f"{wallet_token.symbol}.balanceOf(wallet)"))
            native = int(_one(_ETH_BALANCE, meta[3], "wallet getEthBalance"))
            wallet_state = Wallet(
                wallet, wallet_token, wallet_token.amount(balance), TokenAmount(native, 18)
            )
            at = 4
        else:
            wallet_state = Wallet(
                ZERO_ADDRESS, wallet_token, wallet_token.amount(0), TokenAmount(0, 18)
            )
        raw: list[tuple[RawTrade, Sequence[Any], LiquidationParams]] = []
        for a in accounts:
            trades = _one(_GET_TRADES, meta[at], f"getTrades({a})")
            infos = _one(_GET_TRADE_INFOS, meta[at + 1], f"getTradeInfos({a})")
            liqs = _one(_GET_TRADES_LIQ, meta[at + 2], f"getTradesLiquidationParams({a})")
            at += 3
            if not len(trades) == len(infos) == len(liqs):
                raise VenueDecodeError(
                    f"getTrades({a}) gave {len(trades)} trades, getTradeInfos {len(infos)}, "
                    f"getTradesLiquidationParams {len(liqs)}"
                )
            for t, info, liq in zip(trades, infos, liqs, strict=True):
                trade = RawTrade.decode(t)
                # market trades only (limit and stop orders are not positions yet)
                if trade.is_open and int(t[7]) == 0 and trade.collateral_amount > 0:
                    raw.append((trade, info, _params(liq)))
        funds: dict[str, TokenAmount] | None = None
        if watch.delegated:
            funds = {}
            for a in accounts:
                held = int(_one(_BALANCE_OF, meta[at], f"{wallet_token.symbol}.balanceOf({a})"))
                allowed = int(_one(_ALLOWANCE, meta[at + 1], f"{wallet_token.symbol}.allowance"))
                funds[a] = wallet_token.amount(min(held, allowed))
                at += 2
        prices: dict[int, int] = {}
        for i in collateral_ids:
            prices[i] = int(_one(_GET_COLLATERAL_PRICE, meta[at], f"getCollateralPriceUsd({i})"))
            at += 1
        states: dict[int, PairState] = {}
        for i in known:
            states[i] = self._pair_state(self._cache.pairs[i], meta[at : at + 5])
            at += 5
        wanted = sorted({t.pair_index for t, _, _ in raw} - set(states))
        if wanted:
            await self._learn_pairs(wanted, number)
            results = await self._meta.aggregate(
                [c for i in wanted for c in self._pair_calls(self._cache.pairs[i])], block=number
            )
            for k, i in enumerate(wanted):
                states[i] = self._pair_state(self._cache.pairs[i], results[5 * k : 5 * k + 5])
        issues: list[ReadIssue] = []
        markets: dict[int, Market] = {}
        for i in sorted({t.pair_index for t, _, _ in raw}):
            state = states[i]
            if state.price is None:
                issues.append(
                    ReadIssue(
                        "price_invalid",
                        str(i),
                        f"pair {i} ({state.info.symbol}): its feeds give no price; its trades "
                        "are left out",
                    )
                )
                continue
            markets[i] = map_market(state, venue=self.name)
        priced = [(t, info, p) for t, info, p in raw if t.pair_index in markets]
        calls = []
        for t, _, _ in priced:
            price = states[t.pair_index].price
            calls += [
                Call(d, _GET_FEES_DATA.encode(t.user, t.index)),
                Call(d, _PAIR_SPREAD.encode(t.user, t.pair_index)),
                Call(d, _GET_HOLDING.encode(t.user, t.index, price)),
            ]
        results = await self._batches.aggregate(calls, block=number) if calls else []
        positions: list[Position] = []
        trades_out: dict[str, GainsTrade] = {}
        for k, (t, info, params) in enumerate(priced):
            fees_r, spread_r, holding_r = results[3 * k : 3 * k + 3]
            what = f"trade {t.key}"
            fees_data = _one(_GET_FEES_DATA, fees_r, f"getTradeFeesData({what})")
            spread = int(_one(_PAIR_SPREAD, spread_r, f"pairSpreadP({what})"))
            holding = _one(_GET_HOLDING, holding_r, f"getTradePendingHoldingFeesCollateral({what})")
            if t.collateral_index not in self._cache.collaterals:
                issues.append(ReadIssue("collateral_unknown", t.key, f"{what}: unknown collateral"))
                continue
            gains = self._evaluate(
                t,
                info,
                params,
                states[t.pair_index],
                spread,
                holding_total=int(holding[3]),
                realized=int(fees_data[1]) - int(fees_data[0]),
                collateral_price=prices[t.collateral_index],
            )
            trades_out[t.key] = gains
            positions.append(
                map_trade(gains, self._cache.collaterals[t.collateral_index], venue=self.name)
            )
        self.trades = trades_out
        snapshot = Snapshot(
            block_number=number,
            block_time=block_time,
            wallet=wallet_state,
            markets=tuple(markets.values()),
            positions=tuple(positions),
            funds=funds,
        )
        trips = self._meta.round_trips + self._batches.round_trips - trips + extra
        return VenueRead(snapshot, None, tuple(issues), round_trips=trips)

    def _evaluate(
        self,
        t: RawTrade,
        info: Sequence[Any],
        params: LiquidationParams,
        state: PairState,
        pair_spread_p: int,
        *,
        holding_total: int,
        realized: int,
        collateral_price: int,
    ) -> GainsTrade:
        """Gains' liquidation rule for trade `t` at the pair's price (gains_math)."""
        collateral = self.collateral(t.collateral_index)
        assert state.price is not None
        fee = closing_fee(
            position_size(t.collateral_amount, t.leverage),
            fee_p=state.fee.total_position_size_fee_p,
            min_position_size_usd=state.fee.min_position_size_usd,
            collateral_precision=collateral.precision,
            collateral_price_usd=collateral_price,
            counter_trade_multiplier=(
                state.counter_trade_multiplier if t.is_counter_trade else LEVERAGE_PRECISION
            ),
        )
        try:
            version = ContractsVersion(int(info[6]))
        except ValueError:
            version = ContractsVersion.V10
        try:
            liq = liquidation_price(
                open_price=t.open_price,
                long=t.long,
                collateral=t.collateral_amount,
                leverage=t.leverage,
                closing_fee_collateral=fee,
                holding_fees_collateral=holding_total,
                realized_pnl_collateral=realized,
                params=params,
                pair_spread_p=pair_spread_p,
                version=version,
            )
        except ValueError as exc:
            raise VenueDecodeError(f"trade {t.key}: {exc}") from None
        return GainsTrade(
            trade=t,
            version=version,
            params=params,
            pair_spread_p=pair_spread_p,
            closing_fee=fee,
            holding_fees=holding_total,
            realized_pnl=realized,
            collateral_price_usd=collateral_price,
            mark=state.price,
            liquidation_price=liq,
        )

    async def snapshot(self, watch: Watch, *, block: int | None = None) -> Snapshot:
        return (await self.read(watch, block=block)).snapshot

    async def markets(self, *, block: int | None = None) -> tuple[Market, ...]:
        """Every pair of the diamond whose feeds give a price, modelled as `read` models them,
        at `block`."""
        number, _ = await pin_block(self._reads, block)
        d = self.deployment.diamond
        (count,) = _PAIRS_COUNT.decode(await self._reads.eth_call(d, _PAIRS_COUNT.encode(), number))
        indices = list(range(int(count)))
        await self._learn_pairs(indices, number)
        calls = [c for i in indices for c in self._pair_calls(self._cache.pairs[i])]
        results = await self._meta.aggregate(calls, block=number) if calls else []
        out = []
        for k, i in enumerate(indices):
            state = self._pair_state(self._cache.pairs[i], results[5 * k : 5 * k + 5])
            if state.price is not None:
                out.append(map_market(state, venue=self.name))
        return tuple(out)

    async def _token(self, address: str) -> Token:
        found = self._cache.tokens.get(address)
        if found is None:
            results = await self._meta.aggregate(
                [Call(address, _DECIMALS.encode()), Call(address, _SYMBOL.encode())],
                block="latest",
            )
            decimals = int(_one(_DECIMALS, results[0], f"{address}.decimals"))
            symbol = str(_SYMBOL.decode(results[1].data)[0]) if results[1].success else address[:8]
            found = self._cache.tokens[address] = Token(address, symbol, decimals)
        return found

    # -- acting ---------------------------------------------------------------------------------

    async def _current(self, trader: str, index: int, position: Position) -> RawTrade:
        d = self.deployment.diamond
        (t,) = _GET_TRADE.decode(await self._reads.eth_call(d, _GET_TRADE.encode(trader, index)))
        trade = RawTrade.decode(t)
        if not trade.is_open or str(trade.pair_index) != position.market_id:
            raise VenueError(f"trade {position.key} is gone (closed or liquidated)")
        if trade.long != (position.side is Side.LONG):
            raise VenueError(f"trade {position.key} is not the {position.side.value} it was")
        return trade

    async def _leverage_bounds(self, pair_index: int) -> tuple[int, int]:
        d = self.deployment.diamond
        results = await self._meta.aggregate(
            [Call(d, _MIN_LEVERAGE.encode(pair_index)), Call(d, _MAX_LEVERAGE.encode(pair_index))],
            block="latest",
        )
        return (
            int(_one(_MIN_LEVERAGE, results[0], f"pairMinLeverage({pair_index})")),
            int(_one(_MAX_LEVERAGE, results[1], f"pairMaxLeverage({pair_index})")),
        )

    def _step(self, trader: str, sender: str, call: bytes, description: str) -> TxRequest:
        """The diamond call `call` made as `trader`: sent by the trader, or by its trading
        delegate `sender` through delegatedTradingAction."""
        d = self.deployment.diamond
        if trader == sender:
            return TxRequest(d, call, description=description)
        return TxRequest(
            d,
            _DELEGATED.encode(trader, call),
            description=f"{description}, as trading delegate {sender} of {trader}",
        )

    async def build(self, action: Action, snapshot: Snapshot, *, sender: str) -> TxPlan:
        """The transactions for `action` (see the module's docstring). The keeper acts on its
        own trades, or on those of traders that named it their trading delegate."""
        sender = _checksum(sender, "sender")
        if action.venue != self.name:
            raise VenueError(f"{action.kind}: action is for venue {action.venue}, not {self.name}")
        if isinstance(action, Alert):
            return TxPlan(action, sender, (), execution=Execution.DELAYED)
        if isinstance(action, TopUp | Withdraw) and action.scope is not Scope.POSITION:
            raise VenueError(f"{action.kind} {action.key}: Gains has no cross accounts")
        try:
            position = snapshot.position(self.name, action.key)
        except KeyError:
            raise VenueError(f"{action.kind}: no position {action.key} in the snapshot") from None
        trader, index = parse_key(position.key)
        if _checksum(action.account, "account") != trader:
            raise VenueError(f"{action.kind} {action.key}: the position is not {action.account}'s")
        raw = await self._current(trader, index, position)
        label = f"{position.side.value} {position.market_id} {position.key}"
        if isinstance(action, TopUp | Withdraw):
            return await self._collateral_plan(action, position, raw, sender, label)
        market = snapshot.market_of(position)
        expected = market.mark_price.rescale_floor(10).raw
        if isinstance(action, Reduce):
            delta = action.size_delta
            if delta.decimals != position.size.decimals or not 0 < delta.raw < position.size.raw:
                raise VenueError(
                    f"reduce {action.key}: size_delta {delta} must be positive and less than "
                    f"the position's size {position.size} (use Close)"
                )
            lowest, _ = await self._leverage_bounds(raw.pair_index)
            lev_delta = -(-raw.leverage * delta.raw // position.size.raw)
            text = f"by leverage {lev_delta / LEVERAGE_PRECISION}x"
            if raw.leverage - lev_delta < lowest:
                lev_delta = raw.leverage - lowest
                text = f"to the pair's minimum leverage {lowest / LEVERAGE_PRECISION}x"
            if lev_delta <= 0:
                raise VenueError(
                    f"reduce {action.key}: the trade is at the pair's minimum leverage "
                    f"{lowest / LEVERAGE_PRECISION}x; only a close can cut it further"
                )
            call = _DECREASE.encode(index, 0, lev_delta, expected)
            description = f"Gains decreasePositionSize {text} on {label}, expected price {expected}"
        else:
            assert isinstance(action, Close)
            call = _CLOSE.encode(index, expected)
            description = f"Gains closeTradeMarket {label}, expected price {expected}"
        step = self._step(trader, sender, call, description)
        return TxPlan(action, sender, (step,), execution=Execution.DELAYED)

    async def _collateral_plan(
        self, action: TopUp | Withdraw, position: Position, raw: RawTrade, sender: str, label: str
    ) -> TxPlan:
        """A top-up (updateLeverage down: the same size on more collateral) or a withdrawal
        (updateLeverage up) of about `action.amount`: the new leverage is rounded so that the
        collateral moved is at most the amount."""
        token = position.collateral_token
        if action.token.address.lower() != token.address.lower():
            raise VenueError(
                f"{action.kind} {action.key}: token {action.token.address} is not the trade's "
                f"collateral {token.address}"
            )
        amount = action.amount.raw
        if amount <= 0 or action.amount.decimals != token.decimals:
            raise VenueError(f"{action.kind} {action.key}: amount must be positive, in {token}")
        c, lev = raw.collateral_amount, raw.leverage
        lowest, highest = await self._leverage_bounds(raw.pair_index)
        if isinstance(action, TopUp):
            new_lev = max(-(-c * lev // (c + amount)), lowest)
            moved = c * lev // new_lev - c
        else:
            if amount >= c:
                raise VenueError(f"withdraw {action.key}: {action.amount} is the whole collateral")
            new_lev = min(c * lev // (c - amount), highest)
            moved = c - c * lev // new_lev if new_lev else 0
        if new_lev == lev or moved <= 0:
            raise VenueError(
                f"{action.kind} {action.key}: {action.amount} moves no collateral at leverage "
                f"{lev / LEVERAGE_PRECISION}x (the pair allows {lowest / LEVERAGE_PRECISION}x "
                f"to {highest / LEVERAGE_PRECISION}x, in steps of 0.001x)"
            )
        trader = raw.user
        d = self.deployment.diamond
        moved_text = token.amount(moved)
        step = self._step(
            trader,
            sender,
            _UPDATE_LEVERAGE.encode(raw.index, new_lev),
            f"Gains updateLeverage {lev / LEVERAGE_PRECISION}x -> {new_lev / LEVERAGE_PRECISION}x "
            f"({'adds' if isinstance(action, TopUp) else 'frees'} {moved_text} {token.symbol}) "
            f"on {label}",
        )
        if isinstance(action, Withdraw):
            return TxPlan(action, sender, (step,), execution=Execution.DELAYED)
        results = await self._meta.aggregate(
            [
                Call(token.address, _BALANCE_OF.encode(trader)),
                Call(token.address, _ALLOWANCE.encode(trader, d)),
            ],
            block="latest",
        )
        balance = int(_one(_BALANCE_OF, results[0], f"{token.symbol}.balanceOf({trader})"))
        allowed = int(_one(_ALLOWANCE, results[1], f"{token.symbol}.allowance({trader})"))
        if balance < moved:
            raise VenueError(
                f"top_up {action.key}: {trader} holds {token.amount(balance)} {token.symbol}, "
                f"the top-up takes {moved_text}"
            )
        if allowed >= moved:
            return TxPlan(action, sender, (step,), execution=Execution.DELAYED)
        if trader != sender:
            raise VenueError(
                f"top_up {action.key}: {trader} allows the diamond {d} to take "
                f"{token.amount(allowed)} {token.symbol} of the {moved_text} needed; the trader "
                "approves the diamond with its own key (`keeper delegate` prints how)"
            )
        approve = TxRequest(
            token.address,
            _APPROVE.encode(d, moved),
            description=f"approve the Gains diamond {d} to take {moved_text} {token.symbol}",
        )
        return TxPlan(action, sender, (approve, step), approvals=1, execution=Execution.DELAYED)

    # -- following orders -----------------------------------------------------------------------

    def order_ref(self, mined: Sequence[MinedTx]) -> OrderRef | None:
        """The pending order the plan's mined transactions stored, if any."""
        for tx in reversed(mined):
            ref = order_of(tx.logs, self.deployment.diamond)
            if ref is not None:
                return ref
        return None

    def order_key(self, mined: Sequence[MinedTx]) -> bytes | None:
        """The stored order's Id (OrderRef.key), for labels and the journal."""
        ref = self.order_ref(mined)
        return None if ref is None else ref.key

    async def _pending(self, ref: OrderRef, block: int | str) -> tuple[bool, int]:
        d = self.deployment.diamond
        (po,) = _GET_PENDING.decode(
            await self._reads.eth_call(d, _GET_PENDING.encode((ref.user, ref.index)), block)
        )
        return bool(po[3]), int(po[5])

    async def action_state(self, plan: TxPlan, mined: Sequence[MinedTx]) -> ActionState:
        """PENDING until every step is mined; then the order's fate: AWAITING_EXECUTION while
        it is pending, DONE when executed (MarketExecuted, or a size decrease or leverage
        update with no cancel reason), CANCELLED when the callback cancelled it, EXPIRED when
        cancelled after the timeout (ChainlinkCallbackTimeout)."""
        if any(not tx.success for tx in mined):
            return ActionState.FAILED
        if len(mined) < len(plan.steps):
            return ActionState.PENDING
        if not plan.steps:
            return ActionState.DONE
        ref = self.order_ref(mined)
        if ref is None:
            raise VenueError(
                f"{plan.action.kind} {plan.action.key}: no Gains order was stored (no "
                "MarketOrderInitiated, PositionSizeUpdateInitiated or LeverageUpdateInitiated log)"
            )
        head = await self._reads.block_number()
        is_open, _ = await self._pending(ref, head)
        if is_open:
            return ActionState.AWAITING_EXECUTION
        outcome = await self._outcome(ref, mined[-1].block_number)
        if outcome is not None:
            self._cache.gone.pop(ref.key, None)
            return outcome
        first = self._cache.gone.setdefault(ref.key, head)
        if head - first < ORDER_GONE_GRACE_BLOCKS:
            return ActionState.AWAITING_EXECUTION
        return ActionState.CANCELLED

    async def _logs(self, from_block: int, topics: list[Any]) -> list[Mapping[str, Any]]:
        logs = await self._reads.request(
            "eth_getLogs",
            [
                {
                    "address": self.deployment.diamond,
                    "fromBlock": hex(from_block),
                    "toBlock": "latest",
                    "topics": topics,
                }
            ],
        )
        if not isinstance(logs, list):
            raise VenueDecodeError(f"eth_getLogs: not a list: {logs!r:.80}")
        return logs

    async def _outcome(self, ref: OrderRef, from_block: int) -> ActionState | None:
        """The order's answer or timeout among the diamond's logs since `from_block`."""
        user = "0x" + bytes.fromhex(ref.user[2:]).rjust(32, b"\0").hex()
        pair = "0x" + ref.pair_index.to_bytes(32, "big").hex()
        found: list[Mapping[str, Any]] = []
        for topics in (
            [
                [
                    "0x" + t.hex()
                    for t in (
                        EVENT_MARKET_EXECUTED,
                        EVENT_MARKET_CLOSE_CANCELED,
                        EVENT_MARKET_OPEN_CANCELED,
                    )
                ],
                user,
            ],
            [
                ["0x" + t.hex() for t in (EVENT_DECREASE_EXECUTED, EVENT_LEVERAGE_EXECUTED)],
                None,
                user,
            ],
            ["0x" + EVENT_CALLBACK_TIMEOUT.hex(), pair],
        ):
            found += await self._logs(from_block, topics)
        for entry in found:
            data = bytes.fromhex(str(entry["data"])[2:])
            if _order_id(data) != (ref.user, ref.index):
                continue
            topic = bytes.fromhex(str(entry["topics"][0])[2:])
            if topic == EVENT_MARKET_EXECUTED:
                return ActionState.DONE
            if topic == EVENT_CALLBACK_TIMEOUT:
                return ActionState.EXPIRED
            if topic == EVENT_DECREASE_EXECUTED:
                reason = _word(data, 2)
            elif topic == EVENT_LEVERAGE_EXECUTED:
                reason = _word(data, 3)
            else:
                reason = -1
            return ActionState.DONE if reason == CancelReason.NONE else ActionState.CANCELLED
        return None

    async def cancel_if_expired(self, plan: TxPlan, mined: Sequence[MinedTx]) -> TxRequest | None:
        """cancelOrderAfterTimeout for the plan's order when it is still pending
        getMarketOrdersTimeoutBlocks() blocks after it was stored (as the trader, or through
        delegatedTradingAction when the plan's sender is the trader's delegate), else None.
        Once mined, action_state says EXPIRED."""
        ref = self.order_ref(mined)
        if ref is None:
            return None
        head = await self._reads.block_number()
        is_open, created = await self._pending(ref, head)
        if not is_open:
            return None
        d = self.deployment.diamond
        (timeout,) = _TIMEOUT_BLOCKS.decode(
            await self._reads.eth_call(d, _TIMEOUT_BLOCKS.encode(), head)
        )
        # the cancel is mined in a later block than the head it is decided on
        if head + 1 < created + int(timeout):
            return None
        sender = _checksum(plan.sender, "sender")
        return self._step(
            ref.user,
            sender,
            _CANCEL_TIMEOUT.encode(ref.index),
            f"Gains cancelOrderAfterTimeout: order {ref.index} of {ref.user} unanswered for "
            f"{int(timeout)} blocks",
        )

    def decode_error(self, data: bytes) -> RevertReason:
        """Diamond revert data, decoded (the diamond's custom errors, ERC-20 errors)."""
        return decode_gains_error(data)

    def decode_rpc_error(self, exc: RpcError) -> RevertReason | None:
        if not isinstance(exc, RpcResponseError):
            return None
        data = revert_data(exc)
        return None if data is None else self.decode_error(data)

    # -- trading delegates ----------------------------------------------------------------------

    async def delegation(
        self, account: str, delegate: str, *, token: str | None = None
    ) -> Delegation:
        """Whether `account` has named `delegate` its trading delegate (getTradingDelegate) at
        the latest block. Gains sets no action count or expiry on a delegate. With `token`,
        `top_up_left` is what the account's wallet can pay into top-ups: its balance, within
        its allowance to the diamond."""
        account = _checksum(account, "account")
        delegate = _checksum(delegate, "delegate")
        d = self.deployment.diamond
        calls = [Call(d, _GET_DELEGATE.encode(account))]
        if token is not None:
            token = _checksum(token, "token")
            calls += [
                Call(token, _BALANCE_OF.encode(account)),
                Call(token, _ALLOWANCE.encode(account, d)),
            ]
        results = await self._meta.aggregate(calls, block="latest")
        named = to_checksum_address(_one(_GET_DELEGATE, results[0], "getTradingDelegate"))
        problems: list[str] = []
        if named == ZERO_ADDRESS:
            problems.append(f"{account} has named no trading delegate (setTradingDelegate)")
        elif named != delegate:
            problems.append(f"{account}'s trading delegate is {named}, not {delegate}")
        top_up_left = None
        if token is not None:
            decimals = (await self._token(token)).decimals
            balance = int(_one(_BALANCE_OF, results[1], f"{token}.balanceOf"))
            allowance = int(_one(_ALLOWANCE, results[2], f"{token}.allowance"))
            top_up_left = TokenAmount(min(balance, allowance), decimals)
        return Delegation(
            account=account,
            delegate=delegate,
            active=named == delegate,
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
    ) -> tuple[TxRequest, ...]:
        """What `account` sends with its own key so that `delegate` can act for it:
        setTradingDelegate(delegate) on the diamond, then `token` approved to the diamond
        (`top_up_allowance` raw units, default unlimited) so that top-ups are paid from the
        account's wallet. Gains has no action count or expiry: `max_actions` and `expires_at`
        are checked for sense only; the trader ends the grant with removeTradingDelegate."""
        account = _checksum(account, "account")
        delegate = _checksum(delegate, "delegate")
        token = _checksum(token, "token")
        if max_actions <= 0:
            raise VenueError(f"delegate setup: max_actions must be positive, got {max_actions}")
        if expires_at <= 0:
            raise VenueError(f"delegate setup: expires_at must be positive, got {expires_at}")
        d = self.deployment.diamond
        return (
            TxRequest(
                d,
                _SET_DELEGATE.encode(delegate),
                description=(
                    f"Gains setTradingDelegate: {delegate} may trade for {account} (no count or "
                    "expiry on Gains; removeTradingDelegate ends it)"
                ),
            ),
            TxRequest(
                token,
                _APPROVE.encode(d, MAX_UINT256 if top_up_allowance is None else top_up_allowance),
                description=f"approve the Gains diamond {d} to take {token} for top-ups",
            ),
        )
