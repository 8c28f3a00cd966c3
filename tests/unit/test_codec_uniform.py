"""The uniform aggregate3 codecs agree with the general ones (and so with eth_abi), and fall
back (None) on anything that is not the uniform shape."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.multicall import Call, CallResult
from keeper.chain.multicall import decode_aggregate3 as slow_decode
from keeper.venues.codec import (
    UniformResults,
    decode_aggregate3,
    decode_aggregate3_uniform,
    encode_aggregate3,
    encode_aggregate3_uniform,
)

A = "0x" + "ab" * 20


@given(
    st.binary(max_size=40),
    st.integers(0, 70).flatmap(lambda n: st.lists(st.binary(min_size=n, max_size=n), max_size=12)),
)
def test_uniform_encoding_equals_the_general_one(prefix: bytes, args: list[bytes]) -> None:
    expected = encode_aggregate3([Call(A, prefix + arg) for arg in args])
    assert encode_aggregate3_uniform(A, prefix, args) == expected


def test_uniform_encoding_refuses_arguments_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        encode_aggregate3_uniform(A, b"\x01", [b"ab", b"abc"])


def _answer(results: list[tuple[bool, bytes]]) -> bytes:
    return encode(["(bool,bytes)[]"], [results])


@given(
    st.integers(0, 100).flatmap(
        lambda n: st.tuples(
            st.just(n), st.lists(st.binary(min_size=n, max_size=n), min_size=1, max_size=12)
        )
    )
)
def test_uniform_decoding_reads_what_the_general_one_reads(case: tuple[int, list[bytes]]) -> None:
    size, datas = case
    data = _answer([(True, d) for d in datas])
    uniform = decode_aggregate3_uniform(data, len(datas), size)
    assert uniform is not None
    got = [uniform.data[at : at + size] for at in uniform.offsets]
    assert got == [r.data for r in slow_decode(data, len(datas))] == datas
    assert UniformResults.of(decode_aggregate3(data, len(datas)), size) is not None


@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=70)), min_size=1, max_size=12))
def test_uniform_decoding_is_none_or_the_general_answer(results: list[tuple[bool, bytes]]) -> None:
    data = _answer(results)
    general = decode_aggregate3(data, len(results))
    for size in {len(d) for _, d in results} | {0, 32}:
        uniform = decode_aggregate3_uniform(data, len(results), size)
        of = UniformResults.of(general, size)
        every = all(ok and len(d) == size for ok, d in results)
        assert (uniform is not None) == every == (of is not None)
        if uniform is not None and of is not None:
            assert [uniform.data[a : a + size] for a in uniform.offsets] == [d for _, d in results]
            assert [of.data[a : a + size] for a in of.offsets] == [d for _, d in results]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d[:-1],  # cut
        lambda d: d + b"\x00",  # trailing byte
        lambda d: d[:31] + b"\x40" + d[32:],  # array offset
        lambda d: d[:63] + b"\x03" + d[64:],  # count
        lambda d: d[:95] + b"\x00" + d[96:],  # first element's offset
        lambda d: d[: 4 * 32 + 31] + b"\x02" + d[4 * 32 + 32 :],  # first flag is 2
        lambda d: d[: 6 * 32 + 31] + b"\x21" + d[6 * 32 + 32 :],  # first length
    ],
)
def test_uniform_decoding_refuses_a_mangled_answer(mangle: object) -> None:
    data = _answer([(True, b"\x11" * 32), (True, b"\x22" * 32)])
    assert decode_aggregate3_uniform(data, 2, 32) is not None
    assert callable(mangle)
    assert decode_aggregate3_uniform(mangle(data), 2, 32) is None


def test_uniform_decoding_of_a_failed_call_is_none() -> None:
    data = _answer([(True, b"\x11" * 32), (False, b"\x22" * 32)])
    assert decode_aggregate3_uniform(data, 2, 32) is None
    assert decode_aggregate3_uniform(data, 3, 32) is None
    assert decode_aggregate3_uniform(data, 0, 32) is None
    assert UniformResults.of([CallResult(True, b"x"), CallResult(False, b"y")], 1) is None
