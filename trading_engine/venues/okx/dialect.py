"""OKX v5 public WebSocket: the ``books`` and ``trades`` channels, sans I/O.

The rules, each from OKX's API documentation
(https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel):

* ``books`` sends a 400-level snapshot (``action: snapshot``,
  ``prevSeqId`` -1) and then updates (``action: update``) every 100 ms.
  An update continues the chain when its ``prevSeqId`` is the ``seqId``
  of the message before it; anything else is a gap. Two documented
  exceptions: an update with ``seqId == prevSeqId`` (and no levels) says
  "nothing changed, still alive"; an update with ``seqId < prevSeqId``
  follows a sequence reset for maintenance and is in order as long as its
  ``prevSeqId`` continues the chain.
* A level is ``[price, size, "0", orders]``; size ``0`` deletes the price.
  Prices and sizes must be plain decimal text (a price above zero); a
  level that is not re-syncs the book (``unreadable``), a trade that is
  not is dropped (``unreadable_trade``).
* Before OKX numbered them (recordings up to 2023), book messages carry
  no ``seqId``/``prevSeqId``: such a snapshot starts a chain kept by the
  checksum alone (a lost update shows as a mismatch), and a numbered
  update continues it from its own ``seqId``. An unnumbered update after
  a numbered snapshot is ``unreadable``. ``books-l2-tbt`` and
  ``books50-l2-tbt`` push the same format as ``books`` and are read alike.
* The ``checksum`` is the signed CRC32 of the top 25 levels
  (:mod:`.checksum`), verified after every message. OKX has announced
  that the field becomes 0 on every message (the seqId chain then being
  the integrity check), so a checksum of 0 is counted as absent, never as
  a mismatch.
* A gap or a mismatch unsubscribes and subscribes that instrument's
  ``books`` again (a new snapshot follows) and reports :class:`Resync`.
* Keepalive: OKX closes a connection silent for 30 s; the client sends
  the text ``ping`` when it has heard nothing for a while and expects
  ``pong`` (https://www.okx.com/docs-v5/en/#overview-websocket-connect).
* ``event: error`` and ``event: notice`` (a service upgrade: "the
  connection will soon be closed") reconnect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from ...core.feeds import (
    Action,
    BookFrame,
    Reconnect,
    Resync,
    SendText,
    TradeFrame,
)
from .book import PLAIN_DECIMAL, MalformedLevel, OkxBook

__all__ = ["OkxDialect"]

#: The order book channels that push the ``books`` format (asks, bids, ts,
#: checksum, seqId): ``books`` every 100 ms, the ``-l2-tbt`` ones on every
#: change. The dialect subscribes ``books``; a recording of the others (a
#: backtest's data) builds the same book.
_BOOK_CHANNELS: Final = frozenset({"books", "books-l2-tbt", "books50-l2-tbt"})
_NS_PER_MS: Final = 1_000_000
_NS_PER_S: Final = 1_000_000_000


class _Arg(msgspec.Struct, rename="camel"):
    channel: str = ""
    inst_id: str = ""


class _Envelope(msgspec.Struct):
    event: str | None = None
    arg: _Arg | None = None
    action: str | None = None
    # Decoded once the channel is known; empty when the message has no data.
    data: msgspec.Raw = msgspec.Raw()
    code: str | None = None
    msg: str | None = None


class _BookData(msgspec.Struct, rename="camel"):
    asks: list[list[str]] = []
    bids: list[list[str]] = []
    ts: str | None = None
    checksum: int = 0
    prev_seq_id: int | None = None
    seq_id: int | None = None


class _Trade(msgspec.Struct, rename="camel"):
    inst_id: str
    px: str
    sz: str
    side: str
    ts: str | None = None


_ENVELOPE: Final = msgspec.json.Decoder(_Envelope)
_BOOK_DATA: Final = msgspec.json.Decoder(list[_BookData])
_TRADES: Final = msgspec.json.Decoder(list[_Trade])


class _Symbol:
    """One instrument's state on this connection."""

    __slots__ = ("book", "live", "seq", "since_ns")

    def __init__(self) -> None:
        self.book = OkxBook()
        #: A snapshot has been applied and every message since continued it.
        self.live = False
        #: ``seqId`` of the last message applied.
        self.seq: int | None = None
        #: When the subscription was (re)sent or the last book message came.
        self.since_ns = 0


