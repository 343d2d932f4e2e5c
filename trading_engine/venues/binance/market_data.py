"""Binance spot market data: the diff-depth stream joined with REST depth snapshots.

The dialect subscribes one combined stream per connection
(``/stream?streams=<symbol>@depth@100ms/<symbol>@trade/...``) and keeps
each symbol's book in step exactly as Binance's "How to manage a local
order book correctly" (spot WebSocket Streams documentation) says:

1. Buffer the diff-depth events of the symbol from the moment the stream
   is open, and fetch a depth snapshot (``GET /api/v3/depth``) at the same
   time.
2. When the snapshot arrives, drop every buffered event whose final update
   id ``u`` is at or below the snapshot's ``lastUpdateId``. The first event
   left must bracket the snapshot: its first update id ``U`` is at most
   ``lastUpdateId + 1``. If it starts later, events were missed between the
   snapshot and the stream (the snapshot is older than the stream): fetch a
   new snapshot (counted ``snapshot_stale``). With nothing left in the
   buffer, the snapshot waits for the next event to check it.
3. Publish the snapshot, then apply the buffered events and every later one
   by the update procedure: an event with ``u`` at or below the book's
   update id is ignored; an event with ``U`` above the book's update id + 1
   means events were missed: the book is dropped (:class:`Resync`, reason
   ``gap``) and the process starts again from step 1 with that event
   buffered; otherwise each level is set to its absolute quantity (0
   removes it) and the book's update id becomes ``u``.

A snapshot is published only after an event has confirmed it, so a quiet
symbol stays not ready until its book first changes. Trades come from the
``<symbol>@trade`` stream (``aggTrade`` events are read too); ``m`` (the
buyer is the maker) means the aggressor sold.

Everything else is counted in :attr:`BinanceMarketData.errors` and
ignored: subscription answers, streams this dialect did not ask for
(``bookTicker``...), symbols it did not subscribe, unreadable messages. A
level whose price or quantity is not a plain decimal string, or whose
price is zero, drops the symbol's book (:class:`Resync`, reason
``bad_level``): the engine would refuse it, and the book must not silently
diverge. A trade whose price or quantity is not a positive plain decimal
is not published (``bad_trade``): the engine would refuse it too, and a
refused frame leaves its book stale.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote

import msgspec

from ...core.feeds import Action, BookFrame, FetchSnapshot, Resync, TradeFrame

__all__ = ["DEFAULT_DEPTH_LIMIT", "BinanceMarketData", "depth_url"]

#: Levels a side asked of the REST snapshot (the venue's maximum).
DEFAULT_DEPTH_LIMIT: Final = 5000
#: Buffered events per symbol while its snapshot is awaited; past it the
#: oldest are dropped (the next snapshot check then fails and fetches again).
MAX_BUFFERED_EVENTS: Final = 10_000
#: Levels in those events, at most (a venue's huge events must not fill the
#: memory while a snapshot is awaited: about 170 bytes a decoded level).
MAX_BUFFERED_LEVELS: Final = 100_000

# A plain non-negative decimal, as Binance writes every price and quantity.
_DECIMAL: Final = re.compile(r"\d{1,40}(?:\.\d{1,40})?")
# The same with a non-zero digit: a price, or a traded quantity (the engine
# refuses a zero there, and a refused frame would leave its book stale).
_POSITIVE: Final = re.compile(r"(?!0*(?:\.0*)?$)\d{1,40}(?:\.\d{1,40})?")

Level = tuple[str, str]


class _Depth(
    msgspec.Struct,
    tag_field="e",
    tag="depthUpdate",
    rename={"first_id": "U", "last_id": "u", "event_ms": "E"},
):
    s: str
    first_id: int
    last_id: int
    b: list[Level]
    a: list[Level]
    event_ms: int = 0


class _Trade(msgspec.Struct, tag_field="e", tag="trade"):
    s: str
    p: str
    q: str
    m: bool
    T: int = 0


class _AggTrade(msgspec.Struct, tag_field="e", tag="aggTrade"):
    s: str
    p: str
    q: str
    m: bool
    T: int = 0


class _Envelope(msgspec.Struct):
    stream: str
    data: _Depth | _Trade | _AggTrade


class _Snapshot(msgspec.Struct, rename={"last_id": "lastUpdateId"}):
    last_id: int
    bids: list[Level]
    asks: list[Level]


_ENVELOPE: Final = msgspec.json.Decoder(_Envelope)
_SNAPSHOT: Final = msgspec.json.Decoder(_Snapshot)
_ANY: Final = msgspec.json.Decoder()


def depth_url(rest_url: str, symbol: str, limit: int = DEFAULT_DEPTH_LIMIT) -> str:
    """The REST depth snapshot URL of ``symbol`` (``limit`` levels a side)."""
    return f"{rest_url.rstrip('/')}/api/v3/depth?symbol={quote(symbol)}&limit={limit}"


@dataclass(slots=True)
class _SymbolState:
    url: str
    #: ``lastUpdateId`` of the current book, or None while not synchronized.
    book_id: int | None = None
    #: A snapshot received but not yet confirmed by an event.
    pending: _Snapshot | None = None
    buffer: list[_Depth] = field(default_factory=list)
    #: Levels in ``buffer``'s events.
    buffered_levels: int = 0

    def set_buffer(self, events: list[_Depth]) -> None:
        self.buffer = events
        self.buffered_levels = sum(len(event.b) + len(event.a) for event in events)


def _levels_ok(levels: list[Level]) -> bool:
    price_ok, size_ok = _POSITIVE.fullmatch, _DECIMAL.fullmatch
    return all(price_ok(price) is not None and size_ok(size) is not None for price, size in levels)


class BinanceMarketData:
    """The Binance spot :class:`~trading_engine.core.feeds.FeedDialect`.

    ``symbols``: venue symbols (``BTCUSDT``), unique, at most 512 (two
    streams each; Binance allows 1,024 per connection). ``rest_url``: the
    REST base URL for snapshots. ``depth_stream``: the diff-depth stream
    suffix (``@depth@100ms`` or ``@depth``). Raises ``ValueError`` for an
    empty, duplicated or oversized symbol list.
    """

    venue = "binance"

    def __init__(
        self,
        symbols: Sequence[str],
        rest_url: str,
        *,
        depth_limit: int = DEFAULT_DEPTH_LIMIT,
        depth_stream: str = "@depth@100ms",
    ) -> None:
        if not symbols:
            raise ValueError("binance: no symbols")
        if len(set(symbols)) != len(symbols):
            raise ValueError("binance: a symbol is listed twice")
        if len(symbols) > 512:
            raise ValueError("binance: at most 512 symbols per connection")
        self.symbols = tuple(symbols)
        self.rest_url = rest_url
        self.depth_limit = depth_limit
        self.depth_stream = depth_stream
        self.errors: dict[str, int] = {}
        self._states = {
            symbol: _SymbolState(depth_url(rest_url, symbol, depth_limit)) for symbol in symbols
        }

    # -- the FeedDialect protocol ---------------------------------------------------------

    def connect_url(self, ws_url: str) -> str:
        streams = "/".join(
            f"{symbol.lower()}{self.depth_stream}/{symbol.lower()}@trade" for symbol in self.symbols
        )
        return f"{ws_url.rstrip('/')}/stream?streams={streams}"

    def on_open(self, now_ns: int) -> list[Action]:
        actions: list[Action] = []
        for symbol, state in self._states.items():
            state.book_id = None
            state.pending = None
            state.set_buffer([])
            actions.append(FetchSnapshot(symbol, state.url))
        return actions

    def on_message(self, text: str, now_ns: int) -> list[Action]:
        try:
            envelope = _ENVELOPE.decode(text)
        except msgspec.DecodeError:
            self._count(self._classify(text))
            return []
        data = envelope.data
        state = self._states.get(data.s)
        if state is None:
            self._count("unknown_symbol")
            return []
        if isinstance(data, _Depth):
            return self._on_depth(data.s, state, data)
        if state.book_id is None:
            # Before the book is live the engine would ignore the print.
            self._count("trade_before_book")
            return []
        if _POSITIVE.fullmatch(data.p) is None or _POSITIVE.fullmatch(data.q) is None:
            self._count("bad_trade")
            return []
        side = "sell" if data.m else "buy"
        return [TradeFrame(data.s, data.p, data.q, side, data.T * 1_000_000 if data.T else None)]

    def on_snapshot(self, symbol: str, body: bytes, now_ns: int) -> list[Action]:
        state = self._states.get(symbol)
        if state is None:
            self._count("unknown_symbol")
            return []
        try:
            snapshot = _SNAPSHOT.decode(body)
        except msgspec.DecodeError:
            self._count("unreadable_snapshot")
            return [FetchSnapshot(symbol, state.url)]
        if not (_levels_ok(snapshot.bids) and _levels_ok(snapshot.asks)):
            self._count("bad_snapshot_level")
            return [FetchSnapshot(symbol, state.url)]
        if state.book_id is not None:
            # A snapshot nobody waits for (a late answer): the book is live already.
            self._count("snapshot_unexpected")
            return []
        state.pending = snapshot
        return self._try_sync(symbol, state)

    def on_snapshot_failed(self, symbol: str, reason: str, now_ns: int) -> list[Action]:
        # The runtime fetches again with back-off; the buffer keeps growing meanwhile.
        return []

    def on_timer(self, now_ns: int) -> list[Action]:
        # Binance's own pings are WebSocket control frames, answered by the runtime.
        return []

    # -- the sequencing rules -----------------------------------------------------------------

    def _on_depth(self, symbol: str, state: _SymbolState, event: _Depth) -> list[Action]:
        book_id = state.book_id
        if book_id is None:
            buffer = state.buffer
            buffer.append(event)
            state.buffered_levels += len(event.b) + len(event.a)
            while buffer and (
                len(buffer) > MAX_BUFFERED_EVENTS or state.buffered_levels > MAX_BUFFERED_LEVELS
            ):
                oldest = buffer.pop(0)
                state.buffered_levels -= len(oldest.b) + len(oldest.a)
                self._count("buffer_overflow")
            if state.pending is not None:
                return self._try_sync(symbol, state)
            return []
        if event.last_id <= book_id:
            self._count("old_event")
            return []
        if event.first_id > book_id + 1:
            return self._restart(symbol, state, "gap", event)
        if not (_levels_ok(event.b) and _levels_ok(event.a)):
            return self._restart(symbol, state, "bad_level", None)
        state.book_id = event.last_id
        return [BookFrame(symbol, False, event.b, event.a, event.event_ms * 1_000_000 or None)]

    def _try_sync(self, symbol: str, state: _SymbolState) -> list[Action]:
        snapshot = state.pending
        assert snapshot is not None
        last = snapshot.last_id
        buffer = [event for event in state.buffer if event.last_id > last]
        state.set_buffer(buffer)
        if not buffer:
            return []  # the next event confirms (or refutes) the snapshot
        if buffer[0].first_id > last + 1:
            # Events between the snapshot and the first buffered one are gone.
            state.pending = None
            self._count("snapshot_stale")
            return [FetchSnapshot(symbol, state.url)]
        state.pending = None
        state.set_buffer([])
        state.book_id = last
        actions: list[Action] = [BookFrame(symbol, True, snapshot.bids, snapshot.asks)]
        for index, event in enumerate(buffer):
            actions.extend(self._on_depth(symbol, state, event))
            if state.book_id is None:
                # A gap inside the buffer: _restart kept that event and asked for
                # a new snapshot; the events after it wait with it.
                state.set_buffer(state.buffer + buffer[index + 1 :])
                break
        return actions

    def _restart(
        self, symbol: str, state: _SymbolState, reason: str, keep: _Depth | None
    ) -> list[Action]:
        self._count(reason)
        state.book_id = None
        state.pending = None
        state.set_buffer([] if keep is None else [keep])
        return [Resync(symbol, reason), FetchSnapshot(symbol, state.url)]

    # -- errors -----------------------------------------------------------------------------------

    def _classify(self, text: str) -> str:
        """The error label of a message that is not a subscribed event (the slow path)."""
        try:
            value = _ANY.decode(text)
        except msgspec.DecodeError:
            return "unreadable"
        if not isinstance(value, dict):
            return "unreadable"
        if "result" in value and "id" in value:
            return "subscription_answer"
        if "code" in value or "error" in value:
            return "venue_error"
        data = value.get("data")
        if isinstance(value.get("stream"), str) and isinstance(data, dict):
            if data.get("e") in ("depthUpdate", "trade", "aggTrade"):
                return "unreadable"  # a subscribed event with a field missing or mistyped
            return "unsubscribed_stream"
        return "unreadable"

    def _count(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1
