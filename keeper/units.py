"""Fixed-point value types: token amounts, USD amounts, prices; Decimal ratios.

No float ever touches money. On-chain values stay integers with their scale attached:

- `TokenAmount(raw, decimals)`: an amount of a token in its smallest unit.
- `Usd(raw, decimals)`: a USD amount at a venue's precision (6 on our reference exchange,
  30 on GMX).
- `Price(raw, decimals)`: USD per whole token, `raw / 10**decimals`. Our reference exchange
  quotes prices with 18 decimals. GMX quotes USD (1e30) per smallest unit of the token, which
  is the same thing with `decimals = 30 - token_decimals`: use `Price.gmx(raw, token_decimals)`.

Adding, subtracting or comparing values of different types or scales raises TypeError. Every
conversion that can lose digits says its rounding direction in its name (`_floor` rounds
toward minus infinity, `_ceil` toward plus infinity, `_exact` refuses to round); callers pick
the direction that is conservative for the trader (equity down, requirements up).

Ratios are plain `Decimal`, parsed from strings, never from floats. Arithmetic on them runs in
`CONTEXT` (80 significant digits: 1e30-scaled products need more than the default 28).
`EXACT` (120 digits) has `Inexact` trapped, for sums and products that must not round.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from typing import Any, Self

__all__ = [
    "CONTEXT",
    "EXACT",
    "EXACT_PRECISION",
    "PRECISION",
    "Price",
    "TokenAmount",
    "Usd",
    "div_ceil",
    "div_floor",
    "parse_decimal",
    "quantize_ceil",
    "quantize_floor",
    "sub_floor",
]

PRECISION = 80
"""Significant digits for ratio arithmetic."""

EXACT_PRECISION = 120
"""Significant digits of exact arithmetic: a GMX factor (up to 30 digits) times an entry price
carried to 48 digits must not round."""

MAX_DECIMALS = 77
"""The largest scale a value type accepts (uint256 holds 77 full decimal digits)."""

CONTEXT = Context(
    prec=PRECISION,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)
"""The context for ratio arithmetic: 80 digits, half-even, invalid operations raise."""

EXACT = Context(
    prec=EXACT_PRECISION,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)
"""Like CONTEXT with 120 digits, and any result that would need rounding raises
`decimal.Inexact`."""

_FLOOR = Context(prec=PRECISION, rounding=ROUND_FLOOR, traps=[InvalidOperation, DivisionByZero])
_CEIL = Context(prec=PRECISION, rounding=ROUND_CEILING, traps=[InvalidOperation, DivisionByZero])


def parse_decimal(value: str | int | Decimal, *, name: str = "value") -> Decimal:
    """Parse a finite Decimal from a string, an int or a Decimal; floats are refused.

    `name` is put in error messages (a config key or a CLI flag).
    """
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise TypeError(f"{name}: expected a decimal string, int or Decimal, got {value!r}")
    try:
        parsed = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name}: not a number: {value!r}") from None
    if not parsed.is_finite():
        raise ValueError(f"{name}: not a finite number: {value!r}")
    return parsed


def div_floor(numerator: Decimal, denominator: Decimal) -> Decimal:
    """numerator / denominator to 80 significant digits, rounded toward minus infinity."""
    return _FLOOR.divide(numerator, denominator)


def div_ceil(numerator: Decimal, denominator: Decimal) -> Decimal:
    """numerator / denominator to 80 significant digits, rounded toward plus infinity."""
    return _CEIL.divide(numerator, denominator)


def sub_floor(minuend: Decimal, subtrahend: Decimal) -> Decimal:
    """minuend - subtrahend to 80 significant digits, rounded toward minus infinity."""
    return _FLOOR.subtract(minuend, subtrahend)


def quantize_floor(value: Decimal, places: int) -> Decimal:
    """`value` rounded toward minus infinity to `places` digits after the point."""
    return _scaled_int(value, places, ROUND_FLOOR).scaleb(-places, CONTEXT)


def quantize_ceil(value: Decimal, places: int) -> Decimal:
    """`value` rounded toward plus infinity to `places` digits after the point."""
    return _scaled_int(value, places, ROUND_CEILING).scaleb(-places, CONTEXT)


def _scaled_int(value: Decimal, places: int, rounding: str) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    # scaleb only moves the exponent, so it is exact; to_integral_value rounds as told.
    return value.scaleb(places, CONTEXT).to_integral_value(rounding=rounding)


def _to_raw(value: Decimal, decimals: int, rounding: str | None) -> int:
    scaled = value.scaleb(decimals, CONTEXT)
    if rounding is None:
        integral = scaled.to_integral_value()
        if integral != scaled:
            raise ValueError(f"{value} has more than {decimals} decimal places")
        return int(integral)
    return int(_scaled_int(value, decimals, rounding))


def _check_raw(cls: type, raw: object, decimals: object) -> None:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise TypeError(f"{cls.__name__}.raw must be an int, got {type(raw).__name__}")
    if isinstance(decimals, bool) or not isinstance(decimals, int):
        raise TypeError(f"{cls.__name__}.decimals must be an int, got {type(decimals).__name__}")
    if not 0 <= decimals <= MAX_DECIMALS:
        raise ValueError(f"{cls.__name__}.decimals must be in [0, {MAX_DECIMALS}], got {decimals}")


@dataclass(frozen=True, slots=True)
class _Fixed:
    """An integer with its scale: the value is raw / 10**decimals."""

    raw: int
    decimals: int

    def __post_init__(self) -> None:
        _check_raw(type(self), self.raw, self.decimals)

    @classmethod
    def trusted(cls, raw: int, decimals: int) -> Self:
        """Trusted: the caller has validated. Builds the value without `__post_init__`'s checks.

        For venue adapters building thousands of values per read from integers they decoded
        themselves (`raw` an int, `decimals` an int in [0, MAX_DECIMALS]); the result equals,
        hashes and behaves exactly like `cls(raw, decimals)`. Anything else must use `cls(...)`.
        """
        obj: Any = _new(_FixedFields)
        obj.raw = raw
        obj.decimals = decimals
        obj.__class__ = cls
        return obj  # type: ignore[no-any-return]  # (typing.cast costs a call)

    @classmethod
    def from_value_exact(cls, value: str | int | Decimal, decimals: int) -> Self:
        """From a human value ("2.5"); raises ValueError if it needs rounding."""
        return cls(_to_raw(parse_decimal(value), decimals, None), decimals)

    @classmethod
    def from_value_floor(cls, value: str | int | Decimal, decimals: int) -> Self:
        """From a human value, rounded toward minus infinity to `decimals` places."""
        return cls(_to_raw(parse_decimal(value), decimals, ROUND_FLOOR), decimals)

    @classmethod
    def from_value_ceil(cls, value: str | int | Decimal, decimals: int) -> Self:
        """From a human value, rounded toward plus infinity to `decimals` places."""
        return cls(_to_raw(parse_decimal(value), decimals, ROUND_CEILING), decimals)

    @property
    def value(self) -> Decimal:
        """The exact human value (raw / 10**decimals)."""
        return Decimal(self.raw).scaleb(-self.decimals, CONTEXT)

    def rescale_floor(self, decimals: int) -> Self:
        """The same value at another scale, rounded toward minus infinity."""
        return type(self)(_to_raw(self.value, decimals, ROUND_FLOOR), decimals)

    def rescale_ceil(self, decimals: int) -> Self:
        """The same value at another scale, rounded toward plus infinity."""
        return type(self)(_to_raw(self.value, decimals, ROUND_CEILING), decimals)

    def _same_scale(self, other: object, op: str) -> int:
        if type(other) is not type(self):
            raise TypeError(
                f"unsupported operand types for {op}: "
                f"{type(self).__name__} and {type(other).__name__}"
            )
        assert isinstance(other, _Fixed)
        if other.decimals != self.decimals:
            raise TypeError(
                f"cannot mix {type(self).__name__} scales for {op}: "
                f"{self.decimals} and {other.decimals} decimals"
            )
        return other.raw

    def __lt__(self, other: Self) -> bool:
        return self.raw < self._same_scale(other, "<")

    def __le__(self, other: Self) -> bool:
        return self.raw <= self._same_scale(other, "<=")

    def __gt__(self, other: Self) -> bool:
        return self.raw > self._same_scale(other, ">")

    def __ge__(self, other: Self) -> bool:
        return self.raw >= self._same_scale(other, ">=")

    def __str__(self) -> str:
        return format(self.value, "f")


class _FixedFields:
    """`_Fixed`'s slots in a plain, settable class, for `_Fixed.trusted`.

    `trusted` fills one in and assigns the value type to its `__class__`: the layouts are the
    same (the same slots, in order, on `object`), which is what CPython requires of a
    `__class__` assignment (it raises TypeError otherwise, it never half-works). The result is
    an ordinary frozen instance of the value type, made without `__init__`, `__post_init__` or
    the frozen `__setattr__` (about twice as fast as setting the slots through descriptors).
    """

    __slots__ = _Fixed.__slots__


VALUE_SLOTS: type = _FixedFields
"""`_Fixed.trusted` inlined, for an adapter's innermost loop only (one function call less per
value, five per position): `v = object.__new__(VALUE_SLOTS); v.raw = raw; v.decimals =
decimals; v.__class__ = TokenAmount` is `TokenAmount.trusted(raw, decimals)`, under the same
conditions (`raw` an int, `decimals` an int in [0, MAX_DECIMALS]); likewise Price and Usd."""

_new = object.__new__


@dataclass(frozen=True, slots=True)
class _Amount(_Fixed):
    """A fixed-point amount that adds and subtracts within its own type and scale."""

    def __add__(self, other: Self) -> Self:
        return type(self)(self.raw + self._same_scale(other, "+"), self.decimals)

    def __sub__(self, other: Self) -> Self:
        return type(self)(self.raw - self._same_scale(other, "-"), self.decimals)

    def __neg__(self) -> Self:
        return type(self)(-self.raw, self.decimals)

    def __abs__(self) -> Self:
        return type(self)(abs(self.raw), self.decimals)

    def __bool__(self) -> bool:
        return self.raw != 0

    def zero(self) -> Self:
        """Zero at this amount's type and scale."""
        return type(self)(0, self.decimals)

    def min(self, other: Self) -> Self:
        """The smaller of two amounts of one scale."""
        return self if self <= other else other

    def max(self, other: Self) -> Self:
        """The larger of two amounts of one scale."""
        return self if self >= other else other

    def mul_floor(self, ratio: Decimal) -> Self:
        """self * ratio, rounded toward minus infinity."""
        return type(self).from_value_floor(CONTEXT.multiply(self.value, ratio), self.decimals)

    def mul_ceil(self, ratio: Decimal) -> Self:
        """self * ratio, rounded toward plus infinity."""
        return type(self).from_value_ceil(CONTEXT.multiply(self.value, ratio), self.decimals)


