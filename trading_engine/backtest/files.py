"""Reading a backtest's data files: plain or gzip-compressed, a chunk of lines at a time.

Left interpreted on purpose: its generators close their file in a
``finally`` when a reader stops early (a bad file, ``--to``), which
CPython runs when an unfinished generator is collected and a compiled one
does not.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final, cast

from isal import igzip, isal_zlib

from .events import DataError, bump

__all__ = ["GZIP_ERRORS", "GZIP_MAGIC", "MAX_LINE", "line_blocks", "lines", "open_data"]

#: The first two bytes of a gzip stream (RFC 1952).
GZIP_MAGIC: Final = b"\x1f\x8b"
#: (python-isal's stub types its ``error`` as an instance; it is a class.)
_ISAL_ERROR: Final = cast("type[Exception]", isal_zlib.error)
#: What reading a corrupt or truncated stream from :func:`open_data` raises.
GZIP_ERRORS: Final = (gzip.BadGzipFile, EOFError, zlib.error, _ISAL_ERROR, OSError)


def open_data(path: Path) -> BinaryIO:
    """``path`` opened for reading bytes, through gzip when it starts with :data:`GZIP_MAGIC`.

    Raises :class:`~.events.DataError` naming the file when it cannot be
    opened; a corrupt gzip stream shows when it is read.
    """
    try:
        handle: BinaryIO = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror}") from exc
    magic = handle.read(2)
    if magic == GZIP_MAGIC:
        handle.close()
        # Opened by name: closing the gzip stream closes the file. ISA-L's
        # inflate (python-isal, the gzip module's interface) reads a recorded
        # market about three times as fast as zlib's: most backtest data is gzip.
        return cast(BinaryIO, igzip.IGzipFile(path, "rb"))  # type: ignore[no-untyped-call]
    handle.seek(0)
    return handle


_CHUNK: Final = 1 << 20
#: The longest line kept (bytes): a recorded message is far shorter (a
#: 5,000-level snapshot is about 300 KiB). A longer one is left out as a bad
#: line as it is read, so it never grows in memory nor is copied per chunk.
MAX_LINE: Final = 4 << 20


def line_blocks(path: Path, skipped: dict[str, int]) -> Iterator[list[bytes]]:
    """The complete lines of ``path``, without their newline, a list per chunk read.

    Read in chunks of 1 MiB: a reader loops over each list itself, so a line
    costs no generator step (compiled readers call this once a chunk). A
    ``\r`` before a newline is dropped. An incomplete last line (the writer
    was stopped mid-line) is left out and counted ``cut_line``; a line longer
    than :data:`MAX_LINE` is left out and counted ``bad_line``, read past
    without being kept. Raises :class:`DataError` for a gzip stream that is
    corrupt or ends early.
    """
    handle = open_data(path)
    read = handle.read
    try:
        rest = b""
        # Inside a line longer than MAX_LINE (counted once, dropped up to its newline).
        overlong = False
        while True:
            try:
                chunk = read(_CHUNK)
            except GZIP_ERRORS as exc:
                raise DataError(f"{path}: corrupt or truncated gzip data: {exc}") from exc
            if not chunk:
                break
            data = rest + chunk
            if b"\r" in data:
                data = data.replace(b"\r\n", b"\n")
            found = data.split(b"\n")
            rest = found.pop()
            if overlong and found:
                del found[0]  # the end of the long line
                overlong = False
            if len(rest) > MAX_LINE:
                if not overlong:
                    bump(skipped, "bad_line")
                    overlong = True
                rest = b""
            if found:
                yield found
        if rest and not overlong:
            bump(skipped, "cut_line")
    finally:
        handle.close()


def lines(path: Path, skipped: dict[str, int]) -> Iterator[bytes]:
    """The complete lines of ``path``, one at a time (see :func:`line_blocks`)."""
    for block in line_blocks(path, skipped):
        yield from block
