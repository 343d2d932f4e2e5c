"""The order journal: orders, fills and trading-state changes in SQLite.

One SQLite file per engine process (``[journal] path``, default
``state/journal.db``), in WAL mode so that readers (``trading-engine
journal``, a backup) never block the writer. It records:

* each order as submitted (client order id, strategy, symbol, side, type,
  price in ticks, quantity in lots, time in force, run id, wall time, the
  strategy's tag and the post-only flag);
* each status change with the cumulative filled lots (``order_events``,
  and the order row's current ``status``/``filled``);
* each fill (``fill_id`` from the venue's fills log, NULL from the
  in-process venue) with its fee (and the venue's own amount and asset,
  when it reports one), and one fills cursor per fills *stream* (the
  largest ``fill_id`` seen in it; see below);
* each trading-state change with who asked (``admin``, ``risk``,
  ``journal``, ``supervisor``, ``start-up``) and why;
* each run (its run id, the prefix of its client order ids) and each
  start-up reconciliation's report;
* the venue's pause (a 429's ``Retry-After``) and ban (a 418) that end
  last, which a process started again honours before its first request.

Prices are integer ticks and quantities integer lots; the ``instruments``
table holds each symbol's tick and lot size so the file is readable
without the configuration.

Writes stay off the hot path and off the event loop: the recording
methods only append a row to a list (one tuple, no I/O); every
``[journal] flush_ms`` milliseconds :meth:`Journal.run` hands what is
pending to the journal's own thread, which writes it in one transaction
(SQLite releases the GIL while it writes, so the event loop runs on). A
trading-state change wakes that writer at once, but the caller never
waits for it: a halt's cancels leave before its row is durable. The
loop never waits on an SQLite lock; only the writer thread does, and a
write that has not completed within ``[journal] write_timeout_s`` (another
process holding a write transaction, a stuck disk) halts trading.

One engine owns a journal: :meth:`Journal.open` takes an exclusive OS
lock (``flock``) on ``<journal>.lock``, which records the holder's pid and
host; a second engine on the same file is refused, naming the holder.
The kernel releases the lock when the process ends, crash included.
Read-only opens (the ``journal`` command) take no lock.

The writer also checks, at every transaction and at least once a second,
that the path still names the file it opened (device and inode): a
journal removed or replaced under a running engine halts trading.

The journal records the venue it was written against (the gateway's
base URL and a fingerprint of its API key, never the key): start-up
reconciliation compares it with the configured one (see
:func:`~trading_engine.engine.reconcile.check_venue`). Fill ids are
unique per recorded venue (a venue accepted as new numbers its fills
from 1 again).

Fills streams: a venue numbers its fills in one log (the own API: the
stream ``*``, :data:`~trading_engine.io.order_api.ALL_SYMBOLS`) or in one
log per symbol (Binance: trade ids start at 1 for every symbol; the
stream is the symbol). Each stream has its own cursor (the ``cursor`` row
``fills:<stream>``; the stream ``*``'s is the row ``fills``), written in
the same transaction as the fills it covers, and a fill id is unique per
(venue log, stream). The engine says which streams its venue has
(:meth:`Journal.use_fill_streams`); a journal written before streams were
kept holds one cursor, the stream ``*``'s, which a per-symbol venue takes
as the cursor of the one symbol that journal traded
(:meth:`Journal.fills_cursors`, :meth:`Journal.adopt_fill_streams`).

Errors: :class:`JournalError` when the file cannot be opened or created,
is not a database, fails ``PRAGMA integrity_check``, has a schema newer
than this program's, or cannot be written (read-only disk). A write that
fails while running calls ``on_failure`` once with the reason (the engine
halts trading) and keeps the rows for the next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from ..core.errors import EngineError
from ..core.instruments import Instrument
from ..core.orders import Order
from ..lowlevel.metrics import LatencyHistogram
from ..lowlevel.tasks import TaskCrashes
from .order_api import ALL_SYMBOLS

__all__ = [
    "SCHEMA_V1",
    "SCHEMA_VERSION",
    "Journal",
    "JournalError",
    "JournalLocked",
    "JournalState",
    "JournaledFill",
    "JournaledOrder",
    "VenueIdentity",
]

log = logging.getLogger("trading_engine.journal")

#: The schema this program writes. Older files are migrated on open.
SCHEMA_VERSION: Final = 5

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

#: Version 2 -> 3: the venues the journal was written against, and fill ids
#: unique per venue (a venue accepted as new numbers its fills from 1 again).
_MIGRATE_2_TO_3: Final = """
CREATE TABLE venues (
    seq INTEGER PRIMARY KEY,
    base_url TEXT NOT NULL,
    key_fingerprint TEXT NOT NULL,
    new_fills_log INTEGER NOT NULL,
    reason TEXT NOT NULL,
    ts_ns INTEGER NOT NULL
);
CREATE TABLE fills_v3 (
    seq INTEGER PRIMARY KEY,
    venue INTEGER NOT NULL DEFAULT 1,
    fill_id INTEGER,
    client_order_id TEXT NOT NULL,
    strategy TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    price INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL,
    UNIQUE (venue, fill_id)
);
INSERT INTO fills_v3 (seq, venue, fill_id, client_order_id, strategy, symbol, side, price,
    quantity, ts_ns)
    SELECT seq, 1, fill_id, client_order_id, strategy, symbol, side, price, quantity, ts_ns
    FROM fills;
