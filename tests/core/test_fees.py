"""Fee rates and their rounding: exact integers, never floats."""

from __future__ import annotations

from fractions import Fraction

import pytest

from trading_engine.core.fees import FeeSchedule, fee_to_units, parse_fee_rate


def test_rates_are_exact_fractions_of_their_decimal_strings() -> None:
    assert parse_fee_rate("0.0004") == Fraction(4, 10_000)
    assert parse_fee_rate("-0.0001") == Fraction(-1, 10_000)
    assert parse_fee_rate("0") == 0
    for bad in ("1e-4", "0.11", "-0.2", "nan", "inf", "", "0.0000000000000000001", "1/2"):
        with pytest.raises(ValueError, match=r"decimal|fee rate"):
            parse_fee_rate(bad)


def test_fees_round_up_toward_positive_infinity() -> None:
    schedule = FeeSchedule(Fraction(-1, 10_000), Fraction(5, 10_000))
    # Taker: 10001 ticks * 2 lots * 0.0005 = 10.001 -> 11.
    assert schedule.fee(10001, 2, 2) == 11
    # Maker rebate: 10001 * 2 * -0.0001 = -2.0002 -> -2 (never more rebate than earned).
    assert schedule.fee(10001, 2, 0) == -2
    # Exact amounts are not rounded.
    assert schedule.fee(10000, 2, 2) == 10
    # Mixed: each part rounded up on its own.
    assert schedule.fee(10001, 3, 1) == 6 + -2
    # An average between ticks: 30002/3 * 3 * 0.0005 = 15.001 -> 16.
    assert schedule.fee(Fraction(30002, 3), 3, 3) == 16
    assert isinstance(schedule.fee(Fraction(30002, 3), 3, 3), int)


def test_a_schedule_without_fees_charges_nothing() -> None:
    free = FeeSchedule(Fraction(0), Fraction(0))
    assert free.free
    assert free.fee(10**15, 10**15, 10**15) == 0


def test_venue_fees_convert_to_tick_lot_units_rounded_up() -> None:
    # tick 0.01 * lot 0.001 = 0.00001 a unit.
    assert fee_to_units("0.0003", "0.01", "0.001") == 30
    assert fee_to_units("0.000015", "0.01", "0.001") == 2
    assert fee_to_units("-0.000015", "0.01", "0.001") == -1
    assert fee_to_units("0.0003", "0.05", "0.01") == 1  # unit 0.0005
    for bad in ("1e-3", "", " 1", "+1", "1.", 0.5, None, "1234567890123456"):
        with pytest.raises(ValueError, match="is not a decimal string"):
            fee_to_units(bad, "0.01", "0.001")
