"""The market-data protocol: frame bytes to typed messages.

:class:`Decoder` turns one frame (a JSON object without its newline) into
a :class:`BookMessage`, :class:`Trade` or :class:`Heartbeat`, converting
every price and size to ticks and lots of the symbol's instrument, or into
a :class:`Rejected` carrying a :class:`Reason`. It never raises, whatever
the bytes: bad input is data, not an exception.

A rejection keeps the symbol and sequence number when they could be read,
because a bad frame that carries a book's next ``seq`` takes that sequence
number with it (the book builder then marks the book stale).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

import orjson

from .errors import InvalidValue
from .instruments import Instrument

__all__ = [
    "BookMessage",
    "Decoder",
    "Grid",
    "Heartbeat",
    "Message",
    "MessageType",
    "Reason",
    "Rejected",
    "Side",
    "Trade",
    "levels",
]

MAX_SEQ: Final = 2**63
#: Cache entries per instrument before the wire-string caches are reset.
_CACHE_LIMIT: Final = 65536


class MessageType(StrEnum):
    """The ``type`` of an accepted frame (a metric label)."""

    SNAPSHOT = "snapshot"
    UPDATE = "update"
    TRADE = "trade"
    HEARTBEAT = "heartbeat"


class Side(StrEnum):
    """A trade's aggressor side, or an order's side."""

    BUY = "buy"
    SELL = "sell"


class Reason(StrEnum):
    """Why a frame was ignored or rejected (a metric label)."""

    #: Not valid JSON (NaN and Infinity literals included).
    MALFORMED_JSON = "malformed_json"
    #: The bytes are not valid UTF-8.
    INVALID_UTF8 = "invalid_utf8"
    #: Longer than ``[feed] max_frame_bytes``; skipped to the next newline.
    OVERSIZED = "oversized"
    #: A missing or wrongly typed field, or a frame that is not an object.
    BAD_FIELD = "bad_field"
    #: ``type`` is a string but not a known message type.
    UNKNOWN_TYPE = "unknown_type"
    #: A price or size that is not a finite decimal number of sane magnitude.
    BAD_NUMBER = "bad_number"
    #: A price that is not a positive multiple of the tick size.
    OFF_TICK = "off_tick"
    #: A size that is negative, zero in a snapshot or trade, or off the lot grid.
    BAD_SIZE = "bad_size"
    #: The symbol is not configured.
    UNKNOWN_SYMBOL = "unknown_symbol"
    #: ``seq`` <= the book's last sequence: a duplicate or replay.
    DUPLICATE = "duplicate"
    #: ``seq`` > last + 1: messages were lost; the book is now stale.
    GAP = "gap"
    #: An update or trade before the symbol's first snapshot.
    BEFORE_SNAPSHOT = "before_snapshot"
    #: An update or trade for a stale book, ignored until a snapshot.
    STALE = "stale"
    #: The connection closed (FIN or reset) in the middle of a frame: the
    #: partial frame is dropped.
    TRUNCATED = "truncated"


#: Reasons that are the publisher's fault (they count toward closing a bad
#: peer). The others (duplicate, gap, stale, ...) are sequencing events.
BAD_INPUT: Final = frozenset(
    {
        Reason.MALFORMED_JSON,
        Reason.INVALID_UTF8,
        Reason.OVERSIZED,
        Reason.BAD_FIELD,
        Reason.UNKNOWN_TYPE,
        Reason.BAD_NUMBER,
        Reason.OFF_TICK,
        Reason.BAD_SIZE,
    }
)


class BookMessage:
    """A snapshot or an update: changed levels in ticks and lots."""

    __slots__ = ("asks", "bids", "seq", "symbol", "ts", "type")

    def __init__(
        self,
        type: MessageType,
        symbol: str,
        seq: int,
        bids: list[tuple[int, int]],
        asks: list[tuple[int, int]],
        ts: int | None,
    ) -> None:
        self.type = type
        self.symbol = symbol
        self.seq = seq
        self.bids = bids
        self.asks = asks
        self.ts = ts

    def __repr__(self) -> str:
        return (
            f"BookMessage({self.type.value}, {self.symbol!r}, seq={self.seq}, "
            f"bids={self.bids}, asks={self.asks})"
        )


class Trade:
    """A print: price in ticks, size in lots, aggressor side."""

    __slots__ = ("price", "seq", "side", "size", "symbol", "ts")

    def __init__(
        self, symbol: str, seq: int, price: int, size: int, side: Side, ts: int | None
    ) -> None:
        self.symbol = symbol
        self.seq = seq
        self.price = price
        self.size = size
        self.side = side
        self.ts = ts

    def __repr__(self) -> str:
        return (
            f"Trade({self.symbol!r}, seq={self.seq}, price={self.price}, "
            f"size={self.size}, side={self.side.value})"
        )


class Heartbeat:
    """Keeps a connection alive; carries no book data."""

    __slots__ = ("ts",)

    def __init__(self, ts: int | None) -> None:
        self.ts = ts

    def __repr__(self) -> str:
        return f"Heartbeat(ts={self.ts})"


class Rejected:
    """A frame that was not accepted, with why and what could be read of it."""

    __slots__ = ("detail", "kind", "reason", "seq", "symbol")

    def __init__(
        self,
        reason: Reason,
        detail: str,
        symbol: str | None = None,
        seq: int | None = None,
        kind: str | None = None,
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.symbol = symbol
        self.seq = seq
        self.kind = kind

    def __repr__(self) -> str:
        return f"Rejected({self.reason.value}, {self.detail!r}, symbol={self.symbol!r})"


Message = BookMessage | Trade | Heartbeat

_UPDATE: Final = MessageType.UPDATE
_SNAPSHOT: Final = MessageType.SNAPSHOT
_TRADE: Final = MessageType.TRADE

_PRICE_REASON: Final = {
    "malformed": Reason.BAD_NUMBER,
    "not_finite": Reason.BAD_NUMBER,
    "too_large": Reason.BAD_NUMBER,
}
_SIZE_REASON: Final = _PRICE_REASON


class Grid:
    """Per-instrument conversion with caches of wire strings already seen.

    Book prices and sizes repeat heavily, so a dict hit (~40 ns) replaces
    the full parse (~1 us) for most levels. Only strings are cached, and
    only values that converted, so a cache hit is exactly what the parse
    would have returned.
    """

    __slots__ = ("instrument", "prices", "sizes")

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.prices: dict[str, int] = {}
        self.sizes: dict[str, int] = {}

    def price(self, value: object) -> int:
        ticks = self.instrument.price_to_ticks(value)
        if type(value) is str:
            if len(self.prices) >= _CACHE_LIMIT:
                self.prices.clear()
            self.prices[value] = ticks
        return ticks

    def size(self, value: object) -> int:
        lots = self.instrument.size_to_lots(value)
        if type(value) is str:
            if len(self.sizes) >= _CACHE_LIMIT:
                self.sizes.clear()
            self.sizes[value] = lots
        return lots


class Decoder:
    """Decode frames for a fixed set of instruments. Never raises.

    ``decode`` is ``O(len(frame))``. It copies nothing it does not need:
    orjson reads ``bytes``, ``bytearray`` and ``memoryview`` directly.
    """

    __slots__ = ("_grids",)

    def __init__(self, instruments: Mapping[str, Instrument]) -> None:
        self._grids = {symbol: Grid(inst) for symbol, inst in instruments.items()}

    def decode(self, frame: bytes | bytearray | memoryview) -> Message | Rejected:
        """Decode one frame (without its newline) to a message or a rejection."""
        try:
            obj = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return self.undecodable(frame)
        return self.decode_object(obj)

    def decode_object(self, obj: object) -> Message | Rejected:
        """Validate an already parsed JSON value; see :meth:`decode`."""
        if type(obj) is not dict:
            return Rejected(Reason.BAD_FIELD, "frame is not a JSON object")
        try:
            return self._message(obj)
        except Exception as exc:  # the decoder must never raise
            return Rejected(Reason.BAD_FIELD, f"undecodable frame: {type(exc).__name__}")

    @staticmethod
    def undecodable(frame: bytes | bytearray | memoryview) -> Rejected:
        """The rejection for a frame that orjson could not parse."""
        try:
            bytes(frame).decode("utf-8")
        except UnicodeDecodeError:
            return Rejected(Reason.INVALID_UTF8, "frame is not valid UTF-8")
        return Rejected(Reason.MALFORMED_JSON, "frame is not valid JSON")

    def grid(self, symbol: str) -> Grid:
        """The conversion grid (with its caches) of a configured symbol."""
        return self._grids[symbol]

    def _message(self, obj: dict[str, object]) -> Message | Rejected:
        kind = obj.get("type")
        if kind == "update":
            message_type = _UPDATE
        elif kind == "snapshot":
            message_type = _SNAPSHOT
        elif kind == "trade":
            message_type = _TRADE
        elif kind == "heartbeat":
            ts = obj.get("ts")
            if ts is not None and type(ts) is not int:
                return Rejected(Reason.BAD_FIELD, "ts is not an integer")
            return Heartbeat(ts)
        else:
            return self._unknown(obj, kind)
        symbol = obj.get("symbol")
        seq = obj.get("seq")
        if type(symbol) is not str:
            number = seq if type(seq) is int and 0 <= seq < MAX_SEQ else None
            return Rejected(Reason.BAD_FIELD, "symbol is missing or not a string", None, number)
        if type(seq) is not int or not 0 <= seq < MAX_SEQ:
            return Rejected(
                Reason.BAD_FIELD, "seq is missing or not a non-negative integer", symbol, None, kind
            )
        grid = self._grids.get(symbol)
        if grid is None:
            return Rejected(
                Reason.UNKNOWN_SYMBOL, f"unknown symbol {symbol[:32]!r}", symbol, seq, kind
            )
        ts = obj.get("ts")
        if ts is not None and type(ts) is not int:
            return Rejected(Reason.BAD_FIELD, "ts is not an integer", symbol, seq, kind)
        if message_type is _TRADE:
            return self._trade(obj, grid, symbol, seq, ts)
        snapshot = message_type is _SNAPSHOT
        raw = obj.get("bids")
        if raw:
            bids = levels(raw, grid, snapshot)
            if type(bids) is Rejected:
                bids.symbol, bids.seq, bids.kind = symbol, seq, kind
                return bids
        elif raw == []:
            bids = []
        else:
            return Rejected(Reason.BAD_FIELD, "bids is missing or not a list", symbol, seq, kind)
        raw = obj.get("asks")
        if raw:
            asks = levels(raw, grid, snapshot)
            if type(asks) is Rejected:
                asks.symbol, asks.seq, asks.kind = symbol, seq, kind
                return asks
        elif raw == []:
            asks = []
        else:
            return Rejected(Reason.BAD_FIELD, "asks is missing or not a list", symbol, seq, kind)
        return BookMessage(message_type, symbol, seq, bids, asks, ts)  # type: ignore[arg-type]

    def _unknown(self, obj: dict[str, object], kind: object) -> Rejected:
        symbol = obj.get("symbol")
        seq = obj.get("seq")
        name = symbol if type(symbol) is str else None
        number = seq if type(seq) is int and 0 <= seq < MAX_SEQ else None
        if type(kind) is str:
            return Rejected(Reason.UNKNOWN_TYPE, f"unknown type {kind[:32]!r}", name, number)
        return Rejected(Reason.BAD_FIELD, "type is missing or not a string", name, number)

    def _trade(
        self, obj: dict[str, object], grid: Grid, symbol: str, seq: int, ts: int | None
    ) -> Trade | Rejected:
        side = obj.get("side")
        if side == "buy":
            aggressor = Side.BUY
        elif side == "sell":
            aggressor = Side.SELL
        else:
            return Rejected(Reason.BAD_FIELD, "side is not 'buy' or 'sell'", symbol, seq, "trade")
        raw_price = obj.get("price")
        raw_size = obj.get("size")
        if raw_price is None or raw_size is None:
            return Rejected(Reason.BAD_FIELD, "price or size is missing", symbol, seq, "trade")
        try:
            price = grid.price(raw_price)
        except InvalidValue as exc:
            return Rejected(_PRICE_REASON.get(exc.reason, Reason.OFF_TICK), str(exc), symbol, seq)
        try:
            size = grid.size(raw_size)
        except InvalidValue as exc:
            return Rejected(_SIZE_REASON.get(exc.reason, Reason.BAD_SIZE), str(exc), symbol, seq)
        if size <= 0:
            return Rejected(Reason.BAD_SIZE, "trade size is zero", symbol, seq, "trade")
        return Trade(symbol, seq, price, size, aggressor, ts)


def levels(raw: object, grid: Grid, snapshot: bool) -> list[tuple[int, int]] | Rejected:
    """Convert ``[[price, size], ...]`` whole, or return the first problem."""
    if type(raw) is not list:
        return Rejected(Reason.BAD_FIELD, "bids/asks is not a list")
    prices = grid.prices
    sizes = grid.sizes
    out: list[tuple[int, int]] = []
    append = out.append
    for level in raw:
        if type(level) is not list or len(level) != 2:
            return Rejected(Reason.BAD_FIELD, "a level is not a [price, size] pair")
        price, size = level
        ticks = prices.get(price) if type(price) is str else None
        if ticks is None:
            try:
                ticks = grid.price(price)
            except InvalidValue as exc:
                return Rejected(_PRICE_REASON.get(exc.reason, Reason.OFF_TICK), str(exc))
        lots = sizes.get(size) if type(size) is str else None
        if lots is None:
            try:
                lots = grid.size(size)
            except InvalidValue as exc:
                return Rejected(_SIZE_REASON.get(exc.reason, Reason.BAD_SIZE), str(exc))
        if snapshot and not lots:
            return Rejected(Reason.BAD_SIZE, "a snapshot level has size zero")
        append((ticks, lots))
    if snapshot and len({price for price, _ in out}) != len(out):
        return Rejected(Reason.BAD_FIELD, "a snapshot lists a price twice")
    return out
