"""The order journal: orders, fills and trading-state changes in SQLite.

One SQLite file per engine process (``[journal] path``, default
``state/journal.db``), in WAL mode so that readers (``trading-engine
journal``, a backup) never block the writer. It records:

* each order as submitted (client order id, strategy, symbol, side, type,
  price in ticks, quantity in lots, time in force, run id, wall time);
* each status change with the cumulative filled lots (``order_events``,
  and the order row's current ``status``/``filled``);
* each fill (``fill_id`` from the venue's fills log, NULL from the
  in-process venue) and the fills cursor (the largest ``fill_id`` seen);
* each trading-state change with who asked (``admin``, ``risk``,
  ``journal``, ``supervisor``, ``start-up``) and why;
* each run (its run id, the prefix of its client order ids) and each
  start-up reconciliation's report.

Prices are integer ticks and quantities integer lots; the ``instruments``
table holds each symbol's tick and lot size so the file is readable
without the configuration.

Writes stay off the hot path: the recording methods only append a row to
a list (one tuple, no I/O); every ``[journal] flush_ms`` milliseconds
:meth:`Journal.run` hands what is pending to the journal's own thread,
which writes it in one transaction (SQLite releases the GIL while it
writes, so the event loop runs on). A trading-state change is written at
once, on the caller's thread.

Errors: :class:`JournalError` when the file cannot be opened or created,
is not a database, fails ``PRAGMA integrity_check``, has a schema newer
than this program's, or cannot be written (read-only disk). A write that
fails while running calls ``on_failure`` once with the reason (the engine
halts trading) and keeps the rows for the next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from ..core.errors import EngineError
from ..core.instruments import Instrument
from ..core.orders import Order
from ..lowlevel.metrics import LatencyHistogram
from ..lowlevel.tasks import TaskCrashes

__all__ = [
    "SCHEMA_V1",
    "SCHEMA_VERSION",
    "Journal",
    "JournalError",
    "JournalState",
    "JournaledFill",
    "JournaledOrder",
]

log = logging.getLogger("trading_engine.journal")

#: The schema this program writes. Older files are migrated on open.
SCHEMA_VERSION: Final = 2

#: Version 1 of the schema (kept to test and document the migration).
SCHEMA_V1: Final = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE orders (
    client_order_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    strategy TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    type TEXT NOT NULL,
    price INTEGER,
    quantity INTEGER NOT NULL,
    time_in_force TEXT NOT NULL,
    status TEXT NOT NULL,
    filled INTEGER NOT NULL DEFAULT 0,
    exchange_order_id TEXT,
    reason TEXT,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL
);
CREATE TABLE order_events (
    seq INTEGER PRIMARY KEY,
    client_order_id TEXT NOT NULL,
    status TEXT NOT NULL,
    filled INTEGER NOT NULL,
    reason TEXT,
    ts_ns INTEGER NOT NULL
);
CREATE TABLE fills (
    seq INTEGER PRIMARY KEY,
    fill_id INTEGER UNIQUE,
    client_order_id TEXT NOT NULL,
    strategy TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    price INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL
);
CREATE TABLE cursor (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE trading_state (
    seq INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    who TEXT NOT NULL,
    reason TEXT,
    ts_ns INTEGER NOT NULL
);
INSERT INTO schema_version (version) VALUES (1);
"""

#: Version 1 -> 2: runs (whose client order ids are this engine's),
#: instruments (tick and lot size per symbol), reconciliation reports.
_MIGRATE_1_TO_2: Final = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_ns INTEGER NOT NULL, pid INTEGER NOT NULL);
INSERT OR IGNORE INTO runs (run_id, started_ns, pid)
    SELECT run_id, MIN(created_ns), 0 FROM orders GROUP BY run_id;
