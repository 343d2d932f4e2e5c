"""The journals of a deployment's workers, read as one.

``run --workers N`` gives each worker its own journal beside
``journal.path``: ``state/journal.db`` -> ``state/journal.0.db``,
``state/journal.1.db``... A position belongs to the deployment, not to a
file: a symbol's fills are in the journal of the worker that owned it
under each layout, and after a change of layout the worker that now owns
it copied the venue's fills of it into its own journal. So one view of the
deployment reads every journal and counts each venue fill once.

Which journals (:func:`journal_paths`):

* ``--workers N`` (N > 1): the N worker journals, each of which must exist;
* ``--workers 1``: ``journal.path`` alone;
* neither: ``journal.path`` alone, unless worker journals lie beside it;
  then every one of them, and ``journal.path`` itself if it exists (a
  deployment that ran both ways), with a note on stderr saying which.

Merging (:class:`MergedJournals`): a fill is one venue fill when the
venue, its fill id and its client order id are the same: the venue is the
identity (base URL, API key fingerprint) of the venue row the journal
filed it under; a fill without a venue fill id is never merged. The
venue's row number alone would not do: two journals number their venues
each on its own (one may have recorded a reset the other never saw), and
every worker's in-process venue counts fill ids from 1. An order in
several journals (copied in with a rebuild) is shown once, as the journal
that updated it last has it. Fills are merged oldest first (by time, then
by their order within a journal), so FIFO PnL runs over the deployment's
fills in the order they happened.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ..core.instruments import Instrument
from ..io.journal import Journal, JournaledFill, JournaledOrder

__all__ = ["MergedJournals", "journal_paths", "open_journals", "worker_journal_path"]


class JournalPathError(ValueError):
    """A worker journal named by ``--workers`` does not exist (exit 2)."""


def worker_journal_path(path: str, index: int) -> str:
    """The journal of worker ``index`` for ``journal.path`` = ``path`` (as ``run --workers``)."""
    base = Path(path)
    return str(base.with_name(f"{base.stem}.{index}{base.suffix}"))


def _worker_journals_beside(path: str) -> list[str]:
    """Worker journals beside ``path`` (``journal.<i>.db``), by worker index."""
    base = Path(path)
    pattern = re.compile(rf"{re.escape(base.stem)}\.(\d+){re.escape(base.suffix)}")
    found: list[tuple[int, str]] = []
    if base.parent.is_dir():
        for candidate in base.parent.iterdir():
            match = pattern.fullmatch(candidate.name)
            if match is not None and candidate.is_file():
                found.append((int(match.group(1)), str(candidate)))
    return [name for _, name in sorted(found)]


def journal_paths(path: str, workers: int | None) -> tuple[list[str], str | None]:
    """The journals to read for ``journal.path`` = ``path``, and a note for stderr (or None).

    See the module's docstring. Raises :class:`JournalPathError` when
    ``workers`` > 1 names a worker journal that does not exist.
    """
    if workers == 1 or path == ":memory:":
        return [path], None
    if workers is not None:
        paths = [worker_journal_path(path, i) for i in range(workers)]
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise JournalPathError(
                f"--workers {workers}: no worker journal {', '.join(missing)} "
                f"(worker i of `run --workers {workers}` writes {worker_journal_path(path, 0)} "
                "with its index)"
            )
        return paths, None
    beside = _worker_journals_beside(path)
    if not beside:
        return [path], None
    paths = ([path] if Path(path).exists() else []) + beside
    note = (
        f"journal: {len(beside)} worker journal(s) beside {path}: reading {', '.join(paths)} "
        f"as one deployment (--workers 1 reads {path} alone)"
    )
    return paths, note


class MergedJournals:
    """Several journals read as one (see the module's docstring); read-only."""

    def __init__(self, journals: Sequence[Journal]) -> None:
        self.journals = list(journals)
        self.path = ", ".join(j.path for j in self.journals)

    def instruments(self) -> dict[str, Instrument]:
        """Every journal's instruments by symbol (the later journal's wins)."""
        merged: dict[str, Instrument] = {}
        for journal in self.journals:
            merged.update(journal.instruments())
        return merged

    def orders(
        self, since_ns: int | None = None, strategy: str | None = None
    ) -> list[JournaledOrder]:
        """Orders created at or after ``since_ns``, each once, oldest first."""
        latest: dict[str, JournaledOrder] = {}
        for journal in self.journals:
            for order in journal.orders(since_ns, strategy):
                known = latest.get(order.client_order_id)
                if known is None or order.updated_ns > known.updated_ns:
                    latest[order.client_order_id] = order
        return sorted(latest.values(), key=lambda o: o.created_ns)

    def fills(
        self, since_ns: int | None = None, strategy: str | None = None
    ) -> list[JournaledFill]:
        """Fills at or after ``since_ns``, each venue fill once, oldest first."""
        rows: list[tuple[int, int, int, JournaledFill, tuple[str, str] | None]] = []
        for number, journal in enumerate(self.journals):
            venues = {
                seq: None if identity is None else (identity.base_url, identity.key_fingerprint)
                for seq, identity, _, _ in journal.venues()
            }
            rows.extend(
                (fill.ts_ns, number, position, fill, venues.get(fill.venue))
                for position, fill in enumerate(journal.fills(since_ns, strategy))
            )
        rows.sort(key=lambda row: row[:3])
        seen: set[tuple[tuple[str, str] | None, int, str]] = set()
        merged: list[JournaledFill] = []
        for _, _, _, fill, identity in rows:
            if fill.fill_id is not None:
                key = (identity, fill.fill_id, fill.client_order_id)
                if key in seen:
                    continue
                seen.add(key)
            merged.append(fill)
        return merged

    def close(self) -> None:
        for journal in self.journals:
            journal.close()


def open_journals(paths: Sequence[str]) -> Journal | MergedJournals:
    """Open ``paths`` read-only: one journal as itself, several as :class:`MergedJournals`.

    Raises :class:`~trading_engine.io.journal.JournalError` when one cannot
    be read (those already opened are closed).
    """
    if len(paths) == 1:
        return Journal.open(paths[0], read_only=True)
    opened: list[Journal] = []
    try:
        # extend appends one by one: the journals opened before a failure are closed.
        opened.extend(Journal.open(path, read_only=True) for path in paths)
    except BaseException:
        for journal in opened:
            journal.close()
        raise
    return MergedJournals(opened)