DROP TABLE fills;
ALTER TABLE fills_v3 RENAME TO fills;
CREATE INDEX fills_ts ON fills (ts_ns);
CREATE INDEX fills_order ON fills (client_order_id);
UPDATE schema_version SET version = 3;
"""

#: Version 3 -> 4: each order's strategy tag and post-only flag; each fill's fee
#: (tick*lot units, negative for a rebate; NULL in rows written before fees).
_MIGRATE_3_TO_4: Final = """
ALTER TABLE orders ADD COLUMN tag TEXT;
ALTER TABLE orders ADD COLUMN post_only INTEGER NOT NULL DEFAULT 0;
ALTER TABLE fills ADD COLUMN fee INTEGER;
UPDATE schema_version SET version = 4;
"""

#: Version 4 -> 5: fills streams (a fill id is unique per venue log and stream;
#: the one cursor ``fills`` stays the stream ``*``'s) and the venue's own
#: fee of each fill (its amount as the venue wrote it, and its asset).
_MIGRATE_4_TO_5: Final = """
CREATE TABLE fills_v5 (
    seq INTEGER PRIMARY KEY,
    venue INTEGER NOT NULL DEFAULT 1,
    stream TEXT NOT NULL DEFAULT '*',
    fill_id INTEGER,
    client_order_id TEXT NOT NULL,
    strategy TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    price INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL,
    fee INTEGER,
    venue_fee TEXT,
    fee_asset TEXT,
    UNIQUE (venue, stream, fill_id)
);
INSERT INTO fills_v5 (seq, venue, stream, fill_id, client_order_id, strategy, symbol, side,
    price, quantity, ts_ns, fee)
    SELECT seq, venue, '*', fill_id, client_order_id, strategy, symbol, side, price, quantity,
    ts_ns, fee FROM fills;
DROP TABLE fills;
ALTER TABLE fills_v5 RENAME TO fills;
CREATE INDEX fills_ts ON fills (ts_ns);
CREATE INDEX fills_order ON fills (client_order_id);
UPDATE schema_version SET version = 5;
"""

#: Migration scripts by the version they start from.
_MIGRATIONS: Final = {
    1: _MIGRATE_1_TO_2,
    2: _MIGRATE_2_TO_3,
    3: _MIGRATE_3_TO_4,
    4: _MIGRATE_4_TO_5,
}

_OPEN_STATES: Final = ("pending_new", "new", "partially_filled", "unknown")

_INSERT_ORDER: Final = (
    "INSERT OR IGNORE INTO orders (client_order_id, run_id, strategy, symbol, side, type, price,"
    " quantity, time_in_force, status, filled, created_ns, updated_ns, tag, post_only)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
    "INSERT OR IGNORE INTO fills (venue, fill_id, client_order_id, strategy, symbol, side, price,"
    " quantity, ts_ns, fee, stream, venue_fee, fee_asset)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_CURSOR: Final = (
    "INSERT INTO cursor (name, value) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)"
)
#: The ``cursor`` rows of the venue's pauses, per base URL (a ban is the
#: client's, whatever the key): ``venue_<kind>_<heard|until>_ms:<base URL>``,
#: kind ``paused`` (the last 429's ``Retry-After``) or ``banned`` (the last
#: 418), when it was heard and when it ends, wall-clock milliseconds.
_PAUSE_ROW: Final = "venue_{kind}_{what}_ms:{base_url}"
_SET: Final = (
    "INSERT INTO cursor (name, value) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)
#: The ``cursor`` row of a fills stream is named ``fills:<stream>``; the stream
#: ``*`` (a venue with one fills log) keeps the row ``fills`` it always had.
_CURSOR_PREFIX: Final = "fills:"


def _pause_key(venue: VenueIdentity | None) -> str:
    """The base URL a venue's pauses are kept under, spelled one way: scheme and
    host in lower case, no default port, no trailing slash."""
    if venue is None:
        return ""
    parts = urlsplit(venue.base_url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path.rstrip('/')}"


def _cursor_name(stream: str) -> str:
    return "fills" if stream == ALL_SYMBOLS else _CURSOR_PREFIX + stream


_STATE: Final = "INSERT INTO trading_state (state, who, reason, ts_ns) VALUES (?, ?, ?, ?)"


class JournalError(EngineError):
    """The journal cannot be used: the message says which file and why."""


class JournalLocked(JournalError):
    """Another engine holds the journal (the message names its pid and host)."""


@dataclass(frozen=True)
class VenueIdentity:
    """The venue a journal is written against: base URL and API key fingerprint.

    ``key_fingerprint`` is the first 16 hex digits of the key's SHA-256:
    enough to tell two accounts apart, useless to anyone who reads the file.
    """

    base_url: str
    key_fingerprint: str

    @classmethod
    def of(cls, base_url: str, api_key: str) -> VenueIdentity:
        """The identity of ``base_url`` with ``api_key`` (the key itself is not kept)."""
        digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
        return cls(base_url.rstrip("/"), digest)

    def __str__(self) -> str:
        return f"{self.base_url} (API key fingerprint {self.key_fingerprint})"


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
    tag: str | None = None
    post_only: int = 0

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
    #: The venue fills log it was read from (``venues.seq``; 1 before any was recorded).
    venue: int = 1
    #: The fill's fee in tick*lot units (None: journaled before fees were).
    fee: int | None = None
    #: The fills stream its ``fill_id`` counts in (``*``: the venue's one log).
    stream: str = ALL_SYMBOLS
    #: The venue's fee as it reported it (a decimal string) and its asset, or None.
    venue_fee: str | None = None
    fee_asset: str | None = None


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
    #: The largest ``fill_id`` journaled in the stream ``*`` (0: none).
    fills_cursor: int = 0
    #: The largest ``fill_id`` journaled, by fills stream (only streams with one).
    fills_cursors: dict[str, int] = field(default_factory=dict)
    #: The last trading state: (state, who, reason), or None.
    trading_state: tuple[str, str, str | None] | None = None
    #: The layout the journal's positions were last reconciled under
    #: (``{"deployment", "shard", "shards"}``), or None: never, or before layouts were kept.
    layout: dict[str, Any] | None = None
    #: The venue fills log the cursor counts in (``venues.seq``).
    venue_log: int = 1


#: The writer checks the file's identity at least this often (seconds).
_FILE_CHECK_S: Final = 1.0


def _wake(nap: asyncio.Future[None]) -> None:
    if not nap.done():
        nap.set_result(None)


def _file_id(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of ``path``, None when there is no such file (or ``:memory:``)."""
    if path == ":memory:":
        return None
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_dev, status.st_ino)


