"""GMX v2 adapter: keys, encoding, execution fees, the liquidation test and the mapping."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak
from hypothesis import given
from hypothesis import strategies as st

from keeper import margin
from keeper.abis import abi as shipped_abi
from keeper.abis import abi_type
from keeper.chain.jsonrpc import RpcResponseError
from keeper.model import (
    Alert,
    Basis,
    Reason,
    Scope,
    Severity,
    Snapshot,
    Strictness,
    Token,
    TopUp,
    Wallet,
)
from keeper.units import TokenAmount
from keeper.venues import gmx
from keeper.venues.base import (
    Execution,
    LogEntry,
    SimulatesExecution,
    TxPlan,
    TxRequest,
    VenueError,
)
from keeper.venues.gmx import (
    ARBITRUM,
    EVENT_LOG2_TOPIC,
    EVENT_ORDER_CREATED,
    INCREASE_ORDER_GAS_LIMIT,
    CreateOrder,
    FallbackPriceSource,
    GmxApiPriceSource,
    GmxFn,
    GmxVenue,
    MarketParams,
    MarketTokens,
    PriceUnavailableError,
    RawPosition,
    RawPositionInfo,
    TokenPrice,
    decode_create_order,
    encode_create_order,
    encode_simulation,
    entry_price,
    event_strings,
    gmx_abi,
    map_market,
    map_position,
    order_key_of,
)
from keeper.venues.gmx_math import (
    FLOAT_PRECISION,
    GasParams,
    OrderType,
    apply_factor,
    data_key,
    estimate_execution_gas_limit,
    execution_fee,
    liquidation_check,
    name_key,
    position_key,
    position_pnl_usd,
)

USD = FLOAT_PRECISION
ALICE = "0x00000000000000000000000000000000000A11cE"
MARKET = "0x70d95587d40A2caf56bd97485aB3Eec10Bee6336"
WETH = "0x82aF49447D8a07e3bd95BD0d56f35241523fBab1"
USDC = "0xaf88d065e77c8cC2239327C5EDb3A432268e5831"
WHY = Reason("test", "because the test says so")


def percent(value: str) -> int:
    return int(Decimal(value) * USD / 100)


# --- keys ------------------------------------------------------------------------------------


def test_keys_are_keccak_of_abi_encoded_names() -> None:
    assert name_key("MIN_COLLATERAL_USD") == keccak(abi_encode(["string"], ["MIN_COLLATERAL_USD"]))
    factor_key = data_key("MIN_COLLATERAL_FACTOR", ("address", MARKET))
    assert factor_key == keccak(
        abi_encode(["bytes32", "address"], [name_key("MIN_COLLATERAL_FACTOR"), MARKET])
    )
    # Keys.increaseOrderGasLimitKey() returns INCREASE_ORDER_GAS_LIMIT itself
    assert name_key("INCREASE_ORDER_GAS_LIMIT") == INCREASE_ORDER_GAS_LIMIT


def test_position_key_matches_gmx() -> None:
    key = position_key(ALICE, MARKET, USDC, True)
    assert key == keccak(
        abi_encode(["address", "address", "address", "bool"], [ALICE, MARKET, USDC, True])
    )
    assert key != position_key(ALICE, MARKET, USDC, False)


def test_event_log2_topic_is_gmx_s() -> None:
    # topic0 of GMX's EventEmitter.EventLog2 as seen on Arbitrum: it fixes EventLogData's shape
    assert EVENT_LOG2_TOPIC.hex() == (
        "468a25a7ba624ceea6e540ad6f49171b52495b648417ae91bca21676d8a24dc5"
    )


# --- encoding --------------------------------------------------------------------------------


def _order(**changes: object) -> CreateOrder:
    base = CreateOrder(
        receiver=ALICE,
        cancellation_receiver=ALICE,
        market=MARKET,
        initial_collateral_token=USDC,
        order_type=OrderType.MARKET_INCREASE,
        is_long=True,
        initial_collateral_delta_amount=100 * 10**6,
        acceptable_price=2**256 - 1,
        execution_fee=10**15,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_create_order_params_round_trip_through_the_abi() -> None:
    order = _order(data_list=(b"\x01" * 32,), referral_code=b"\x02" * 32)
    data = encode_create_order(order)
    fn = GmxFn.of("ExchangeRouter", "createOrder")
    assert fn.signature == (
        "createOrder(((address,address,address,address,address,address,address[]),"
        "(uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint256),"
        "uint8,uint8,bool,bool,bool,bytes32,bytes32[]))"
    )
    ((addresses, numbers, order_type, swap, is_long, unwrap, auto, referral, data_list),) = (
        abi_decode(list(fn.inputs), data[4:])
    )
    assert addresses[0].lower() == ALICE.lower()
    assert addresses[4].lower() == MARKET.lower()
    assert numbers[1] == 100 * 10**6
    assert numbers[4] == 10**15
    assert (order_type, swap, is_long, unwrap, auto) == (2, 0, True, False, False)
    assert referral == b"\x02" * 32
    assert list(data_list) == [b"\x01" * 32]
    assert decode_create_order(data) == order


@given(
    size=st.integers(0, 2**200),
    fee=st.integers(0, 2**128),
    long=st.booleans(),
    kind=st.sampled_from([OrderType.MARKET_INCREASE, OrderType.MARKET_DECREASE]),
)
def test_create_order_round_trips(size: int, fee: int, long: bool, kind: OrderType) -> None:
    order = _order(size_delta_usd=size, execution_fee=fee, is_long=long, order_type=kind)
    assert decode_create_order(encode_create_order(order)) == order


def test_order_key_comes_from_the_order_created_log() -> None:
    key = b"\x07" * 32
    created = LogEntry(
        ARBITRUM.event_emitter, (EVENT_LOG2_TOPIC, EVENT_ORDER_CREATED, key, b"\x00" * 32), b""
    )
    other = LogEntry(ARBITRUM.event_emitter, (EVENT_LOG2_TOPIC, keccak(b"X"), b"\x01" * 32), b"")
    assert order_key_of([other, created], ARBITRUM.event_emitter) == key
    assert order_key_of([other], ARBITRUM.event_emitter) is None
    assert order_key_of([created], ARBITRUM.router) is None


def test_event_strings_decode_event_log_data() -> None:
    data_type = next(
        i for e in gmx_abi("EventEmitter") if e["name"] == "EventLog2" for i in e["inputs"]
    )
    assert data_type["name"] == "msgSender"
    empty: tuple[list[object], list[object]] = ([], [])
    strings: tuple[list[tuple[str, str]], list[object]] = (
        [("reason", "USER_INITIATED_CANCEL")],
        [],
    )
    event_data = (empty, empty, empty, empty, empty, empty, strings)
    data = abi_encode(
        ["address", "string", gmx._EVENT_LOG_DATA], [ALICE, "OrderCancelled", event_data]
    )
    assert event_strings(data) == {"reason": "USER_INITIATED_CANCEL"}


# --- execution fees --------------------------------------------------------------------------

GAS = GasParams(
    base_amount=600_000,
    per_oracle_price=250_000,
    multiplier_factor=USD,  # 1x
    increase_order_gas_limit=3_000_000,
    decrease_order_gas_limit=3_000_000,
    single_swap_gas_limit=1_000_000,
)


def test_gas_limit_follows_adjust_gas_limit_for_estimate() -> None:
    # base + per-oracle-price * (3 + swaps) + order limit * multiplier
    assert estimate_execution_gas_limit(GAS, OrderType.MARKET_INCREASE) == (
        600_000 + 3 * 250_000 + 3_000_000
    )
    doubled = GasParams(600_000, 250_000, 2 * USD, 3_000_000, 2_000_000, 1_000_000)
    assert estimate_execution_gas_limit(doubled, OrderType.MARKET_DECREASE, swaps=1) == (
        600_000 + 4 * 250_000 + 2 * (2_000_000 + 1_000_000)
    )
    with pytest.raises(ValueError, match="MARKET_SWAP"):
        estimate_execution_gas_limit(GAS, OrderType.MARKET_SWAP)


def test_execution_fee_has_the_margin_and_rounds_up() -> None:
    limit = estimate_execution_gas_limit(GAS, OrderType.MARKET_INCREASE)
    assert execution_fee(GAS, OrderType.MARKET_INCREASE, 10**8, margin=Decimal(1)) == limit * 10**8
    assert execution_fee(GAS, OrderType.MARKET_INCREASE, 3, margin=Decimal("1.1")) == -(
        -limit * 3 * 11 // 10
    )
    with pytest.raises(ValueError, match="margin"):
        execution_fee(GAS, OrderType.MARKET_INCREASE, 1, margin=Decimal("0.9"))


@given(st.integers(1, 10**12), st.integers(1, 10**12))
def test_a_higher_gas_price_never_lowers_the_fee(low: int, step: int) -> None:
    a = execution_fee(GAS, OrderType.MARKET_DECREASE, low)
    b = execution_fee(GAS, OrderType.MARKET_DECREASE, low + step)
    assert b > a >= estimate_execution_gas_limit(GAS, OrderType.MARKET_DECREASE) * low


# --- the liquidation test --------------------------------------------------------------------


def _check(**changes: int) -> tuple[bool, str]:
    args = {
        "size_in_usd": 10_000 * USD,
        "collateral_usd": 1_000 * USD,
        "pnl_usd": 0,
        "price_impact_usd": 0,
        "total_cost_usd": 10 * USD,
        "max_impact_factor_for_liquidations": percent("1"),
        "min_collateral_factor": percent("1"),
        "min_collateral_usd": 1 * USD,
    }
    args.update(changes)
    result = liquidation_check(**args)  # type: ignore[arg-type]
    return result.liquidatable, result.reason


def test_liquidation_reasons_in_gmx_order() -> None:
    assert _check() == (False, "")
    # 10x long, -890 pnl: 1000 - 890 - 10 = 100 = 1% of 10,000: not below, so healthy
    assert _check(pnl_usd=-890 * USD) == (False, "")
    assert _check(pnl_usd=-891 * USD) == (True, "min collateral for leverage")
    # below MIN_COLLATERAL_USD first, when it is validated
    assert _check(pnl_usd=-990 * USD + USD // 2, min_collateral_usd=5 * USD) == (
        True,
        "min collateral",
    )
    assert _check(pnl_usd=-990 * USD, min_collateral_usd=0) == (True, "< 0")
    assert _check(pnl_usd=-990 * USD, min_collateral_usd=0, min_collateral_factor=0) == (
        True,
        "< 0",
    )


def test_price_impact_is_capped_for_liquidations_and_gains_ignored() -> None:
    # -500 impact capped at 1% of 10,000 = -100: 1000 - 100 - 10 = 890 > 100
    result = liquidation_check(
        size_in_usd=10_000 * USD,
        collateral_usd=1_000 * USD,
        pnl_usd=0,
        price_impact_usd=-500 * USD,
        total_cost_usd=10 * USD,
        max_impact_factor_for_liquidations=percent("1"),
        min_collateral_factor=percent("1"),
        min_collateral_usd=USD,
    )
    assert result.capped_price_impact_usd == -100 * USD
    assert result.remaining_collateral_usd == 890 * USD
    gain = liquidation_check(
        size_in_usd=10_000 * USD,
        collateral_usd=1_000 * USD,
        pnl_usd=0,
        price_impact_usd=500 * USD,
        total_cost_usd=0,
        max_impact_factor_for_liquidations=0,
        min_collateral_factor=0,
        min_collateral_usd=0,
    )
    assert gain.remaining_collateral_usd == 1_000 * USD


def test_pnl_and_apply_factor() -> None:
    # long 1 ETH (18 decimals) at 2,000 (GMX price per wei: 2000e12), now 2,500
    size_in_usd, tokens = 2_000 * USD, 10**18
    assert position_pnl_usd(size_in_usd, tokens, 2_500 * 10**12, True) == 500 * USD
    assert position_pnl_usd(size_in_usd, tokens, 2_500 * 10**12, False) == -500 * USD
    assert apply_factor(10_000 * USD, percent("0.5")) == 50 * USD
    assert apply_factor(-7, USD // 2) == -3  # toward zero, like GMX's mulDiv on magnitudes


# --- mapping ---------------------------------------------------------------------------------

ETH = Token(WETH, "WETH", 18)
USDC_TOKEN = Token(USDC, "USDC", 6)
TOKENS = MarketTokens(MARKET, ETH, ETH, USDC_TOKEN)
PARAMS = MarketParams(
    min_collateral_factor=percent("1"),
    min_collateral_factor_for_liquidation=percent("0.5"),
    max_impact_factor_for_liquidations=percent("1"),
    position_fee_factor=percent("0.05"),
    pool_long=0,
    pool_short=0,
    open_interest_in_tokens_long=0,
    open_interest_in_tokens_short=0,
    open_interest_long=10**6 * USD,
    open_interest_short=5 * 10**5 * USD,
    funding_factor_per_second=10**20,
)
ONE_USDC = 10**24  # 1 USD per 1e-6 USDC unit: 1e30 / 1e6


def _info(
    *, is_long: bool, price: TokenPrice, collateral: int, cost: int, impact: int
) -> RawPositionInfo:
    size_in_usd, tokens = 10_000 * USD, 5 * 10**18  # 5 ETH at 2,000
    raw = RawPosition(
        key="0x" + position_key(ALICE, MARKET, USDC, is_long).hex(),
        account=ALICE,
        market=MARKET,
        collateral_token=USDC,
        size_in_usd=size_in_usd,
        size_in_tokens=tokens,
        collateral_amount=collateral,
        pending_impact_amount=0,
        is_long=is_long,
        increased_at_time=0,
    )
    conservative = price.min if is_long else price.max
    return RawPositionInfo(
        position=raw,
        collateral_price_min=ONE_USDC,
        total_cost_amount=cost,
        position_fee_amount=cost,
        borrowing_fee_usd=0,
        funding_fee_amount=0,
        price_impact_usd=impact,
        total_impact_usd=impact,
        base_pnl_usd=position_pnl_usd(size_in_usd, tokens, conservative, is_long),
    )


@pytest.mark.parametrize("is_long", [True, False])
@pytest.mark.parametrize("mark", [1_700, 1_800, 1_850, 1_900, 2_000, 2_150, 2_190, 2_250])
@pytest.mark.parametrize("impact", [0, -50, -500, 30])
def test_model_equity_is_gmx_remaining_collateral(is_long: bool, mark: int, impact: int) -> None:
    price = TokenPrice((mark - 1) * 10**12, (mark + 1) * 10**12)  # a 2 USD spread
    info = _info(
        is_long=is_long, price=price, collateral=300 * 10**6, cost=5 * 10**6, impact=impact * USD
    )
    market = map_market(TOKENS, price, PARAMS, 2 * USD)
    position = map_position(info, TOKENS, market, PARAMS)
    assert market.basis is Basis.ENTRY
    assert market.strictness is Strictness.LT
    assert market.maintenance_rate == Decimal("0.01")
    gmx = liquidation_check(
        size_in_usd=info.position.size_in_usd,
        collateral_usd=info.collateral_usd,
        pnl_usd=info.base_pnl_usd,
        price_impact_usd=info.total_impact_usd,
        total_cost_usd=info.total_cost_usd,
        max_impact_factor_for_liquidations=PARAMS.max_impact_factor_for_liquidations,
        min_collateral_factor=PARAMS.maintenance_factor,
        min_collateral_usd=2 * USD,
    )
    equity = margin.equity(position, market)
    assert abs(equity.raw - gmx.remaining_collateral_usd) <= 1
    mm = margin.maintenance_margin(position, market)
    assert abs(mm.raw - gmx.min_collateral_usd_for_leverage) <= 10**13  # entry rounding
    boundary = abs(gmx.remaining_collateral_usd - gmx.min_collateral_usd_for_leverage) <= 10**13
    if not boundary:
        assert margin.is_liquidatable(position, market) == gmx.liquidatable


def test_entry_price_rounds_against_the_trader() -> None:
    long = entry_price(10_000 * USD + 1, 3 * 10**18, 18, True)
    short = entry_price(10_000 * USD + 1, 3 * 10**18, 18, False)
    assert long.raw == short.raw + 1
    assert long.decimals == 30 - 18 + 18


def test_funding_rates_split_between_sides() -> None:
    market = map_market(TOKENS, TokenPrice(2_000 * 10**12, 2_000 * 10**12), PARAMS, USD)
    assert market.funding_rate_long == Decimal("1e-10")
    assert market.funding_rate_short == Decimal("-2e-10")  # longs' OI is twice the shorts'


def test_api_prices_parse_and_report_missing_tokens() -> None:
    tickers = [
        {
            "tokenAddress": WETH.lower(),
            "minPrice": "2000000000000000",
            "maxPrice": "2001000000000000",
        },
        {"tokenAddress": "bad"},
    ]
    assert GmxApiPriceSource.parse(tickers, [WETH]) == {WETH: TokenPrice(2 * 10**15, 2001 * 10**12)}
    with pytest.raises(PriceUnavailableError, match=USDC):
        GmxApiPriceSource.parse(tickers, [WETH, USDC])


def test_deployment_overrides_name_unknown_fields() -> None:
    moved = ARBITRUM.with_overrides(reader="0x0000000000000000000000000000000000000001")
    assert moved.reader.endswith("1")
    assert moved.data_store == ARBITRUM.data_store
    with pytest.raises(ValueError, match="readr"):
        ARBITRUM.with_overrides(readr="0x")


# --- the fragments and our test deployment agree -----------------------------------------------


def _signatures(
    entries: list[dict[str, Any]], kinds: tuple[str, ...] = ("function", "event")
) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for e in entries:
        if e.get("type") not in kinds:
            continue
        types = ",".join(abi_type(i) for i in e["inputs"])
        outputs = tuple(abi_type(o) for o in e.get("outputs", []))
        indexed = tuple(str(i.get("indexed", "")) for i in e["inputs"])
        out[f"{e['type']} {e['name']}({types})"] = outputs + indexed
    return out


@pytest.mark.parametrize(
    ("fragment", "contract"),
    [
        ("Reader", "GmxReader"),
        ("ExchangeRouter", "GmxExchangeRouter"),
        ("DataStore", "GmxDataStore"),
        ("RoleStore", "GmxRoleStore"),
        ("Router", "GmxRouter"),
        ("EventEmitter", "GmxEventEmitter"),
        ("ERC20", "GmxWNT"),
        ("SubaccountRouter", "GmxSubaccountRouter"),
    ],
)
def test_fragments_match_our_gmx_test_deployment(fragment: str, contract: str) -> None:
    ours = _signatures(shipped_abi(contract))
    for signature, shape in _signatures(gmx_abi(fragment)).items():
        assert ours.get(signature) == shape, f"{contract} lacks or differs in {signature}"


def test_our_subaccount_router_has_every_function_and_error_of_the_sdk_abi() -> None:
    kinds = ("function", "error")
    ours = _signatures(shipped_abi("GmxSubaccountRouter"), kinds)
    theirs = _signatures(gmx_abi("SubaccountRouter"), kinds)
    assert len(theirs) == 16  # 9 functions, 7 errors
    for signature, shape in theirs.items():
        assert ours.get(signature) == shape, f"GmxSubaccountRouter lacks or differs in {signature}"


def test_price_source_specs() -> None:
    class NoRpc:
        async def request(self, method: str, params: Any = ()) -> Any:
            raise AssertionError("no RPC in this test")

    venue = GmxVenue(NoRpc(), ARBITRUM, wnt=WETH, prices="chainlink,api")
    assert isinstance(venue.prices, FallbackPriceSource)
    assert venue.prices.name == "chainlink+gmx-api"
    assert GmxVenue(NoRpc(), ARBITRUM, wnt=WETH).prices.name == "chainlink"
    with pytest.raises(VenueError, match="oracle"):
        GmxVenue(NoRpc(), ARBITRUM, wnt=WETH, prices="oracle")


# --- simulating the execution --------------------------------------------------------------------

SIMULATE = "simulateExecuteLatestOrder((address[],(uint256,uint256)[],uint256,uint256))"
SIMULATE_PARAMS = "(address[],(uint256,uint256)[],uint256,uint256)"
ROUTER = ARBITRUM.exchange_router
HEAD = 5_000
HEAD_TIME = 1_700_000_000
WETH_PRICE = TokenPrice(3_000 * 10**12, 3_001 * 10**12)
USDC_PRICE = TokenPrice(10**24, 10**24)
_SEND_WNT = GmxFn.of("ExchangeRouter", "sendWnt")
_SEND_TOKENS = GmxFn.of("ExchangeRouter", "sendTokens")
_MULTICALL = GmxFn.of("ExchangeRouter", "multicall")


def _error(
    signature: str, types: list[str] | None = None, values: list[Any] | None = None
) -> bytes:
    return keccak(signature.encode())[:4] + abi_encode(types or [], values or [])


END_OF_SIMULATION = _error("EndOfOracleSimulation()")
LIQUIDATABLE = _error(
    "LiquidatablePosition(string,int256,int256,int256)",
    ["string", "int256", "int256", "int256"],
    ["min collateral for leverage", 200 * USD, USD, 500 * USD],
)


class ScriptedRpc:
    """Answers the head block and one eth_call outcome; records the calls."""

    def __init__(self, outcome: bytes | str) -> None:
        self.outcome = outcome  # revert data, or "0x..." for a call that returns
        self.calls: list[tuple[str, list[Any]]] = []

    async def request(self, method: str, params: Any = ()) -> Any:
        self.calls.append((method, list(params)))
        if method == "eth_getBlockByNumber":
            return {
                "number": hex(HEAD),
                "hash": "0x" + "11" * 32,
                "parentHash": "0x" + "22" * 32,
                "timestamp": hex(HEAD_TIME),
                "baseFeePerGas": "0x1",
            }
        if method == "eth_call":
            if isinstance(self.outcome, str):
                return self.outcome
            raise RpcResponseError(
                "eth_call", 3, "execution reverted", data="0x" + self.outcome.hex()
            )
        raise AssertionError(f"unexpected {method}")


class FixedPrices:
    name = "fixed"

    def __init__(self) -> None:
        self.blocks: list[int] = []

    async def prices(self, tokens: Any, *, block: int) -> dict[str, TokenPrice]:
        self.blocks.append(block)
        table = {WETH: WETH_PRICE, USDC: USDC_PRICE}
        return {t: table[t] for t in tokens}


def _simulating_venue(outcome: bytes | str) -> tuple[GmxVenue, ScriptedRpc, FixedPrices]:
    rpc, prices = ScriptedRpc(outcome), FixedPrices()
    venue = GmxVenue(rpc, ARBITRUM, wnt=WETH, prices=prices)
    weth, usdc = Token(WETH, "WETH", 18), Token(USDC, "USDC", 6)
    venue._cache.markets[MARKET] = MarketTokens(MARKET, weth, weth, usdc)
    return venue, rpc, prices


def _top_up_plan() -> tuple[TxPlan, list[bytes]]:
    order = _order()
    calls = [
        _SEND_WNT.encode(ARBITRUM.order_vault, order.execution_fee),
        _SEND_TOKENS.encode(USDC, ARBITRUM.order_vault, order.initial_collateral_delta_amount),
        encode_create_order(order),
    ]
    usdc = Token(USDC, "USDC", 6)
    action = TopUp("gmx", Scope.POSITION, "0xab", ALICE, usdc, usdc.amount(100 * 10**6), WHY)
    step = TxRequest(ROUTER, _MULTICALL.encode(calls), value=order.execution_fee)
    return TxPlan(action, ALICE, (step,), execution=Execution.DELAYED), calls


def _snapshot(block: int) -> Snapshot:
    usdc = Token(USDC, "USDC", 6)
    wallet = Wallet(ALICE, usdc, usdc.amount(0), TokenAmount(0, 18))
    return Snapshot(block_number=block, block_time=HEAD_TIME, wallet=wallet, markets=())


def test_simulation_calldata_is_the_order_multicall_then_simulate_execute_latest_order() -> None:
    _plan, calls = _top_up_plan()
    data = encode_simulation(calls, {USDC: USDC_PRICE, WETH: WETH_PRICE}, HEAD_TIME + 10)
    assert data[:4] == _MULTICALL.selector
    (inner,) = _MULTICALL.decode_input(data)
    assert [bytes(x) for x in inner[:-1]] == calls
    simulate = bytes(inner[-1])
    fn = GmxFn.of("ExchangeRouter", "simulateExecuteLatestOrder")
    assert fn.signature == SIMULATE
    assert simulate[:4] == keccak(SIMULATE.encode())[:4] == fn.selector
    ((tokens, props, min_time, max_time),) = abi_decode([SIMULATE_PARAMS], simulate[4:])
    # tokens in address order, one Price.Props (min, max) each, one timestamp for both ends
    assert [t.lower() for t in tokens] == [WETH.lower(), USDC.lower()]
    assert [tuple(p) for p in props] == [(WETH_PRICE.min, WETH_PRICE.max), (10**24, 10**24)]
    assert (min_time, max_time) == (HEAD_TIME + 10, HEAD_TIME + 10)


def test_end_of_oracle_simulation_is_told_apart_from_gmx_errors() -> None:
    venue = GmxVenue(ScriptedRpc(b""), ARBITRUM, wnt=WETH)
    end = venue.decode_error(END_OF_SIMULATION)
    assert end.name == gmx.END_OF_ORACLE_SIMULATION
    assert end.args == ()
    liquidatable = venue.decode_error(LIQUIDATABLE)
    assert liquidatable.name == "LiquidatablePosition"
    assert dict(liquidatable.args) == {
        "reason": "min collateral for leverage",
        "remainingCollateralUsd": str(200 * USD),
        "minCollateralUsd": str(USD),
        "minCollateralUsdForLeverage": str(500 * USD),
    }
    price = venue.decode_error(
        _error(
            "OrderNotFulfillableAtAcceptablePrice(uint256,uint256)",
            ["uint256", "uint256"],
            [4_900 * 10**12, 4_950 * 10**12],
        )
    )
    assert price.message == (
        f"OrderNotFulfillableAtAcceptablePrice(price={4_900 * 10**12}, "
        f"acceptablePrice={4_950 * 10**12})"
    )


async def test_a_simulation_gmx_ends_with_end_of_oracle_simulation_passes() -> None:
    venue, rpc, prices = _simulating_venue(END_OF_SIMULATION)
    plan, calls = _top_up_plan()
    assert await venue.simulate_execution(plan, _snapshot(HEAD - 1)) is None
    assert prices.blocks == [HEAD - 1], "priced at the snapshot's block"
    ((_method, (tx, block)),) = [c for c in rpc.calls if c[0] == "eth_call"]
    assert (tx["to"], tx["from"], tx["value"], block) == (ROUTER, ALICE, hex(10**15), hex(HEAD))
    expected = encode_simulation(calls, {WETH: WETH_PRICE, USDC: USDC_PRICE}, HEAD_TIME + 10)
    assert tx["data"] == "0x" + expected.hex()


async def test_any_other_revert_of_the_simulation_is_the_reason_gmx_would_cancel() -> None:
    venue, _rpc, _prices = _simulating_venue(LIQUIDATABLE)
    plan, _calls = _top_up_plan()
    reason = await venue.simulate_execution(plan, _snapshot(HEAD))
    assert reason is not None
    assert reason.name == "LiquidatablePosition"
    assert reason.data == LIQUIDATABLE


async def test_a_simulation_that_returns_is_not_gmx() -> None:
    venue, _rpc, _prices = _simulating_venue("0x")
    plan, _calls = _top_up_plan()
    with pytest.raises(VenueError, match="not GMX's ExchangeRouter"):
        await venue.simulate_execution(plan, _snapshot(HEAD))


async def test_a_plan_without_an_order_has_nothing_to_simulate() -> None:
    venue, rpc, _prices = _simulating_venue(LIQUIDATABLE)
    alert = Alert("gmx", Scope.POSITION, "0xab", ALICE, Severity.INFO, WHY)
    assert await venue.simulate_execution(TxPlan(alert, ALICE, ()), _snapshot(HEAD)) is None
    approve = TxRequest(USDC, GmxFn.of("ERC20", "approve").encode(ARBITRUM.router, 1))
    plan = TxPlan(alert, ALICE, (approve,), approvals=1)
    assert await venue.simulate_execution(plan, _snapshot(HEAD)) is None
    assert rpc.calls == []
    assert isinstance(venue, SimulatesExecution)
