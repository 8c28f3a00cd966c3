"""Pure decoding and mapping of the reference adapter: codecs against eth_abi, units, rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_abi.abi import encode
from eth_hash.auto import keccak
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.jsonrpc import RpcMalformedResponseError
from keeper.chain.multicall import Call, CallResult
from keeper.chain.multicall import decode_aggregate3 as slow_decode
from keeper.chain.multicall import encode_aggregate3 as slow_encode
from keeper.model import Alert, Basis, MarginMode, Reason, Scope, Severity, Side, Strictness, Token
from keeper.venues.base import (
    ActionState,
    MinedTx,
    TxPlan,
    TxRequest,
    VenueDecodeError,
    sync_action_state,
)
from keeper.venues.codec import (
    decode_aggregate3,
    encode_aggregate3,
    read_bytes32_array,
    read_words,
)
from keeper.venues.reference import (
    RawMarket,
    allowance_slot,
    decode_position,
    funding_owed,
    map_market,
    map_position,
    symbol_of,
)

USDC = Token("0x5FbDB2315678afecb367f032d93F642f64180aa3", "USDC", 6)
A = "0x" + "ab" * 20
B = "0x" + "cd" * 20


@given(st.lists(st.tuples(st.sampled_from([A, B]), st.binary(max_size=100)), max_size=20))
def test_aggregate3_encoding_matches_eth_abi(calls: list[tuple[str, bytes]]) -> None:
    batch = [Call(t, d) for t, d in calls]
    assert encode_aggregate3(batch) == slow_encode(batch)


@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=20))
def test_aggregate3_decoding_matches_eth_abi(results: list[tuple[bool, bytes]]) -> None:
    data = encode(["(bool,bytes)[]"], [results])
    assert decode_aggregate3(data, len(results)) == slow_decode(data, len(results))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (encode(["(bool,bytes)[]"], [[(True, b"x")]]), "1 results for 2 calls"),
        (encode(["(bool,bytes)[]"], [[(True, b"x"), (True, b"y")]])[:-40], "cut short|malformed"),
        (b"\x00" * 31 + b"\x40", "cut short"),
    ],
)
def test_aggregate3_bad_answers_are_malformed(data: bytes, match: str) -> None:
    with pytest.raises(RpcMalformedResponseError, match=match):
        decode_aggregate3(data, 2)


def position_data(account: str | int = A, **over: int) -> bytes:
    """PerpExchange.positions return data: nine words, `over` replacing the defaults."""
    fields = {
        "account": int(account, 16) if isinstance(account, str) else account,
        "long": 1,
        "cross": 0,
        "market": 1,
        "size": 5 * 10**17,
        "collateral": 3_000 * 10**6,
        "entry": 60_000 * 10**18,
        "index": -(12 * 10**18),
        "updated": 1_700_000_000,
    }
    fields.update(over)
    return b"".join(v.to_bytes(32, "big", signed=True) for v in fields.values())


def test_position_decodes_like_eth_abi() -> None:
    raw = decode_position(position_data())
    assert raw.account == bytes.fromhex(A[2:])
    assert (raw.is_long, raw.is_cross, raw.market_id) == (True, False, 1)
    assert raw.size == 5 * 10**17
    assert raw.funding_index == -(12 * 10**18)
    with pytest.raises(VenueDecodeError, match=r"PerpExchange\.positions: expected 288 bytes"):
        decode_position(position_data()[:-1])
    with pytest.raises(VenueDecodeError, match="not a Position"):
        decode_position(position_data(long=2))


def test_key_lists() -> None:
    keys = [bytes([i]) * 32 for i in range(3)]
    assert read_bytes32_array(encode(["bytes32[]"], [keys]), "k") == keys
    assert read_bytes32_array(encode(["bytes32[]"], [[]]), "k") == []
    with pytest.raises(VenueDecodeError, match="isolatedPositionKeys"):
        read_bytes32_array(encode(["bytes32[]"], [keys])[:-32], "isolatedPositionKeys")
    with pytest.raises(VenueDecodeError, match="expected 32 bytes"):
        read_words(b"\x01", 1, "crossBalance")


@given(
    st.integers(0, 10**30),
    st.integers(-(10**30), 10**30),
    st.integers(-(10**30), 10**30),
)
def test_funding_owed_rounds_up_like_perpmath(size: int, now: int, then: int) -> None:
    owed = funding_owed(size, now, then)
    product = size * (now - then)
    assert owed * 10**30 >= product > (owed - 1) * 10**30


def raw_market(**over: object) -> RawMarket:
    fields: dict[str, object] = {
        "market_id": 0,
        "feed": B,
        "initial_margin_rate": 5 * 10**16,
        "maintenance_margin_rate": 25 * 10**15,
        "close_fee_rate": 10**15,
        "liquidation_fee_rate": 5 * 10**15,
        "impact_factor": 5 * 10**13,
        "max_impact_rate": 2 * 10**16,
        "long_oi": 10 * 10**18,
        "short_oi": 2 * 10**18,
        "price_valid": True,
        "price": 2_000 * 10**18,
        "funding_rate": -(2 * 10**11),
        "long_funding_index": 5 * 10**18,
        "short_funding_index": -(5 * 10**18),
    }
    fields.update(over)
    return RawMarket(**fields)  # type: ignore[arg-type]


def test_market_maps_exact_rates() -> None:
    market = map_market(raw_market(), "ETH")
    assert market.market_id == "0"
    assert market.index_token == Token("ETH", "ETH", 18)
    assert market.mark_price.raw == 2_000 * 10**18
    assert market.maintenance_rate == Decimal("0.025")
    assert market.close_fee_rate == Decimal("0.001")
    assert market.liquidation_fee_rate == Decimal("0.005")
    assert market.basis is Basis.MARK
    assert market.strictness is Strictness.LT
    assert market.funding_rate_long == Decimal("-0.0000002")
    assert market.funding_rate_short == Decimal("0.0000002")
    assert market.borrowing_rate_long == market.borrowing_rate_short == 0
    assert market.close_quote is not None
    # 8 tokens of skew at 0.00005 per token: 0.04%, under the 2% cap
    assert market.close_quote.impact_rate == Decimal("0.0004")
    capped = map_market(raw_market(long_oi=10**24), "ETH")
    assert capped.close_quote is not None
    assert capped.close_quote.impact_rate == Decimal("0.02")


def test_position_maps_with_accrued_funding() -> None:
    market = raw_market(market_id=1, long_funding_index=-(11 * 10**18))
    raw = decode_position(position_data())
    position = map_position("0x01", A, raw, market, USDC)
    assert position.side is Side.LONG
    assert position.mode is MarginMode.ISOLATED
    assert position.cross_account is None
    assert position.market_id == "1"
    assert position.collateral.raw == position.collateral_usd.raw == 3_000 * 10**6
    assert position.collateral_price.value == 1
    # 0.5 tokens x (−11 − (−12)) USD per token = 0.5 USD owed
    assert position.fees.raw == 500_000
    cross = map_position("0x02", A, decode_position(position_data(cross=1, long=0)), market, USDC)
    assert cross.side is Side.SHORT
    assert cross.mode is MarginMode.CROSS
    assert cross.cross_account == A
    # the short index is the opposite: it earns what longs would pay
    assert cross.fees.raw == funding_owed(5 * 10**17, -(5 * 10**18), -(12 * 10**18))


def test_symbols_and_allowance_slot() -> None:
    assert symbol_of("ETH / USD", 0) == "ETH"
    assert symbol_of("", 3) == "MARKET3"
    pad = bytes(12)
    inner = keccak(pad + bytes.fromhex(A[2:]) + (2).to_bytes(32, "big"))
    assert allowance_slot(A, B, 2) == keccak(pad + bytes.fromhex(B[2:]) + inner)


def test_sync_action_state() -> None:
    action = Alert("refex", Scope.POSITION, "k", A, Severity.INFO, Reason("x", "y"))
    plan = TxPlan(action, A, (TxRequest(A, b""), TxRequest(B, b"")), approvals=1)
    assert plan.override(1) is None
    ok = MinedTx("0x1", 1, True)
    assert sync_action_state(plan, []) is ActionState.PENDING
    assert sync_action_state(plan, [ok]) is ActionState.PENDING
    assert sync_action_state(plan, [ok, ok]) is ActionState.DONE
    assert sync_action_state(plan, [MinedTx("0x1", 1, False)]) is ActionState.FAILED
    assert ActionState.DONE.final
    assert not ActionState.AWAITING_EXECUTION.final
    with pytest.raises(ValueError, match="one entry per step"):
        TxPlan(action, A, (TxRequest(A, b""),), simulation_overrides=(None, None))
    assert CallResult(True, b"") == CallResult(True, b"")