def _lock(path: str) -> int:
    """Take the journal's exclusive lock (``<path>.lock``); returns its descriptor.

    ``flock`` belongs to the open file: the kernel releases it when the
    process ends, however it ends, so a crashed engine leaves no stale lock
    (the file stays, with the last holder's pid and host in it).
    Raises :class:`JournalLocked` naming the holder.
    """
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise JournalError(
            f"journal {path}: cannot open its lock file {lock_path}: {exc.strerror or exc}"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise JournalLocked(
            f"journal {path} is in use by another engine ({holder}); stop that engine "
            "first, or give this one its own journal.path"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise JournalError(
            f"journal {path}: cannot lock {lock_path}: {exc.strerror or exc}"
        ) from exc
    record = json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "started_ns": time.time_ns()}
    )
    os.ftruncate(fd, 0)
    os.pwrite(fd, (record + "\n").encode(), 0)
    return fd


def lock_deployment(path: str) -> int | None:
    """Hold ``path``'s journal lock for a whole deployment (``run --workers N``).

    The supervisor takes the lock a single engine on ``journal.path``
    would take, while each worker locks its own journal: so a deployment
    cannot run twice on one ``journal.path``, whatever the worker counts
    (a second ``run --workers 3`` beside a running ``--workers 2`` would
    trade the same symbols from two workers). Returns the lock's
    descriptor (closing it releases the lock), None for ``:memory:``.
    Raises :class:`JournalLocked` naming the holder.
    """
    if path == ":memory:":
        return None
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JournalError(
            f"journal {path}: cannot create its folder: {exc.strerror or exc}"
        ) from exc
    return _lock(path)


