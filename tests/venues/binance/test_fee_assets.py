"""Binance commissions in the quote, the base or a third asset: valued, or kept unconverted."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from tests.venues.binance.test_order_entry import (
    API_KEY,
    INSTRUMENTS,
    QUOTES,
    SECRET,
    fixture,
)
from trading_engine.core.reports import FillReport
from trading_engine.venues.binance.orders import BinanceSpotCodec
from trading_engine.venues.binance.signing import HmacSha256Signer

BASES = {"BTCUSDT": "BTC", "LTCBTC": "LTC", "BNBBTC": "BNB", "ETHBTC": "ETH"}


def codec(**options: Any) -> BinanceSpotCodec:
    return BinanceSpotCodec(
        API_KEY, HmacSha256Signer(SECRET), INSTRUMENTS, quote_assets=QUOTES, **options
    )


def trade(commission: str, asset: str) -> list[dict[str, Any]]:
    (entry,) = fixture("my_trades.json")  # BNBBTC: 12 BNB at 4.000001 BTC
    return [{**entry, "commission": commission, "commissionAsset": asset}]


def fill_of(parsed: BinanceSpotCodec, commission: str, asset: str) -> FillReport:
    (fill,) = parsed.parse_my_trades(trade(commission, asset), "BNBBTC", {100234: "o1"}).fills
    return fill.report


def test_a_commission_in_the_quote_asset_is_the_exact_fee() -> None:
    report = fill_of(codec(base_assets=BASES), "0.00040000", "BTC")
    # 0.0004 BTC / (0.000001 * 0.01) = 40,000 tick*lot units.
    assert report.fee == 40_000
    assert (report.venue_fee, report.fee_asset) == ("0.00040000", "BTC")


def test_a_commission_in_the_base_asset_is_valued_at_the_fill_price_rounded_up() -> None:
    report = fill_of(codec(base_assets=BASES), "0.01500000", "BNB")
    # 0.015 BNB at 4,000,001 ticks of 0.000001 BTC = 0.060000015 BTC = 6,000,001.5
    # units of 0.000001 * 0.01: rounded up to 6,000,002 (a fee is never understated).
    assert report.fee == 6_000_002
    assert (report.venue_fee, report.fee_asset) == ("0.01500000", "BNB")


def test_a_commission_in_a_third_asset_uses_the_configured_price() -> None:
    parsed = codec(fee_conversion={"USDT/BTC": Fraction(1, 100_000)})
    report = fill_of(parsed, "1.50000000", "USDT")
    # 1.5 USDT at 0.00001 BTC = 0.000015 BTC = 1,500 units.
    assert report.fee == 1_500
    assert report.fee_asset == "USDT"


def test_a_commission_without_a_price_is_kept_unconverted() -> None:
    report = fill_of(codec(base_assets=BASES), "0.00300000", "USDT")
    assert report.fee is None
    assert (report.venue_fee, report.fee_asset) == ("0.00300000", "USDT")
