"""A backtest's market data: recorded files read as one stream of book events.

Three formats, told apart by their first line (never by the file's name),
each plain or gzip-compressed (told by the gzip magic bytes ``1f 8b``) and
read line by line, never whole:

* the engine's own captures (``run --capture``, ``[feed] capture_path``;
  :mod:`trading_engine.io.capture`): feed-protocol frames with their
  receive times, decoded by the engine's own decoder;
* the feed handler's venue captures (``[[feeds]] capture_path``;
  :mod:`trading_engine.io.venue_capture`): raw Binance, OKX or Kraken
  messages, decoded by the same :class:`~trading_engine.core.feeds.FeedDialect`
  as live (the venue is told by the URL of the capture's ``open`` line);
* Tardis.dev's CSV datasets ``incremental_book_L2`` and ``trades``
  (docs/backtest.md gives their columns and how they are read).

Every event carries the data's clock in ns since the epoch (engine
captures: the capture's receive clock): the time the message was received
where it was recorded. Several files are merged by that time (a stable
merge: at equal times, the file named first goes first).

Bad input is never silent: a file that cannot be read at all (missing,
empty, an unknown format, a corrupt or truncated gzip stream) raises
:class:`DataError` naming it; a line that cannot be used is left out and
counted in ``skipped`` by reason (``out_of_order``, ``duplicate``, ``cut_line``,
``bad_line``, ``unknown_symbol``, ``off_grid``, ``bad_price``, ``bad_size``,
``bad_level``, ``before_snapshot``,
``resync_gap``...), which the result reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

from ..config import Config
from ..core.errors import ConfigError, InvalidValue
from ..core.feeds import BookFrame, Reconnect, Resync, TradeFrame
from ..core.instruments import Instrument
from ..core.protocol import (
    BookMessage,
    Decoder,
    Grid,
    Heartbeat,
    MessageType,
    Rejected,
    Side,
    Trade,
)
from ..io.venue_capture import CaptureEvent
from ..venues.registry import venue as venue_named
from .events import DataError, DataEvent, merge_by_time
from .events import bump as _bump
from .events import unusable as _unusable
from .files import GZIP_ERRORS
from .files import lines as _lines
from .files import open_data as _open
from .tardis import tardis_book as _tardis_book
from .tardis import tardis_trades as _tardis_trades

__all__ = ["DataError", "DataEvent", "detect_format", "read_data"]

#: The most digits of a capture's receive time (ns since the epoch): 19 reach the year 2286.
_MAX_NS_DIGITS: Final = 19
_TARDIS_BOOK: Final = b"exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
_TARDIS_TRADES: Final = b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
_VENUE_LINE: Final = re.compile(rb"^[0-9]+\t(open|ws|snapshot|snapshot_failed|close|out)\t")
_ENGINE_LINE: Final = re.compile(rb"^[0-9]+\t[{\[]")
_VENUE_KINDS: Final = frozenset({"open", "ws", "snapshot", "snapshot_failed", "close", "out"})
_SNAPSHOT: Final = MessageType.SNAPSHOT
_UPDATE: Final = MessageType.UPDATE
_SIDES: Final = {"buy": Side.BUY, "sell": Side.SELL}


def detect_format(path: str | Path) -> str:
    """``engine_capture``, ``venue_capture``, ``tardis_book`` or ``tardis_trades``.

    Raises :class:`DataError` for a file that is missing, empty, not a
    readable gzip stream, or in none of those formats.
    """
    path = Path(path)
    handle = _open(path)
    try:
        try:
            first = handle.readline(65536)
        except GZIP_ERRORS as exc:
            raise DataError(f"{path}: corrupt or truncated gzip data: {exc}") from exc
    finally:
        handle.close()
    if not first:
        raise DataError(f"{path}: empty file")
    head = first.rstrip(b"\r\n")
    if head == _TARDIS_BOOK:
        return "tardis_book"
    if head == _TARDIS_TRADES:
        return "tardis_trades"
    if head.startswith(b"exchange,"):
        raise DataError(
            f"{path}: a CSV header this reader does not know (another Tardis data type, or a "
            f"typo): a Tardis incremental_book_L2 file starts with {_TARDIS_BOOK.decode()}, "
            f"a trades file with {_TARDIS_TRADES.decode()}"
        )
    if _VENUE_LINE.match(head):
        return "venue_capture"
    if _ENGINE_LINE.match(head):
        return "engine_capture"
    raise DataError(
        f"{path}: unknown format (not an engine capture, a venue capture or a Tardis CSV "
        "with its header line)"
    )


def read_data(
    paths: Sequence[str | Path], config: Config, skipped_by_file: dict[str, dict[str, int]]
) -> Iterator[DataEvent]:
    """Every file's events merged by time; counts what each file leaves out.

    ``skipped_by_file`` gets one dict per file (keyed by ``str(path)``): reason ->
    lines or messages left out, filled while the stream is read.

    Raises :class:`DataError` (before the first event for a file that
    cannot be opened or whose format is unknown; while reading for a
    corrupt gzip stream).
    """
    instruments = config.instrument_map()
    streams: list[Iterator[DataEvent]] = []
    for raw in paths:
        path = Path(raw)
        kind = detect_format(path)
        skipped = skipped_by_file.setdefault(str(raw), {})
        if kind == "engine_capture":
            streams.append(_engine_capture(path, instruments, skipped))
        elif kind == "venue_capture":
            streams.append(_venue_capture(path, config, instruments, skipped))
        elif kind == "tardis_book":
            streams.append(_tardis_book(path, instruments, skipped))
        else:
            streams.append(_tardis_trades(path, instruments, skipped))
    if len(streams) == 1:
        return streams[0]
    return merge_by_time(streams)


# -- the engine's own captures ------------------------------------------------------


def _engine_capture(
    path: Path, instruments: Mapping[str, Instrument], skipped: dict[str, int]
) -> Iterator[DataEvent]:
    decoder = Decoder(instruments)
    last = 0
    for line in _lines(path, skipped):
        stamp, tab, frame = line.partition(b"\t")
        if not tab or not stamp.isdigit() or len(stamp) > _MAX_NS_DIGITS:
            _bump(skipped, "bad_line")
            continue
        ts = int(stamp)
        if ts < last:
            _bump(skipped, "out_of_order")
            continue
        last = ts
        message = decoder.decode(frame)
        if type(message) is Heartbeat:
            continue
        if type(message) is Rejected:
            rejected: Rejected = message
            _bump(skipped, rejected.reason.value)
            yield DataEvent(ts, rejected.symbol or "", rejected, 0, numbered=True)
        elif type(message) is BookMessage:
            book: BookMessage = message
            yield DataEvent(ts, book.symbol, book, len(book.bids) + len(book.asks), numbered=True)
        elif type(message) is Trade:
            trade: Trade = message
            yield DataEvent(ts, trade.symbol, trade, 1, numbered=True)


# -- the feed handler's venue captures ----------------------------------------------


def _venue_of(url: str) -> str | None:
    host = url.split("://", 1)[-1].split("/", 1)[0].lower()
    for name in ("binance", "okx", "kraken"):
        if name in host:
            return name
    return None


def _venue_symbols(
    config: Config, venue: str, instruments: Mapping[str, Instrument]
) -> dict[str, str]:
    """Venue symbol -> engine symbol: ``venue``'s ``[[feeds]]`` entries, else the instruments'."""
    mapping: dict[str, str] = {}
    for entry in config.feeds:
        if entry.venue == venue:
            mapping.update(entry.engine_symbols())
    if not mapping:
        mapping = {symbol: symbol for symbol in instruments}
    return {v: e for v, e in mapping.items() if e in instruments}


def _venue_events(path: Path, skipped: dict[str, int]) -> Iterator[CaptureEvent]:
    for line in _lines(path, skipped):
        parts = line.split(b"\t", 3)
        if len(parts) != 4 or not parts[0].isdigit() or len(parts[0]) > _MAX_NS_DIGITS:
            _bump(skipped, "bad_line")
            continue
        kind = parts[1].decode("ascii", "replace")
        if kind not in _VENUE_KINDS:
            _bump(skipped, "bad_line")
            continue
        yield CaptureEvent(int(parts[0]), kind, parts[2].decode("utf-8", "replace"), parts[3])


def _venue_capture(
    path: Path, config: Config, instruments: Mapping[str, Instrument], skipped: dict[str, int]
) -> Iterator[DataEvent]:
    grids = {symbol: Grid(inst) for symbol, inst in instruments.items()}
    events = _venue_events(path, skipped)
    dialect = None
    symbols: dict[str, str] = {}
    last = 0
    for event in events:
        if event.recv_ns < last:
            _bump(skipped, "out_of_order")
            continue
        last = event.recv_ns
        if dialect is None:
            if event.kind != "open":
                _bump(skipped, "before_open")
                continue
            name = _venue_of(event.key)
            if name is None:
                raise DataError(f"{path}: cannot tell the venue from the URL {event.key!r}")
            try:
                symbols = _venue_symbols(config, name, instruments)
                dialect = venue_named(name).feed_dialect(
                    list(symbols), venue_named(name).default_rest_url
                )
            except ConfigError as exc:
                raise DataError(f"{path}: {exc}") from exc
        ts = event.recv_ns
        if event.kind == "open":
            actions = dialect.on_open(ts)
        elif event.kind == "ws":
            actions = dialect.on_message(event.payload.decode("utf-8", "replace"), ts)
        elif event.kind == "snapshot":
            actions = dialect.on_snapshot(event.key, event.payload, ts)
        elif event.kind == "snapshot_failed":
            actions = dialect.on_snapshot_failed(
                event.key, event.payload.decode("utf-8", "replace"), ts
            )
        else:
            continue
        for action in actions:
            if isinstance(action, BookFrame):
                symbol = symbols.get(action.symbol)
                if symbol is None:
                    _bump(skipped, "unknown_symbol")
                    continue
                out = _book_frame(action, symbol, grids[symbol], ts, skipped)
                if out is not None:
                    yield out
            elif isinstance(action, TradeFrame):
                symbol = symbols.get(action.symbol)
                if symbol is None:
                    _bump(skipped, "unknown_symbol")
                    continue
                out = _trade_frame(action, symbol, grids[symbol], ts, skipped)
                if out is not None:
                    yield out
            elif isinstance(action, Resync):
                symbol = symbols.get(action.symbol)
                if symbol is not None:
                    _bump(skipped, f"resync_{action.reason}")
                    yield DataEvent(ts, symbol, None, 0, action.reason)
            elif isinstance(action, Reconnect):
                _bump(skipped, f"reconnect_{action.reason}")
                for symbol in symbols.values():
                    yield DataEvent(ts, symbol, None, 0, action.reason)
    if dialect is not None:
        for reason, count in dialect.errors.items():
            # A resynchronization is counted once, as resync_<reason>.
            if count and f"resync_{reason}" not in skipped:
                _bump(skipped, f"venue_{reason}", count)


def _levels(levels: Iterable[tuple[str, str]], grid: Grid, snapshot: bool) -> list[tuple[int, int]]:
    """Raises InvalidValue for a price or size off the grid."""
    price_of = grid.price
    size_of = grid.size
    out = []
    for price, size in levels:
        lots = size_of(size)
        if snapshot and lots == 0:
            continue
        out.append((price_of(price), lots))
    return out


def _book_frame(
    frame: BookFrame,
    symbol: str,
    grid: Grid,
    ts: int,
    skipped: dict[str, int],
) -> DataEvent | None:
    try:
        bids = _levels(frame.bids, grid, frame.snapshot)
        asks = _levels(frame.asks, grid, frame.snapshot)
    except InvalidValue as exc:
        _bump(skipped, _unusable(exc, "level"))
        return None
    kind = _SNAPSHOT if frame.snapshot else _UPDATE
    return DataEvent(
        ts, symbol, BookMessage(kind, symbol, 0, bids, asks, ts), len(bids) + len(asks)
    )


def _trade_frame(
    frame: TradeFrame,
    symbol: str,
    grid: Grid,
    ts: int,
    skipped: dict[str, int],
) -> DataEvent | None:
    side = _SIDES.get(frame.side)
    if side is None:
        _bump(skipped, "trade_side_unknown")
        return None
    try:
        price = grid.price(frame.price)
    except InvalidValue as exc:
        _bump(skipped, _unusable(exc, "price"))
        return None
    try:
        size = grid.size(frame.size)
    except InvalidValue as exc:
        _bump(skipped, _unusable(exc, "size"))
        return None
    if size <= 0:
        _bump(skipped, "bad_size")
        return None
    return DataEvent(ts, symbol, Trade(symbol, 0, price, size, side, ts), 1)