@dataclass(frozen=True, slots=True)
class TokenAmount(_Amount):
    """An amount of a token in its smallest unit (USDC: decimals=6, WETH: decimals=18)."""

    def to_usd_floor(self, price: Price, usd_decimals: int) -> Usd:
        """The USD value at `price`, rounded toward minus infinity."""
        return Usd.from_value_floor(price.times(self.value), usd_decimals)

    def to_usd_ceil(self, price: Price, usd_decimals: int) -> Usd:
        """The USD value at `price`, rounded toward plus infinity."""
        return Usd.from_value_ceil(price.times(self.value), usd_decimals)


@dataclass(frozen=True, slots=True)
class Usd(_Amount):
    """A USD amount at a venue's precision (reference exchange: 6 decimals, GMX: 30)."""

    def to_tokens_floor(self, price: Price, token_decimals: int) -> TokenAmount:
        """How many tokens this buys at `price`, rounded toward minus infinity."""
        return TokenAmount(
            _to_raw(div_floor(self.value, price.positive_value()), token_decimals, ROUND_FLOOR),
            token_decimals,
        )

    def to_tokens_ceil(self, price: Price, token_decimals: int) -> TokenAmount:
        """How many tokens it takes to be worth this at `price`, rounded toward plus infinity."""
        return TokenAmount(
            _to_raw(div_ceil(self.value, price.positive_value()), token_decimals, ROUND_CEILING),
            token_decimals,
        )


@dataclass(frozen=True, slots=True)
class Price(_Fixed):
    """USD per whole token: raw / 10**decimals."""

    @classmethod
    def gmx(cls, raw: int, token_decimals: int) -> Price:
        """A GMX price: USD (1e30) per smallest token unit, i.e. 10**(30 - token_decimals)."""
        return cls(raw, 30 - token_decimals)

    def times(self, tokens: Decimal) -> Decimal:
        """tokens * price in whole USD, exactly (raises decimal.Inexact past 120 digits)."""
        return EXACT.multiply(tokens, self.value)

    def positive_value(self) -> Decimal:
        """The value, which must be positive (for dividing by a price)."""
        if self.raw <= 0:
            raise ValueError(f"price must be positive, got {self}")
        return self.value
