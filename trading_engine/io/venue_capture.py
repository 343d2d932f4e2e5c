"""Venue capture files: what a feed handler received from a venue, and what it published.

One line per event, four fields separated by tabs, ending with a newline::

    <recv_ns>\\t<kind>\\t<key>\\t<payload>

``recv_ns`` is the wall-clock receive time in nanoseconds since the epoch
(decimal). ``kind`` and ``key``:

=================== ======================== ==========================================
kind                key                      payload
=================== ======================== ==========================================
``open``            the WebSocket URL        empty: a connection opened
``ws``              empty                    one text message, as received
``snapshot``        the venue symbol         the body of a REST snapshot (HTTP 200)
``snapshot_failed`` the venue symbol         the reason (a metric label)
``close``           the reason               empty: the connection ended
``out``             ``HOST:PORT``            a feed-protocol frame sent to that engine
=================== ======================== ==========================================

The payload is the last field, so it may hold tabs. Venue messages and
snapshot bodies are JSON, where a newline can only be whitespace between
tokens: it is written as a space, which reads the same. Replaying the
``open``, ``ws``, ``snapshot`` and ``snapshot_failed`` lines through the
same dialect (:func:`replay`) reproduces what the handler published, so a
capture of a live session is a backtest's market data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..core.feeds import Action, FeedDialect

__all__ = ["CaptureEvent", "VenueCaptureWriter", "read_venue_capture", "replay"]

_KINDS = frozenset({"open", "ws", "snapshot", "snapshot_failed", "close", "out"})


@dataclass(frozen=True, slots=True)
class CaptureEvent:
    """One line of a venue capture (see the module docstring)."""

    recv_ns: int
    kind: str
    key: str
    payload: bytes


class VenueCaptureWriter:
    """Appends events to a venue capture file through a large buffer.

    Raises ``OSError`` when the file cannot be opened for appending.
    """

    def __init__(self, path: str | Path, buffer_bytes: int = 1 << 20) -> None:
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "ab", buffering=buffer_bytes)  # noqa: SIM115
        self.events = 0

    def write(self, recv_ns: int, kind: str, key: str, payload: bytes | str) -> None:
        """Record one event (``payload`` without a trailing newline)."""
        data = payload.encode() if isinstance(payload, str) else payload
        if b"\n" in data or b"\r" in data:
            data = data.replace(b"\r", b" ").replace(b"\n", b" ")
        self._file.write(b"%d\t%s\t%s\t%s\n" % (recv_ns, kind.encode(), key.encode(), data))
        self.events += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def read_venue_capture(path: str | Path) -> Iterator[CaptureEvent]:
    """The events of a venue capture file, in order.

    Raises ``ValueError`` naming the line for a line that is not
    ``<ns>\\t<kind>\\t<key>\\t<payload>`` with a known kind.
    """
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip(b"\n").split(b"\t", 3)
            if len(parts) != 4 or not parts[0].isdigit() or parts[1].decode() not in _KINDS:
                raise ValueError(f"{path}:{number}: not a venue capture line")
            yield CaptureEvent(int(parts[0]), parts[1].decode(), parts[2].decode(), parts[3])


def replay(dialect: FeedDialect, events: Iterable[CaptureEvent]) -> Iterator[list[Action]]:
    """Feed captured venue input through ``dialect``; yields its actions, one list per event.

    ``open`` calls ``on_open``, ``ws`` ``on_message``, ``snapshot``
    ``on_snapshot`` and ``snapshot_failed`` ``on_snapshot_failed``, each at
    the event's receive time; ``close`` and ``out`` lines yield no actions.
    Fetch and send actions are returned, not performed: the capture holds
    their answers.
    """
    for event in events:
        if event.kind == "open":
            yield dialect.on_open(event.recv_ns)
        elif event.kind == "ws":
            yield dialect.on_message(event.payload.decode(), event.recv_ns)
        elif event.kind == "snapshot":
            yield dialect.on_snapshot(event.key, event.payload, event.recv_ns)
        elif event.kind == "snapshot_failed":
            yield dialect.on_snapshot_failed(event.key, event.payload.decode(), event.recv_ns)
        else:
            yield []