CREATE TABLE instruments (
    symbol TEXT PRIMARY KEY, tick_size TEXT NOT NULL, lot_size TEXT NOT NULL
);
CREATE TABLE reconciliations (
    seq INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, report TEXT NOT NULL
);
CREATE INDEX fills_ts ON fills (ts_ns);
CREATE INDEX orders_created ON orders (created_ns);
UPDATE schema_version SET version = 2;
"""

#: Migration scripts by the version they start from.
_MIGRATIONS: Final = {1: _MIGRATE_1_TO_2}

_OPEN_STATES: Final = ("pending_new", "new", "partially_filled", "unknown")

_INSERT_ORDER: Final = (
    "INSERT OR IGNORE INTO orders (client_order_id, run_id, strategy, symbol, side, type, price,"
    " quantity, time_in_force, status, filled, created_ns, updated_ns)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ACCEPTED: Final = "UPDATE orders SET exchange_order_id = ? WHERE client_order_id = ?"
_STATUS: Final = (
    "UPDATE orders SET status = ?, filled = ?, reason = ?, updated_ns = ? WHERE client_order_id = ?"
)
_EVENT: Final = (
    "INSERT INTO order_events (client_order_id, status, filled, reason, ts_ns)"
    " VALUES (?, ?, ?, ?, ?)"
)
_FILL: Final = (
    "INSERT OR IGNORE INTO fills (fill_id, client_order_id, strategy, symbol, side, price,"
    " quantity, ts_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_CURSOR: Final = (
    "INSERT INTO cursor (name, value) VALUES ('fills', ?)"
    " ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)"
)
_STATE: Final = "INSERT INTO trading_state (state, who, reason, ts_ns) VALUES (?, ?, ?, ?)"


class JournalError(EngineError):
    """The journal cannot be used: the message says which file and why."""


@dataclass
class JournaledOrder:
    """An order row as the journal holds it (ticks and lots)."""

    client_order_id: str
    run_id: str
    strategy: str
    symbol: str
    side: str
    type: str
    price: int | None
    quantity: int
    time_in_force: str
    status: str
    filled: int
    exchange_order_id: str | None
    reason: str | None
    created_ns: int
    updated_ns: int

    @property
    def is_open(self) -> bool:
        """Open or of unknown outcome: it must be settled with the venue."""
        return self.status in _OPEN_STATES


@dataclass
class JournaledFill:
    """A fill row (price in ticks, quantity in lots, ``ts_ns`` wall clock)."""

    fill_id: int | None
    client_order_id: str
    strategy: str
    symbol: str
    side: str
    price: int
    quantity: int
    ts_ns: int


@dataclass
class JournalState:
    """What a start-up needs from the journal."""

    runs: set[str] = field(default_factory=set)
    #: Orders still open or of unknown outcome, by client order id.
    open_orders: dict[str, JournaledOrder] = field(default_factory=dict)
    #: Client order id -> strategy, for every order the journal knows.
    owners: dict[str, str] = field(default_factory=dict)
    #: Every fill, oldest first.
    fills: list[JournaledFill] = field(default_factory=list)
    #: The largest ``fill_id`` journaled (0: none).
    fills_cursor: int = 0
    #: The last trading state: (state, who, reason), or None.
    trading_state: tuple[str, str, str | None] | None = None


def _connect(path: str, *, read_only: bool = False) -> sqlite3.Connection:
    if read_only and path != ":memory:":
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        connection = sqlite3.connect(
            uri, uri=True, isolation_level=None, timeout=5.0, check_same_thread=False
        )
    else:
        connection = sqlite3.connect(
            path, isolation_level=None, timeout=5.0, check_same_thread=False
        )
    return connection


class Journal:
    """The order journal of one engine process. Use :meth:`open`."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: str,
        *,
        flush_s: float = 0.005,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.path = path
        #: Fill ids the venue reported again for another fill (see ``_settle``).
        self._conflicts: list[str] = []
        self.fill_id_conflicts = 0
        self.flush_s = flush_s
        self._db = connection
        self._clock_ns = clock_ns
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self.on_failure: Callable[[str], None] | None = None
        #: The reason of the current write failure, None while writes succeed.
        self.failed: str | None = None
        self.rows_written = 0
        self.write_errors = 0
        self.flush_latency = LatencyHistogram()
        self.run_id: str | None = None
        self._task: asyncio.Task[None] | None = None
        #: Transactions run on this thread while the engine trades.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._lock = threading.Lock()
        self._inflight: (
            tuple[list[tuple[str, tuple[Any, ...]]], asyncio.Future[sqlite3.Error | None]] | None
        ) = None

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str,
        *,
        flush_s: float = 0.005,
        synchronous: str = "normal",
        read_only: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> Journal:
        """Open (creating it and its folder if needed) and check the journal at ``path``.

        ``read_only`` opens an existing file for reading only (the
        ``journal`` command), never creating or migrating it. ``clock_ns``
        gives the wall-clock ns the rows are stamped with.
        Raises :class:`JournalError` naming the file and the problem.
        """
        if path == ":memory:":
            log.warning("journal.path is ':memory:': nothing survives a restart")
        elif read_only:
            if not Path(path).is_file():
                raise JournalError(f"journal {path}: no such file")
        else:
            target = Path(path)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalError(
                    f"journal {path}: cannot create its folder: {exc.strerror or exc}"
                ) from exc
            if (target.exists() and not os.access(target, os.W_OK)) or not os.access(
                target.parent, os.W_OK
            ):
                raise JournalError(
                    f"journal {path}: read-only (the file or its folder cannot be written; "
                    "the engine records every order there before it trades)"
                )
        try:
            connection = _connect(path, read_only=read_only)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {path}: cannot be opened: {exc}") from exc
        try:
            _check(connection, path, read_only=read_only, synchronous=synchronous)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, flush_s=flush_s, clock_ns=clock_ns)

    # -- recording (hot path: appends only) -----------------------------------------------

    def begin_run(self, run_id: str, instruments: Iterable[Instrument]) -> None:
        """Record this run (its client order id prefix) and the instruments, at once.

        Raises :class:`JournalError` when an instrument's tick or lot size
        differs from the one the journal recorded: its orders and fills are
        integers of the recorded grid, and read on another grid they would
        be other prices and quantities (a lot of 0.001 read as 0.01 is ten
        times the position).
        """
        instruments = list(instruments)
        recorded = self.instruments()
        for inst in instruments:
            before = recorded.get(inst.symbol)
            if before is None:
                continue
            if Decimal(before.tick_size) != Decimal(inst.tick_size) or Decimal(
                before.lot_size
            ) != Decimal(inst.lot_size):
                raise JournalError(
                    f"journal.path {self.path}: {inst.symbol} was journaled with tick_size "
                    f"{before.tick_size} and lot_size {before.lot_size}, the configuration "
                    f"says {inst.tick_size} and {inst.lot_size}; its orders and fills are in "
                    "the journaled units: use a new journal (journal.path) for a new grid"
                )
        self.run_id = run_id
        now = self._clock_ns()
        self._pending.append(
            ("INSERT OR IGNORE INTO runs (run_id, started_ns, pid) VALUES (?, ?, ?)",
             (run_id, now, os.getpid()))
        )  # fmt: skip
        self._pending.extend(
            (
                "INSERT OR IGNORE INTO instruments (symbol, tick_size, lot_size) VALUES (?, ?, ?)",
                (inst.symbol, str(inst.tick_size), str(inst.lot_size)),
            )
            for inst in instruments
        )
        self.flush(raise_errors=True)

    def order_submitted(self, order: Order, run_id: str | None = None) -> None:
        """The order as submitted (its bytes have already left).

        ``run_id``: the run that sent it, when not this one (reconciliation).
        """
        now = self._clock_ns()
        self._pending.append(
            (
                _INSERT_ORDER,
                (
                    order.client_order_id,
                    self.run_id if run_id is None else run_id,
                    order.strategy,
                    order.symbol,
                    # StrEnum members are str: bound as text, without the
                    # 0.4 us that each ``.value`` costs.
                    order.side,
                    order.type,
                    order.price,
                    order.quantity,
                    order.time_in_force,
                    order.status,
                    order.filled,
                    now,
                    now,
                ),
            )
        )

    def order_accepted(self, order: Order) -> None:
        """The venue's order id for ``order``."""
        self._pending.append((_ACCEPTED, (order.exchange_order_id, order.client_order_id)))

    def order_status(self, order: Order) -> None:
        """``order``'s current status, cumulative filled lots and reason."""
        now = self._clock_ns()
        status = order.status
        self._pending.append(
            (_STATUS, (status, order.filled, order.reason, now, order.client_order_id))
        )
        self._pending.append(
            (_EVENT, (order.client_order_id, status, order.filled, order.reason, now))
        )

    def fill(
        self,
        client_order_id: str,
        strategy: str,
        symbol: str,
        side: str,
        price: int,
        lots: int,
        fill_id: int | None,
        ts_ns: int | None = None,
    ) -> None:
        """One fill (a ``fill_id`` is recorded once; it also advances the cursor)."""
        now = self._clock_ns() if ts_ns is None else ts_ns
        self._pending.append(
            (_FILL, (fill_id, client_order_id, strategy, symbol, side, price, lots, now))
        )
        if fill_id is not None:
            self._pending.append((_CURSOR, (fill_id,)))

    def fills_cursor(self, fill_id: int) -> None:
        """The venue's fills log has been read up to ``fill_id``."""
        self._pending.append((_CURSOR, (fill_id,)))

    def trading_state(self, state: str, who: str, reason: str | None = None) -> None:
        """A trading-state change; written at once (not batched)."""
        self._pending.append((_STATE, (state, who, reason, self._clock_ns())))
        self.flush()

    def reconciliation(self, report: str) -> None:
        """A start-up reconciliation's report (JSON text)."""
        self._pending.append(
            ("INSERT INTO reconciliations (ts_ns, report) VALUES (?, ?)",
             (self._clock_ns(), report))
        )  # fmt: skip

    @property
    def pending(self) -> int:
        """Rows not yet written."""
        return len(self._pending)

    # -- writing ---------------------------------------------------------------------------

    def flush(self, *, raise_errors: bool = False) -> bool:
        """Write every pending row now, in one transaction; False when it failed.

        Runs on the calling thread (start-up, a trading-state change,
        shutdown). A failure keeps the rows for the next attempt, counts
        ``write_errors`` and calls ``on_failure`` (once per run of
        failures); with ``raise_errors`` it raises :class:`JournalError`.
        """
        batch = self._take()
        if not batch:
            return True
        return self._settle(batch, self._write(batch), raise_errors)

    def _take(self) -> list[tuple[str, tuple[Any, ...]]]:
        batch = self._pending
        self._pending = []
        return batch

    def _write(self, batch: list[tuple[str, tuple[Any, ...]]]) -> sqlite3.Error | None:
        """One transaction (on any thread; one at a time); the error, or None."""
        with self._lock:
            db = self._db
            started = time.perf_counter_ns()
            try:
                db.execute("BEGIN")
                for sql, params in batch:
                    written = db.execute(sql, params)
                    if sql is _FILL and written.rowcount == 0:
                        self._check_repeated_fill(db, params)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                return exc
            self.flush_latency.observe_ns(time.perf_counter_ns() - started)
            return None

    def _check_repeated_fill(self, db: sqlite3.Connection, params: tuple[Any, ...]) -> None:
        """A fill id already journaled: the same fill again, or the venue reused the id."""
        fill_id, client_order_id, _, _, _, price, quantity, _ = params
        row = db.execute(
            "SELECT client_order_id, price, quantity FROM fills WHERE fill_id = ?", (fill_id,)
        ).fetchone()
        if row is not None and tuple(row) != (client_order_id, price, quantity):
            self._conflicts.append(
                f"fill_id {fill_id} was journaled for {row[0]} ({row[2]} lots at {row[1]}) "
                f"and is now reported for {client_order_id} ({quantity} lots at {price}): "
                "the venue reused its fill ids (a restarted venue needs a new journal)"
            )

    def _settle(
        self,
        batch: list[tuple[str, tuple[Any, ...]]],
        error: sqlite3.Error | None,
        raise_errors: bool,
    ) -> bool:
        """Account for a written batch (on the loop's thread)."""
        if error is None:
            self.rows_written += len(batch)
            if self.failed is not None:
                log.warning("journal %s: writes succeed again", self.path)
                self.failed = None
            while self._conflicts:
                # The engine and the venue disagree about what happened: halt.
                reason = f"journal {self.path}: {self._conflicts.pop(0)}"
                self.fill_id_conflicts += 1
                log.error("%s", reason)
                if self.on_failure is not None:
                    self.on_failure(reason)
            return True
        self._pending = batch + self._pending
        self.write_errors += 1
        reason = f"journal {self.path}: write failed: {error}"
        if raise_errors:
            raise JournalError(reason) from error
        if self.failed is None:
            self.failed = reason
            log.error("%s", reason)
            if self.on_failure is not None:
                self.on_failure(reason)
        return False

    def start(self, crashes: TaskCrashes | None = None) -> None:
        """Start writing every ``flush_s`` seconds (needs a running loop).

        A crash of the writer task is counted in ``crashes`` and halts
        trading (who ``journal``): rows would no longer reach the file.
        """
        if self._task is None:
            crashes = crashes if crashes is not None else TaskCrashes()
            self._task = crashes.spawn(self.run(), name="journal", kind="journal", halts="journal")

    async def run(self) -> None:
        """Every ``flush_s`` seconds, write the pending rows on the journal's thread.

        SQLite releases the GIL while it writes and syncs, so the event
        loop keeps running while a transaction (or a WAL checkpoint) takes
        its time; one transaction is in flight at a time, in order.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.flush_s)
            batch = self._take()
            if not batch:
                continue
            self._inflight = (batch, loop.run_in_executor(self._writer, self._write, batch))
            error = await asyncio.shield(self._inflight[1])
            self._inflight = None
            self._settle(batch, error, False)

    async def stop(self) -> None:
        """Stop the periodic writes, then write what is pending."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if (current := asyncio.current_task()) is not None and current.cancelling():
                    raise
            except Exception:  # a crash was reported and counted when it happened
                pass
        if self._inflight is not None:
            batch, future = self._inflight
            self._inflight = None
            self._settle(batch, await future, False)
        self.flush()

    def close(self) -> None:
        """Write what is pending and close the file."""
        if self._pending:
            self.flush()
        self._writer.shutdown(wait=True)
        with self._lock:
            self._db.close()

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> JournalState:
        """What start-up reconciliation needs (see :class:`JournalState`)."""
        db = self._db
        state = JournalState()
        state.runs = {row[0] for row in db.execute("SELECT run_id FROM runs")}
        for row in db.execute(f"SELECT {_ORDER_COLUMNS} FROM orders"):
            order = JournaledOrder(*row)
            state.owners[order.client_order_id] = order.strategy
            state.runs.add(order.run_id)
            if order.is_open:
                state.open_orders[order.client_order_id] = order
        state.fills = self.fills()
        cursor = db.execute("SELECT value FROM cursor WHERE name = 'fills'").fetchone()
        state.fills_cursor = 0 if cursor is None else int(cursor[0])
        last = db.execute(
            "SELECT state, who, reason FROM trading_state ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        state.trading_state = None if last is None else (last[0], last[1], last[2])
        return state

    def orders(
        self, since_ns: int | None = None, strategy: str | None = None
    ) -> list[JournaledOrder]:
        """Orders created at or after ``since_ns`` (wall ns), oldest first."""
        sql, params = _filtered(
            f"SELECT {_ORDER_COLUMNS} FROM orders", "created_ns", since_ns, strategy
        )
        rows = self._db.execute(sql + " ORDER BY created_ns, rowid", params)
        return [JournaledOrder(*row) for row in rows]

    def fills(
        self, since_ns: int | None = None, strategy: str | None = None
    ) -> list[JournaledFill]:
        """Fills at or after ``since_ns`` (wall ns), oldest first."""
        sql, params = _filtered(f"SELECT {_FILL_COLUMNS} FROM fills", "ts_ns", since_ns, strategy)
        return [JournaledFill(*row) for row in self._db.execute(sql + " ORDER BY seq", params)]

    def instruments(self) -> dict[str, Instrument]:
        """The instruments the journal recorded, by symbol."""
        return {
            symbol: Instrument(symbol, tick, lot)
            for symbol, tick, lot in self._db.execute(
                "SELECT symbol, tick_size, lot_size FROM instruments"
            )
        }

    def schema_version(self) -> int:
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0])


