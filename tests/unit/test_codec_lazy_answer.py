"""`Aggregate3Answer` reads what `decode_aggregate3`, `read_bytes32_hex` and `read_words`
read, and refuses what they refuse, with the same errors."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.jsonrpc import RpcMalformedResponseError
from keeper.chain.multicall import CallResult, MulticallError
from keeper.venues.base import VenueDecodeError
from keeper.venues.codec import (
    Aggregate3Answer,
    decode_aggregate3,
    read_bytes32_hex,
    read_words,
)


def _answer(results: list[tuple[bool, bytes]]) -> bytes:
    return encode(["(bool,bytes)[]"], [results])


def _outcome(fn: object, *args: object) -> object:
    try:
        return fn(*args)  # type: ignore[operator]
    except (VenueDecodeError, RpcMalformedResponseError) as exc:
        return (type(exc), str(exc))


_results = st.lists(
    st.tuples(
        st.booleans(),
        st.one_of(
            st.binary(max_size=100),
            st.lists(st.binary(min_size=32, max_size=32), max_size=5).map(
                lambda keys: encode(["bytes32[]"], [keys])
            ),
            st.integers(0, 2**256 - 1).map(lambda n: n.to_bytes(32, "big")),
        ),
    ),
    min_size=1,
    max_size=10,
)


@given(_results)
def test_lazy_reads_equal_the_eager_ones(results: list[tuple[bool, bytes]]) -> None:
    data = _answer(results)
    eager = decode_aggregate3(data, len(results))
    lazy = Aggregate3Answer(data, len(results))
    assert len(lazy) == len(results)
    for i, result in enumerate(eager):
        assert lazy.result(i) == result
        if result.success:
            assert _outcome(lazy.bytes32_hex, i, "k") == _outcome(
                read_bytes32_hex, result.data, "k"
            )
            word = _outcome(read_words, result.data, 1, "w")
            assert _outcome(lazy.uint, i, "w") == (word[0] if isinstance(word, list) else word)
        else:
            assert lazy.bytes32_hex(i, "k") is None
            assert lazy.uint(i, "w") is None


def _read_all(raw: bytes, count: int) -> list[CallResult]:
    lazy = Aggregate3Answer(raw, count)
    return [lazy.result(i) for i in range(count)]


@given(_results, st.data())
def test_a_damaged_answer_is_refused_as_the_eager_decoder_refuses_it(
    results: list[tuple[bool, bytes]], data: st.DataObject
) -> None:
    answer = bytearray(_answer(results))
    cut = data.draw(st.booleans())
    if cut:
        answer = answer[: data.draw(st.integers(0, len(answer) - 1))]
    else:
        at = data.draw(st.integers(0, len(answer) - 1))
        answer[at] ^= data.draw(st.integers(1, 255))
    raw = bytes(answer)
    try:
        eager = decode_aggregate3(raw, len(results))
    except (RpcMalformedResponseError, MulticallError) as exc:
        eager_error: Exception | None = exc
    else:
        eager_error = None
    if eager_error is not None:
        # the lazy reader raises the same error, at construction or at the result it concerns
        with pytest.raises(type(eager_error)) as caught:
            _read_all(raw, len(results))
        assert str(caught.value) == str(eager_error)
    else:
        assert _read_all(raw, len(results)) == eager


def test_no_data_and_a_wrong_count_are_refused() -> None:
    with pytest.raises(MulticallError, match="is Multicall3 deployed at 0xabc"):
        Aggregate3Answer(b"", 1, address="0xabc")
    with pytest.raises(RpcMalformedResponseError, match="2 results for 3 calls"):
        Aggregate3Answer(_answer([(True, b""), (True, b"")]), 3)
    with pytest.raises(IndexError):
        Aggregate3Answer(_answer([(True, b"")]), 1).result(1)
