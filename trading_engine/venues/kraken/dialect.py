"""Kraken Spot WebSocket v2: the ``book`` and ``trade`` channels, sans I/O.

The rules, each from Kraken's documentation:

* The ``instrument`` channel (https://docs.kraken.com/exchange/api-reference/spot-websocket-v2/instrument)
  gives each pair's ``price_precision`` and ``qty_precision``, which the
  checksum needs; the dialect subscribes to it first and to ``book`` and
  ``trade`` once its snapshot is in.
* ``book`` (https://docs.kraken.com/exchange/api-reference/spot-websocket-v2/book) sends a
  snapshot and then updates, each with the CRC32 checksum of the top 10
  levels (:mod:`.checksum`), verified after every message. Levels are
  applied in order, quantity 0 removes, and each side is then truncated
  to the subscribed depth (the venue sends no removal for a level that
  falls out of scope). A mismatch unsubscribes and subscribes that pair's
  ``book`` again and reports :class:`Resync`.
* ``trade`` updates become trade frames; ``side`` is the taker's; a print
  whose price or quantity is not above zero is dropped
  (``unreadable_trade``). The trade snapshot (recent history) is not
  requested: it would publish old prints again on every reconnect.
* Keepalive: the venue sends ``heartbeat`` every second while subscribed;
  after a quiet spell the dialect sends the ``ping`` method and reconnects
  when no ``pong`` comes (https://docs.kraken.com/exchange/api-reference/spot-websocket-v2/ping).
* ``status`` (https://docs.kraken.com/exchange/api-reference/spot-websocket-v2/status):
  ``system: maintenance`` reconnects (with back-off, until the venue is
  back online).

Prices and quantities are JSON numbers on the wire; they are decoded as
:class:`~decimal.Decimal` from their text, never as floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import msgspec

from ...core.feeds import Action, BookFrame, Reconnect, Resync, SendText, TradeFrame
from .book import KrakenBook, MalformedLevel, plain

__all__ = ["DEPTHS", "KrakenDialect"]

#: The depths the ``book`` channel accepts.
DEPTHS: Final = (10, 25, 100, 500, 1000)

_NS_PER_S: Final = 1_000_000_000
_NOTHING: Final[list[tuple[str, str]]] = []
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


class _Envelope(msgspec.Struct):
    channel: str | None = None
    type: str | None = None
    # Decoded once the channel is known; empty when the message has none.
    data: msgspec.Raw = msgspec.Raw()
    method: str | None = None
    success: bool | None = None
    error: str | None = None
    symbol: str | None = None
    result: dict[str, Any] | None = None


class _Level(msgspec.Struct):
    price: Decimal
    qty: Decimal


class _Book(msgspec.Struct):
    symbol: str
    bids: list[_Level] = []
    asks: list[_Level] = []
    checksum: int | None = None
    timestamp: str | None = None


class _Trade(msgspec.Struct):
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    timestamp: str | None = None


class _Pair(msgspec.Struct):
    symbol: str
    price_precision: int
    qty_precision: int


class _Instruments(msgspec.Struct):
    pairs: list[_Pair] = []


class _Status(msgspec.Struct):
    system: str = ""


_ENVELOPE: Final = msgspec.json.Decoder(_Envelope)
_BOOKS: Final = msgspec.json.Decoder(list[_Book])
_TRADES: Final = msgspec.json.Decoder(list[_Trade])
_INSTRUMENTS: Final = msgspec.json.Decoder(_Instruments)
_STATUS: Final = msgspec.json.Decoder(list[_Status])


class _Symbol:
    """One pair's state on this connection."""

    __slots__ = ("book", "live", "since_ns")

    def __init__(self, depth: int) -> None:
        self.book = KrakenBook(depth, None, None)
        #: A snapshot has been applied and every checksum since agreed.
        self.live = False
        #: When the book subscription was (re)sent.
        self.since_ns = 0