def _holder(fd: int) -> str:
    """``pid N on host H`` from a lock file, or what it says when it cannot be read."""
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        record = json.loads(text)
        return f"pid {int(record['pid'])} on host {record['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its lock file names no holder yet"


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
        write_timeout_s: float = 2.0,
        clock_ns: Callable[[], int] = time.time_ns,
        lock_fd: int | None = None,
    ) -> None:
        self.path = path
        #: Fill ids the venue reported again for another fill (see ``_settle``).
        self._conflicts: list[str] = []
        self.fill_id_conflicts = 0
        self.flush_s = flush_s
        #: A write not done within this many seconds halts trading (``stalls``).
        self.write_timeout_s = write_timeout_s
        self._db = connection
        self._clock_ns = clock_ns
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self.on_failure: Callable[[str], None] | None = None
        #: The reason of the current write failure, None while writes succeed.
        self.failed: str | None = None
        self.rows_written = 0
        self.write_errors = 0
        #: Writes that took longer than ``write_timeout_s`` (each halted trading).
        self.stalls = 0
        #: 1 once the file was found removed or replaced under the engine.
        self.file_replaced = 0
        self.flush_latency = LatencyHistogram()
        self.run_id: str | None = None
        #: The venue this run trades on (set by the runner; None: not checked).
        self.venue: VenueIdentity | None = None
        self._venue_seq = self._current_venue_seq()
        #: One fills stream per symbol (a fill's stream is its symbol), else one: ``*``.
        self._per_symbol = False
        self._task: asyncio.Task[None] | None = None
        #: Transactions run on this thread while the engine trades.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._lock = threading.Lock()
        self._inflight: (
            tuple[list[tuple[str, tuple[Any, ...]]], asyncio.Future[sqlite3.Error | None]] | None
        ) = None
        #: One transaction at a time, settled in order (loop side).
        self._writing: asyncio.Lock | None = None
        #: Wakes :meth:`run` before its ``flush_s`` nap ends (a trading-state change).
        self._nap: asyncio.Future[None] | None = None
        #: Where the journal's tasks' crashes are counted (the engine's; set on attach).
        self.crashes: TaskCrashes | None = None
        #: Writes started outside :meth:`run` (before it runs); kept until done.
        self._oneshots: set[asyncio.Task[bool]] = set()
        self._lock_fd = lock_fd
        self._file_id = _file_id(path)
        #: Set by the writer thread when the path no longer names the opened file.
        self._file_problem: str | None = None
        self._next_file_check = 0.0

    def _current_venue_seq(self) -> int:
        try:
            row = self._db.execute("SELECT MAX(seq) FROM venues").fetchone()
        except sqlite3.Error:
            return 1
        return 1 if row is None or row[0] is None else int(row[0])

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str,
        *,
        flush_s: float = 0.005,
        write_timeout_s: float = 2.0,
        synchronous: str = "normal",
        read_only: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> Journal:
        """Open (creating it and its folder if needed) and check the journal at ``path``.

        ``read_only`` opens an existing file for reading only (the
        ``journal`` command), never creating or migrating it, and takes no
        lock. Otherwise the journal is locked for this process until
        :meth:`close` (or its exit). ``clock_ns`` gives the wall-clock ns
        the rows are stamped with; ``write_timeout_s`` bounds a write
        before trading halts.
        Raises :class:`JournalLocked` when another process holds it, and
        :class:`JournalError` naming the file and the problem otherwise.
        """
        lock_fd: int | None = None
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
            lock_fd = _lock(path)
        try:
            try:
                connection = _connect(path, read_only=read_only)
            except sqlite3.Error as exc:
                raise JournalError(f"journal {path}: cannot be opened: {exc}") from exc
            try:
                _check(connection, path, read_only=read_only, synchronous=synchronous)
            except BaseException:
                connection.close()
                raise
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return cls(
            connection,
            path,
            flush_s=flush_s,
            write_timeout_s=write_timeout_s,
            clock_ns=clock_ns,
            lock_fd=lock_fd,
        )

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
                    order.tag,
                    order.post_only,
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

    def use_fill_streams(self, streams: Iterable[str]) -> None:
        """The fills streams of the venue this run trades on (before any fill).

        ``(ALL_SYMBOLS,)`` (the default): one log, every fill's stream is
        ``*``; otherwise one stream per symbol, a fill's stream is its symbol.
        """
        self._per_symbol = tuple(streams) != (ALL_SYMBOLS,)

    def stream_of(self, symbol: str) -> str:
        """The fills stream a fill of ``symbol`` counts its id in."""
        return symbol if self._per_symbol else ALL_SYMBOLS

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
        *,
        fee: int | None = None,
        venue_fee: str | None = None,
        fee_asset: str | None = None,
    ) -> None:
        """One fill (a ``fill_id`` is recorded once; it also advances its stream's cursor).

        ``fee``: its fee in tick*lot units (negative: a rebate), None if not
        known. ``venue_fee``/``fee_asset``: the venue's own fee as it wrote
        it (a decimal string) and its asset, when it reports one. The fill's
        stream is :meth:`stream_of` its symbol; the cursor row goes in the
        same transaction as the fill.
        """
        now = self._clock_ns() if ts_ns is None else ts_ns
        stream = symbol if self._per_symbol else ALL_SYMBOLS
        self._pending.append(
            (
                _FILL,
                (self._venue_seq, fill_id, client_order_id, strategy, symbol, side, price, lots,
                 now, fee, stream, venue_fee, fee_asset),
            )
        )  # fmt: skip
        if fill_id is not None:
            self._pending.append((_CURSOR, (_cursor_name(stream), fill_id)))

    def fills_cursor(self, fill_id: int, stream: str = ALL_SYMBOLS) -> None:
        """The venue's fills log ``stream`` has been read up to ``fill_id``."""
        self._pending.append((_CURSOR, (_cursor_name(stream), fill_id)))

    def trading_state(self, state: str, who: str, reason: str | None = None) -> None:
        """A trading-state change, written as soon as possible; never waits for it.

        On the event loop the row goes to the writer thread at once (the
        caller goes on: a halt's cancels leave before the row is durable).
        Without a running loop (start-up, tools) it is written on the
        calling thread before this returns.
        """
        self._pending.append((_STATE, (state, who, reason, self._clock_ns())))
        self._write_soon()

    def venue_paused(self, heard_s: float, until_s: float, *, banned: bool = False) -> None:
        """The venue takes no request from this client before ``until_s``.

        A 429's ``Retry-After`` or, ``banned``, a 418 ban, answered at
        ``heard_s``; both Unix seconds. Kept per base URL (:attr:`venue`),
        the last one heard of each kind, and written as soon as possible,
        as a trading-state change is: a process started again before
        ``until_s`` (after a crash) reads it back (:meth:`venue_pauses`) and
        sends nothing into the pause, which the venue would count towards a
        (longer) ban.
        """
        kind = "banned" if banned else "paused"
        base_url = _pause_key(self.venue)
        for what, value in (("heard", heard_s), ("until", until_s)):
            row = _PAUSE_ROW.format(kind=kind, what=what, base_url=base_url)
            self._pending.append((_SET, (row, math.ceil(value * 1000))))
        self._write_soon()

    def venue_pauses(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The last 429 pause and the last ban journaled for :attr:`venue`'s base URL:
        ``((heard, until), (heard, until))``, Unix seconds (``(0.0, 0.0)``: none)."""
        base_url = _pause_key(self.venue)
        names = [
            _PAUSE_ROW.format(kind=kind, what=what, base_url=base_url)
            for kind in ("paused", "banned")
            for what in ("heard", "until")
        ]
        rows = dict(
            self._db.execute(
                "SELECT name, value FROM cursor WHERE name IN (?, ?, ?, ?)", names
            ).fetchall()
        )
        heard_p, until_p, heard_b, until_b = (rows.get(name, 0) / 1000 for name in names)
        return (heard_p, until_p), (heard_b, until_b)

    def _write_soon(self) -> None:
        """Hand what is pending to the writer now (on the loop), or write it here."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._task is not None:
            nap = self._nap
            if nap is not None and not nap.done():
                nap.set_result(None)
            return
        crashes = self.crashes if self.crashes is not None else TaskCrashes()
        task = crashes.spawn(
            self.write_pending(), name="journal-write", kind="journal", halts="journal", loop=loop
        )
        self._oneshots.add(task)
        task.add_done_callback(self._oneshots.discard)

    def reconciliation(self, report: str) -> None:
        """A start-up reconciliation's report (JSON text)."""
        self._pending.append(
            ("INSERT INTO reconciliations (ts_ns, report) VALUES (?, ?)",
             (self._clock_ns(), report))
        )  # fmt: skip

    def record_venue(
        self, venue: VenueIdentity | None, reason: str, *, new_fills_log: bool
    ) -> None:
        """Record ``venue`` as the one this journal is written against (pending row).

        ``venue`` None: the identity is not known here (recorded empty, read
        back as None), only the fills log changes.

        ``new_fills_log``: the venue's fills log is not the one the cursor
        counts in (a reset venue, another venue): the fills cursor goes back
        to 0 and fill ids are unique again from here on. Journaled fills
        (and the positions they make) stay.
        """
        # Fills journaled before a first venue is recorded carry venue 1: the
        # first record is that venue, unless its fills log is a new one.
        (rows,) = self._db.execute("SELECT COUNT(*) FROM venues").fetchone()
        seq = self._venue_seq + 1 if rows or new_fills_log else 1
        self._pending.append(
            (
                "INSERT INTO venues (seq, base_url, key_fingerprint, new_fills_log, reason, ts_ns)"
                f" VALUES ({seq}, ?, ?, ?, ?, ?)",
                ("" if venue is None else venue.base_url,
                 "" if venue is None else venue.key_fingerprint, int(new_fills_log), reason,
                 self._clock_ns()),
            )
        )  # fmt: skip
        if new_fills_log:
            self._pending.append(
                ("UPDATE cursor SET value = 0 WHERE name = 'fills' OR name LIKE 'fills:%'", ())
            )
        self._venue_seq = seq

    @property
    def pending(self) -> int:
        """Rows not yet written."""
        return len(self._pending)

    # -- writing ---------------------------------------------------------------------------

    def flush(self, *, raise_errors: bool = False) -> bool:
        """Write every pending row now, in one transaction; False when it failed.

        Runs on the calling thread: for start-up before the event loop
        runs, tools and tests; on the loop use :meth:`write_pending`. A
        failure keeps the rows for the next attempt, counts
        ``write_errors`` and calls ``on_failure`` (once per run of
        failures); with ``raise_errors`` it raises :class:`JournalError`.
        """
        batch = self._take()
        if not batch:
            return True
        return self._settle(batch, self._write(batch), raise_errors)

    async def write_pending(self, *, raise_errors: bool = False) -> bool:
        """Write every pending row on the writer thread; the loop never blocks on it.

        A write not done within ``write_timeout_s`` counts a stall and
        calls ``on_failure`` (trading halts); it is still waited for, as
        the rows must go in order. Returns False (or raises
        :class:`JournalError` with ``raise_errors``) when it failed.
        """
        if self._writing is None:
            self._writing = asyncio.Lock()
        async with self._writing:
            batch = self._take()
            check_file = self._file_id is not None and time.monotonic() >= self._next_file_check
            if not batch and not check_file:
                return True
            future = asyncio.get_running_loop().run_in_executor(self._writer, self._write, batch)
            self._inflight = (batch, future)
            done, _ = await asyncio.wait({future}, timeout=self.write_timeout_s)
            if not done:
                self.stalls += 1
                self._report(
                    f"journal {self.path}: a write has not completed in "
                    f"{self.write_timeout_s:g} s (journal.write_timeout_s); another process "
                    "may hold a write transaction on it, or its disk is stuck"
                )
                await asyncio.wait({future})
            self._inflight = None
            return self._settle(batch, future.result(), raise_errors)

    def _take(self) -> list[tuple[str, tuple[Any, ...]]]:
        batch = self._pending
        self._pending = []
        return batch

    def _write(self, batch: list[tuple[str, tuple[Any, ...]]]) -> sqlite3.Error | None:
        """One transaction (on any thread; one at a time); the error, or None."""
        with self._lock:
            if self._file_id is not None:
                self._check_file()
            if not batch:
                return None
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

    def _check_file(self) -> None:
        """Whether the path still names the file opened (writer side; one ``stat``)."""
        self._next_file_check = time.monotonic() + _FILE_CHECK_S
        if self._file_problem is not None:
            return
        now = _file_id(self.path)
        if now == self._file_id:
            return
        what = "no such file" if now is None else f"another file (inode {now[1]})"
        self._file_problem = (
            f"journal file removed/replaced: {self.path} (the path now names {what}; "
            "rows written from here on would not be found by the next start)"
        )

    def _check_repeated_fill(self, db: sqlite3.Connection, params: tuple[Any, ...]) -> None:
        """A fill id already journaled: the same fill again, or the venue reused the id."""
        venue, fill_id, client_order_id, _, _, _, price, quantity, _, _, stream, *_ = params
        row = db.execute(
            "SELECT client_order_id, price, quantity FROM fills"
            " WHERE venue = ? AND stream = ? AND fill_id = ?",
            (venue, stream, fill_id),
        ).fetchone()
        if row is not None and tuple(row) != (client_order_id, price, quantity):
            of = "" if stream == ALL_SYMBOLS else f" of {stream}"
            self._conflicts.append(
                f"fill_id {fill_id}{of} was journaled for {row[0]} ({row[2]} lots at {row[1]}) "
                f"and is now reported for {client_order_id} ({quantity} lots at {price}): "
                "the venue reused its fill ids (a restarted venue needs a new journal)"
            )

    def _report(self, reason: str) -> None:
        """A failure: logged and reported once per run of failures (trading halts)."""
        if self.failed is None:
            self.failed = reason
            log.error("%s", reason)
            if self.on_failure is not None:
                self.on_failure(reason)

    def _settle(
        self,
        batch: list[tuple[str, tuple[Any, ...]]],
        error: sqlite3.Error | None,
        raise_errors: bool,
    ) -> bool:
        """Account for a written batch (on the loop's thread)."""
        if self._file_problem is not None and not self.file_replaced:
            self.file_replaced = 1
            # Sticky: writes into the old file succeed, yet nothing reads them back.
            self.failed = None
            self._report(self._file_problem)
        if error is None:
            self.rows_written += len(batch)
            if self.failed is not None and not self.file_replaced:
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
        self._report(reason)
        return False

    def start(self, crashes: TaskCrashes | None = None) -> None:
        """Start writing every ``flush_s`` seconds (needs a running loop).

        A crash of the writer task is counted in ``crashes`` and halts
        trading (who ``journal``): rows would no longer reach the file.
        """
        if self._task is None:
            crashes = crashes if crashes is not None else (self.crashes or TaskCrashes())
            self._task = crashes.spawn(self.run(), name="journal", kind="journal", halts="journal")

    async def run(self) -> None:
        """Every ``flush_s`` seconds, write the pending rows on the journal's thread.

        SQLite releases the GIL while it writes and syncs, so the event
        loop keeps running while a transaction (or a WAL checkpoint) takes
        its time; one transaction is in flight at a time, in order. A
        trading-state change ends the nap early.
        """
        loop = asyncio.get_running_loop()
        while True:
            nap = self._nap = loop.create_future()
            timer = loop.call_later(self.flush_s, _wake, nap)
            try:
                await nap
            finally:
                timer.cancel()
            await self.write_pending()

    async def stop(self) -> None:
        """Stop the periodic writes, then write what is pending.

        Waits at most ``write_timeout_s`` for a write in flight and as long
        for the last one; rows still unwritten then are logged (the next
        start reads those orders back from the venue).
        """
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
        if self._oneshots:
            await asyncio.wait(set(self._oneshots), timeout=self.write_timeout_s)
        if self._inflight is not None:
            batch, future = self._inflight
            done, _ = await asyncio.wait({future}, timeout=self.write_timeout_s)
            if not done:
                log.error(
                    "journal %s: a write is still stuck at shutdown; %d row(s) not written",
                    self.path,
                    len(batch) + len(self._pending),
                )
                return
            self._inflight = None
            self._settle(batch, future.result(), False)
        if self._pending:
            final = asyncio.ensure_future(self.write_pending())
            finished, _ = await asyncio.wait({final}, timeout=self.write_timeout_s)
            if not finished:
                log.error(
                    "journal %s: the last write did not complete in %g s at shutdown",
                    self.path,
                    self.write_timeout_s,
                )

    def close(self) -> None:
        """Write what is pending, close the file and release the lock.

        A write still stuck on the writer thread is not waited for (the
        process is ending; the next start reads those orders back).
        """
        stuck = self._inflight is not None and not self._inflight[1].done()
        if not stuck:
            if self._pending:
                self.flush()
            self._writer.shutdown(wait=True)
            with self._lock:
                self._db.close()
        else:
            self._writer.shutdown(wait=False)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- reading ---------------------------------------------------------------------------

    def recorded_venue(self) -> VenueIdentity | None:
        """The venue the journal was last written against, or None (never recorded)."""
        row = self._db.execute(
            "SELECT base_url, key_fingerprint FROM venues ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None or not row[0] else VenueIdentity(row[0], row[1])

    def venues(self) -> list[tuple[int, VenueIdentity | None, bool, str]]:
        """Every venue row, oldest first: (seq, identity or None, new fills log, reason).

        More than one row means the journal's fills come from more than one
        venue, account or fills log (a venue accepted as new, a reset).
        """
        rows = self._db.execute(
            "SELECT seq, base_url, key_fingerprint, new_fills_log, reason FROM venues ORDER BY seq"
        ).fetchall()
        return [
            (int(seq), VenueIdentity(url, key) if url else None, bool(new_log), str(reason))
            for seq, url, key, new_log, reason in rows
        ]

    def read_fills_cursor(self, stream: str = ALL_SYMBOLS) -> int:
        """The largest venue fill id read in ``stream`` (0: none); O(1)."""
        row = self._db.execute(
            "SELECT value FROM cursor WHERE name = ?", (_cursor_name(stream),)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def _cursor_rows(self) -> dict[str, int]:
        return {
            ALL_SYMBOLS if name == "fills" else str(name)[len(_CURSOR_PREFIX) :]: int(value)
            for name, value in self._db.execute(
                "SELECT name, value FROM cursor WHERE name = 'fills' OR name LIKE 'fills:%'"
            )
        }

    def _legacy_symbol(self, streams: tuple[str, ...]) -> str | None:
        """The symbol a single-stream journal's cursor belongs to on a per-symbol venue.

        None when there is nothing to assign (no cursor ``*`` above 0, or
        per-symbol cursors already kept). Raises :class:`JournalError`
        when the journal traded more than one of ``streams`` under one cursor.
        """
        rows = self._cursor_rows()
        if rows.get(ALL_SYMBOLS, 0) <= 0 or any(s != ALL_SYMBOLS and v for s, v in rows.items()):
            return None
        symbols: list[str] = sorted(
            str(row[0])
            for row in self._db.execute(
                "SELECT DISTINCT symbol FROM fills WHERE venue = ? AND stream = ?"
                " AND fill_id IS NOT NULL",
                (self._venue_seq, ALL_SYMBOLS),
            )
        )
        if not symbols:
            symbols = sorted(self.instruments())
        if len(symbols) == 1 and symbols[0] in streams:
            return symbols[0]
        raise JournalError(
            f"journal {self.path}: its one fills cursor ({rows[ALL_SYMBOLS]}) was kept for "
            f"{', '.join(symbols) or 'no symbol'}, the venue numbers fills per symbol of "
            f"{', '.join(streams)}: it cannot be given to one symbol; use a new journal "
            "(journal.path), or start once with --accept-new-venue to read the venue's fills again"
        )

    def fills_cursors(self, streams: Iterable[str] = (ALL_SYMBOLS,)) -> dict[str, int]:
        """The cursor of each of ``streams`` (0: none read), O(streams).

        A journal written with one cursor (the stream ``*``) read for a
        venue with one stream per symbol gives that cursor to the one symbol
        it traded (its fills', else its one instrument's); raises
        :class:`JournalError` when that is not one of ``streams``' symbols.
        """
        wanted = tuple(streams)
        rows = self._cursor_rows()
        cursors = {stream: rows.get(stream, 0) for stream in wanted}
        if wanted != (ALL_SYMBOLS,):
            legacy = self._legacy_symbol(wanted)
            if legacy is not None:
                cursors[legacy] = max(cursors[legacy], rows[ALL_SYMBOLS])
        return cursors

    def adopt_fill_streams(self, streams: Iterable[str]) -> str | None:
        """Write the single-stream cursor of a journal as its symbol's (pending rows).

        For a venue with one stream per symbol (``streams`` not ``("*",)``)
        and a journal that kept one cursor: that cursor becomes the one
        symbol's (see :meth:`fills_cursors`) and the fills of the current
        venue log move to their symbol's stream. Returns that symbol, or
        None when there was nothing to move. Raises :class:`JournalError`
        as :meth:`fills_cursors` does.
        """
        wanted = tuple(streams)
        if wanted == (ALL_SYMBOLS,):
            return None
        legacy = self._legacy_symbol(wanted)
        if legacy is None:
            return None
        value = self._cursor_rows()[ALL_SYMBOLS]
        self._pending.extend(
            [
                ("UPDATE fills SET stream = symbol WHERE venue = ? AND stream = ?",
                 (self._venue_seq, ALL_SYMBOLS)),
                (_CURSOR, (_cursor_name(legacy), value)),
                ("DELETE FROM cursor WHERE name = 'fills'", ()),
            ]
        )  # fmt: skip
        return legacy

    def journaled_fill(self, fill_id: int, stream: str = ALL_SYMBOLS) -> JournaledFill | None:
        """The fill journaled with venue fill id ``fill_id`` in ``stream`` (current venue)."""
        # A single-stream journal's fills not yet moved to their symbol's stream count too.
        row = self._db.execute(
            f"SELECT {_FILL_COLUMNS} FROM fills WHERE venue = ? AND fill_id = ?"
            " AND (stream = ? OR (stream = ? AND symbol = ?))",
            (self._venue_seq, fill_id, stream, ALL_SYMBOLS, stream),
        ).fetchone()
        return None if row is None else JournaledFill(*row)

    def fills_missing(self) -> list[tuple[str, str, int, int]]:
        """Orders journaled with more filled lots than their journaled fills add up to.

        Each is (client order id, status, filled lots, journaled fill lots),
        oldest first. O(orders + fills).
        """
        rows = self._db.execute(
            "SELECT o.client_order_id, o.status, o.filled, COALESCE(SUM(f.quantity), 0) AS lots"
            " FROM orders o LEFT JOIN fills f ON f.client_order_id = o.client_order_id"
            " WHERE o.filled > 0 GROUP BY o.client_order_id HAVING lots < o.filled"
            " ORDER BY o.created_ns, o.rowid"
        )
        return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]

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
        state.fills_cursors = {s: v for s, v in self._cursor_rows().items() if v > 0}
        state.fills_cursor = state.fills_cursors.get(ALL_SYMBOLS, 0)
        last = db.execute(
            "SELECT state, who, reason FROM trading_state ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        state.trading_state = None if last is None else (last[0], last[1], last[2])
        state.layout = self.last_layout()
        state.venue_log = self._venue_seq
        return state

    def last_layout(self) -> dict[str, Any] | None:
        """The ``layout`` of the last start-up reconciliation's report, or None.

        A reconciliation is journaled once its positions are whole, so this
        is the deployment, shard and shard count the journal's positions
        are complete for.
        """
        row = self._db.execute(
            "SELECT report FROM reconciliations ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        try:
            layout = json.loads(row[0]).get("layout")
        except (ValueError, AttributeError):
            return None
        return layout if isinstance(layout, dict) else None

    def order(self, client_order_id: str) -> JournaledOrder | None:
        """The order journaled under ``client_order_id``, or None; one indexed read."""
        row = self._db.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_order_id = ?", (client_order_id,)
        ).fetchone()
        return None if row is None else JournaledOrder(*row)

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
    " status, filled, exchange_order_id, reason, created_ns, updated_ns, tag, post_only"
)
_FILL_COLUMNS: Final = (
    "fill_id, client_order_id, strategy, symbol, side, price, quantity, ts_ns, venue, fee,"
    " stream, venue_fee, fee_asset"
)


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
