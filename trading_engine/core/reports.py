"""Typed venue reports: what an answer says about an order or a fill.

Venue answers are parsed once, at the edge, into these two types; the
ledger (:mod:`trading_engine.core.ledger`) only ever sees them. Every field
is bounded when it is read: a status outside the exchange API, a number
with an exponent or more than 48 characters, more than ``10**15`` ticks or
lots, a price <= 0 on a filled quantity, a fill id that is not a
non-negative 64-bit integer. Such an answer raises
:class:`~trading_engine.core.errors.UnreadableAnswer`: it says nothing
about the order, which is then settled by reading it back.

:class:`OrderReport` is one order body (``POST``/``GET``/``DELETE
/orders``): the status, the cumulative filled lots and their average
price. :class:`FillReport` is one fill of the venue's fills log (or of the
in-process venue, without an id).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .errors import InvalidValue, UnreadableAnswer
from .fees import fee_to_units
from .instruments import Instrument
from .orders import OrderStatus, Price
from .protocol import Side

__all__ = [
    "MAX_FILL_ID",
    "VENUE_STATUSES",
    "FillReport",
    "OrderReport",
    "parse_fill",
    "parse_order_body",
]

#: The largest fill id taken (a non-negative 64-bit integer).
MAX_FILL_ID: Final = 2**63 - 1
#: Longest venue order id and reason text kept.
_MAX_ID: Final = 64
_MAX_REASON: Final = 200

#: The statuses an order body may carry (the exchange API's five).
VENUE_STATUSES: Final[dict[str, OrderStatus]] = {
    status.value: status
    for status in (
        OrderStatus.NEW,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.REJECTED,
    )
}
_SIDES: Final[dict[str, Side]] = {side.value: side for side in Side}


class OrderReport:
    """What one order answer says: status, cumulative fill and its average.

    ``filled_lots`` is the venue's cumulative filled quantity in lots;
    ``avg_price`` their average in ticks (an ``int`` on the grid, an exact
    Fraction between ticks) or None when the answer carries none or
    nothing has filled.
    """

    __slots__ = (
        "avg_price",
        "client_order_id",
        "exchange_order_id",
        "filled_lots",
        "reason",
        "status",
    )

    def __init__(
        self,
        client_order_id: str,
        status: OrderStatus,
        filled_lots: int,
        avg_price: Price | None = None,
        exchange_order_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.client_order_id = client_order_id
        self.status = status
        self.filled_lots = filled_lots
        self.avg_price = avg_price
        self.exchange_order_id = exchange_order_id
        self.reason = reason

    def __repr__(self) -> str:
        return (
            f"OrderReport({self.client_order_id!r}, {self.status.value}, "
            f"filled={self.filled_lots}, avg={self.avg_price})"
        )


class FillReport:
    """One fill: ``lots`` at ``price`` ticks for an order.

    ``fill_id`` is the venue's id in its fills log (each counts at most
    once), None from the in-process venue. ``symbol`` and ``side`` are
    what the venue said (None when the source does not say). ``fee`` is
    the fee the venue charged for it, in tick*lot units (negative: a
    rebate), or None when the venue does not say: the engine then
    computes it from the configured rates.
    """

    __slots__ = (
        "client_order_id",
        "fee",
        "fee_asset",
        "fill_id",
        "lots",
        "price",
        "side",
        "symbol",
        "venue_fee",
    )

    def __init__(
        self,
        client_order_id: str,
        price: int,
        lots: int,
        fill_id: int | None = None,
        symbol: str | None = None,
        side: Side | None = None,
        fee: int | None = None,
    ) -> None:
        self.client_order_id = client_order_id
        self.price = price
        self.lots = lots
        self.fill_id = fill_id
        self.symbol = symbol
        self.side = side
        self.fee = fee
        #: The venue's fee as it wrote it (a decimal string) and its asset, when it
        #: says one. ``fee`` None with a ``fee_asset``: the fee could not be valued
        #: (an asset without a price): no rate is charged instead.
        self.venue_fee: str | None = None
        self.fee_asset: str | None = None

    def __repr__(self) -> str:
        return (
            f"FillReport({self.client_order_id!r}, {self.lots} lots @ {self.price} ticks, "
            f"id={self.fill_id})"
        )


def _text(body: Mapping[str, object], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if type(value) is not str:
        raise UnreadableAnswer(f"{key} is not a string: {value!r}"[:200])
    return value[:limit]


def parse_order_body(
    body: object, instrument: Instrument, client_order_id: str | None = None
) -> OrderReport:
    """Read one order body (a decoded JSON object) into an :class:`OrderReport`.

    ``client_order_id``, when given, must match the body's (when the body
    carries one). Raises :class:`UnreadableAnswer` naming the field for
    anything outside the exchange API or its bounds. ``O(len(body))``.
    """
    if not isinstance(body, dict):
        raise UnreadableAnswer("the answer is not a JSON object")
    status_text = body.get("status")
    status = VENUE_STATUSES.get(status_text) if type(status_text) is str else None
    if status is None:
        raise UnreadableAnswer(f"status {status_text!r} is not one of the API's")
    cid = body.get("client_order_id")
    if cid is None:
        cid = client_order_id
    elif type(cid) is not str or (client_order_id is not None and cid != client_order_id):
        raise UnreadableAnswer(f"client_order_id {cid!r} is not the order's")
    if cid is None:
        raise UnreadableAnswer("client_order_id is missing")
    filled_text = body.get("filled_quantity")
    if type(filled_text) is not str:
        raise UnreadableAnswer(f"filled_quantity {filled_text!r} is not a decimal string")
    try:
        filled = instrument.size_to_lots(filled_text)
    except InvalidValue as exc:
        raise UnreadableAnswer(f"filled_quantity: {exc}") from None
    avg_text = body.get("avg_price")
    average: Price | None = None
    if avg_text is not None:
        if type(avg_text) is not str:
            raise UnreadableAnswer(f"avg_price {avg_text!r} is not a decimal string")
        if filled:
            try:
                average = instrument.average_to_ticks(avg_text)
            except InvalidValue as exc:
                raise UnreadableAnswer(f"avg_price: {exc}") from None
    return OrderReport(
        cid,
        status,
        filled,
        average,
        _text(body, "order_id", _MAX_ID),
        _text(body, "reason", _MAX_REASON),
    )


def parse_fill(body: object, instruments: Mapping[str, Instrument]) -> FillReport | None:
    """Read one entry of the fills log into a :class:`FillReport`.

    Returns None for a fill of a symbol this process does not trade (another
    client's or another shard's). Raises :class:`UnreadableAnswer` for an
    entry outside the API or its bounds (``fill_id`` not an integer in
    ``[0, 2**63)``, a price or quantity that is not a positive decimal
    string on the instrument's grid, a side that is not ``buy``/``sell``, a
    ``fee`` that is not a decimal string). ``fee`` is optional: the
    venue's charge for the fill in quote currency (negative: a rebate).
    """
    if not isinstance(body, dict):
        raise UnreadableAnswer("a fill is not a JSON object")
    fill_id = body.get("fill_id")
    if type(fill_id) is not int or not 0 <= fill_id <= MAX_FILL_ID:
        raise UnreadableAnswer(f"fill_id {fill_id!r} is not an integer in [0, 2**63)"[:200])
    cid = body.get("client_order_id")
    if type(cid) is not str:
        raise UnreadableAnswer(f"fill {fill_id}: client_order_id {cid!r} is not a string"[:200])
    symbol = body.get("symbol")
    instrument = instruments.get(symbol) if type(symbol) is str else None
    if instrument is None:
        return None
    side_text = body.get("side")
    side = _SIDES.get(side_text) if type(side_text) is str else None
    if side is None:
        raise UnreadableAnswer(f"fill {fill_id}: side {side_text!r}")
    price_text = body.get("price")
    size_text = body.get("quantity")
    if type(price_text) is not str or type(size_text) is not str:
        raise UnreadableAnswer(f"fill {fill_id}: price and quantity must be decimal strings")
    try:
        price = instrument.price_to_ticks(price_text)
        lots = instrument.size_to_lots(size_text)
    except InvalidValue as exc:
        raise UnreadableAnswer(f"fill {fill_id}: {exc}") from None
    if lots <= 0:
        raise UnreadableAnswer(f"fill {fill_id}: quantity {size_text!r}")
    fee_text = body.get("fee")
    fee: int | None = None
    if fee_text is not None:
        try:
            fee = fee_to_units(fee_text, instrument.tick_size, instrument.lot_size)
        except ValueError:
            raise UnreadableAnswer(f"fill {fill_id}: fee {fee_text!r}"[:200]) from None
    return FillReport(cid, price, lots, fill_id, instrument.symbol, side, fee)
