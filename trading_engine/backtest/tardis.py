"""Tardis.dev's ``incremental_book_L2`` and ``trades`` CSV datasets as backtest events.

docs/backtest.md gives the columns and how they are read. Compiled with
mypyc with the core (setup.py ``COMPILED``): a book row costs a scan for
its last three commas, two digit loops and a few comparisons, and a file
holds millions of rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

from mypy_extensions import i64

from ..core.errors import InvalidValue
from ..core.instruments import Instrument
from ..core.protocol import BookMessage, Grid, MessageType, Side, Trade
from .events import DataEvent, bump, unusable
from .files import line_blocks, lines

__all__ = ["MAX_US_DIGITS", "tardis_book", "tardis_trades"]

#: The most digits of a ``local_timestamp`` (us since the epoch): 16 reach the year 2286.
MAX_US_DIGITS: Final = 16
_SNAPSHOT: Final = MessageType.SNAPSHOT
_UPDATE: Final = MessageType.UPDATE
_SIDES: Final = {"buy": Side.BUY, "sell": Side.SELL}
#: Stands for a symbol's instrument before the first usable row (never used then).
_NO_INSTRUMENT: Final = Instrument("-", "1", "1")
#: Whether this module runs compiled (mypyc builds it as an extension module).
_COMPILED: Final = not __file__.endswith(".py")
#: Distinct numbers an interpreted reader keeps per symbol and kind.
_CACHE_LIMIT: Final = 65536


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
    names: dict[bytes, str] = {}
    # A row is its head (exchange, symbol, timestamp, local_timestamp,
    # is_snapshot) and its level (side, price, amount). The rows of a message
    # repeat their head, so a head is read once per run of equal heads: what it
    # gave is kept, including why its rows are left out (``head_skip``).
    previous_head = b"\n"  # no line holds a newline: the first row's head is always read
    head_skip = ""
    # A new head's first usable row decides whether the message being gathered ends.
    fresh = True
    symbol = ""
    snapshot = False
    instrument = _NO_INSTRUMENT  # the current head's, once a head was usable
    # Per symbol, interpreted only: wire bytes -> ticks, and -> lots.
    caches: dict[str, tuple[dict[bytes, int], dict[bytes, int]]] = {}
    price_cache: dict[bytes, int] = {}
    size_cache: dict[bytes, int] = {}
    ts = 0
    header = True
    for block in line_blocks(path, skipped):
        for line in block:
            if header:
                header = False
                continue
            # head,side,price,amount: the last three commas, found from the right.
            if _COMPILED:
                # Native byte loops: no call, and no object until a field is needed.
                c3 = len(line) - 1
                while c3 >= 0 and line[c3] != 44:
                    c3 -= 1
                c2 = c3 - 1
                while c2 >= 0 and line[c2] != 44:
                    c2 -= 1
                c1 = c2 - 1
                while c1 >= 0 and line[c1] != 44:
                    c1 -= 1
            else:
                c3 = line.rfind(b",")
                c2 = line.rfind(b",", 0, c3) if c3 > 0 else -1
                c1 = line.rfind(b",", 0, c2) if c2 > 0 else -1
            # ``side`` is "bid" or "ask": three bytes between the first two commas.
            if c1 < 0 or c2 - c1 != 4:
                bump(skipped, "bad_line")
                continue
            first = line[c1 + 1]
            if first == 98 and line[c1 + 2] == 105 and line[c1 + 3] == 100:
                is_bid = True
            elif first == 97 and line[c1 + 2] == 115 and line[c1 + 3] == 107:
                is_bid = False
            else:
                bump(skipped, "bad_line")
                continue
            head = line[:c1]
            if head != previous_head:
                previous_head = head
                fresh = True
                head_skip = ""
                raw_symbol, ts, flag = _head(head)
                if flag == _NOT_FIVE:
                    head_skip = "bad_line"
                else:
                    known = names.get(raw_symbol)
                    if known is None:
                        known = raw_symbol.decode("utf-8", "replace")
                        if known in grids:
                            names[raw_symbol] = known
                    if known not in grids:
                        head_skip = "unknown_symbol"
                    elif flag < 0 or ts < 0:
                        head_skip = "bad_line"
                    else:
                        if ts < last:
                            head_skip = "out_of_order"
                        else:
                            last = ts
                            symbol = known
                            instrument = instruments[known]
                            if not _COMPILED:
                                pair = caches.get(known)
                                if pair is None:
                                    pair = caches[known] = ({}, {})
                                price_cache, size_cache = pair
                            snapshot = flag == 1
                            if snapshot:
                                started.add(symbol)
                            elif symbol not in started:
                                head_skip = "before_snapshot"
            if head_skip:
                bump(skipped, head_skip)
                continue
            if _COMPILED:
                ticks = instrument.plain_price_ticks(line, c2 + 1, c3)
                lots = instrument.plain_size_lots(line, c3 + 1, len(line))
            else:
                # Interpreted, the digit loop costs more than a lookup, and rows
                # repeat their numbers (compiled, the loop costs less).
                price = line[c2 + 1 : c3]
                amount = line[c3 + 1 :]
                ticks = price_cache.get(price, -1)
                if ticks < 0:
                    ticks = instrument.plain_price_ticks(price)
                    if ticks >= 0 and len(price_cache) < _CACHE_LIMIT:
                        price_cache[price] = ticks
                lots = size_cache.get(amount, -1)
                if lots < 0:
                    lots = instrument.plain_size_lots(amount)
                    if lots >= 0 and len(size_cache) < _CACHE_LIMIT:
                        size_cache[amount] = lots
            if ticks < 0 or lots < 0:
                grid = grids[symbol]
                price = line[c2 + 1 : c3]
                amount = line[c3 + 1 :]
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
            if fresh:
                fresh = False
                # A snapshot block goes on while its rows stay snapshot rows,
                # whatever their times.
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
            (bids if is_bid else asks).append((ticks, lots))
    if key is not None:
        yield _message(key, bids, asks)


#: :func:`_head`'s flag for a head that is not five fields.
_NOT_FIVE: Final = -2
#: The most microseconds whose nanoseconds a machine integer holds.
_I64_US: Final = (2**63 - 1) // 1000


def _head(head: bytes) -> tuple[bytes, int, int]:
    """A book row's head ``exchange,symbol,timestamp,local_timestamp,is_snapshot``:
    (symbol, local time in ns, snapshot flag).

    The time is -1 unless ``local_timestamp`` is 1 to :data:`MAX_US_DIGITS`
    ASCII digits; the flag is 1 for ``true``, 0 for ``false``, -1 for
    anything else, and :data:`_NOT_FIVE` (the other two then say nothing)
    when the head is not five fields.
    """
    if not _COMPILED:
        fields = head.split(b",")
        if len(fields) != 5:
            return b"", -1, _NOT_FIVE
        local = fields[3]
        snapshot = fields[4]
        micros = int(local) if 0 < len(local) <= MAX_US_DIGITS and local.isdigit() else -1
        flag = 1 if snapshot == b"true" else 0 if snapshot == b"false" else -1
        return fields[1], micros * 1000 if micros >= 0 else -1, flag
    # Compiled: native loops over the head's bytes, one object (the symbol).
    length = len(head)
    commas = 0
    p1 = p2 = p3 = p4 = -1
    for index in range(length):
        if head[index] == 44:
            commas += 1
            if commas == 1:
                p1 = index
            elif commas == 2:
                p2 = index
            elif commas == 3:
                p3 = index
            elif commas == 4:
                p4 = index
            else:
                return b"", -1, _NOT_FIVE
    if commas != 4:
        return b"", -1, _NOT_FIVE
    ts = -1
    digits = p4 - p3 - 1
    if 0 < digits <= MAX_US_DIGITS:
        us: i64 = 0
        for index in range(p3 + 1, p4):
            code: i64 = head[index]
            if code < 48 or code > 57:
                us = -1
                break
            us = us * 10 + (code - 48)
        if us >= 0:
            ts = int(us * 1000) if us <= _I64_US else int(us) * 1000
    flag = -1
    rest = length - p4 - 1
    if rest == 4 and head[p4 + 1 : length] == b"true":
        flag = 1
    elif rest == 5 and head[p4 + 1 : length] == b"false":
        flag = 0
    return head[p1 + 1 : p2], ts, flag


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
