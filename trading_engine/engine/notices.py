"""Operator warnings: things that work, but not the way the operator thinks.

Each is one log line at WARNING and is counted by kind in
``trading_engine_warnings_total{kind}`` (:data:`KINDS`):

``admin_token``
    No admin token is configured: ``POST /halt``, ``/reduce`` and
    ``/resume`` answer 403 ``{"error":"no admin token is configured"}``,
    so nobody can halt trading through the admin API. Once at start.
``book_off_grid``
    A book that is not live (``awaiting_snapshot`` or ``stale``) while
    frames for its symbol are rejected for a price off its tick grid or a
    size off its lot grid: the publisher's grid is not the configured one,
    and the book may never go live. Checked every few seconds by
    :class:`BookGridWatch`, at most once a minute per symbol and a few
    lines per check; one count per symbol reported.
``journal_venues``
    The journal holds fills of more than one venue, account or fills log
    (a venue accepted as new, a venue reset): its positions and the
    ``journal pnl`` totals mix them. Once at start, after reconciliation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Final

from ..core.builder import BookBuilder, BookState
from ..io.journal import Journal

__all__ = [
    "KINDS",
    "BookGridWatch",
    "Notices",
    "admin_token_notice",
    "journal_venues_notice",
]

log = logging.getLogger("trading_engine.notices")

#: The ``kind`` label values of ``trading_engine_warnings_total``.
KINDS: Final = ("admin_token", "book_off_grid", "journal_venues")

#: The answer of a mutating admin endpoint when no token is configured.
NO_TOKEN_ANSWER: Final = '403 {"error":"no admin token is configured"}'


class Notices:
    """The warnings given so far, by kind (see the module's docstring)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(KINDS, 0)

    def warn(self, kind: str, message: str, count: int = 1) -> None:
        """Log ``message`` (one line, WARNING) and add ``count`` to ``kind``.

        Raises ``KeyError`` for a kind not in :data:`KINDS`.
        """
        self.counts[kind] += count
        log.warning("%s", message)


def admin_token_notice(token_env: str, environ: Mapping[str, str]) -> str | None:
    """The warning for a missing admin token (``[admin] token_env`` unset or empty), or None."""
    if environ.get(token_env):
        return None
    return (
        f"no admin token configured (the environment variable {token_env} is not set): "
        f"POST /halt, /reduce and /resume answer {NO_TOKEN_ANSWER}, so trading cannot be "
        "halted, nor a halted start resumed, through the admin API"
    )


def journal_venues_notice(journal: Journal | None) -> str | None:
    """The warning for a journal written against more than one venue or fills log, or None.

    A single venue row that says it was accepted (``--accept-new-venue``
    over a journal with no venue recorded) warns as well.
    """
    if journal is None:
        return None
    rows = journal.venues()
    accepted = [row for row in rows if row[3].startswith("accepted")]
    if len(rows) <= 1 and not accepted:
        return None
    described = [
        f"{seq}: {'the venue' if identity is None else identity}"
        f"{', a new fills log' if new_log else ''} ({reason})"
        for seq, identity, new_log, reason in rows
    ]
    if rows and rows[0][0] > 1:
        # Fills journaled before the first record carry venue 1.
        described.insert(0, "1: the venue before the first one recorded")
    count = rows[-1][0] if rows else 1
    return (
        f"journal {journal.path} has fills from {count} venue(s) or fills log(s) "
        f"[{'; '.join(described)}]: its positions and `journal pnl` add them up; give each "
        "venue and account its own journal.path"
    )


_NOT_LIVE: Final = (BookState.AWAITING_SNAPSHOT, BookState.STALE)


class BookGridWatch:
    """Warns about books kept from going live by frames off the instrument's grid.

    :meth:`check` looks at every symbol with off-grid rejections
    (:attr:`BookBuilder.off_grid`, kept only for rejected frames, so the
    hot path pays nothing) whose book is ``awaiting_snapshot`` or
    ``stale`` and that had new rejections since it was last reported. A
    symbol is reported at most once per ``repeat_s``, and one check writes
    at most ``max_lines`` lines (the rest in one summary line), so a
    publisher on the wrong grid for 10,000 symbols cannot flood the log.
    """

    def __init__(
        self,
        builder: BookBuilder,
        notices: Notices,
        *,
        repeat_s: float = 60.0,
        max_lines: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.builder = builder
        self.notices = notices
        self.repeat_s = repeat_s
        self.max_lines = max_lines
        self.clock = clock
        #: Per symbol: (rejections counted when last reported, when).
        self._reported: dict[str, tuple[int, float]] = {}

    def check(self) -> list[str]:
        """Report what is due now; returns the lines logged. O(symbols with rejections)."""
        now = self.clock()
        due: list[str] = []
        books = self.builder.books
        for symbol, (count, _) in self.builder.off_grid.items():
            if books[symbol].state not in _NOT_LIVE:
                continue
            seen, at = self._reported.get(symbol, (0, -self.repeat_s))
            if count > seen and now - at >= self.repeat_s:
                due.append(symbol)
        lines = [self._line(symbol) for symbol in due[: self.max_lines]]
        rest = due[self.max_lines :]
        if rest:
            lines.append(
                f"and {len(rest)} more book(s) not live with frames off their grid "
                f"({', '.join(rest[:10])}{', ...' if len(rest) > 10 else ''}); "
                "GET /status lists every book's state"
            )
        for symbol in due:
            self._reported[symbol] = (self.builder.off_grid[symbol][0], now)
        for number, line in enumerate(lines):
            self.notices.warn("book_off_grid", line, 1 if number < self.max_lines else len(rest))
        return lines

    def _line(self, symbol: str) -> str:
        count, detail = self.builder.off_grid[symbol]
        entry = self.builder.books[symbol]
        inst = entry.instrument
        reason, _, value = detail.partition(": ")
        if reason == "off_tick":
            example = f"price {value} is not a multiple of tick_size {inst.tick_size}"
        else:
            example = f"size {value} is not a multiple of lot_size {inst.lot_size}"
        return (
            f"book {symbol} is {entry.state.value}: {count} frame(s) rejected off its grid "
            f"(tick_size {inst.tick_size}, lot_size {inst.lot_size}), last: {example}; "
            "the publisher's grid is not the configured one"
        )

    async def run(self, interval_s: float = 5.0) -> None:
        """Check every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.check()
