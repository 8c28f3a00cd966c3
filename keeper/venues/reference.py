"""The adapter for our reference exchange (contracts/src/PerpExchange.sol), isolated and cross.

Units on chain: USD amounts in USDC units (6 decimals), sizes and prices with 18 decimals,
rates as WAD (1e18 = 100%), funding rates per second. They map onto keeper/model.py as:

- `Market`: id `str(marketId)`; index token named by the feed's description ("ETH / USD" ->
  "ETH"); mark price from the feed (18 decimals); maintenance rate on the notional at the mark
  (`Basis.MARK`), liquidatable strictly when equity < maintenance (`Strictness.LT`), no
  collateral floor; close and liquidation fee rates; funding per second on the notional at
  the mark, longs pay `fundingRate` and shorts its opposite; no borrowing fee. `close_quote`
  holds the close fee and the marginal price impact of closing at the current skew (the cost
  to the side that pays it, capped at maxImpactRate); a large close moves the skew further.
- `Position`: key `0x` + bytes32 (exchange.positionKey / crossPositionKey), size, entry price,
  collateral in USDC valued at 1 USD, and `fees` = the accrued unsettled funding, computed
  exactly as PerpMath.fundingOwed does from the funding indexes accrued to the block (positive:
  owed; rounded up), which is what PerpLens.getPosition reports as pendingFunding.
- `CrossAccount`: key = the account's address; collateral = its cross balance; positions =
  its cross positions in the exchange's order. Accounts without cross positions are left out.

A read costs at most ceil(N / chunk_size) + 2 round trips for N positions (chunk_size 500):
1. eth_blockNumber pins the block (skipped when the caller gives the block);
2. one Multicall3 batch at that block: Multicall3's block number (checked: a node that ran the
   batch at another block is refused) and timestamp, lens.getMarkets, lens.getPoolState, the
   wallet's USDC and native balances, and per watched account its isolated and cross position
   keys and its cross balance (in delegated mode, where the wallet is an operator the accounts
   approved, also each account's USDC balance, its allowance to the exchange and its grant to
   the operator: `Snapshot.funds`, what the operator can pay in from each account now);
3. the positions, exchange.positions(key) for each key, in Multicall3 batches of chunk_size,
   at most max_concurrency at once, each batch sent as soon as its keys are decoded from the
   answer of 2 (the markets, pool and wallet are decoded while the node runs them) and
   decoded as it arrives (the stored fields only: funding is accrued here from the market's
   indexes, which is cheaper for the node than PerpLens.getPositions, whose every entry
   re-reads its market and feed).
Static facts (the collateral token, the feeds' names) are read once by `connect()`.

Speed (scripts/bench_snapshot.py): the answers are decoded from the HTTP body's bytes without
a JSON parse or an intermediate string (`jsonrpc.parse_data_response`); the first batch's
answer is read lazily (`codec.Aggregate3Answer`), so the first positions batch goes out after
a few accounts' key lists; keys are hexed once, with "0x", in one C pass per list, and the
requests are joined from them in one go. The positions' answers are read in place
(`codec.decode_aggregate3_uniform`, `_model_chunk`), every field checked there, and the model
values are built as the trusted constructors build them, inlined (`VALUE_SLOTS`,
`POSITION_SLOTS`), which skip only the checks `_model_chunk` has made. The cyclic garbage
collector is paused for the read, and at its end the Snapshot's objects are moved to the
oldest generation untraversed, with a full collection every hundredth read
(`_CollectorPause`): during the read it would find nothing to free, and counting the
Snapshot's objects as young garbage made a full collection of the whole heap land in almost
every large read.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, NoReturn, cast

from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from keeper.abis import abi
from keeper.chain.jsonrpc import JsonRpc, RpcError, RpcResponseError
from keeper.chain.multicall import Call, CallResult
from keeper.chain.revert import RevertReason, decode_revert, revert_data
from keeper.chain.rpc import Reads
from keeper.model import (
    POSITION_SLOTS,
    Action,
    Alert,
    Basis,
    Close,
    CloseQuote,
    CrossAccount,
    MarginMode,
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
from keeper.units import CONTEXT, VALUE_SLOTS, Price, TokenAmount, Usd
from keeper.venues.base import (
    ActionState,
    Delegation,
    Execution,
    MinedTx,
    OpenInterest,
    PoolState,
    ReadIssue,
    StateOverride,
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
    sync_action_state,
)
from keeper.venues.codec import (
    Aggregate3Answer,
    ContractFn,
    FastMulticall,
    UniformResults,
    address_word,
    encode_aggregate3,
    read_bytes32_hex,
    read_words,
    uint_word,
)

__all__ = [
    "NAME",
    "ContractFn",
    "RawMarket",
    "RawPosition",
    "ReferenceVenue",
    "decode_markets",
    "decode_pool",
    "decode_position",
    "funding_owed",
    "map_market",
    "map_position",
    "symbol_of",
]

NAME = "refex"
USD_DECIMALS = 6
SIZE_DECIMALS = 18
FUNDING_UPDATE_GAS = 150_000
"""Gas an exchange call may need beyond its estimate: the first funding update after time has
passed writes the market's funding indexes and times (measured: addMargin right after an open
is estimated at 81,063 gas, and needs 191,924 once five seconds have passed)."""
PRICE_DECIMALS = 18
WAD = 10**18
USD_SCALE = 10**30
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
DEFAULT_CHUNK_SIZE = 500
TEST_USDC_ALLOWANCE_SLOT = 2
"""Storage slot of `allowance` in TestUSDC (totalSupply 0, balanceOf 1, allowance 2)."""

ONE_USD = Price(10**PRICE_DECIMALS, PRICE_DECIMALS)
"""The collateral's price: USDC is valued at 1 USD."""


# --- ABI plumbing ----------------------------------------------------------------------------