class KrakenDialect:
    """The Kraken v2 market-data dialect for ``symbols`` (``BTC/USD``), one connection.

    ``depth``: the ``book`` subscription's depth (one of :data:`DEPTHS`).
    Counters: ``errors`` (by reason, what was ignored or refused) and
    ``checksums_verified``. Times are in ns from the runtime's clock.
    Raises ValueError for no symbols or a depth Kraken does not offer.
    """

    venue = "kraken"

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        depth: int = 10,
        ping_idle_s: float = 10.0,
        pong_timeout_s: float = 10.0,
        snapshot_timeout_s: float = 15.0,
    ) -> None:
        if not symbols:
            raise ValueError("kraken: at least one symbol is needed")
        if depth not in DEPTHS:
            raise ValueError(f"kraken: depth {depth} is not one of {DEPTHS}")
        self.symbols: tuple[str, ...] = tuple(dict.fromkeys(symbols))
        self.depth = depth
        self.errors: dict[str, int] = {}
        self.checksums_verified = 0
        self._ping_idle_ns = int(ping_idle_s * _NS_PER_S)
        self._pong_timeout_ns = int(pong_timeout_s * _NS_PER_S)
        self._snapshot_timeout_ns = int(snapshot_timeout_s * _NS_PER_S)
        self._state: dict[str, _Symbol] = {s: _Symbol(depth) for s in self.symbols}
        self._last_rx_ns = 0
        self._ping_sent_ns: int | None = None
        self._req_id = 0
        #: Set when the instrument snapshot is in and the books are subscribed.
        self._subscribed = False
        self._opened_ns = 0

    # -- the FeedDialect protocol ------------------------------------------------

    def connect_url(self, ws_url: str) -> str:
        """Kraken names channels in subscriptions, not in the URL: ``ws_url`` as given."""
        return ws_url

    def on_open(self, now_ns: int) -> list[Action]:
        """Ask for the instrument snapshot; the books are subscribed when it is in."""
        self._last_rx_ns = now_ns
        self._opened_ns = now_ns
        self._ping_sent_ns = None
        self._subscribed = False
        for state in self._state.values():
            state.book.clear()
            state.live = False
            state.since_ns = now_ns
        return [self._request("subscribe", {"channel": "instrument", "snapshot": True})]

    def on_message(self, text: str, now_ns: int) -> list[Action]:
        """One text message: book, trade, instrument, status, heartbeat or a method answer."""
        self._last_rx_ns = now_ns
        self._ping_sent_ns = None
        try:
            envelope = _ENVELOPE.decode(text)
        except msgspec.DecodeError:
            # Kraken's book has no sequence numbers and its checksum covers only
            # the top 10 levels: a lost update deeper down would go unseen.
            self._count("unreadable")
            return self._resync_all("unreadable", now_ns)
        channel = envelope.channel
        if channel == "book":
            return self._on_book(envelope, now_ns)
        if channel == "trade":
            return self._on_trades(envelope)
        if channel == "heartbeat":
            return []
        if channel == "status":
            return self._on_status(envelope)
        if channel == "instrument":
            return self._on_instruments(envelope, now_ns)
        if envelope.method is not None:
            return self._on_method(envelope)
        self._count("unknown_message")
        return []

    def on_snapshot(self, symbol: str, body: bytes, now_ns: int) -> list[Action]:
        """Not used: Kraken sends its snapshots on the WebSocket."""
        self._count("unexpected_snapshot")
        return []

    def on_snapshot_failed(self, symbol: str, reason: str, now_ns: int) -> list[Action]:
        """Not used: this dialect never asks for a REST snapshot."""
        self._count("unexpected_snapshot")
        return []

    def on_timer(self, now_ns: int) -> list[Action]:
        """Ping when idle, reconnect on a missing pong or instrument snapshot, resubscribe a
        book whose snapshot does not come."""
        if self._ping_sent_ns is not None:
            if now_ns - self._ping_sent_ns >= self._pong_timeout_ns:
                self._ping_sent_ns = None
                return [Reconnect("pong_missing")]
        elif now_ns - self._last_rx_ns >= self._ping_idle_ns:
            self._ping_sent_ns = now_ns
            return [self._request("ping", None)]
        if not self._subscribed:
            if now_ns - self._opened_ns >= self._snapshot_timeout_ns:
                return [Reconnect("snapshot_timeout")]
            return []
        actions: list[Action] = []
        for symbol, state in self._state.items():
            if not state.live and now_ns - state.since_ns >= self._snapshot_timeout_ns:
                actions.extend(self._resync(symbol, state, "snapshot_timeout", now_ns))
        return actions

    # -- internals ---------------------------------------------------------------

    def _count(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def _request(self, method: str, params: dict[str, Any] | None) -> SendText:
        self._req_id += 1
        body: dict[str, Any] = {"method": method}
        if params is not None:
            body["params"] = params
        body["req_id"] = self._req_id
        return SendText(msgspec.json.encode(body).decode())

    def _book_params(self, symbols: list[str]) -> dict[str, Any]:
        return {"channel": "book", "symbol": symbols, "depth": self.depth, "snapshot": True}

    def _resync(self, symbol: str, state: _Symbol, reason: str, now_ns: int) -> list[Action]:
        state.book.clear()
        state.live = False
        state.since_ns = now_ns
        params = {"channel": "book", "symbol": [symbol], "depth": self.depth}
        return [
            Resync(symbol, reason),
            self._request("unsubscribe", params),
            self._request("subscribe", self._book_params([symbol])),
        ]

    def _resync_all(self, reason: str, now_ns: int) -> list[Action]:
        actions: list[Action] = []
        if not self._subscribed:
            return actions
        for symbol, state in self._state.items():
            actions.extend(self._resync(symbol, state, reason, now_ns))
        return actions

    def _on_instruments(self, envelope: _Envelope, now_ns: int) -> list[Action]:
        try:
            instruments = _INSTRUMENTS.decode(envelope.data)
        except msgspec.DecodeError:
            self._count("unreadable_instrument")
            return [] if self._subscribed else [Reconnect("unreadable")]
        actions: list[Action] = []
        for pair in instruments.pairs:
            state = self._state.get(pair.symbol)
            if state is None:
                continue
            book = state.book
            changed = (book.price_places, book.qty_places) != (
                pair.price_precision,
                pair.qty_precision,
            )
            book.price_places = pair.price_precision
            book.qty_places = pair.qty_precision
            if changed and state.live:
                # The cached checksum fields were written at the old precision.
                actions.extend(self._resync(pair.symbol, state, "precision", now_ns))
        if envelope.type == "snapshot" and not self._subscribed:
            listed = {pair.symbol for pair in instruments.pairs}
            for symbol in self.symbols:
                if symbol not in listed:
                    # Its subscription is sent all the same: the venue's refusal
                    # (counted) is the clearer answer.
                    self._count("unlisted_symbol")
            self._subscribed = True
            symbols = list(self.symbols)
            for state in self._state.values():
                state.since_ns = now_ns
            actions.append(self._request("subscribe", self._book_params(symbols)))
            actions.append(
                self._request(
                    "subscribe", {"channel": "trade", "symbol": symbols, "snapshot": False}
                )
            )
        return actions

    def _on_status(self, envelope: _Envelope) -> list[Action]:
        try:
            statuses = _STATUS.decode(envelope.data)
        except msgspec.DecodeError:
            self._count("unreadable_status")
            return []
        if any(s.system == "maintenance" for s in statuses):
            self._count("maintenance")
            return [Reconnect("maintenance")]
        return []

    def _on_method(self, envelope: _Envelope) -> list[Action]:
        if envelope.success is False:
            result = envelope.result or {}
            channel = result.get("channel")
            self._count(f"{envelope.method}_failed")
            if envelope.method == "subscribe" and channel in (None, "instrument"):
                # Without precisions no checksum can be verified.
                return [Reconnect("subscribe_failed")] if not self._subscribed else []
        return []

    def _on_book(self, envelope: _Envelope, now_ns: int) -> list[Action]:
        try:
            entries = _BOOKS.decode(envelope.data)
        except msgspec.DecodeError:
            self._count("unreadable")
            return self._resync_all("unreadable", now_ns)
        snapshot = envelope.type == "snapshot"
        if not snapshot and envelope.type != "update":
            self._count("unknown_type")
            return self._resync_all("unreadable", now_ns)
        actions: list[Action] = []
        for data in entries:
            symbol = data.symbol
            state = self._state.get(symbol)
            if state is None:
                self._count("unknown_symbol")
                continue
            if not snapshot and not state.live:
                # The tail of a subscription being replaced: its snapshot is on the way.
                self._count("update_before_snapshot")
                continue
            book = state.book
            try:
                if snapshot:
                    book.replace(data.bids, data.asks)
                    bids = asks = _NOTHING
                else:
                    bids, asks = book.apply(data.bids, data.asks)
            except MalformedLevel:
                self._count("malformed_level")
                actions.extend(self._resync(symbol, state, "unreadable", now_ns))
                continue
            if data.checksum is None or book.checksum() != data.checksum:
                self._count("checksum" if data.checksum is not None else "checksum_missing")
                actions.extend(self._resync(symbol, state, "checksum", now_ns))
                continue
            self.checksums_verified += 1
            ts_ns = _ts_ns(data.timestamp)
            if snapshot:
                state.live = True
                bids, asks = book.levels()
                actions.append(BookFrame(symbol, True, bids, asks, ts_ns))
            elif bids or asks:
                actions.append(BookFrame(symbol, False, bids, asks, ts_ns))
        return actions

    def _on_trades(self, envelope: _Envelope) -> list[Action]:
        if envelope.type != "update":
            # Only a snapshot (recent history) could come here; it was not asked for.
            return []
        try:
            trades = _TRADES.decode(envelope.data)
        except msgspec.DecodeError:
            self._count("unreadable_trade")
            return []
        actions: list[Action] = []
        for trade in trades:
            if trade.symbol not in self._state:
                self._count("unknown_symbol")
                continue
            price, qty = trade.price, trade.qty
            if (
                trade.side not in ("buy", "sell")
                or not (price.is_finite() and price > 0)
                or not (qty.is_finite() and qty > 0)
            ):
                # The engine would refuse the frame, and its book would go stale.
                self._count("unreadable_trade")
                continue
            actions.append(
                TradeFrame(
                    trade.symbol,
                    plain(price),
                    plain(qty),
                    trade.side,
                    _ts_ns(trade.timestamp),
                )
            )
        return actions


def _ts_ns(text: str | None) -> int | None:
    """An RFC 3339 timestamp (``2023-10-06T17:35:55.440295Z``) as ns since the epoch."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return (moment - _EPOCH) // _MICROSECOND * 1000
