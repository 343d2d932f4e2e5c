from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading_engine import Instrument, InvalidValue
from trading_engine.core.instruments import MAX_UNITS, _plain_units, parse_decimal

BTC = Instrument("BTC-USD", "0.01", "0.001")


@pytest.mark.parametrize(
    ("value", "ticks"),
    [
        ("100.01", 10001),
        ("100.010", 10001),
        ("100", 10000),
        ("0.01", 1),
        (100.01, 10001),
        (100, 10000),
        (0.07, 7),
        (1e-2, 1),
        (123456.78, 12345678),
        (1e6, 100000000),
    ],
)
def test_price_to_ticks_is_exact(value: object, ticks: int) -> None:
    assert BTC.price_to_ticks(value) == ticks


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("100.001", "off_tick"),
        (100.001, "off_tick"),
        ("0", "zero"),
        ("0.00", "zero"),
        ("-1", "negative"),
        (-0.5, "negative"),
        ("NaN", "not_finite"),
        ("Infinity", "not_finite"),
        ("-inf", "not_finite"),
        (float("nan"), "not_finite"),
        (float("inf"), "not_finite"),
        ("1e5", "malformed"),
        ("+1", "malformed"),
        (" 1", "malformed"),
        ("1_000", "malformed"),
        ("١٢", "malformed"),  # Arabic-Indic digits: int() would take them
        ("1.", "malformed"),
        (".5", "malformed"),
        ("", "malformed"),
        (True, "malformed"),
        (None, "malformed"),
        ([1], "malformed"),
        ("9" * 60, "too_large"),
        ("1" + "0" * 20, "too_large"),
        (1e300, "too_large"),
    ],
)
def test_price_rejections_carry_a_reason(value: object, reason: str) -> None:
    with pytest.raises(InvalidValue) as info:
        BTC.price_to_ticks(value)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("value", "lots"),
    [("0", 0), ("-0", 0), ("1.5", 1500), ("0.001", 1), (2, 2000), (0.5, 500), (0.0, 0)],
)
def test_size_to_lots(value: object, lots: int) -> None:
    assert BTC.size_to_lots(value) == lots


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0.0001", "off_lot"),
        ("-1", "negative"),
        ("abc", "malformed"),
        (float("-inf"), "not_finite"),
    ],
)
def test_size_rejections(value: object, reason: str) -> None:
    with pytest.raises(InvalidValue) as info:
        BTC.size_to_lots(value)
    assert info.value.reason == reason


def test_coarse_and_odd_grids() -> None:
    half = Instrument("X", "0.5", "25")
    assert half.price_to_ticks("10.5") == 21
    assert half.format_price(21) == "10.5"
    with pytest.raises(InvalidValue):
        half.price_to_ticks("10.25")
    assert half.size_to_lots("50") == 2
    with pytest.raises(InvalidValue):
        half.size_to_lots("30")
    assert half.format_size(3) == "75"
    five = Instrument("Y", "0.05", "1")
    assert five.price_to_ticks("1.15") == 23
    with pytest.raises(InvalidValue):
        five.price_to_ticks("1.12")


@pytest.mark.parametrize("bad", ["0", "-0.01", "abc", "NaN", "Infinity", ""])
def test_instrument_rejects_bad_grids(bad: str) -> None:
    with pytest.raises(ValueError, match="tick_size"):
        Instrument("X", bad, "1")


def test_formatting_uses_the_instrument_precision() -> None:
    assert BTC.format_price(10001) == "100.01"
    assert BTC.format_price(1) == "0.01"
    assert BTC.format_size(1500) == "1.500"
    assert BTC.format_size(-1500) == "-1.500"
    assert BTC.price_decimal(10001) == Decimal("100.01")


def test_money_rendering_is_exact() -> None:
    # 1.5 BTC at 100.01 = 150.015 (ticks*lots = 10001 * 1500), rendered at 0.01.
    assert BTC.format_money(10001 * 1500, scale=3) == "150.015"
    assert BTC.format_money(10001 * 1500) == "150.01500"  # price and size decimals
    assert BTC.money_scale == 5
    assert BTC.format_money(10001 * 1500, scale=2) == "150.02"  # half to even at 0.01
    assert BTC.format_money(Fraction(1, 2), scale=6) == "0.000005"  # half of 0.01*0.001
    assert BTC.format_money(Fraction(1, 2)) == "0.00000"  # half to even at 0.00001
    assert BTC.format_money(-3, scale=2) == "0.00"  # no negative zero


@given(ticks=st.integers(min_value=1, max_value=MAX_UNITS))
def test_price_round_trip(ticks: int) -> None:
    assert BTC.price_to_ticks(BTC.format_price(ticks)) == ticks


@given(lots=st.integers(min_value=0, max_value=MAX_UNITS))
def test_size_round_trip(lots: int) -> None:
    assert BTC.size_to_lots(BTC.format_size(lots)) == lots


@given(ticks=st.integers(min_value=1, max_value=10**13))
def test_json_float_with_a_short_decimal_form_converts_exactly(ticks: int) -> None:
    text = BTC.format_price(ticks)
    as_float = float(text)
    if len(text.replace(".", "").lstrip("0")) <= 15:
        assert BTC.price_to_ticks(as_float) == ticks


@given(value=st.one_of(st.text(max_size=30), st.floats(), st.integers(), st.none()))
def test_parse_decimal_never_raises_anything_but_invalid_value(value: object) -> None:
    reason = None
    units = 0
    try:
        units = parse_decimal(value, 4)
    except InvalidValue as exc:
        reason = exc.reason
    assert reason in {None, "malformed", "not_finite", "too_large", "negative", "off_grid"}
    assert isinstance(units, int)
    assert units >= 0


@given(
    text=st.text(alphabet="0123456789.-+e ", max_size=22),
    scale=st.integers(min_value=0, max_value=8),
)
def test_digit_loop_agrees_with_decimal(text: str, scale: int) -> None:
    """The one-pass digit loop takes only plain decimals, and reads them exactly."""
    units = _plain_units(text, scale)
    if units < 0:
        return  # the full parser decides
    assert re.fullmatch(r"[0-9]+(\.[0-9]+)?", text)
    assert units == Decimal(text) * 10**scale
    assert parse_decimal(text, scale) == units


@given(
    text=st.one_of(
        st.text(alphabet="0123456789.-+e ", max_size=22),
        st.integers(min_value=0, max_value=10**17).map(str),
        st.integers(min_value=0, max_value=10**8).map(lambda n: f"{n / 1000:.3f}"),
    ),
    tick=st.sampled_from(["0.01", "0.05", "1", "0.0001", "25"]),
)
def test_a_files_fast_path_agrees_with_the_full_conversion(text: str, tick: str) -> None:
    """``plain_price_ticks``/``plain_size_lots`` give the full path's value, or -1."""
    inst = Instrument("X", tick, tick)
    for fast, full in (
        (inst.plain_price_ticks, inst.price_to_ticks),
        (inst.plain_size_lots, inst.size_to_lots),
    ):
        got = fast(text.encode())
        try:
            expected = full(text)
        except InvalidValue:
            assert got == -1
        else:
            assert got in (expected, -1)
            places = len(tick.partition(".")[2])
            if re.fullmatch(rf"[0-9]{{1,9}}(\.[0-9]{{1,{max(places, 1)}}})?", text) and (
                places or "." not in text
            ):
                assert got == expected  # a plain short decimal on the grid is decided here
