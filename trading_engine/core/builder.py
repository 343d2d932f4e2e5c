"""The book builder: the market-data protocol's book rules, exactly.

One :class:`BookEntry` per configured symbol holds its :class:`OrderBook`,
its :class:`BookState` and its last applied sequence number. State machine
(rule numbers as in docs/protocol.md, "Book rules")::

                     snapshot (1)
    awaiting_snapshot ───────────► live ◄──────────────┐
            │                      │  ▲                │
            │ update/trade:        │  │ message that   │ snapshot (1)
            │ ignored (5)          │  │ uncrosses (6)  │
            ▼                      ▼  │                │
      (stays awaiting)          crossed ───────────────┤
                                   │                   │
          gap (4), bad next-seq    │                   │
          frame (8), disconnect,   ▼                   │
          idle, seq > 2**64-1 ►  stale ────────────────┘
                                 updates/trades ignored (9)

A snapshot from any state replaces the book whatever its ``seq``; it lands
in ``crossed`` instead of ``live`` if the snapshot itself is crossed.

A *rejected snapshot* for a book that is live or crossed makes it stale
whatever its ``seq`` (docs/protocol.md, rule 8). The publisher was
resyncing or restarting its sequence, so later updates would otherwise be
taken as duplicates while the book silently went out of date.

Everything here is synchronous and allocation-light; the feed server calls
:meth:`BookBuilder.handle` once per frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Final, Protocol

from .book import OrderBook
from .instruments import Instrument
from .protocol import (
    SEQ_MAX,
    BookMessage,
    Decoder,
    Grid,
    Heartbeat,
    Message,
    MessageType,
    Reason,
    Rejected,
    Trade,
    wire_levels,
)
from .wire import WireError, WireUpdate, decode_wire

__all__ = ["BookBuilder", "BookEntry", "BookListener", "BookState"]


class BookState(StrEnum):
    """Where a symbol's book stands. Only ``live`` books reach strategies."""

    AWAITING_SNAPSHOT = "awaiting_snapshot"
    LIVE = "live"
    STALE = "stale"
    CROSSED = "crossed"


_AWAITING: Final = BookState.AWAITING_SNAPSHOT
_LIVE: Final = BookState.LIVE
_STALE: Final = BookState.STALE
_CROSSED: Final = BookState.CROSSED
_SNAPSHOT: Final = MessageType.SNAPSHOT
_UPDATE: Final = MessageType.UPDATE
_TRADE: Final = MessageType.TRADE
_HEARTBEAT: Final = MessageType.HEARTBEAT
_SEQ_OUT_OF_RANGE: Final = Reason.SEQ_OUT_OF_RANGE
#: How a rejection's detail starts when a price or size is off the instrument's grid.
_OFF_GRID: Final = ("off_tick:", "off_lot:")


class BookEntry:
    """One symbol's book, state and sequence. Owned by the builder."""

    __slots__ = ("_grid", "book", "instrument", "seq", "state", "symbol")

    _grid: Final[Grid]
    instrument: Final[Instrument]
    symbol: Final[str]
    book: Final[OrderBook]
    state: BookState
    seq: int | None

    def __init__(self, instrument: Instrument, grid: Grid) -> None:
        self._grid = grid
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.book = OrderBook(instrument.symbol)
        self.state = _AWAITING
        #: Last applied sequence number; None until the first snapshot.
        self.seq = None

    def __repr__(self) -> str:
        return f"BookEntry({self.symbol!r}, {self.state.value}, seq={self.seq})"


class BookListener(Protocol):
    """What the builder tells the rest of the engine. Called synchronously."""

    def on_book(self, entry: BookEntry, recv_ns: int) -> None:
        """A message was applied to a book that is live afterwards."""

    def on_trade(self, entry: BookEntry, trade: Trade, recv_ns: int) -> None:
        """A trade was accepted for a book that is live."""

    def on_state(self, entry: BookEntry, previous: BookState) -> None:
        """A book changed state (for example live -> stale)."""


