"""Venue market-data dialects, sans I/O: what a feed handler does with a venue's messages.

A feed handler (``trading-engine feed``) connects to a venue's public
market-data API and publishes the engine's own feed protocol to the
engines' ingest ports. The venue-specific part is a :class:`FeedDialect`:
a synchronous state machine that is fed what arrived (a WebSocket text
message, a REST snapshot's body, the passing of time) and answers with
:data:`Action` values saying what to do (send this on the socket, fetch a
snapshot, publish these levels, resynchronize a symbol). It never does
I/O itself, so each venue's sequencing and checksum rules are tested
directly on recorded messages, and the same dialect decodes a capture in
a backtest.

The runtime (``trading_engine.io.feedhandler``) owns the sockets, the
back-off, the engines' sequence numbers and the metrics. It numbers each
engine symbol's frames: a :class:`BookFrame` with ``snapshot=True`` is
sent as a ``snapshot`` frame, one with ``snapshot=False`` as an
``update``. On :class:`Resync` it makes the engine's book stale at once
(it sends an empty ``update`` one sequence number ahead: a gap, by the
feed protocol's rule) and counts the reason; the dialect's next snapshot
of that symbol makes the book live again.

Prices and sizes stay the venue's decimal strings: the engine's decoder
puts them on the instrument's grid (a price off the grid is a counted
reject there, never a crash here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Action",
    "BookFrame",
    "FeedDialect",
    "FetchSnapshot",
    "Reconnect",
    "Resync",
    "SendText",
    "TradeFrame",
    "VenueInstrument",
]


@dataclass(frozen=True, slots=True)
class SendText:
    """Send ``text`` on the venue's WebSocket (a subscription, a pong, an application ping)."""

    text: str


@dataclass(frozen=True, slots=True)
class FetchSnapshot:
    """GET ``url`` (the venue's REST depth snapshot of ``symbol``) and hand the
    body to :meth:`FeedDialect.on_snapshot`; a failed fetch is retried by the
    runtime with back-off (and reported with :meth:`FeedDialect.on_snapshot_failed`).
    """

    symbol: str
    url: str


@dataclass(frozen=True, slots=True)
class BookFrame:
    """Levels of the venue symbol ``symbol`` to publish.

    ``snapshot``: the whole visible book (published as a ``snapshot`` frame);
    else the levels that changed (an ``update``: size ``"0"`` removes).
    ``bids``/``asks``: ``(price, size)`` decimal strings as the venue sent
    them. ``ts_ns``: the venue's event time in ns since the epoch, if any.
    """

    symbol: str
    snapshot: bool
    bids: Sequence[tuple[str, str]]
    asks: Sequence[tuple[str, str]]
    ts_ns: int | None = None


@dataclass(frozen=True, slots=True)
class TradeFrame:
    """A print on ``symbol``; ``side`` is the aggressor (``"buy"`` or ``"sell"``)."""

    symbol: str
    price: str
    size: str
    side: str
    ts_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Resync:
    """``symbol``'s book cannot be trusted until its next snapshot.

    ``reason`` is a short metric label (``gap``, ``checksum``,
    ``snapshot_stale``, ...): the runtime counts it and makes the
    engine's book stale at once. The dialect has already asked for what
    brings the next snapshot (a :class:`SendText` resubscription or a
    :class:`FetchSnapshot`) in the same list of actions.
    """

    symbol: str
    reason: str


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Close the connection and connect again after back-off (every symbol resyncs).

    ``reason``: a short metric label (``venue_closed``, ``maintenance``,
    ``unreadable``, ``pong_missing``...).
    """

    reason: str


Action = SendText | FetchSnapshot | BookFrame | TradeFrame | Resync | Reconnect


class FeedDialect(Protocol):
    """One venue's market-data rules; one instance per connection's symbols.

    Symbols are the venue's own names (``BTCUSDT``, ``BTC-USDT``,
    ``BTC/USD``). Every method returns the actions to take, in order.
    Unreadable venue messages are counted by the dialect (``errors``) and
    answered with :class:`Resync` or :class:`Reconnect`, never raised.
    """

    #: The venue's name as the command line spells it (``binance``).
    venue: str
    #: Counters of what the dialect ignored or refused, by reason (read by the runtime).
    errors: dict[str, int]

    def connect_url(self, ws_url: str) -> str:
        """The WebSocket URL to open, given the base URL (some venues name streams in it)."""
        ...

    def on_open(self, now_ns: int) -> list[Action]:
        """The connection is open: subscriptions and snapshot fetches. Resets all book state."""
        ...

    def on_message(self, text: str, now_ns: int) -> list[Action]:
        """One text message from the venue."""
        ...

    def on_snapshot(self, symbol: str, body: bytes, now_ns: int) -> list[Action]:
        """The body of a :class:`FetchSnapshot` answer (HTTP 200)."""
        ...

    def on_snapshot_failed(self, symbol: str, reason: str, now_ns: int) -> list[Action]:
        """A :class:`FetchSnapshot` failed (``reason``: a metric label); usually fetch again."""
        ...

    def on_timer(self, now_ns: int) -> list[Action]:
        """Called about once a second: application pings, missing-pong and snapshot timeouts."""
        ...


@dataclass(frozen=True, slots=True)
class VenueInstrument:
    """One instrument as the venue's public metadata describes it (decimal strings).

    ``tick_size``: the price increment; ``lot_size``: the quantity
    increment; ``min_quantity`` and ``min_notional`` (price times quantity,
    in the quote currency): the venue's smallest order, None where the
    venue states none.
    """

    symbol: str
    tick_size: str
    lot_size: str
    min_quantity: str | None = None
    min_notional: str | None = None
    #: The asset traded and the asset prices are in (``BTC``, ``USDT``), where the venue says.
    base_asset: str | None = None
    quote_asset: str | None = None