_GET_MARKETS = ContractFn.of("PerpLens", "getMarkets")
_GET_POOL = ContractFn.of("PerpLens", "getPoolState")
_LENS_EXCHANGE = ContractFn.of("PerpLens", "exchange")
_COLLATERAL = ContractFn.of("PerpExchange", "collateralToken")
_ISOLATED_KEYS = ContractFn.of("PerpExchange", "isolatedPositionKeys")
_CROSS_KEYS = ContractFn.of("PerpExchange", "crossPositionKeys")
_CROSS_BALANCE = ContractFn.of("PerpExchange", "crossBalance")
_POSITIONS = ContractFn.of("PerpExchange", "positions")
_ADD_MARGIN = ContractFn.of("PerpExchange", "addMargin")
_REMOVE_MARGIN = ContractFn.of("PerpExchange", "removeMargin")
_DECREASE = ContractFn.of("PerpExchange", "decreasePosition")
_CLOSE = ContractFn.of("PerpExchange", "closePosition")
_DEPOSIT_CROSS = ContractFn.of("PerpExchange", "depositCross")
_WITHDRAW_CROSS = ContractFn.of("PerpExchange", "withdrawCross")
_DECREASE_CROSS = ContractFn.of("PerpExchange", "decreaseCross")
_CLOSE_CROSS = ContractFn.of("PerpExchange", "closeCross")
_OPERATOR_GRANT = ContractFn.of("PerpExchange", "operatorGrant")
_APPROVE_OPERATOR = ContractFn.of("PerpExchange", "approveOperator")
_FOR = {  # the operator's call for each of the trader's own
    fn.name: ContractFn.of("PerpExchange", fn.name + "For")
    for fn in (
        _ADD_MARGIN,
        _REMOVE_MARGIN,
        _DECREASE,
        _CLOSE,
        _DEPOSIT_CROSS,
        _WITHDRAW_CROSS,
        _DECREASE_CROSS,
        _CLOSE_CROSS,
    )
}
_BALANCE_OF = ContractFn.of("TestUSDC", "balanceOf")
_ALLOWANCE = ContractFn.of("TestUSDC", "allowance")
_APPROVE = ContractFn.of("TestUSDC", "approve")
_DECIMALS = ContractFn.of("TestUSDC", "decimals")
_SYMBOL = ContractFn.of("TestUSDC", "symbol")
_DESCRIPTION = ContractFn.of("PriceFeed", "description")
_ETH_BALANCE = ContractFn.of("Multicall3", "getEthBalance")
_BLOCK_TIME = ContractFn.of("Multicall3", "getCurrentBlockTimestamp")
_BLOCK_NUMBER = ContractFn.of("Multicall3", "getBlockNumber")

_POSITIONS_SELECTOR = _POSITIONS.selector


# --- pure decoding and mapping ---------------------------------------------------------------


def _wad(raw: int) -> Decimal:
    """A WAD integer as an exact Decimal fraction."""
    return Decimal(raw).scaleb(-18, CONTEXT)