class BookBuilder:
    """Applies decoded messages to per-symbol books under the protocol's rules.

    ``rejected`` counts every ignored or rejected frame by :class:`Reason`;
    ``accepted`` counts accepted frames by :class:`MessageType`;
    ``transitions`` counts state changes by ``(previous, new)``;
    ``off_grid`` holds, per configured symbol, how many frames were
    rejected for a price off its tick grid or a size off its lot grid and
    the detail of the last one (``"off_tick: '100.005'"``).
    """

    __slots__ = (
        "_decoder",
        "_listener",
        "accepted",
        "books",
        "off_grid",
        "rejected",
        "transitions",
    )

    _decoder: Final[Decoder]
    _listener: BookListener | None
    books: Final[dict[str, BookEntry]]
    rejected: Final[dict[Reason, int]]
    accepted: Final[dict[MessageType, int]]
    transitions: Final[dict[tuple[BookState, BookState], int]]
    off_grid: Final[dict[str, tuple[int, str]]]

    def __init__(
        self, instruments: Iterable[Instrument], listener: BookListener | None = None
    ) -> None:
        by_symbol = {inst.symbol: inst for inst in instruments}
        decoder = Decoder(by_symbol)
        self._decoder = decoder
        self.books = {
            symbol: BookEntry(inst, decoder.grid(symbol)) for symbol, inst in by_symbol.items()
        }
        self._listener = listener
        self.rejected = dict.fromkeys(Reason, 0)
        self.accepted = dict.fromkeys(MessageType, 0)
        self.transitions = {}
        self.off_grid = {}

    @property
    def instruments(self) -> Mapping[str, Instrument]:
        """The configured instruments by symbol."""
        return {symbol: entry.instrument for symbol, entry in self.books.items()}

    def set_listener(self, listener: BookListener | None) -> None:
        """Attach the engine's dispatch (or detach it with None)."""
        self._listener = listener

    def handle(
        self, frame: bytes | bytearray | memoryview, recv_ns: int = 0
    ) -> BookEntry | Reason | None:
        """Decode and apply one frame.

        Returns the :class:`BookEntry` the frame was applied to, ``None``
        for a heartbeat, or the :class:`Reason` it was ignored or rejected
        (already counted).

        The common case, a valid in-sequence update of a live or crossed
        book, is decoded (msgspec, typed) and applied inline. Anything else,
        or anything the inline path doubts, goes the general way
        (:meth:`Decoder.decode` semantics, then :meth:`apply`): the inline
        path applies a message whole exactly when the general path would,
        or touches nothing.
        """
        decoder = self._decoder
        try:
            wire = decode_wire(frame)
        except WireError:
            return self.apply(decoder.decode_reference(frame), recv_ns)
        if type(wire) is WireUpdate:
            update: WireUpdate = wire
            entry = self.books.get(update.symbol)
            if entry is not None:
                state = entry.state
                last = entry.seq
                seq: int = update.seq
                if (
                    (state is _LIVE or state is _CROSSED)
                    and last is not None
                    and seq == last + 1
                    and seq <= SEQ_MAX
                ):
                    grid = entry._grid
                    bids = wire_levels(update.bids, grid, False)
                    if bids is not None:
                        asks = wire_levels(update.asks, grid, False)
                        if asks is not None:
                            entry.book.apply(bids, asks)
                            entry.seq = seq
                            self.accepted[_UPDATE] += 1
                            return self._after_apply(entry, recv_ns)
        try:
            message = decoder.from_wire(wire)
        except Exception:  # never raises: the reference path decides
            message = None
        if message is None:
            return self.apply(decoder.decode_reference(frame), recv_ns)
        return self.apply(message, recv_ns)

    def apply(self, msg: Message | Rejected, recv_ns: int = 0) -> BookEntry | Reason | None:
        """Apply one decoded message; see :meth:`handle`."""
        if isinstance(msg, BookMessage):
            return self._book_message(msg, recv_ns)
        if isinstance(msg, Trade):
            return self._trade(msg, recv_ns)
        if isinstance(msg, Heartbeat):
            self.accepted[_HEARTBEAT] += 1
            return None
        return self._rejected(msg)

    def reject(self, reason: Reason) -> Reason:
        """Count a frame rejected before decoding (for example oversized)."""
        self.rejected[reason] += 1
        return reason

    def mark_stale(self, symbols: Iterable[str]) -> None:
        """Make live or crossed books stale until their next snapshot.

        Used when the connection that fed them dropped or went silent.
        """
        books = self.books
        for symbol in symbols:
            entry = books.get(symbol)
            if entry is not None and entry.state in (_LIVE, _CROSSED):
                self._set_state(entry, _STALE)

    def check(self) -> None:
        """Check every book's invariants and the state/crossing agreement."""
        for entry in self.books.values():
            entry.book._check()
            if entry.state is _LIVE and entry.book.is_crossed():
                raise AssertionError(f"{entry.symbol} is live but crossed")
            if entry.state is _AWAITING and (entry.seq is not None or entry.book.bid_levels):
                raise AssertionError(f"{entry.symbol} awaits a snapshot but has data")

    # -- internals ------------------------------------------------------

    def _set_state(self, entry: BookEntry, state: BookState) -> None:
        previous = entry.state
        entry.state = state
        key = (previous, state)
        self.transitions[key] = self.transitions.get(key, 0) + 1
        if self._listener is not None:
            self._listener.on_state(entry, previous)

    def _sequence(self, entry: BookEntry, seq: int) -> Reason | None:
        """Rules 2-5 and 9 for an update or trade: None when it applies."""
        state = entry.state
        if state is _STALE:
            return Reason.STALE
        if state is _AWAITING:
            return Reason.BEFORE_SNAPSHOT
        last = entry.seq
        if last is None or seq <= last:
            return Reason.DUPLICATE
        if seq != last + 1:
            self._set_state(entry, _STALE)
            return Reason.GAP
        return None

    def _book_message(self, msg: BookMessage, recv_ns: int) -> BookEntry | Reason:
        entry = self.books[msg.symbol]
        book = entry.book
        if msg.type is _SNAPSHOT:
            book.replace(msg.bids, msg.asks)
        else:
            reason = self._sequence(entry, msg.seq)
            if reason is not None:
                self.rejected[reason] += 1
                return reason
            book.apply(msg.bids, msg.asks)
        entry.seq = msg.seq
        self.accepted[msg.type] += 1
        return self._after_apply(entry, recv_ns)

    def _after_apply(self, entry: BookEntry, recv_ns: int) -> BookEntry:
        """Rule 6 after a message changed levels, then tell the listener."""
        book = entry.book
        bid = book.best_bid
        ask = book.best_ask
        if bid is not None and ask is not None and bid >= ask:
            if entry.state is not _CROSSED:
                self._set_state(entry, _CROSSED)
            return entry
        if entry.state is not _LIVE:
            self._set_state(entry, _LIVE)
        listener = self._listener
        if listener is not None:
            listener.on_book(entry, recv_ns)
        return entry

    def _trade(self, trade: Trade, recv_ns: int) -> BookEntry | Reason:
        entry = self.books[trade.symbol]
        reason = self._sequence(entry, trade.seq)
        if reason is not None:
            self.rejected[reason] += 1
            return reason
        entry.seq = trade.seq
        self.accepted[_TRADE] += 1
        listener = self._listener
        if listener is not None and entry.state is _LIVE:
            listener.on_trade(entry, trade, recv_ns)
        return entry

    def _rejected(self, msg: Rejected) -> Reason:
        reason = msg.reason
        self.rejected[reason] += 1
        symbol = msg.symbol
        if symbol is None:
            return reason
        entry = self.books.get(symbol)
        if entry is not None and msg.detail.startswith(_OFF_GRID):
            # Kept for the operator: a book that never goes live because the
            # publisher's grid is not the configured one says why.
            count = self.off_grid.get(symbol, (0, ""))[0]
            self.off_grid[symbol] = (count + 1, msg.detail)
        if entry is None or entry.state not in (_LIVE, _CROSSED):
            return reason
        if msg.seq is None:
            if reason is _SEQ_OUT_OF_RANGE:
                # A sequence number the book cannot follow: no later update
                # could be applied in order, so the levels would freeze.
                self._set_state(entry, _STALE)
            return reason
        last = entry.seq
        if last is None or msg.seq > last or msg.kind == "snapshot":
            # Rule 8: the bad frame took a sequence number the book needed.
            self._set_state(entry, _STALE)
        return reason
