"""A backtest's events, merged by time (compiled with mypyc).

:class:`DataEvent` is one message of one symbol at a time;
:func:`merge_by_time` merges the files' streams. The readers
(:mod:`.data`, :mod:`.tardis`) count what they leave out with
:func:`bump`. Pure Python, synchronous, no third-party imports: the build
compiles it with the core (setup.py ``COMPILED``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..core.errors import InvalidValue
from ..core.protocol import BookMessage, Rejected, Trade

__all__ = [
    "DataError",
    "DataEvent",
    "bump",
    "merge_by_time",
    "unusable",
]


class DataError(Exception):
    """A data file that cannot be read; the message names it (the command exits 2)."""


class DataEvent:
    """One message for one symbol at ``ts_ns``.

    ``message``: a :class:`BookMessage` or :class:`Trade` to apply, a
    :class:`Rejected` frame of an engine capture (the builder counts it and
    its sequencing effect), or None for a resynchronization (``reason``):
    the venue's stream of ``symbol`` broke and its book cannot be trusted
    until the next snapshot. ``levels``: the book events it holds (levels
    changed, or 1 for a trade). ``numbered``: the message's ``seq`` is the
    recorded one (engine captures); otherwise it is 0 and the runner numbers
    each symbol's messages in the merged order.
    """

    __slots__ = ("levels", "message", "numbered", "reason", "symbol", "ts_ns")

    def __init__(
        self,
        ts_ns: int,
        symbol: str,
        message: BookMessage | Trade | Rejected | None,
        levels: int,
        reason: str | None = None,
        numbered: bool = False,
    ) -> None:
        self.numbered = numbered
        self.ts_ns = ts_ns
        self.symbol = symbol
        self.message = message
        self.levels = levels
        self.reason = reason

    def __repr__(self) -> str:
        return f"DataEvent({self.ts_ns}, {self.symbol!r}, {self.message!r}, {self.reason!r})"


def bump(skipped: dict[str, int], reason: str, by: int = 1) -> None:
    skipped[reason] = skipped.get(reason, 0) + by


def unusable(exc: InvalidValue, what: str) -> str:
    """The skip reason of a number that failed to parse: ``off_grid`` for a value
    between the instrument's ticks or lots, else ``bad_<what>`` (negative, not a
    number, malformed, too long), so the count points at the data, not the grids."""
    return "off_grid" if exc.reason.startswith("off_") else f"bad_{what}"


def merge_by_time(streams: Sequence[Iterator[DataEvent]]) -> Iterator[DataEvent]:
    """The events of ``streams`` (each in time order) in time order, stable.

    At equal times the stream given first goes first (as :func:`heapq.merge`
    with a key, which this replaces on the backtest's path: a few streams,
    one comparison per stream and event, no tuple per event).
    ``O(events * streams)``.
    """
    heads: list[DataEvent] = []
    live: list[Iterator[DataEvent]] = []
    for stream in streams:
        first = next(stream, None)
        if first is not None:
            heads.append(first)
            live.append(stream)
    while len(live) > 1:
        best = 0
        best_ts = heads[0].ts_ns
        for index in range(1, len(heads)):
            ts = heads[index].ts_ns
            if ts < best_ts:
                best = index
                best_ts = ts
        yield heads[best]
        following = next(live[best], None)
        if following is None:
            del heads[best]
            del live[best]
        else:
            heads[best] = following
    if live:
        yield heads[0]
        yield from live[0]
