"""Capture files: every complete frame the feed took off the wire.

One line per frame: the receive time (monotonic nanoseconds, decimal), a
tab, then the frame's bytes exactly as received, then a newline. Frames
never contain a newline, and the receive time never contains a tab, so
the format needs no escaping. Frames the book builder rejected are
captured too, so a replay reproduces the same rejections and staleness.
Oversized frames are not (their bytes were never held whole).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["CaptureWriter", "read_capture"]


class CaptureWriter:
    """Appends frames to a capture file through a large buffer."""

    def __init__(self, path: str | Path, buffer_bytes: int = 1 << 20) -> None:
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "ab", buffering=buffer_bytes)  # noqa: SIM115
        self.frames = 0

    def write(self, recv_ns: int, frame: bytes | bytearray | memoryview) -> None:
        """Record one frame (without its newline)."""
        write = self._file.write
        write(b"%d\t" % recv_ns)
        write(frame)
        write(b"\n")
        self.frames += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def read_capture(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(recv_ns, frame)`` from a capture file, in order.

    Raises ValueError naming the line for a line that is not
    ``<ns>\\t<frame>``.
    """
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            stamp, tab, frame = line.rstrip(b"\n").partition(b"\t")
            if not tab or not stamp.isdigit():
                raise ValueError(f"{path}:{number}: not a capture line")
            yield int(stamp), frame
