"""Tardis.dev's ``incremental_book_L2`` and ``trades`` CSV datasets as backtest events.

docs/backtest.md gives the columns and how they are read. Compiled with
mypyc with the core (setup.py ``COMPILED``): a row costs a split and a few
comparisons, and a file holds millions of rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

from ..core.errors import InvalidValue
from ..core.instruments import Instrument
from ..core.protocol import BookMessage, Grid, MessageType, Side, Trade
from .events import DataEvent, bump, unusable
from .files import lines

__all__ = ["MAX_US_DIGITS", "tardis_book", "tardis_trades"]

#: The most digits of a ``local_timestamp`` (us since the epoch): 16 reach the year 2286.
MAX_US_DIGITS: Final = 16
_SNAPSHOT: Final = MessageType.SNAPSHOT
_UPDATE: Final = MessageType.UPDATE
_SIDES: Final = {"buy": Side.BUY, "sell": Side.SELL}


def tardis_book(
    path: Path, instruments: Mapping[str, Instrument], skipped: dict[str, int]
) -> Iterator[DataEvent]:
    """``incremental_book_L2`` rows grouped into messages (see docs/backtest.md).

    Rows of one symbol with the same ``local_timestamp`` and ``is_snapshot``
    are one message; a snapshot row after an update row starts a new book.
    """
    grids = {symbol: Grid(inst) for symbol, inst in instruments.items()}
    #: Symbols whose first snapshot has been read (updates before it are left out).
    started: set[str] = set()
    last = 0
    # The message being gathered: (symbol, local ts, snapshot?) and its levels.
    key: tuple[str, int, bool] | None = None
    bids: list[tuple[int, int]] = []
    asks: list[tuple[int, int]] = []
    previous_snapshot: dict[str, bool] = {}
    # Per symbol, wire bytes -> ticks / lots: rows repeat their prices and sizes.
    prices: dict[bytes, dict[bytes, int]] = {}
    sizes: dict[bytes, dict[bytes, int]] = {}
    names: dict[bytes, str] = {}
    # The previous row's symbol and local time as read, and what they gave: the
    # rows of a message repeat both.
    # (A field never holds a comma: the starting values match no field.)
    previous_raw = b","
    previous_local = b","
    symbol = ""
    price_cache: dict[bytes, int] = {}
    size_cache: dict[bytes, int] = {}
    ts = 0
    rows = lines(path, skipped)
    next(rows, None)  # the header
    for line in rows:
        fields = line.split(b",")
        if len(fields) != 8:
            bump(skipped, "bad_line")
            continue
        _exchange, raw_symbol, _timestamp, local, snapshot_text, side, price, amount = fields
        if raw_symbol != previous_raw:
            known = names.get(raw_symbol)
            if known is None:
                known = raw_symbol.decode("utf-8", "replace")
                if known not in grids:
                    bump(skipped, "unknown_symbol")
                    continue
                names[raw_symbol] = known
                prices[raw_symbol] = {}
                sizes[raw_symbol] = {}
            symbol = known
            price_cache = prices[raw_symbol]
            size_cache = sizes[raw_symbol]
            previous_raw = raw_symbol
        if (snapshot_text != b"true" and snapshot_text != b"false") or (
            side != b"bid" and side != b"ask"
        ):
            bump(skipped, "bad_line")
            continue
        if local != previous_local:
            if not local.isdigit() or len(local) > MAX_US_DIGITS:
                bump(skipped, "bad_line")
                continue
            ts = int(local) * 1000
            previous_local = local
        if ts < last:
            bump(skipped, "out_of_order")
            continue
        last = ts
        snapshot = snapshot_text == b"true"
        if snapshot:
            started.add(symbol)
        elif symbol not in started:
            bump(skipped, "before_snapshot")
            continue
        ticks = price_cache.get(price)
        lots = size_cache.get(amount)
        if ticks is None or lots is None:
            grid = grids[symbol]
            try:
                ticks = grid.price(price.decode("ascii", "replace"))
            except InvalidValue as exc:
                bump(skipped, unusable(exc, "price"))
                continue
            try:
                lots = grid.size(amount.decode("ascii", "replace"))
            except InvalidValue as exc:
                bump(skipped, unusable(exc, "size"))
                continue
            if len(price_cache) > 65536:
                price_cache.clear()
                size_cache.clear()
            price_cache[price] = ticks
            size_cache[amount] = lots
        # A snapshot block goes on while its rows stay snapshot rows, whatever their times.
        if key is not None and (
            key[0] != symbol
            or key[2] != snapshot
            or (key[1] != ts if not snapshot else not previous_snapshot.get(symbol, False))
        ):
            yield _message(key, bids, asks)
            key = None
        previous_snapshot[symbol] = snapshot
        if key is None:
            key = (symbol, ts, snapshot)
            bids = []
            asks = []
        if snapshot and lots == 0:
            continue
        (bids if side == b"bid" else asks).append((ticks, lots))
    if key is not None:
        yield _message(key, bids, asks)


def _message(
    key: tuple[str, int, bool],
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
) -> DataEvent:
    symbol, ts, snapshot = key
    kind = _SNAPSHOT if snapshot else _UPDATE
    return DataEvent(
        ts, symbol, BookMessage(kind, symbol, 0, bids, asks, ts), len(bids) + len(asks)
    )


def tardis_trades(
    path: Path, instruments: Mapping[str, Instrument], skipped: dict[str, int]
) -> Iterator[DataEvent]:
    """``trades`` rows, one trade each; ``side`` is the aggressor (``unknown`` is left out)."""
    grids = {symbol: Grid(inst) for symbol, inst in instruments.items()}
    last = 0
    # Per symbol, the (time, id) of its last trade: a row written twice is left out.
    previous: dict[str, tuple[int, str]] = {}
    rows = lines(path, skipped)
    next(rows, None)  # the header
    for line in rows:
        fields = line.decode("utf-8", "replace").split(",")
        if len(fields) != 8:
            bump(skipped, "bad_line")
            continue
        _exchange, symbol, _timestamp, local, _id, side_text, price, amount = fields
        grid = grids.get(symbol)
        if grid is None:
            bump(skipped, "unknown_symbol")
            continue
        # str.isdigit takes "²" too; more digits than a time in us has are absurd.
        if not (local.isascii() and local.isdigit()) or len(local) > MAX_US_DIGITS:
            bump(skipped, "bad_line")
            continue
        ts = int(local) * 1000
        if ts < last:
            bump(skipped, "out_of_order")
            continue
        last = ts
        if _id:
            if previous.get(symbol) == (ts, _id):
                bump(skipped, "duplicate")
                continue
            previous[symbol] = (ts, _id)
        side = _SIDES.get(side_text)
        if side is None:
            bump(skipped, "trade_side_unknown")
            continue
        try:
            trade_price = grid.price(price)
        except InvalidValue as exc:
            bump(skipped, unusable(exc, "price"))
            continue
        try:
            size = grid.size(amount)
        except InvalidValue as exc:
            bump(skipped, unusable(exc, "size"))
            continue
        if size <= 0:
            bump(skipped, "bad_size")
            continue
        yield DataEvent(ts, symbol, Trade(symbol, 0, trade_price, size, side, ts), 1)
