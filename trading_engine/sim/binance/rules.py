"""A simulated Binance symbol: its exchangeInfo entry, its filters, its number formats.

Pure: no I/O, no clock. Every amount is a :class:`~decimal.Decimal` taken
from the wire's decimal strings, or an ``int`` of ticks or lots of the
symbol's :class:`~trading_engine.core.instruments.Instrument`; never a float.

The filters are the venue's, checked in the venue's words (``Filter
failure: PRICE_FILTER`` and so on):

* ``PRICE_FILTER``: ``minPrice <= price <= maxPrice`` and ``price`` a
  multiple of ``tickSize`` (the instrument's tick);
* ``LOT_SIZE`` (``MARKET_LOT_SIZE`` for market orders): ``minQty <=
  quantity <= maxQty`` and a multiple of ``stepSize`` (the instrument's lot);
* ``NOTIONAL``: ``price * quantity`` at least ``minNotional`` (for market
  orders, with the reference price, since ``applyMinToMarket``) and at most
  ``maxNotional`` (limit orders only: ``applyMaxToMarket`` is false);
* ``PERCENT_PRICE_BY_SIDE``: a buy's price within ``[bidMultiplierDown,
  bidMultiplierUp]`` times the reference price, a sell's within the ask
  multipliers. The venue's reference is the average trade price over
  ``avgPriceMins``; the simulator has no trades of its own, so it uses the
  mid of its book at the time of the order;
* ``MAX_NUM_ORDERS``: at most ``maxNumOrders`` open orders on the symbol.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from ...core.instruments import Instrument

__all__ = [
    "QUOTE_ASSETS",
    "WIRE_PATTERN",
    "FilterFailure",
    "SymbolRules",
    "SymbolSettings",
    "parse_wire_decimal",
    "split_assets",
    "wire",
]

#: Quote assets recognised at the end of a symbol written without a
#: separator (``BTCUSDT``), longest first.
QUOTE_ASSETS: Final = (
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "DAI", "EUR", "GBP", "TRY", "BRL",
    "JPY", "USD", "BTC", "ETH", "BNB",
)  # fmt: skip

#: Decimals of every amount the venue writes (``"0.10000000"``).
WIRE_DECIMALS: Final = 8
#: A wire decimal as the venue accepts it (its own pattern in ``-1100`` answers).
WIRE_PATTERN: Final = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"


class FilterFailure(Exception):
    """An order fails one of the symbol's filters; ``args[0]`` is the filter's name."""


def split_assets(symbol: str) -> tuple[str, str]:
    """The (base, quote) assets of a symbol: ``BTC-USD`` and ``BTCUSDT`` give BTC and USD(T).

    A separator (``-``, ``/``, ``_``, ``.``) splits at its first occurrence;
    otherwise the longest known quote asset at the end is the quote; failing
    both, the last three characters are.
    """
    for separator in "-/_.":
        base, found, quote = symbol.partition(separator)
        if found and base and quote:
            return base, quote.replace(separator, "")
    for quote in sorted(QUOTE_ASSETS, key=len, reverse=True):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    if len(symbol) > 3:
        return symbol[:-3], symbol[-3:]
    return symbol, "USD"


def wire(value: Decimal, decimals: int = WIRE_DECIMALS) -> str:
    """``value`` as the venue writes amounts: fixed point, at least eight decimals."""
    exponent = value.as_tuple().exponent
    places = max(decimals, -exponent if isinstance(exponent, int) else 0)
    return f"{value:.{places}f}"


def parse_wire_decimal(text: str) -> Decimal | None:
    """A request's decimal parameter, or None when it is not of the venue's pattern."""
    if not text or len(text) > 41 or not all(c.isdigit() or c == "." for c in text):
        return None
    whole, dot, fraction = text.partition(".")
    if not whole or (dot and not fraction) or "." in fraction or len(whole) > 20:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern above leaves none
        return None


@dataclass(frozen=True)
class SymbolSettings:
    """What the configuration adds to an instrument's grid (all optional).

    ``min_quantity`` and ``min_notional`` are decimal strings (the
    configuration's ``[[instruments]]`` keys of the same names);
    ``maker_fee`` and ``taker_fee`` are commission rates as decimal fractions
    (``"0.001"`` is 0.1 %).
    """

    min_quantity: str | None = None
    min_notional: str | None = None
    maker_fee: str = "0"
    taker_fee: str = "0"


class SymbolRules:
    """One symbol as the venue lists and checks it.

    ``reference`` prices below are the mid of the simulator's book (see the
    module docstring). Filter checks are O(1).
    """

    #: The venue's usual band for ``PERCENT_PRICE_BY_SIDE`` (BTCUSDT's).
    BID_UP: Final = Decimal(5)
    BID_DOWN: Final = Decimal("0.2")
    ASK_UP: Final = Decimal(5)
    ASK_DOWN: Final = Decimal("0.2")
    AVG_PRICE_MINS: Final = 5

    def __init__(
        self,
        instrument: Instrument,
        settings: SymbolSettings | None = None,
        *,
        max_num_orders: int = 200,
        stp_mode: str = "EXPIRE_MAKER",
    ) -> None:
        settings = settings or SymbolSettings()
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.base_asset, self.quote_asset = split_assets(instrument.symbol)
        self.tick = Decimal(instrument.tick_size)
        self.step = Decimal(instrument.lot_size)
        self.min_price = self.tick
        self.max_price = self.tick * 10**9
        self.min_qty = Decimal(settings.min_quantity) if settings.min_quantity else self.step
        self.max_qty = self.step * 10**9
        self.min_notional = Decimal(settings.min_notional or 0)
        self.max_notional = Decimal(9_000_000)
        self.maker_rate = Decimal(settings.maker_fee)
        self.taker_rate = Decimal(settings.taker_fee)
        self.max_num_orders = max_num_orders
        self.stp_mode = stp_mode

    # -- exchangeInfo ------------------------------------------------------

    def exchange_info(self) -> dict[str, Any]:
        """The symbol's entry in ``GET /api/v3/exchangeInfo`` (the venue's field set)."""
        return {
            "symbol": self.symbol,
            "status": "TRADING",
            "baseAsset": self.base_asset,
            "baseAssetPrecision": WIRE_DECIMALS,
            "quoteAsset": self.quote_asset,
            "quotePrecision": WIRE_DECIMALS,
            "quoteAssetPrecision": WIRE_DECIMALS,
            "baseCommissionPrecision": WIRE_DECIMALS,
            "quoteCommissionPrecision": WIRE_DECIMALS,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "opoAllowed": False,
            "quoteOrderQtyMarketAllowed": False,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "amendAllowed": False,
            "pegInstructionsAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": wire(self.min_price),
                 "maxPrice": wire(self.max_price), "tickSize": wire(self.tick)},
                {"filterType": "LOT_SIZE", "minQty": wire(self.min_qty),
                 "maxQty": wire(self.max_qty), "stepSize": wire(self.step)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": wire(self.min_qty),
                 "maxQty": wire(self.max_qty), "stepSize": wire(self.step)},
                {"filterType": "NOTIONAL", "minNotional": wire(self.min_notional),
                 "applyMinToMarket": True, "maxNotional": wire(self.max_notional),
                 "applyMaxToMarket": False, "avgPriceMins": self.AVG_PRICE_MINS},
                {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": str(self.BID_UP),
                 "bidMultiplierDown": str(self.BID_DOWN), "askMultiplierUp": str(self.ASK_UP),
                 "askMultiplierDown": str(self.ASK_DOWN), "avgPriceMins": self.AVG_PRICE_MINS},
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": self.max_num_orders},
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": self.stp_mode,
            "allowedSelfTradePreventionModes": [
                "NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH",
            ],
        }  # fmt: skip

    # -- filters -----------------------------------------------------------

    def check(
        self,
        side: str,
        market: bool,
        price: Decimal | None,
        quantity: Decimal,
        reference: Decimal,
        open_orders: int,
    ) -> None:
        """Check a new order against the symbol's filters, in the venue's order.

        ``side`` is ``BUY`` or ``SELL``; ``price`` is None for a market
        order; ``reference`` is the reference price (the book's mid);
        ``open_orders`` counts the account's open orders on the symbol.
        Raises :class:`FilterFailure` naming the first filter that fails.
        """
        if price is not None:
            if price < self.min_price or price > self.max_price or price % self.tick:
                raise FilterFailure("PRICE_FILTER")
            if side == "BUY":
                low, high = self.BID_DOWN, self.BID_UP
            else:
                low, high = self.ASK_DOWN, self.ASK_UP
            if price > reference * high or price < reference * low:
                raise FilterFailure("PERCENT_PRICE_BY_SIDE")
        if quantity < self.min_qty or quantity > self.max_qty or quantity % self.step:
            raise FilterFailure("MARKET_LOT_SIZE" if market else "LOT_SIZE")
        notional = (reference if price is None else price) * quantity
        if notional < self.min_notional or (price is not None and notional > self.max_notional):
            raise FilterFailure("NOTIONAL")
        if open_orders >= self.max_num_orders:
            raise FilterFailure("MAX_NUM_ORDERS")

    # -- amounts -----------------------------------------------------------

    def price(self, ticks: int) -> Decimal:
        """``ticks`` as a price."""
        return self.instrument.price_decimal(ticks)

    def quantity(self, lots: int) -> Decimal:
        """``lots`` as a quantity of the base asset."""
        return self.instrument.size_decimal(lots)

    def quote(self, ticks_times_lots: int) -> Decimal:
        """An amount of the quote asset given as ticks times lots (a fill's cost), exactly."""
        return Decimal(self.instrument.format_money(ticks_times_lots))

    def commission(self, buyer: bool, maker: bool, lots: int, cost: int) -> tuple[Decimal, str]:
        """The commission of a fill of ``lots`` costing ``cost`` (ticks times lots), and its asset.

        A buyer pays in the base asset (a share of what it receives), a
        seller in the quote asset. Rounded half up to eight decimals.
        """
        rate = self.maker_rate if maker else self.taker_rate
        if buyer:
            amount, asset = self.quantity(lots) * rate, self.base_asset
        else:
            amount, asset = self.quote(cost) * rate, self.quote_asset
        return amount.quantize(Decimal(1).scaleb(-WIRE_DECIMALS), rounding="ROUND_HALF_UP"), asset
