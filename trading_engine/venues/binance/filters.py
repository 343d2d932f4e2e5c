"""Binance spot symbol filters as exact pre-trade checks.

``GET /api/v3/exchangeInfo`` lists each symbol's filters; an order that
fails one is refused by the venue (``-1013`` "Filter failure: ..."). The
engine checks them before sending, so such an order is refused now with a
counted reason of its own instead of costing a request, a slot of the
venue's order-count budget and a venue refusal. The rules are Binance's
"Filters" page (https://developers.binance.com/docs/binance-spot-api-docs/filters),
read exactly:

* ``PRICE_FILTER``: ``minPrice <= price <= maxPrice`` and
  ``price % tickSize == 0``, each rule off at 0 (``price_filter_min``,
  ``price_filter_max``, ``price_filter_tick``);
* ``LOT_SIZE``: ``minQty <= quantity <= maxQty`` and
  ``quantity % stepSize == 0`` (``lot_size_min``, ``lot_size_max``,
  ``lot_size_step``);
* ``MARKET_LOT_SIZE``: the same for ``MARKET`` orders
  (``market_lot_size_min``, ``market_lot_size_max``, ``market_lot_size_step``);
* ``MIN_NOTIONAL``: ``price * quantity >= minNotional``, a ``MARKET`` order
  at the reference price when ``applyToMarket`` (``min_notional``);
* ``NOTIONAL``: ``minNotional <= price * quantity <= maxNotional``, a
  ``MARKET`` order at the reference price when ``applyMinToMarket`` /
  ``applyMaxToMarket`` (``notional_min``, ``notional_max``);
* ``PERCENT_PRICE``: ``reference * multiplierDown <= price <= reference *
  multiplierUp`` (``percent_price_down``, ``percent_price_up``);
* ``PERCENT_PRICE_BY_SIDE``: the same with the ``bid...`` multipliers for a
  buy and the ``ask...`` ones for a sell (``percent_price_by_side_down``,
  ``percent_price_by_side_up``);
* ``MAX_NUM_ORDERS``: the open orders on the symbol plus this one at most
  ``maxNumOrders`` (``max_num_orders``);

plus the symbol's ``status`` (``symbol_not_trading`` unless ``TRADING``) and
``orderTypes`` (``order_type_not_allowed``: ``LIMIT_MAKER`` for a post-only
order, ``LIMIT`` or ``MARKET``).

The venue measures the percent-price band and a market order's notional
against its own weighted average price over ``avgPriceMins``; the engine
has no such figure, so the caller gives a *reference price* (ticks, the
book's mid for instance). Without one those checks are skipped and the
venue's own check decides. Everything is integer arithmetic in ticks and
lots, the filters' decimals converted once, exactly: no float, no rounding
that could let an order through that the venue refuses, or refuse one it
takes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

from ...core.errors import UnreadableAnswer
from ...core.instruments import Instrument
from ...core.orders import OrderType, Price
from ...core.protocol import Side
from .instruments import filter_decimal, symbol_entries

__all__ = ["FILTER_REASONS", "SymbolFilters", "parse_symbol_filters"]

#: Every reason :meth:`SymbolFilters.check` gives (exported from 0 as counters).
FILTER_REASONS: Final = (
    "symbol_not_trading",
    "order_type_not_allowed",
    "price_filter_min",
    "price_filter_max",
    "price_filter_tick",
    "lot_size_min",
    "lot_size_max",
    "lot_size_step",
    "market_lot_size_min",
    "market_lot_size_max",
    "market_lot_size_step",
    "min_notional",
    "notional_min",
    "notional_max",
    "percent_price_down",
    "percent_price_up",
    "percent_price_by_side_down",
    "percent_price_by_side_up",
    "max_num_orders",
)


def _number(value: object, where: str) -> Fraction:
    """A filter's decimal string as an exact non-negative Fraction."""
    return Fraction(filter_decimal(value, where))


