"""Binance symbol filters as exact pre-trade checks, on the recorded exchangeInfo."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from trading_engine.core.errors import ConfigError, UnreadableAnswer
from trading_engine.core.instruments import Instrument
from trading_engine.core.orders import Order, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.venues.binance import BinanceSpotCodec, HmacSha256Signer
from trading_engine.venues.binance.filters import (
    FILTER_REASONS,
    SymbolFilters,
    parse_symbol_filters,
)
from trading_engine.venues.binance.instruments import parse_exchange_info
from trading_engine.venues.binance.order_api import BinanceOrderDialect

DATA = Path(__file__).resolve().parents[2] / "data" / "venues" / "binance"
BODY = (DATA / "exchange_info.json").read_bytes()
BTC = Instrument("BTCUSDT", "0.01", "0.00001")
BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET


def recorded() -> SymbolFilters:
    # BTCUSDT (recorded 2021-10-12): PRICE_FILTER 0.01..1000000 tick 0.01; PERCENT_PRICE
    # 0.2..5; LOT_SIZE 0.00001..9000 step 0.00001; MIN_NOTIONAL 10 (applyToMarket);
    # MARKET_LOT_SIZE up to 100.05381873; MAX_NUM_ORDERS 200.
    return parse_symbol_filters(BODY, {"BTCUSDT": BTC})["BTCUSDT"]


def check(filters: SymbolFilters, reason: str | None, *args: Any, **options: Any) -> None:
    assert filters.check(*args, **options) == reason
    assert reason is None or reason in FILTER_REASONS


def test_the_recorded_symbol_passes_a_plain_order() -> None:
    filters = recorded()
    assert (filters.base_asset, filters.quote_asset, filters.status) == ("BTC", "USDT", "TRADING")
    check(filters, None, BUY, LIMIT, 100_000, 5_000_000)  # 1 BTC at 50,000.00
    check(filters, None, SELL, MARKET, 100_000, None, reference_price=5_000_000)


@pytest.mark.parametrize(
    ("lots", "price", "reason"),
    [
        (1, 100_000_000, None),  # the smallest quantity, at the highest price
        (1, 100_000_001, "price_filter_max"),  # 1,000,000.01
        (900_000_000, 2, None),  # the largest quantity: 9000 BTC at 0.02 (180 USDT)
        (900_000_001, 2, "lot_size_max"),
        (0, 1_000_000, "lot_size_min"),
        (1, 99_999, "min_notional"),  # 0.00001 * 999.99 = 0.0099999 < 10
        (100_000, 999, "min_notional"),  # 1 BTC at 9.99
        (100_000, 1_000, None),  # 1 BTC at 10.00: exactly the minimum notional
    ],
)
def test_limit_orders_at_each_boundary(lots: int, price: int, reason: str | None) -> None:
    check(recorded(), reason, BUY, LIMIT, lots, price)


def test_the_percent_band_needs_a_reference_price() -> None:
    filters = recorded()
    # Reference 100.00: the band is [20.00, 500.00], both ends included.
    for price, reason in (
        (2_000, None),
        (1_999, "percent_price_down"),
        (50_000, None),
        (50_001, "percent_price_up"),
    ):
        check(filters, reason, BUY, LIMIT, 100_000, price, reference_price=10_000)
    # A reference between ticks is exact: 0.2 * 100.005 = 20.001, so 20.00 is below it.
    between = Fraction(20_001, 2)
    check(filters, "percent_price_down", BUY, LIMIT, 100_000, 2_000, reference_price=between)
    # Without a reference the venue's own check decides.
    check(filters, None, BUY, LIMIT, 100_000, 1_000)


def test_market_orders_use_the_market_lot_size_and_the_reference_notional() -> None:
    filters = recorded()
    check(filters, None, SELL, MARKET, 10_005_381, None)  # 100.05381 BTC
    check(filters, "market_lot_size_max", SELL, MARKET, 10_005_382, None)  # 100.05382
    # applyToMarket: the notional at the reference price counts.
    check(filters, "min_notional", SELL, MARKET, 1, None, reference_price=5_000_000)
    check(filters, None, SELL, MARKET, 1, None)


def test_open_orders_are_bounded_by_max_num_orders() -> None:
    filters = recorded()
    check(filters, None, BUY, LIMIT, 100_000, 5_000_000, open_orders=199)
    check(filters, "max_num_orders", BUY, LIMIT, 100_000, 5_000_000, open_orders=200)


def test_a_grid_finer_than_the_venues_is_checked_against_the_venues_step() -> None:
    # The engine's tick 0.001 is finer than Binance's 0.01: 50,000.005 is off the venue's tick.
    fine = Instrument("BTCUSDT", "0.001", "0.000001")
    filters = parse_symbol_filters(BODY, {"BTCUSDT": fine})["BTCUSDT"]
    check(filters, "price_filter_tick", BUY, LIMIT, 1_000_000, 50_000_005)
    check(filters, None, BUY, LIMIT, 1_000_000, 50_000_010)
    check(filters, "lot_size_step", BUY, LIMIT, 1_000_005, 50_000_010)  # 1.000005 BTC
    check(filters, "lot_size_min", BUY, LIMIT, 9, 50_000_010)  # 0.000009 BTC


def entry(*filters: dict[str, Any], **fields: Any) -> bytes:
    symbol = {
        "symbol": "XYZUSDT",
        "status": "TRADING",
        "baseAsset": "XYZ",
        "quoteAsset": "USDT",
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "filters": list(filters),
        **fields,
    }
    return json.dumps({"symbols": [symbol]}).encode()


XYZ = Instrument("XYZUSDT", "0.01", "0.01")


def xyz(*filters: dict[str, Any], **fields: Any) -> SymbolFilters:
    return parse_symbol_filters(entry(*filters, **fields), {"XYZUSDT": XYZ})["XYZUSDT"]


def test_the_notional_filter_has_a_floor_and_a_ceiling() -> None:
    # Binance's "Filters" page example of NOTIONAL.
    filters = xyz(
        {
            "filterType": "NOTIONAL",
            "minNotional": "10.00000000",
            "applyMinToMarket": False,
            "maxNotional": "10000.00000000",
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        }
    )
    check(filters, "notional_min", BUY, LIMIT, 100, 999)  # 1 at 9.99
    check(filters, None, BUY, LIMIT, 100, 1_000)
    check(filters, None, BUY, LIMIT, 100, 1_000_000)  # 1 at 10,000.00
    check(filters, "notional_max", BUY, LIMIT, 100, 1_000_001)
    # Neither bound applies to market orders here.
    check(filters, None, BUY, MARKET, 1, None, reference_price=100)
    check(filters, None, BUY, MARKET, 10**9, None, reference_price=10**6)


def test_the_percent_band_by_side() -> None:
    # Binance's "Filters" page example of PERCENT_PRICE_BY_SIDE.
    filters = xyz(
        {
            "filterType": "PERCENT_PRICE_BY_SIDE",
            "bidMultiplierUp": "1.2",
            "bidMultiplierDown": "0.2",
            "askMultiplierUp": "5",
            "askMultiplierDown": "0.8",
            "avgPriceMins": 1,
        }
    )
    reference = 10_000  # 100.00
    check(filters, None, BUY, LIMIT, 1, 12_000, reference_price=reference)
    check(filters, "percent_price_by_side_up", BUY, LIMIT, 1, 12_001, reference_price=reference)
    check(filters, "percent_price_by_side_down", BUY, LIMIT, 1, 1_999, reference_price=reference)
    check(filters, "percent_price_by_side_down", SELL, LIMIT, 1, 7_999, reference_price=reference)
    check(filters, None, SELL, LIMIT, 1, 50_000, reference_price=reference)


def test_the_symbol_status_and_order_types() -> None:
    check(xyz(status="BREAK"), "symbol_not_trading", BUY, LIMIT, 1, 1)
    no_maker = xyz(orderTypes=["LIMIT", "MARKET"])
    check(no_maker, "order_type_not_allowed", BUY, LIMIT, 1, 1, post_only=True)
    check(no_maker, None, BUY, LIMIT, 1, 1)
    check(xyz(orderTypes=["LIMIT"]), "order_type_not_allowed", BUY, MARKET, 1, None)


def test_zero_switches_a_price_rule_off() -> None:
    filters = xyz(
        {"filterType": "PRICE_FILTER", "minPrice": "0", "maxPrice": "0", "tickSize": "0.05"}
    )
    check(filters, None, BUY, LIMIT, 1, 10**12)
    check(filters, "price_filter_tick", BUY, LIMIT, 1, 101)
    check(filters, None, BUY, LIMIT, 1, 105)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"filterType": "LOT_SIZE", "minQty": "1e-5", "maxQty": "1", "stepSize": "1"}, "minQty"),
        ({"filterType": "LOT_SIZE", "minQty": "-1", "maxQty": "1", "stepSize": "1"}, "minQty"),
        ({"filterType": "PRICE_FILTER", "tickSize": 0.01}, "tickSize"),
        ({"filterType": "MAX_NUM_ORDERS", "maxNumOrders": "200"}, "maxNumOrders"),
        ({"filterType": "NOTIONAL", "minNotional": "1", "applyMinToMarket": "yes"}, "apply"),
        ({"filterType": "PERCENT_PRICE", "multiplierUp": "5"}, "multiplierDown"),
    ],
)
def test_unreadable_filters_name_the_symbol_and_field(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(UnreadableAnswer, match=f"XYZUSDT .*{message}"):
        xyz(bad)


def test_one_reader_serves_the_instruments_command_and_the_checks() -> None:
    (instrument,) = parse_exchange_info(BODY, ["BTCUSDT"])
    assert (instrument.tick_size, instrument.lot_size, instrument.min_notional) == (
        "0.01",
        "0.00001",
        "10",
    )
    assert (instrument.base_asset, instrument.quote_asset) == ("BTC", "USDT")
    with pytest.raises(UnreadableAnswer, match="does not list"):
        parse_symbol_filters(BODY, {"DOGEUSDT": BTC})


def test_bounds_between_grid_points_round_the_safe_way() -> None:
    # 0.015 is between two lots (and two ticks) of 0.01: 1 is below it, 2 above; 0.035 leaves 3.
    filters = xyz(
        {"filterType": "PRICE_FILTER", "minPrice": "0.015", "maxPrice": "0.035", "tickSize": "0"},
        {"filterType": "LOT_SIZE", "minQty": "0.015", "maxQty": "0.035", "stepSize": "0.005"},
    )
    check(filters, "lot_size_min", BUY, LIMIT, 1, 2)
    check(filters, None, BUY, LIMIT, 2, 2)
    check(filters, None, BUY, LIMIT, 3, 3)
    check(filters, "lot_size_max", BUY, LIMIT, 4, 3)
    check(filters, "price_filter_min", BUY, LIMIT, 2, 1)
    check(filters, "price_filter_max", BUY, LIMIT, 2, 4)


def test_the_order_dialect_takes_the_venues_assets_and_refuses_contradicting_ones() -> None:
    codec = BinanceSpotCodec("key", HmacSha256Signer("secret"), {"BTCUSDT": BTC})
    dialect = BinanceOrderDialect(codec, "key")
    made = Order("c-1", "s", "BTCUSDT", Side.BUY, OrderType.LIMIT, 1, 100, TimeInForce.GTC)
    assert dialect.rule_refusal(made, None, None) == "venue_rules_unknown"
    dialect.load_rules(BODY)
    assert (codec.base_assets, codec.quote_assets) == ({"BTCUSDT": "BTC"}, {"BTCUSDT": "USDT"})
    # 1 lot of 0.00001 at 1.00: below the recorded MIN_NOTIONAL of 10.
    assert dialect.rule_refusal(made, None, None) == "min_notional"
    wrong = BinanceSpotCodec(
        "key", HmacSha256Signer("secret"), {"BTCUSDT": BTC}, quote_assets={"BTCUSDT": "EUR"}
    )
    with pytest.raises(
        ConfigError, match=r"^instruments\[BTCUSDT\]\.quote_asset: .* 'USDT', .* says 'EUR'"
    ):
        BinanceOrderDialect(wrong, "key").load_rules(BODY)


def test_the_dialects_cached_verdicts_equal_the_full_check() -> None:
    """The order dialect caches a limit order's verdict on the filters that depend
    on the order alone; with the market-bound ones added, it is the full check's."""
    import random

    codec = BinanceSpotCodec("key", HmacSha256Signer("secret"), {"BTCUSDT": BTC})
    dialect = BinanceOrderDialect(codec, "key")
    dialect.load_rules(BODY)
    filters = parse_symbol_filters(BODY, {"BTCUSDT": BTC})["BTCUSDT"]
    rng = random.Random(3)
    reasons = set()
    for i in range(5000):
        side = rng.choice([Side.BUY, Side.SELL])
        made = Order(
            f"c-{i}", "s", "BTCUSDT", side, OrderType.LIMIT, rng.choice([1, 100, 10**5, 10**9]),
            rng.choice([1, 99, 2_000_000, 3_000_000, 10**9]), TimeInForce.GTC,
        )  # fmt: skip
        made.post_only = rng.random() < 0.5
        reference = rng.choice([None, 3_000_000, Fraction(6_000_001, 2), 500_000])
        count = rng.choice([None, 0, 199, 200])
        expected = filters.check(
            side, OrderType.LIMIT, made.quantity, made.price, post_only=made.post_only,
            reference_price=reference, open_orders=count,
        )  # fmt: skip
        assert dialect.rule_refusal(made, reference, count) == expected
        reasons.add(expected)
    assert len(reasons) >= 5  # the cases reach several filters, and passing orders