_ORDER_COLUMNS: Final = (
    "client_order_id, run_id, strategy, symbol, side, type, price, quantity, time_in_force,"
    " status, filled, exchange_order_id, reason, created_ns, updated_ns"
)
_FILL_COLUMNS: Final = "fill_id, client_order_id, strategy, symbol, side, price, quantity, ts_ns"


def _filtered(
    sql: str, time_column: str, since_ns: int | None, strategy: str | None
) -> tuple[str, tuple[Any, ...]]:
    where: list[str] = []
    params: list[Any] = []
    if since_ns is not None:
        where.append(f"{time_column} >= ?")
        params.append(since_ns)
    if strategy is not None:
        where.append("strategy = ?")
        params.append(strategy)
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql, tuple(params)


def _check(connection: sqlite3.Connection, path: str, *, read_only: bool, synchronous: str) -> None:
    """Integrity, schema version and writability; migrates an older schema."""
    try:
        rows = connection.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_CANTOPEN":
            raise JournalError(f"journal {path}: cannot be opened: {exc}") from exc
        raise JournalError(f"journal {path}: corrupt or not an SQLite database: {exc}") from exc
    if rows != [("ok",)]:
        detail = "; ".join(str(row[0]) for row in rows[:3])
        raise JournalError(f"journal {path}: corrupt (PRAGMA integrity_check: {detail})")
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        if read_only:
            if "schema_version" not in tables:
                raise JournalError(f"journal {path}: not a trading-engine journal")
            version = int(connection.execute("SELECT version FROM schema_version").fetchone()[0])
            if version != SCHEMA_VERSION:
                raise JournalError(
                    f"journal {path}: schema version {version}, this program reads "
                    f"{SCHEMA_VERSION} (start the engine once to migrate an older one)"
                )
            return
        connection.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        if path != ":memory:":
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"journal {path}: cannot switch to WAL mode (got {mode})")
        fresh = not tables
        if fresh:
            connection.executescript("BEGIN;" + SCHEMA_V1 + "COMMIT;")
            tables = {"schema_version"}
        if "schema_version" not in tables:
            raise JournalError(f"journal {path}: not a trading-engine journal (no schema_version)")
        version = int(connection.execute("SELECT version FROM schema_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"journal {path}: schema version {version} is newer than this program's "
                f"({SCHEMA_VERSION}); run the newer program or restore a backup"
            )
        while version < SCHEMA_VERSION:
            connection.executescript("BEGIN;" + _MIGRATIONS[version] + "COMMIT;")
            if not fresh:
                log.warning("journal %s: schema migrated from version %d", path, version)
            version = int(connection.execute("SELECT version FROM schema_version").fetchone()[0])
        # Proves the file is writable now (a read-only disk fails here, not mid-trading).
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE schema_version SET version = version")
        connection.execute("COMMIT")
    except JournalError:
        raise
    except sqlite3.Error as exc:
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise JournalError(f"journal {path}: cannot be used: {exc}") from exc