def _count(value: object, where: str) -> int:
    if type(value) is not int or not 0 <= value <= 10**9:
        raise UnreadableAnswer(f"binance exchangeInfo: {where} {value!r} is not a count")
    return value


def _flag(value: object, where: str) -> bool:
    if type(value) is not bool:
        raise UnreadableAnswer(f"binance exchangeInfo: {where} {value!r} is not true or false")
    return value


def _ceil(value: Fraction) -> int:
    return -(-value.numerator // value.denominator)


def _floor(value: Fraction) -> int:
    return value.numerator // value.denominator


class _Grid:
    """A quantity rule in the instrument's units: bounds in units, and the step as p/q.

    ``units * unit`` passes the step rule when ``units * p % q == 0`` where
    ``unit / step == p / q`` (q == 1 when the step divides the unit: always
    on the grid).
    """

    __slots__ = ("max", "min", "p", "q")

    def __init__(self, unit: Fraction, low: Fraction, high: Fraction, step: Fraction) -> None:
        # 0 switches a rule off (the venue's reading for each part).
        self.min = _ceil(low / unit) if low else None
        self.max = _floor(high / unit) if high else None
        ratio = unit / step if step else Fraction(0)
        self.p = ratio.numerator
        self.q = ratio.denominator if step else 1


class SymbolFilters:
    """One symbol's filters, converted to the engine instrument's ticks and lots.

    Built by :func:`parse_symbol_filters`; :meth:`check` is the pre-trade
    check. ``base_asset`` and ``quote_asset`` are the symbol's assets (a
    fill's commission is a fee in the quote currency only when it is paid
    in the quote asset).
    """

    __slots__ = (
        "_lots",
        "_market_lots",
        "_max_notional",
        "_max_notional_market",
        "_max_orders",
        "_min_notional",
        "_min_notional_market",
        "_min_notional_reason",
        "_percent",
        "_percent_by_side",
        "_prices",
        "_tick_lot",
        "base_asset",
        "order_types",
        "quote_asset",
        "status",
        "symbol",
    )

    def __init__(
        self,
        symbol: str,
        instrument: Instrument,
        entry: Mapping[str, Any],
        filters: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.symbol = symbol
        tick = Fraction(Decimal(instrument.tick_size))
        lot = Fraction(Decimal(instrument.lot_size))
        self._tick_lot = tick * lot
        status = entry.get("status")
        base, quote = entry.get("baseAsset"), entry.get("quoteAsset")
        if not isinstance(status, str) or not isinstance(base, str) or not isinstance(quote, str):
            raise UnreadableAnswer(f"binance exchangeInfo: {symbol}: status or assets missing")
        self.status = status
        self.base_asset = base
        self.quote_asset = quote
        types = entry.get("orderTypes", [])
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise UnreadableAnswer(f"binance exchangeInfo: {symbol}: orderTypes is not a list")
        self.order_types = frozenset(types)

        def grid(name: str, unit: Fraction, low: str, high: str, step: str) -> _Grid | None:
            item = filters.get(name)
            if item is None:
                return None
            where = f"{symbol} {name}"
            return _Grid(
                unit,
                _number(item.get(low, "0"), f"{where}.{low}"),
                _number(item.get(high, "0"), f"{where}.{high}"),
                _number(item.get(step, "0"), f"{where}.{step}"),
            )

        self._prices = grid("PRICE_FILTER", tick, "minPrice", "maxPrice", "tickSize")
        self._lots = grid("LOT_SIZE", lot, "minQty", "maxQty", "stepSize")
        self._market_lots = grid("MARKET_LOT_SIZE", lot, "minQty", "maxQty", "stepSize")
        # Notional bounds in tick*lot units: price ticks * lots compared with them.
        unit = self._tick_lot
        self._min_notional: int | None = None
        self._min_notional_market = False
        self._min_notional_reason = "min_notional"
        self._max_notional: int | None = None
        self._max_notional_market = False
        legacy = filters.get("MIN_NOTIONAL")
        if legacy is not None:
            where = f"{symbol} MIN_NOTIONAL"
            floor = _number(legacy.get("minNotional", "0"), f"{where}.minNotional")
            if floor:
                self._min_notional = _ceil(floor / unit)
                self._min_notional_market = _flag(
                    legacy.get("applyToMarket", True), f"{where}.applyToMarket"
                )
        notional = filters.get("NOTIONAL")
        if notional is not None:
            where = f"{symbol} NOTIONAL"
            floor = _number(notional.get("minNotional", "0"), f"{where}.minNotional")
            ceiling = _number(notional.get("maxNotional", "0"), f"{where}.maxNotional")
            if floor:
                # NOTIONAL replaced MIN_NOTIONAL: where both are listed it decides.
                self._min_notional = _ceil(floor / unit)
                self._min_notional_reason = "notional_min"
                self._min_notional_market = _flag(
                    notional.get("applyMinToMarket", False), f"{where}.applyMinToMarket"
                )
            if ceiling:
                self._max_notional = _floor(ceiling / unit)
                self._max_notional_market = _flag(
                    notional.get("applyMaxToMarket", False), f"{where}.applyMaxToMarket"
                )
        #: (down numerator, down denominator, up numerator, up denominator).
        self._percent: tuple[int, int, int, int] | None = None
        percent = filters.get("PERCENT_PRICE")
        if percent is not None:
            where = f"{symbol} PERCENT_PRICE"
            self._percent = _band(
                _number(percent.get("multiplierDown"), f"{where}.multiplierDown"),
                _number(percent.get("multiplierUp"), f"{where}.multiplierUp"),
            )
        self._percent_by_side: dict[Side, tuple[int, int, int, int]] | None = None
        by_side = filters.get("PERCENT_PRICE_BY_SIDE")
        if by_side is not None:
            where = f"{symbol} PERCENT_PRICE_BY_SIDE"
            self._percent_by_side = {
                Side.BUY: _band(
                    _number(by_side.get("bidMultiplierDown"), f"{where}.bidMultiplierDown"),
                    _number(by_side.get("bidMultiplierUp"), f"{where}.bidMultiplierUp"),
                ),
                Side.SELL: _band(
                    _number(by_side.get("askMultiplierDown"), f"{where}.askMultiplierDown"),
                    _number(by_side.get("askMultiplierUp"), f"{where}.askMultiplierUp"),
                ),
            }
        self._max_orders: int | None = None
        max_orders = filters.get("MAX_NUM_ORDERS")
        if max_orders is not None:
            self._max_orders = _count(
                max_orders.get("maxNumOrders"), f"{symbol} MAX_NUM_ORDERS.maxNumOrders"
            )

    def __repr__(self) -> str:
        return f"SymbolFilters({self.symbol!r}, {self.status})"

    def check(
        self,
        side: Side,
        order_type: OrderType,
        lots: int,
        price: int | None,
        *,
        post_only: bool = False,
        reference_price: Price | None = None,
        open_orders: int | None = None,
    ) -> str | None:
        """The first filter the order fails (a reason of :data:`FILTER_REASONS`), or None.

        ``lots`` and ``price`` (ticks, None for a market order) are the
        order's; ``reference_price`` (ticks, exact) stands for the venue's
        average price in the percent-price band and a market order's
        notional, which are skipped without it; ``open_orders`` is the
        account's open orders on the symbol, ``MAX_NUM_ORDERS`` skipped
        without it. ``O(1)``.
        """
        if self.status != "TRADING":
            return "symbol_not_trading"
        market = order_type is OrderType.MARKET
        venue_type = "MARKET" if market else "LIMIT_MAKER" if post_only else "LIMIT"
        if self.order_types and venue_type not in self.order_types:
            return "order_type_not_allowed"
        if not market:
            assert price is not None
            prices = self._prices
            if prices is not None:
                if prices.min is not None and price < prices.min:
                    return "price_filter_min"
                if prices.max is not None and price > prices.max:
                    return "price_filter_max"
                if price * prices.p % prices.q:
                    return "price_filter_tick"
        reason = _grid_reason(self._lots, lots, "lot_size")
        if reason is None and market:
            reason = _grid_reason(self._market_lots, lots, "market_lot_size")
        if reason is not None:
            return reason
        at: Price | None = reference_price if market else price
        if at is not None:
            notional = at * lots
            floor = self._min_notional
            if floor is not None and (not market or self._min_notional_market) and notional < floor:
                return self._min_notional_reason
            ceiling = self._max_notional
            if (
                ceiling is not None
                and (not market or self._max_notional_market)
                and notional > ceiling
            ):
                return "notional_max"
        if market:
            limit = self._max_orders
            if limit is not None and open_orders is not None and open_orders + 1 > limit:
                return "max_num_orders"
            return None
        assert price is not None
        return self.check_dynamic(side, price, reference_price, open_orders)

    def check_dynamic(
        self, side: Side, price: int, reference_price: Price | None, open_orders: int | None
    ) -> str | None:
        """The filters of a limit order at ``price`` ticks that move with the market:
        the percent-price bands against ``reference_price`` and ``MAX_NUM_ORDERS``
        against ``open_orders`` (each skipped when None). :meth:`check` runs
        them last; a caller that cached the rest of a limit order's verdict
        (it depends on the order alone) runs only these. ``O(1)``.
        """
        if reference_price is not None:
            # Integer cross-multiplication: price < reference * p / q, with
            # reference = n / d, is price * d * q < n * p (d, q > 0).
            if type(reference_price) is int:
                n, d = reference_price, 1
            else:
                n, d = reference_price.numerator, reference_price.denominator
            scaled = price * d
            band = self._percent
            if band is not None:
                low_p, low_q, high_p, high_q = band
                if scaled * low_q < n * low_p:
                    return "percent_price_down"
                if scaled * high_q > n * high_p:
                    return "percent_price_up"
            by_side = self._percent_by_side
            if by_side is not None:
                low_p, low_q, high_p, high_q = by_side[side]
                if scaled * low_q < n * low_p:
                    return "percent_price_by_side_down"
                if scaled * high_q > n * high_p:
                    return "percent_price_by_side_up"
        limit = self._max_orders
        if limit is not None and open_orders is not None and open_orders + 1 > limit:
            return "max_num_orders"
        return None


def _band(down: Fraction, up: Fraction) -> tuple[int, int, int, int]:
    return down.numerator, down.denominator, up.numerator, up.denominator


def _grid_reason(grid: _Grid | None, lots: int, name: str) -> str | None:
    if grid is None:
        return None
    if grid.min is not None and lots < grid.min:
        return f"{name}_min"
    if grid.max is not None and lots > grid.max:
        return f"{name}_max"
    if lots * grid.p % grid.q:
        return f"{name}_step"
    return None


def parse_symbol_filters(
    body: bytes, instruments: Mapping[str, Instrument], symbols: Sequence[str] | None = None
) -> dict[str, SymbolFilters]:
    """Each symbol's filters from an exchangeInfo body, keyed by venue symbol.

    ``instruments`` maps each venue symbol to the engine's instrument for it
    (its grid); ``symbols`` defaults to its keys. The same reader as the
    ``instruments`` command (:func:`.instruments.symbol_entries`). Raises
    :class:`~trading_engine.core.errors.UnreadableAnswer` naming the symbol
    and field for a filter that is not a decimal or count.
    """
    wanted = list(instruments) if symbols is None else list(symbols)
    return {
        symbol: SymbolFilters(symbol, instruments[symbol], entry, filters)
        for symbol, (entry, filters) in zip(wanted, symbol_entries(body, wanted), strict=True)
    }