class OkxDialect:
    """The OKX market-data dialect for ``symbols`` (``BTC-USDT``), one connection.

    Counters: ``errors`` (by reason, what was ignored or refused),
    ``checksums_verified`` and ``checksums_absent`` (messages whose
    checksum field was 0). Times are in ns from the runtime's clock.
    """

    venue = "okx"

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        ping_idle_s: float = 20.0,
        pong_timeout_s: float = 10.0,
        snapshot_timeout_s: float = 15.0,
        stall_timeout_s: float = 90.0,
    ) -> None:
        if not symbols:
            raise ValueError("okx: at least one symbol is needed")
        self.symbols: tuple[str, ...] = tuple(dict.fromkeys(symbols))
        self.errors: dict[str, int] = {}
        self.checksums_verified = 0
        self.checksums_absent = 0
        self._ping_idle_ns = int(ping_idle_s * _NS_PER_S)
        self._pong_timeout_ns = int(pong_timeout_s * _NS_PER_S)
        self._snapshot_timeout_ns = int(snapshot_timeout_s * _NS_PER_S)
        # OKX sends a no-change update after about 60 s of a quiet book.
        self._stall_ns = int(stall_timeout_s * _NS_PER_S)
        self._state: dict[str, _Symbol] = {s: _Symbol() for s in self.symbols}
        self._last_rx_ns = 0
        self._ping_sent_ns: int | None = None

    # -- the FeedDialect protocol ------------------------------------------------

    def connect_url(self, ws_url: str) -> str:
        """OKX names channels in subscriptions, not in the URL: ``ws_url`` as given."""
        return ws_url

    def on_open(self, now_ns: int) -> list[Action]:
        """Subscribe ``books`` and ``trades`` for every symbol; every book waits for a snapshot."""
        self._last_rx_ns = now_ns
        self._ping_sent_ns = None
        args: list[dict[str, str]] = []
        for symbol, state in self._state.items():
            self._reset(state, now_ns)
            args.append({"channel": "books", "instId": symbol})
            args.append({"channel": "trades", "instId": symbol})
        return [SendText(_op("subscribe", args))]

    def on_message(self, text: str, now_ns: int) -> list[Action]:
        """One text message: a book or trade push, an event, or ``pong``."""
        self._last_rx_ns = now_ns
        self._ping_sent_ns = None
        if text == "pong":
            return []
        try:
            envelope = _ENVELOPE.decode(text)
        except msgspec.DecodeError:
            # A lost book message breaks the seqId chain, which the next
            # book message of that instrument detects: nothing to guess here.
            self._count("unreadable")
            return []
        if envelope.event is not None:
            return self._on_event(envelope)
        arg = envelope.arg
        if arg is None or not envelope.data:
            self._count("unknown_message")
            return []
        state = self._state.get(arg.inst_id)
        if state is None:
            self._count("unknown_symbol")
            return []
        if arg.channel in _BOOK_CHANNELS:
            return self._on_book(arg.inst_id, state, envelope.action, envelope.data, now_ns)
        if arg.channel == "trades":
            return self._on_trades(arg.inst_id, envelope.data)
        self._count("unknown_channel")
        return []

    def on_snapshot(self, symbol: str, body: bytes, now_ns: int) -> list[Action]:
        """Not used: OKX sends its snapshots on the WebSocket."""
        self._count("unexpected_snapshot")
        return []

    def on_snapshot_failed(self, symbol: str, reason: str, now_ns: int) -> list[Action]:
        """Not used: this dialect never asks for a REST snapshot."""
        self._count("unexpected_snapshot")
        return []

    def on_timer(self, now_ns: int) -> list[Action]:
        """Ping when idle, reconnect on a missing pong, resubscribe a stalled book."""
        if self._ping_sent_ns is not None:
            if now_ns - self._ping_sent_ns >= self._pong_timeout_ns:
                self._ping_sent_ns = None
                return [Reconnect("pong_missing")]
        elif now_ns - self._last_rx_ns >= self._ping_idle_ns:
            self._ping_sent_ns = now_ns
            return [SendText("ping")]
        actions: list[Action] = []
        for symbol, state in self._state.items():
            waited = now_ns - state.since_ns
            if not state.live and waited >= self._snapshot_timeout_ns:
                actions.extend(self._resync(symbol, state, "snapshot_timeout", now_ns))
            elif state.live and waited >= self._stall_ns:
                actions.extend(self._resync(symbol, state, "stalled", now_ns))
        return actions

    # -- internals ---------------------------------------------------------------

    def _count(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    @staticmethod
    def _reset(state: _Symbol, now_ns: int) -> None:
        state.book.clear()
        state.live = False
        state.seq = None
        state.since_ns = now_ns

    def _resync(self, symbol: str, state: _Symbol, reason: str, now_ns: int) -> list[Action]:
        self._reset(state, now_ns)
        arg = [{"channel": "books", "instId": symbol}]
        return [
            Resync(symbol, reason),
            SendText(_op("unsubscribe", arg)),
            SendText(_op("subscribe", arg)),
        ]

    def _on_event(self, envelope: _Envelope) -> list[Action]:
        event = envelope.event
        if event in ("subscribe", "unsubscribe", "channel-conn-count"):
            return []
        if event == "notice":
            # e.g. code 64008: the connection closes soon for a service upgrade.
            self._count("notice")
            return [Reconnect("maintenance")]
        if event == "error":
            # A refused subscription names its instrument in the message (code
            # 60018: "...instId:BTC-XYZ doesn't exist"): reconnecting would not
            # help it and would cost every other symbol its book. It stays
            # without a snapshot, so the snapshot timeout retries it.
            text = envelope.msg or ""
            if envelope.code == "60018" and any(s in text for s in self.symbols):
                self._count("subscribe_failed")
                return []
            self._count("venue_error")
            return [Reconnect("venue_error")]
        self._count("unknown_event")
        return []

    def _on_book(
        self, symbol: str, state: _Symbol, action: str | None, raw: msgspec.Raw, now_ns: int
    ) -> list[Action]:
        try:
            entries = _BOOK_DATA.decode(raw)
        except msgspec.DecodeError:
            self._count("unreadable")
            return self._resync(symbol, state, "unreadable", now_ns)
        actions: list[Action] = []
        for data in entries:
            if action == "snapshot":
                step = self._on_book_snapshot(symbol, state, data, now_ns)
            elif action == "update":
                step = self._on_book_update(symbol, state, data, now_ns)
            else:
                self._count("unknown_action")
                step = self._resync(symbol, state, "unreadable", now_ns)
            actions.extend(step)
            if not state.live:
                break
        return actions

    def _on_book_snapshot(
        self, symbol: str, state: _Symbol, data: _BookData, now_ns: int
    ) -> list[Action]:
        # A snapshot without seqId is OKX's format from before it numbered book
        # messages (recordings up to 2023): its chain is kept by the checksum alone.
        book = state.book
        try:
            book.replace(data.bids, data.asks)
        except MalformedLevel:
            self._count("malformed_level")
            return self._resync(symbol, state, "unreadable", now_ns)
        if not self._checksum_ok(book, data.checksum):
            return self._resync(symbol, state, "checksum", now_ns)
        state.seq = data.seq_id
        state.live = True
        state.since_ns = now_ns
        bids, asks = book.levels()
        return [BookFrame(symbol, True, bids, asks, _ts_ns(data.ts))]

    def _on_book_update(
        self, symbol: str, state: _Symbol, data: _BookData, now_ns: int
    ) -> list[Action]:
        if not state.live:
            # The tail of a subscription being replaced: its snapshot is on the way.
            self._count("update_before_snapshot")
            return []
        seq, prev = data.seq_id, data.prev_seq_id
        if state.seq is None and seq is None and prev is None:
            # Unnumbered, after an unnumbered snapshot: the checksum below is the
            # only check, and a lost update shows as its mismatch.
            pass
        elif seq is None or prev is None:
            self._count("unreadable")
            return self._resync(symbol, state, "unreadable", now_ns)
        elif state.seq is not None and prev != state.seq:
            self._count("gap")
            return self._resync(symbol, state, "gap", now_ns)
        state.since_ns = now_ns
        try:
            bids, asks = state.book.apply(data.bids, data.asks)
        except MalformedLevel:
            self._count("malformed_level")
            return self._resync(symbol, state, "unreadable", now_ns)
        if not self._checksum_ok(state.book, data.checksum):
            return self._resync(symbol, state, "checksum", now_ns)
        # seq == prev is the documented keepalive; seq < prev follows a reset.
        state.seq = seq
        if not bids and not asks:
            return []
        return [BookFrame(symbol, False, bids, asks, _ts_ns(data.ts))]

    def _checksum_ok(self, book: OkxBook, expected: int) -> bool:
        if expected == 0:
            self.checksums_absent += 1
            return True
        if book.checksum() != expected:
            self._count("checksum")
            return False
        self.checksums_verified += 1
        return True

    def _on_trades(self, symbol: str, raw: msgspec.Raw) -> list[Action]:
        try:
            trades = _TRADES.decode(raw)
        except msgspec.DecodeError:
            self._count("unreadable_trade")
            return []
        actions: list[Action] = []
        for trade in trades:
            if (
                trade.side not in ("buy", "sell")
                or trade.inst_id != symbol
                or not _positive(trade.px)
                or not _positive(trade.sz)
            ):
                # The engine would refuse the frame, and its book would go stale.
                self._count("unreadable_trade")
                continue
            actions.append(TradeFrame(symbol, trade.px, trade.sz, trade.side, _ts_ns(trade.ts)))
        return actions


def _positive(text: str) -> bool:
    """A plain decimal above zero."""
    return PLAIN_DECIMAL.fullmatch(text) is not None and bool(text.strip("0."))


def _op(op: str, args: list[dict[str, str]]) -> str:
    return msgspec.json.encode({"op": op, "args": args}).decode()


def _ts_ns(ts: str | None) -> int | None:
    """OKX's millisecond timestamp string as ns since the epoch (None when absent or unreadable)."""
    if not ts or not ts.isdigit():
        return None
    return int(ts) * _NS_PER_MS
