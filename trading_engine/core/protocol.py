"""The market-data protocol: frame bytes to typed messages.

:class:`Decoder` turns one frame (a JSON object without its newline) into
a :class:`BookMessage`, :class:`Trade` or :class:`Heartbeat`, converting
every price and size to ticks and lots of the symbol's instrument, or into
a :class:`Rejected` carrying a :class:`Reason`. It never raises, whatever
the bytes: bad input is data, not an exception.

Two readers, one result. The fast path decodes a frame with msgspec
straight into typed Structs (:mod:`trading_engine.core.wire`), which checks
every field's JSON type in C; it takes only frames it is sure of. Any
other frame, and any frame whose price or size does not convert, is read
again by the reference path, orjson plus the full hand-written validation,
which names the exact :class:`Reason`. The two agree on every frame: the
property tests feed both arbitrary bytes and mutated frames.

A rejection keeps the symbol and sequence number when they could be read,
because a bad frame that carries a book's next ``seq`` takes that sequence
number with it (the book builder then marks the book stale).

``seq`` is any integer from 0 to :data:`SEQ_MAX` (``2**64 - 1``, the
largest that JSON readers keep exact). A larger one is a sequence number
the protocol allows but the engine cannot follow: the frame is rejected as
:attr:`Reason.SEQ_OUT_OF_RANGE`, and the book builder marks a live or
crossed book of its symbol stale rather than leave it live on levels no
later frame may change. orjson reads an integer beyond ``2**64 - 1`` as a
float, so any JSON number at or beyond ``2**64`` counts as such a
sequence number; a smaller float (``5.0``) is a wrongly typed ``seq``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final, cast

import orjson

from .errors import InvalidValue
from .instruments import Instrument
from .wire import (
    WireError,
    WireHeartbeat,
    WireSnapshot,
    WireTrade,
    WireUpdate,
    decode_wire,
)

__all__ = [
    "SEQ_MAX",
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

#: The largest ``seq`` the engine follows (the reference reader's
#: largest exact integer); beyond it: :attr:`Reason.SEQ_OUT_OF_RANGE`.
SEQ_MAX: Final = 2**64 - 1
#: Integers outside this range orjson reads as floats; the fast path leaves
#: them to the reference path so that both read the same value.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
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
    #: ``seq`` is beyond :data:`SEQ_MAX`: a live or crossed book of the
    #: symbol becomes stale until a snapshot the engine can follow.
    SEQ_OUT_OF_RANGE = "seq_out_of_range"


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

    type: MessageType
    symbol: str
    seq: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]
    ts: int | None

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

    symbol: str
    seq: int
    price: int
    size: int
    side: Side
    ts: int | None

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

    ts: int | None

    def __init__(self, ts: int | None) -> None:
        self.ts = ts

    def __repr__(self) -> str:
        return f"Heartbeat(ts={self.ts})"


class Rejected:
    """A frame that was not accepted, with why and what could be read of it."""

    __slots__ = ("detail", "kind", "reason", "seq", "symbol")

    reason: Reason
    detail: str
    symbol: str | None
    seq: int | None
    kind: str | None

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

_BUY: Final = Side.BUY
_SELL: Final = Side.SELL

_PRICE_REASON: Final[dict[str, Reason]] = {
    "malformed": Reason.BAD_NUMBER,
    "not_finite": Reason.BAD_NUMBER,
    "too_large": Reason.BAD_NUMBER,
}
_SIZE_REASON: Final[dict[str, Reason]] = _PRICE_REASON


class Grid:
    """Per-instrument conversion with caches of wire strings already seen.

    Book prices and sizes repeat heavily, so a dict hit (~40 ns) replaces
    the full parse (~1 us) for most levels. Only strings are cached, and
    only values that converted, so a cache hit is exactly what the parse
    would have returned.
    """

    __slots__ = ("instrument", "prices", "sizes")

    instrument: Final[Instrument]
    prices: Final[dict[str, int]]
    sizes: Final[dict[str, int]]

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.prices = {}
        self.sizes = {}

    def price(self, value: object) -> int:
        """Ticks of a wire price; raises :class:`InvalidValue` (see ``price_to_ticks``)."""
        if type(value) is str:
            cached = self.prices.get(value)
            if cached is not None:
                return cached
            ticks = self.instrument.price_to_ticks(value)
            if len(self.prices) >= _CACHE_LIMIT:
                self.prices.clear()
            self.prices[value] = ticks
            return ticks
        return self.instrument.price_to_ticks(value)

    def size(self, value: object) -> int:
        """Lots of a wire size; raises :class:`InvalidValue` (see ``size_to_lots``)."""
        if type(value) is str:
            cached = self.sizes.get(value)
            if cached is not None:
                return cached
            lots = self.instrument.size_to_lots(value)
            if len(self.sizes) >= _CACHE_LIMIT:
                self.sizes.clear()
            self.sizes[value] = lots
            return lots
        return self.instrument.size_to_lots(value)


def _seq_beyond(value: object) -> bool:
    """True for a JSON ``seq`` at or past ``2**64``: orjson reads it as a float."""
    if type(value) is float:
        number: float = value
        return number >= 2.0**64
    return type(value) is int and value > SEQ_MAX


def _seq(value: object) -> int | None:
    """``value`` if it is a ``seq`` the engine follows (an int in 0..SEQ_MAX), else None."""
    if type(value) is int and 0 <= value <= SEQ_MAX:
        number: int = value
        return number
    return None


def _plain(value: object) -> bool:
    """True for a wire number both readers see alike (not an out-of-range int)."""
    if type(value) is int:
        number: int = value
        return _INT_MIN <= number <= _INT_MAX
    return True


def wire_levels(
    raw: list[tuple[str | int | float, str | int | float]], grid: Grid, snapshot: bool
) -> list[tuple[int, int]] | None:
    """Convert the fast path's typed levels whole, or None if any is in doubt.

    None sends the frame to the reference path, which names the reason;
    a list is exactly what :func:`levels` returns for the same frame.
    """
    # The caches' ints are taken as the objects they are: in the compiled
    # build a value typed ``int`` is unboxed and boxed again (an allocation
    # each) on its way from the cache into the level's tuple.
    prices = cast("dict[object, object]", grid.prices)
    sizes = cast("dict[object, object]", grid.sizes)
    out: list[tuple[object, object]] = []
    for level in cast("list[tuple[object, object]]", raw):
        price = level[0]
        size = level[1]
        ticks = prices.get(price)
        if ticks is None:
            if not _plain(price):
                return None
            try:
                ticks = grid.price(price)
            except InvalidValue:
                return None
        lots = sizes.get(size)
        if lots is None:
            if not _plain(size):
                return None
            try:
                lots = grid.size(size)
            except InvalidValue:
                return None
        if snapshot and lots == 0:
            return None
        out.append((ticks, lots))
    if snapshot and len({level[0] for level in out}) != len(out):
        return None
    return cast("list[tuple[int, int]]", out)


class Decoder:
    """Decode frames for a fixed set of instruments. Never raises.

    ``decode`` is ``O(len(frame))``. It copies nothing it does not need:
    msgspec and orjson read ``bytes``, ``bytearray`` and ``memoryview``
    directly.
    """

    __slots__ = ("_grids",)

    _grids: Final[dict[str, Grid]]

    def __init__(self, instruments: Mapping[str, Instrument]) -> None:
        self._grids = {symbol: Grid(inst) for symbol, inst in instruments.items()}

    def decode(self, frame: bytes | bytearray | memoryview) -> Message | Rejected:
        """Decode one frame (without its newline) to a message or a rejection."""
        try:
            wire = decode_wire(frame)
        except WireError:
            return self.decode_reference(frame)
        try:
            message = self.from_wire(wire)
        except Exception:  # the decoder must never raise: the reference path decides
            message = None
        if message is None:
            return self.decode_reference(frame)
        return message

    def decode_reference(self, frame: bytes | bytearray | memoryview) -> Message | Rejected:
        """Decode with orjson and the full validation: every :class:`Reason`.

        The fast path's fallback, and the reference the property tests
        hold it to.
        """
        try:
            obj = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return self.undecodable(frame)
        return self.decode_object(obj)

    def from_wire(self, wire: object) -> Message | None:
        """The message of a frame the fast path decoded, or None if in doubt."""
        cls = type(wire)
        if cls is WireUpdate or cls is WireSnapshot:
            book: WireUpdate = wire  # type: ignore[assignment]
            grid = self._grids.get(book.symbol)
            if grid is None or book.seq > SEQ_MAX:
                return None
            snapshot = cls is WireSnapshot
            bids = wire_levels(book.bids, grid, snapshot)
            if bids is None:
                return None
            asks = wire_levels(book.asks, grid, snapshot)
            if asks is None:
                return None
            kind = _SNAPSHOT if snapshot else _UPDATE
            return BookMessage(kind, book.symbol, book.seq, bids, asks, book.ts)
        if cls is WireTrade:
            trade: WireTrade = wire  # type: ignore[assignment]
            grid = self._grids.get(trade.symbol)
            if grid is None or trade.seq > SEQ_MAX:
                return None
            side = trade.side
            if side == "buy":
                aggressor = _BUY
            elif side == "sell":
                aggressor = _SELL
            else:
                return None
            if not (_plain(trade.price) and _plain(trade.size)):
                return None
            try:
                price = grid.price(trade.price)
                size = grid.size(trade.size)
            except InvalidValue:
                return None
            if size < 0:
                return None
            return Trade(trade.symbol, trade.seq, price, size, aggressor, trade.ts)
        if cls is WireHeartbeat:
            heartbeat: WireHeartbeat = wire  # type: ignore[assignment]
            return Heartbeat(heartbeat.ts)
        return None

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
        raw_symbol = obj.get("symbol")
        raw_seq = obj.get("seq")
        if type(raw_symbol) is not str:
            return Rejected(
                Reason.BAD_FIELD, "symbol is missing or not a string", None, _seq(raw_seq)
            )
        symbol: str = raw_symbol
        number = _seq(raw_seq)
        if number is None and not _seq_beyond(raw_seq):
            return Rejected(
                Reason.BAD_FIELD, "seq is missing or not a non-negative integer", symbol, None, kind
            )
        grid = self._grids.get(symbol)
        if grid is None:
            return Rejected(
                Reason.UNKNOWN_SYMBOL, f"unknown symbol {symbol[:32]!r}", symbol, number, kind
            )
        if number is None:
            return Rejected(Reason.SEQ_OUT_OF_RANGE, "seq is beyond 2**64 - 1", symbol, None, kind)
        seq: int = number
        raw_ts = obj.get("ts")
        if raw_ts is not None and type(raw_ts) is not int:
            return Rejected(Reason.BAD_FIELD, "ts is not an integer", symbol, seq, kind)
        ts = raw_ts
        if message_type is _TRADE:
            return self._trade(obj, grid, symbol, seq, ts)
        snapshot = message_type is _SNAPSHOT
        raw = obj.get("bids")
        if raw:
            found = levels(raw, grid, snapshot)
            if isinstance(found, Rejected):
                found.symbol, found.seq, found.kind = symbol, seq, kind
                return found
            bids = found
        elif raw == []:
            bids = []
        else:
            return Rejected(Reason.BAD_FIELD, "bids is missing or not a list", symbol, seq, kind)
        raw = obj.get("asks")
        if raw:
            found = levels(raw, grid, snapshot)
            if isinstance(found, Rejected):
                found.symbol, found.seq, found.kind = symbol, seq, kind
                return found
            asks = found
        elif raw == []:
            asks = []
        else:
            return Rejected(Reason.BAD_FIELD, "asks is missing or not a list", symbol, seq, kind)
        return BookMessage(message_type, symbol, seq, bids, asks, ts)

    def _unknown(self, obj: dict[str, object], kind: object) -> Rejected:
        symbol = obj.get("symbol")
        seq = obj.get("seq")
        name: str | None = symbol if type(symbol) is str else None
        number = _seq(seq)
        if type(kind) is str:
            text: str = kind
            return Rejected(Reason.UNKNOWN_TYPE, f"unknown type {text[:32]!r}", name, number)
        return Rejected(Reason.BAD_FIELD, "type is missing or not a string", name, number)

    def _trade(
        self, obj: dict[str, object], grid: Grid, symbol: str, seq: int, ts: int | None
    ) -> Trade | Rejected:
        side = obj.get("side")
        if side == "buy":
            aggressor = _BUY
        elif side == "sell":
            aggressor = _SELL
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
        if size < 0:  # zero is a size a trade may have (only a snapshot's levels may not)
            return Rejected(Reason.BAD_SIZE, "trade size is negative", symbol, seq, "trade")
        return Trade(symbol, seq, price, size, aggressor, ts)


def levels(raw: object, grid: Grid, snapshot: bool) -> list[tuple[int, int]] | Rejected:
    """Convert ``[[price, size], ...]`` whole, or return the first problem."""
    if type(raw) is not list:
        return Rejected(Reason.BAD_FIELD, "bids/asks is not a list")
    items: list[object] = raw
    out: list[tuple[int, int]] = []
    for level in items:
        if type(level) is not list or len(level) != 2:
            return Rejected(Reason.BAD_FIELD, "a level is not a [price, size] pair")
        pair: list[object] = level
        price = pair[0]
        size = pair[1]
        try:
            ticks = grid.price(price)
        except InvalidValue as exc:
            return Rejected(_PRICE_REASON.get(exc.reason, Reason.OFF_TICK), str(exc))
        try:
            lots = grid.size(size)
        except InvalidValue as exc:
            return Rejected(_SIZE_REASON.get(exc.reason, Reason.BAD_SIZE), str(exc))
        if snapshot and not lots:
            return Rejected(Reason.BAD_SIZE, "a snapshot level has size zero")
        out.append((ticks, lots))
    if snapshot and len({ticks for ticks, _ in out}) != len(out):
        return Rejected(Reason.BAD_FIELD, "a snapshot lists a price twice")
    return out