def test_an_order_checked_then_sent_has_the_body_the_codec_alone_writes() -> None:
    """The dialect hands the shape it found checking an order to the order's
    request: the body is the codec's own for that order, and never another
    order's (checks and sends interleaved, refused orders included)."""
    import random

    from trading_engine.venues.binance.clock import VenueClock

    stamp_ns = 1_700_000_000_123 * 10**6
    codec = BinanceSpotCodec("key", HmacSha256Signer("secret"), {"BTCUSDT": BTC})
    dialect = BinanceOrderDialect(codec, "key", clock=VenueClock(None, wall_ns=lambda: stamp_ns))
    dialect.load_rules(BODY)
    rng = random.Random(5)
    orders = []
    sent = refused = 0
    for i in range(3000):
        made = Order(
            f"c-{i}", "s", "BTCUSDT", rng.choice([Side.BUY, Side.SELL]), OrderType.LIMIT,
            rng.choice([100, 10**5, 2 * 10**5]), rng.choice([99, 2_000_000, 3_000_000]),
            rng.choice([TimeInForce.GTC, TimeInForce.IOC]),
        )  # fmt: skip
        made.post_only = rng.random() < 0.3
        orders.append(made)
        if dialect.rule_refusal(made, rng.choice([None, 3_000_000]), None) is not None:
            refused += 1
        # Usually the order just checked; sometimes an earlier one, checked before.
        chosen = made if rng.random() < 0.7 else rng.choice(orders)
        body = dialect.new_order(chosen).body
        assert body == codec.new_order_body(chosen, stamp_ns // 10**6), chosen.client_order_id
        sent += 1
    assert refused > 100
    assert sent == 3000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price", 5_100_000),
        ("quantity", 200_000),
        ("side", Side.SELL),
        ("post_only", True),
        ("time_in_force", TimeInForce.IOC),
    ],
)
def test_an_order_changed_after_its_check_is_sent_as_it_is_and_spoils_no_other(
    field: str, value: object
) -> None:
    """The shape found by the check is used only while the order still has it;
    and a shape's fields are its own, never those of an order changed since."""
    from trading_engine.venues.binance.clock import VenueClock

    stamp_ns = 1_700_000_000_123 * 10**6
    codec = BinanceSpotCodec("key", HmacSha256Signer("secret"), {"BTCUSDT": BTC})
    dialect = BinanceOrderDialect(codec, "key", clock=VenueClock(None, wall_ns=lambda: stamp_ns))
    dialect.load_rules(BODY)

    def made(cid: str) -> Order:
        return Order(cid, "s", "BTCUSDT", BUY, LIMIT, 100_000, 5_000_000, TimeInForce.GTC)

    changed = made("c-1")  # its shape's fields not yet encoded
    assert dialect.rule_refusal(changed, None, None) is None
    setattr(changed, field, value)
    assert dialect.new_order(changed).body == codec.new_order_body(changed, stamp_ns // 10**6)
    later = made("c-2")  # the shape as it was checked
    assert dialect.rule_refusal(later, None, None) is None
    assert dialect.new_order(later).body == codec.new_order_body(later, stamp_ns // 10**6)