def funding_owed(size: int, index_now: int, index_then: int) -> int:
    """PerpMath.fundingOwed: size * (now - then) / 1e30, rounded toward plus infinity."""
    return -((-size * (index_now - index_then)) // USD_SCALE)


def symbol_of(description: str, market_id: int) -> str:
    """The index token's symbol from a feed description ("ETH / USD" -> "ETH")."""
    base = description.split("/", maxsplit=1)[0].strip()
    return base or f"MARKET{market_id}"


@dataclass(frozen=True, slots=True)
class RawMarket:
    """What the reference-exchange adapter uses of PerpLens.MarketView (raw on-chain units)."""

    market_id: int
    feed: str
    initial_margin_rate: int
    maintenance_margin_rate: int
    close_fee_rate: int
    liquidation_fee_rate: int
    impact_factor: int
    max_impact_rate: int
    long_oi: int
    short_oi: int
    price_valid: bool
    price: int
    funding_rate: int
    long_funding_index: int
    short_funding_index: int


_checksummed = lru_cache(maxsize=1024)(to_checksum_address)
"""Feed addresses repeat read after read: each is hashed (keccak) once."""


def decode_markets(data: bytes) -> list[RawMarket]:
    """PerpLens.getMarkets() return data -> RawMarkets."""
    (views,) = _GET_MARKETS.decode(data)
    markets = []
    for market_id, params, state, valid, price, rate, long_index, short_index in views:
        markets.append(
            RawMarket(
                market_id=int(market_id),
                feed=_checksummed(params[0]),
                initial_margin_rate=int(params[2]),
                maintenance_margin_rate=int(params[3]),
                close_fee_rate=int(params[5]),
                liquidation_fee_rate=int(params[6]),
                impact_factor=int(params[10]),
                max_impact_rate=int(params[11]),
                long_oi=int(state[0]),
                short_oi=int(state[1]),
                price_valid=bool(valid),
                price=int(price),
                funding_rate=int(rate),
                long_funding_index=int(long_index),
                short_funding_index=int(short_index),
            )
        )
    return markets


def decode_pool(data: bytes, collateral_decimals: int = USD_DECIMALS) -> PoolState:
    """PerpLens.getPoolState() return data -> PoolState."""
    ((liquidity, shares, reserved, pools),) = _GET_POOL.decode(data)
    return PoolState(
        liquidity=Usd(int(liquidity), collateral_decimals),
        reserved=Usd(int(reserved), collateral_decimals),
        shares=int(shares),
        open_interest=tuple(
            OpenInterest(
                market_id=str(int(mid)),
                long=TokenAmount(int(long_oi), SIZE_DECIMALS),
                short=TokenAmount(int(short_oi), SIZE_DECIMALS),
                funding_rate=_wad(int(rate)),
            )
            for mid, long_oi, short_oi, rate in pools
        ),
    )


def map_market(raw: RawMarket, symbol: str, *, venue: str = NAME) -> Market:
    """A RawMarket with a valid price as a model Market (see the module's docstring)."""
    if not raw.price_valid:
        raise VenueError(f"market {raw.market_id}: no valid price to model it with")
    skew = raw.long_oi - raw.short_oi
    marginal_impact = min(abs(raw.impact_factor * skew) // WAD, raw.max_impact_rate)
    close_fee = _wad(raw.close_fee_rate)
    return Market(
        venue=venue,
        market_id=str(raw.market_id),
        index_token=Token(symbol, symbol, SIZE_DECIMALS),
        usd_decimals=USD_DECIMALS,
        mark_price=Price(raw.price, PRICE_DECIMALS),
        maintenance_rate=_wad(raw.maintenance_margin_rate),
        basis=Basis.MARK,
        strictness=Strictness.LT,
        min_collateral_usd=None,
        close_fee_rate=close_fee,
        liquidation_fee_rate=_wad(raw.liquidation_fee_rate),
        funding_rate_long=_wad(raw.funding_rate),
        funding_rate_short=-_wad(raw.funding_rate),
        close_quote=CloseQuote(fee_rate=close_fee, impact_rate=_wad(marginal_impact)),
    )


@dataclass(frozen=True, slots=True)
class RawPosition:
    """PerpExchange.positions(key): the stored fields (raw units)."""

    account: bytes  # 20 bytes
    is_long: bool
    is_cross: bool
    market_id: int
    size: int
    collateral: int
    entry_price: int
    funding_index: int
    last_updated: int


_WORD_TRUE = (1).to_bytes(32, "big")
_WORD_FALSE = bytes(32)
_ZERO12 = bytes(12)
_POSITION_BYTES = 9 * 32


def _flag(word: bytes) -> bool:
    if word == _WORD_TRUE:
        return True
    if word != _WORD_FALSE:
        raise VenueDecodeError("PerpExchange.positions: return data is not a Position")
    return False


def decode_position(data: bytes) -> RawPosition:
    """PerpExchange.positions(key) return data (nine static words) -> RawPosition."""
    if len(data) != _POSITION_BYTES:
        raise VenueDecodeError(
            f"PerpExchange.positions: expected {_POSITION_BYTES} bytes, got {len(data)}"
        )
    if data[:12] != _ZERO12:
        raise VenueDecodeError("PerpExchange.positions: return data is not a Position")
    from_bytes = int.from_bytes
    return RawPosition(
        account=data[12:32],
        is_long=_flag(data[32:64]),
        is_cross=_flag(data[64:96]),
        market_id=from_bytes(data[96:128], "big"),
        size=from_bytes(data[128:160], "big"),
        collateral=from_bytes(data[160:192], "big"),
        entry_price=from_bytes(data[192:224], "big"),
        funding_index=from_bytes(data[224:256], "big", signed=True),
        last_updated=from_bytes(data[256:288], "big"),
    )


def map_position(
    key: str,
    account: str,
    raw: RawPosition,
    market: RawMarket,
    collateral_token: Token,
    *,
    venue: str = NAME,
) -> Position:
    """A stored position as a model Position, its funding accrued to the market's indexes."""
    index = market.long_funding_index if raw.is_long else market.short_funding_index
    decimals = collateral_token.decimals
    return Position(
        venue=venue,
        key=key,
        account=account,
        market_id=str(raw.market_id),
        side=Side.LONG if raw.is_long else Side.SHORT,
        size=TokenAmount(raw.size, SIZE_DECIMALS),
        entry_price=Price(raw.entry_price, PRICE_DECIMALS),
        collateral_token=collateral_token,
        collateral=TokenAmount(raw.collateral, decimals),
        collateral_price=ONE_USD,
        collateral_usd=Usd(raw.collateral, decimals),
        fees=Usd(funding_owed(raw.size, index, raw.funding_index), decimals),
        mode=MarginMode.CROSS if raw.is_cross else MarginMode.ISOLATED,
        cross_account=account if raw.is_cross else None,
    )


_ok = call_data
_checksum = checked_address


class _ListAnswer:
    """`Aggregate3Answer`'s reading interface over CallResults (a first batch that was split
    into chunks, so its answers came decoded)."""

    def __init__(self, results: list[CallResult]) -> None:
        self._results = results

    def result(self, index: int) -> CallResult:
        return self._results[index]

    def uint(self, index: int, what: str) -> int | None:
        result = self._results[index]
        return read_words(result.data, 1, what)[0] if result.success else None

    def bytes32_hex(self, index: int, what: str) -> list[str] | None:
        result = self._results[index]
        return read_bytes32_hex(result.data, what) if result.success else None


def _word(meta: Aggregate3Answer | _ListAnswer, index: int, what: str) -> int:
    """Result `index` of the first batch, one word; VenueDecodeError naming `what` if the call
    reverted or returned something else."""
    value = meta.uint(index, what)
    if value is None:
        _ok(meta.result(index), what)  # raises, with the revert reason
        raise AssertionError("unreachable: the call failed")
    return value


def _keys(
    meta: Aggregate3Answer | _ListAnswer, index: int, function: str, account: str
) -> list[str]:
    """Result `index` of the first batch, `function(account)`'s bytes32[] of position keys, as
    hex; VenueDecodeError naming the call if it reverted or returned something else."""
    what = f"{function}({account})"
    keys = meta.bytes32_hex(index, what)
    if keys is None:
        _ok(meta.result(index), what)  # raises, with the revert reason
        raise AssertionError("unreachable: the call failed")
    return keys


def allowance_slot(owner: str, spender: str, mapping_slot: int) -> bytes:
    """Storage slot of allowance[owner][spender] for a Solidity mapping at `mapping_slot`."""
    inner = keccak(address_word(owner) + uint_word(mapping_slot))
    return keccak(address_word(spender) + inner)


# --- the adapter -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Static:
    exchange: str
    lens: str
    multicall: str
    collateral: Token
    symbols: Mapping[int, str]


class ReferenceVenue:
    """The reference exchange behind the Venue protocol; make one with `connect()`."""

    execution = Execution.SYNC

    def __init__(
        self,
        rpc: JsonRpc,
        static: _Static,
        *,
        name: str = NAME,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_concurrency: int = 4,
        approve_unlimited: bool = False,
        allowance_mapping_slot: int | None = TEST_USDC_ALLOWANCE_SLOT,
    ) -> None:
        self.rpc = rpc
        self.name = name
        self._static = static
        self.chunk_size = chunk_size
        self.approve_unlimited = approve_unlimited
        self.allowance_mapping_slot = allowance_mapping_slot
        self._meta = FastMulticall(rpc, address=static.multicall, chunk_size=1_000_000)
        self._batches = FastMulticall(
            rpc, address=static.multicall, chunk_size=chunk_size, max_concurrency=max_concurrency
        )
        self._limit = max_concurrency
        self._reads = Reads(rpc)
        self._checksums: dict[str, str] = {}
        self._request: _MetaRequest | None = None

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        rpc: JsonRpc,
        *,
        exchange: str,
        lens: str,
        multicall: str,
        **options: Any,
    ) -> ReferenceVenue:
        """Check the addresses and read the static facts (two round trips); see __init__."""
        exchange, lens, multicall = (
            _checksum(exchange, "exchange"),
            _checksum(lens, "lens"),
            _checksum(multicall, "multicall"),
        )
        reads = Reads(rpc)
        if not await reads.get_code(multicall):
            raise VenueError(f"no contract at the Multicall3 address {multicall}")
        meta = FastMulticall(rpc, address=multicall, chunk_size=1_000_000)
        first = await meta.aggregate(
            [
                Call(exchange, _COLLATERAL.encode()),
                Call(lens, _LENS_EXCHANGE.encode()),
                Call(lens, _GET_MARKETS.encode()),
            ],
            block="latest",
        )
        if not first[0].success or len(first[0].data) != 32:
            raise VenueError(f"no reference exchange at {exchange} (collateralToken() failed)")
        if not first[1].success or len(first[1].data) != 32:
            raise VenueError(f"no PerpLens at {lens} (exchange() failed)")
        (lens_exchange,) = _LENS_EXCHANGE.decode(first[1].data)
        if to_checksum_address(lens_exchange) != exchange:
            raise VenueError(f"the lens at {lens} reads {lens_exchange}, not exchange {exchange}")
        (token,) = _COLLATERAL.decode(first[0].data)
        token = to_checksum_address(token)
        markets = decode_markets(_ok(first[2], "PerpLens.getMarkets"))
        second = await meta.aggregate(
            [Call(token, _DECIMALS.encode()), Call(token, _SYMBOL.encode())]
            + [Call(m.feed, _DESCRIPTION.encode()) for m in markets],
            block="latest",
        )
        (decimals,) = _DECIMALS.decode(_ok(second[0], "collateral decimals()"))
        symbol = _SYMBOL.decode(second[1].data)[0] if second[1].success else "USD"
        symbols: dict[int, str] = {}
        for market, result in zip(markets, second[2:], strict=True):
            text = _DESCRIPTION.decode(result.data)[0] if result.success else ""
            symbols[market.market_id] = symbol_of(str(text), market.market_id)
        static = _Static(
            exchange=exchange,
            lens=lens,
            multicall=multicall,
            collateral=Token(token, str(symbol), int(decimals)),
            symbols=symbols,
        )
        return cls(rpc, static, **options)

    @property
    def exchange(self) -> str:
        return self._static.exchange

    @property
    def collateral_token(self) -> Token:
        return self._static.collateral

    async def collateral_tokens(self) -> tuple[Token, ...]:
        """The exchange's one collateral token."""
        return (self._static.collateral,)

    async def markets(self, *, block: int | None = None) -> tuple[Market, ...]:
        """Every market of the exchange (its lens lists them all), at `block`."""
        return (await self.read(Watch(()), block=block)).snapshot.markets

    def symbol(self, market_id: str | int) -> str:
        mid = int(market_id)
        return self._static.symbols.get(mid, f"MARKET{mid}")

    # -- reading --------------------------------------------------------------------------------

    async def snapshot(self, watch: Watch, *, block: int | None = None) -> Snapshot:
        """`read(...).snapshot`."""
        return (await self.read(watch, block=block)).snapshot

    async def read(self, watch: Watch, *, block: int | None = None) -> VenueRead:
        """The watched accounts at `block` (default latest); see the module's docstring."""
        with _COLLECTOR_PAUSE:
            return await self._read(watch, block)

    def _meta_request(self, watch: Watch) -> _MetaRequest:
        """The first batch's calls for `watch`, encoded; kept for the next read while the watch
        list is the same (the request only: every answer is read and checked afresh)."""
        st = self._static
        if watch.wallet_token is not None and (
            watch.wallet_token.lower() != st.collateral.address.lower()
        ):
            raise VenueError(
                f"watch: wallet token {watch.wallet_token} is not the exchange's collateral "
                f"token {st.collateral.symbol} ({st.collateral.address})"
            )
        cached = self._request
        if (
            cached is not None
            and cached.wallet == watch.wallet
            and cached.accounts == watch.accounts
            and cached.delegated == watch.delegated
        ):
            return cached
        accounts = [self._account(a, "account") for a in watch.accounts]
        if len(set(accounts)) != len(accounts):
            raise VenueError("watch: an account is listed twice")
        wallet = self._account(watch.wallet, "wallet") if watch.wallet else None
        calls = [
            Call(st.multicall, _BLOCK_NUMBER.encode()),
            Call(st.multicall, _BLOCK_TIME.encode()),
            Call(st.lens, _GET_MARKETS.encode()),
            Call(st.lens, _GET_POOL.encode()),
        ]
        if wallet is not None:
            calls.append(Call(st.collateral.address, _BALANCE_OF.encode(wallet)))
            calls.append(Call(st.multicall, _ETH_BALANCE.encode(wallet)))
        account_words: dict[str, bytes] = {}
        for account in accounts:
            word = account_words[account] = address_word(account)
            calls.append(Call(st.exchange, _ISOLATED_KEYS.selector + word))
            calls.append(Call(st.exchange, _CROSS_KEYS.selector + word))
            calls.append(Call(st.exchange, _CROSS_BALANCE.selector + word))
        delegated = watch.delegated and wallet is not None
        if delegated:  # top-ups come from each account's wallet, within its grant (_funds)
            assert wallet is not None
            for account in accounts:
                calls += self._funds_calls(account, wallet)
        request = _MetaRequest(
            tuple(watch.accounts),
            watch.wallet,
            tuple(accounts),
            wallet,
            account_words,
            tuple(calls),
            "0x" + encode_aggregate3(calls).hex(),
            delegated,
        )
        self._request = request
        return request

    async def _read(self, watch: Watch, block: int | None) -> VenueRead:
        request = self._meta_request(watch)
        accounts, wallet, account_words = request.checked, request.wallet_checked, request.words
        meta_trips, batch_trips = self._meta.round_trips, self._batches.round_trips
        number, pin_trips = await pin_block(self._reads, block)
        st = self._static
        answer = await self._meta.aggregate_prepared_answer(
            request.calls, request.calldata, block=number
        )
        meta = answer if isinstance(answer, Aggregate3Answer) else _ListAnswer(answer)
        if _word(meta, 0, "Multicall3.getBlockNumber") != number:
            raise VenueDecodeError(f"the batch pinned to block {number} ran at another block")
        block_time = _word(meta, 1, "Multicall3.getCurrentBlockTimestamp")
        token = st.collateral
        at = 6 if wallet is not None else 4  # the first account's results
        cross: list[CrossAccount] = []  # built here, kept once all their positions are read
        # The positions round starts while the key lists are decoded: each chunk of keys is
        # sent as soon as it is full, and the markets, pool and wallet are decoded while the
        # node runs them (see _PositionRound).
        positions_round = _PositionRound(self, account_words, number)
        try:
            for account in accounts:
                isolated_keys = _keys(meta, at, "isolatedPositionKeys", account)
                cross_keys = _keys(meta, at + 1, "crossPositionKeys", account)
                balance = _word(meta, at + 2, f"crossBalance({account})")
                at += 3
                if cross_keys:
                    cross.append(
                        CrossAccount(
                            venue=self.name,
                            key=account,
                            account=account,
                            collateral_token=token,
                            collateral=TokenAmount.trusted(balance, token.decimals),
                            collateral_price=ONE_USD,
                            collateral_usd=Usd.trusted(balance, token.decimals),
                            position_keys=tuple(cross_keys),
                        )
                    )
                await positions_round.add_hex(account, isolated_keys + cross_keys)
            markets = {
                m.market_id: m for m in decode_markets(_ok(meta.result(2), "PerpLens.getMarkets"))
            }
            pool = decode_pool(_ok(meta.result(3), "PerpLens.getPoolState"), token.decimals)
            if wallet is not None:
                wallet_state = Wallet(
                    address=wallet,
                    token=token,
                    balance=token.amount(_word(meta, 4, "collateral balanceOf(wallet)")),
                    native_balance=TokenAmount(_word(meta, 5, "getEthBalance(wallet)"), 18),
                )
            else:
                wallet_state = Wallet(ZERO_ADDRESS, token, token.amount(0), TokenAmount(0, 18))
            modelled: dict[int, Market] = {}  # the markets with a valid price
            issues_list: list[ReadIssue] = []
            for mid, raw in sorted(markets.items()):
                if raw.price_valid:
                    modelled[mid] = map_market(raw, self.symbol(mid), venue=self.name)
                else:
                    issues_list.append(
                        ReadIssue(
                            "price_invalid",
                            str(mid),
                            f"market {mid} ({self.symbol(mid)}): the feed's price is stale or "
                            "invalid; its positions are left out",
                        )
                    )
            funds: dict[str, TokenAmount] | None = None
            if request.delegated:
                funds = {}
                for account in accounts:
                    grant = self._grant(meta, at, account, block_time)
                    funds[account] = token.amount(grant.top_up)
                    at += len(_FUNDS_CALLS)
            positions, issues = await positions_round.results(markets)
        except BaseException:
            await positions_round.cancel()
            raise
        issues_list[:0] = issues  # the positions' issues first, as before
        by_key = positions  # the Snapshot's index for this venue
        accounts_out = []
        for cross_account in cross:
            keys = cross_account.position_keys
            if not all(k in by_key for k in keys):
                issues_list.append(
                    ReadIssue(
                        "account_incomplete",
                        cross_account.account,
                        f"cross account {cross_account.account}: a position could not be read; "
                        "left out",
                    )
                )
                for k in keys:
                    by_key.pop(k, None)
                continue
            accounts_out.append(cross_account)
        # Snapshot's checks hold by construction: one market per id (`modelled`), one position
        # per key (`by_key`), every position in a modelled market (`_model_chunk` builds only
        # those of a market with a valid price), every cross account's keys among the positions
        # (checked above).
        snapshot = Snapshot.trusted(
            number,
            block_time,
            wallet_state,
            tuple(modelled.values()),
            tuple(by_key.values()),
            tuple(accounts_out),
            {self.name: by_key},
            funds=funds,
        )
        trips = pin_trips + self._meta.round_trips - meta_trips
        trips += self._batches.round_trips - batch_trips
        return VenueRead(snapshot, pool, tuple(issues_list), round_trips=trips)

    def _model_chunk(  # noqa: PLR0917
        self,
        keys: Sequence[str],
        holders: Sequence[str],
        answer: UniformResults,
        legs: Mapping[bytes, _Leg | None],
        account_words: Mapping[str, bytes],
        token: Token,
    ) -> tuple[dict[str, Position], list[ReadIssue]]:
        """One chunk of positions(key) answers (288 bytes each, read in place) as Positions,
        keyed by their keys ("0x" and hex), in read order.

        `keys` are the positions' keys ("0x" and hex), as the request was made of them.

        Each answer is checked as `decode_position` and `Position` would check it: the account
        word (12 zero bytes and the owner), the two flags (0 or 1) and the market (one this
        read knows) by looking the three words up in `legs`, size and entry price positive.
        The values are then built as the trusted constructors build them, inlined
        (`VALUE_SLOTS`, `POSITION_SLOTS`): every check those would skip is made here (the
        integers come from `int.from_bytes`, the decimals are constants or the collateral
        token's, checked once per read). A zero collateral (every cross position's) is one
        shared value per chunk.
        """
        name = self.name
        decimals = token.decimals
        from_bytes = int.from_bytes
        new = object.__new__
        value_slots, position_slots = VALUE_SLOTS, POSITION_SLOTS
        amount_cls, price_cls, usd_cls, position_cls = TokenAmount, Price, Usd, Position
        zero_amount = TokenAmount.trusted(0, decimals)
        zero_usd = Usd.trusted(0, decimals)
        data = answer.data
        out: dict[str, Position] = {}
        problems: list[ReadIssue] = []
        word = _WORD_MASK
        for account, key, at in zip(holders, keys, answer.offsets, strict=True):
            # size, collateral, entry price and funding index: four words read as one integer
            # (big-endian, unsigned) and cut apart, cheaper than four slices.
            words = from_bytes(data[at + 128 : at + 256])
            size = words >> 768
            if size == 0:
                problems.append(ReadIssue("position_missing", key, "listed but empty"))
                continue
            if not data.startswith(account_words[account], at):
                raise VenueDecodeError(f"position {key} does not belong to {account}")
            leg = legs.get(data[at + 32 : at + 128], _UNKNOWN)  # isLong, isCross, marketId
            if not leg:
                if leg is None:
                    continue  # its market has no valid price: reported once per market by read()
                _bad_leg(key, data[at + 32 : at + 128])  # raises, saying what is wrong
            index, market_id, side, mode, is_cross = leg
            entry = (words >> 256) & word
            if entry == 0:
                raise VenueDecodeError(f"position {key}: entry price is zero")
            collateral = (words >> 512) & word
            then = words & word
            if then >> 255:  # an int256: two's complement
                then -= _TWO_256
            p: Any = new(position_slots)
            v: Any = new(value_slots)
            v.raw = size
            v.decimals = SIZE_DECIMALS
            v.__class__ = amount_cls
            p.size = v
            v = new(value_slots)
            v.raw = entry
            v.decimals = PRICE_DECIMALS
            v.__class__ = price_cls
            p.entry_price = v
            if collateral:
                v = new(value_slots)
                v.raw = collateral
                v.decimals = decimals
                v.__class__ = amount_cls
                p.collateral = v
                v = new(value_slots)
                v.raw = collateral
                v.decimals = decimals
                v.__class__ = usd_cls
                p.collateral_usd = v
            else:
                p.collateral = zero_amount
                p.collateral_usd = zero_usd
            v = new(value_slots)
            v.raw = -((-size * (index - then)) // USD_SCALE)  # funding_owed
            v.decimals = decimals
            v.__class__ = usd_cls
            p.fees = v
            p.venue = name
            p.key = key
            p.account = account
            p.market_id = market_id
            p.side = side
            p.collateral_token = token
            p.collateral_price = ONE_USD
            p.mode = mode
            p.cross_account = account if is_cross else None
            p.__class__ = position_cls
            out[key] = p
        return out, problems

    # -- acting ---------------------------------------------------------------------------------

    async def build(self, action: Action, snapshot: Snapshot, *, sender: str) -> TxPlan:
        """The transactions for `action` on a position or account in `snapshot`, from `sender`.

        TopUp: addMargin / depositCross, after an approval of exactly the amount (or
        unlimited, with approve_unlimited) when the allowance read now is short of it.
        Withdraw: removeMargin / withdrawCross. Reduce: decreasePosition / decreaseCross.
        Close: closePosition / closeCross. Alert: no transaction.

        When the action's account is not `sender`, `sender` acts as the account's operator
        (PerpExchange.approveOperator): the same calls' `...For(account, ...)` forms, which
        pay only ever to the account; a top-up is paid from the account's wallet, and is
        refused here (VenueError) unless the grant, read now, is active and the wallet, its
        allowance to the exchange and the grant's top-up limit all cover the amount.
        """
        sender = self._account(sender, "sender")
        if action.venue != self.name:
            raise VenueError(f"{action.kind}: action is for venue {action.venue}, not {self.name}")
        if isinstance(action, Alert):
            return TxPlan(action, sender, ())
        account = self._account(action.account, "account")
        operator = account.lower() != sender.lower()

        def call(fn: ContractFn, *args: Any) -> tuple[bytes, str]:
            """`fn`'s calldata and name, or its operator form's for `account`."""
            if operator:
                fn = _FOR[fn.name]
                return fn.encode(account, *args), fn.name
            return fn.encode(*args), fn.name

        by = f", as operator {sender} for {account}" if operator else ""
        ex = self._static.exchange
        if isinstance(action, TopUp | Withdraw):
            amount = self._collateral_amount(action)
            top_up = isinstance(action, TopUp)
            if action.scope is Scope.ACCOUNT:
                data, name = call(_DEPOSIT_CROSS if top_up else _WITHDRAW_CROSS, amount)
                text = f"{name} {self._usd(amount)} to cross account {action.key}"
            else:
                position = self._position(snapshot, action.key, action.kind)
                data, name = call(
                    _ADD_MARGIN if top_up else _REMOVE_MARGIN,
                    int(position.market_id),
                    position.side is Side.LONG,
                    amount,
                )
                text = f"{name} {self._usd(amount)} on {self._label(position)}"
            step = TxRequest(ex, data, description=text + by, gas_headroom=FUNDING_UPDATE_GAS)
            if top_up and operator:
                await self._check_operator_top_up(action, account, sender, amount)
            elif top_up:
                return await self._with_approval(action, sender, amount, step)
            return TxPlan(action, sender, (step,))
        position = self._position(snapshot, action.key, action.kind)
        market_id, is_long = int(position.market_id), position.side is Side.LONG
        cross = position.mode is MarginMode.CROSS
        if isinstance(action, Reduce):
            size = action.size_delta
            if size.decimals != SIZE_DECIMALS:
                raise VenueError(f"reduce {action.key}: size_delta must have 18 decimals")
            if not 0 < size.raw < position.size.raw:
                raise VenueError(
                    f"reduce {action.key}: size_delta {size} must be positive and less than "
                    f"the position's size {position.size} (use Close)"
                )
            data, name = call(_DECREASE_CROSS if cross else _DECREASE, market_id, is_long, size.raw)
            text = f"{name} {self._label(position)} by {size}"
        else:
            assert isinstance(action, Close)
            data, name = call(_CLOSE_CROSS if cross else _CLOSE, market_id, is_long)
            text = f"{name} {self._label(position)}"
        step = TxRequest(ex, data, description=text + by, gas_headroom=FUNDING_UPDATE_GAS)
        return TxPlan(action, sender, (step,))

    async def action_state(self, plan: TxPlan, mined: Sequence[MinedTx]) -> ActionState:
        """Sync venue: done once every step is mined, failed if one reverted."""
        return sync_action_state(plan, mined)

    def decode_error(self, data: bytes) -> RevertReason:
        """Revert data of the exchange, the lens, the token or a feed, decoded."""
        return decode_revert(data, [abi("PerpExchange"), abi("TestUSDC")])

    def decode_rpc_error(self, exc: RpcError) -> RevertReason | None:
        """The decoded revert inside a failed eth_call / eth_estimateGas, if it is one."""
        if not isinstance(exc, RpcResponseError):
            return None
        data = revert_data(exc)
        return None if data is None else self.decode_error(data)

    # -- operators -------------------------------------------------------------------------------

    async def _read_grant(self, account: str, operator: str) -> _Grant:
        """`account`'s grant to `operator` and its wallet, at the latest block (one call)."""
        st = self._static
        calls = [Call(st.multicall, _BLOCK_TIME.encode()), *self._funds_calls(account, operator)]
        answer = _ListAnswer(await self._meta.aggregate(calls, block="latest"))
        now = _word(answer, 0, "Multicall3.getCurrentBlockTimestamp")
        return self._grant(answer, 1, account, now)

    async def _check_operator_top_up(
        self, action: Action, account: str, operator: str, amount: int
    ) -> None:
        grant = await self._read_grant(account, operator)
        what = f"{action.kind} {action.key}"
        if not grant.active:
            problems = "; ".join(self._grant_problems(grant, account, operator))
            raise VenueError(f"{what}: {operator} cannot act for {account}: {problems}")
        for have, name in (
            (grant.balance, f"{account}'s wallet holds"),
            (grant.allowance, f"{account}'s allowance to the exchange is"),
            (grant.top_up_left, "the operator's grant has left"),
        ):
            if have < amount:
                raise VenueError(
                    f"{what}: {self._usd(amount)} from {account}'s wallet, but {name} "
                    f"{self._usd(have)}"
                )

    def _grant_problems(self, grant: _Grant, account: str, operator: str) -> list[str]:
        if grant.expires_at == 0:
            problems = [f"{account} has not approved {operator} as an operator (or revoked)"]
        else:
            problems = limit_problems(
                grant.actions_left, grant.expires_at, grant.block_time, actions="operator"
            )
        if grant.active and grant.top_up == 0:
            problems.append("top-ups cannot be paid: wallet, allowance or limit at zero")
        return problems

    async def delegation(
        self, account: str, delegate: str, *, token: str | None = None
    ) -> Delegation:
        """`delegate` as an operator of `account` (PerpExchange.operatorGrant) at the latest
        block: actions left, expiry, and `top_up_left`, what it can pay into positions now
        (the account's balance, within its allowance to the exchange and the grant's top-up
        limit). `token` must be the collateral token when given."""
        account = self._account(account, "account")
        delegate = self._account(delegate, "operator")
        collateral = self._static.collateral
        if token is not None and token.lower() != collateral.address.lower():
            raise VenueError(
                f"delegation: token {token} is not the collateral {collateral.address}"
            )
        grant = await self._read_grant(account, delegate)
        return Delegation(
            account=account,
            delegate=delegate,
            active=grant.active,
            actions_left=grant.actions_left,
            expires_at=grant.expires_at,
            top_up_left=collateral.amount(grant.top_up),
            problems=tuple(self._grant_problems(grant, account, delegate)),
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
        """What `account` sends with its own key to make `delegate` its operator:
        approveOperator(delegate, top-up limit, `max_actions`, `expires_at`) (replacing any
        earlier grant), then the collateral approved to the exchange, both for
        `top_up_allowance` raw units (default: unlimited)."""
        account = self._account(account, "account")
        delegate = self._account(delegate, "operator")
        collateral = self._static.collateral
        if token.lower() != collateral.address.lower():
            raise VenueError(f"operator setup: token {token} is not the collateral")
        if delegate.lower() == account.lower():
            raise VenueError("operator setup: the operator must not be the account itself")
        if not 0 < max_actions < 2**64:
            raise VenueError(f"operator setup: max_actions must be positive, got {max_actions}")
        if not 0 < expires_at < 2**64:
            raise VenueError(f"operator setup: expires_at must be positive, got {expires_at}")
        if top_up_allowance is not None and not 0 <= top_up_allowance < 2**128:
            raise VenueError(f"operator setup: bad top_up_allowance {top_up_allowance}")
        limit = 2**128 - 1 if top_up_allowance is None else top_up_allowance
        ex = self._static.exchange
        return (
            TxRequest(
                ex,
                _APPROVE_OPERATOR.encode(delegate, limit, max_actions, expires_at),
                description=(
                    f"approve {delegate} as operator of {account}: top-ups up to "
                    f"{self._usd(limit if limit != 2**128 - 1 else 2**256 - 1)} from its "
                    f"wallet, {max_actions} actions, until {expires_at}"
                ),
            ),
            TxRequest(
                collateral.address,
                _APPROVE.encode(ex, 2**256 - 1 if top_up_allowance is None else limit),
                description=f"approve the exchange {ex} to take {collateral.symbol} for top-ups",
            ),
        )

    # -- helpers --------------------------------------------------------------------------------

    async def _with_approval(
        self, action: Action, sender: str, amount: int, step: TxRequest
    ) -> TxPlan:
        token = self._static.collateral.address
        ex = self._static.exchange
        (allowed,) = _ALLOWANCE.decode(
            await self._reads.eth_call(token, _ALLOWANCE.encode(sender, ex), "latest")
        )
        if int(allowed) >= amount:
            return TxPlan(action, sender, (step,))
        approve_amount = 2**256 - 1 if self.approve_unlimited else amount
        approval = TxRequest(
            token,
            _APPROVE.encode(ex, approve_amount),
            description=f"approve {ex} to spend {self._usd(approve_amount)} of {sender}",
        )
        override = await self._allowance_override(sender, approve_amount)
        return TxPlan(
            action, sender, (approval, step), simulation_overrides=(None, override), approvals=1
        )

    async def _allowance_override(self, owner: str, amount: int) -> StateOverride | None:
        """A state override setting the allowance, if the configured slot is verified right."""
        if self.allowance_mapping_slot is None:
            return None
        token = self._static.collateral.address
        slot_bytes = allowance_slot(owner, self._static.exchange, self.allowance_mapping_slot)
        slot = "0x" + slot_bytes.hex()
        override: StateOverride = {token: {"stateDiff": {slot: "0x" + uint_word(amount).hex()}}}
        try:
            answer = await self.rpc.request(
                "eth_call",
                [
                    {"to": token, "data": "0x" + _ALLOWANCE.encode(owner, self.exchange).hex()},
                    "latest",
                    override,
                ],
            )
        except RpcError:
            return None  # the node takes no overrides: wait for the approval to be mined
        if not isinstance(answer, str) or answer.removeprefix("0x") != uint_word(amount).hex():
            return None
        return override

    def _funds_calls(self, account: str, operator: str) -> list[Call]:
        token, ex = self._static.collateral.address, self._static.exchange
        return [
            Call(token, _BALANCE_OF.encode(account)),
            Call(token, _ALLOWANCE.encode(account, ex)),
            Call(ex, _OPERATOR_GRANT.encode(account, operator)),
        ]

    def _grant(
        self, meta: Aggregate3Answer | _ListAnswer, at: int, account: str, block_time: int
    ) -> _Grant:
        """The answers of `_funds_calls(account, ...)`, results `at` onwards."""
        symbol = self._static.collateral.symbol
        what = f"operatorGrant({account})"
        expires_at, actions_left, top_up_left = read_words(_ok(meta.result(at + 2), what), 3, what)
        return _Grant(
            balance=_word(meta, at, f"{symbol}.balanceOf({account})"),
            allowance=_word(meta, at + 1, f"{symbol}.allowance({account})"),
            expires_at=expires_at,
            actions_left=actions_left,
            top_up_left=top_up_left,
            block_time=block_time,
        )

    def _collateral_amount(self, action: TopUp | Withdraw) -> int:
        token = self._static.collateral
        if action.token.address.lower() != token.address.lower():
            raise VenueError(
                f"{action.kind} {action.key}: token {action.token.address} is not the "
                f"exchange's collateral {token.address}"
            )
        if action.amount.decimals != token.decimals or action.amount.raw <= 0:
            raise VenueError(f"{action.kind} {action.key}: amount must be positive {token.symbol}")
        return action.amount.raw

    def _position(self, snapshot: Snapshot, key: str, kind: str) -> Position:
        try:
            return snapshot.position(self.name, key)
        except KeyError:
            raise VenueError(f"{kind}: no position {key} in the snapshot") from None

    def _label(self, position: Position) -> str:
        mode = "cross " if position.mode is MarginMode.CROSS else ""
        return f"{mode}{position.side.value} {self.symbol(position.market_id)} {position.key}"

    def _usd(self, raw: int) -> str:
        token = self._static.collateral
        if raw == 2**256 - 1:
            return f"unlimited {token.symbol}"
        return f"{token.amount(raw)} {token.symbol}"

    def _account(self, address: str, what: str) -> str:
        found = self._checksums.get(address)
        if found is None:
            found = self._checksums[address] = _checksum(address, what)
        return found


_Leg = tuple[int, str, Side, MarginMode, bool]
"""What a position's (isLong, isCross, marketId) words mean: the funding index it accrues
from, the market id, side, margin mode and whether it is cross."""
_UNKNOWN: _Leg | None = cast(_Leg, ())
"""`legs.get`'s default: falsy like None (no valid price) but not None (not a known triple)."""
_TWO_256 = 2**256
_WORD_MASK = _TWO_256 - 1


def _legs(markets: Mapping[int, RawMarket]) -> dict[bytes, _Leg | None]:
    """Every valid (isLong, isCross, marketId) triple of words of this read's markets -> its
    `_Leg`, or None when the market has no valid price (its positions are left out)."""
    legs: dict[bytes, _Leg | None] = {}
    for market_id, market in markets.items():
        word = uint_word(market_id)
        for is_long in (True, False):
            index = market.long_funding_index if is_long else market.short_funding_index
            side = Side.LONG if is_long else Side.SHORT
            for is_cross in (True, False):
                words = (
                    (_WORD_TRUE if is_long else _WORD_FALSE)
                    + (_WORD_TRUE if is_cross else _WORD_FALSE)
                    + word
                )
                mode = MarginMode.CROSS if is_cross else MarginMode.ISOLATED
                legs[words] = (
                    (index, str(market_id), side, mode, is_cross) if market.price_valid else None
                )
    return legs


def _bad_leg(key: str, words: bytes) -> NoReturn:
    """Raise what is wrong with a position's (isLong, isCross, marketId) words."""
    if not {words[:32], words[32:64]} <= {_WORD_TRUE, _WORD_FALSE}:
        raise VenueDecodeError(
            f"position {key}: PerpExchange.positions: return data is not a Position "
            "(a flag is neither true nor false)"
        )
    raise VenueDecodeError(f"position {key} is in an unknown market")


def _uniform(keys: Sequence[str], answer: UniformResults | list[CallResult]) -> UniformResults:
    """The chunk's answers as `UniformResults`; VenueDecodeError naming the first that is not
    a Position (a reverted call, or return data that is not 288 bytes)."""
    if isinstance(answer, UniformResults):
        return answer
    uniform = UniformResults.of(answer, _POSITION_BYTES)
    if uniform is not None:
        return uniform
    for key, result in zip(keys, answer, strict=True):
        decode_position(_ok(result, f"positions({key})"))  # raises for a bad one
    raise AssertionError("unreachable: some result is not a Position")


class _CollectorPause:
    """The cyclic garbage collector paused while reads run, then put back as it was.

    A read allocates tens of thousands of objects (a Snapshot of 10,000 positions is about
    60,000) that all stay reachable and form no cycle, so collections during it find nothing to
    free; but counted as young objects they trigger a young collection every 700 of them and,
    through those, collections of the older generations, up to a full collection of the whole
    heap in most large reads. Paused, the collector does nothing during the read. When the
    last read running ends, the young objects (the Snapshot's, mostly) are moved to the oldest
    generation as they are (`gc.freeze()` then `gc.unfreeze()`, two list splices) instead of
    being traversed by a young collection: a Snapshot is dropped a tick later and freed by
    reference counting, so the collector never needs to look at it. The few cycles a read
    does leave (a ctypes buffer type per keccak, an exception's traceback) are freed by a full
    collection at the end of every `full_every`-th read, whose cost is that read's. When
    something else in the process has frozen objects (`gc.get_freeze_count()`), those are
    left frozen and the young generation is collected instead. Then the collector is enabled
    again if it was. Nesting and concurrent reads (other tasks, other threads) are counted:
    only the last one out does this.
    """

    def __init__(self, full_every: int = 100) -> None:
        if full_every < 1:
            raise ValueError("full_every must be at least 1")
        self._lock = threading.Lock()
        self._depth = 0
        self._resume = False
        self.full_every = full_every
        self._since_full = 0

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._depth += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._resume:
                self._since_full += 1
                if gc.get_freeze_count():
                    gc.collect(0)
                elif self._since_full >= self.full_every:
                    self._since_full = 0
                    gc.collect()
                else:
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


_COLLECTOR_PAUSE = _CollectorPause()


_Chunk = tuple[dict[str, Position], list[ReadIssue]]

_FUNDS_CALLS = ("balanceOf", "allowance", "operatorGrant")
"""The calls a delegated read adds per account (`ReferenceVenue._funds_calls`)."""


@dataclass(frozen=True, slots=True)
class _Grant:
    """An account's grant to an operator (PerpExchange.operatorGrant) beside what its wallet
    holds and lets the exchange take, at one block."""

    balance: int
    allowance: int
    expires_at: int
    actions_left: int
    top_up_left: int
    block_time: int

    @property
    def active(self) -> bool:
        """Usable now: actions left and not past its expiry (the exchange's own rule)."""
        return self.actions_left > 0 and self.block_time <= self.expires_at

    @property
    def top_up(self) -> int:
        """What the operator can pay into positions now: the wallet's balance within its
        allowance to the exchange and what is left of the grant's top-up limit (0 while the
        grant is not active)."""
        return min(self.balance, self.allowance, self.top_up_left) if self.active else 0


@dataclass(frozen=True, slots=True)
class _MetaRequest:
    """The first batch of a read for one watch list: the watch as given (`accounts`,
    `wallet`), the same checked (`checked`, `wallet_checked`, `words`: each account's address
    word), and the batch's calls and their aggregate3 calldata ("0x" and hex)."""

    accounts: tuple[str, ...]
    wallet: str | None
    checked: tuple[str, ...]
    wallet_checked: str | None
    words: dict[str, bytes]
    calls: tuple[Call, ...]
    calldata: str
    delegated: bool = False  # the calls end with each account's funds (see _funds)


class _PositionRound:
    """The positions round of one read: exchange.positions(key) for every key, in Multicall3
    chunks of the venue's chunk size (at most max_concurrency in flight), each sent as soon as
    its keys are known, while the key lists of later accounts are still being decoded, and
    modelled (`ReferenceVenue._model_chunk`) as soon as its answer is back and the read's
    markets are known (`results`). The chunks and so the round trips are the same as if all
    keys were known first; results keep read order.
    """

    def __init__(
        self, venue: ReferenceVenue, account_words: Mapping[str, bytes], block: int
    ) -> None:
        self.venue = venue
        self.token = venue.collateral_token
        Usd(0, self.token.decimals)  # the collateral's decimals, checked once for every amount
        self.size = max(1, min(venue.chunk_size, venue._batches.chunk_size))
        self.limit = asyncio.Semaphore(venue._limit)
        self.legs: Mapping[bytes, _Leg | None] = {}
        self.markets_known = asyncio.Event()
        self.account_words = account_words
        self.block = block
        self.keys: list[str] = []  # the positions' keys ("0x" and hex) in read order,
        self.holders: list[str] = []  # and the account of each
        self.sent = 0
        self.tasks: list[asyncio.Task[_Chunk]] = []

    async def add(self, account: str, keys: Sequence[bytes]) -> None:
        """Queue `account`'s position keys; send every chunk this fills."""
        await self.add_hex(account, ["0x" + key.hex() for key in keys])

    async def add_hex(self, account: str, keys: Sequence[str]) -> None:
        """`add` for keys given as "0x" and lowercase hex (66 characters each): the request
        and the positions' keys are both made of these (each key is hexed once)."""
        self.keys += keys
        self.holders += [account] * len(keys)
        if len(self.keys) - self.sent >= self.size:
            while len(self.keys) - self.sent >= self.size:
                self._start(self.size)
            await asyncio.sleep(0)  # let the new chunk go out before decoding on

    async def results(self, markets: Mapping[int, RawMarket]) -> _Chunk:
        """Every queued position, modelled with this read's `markets`, by key in read order
        (a key listed twice is one position), and the issues met."""
        self.legs = _legs(markets)
        self.markets_known.set()
        if self.sent < len(self.keys):
            self._start(len(self.keys) - self.sent)
        positions: dict[str, Position] = {}
        issues: list[ReadIssue] = []
        for out, problems in await asyncio.gather(*self.tasks):
            positions |= out
            issues += problems
        return positions, issues

    async def cancel(self) -> None:
        """Stop the chunks still running (the read failed) and wait for them to stop."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def _start(self, count: int) -> None:
        start, end = self.sent, self.sent + count
        self.sent = end
        chunk = self._chunk(self.keys[start:end], self.holders[start:end])
        self.tasks.append(asyncio.ensure_future(chunk))

    async def _chunk(self, keys: list[str], holders: list[str]) -> _Chunk:
        venue = self.venue
        async with self.limit:
            answer = await venue._batches.aggregate_uniform_hex(
                venue.exchange, _POSITIONS_SELECTOR, keys, _POSITION_BYTES, block=self.block
            )
        uniform = _uniform(keys, answer)
        await self.markets_known.wait()
        return venue._model_chunk(keys, holders, uniform, self.legs, self.account_words, self.token)
