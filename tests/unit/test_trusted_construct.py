"""The trusted constructors (`_Fixed.trusted`, `Position.trusted`) build exactly what the
validating ones build, only without the checks; the validating ones still check."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.model import MarginMode, Position, Side, Token
from keeper.units import MAX_DECIMALS, Price, TokenAmount, Usd

USDC = Token("0x5FbDB2315678afecb367f032d93F642f64180aa3", "USDC", 6)
A = "0x" + "ab" * 20

UNIT_TYPES = [TokenAmount, Usd, Price]


@pytest.mark.parametrize("cls", UNIT_TYPES)
@given(raw=st.integers(-(2**256), 2**256), decimals=st.integers(0, MAX_DECIMALS))
def test_trusted_amounts_equal_validated_ones(
    cls: type[TokenAmount | Usd | Price], raw: int, decimals: int
) -> None:
    trusted = cls.trusted(raw, decimals)
    checked = cls(raw, decimals)
    assert type(trusted) is cls
    assert trusted == checked
    assert hash(trusted) == hash(checked)
    assert (trusted.raw, trusted.decimals) == (raw, decimals)
    assert repr(trusted) == repr(checked)
    assert str(trusted) == str(checked)
    assert trusted.value == checked.value
    assert pickle.loads(pickle.dumps(trusted)) == checked
    assert copy.copy(trusted) == checked


def test_trusted_amounts_behave_like_validated_ones() -> None:
    a = TokenAmount.trusted(5, 6)
    assert a + TokenAmount(7, 6) == TokenAmount(12, 6)
    assert -a == TokenAmount(-5, 6)
    assert a < TokenAmount(6, 6)
    assert Usd.trusted(3, 6) - Usd(1, 6) == Usd(2, 6)
    with pytest.raises(TypeError, match="cannot mix"):
        _ = a + TokenAmount(1, 18)
    with pytest.raises(TypeError):
        _ = a + Usd(1, 6)  # type: ignore[operator]


@pytest.mark.parametrize("cls", UNIT_TYPES)
def test_trusted_amounts_are_frozen_and_slotted(cls: type[TokenAmount | Usd | Price]) -> None:
    value = cls.trusted(1, 6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.raw = 2  # type: ignore[misc]
    assert not hasattr(value, "__dict__")
    assert dataclasses.replace(value, raw=3) == cls(3, 6)


def test_validating_constructors_still_check() -> None:
    with pytest.raises(TypeError, match="raw must be an int"):
        TokenAmount(True, 6)
    with pytest.raises(ValueError, match="decimals must be in"):
        Usd(1, MAX_DECIMALS + 1)
    # replace() goes through __init__, so a trusted value is re-checked when changed
    with pytest.raises(ValueError, match="decimals must be in"):
        dataclasses.replace(Price.trusted(1, 18), decimals=-1)


def _fields(**over: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "venue": "refex",
        "key": "0x" + "01" * 32,
        "account": A,
        "market_id": "1",
        "side": Side.LONG,
        "size": TokenAmount(5 * 10**17, 18),
        "entry_price": Price(60_000 * 10**18, 18),
        "collateral_token": USDC,
        "collateral": TokenAmount(3_000 * 10**6, 6),
        "collateral_price": Price(10**18, 18),
        "collateral_usd": Usd(3_000 * 10**6, 6),
        "fees": Usd(-12, 6),
        "mode": MarginMode.ISOLATED,
        "cross_account": None,
    }
    fields.update(over)
    return fields


@pytest.mark.parametrize(
    "over",
    [{}, {"mode": MarginMode.CROSS, "cross_account": A, "side": Side.SHORT, "fees": Usd(7, 6)}],
)
def test_trusted_position_equals_validated_one(over: dict[str, object]) -> None:
    fields = _fields(**over)
    checked = Position(**fields)  # type: ignore[arg-type]
    trusted = Position.trusted(*fields.values())  # type: ignore[arg-type]
    assert type(trusted) is Position
    assert trusted == checked
    assert hash(trusted) == hash(checked)
    assert repr(trusted) == repr(checked)
    for field in dataclasses.fields(Position):
        assert getattr(trusted, field.name) is getattr(checked, field.name)
    assert pickle.loads(pickle.dumps(trusted)) == checked
    with pytest.raises(dataclasses.FrozenInstanceError):
        trusted.key = "0x02"  # type: ignore[misc]
    assert not hasattr(trusted, "__dict__")


def test_trusted_position_sets_every_field() -> None:
    names = [f.name for f in dataclasses.fields(Position)]
    assert len(names) == 14  # Position.trusted takes them all, in this order
    trusted = Position.trusted(*_fields().values())  # type: ignore[arg-type]
    for name in names:
        getattr(trusted, name)  # an unset slot would raise AttributeError


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"size": TokenAmount(0, 18)}, ValueError),
        ({"entry_price": Price(0, 18)}, ValueError),
        ({"collateral": TokenAmount(1, 18)}, TypeError),
        ({"fees": Usd(1, 30)}, TypeError),
        ({"mode": MarginMode.CROSS}, ValueError),
    ],
)
def test_validating_position_still_checks(over: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        Position(**_fields(**over))  # type: ignore[arg-type]
