"""OKX's order book checksum: CRC32 of the top 25 levels, bid and ask interleaved.

OKX documents it under "WS / Order book channel", "Checksum"
(https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel):
take the first 25 bids (best first) and the first 25 asks (best first),
write each level as ``price:size`` with the strings exactly as the venue
sent them, interleave them ``bid:ask:bid:ask:...`` (when one side runs
out, the other side's remaining levels follow alone), join with ``:``
and take the CRC32 of that text as a signed 32-bit integer.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from itertools import chain
from typing import Final

__all__ = ["CHECKSUM_LEVELS", "checksum", "checksum_text"]

#: Levels per side the checksum covers.
CHECKSUM_LEVELS: Final = 25


def checksum_text(bids: Sequence[str], asks: Sequence[str]) -> str:
    """The text OKX checksums.

    ``bids`` and ``asks``: each level's ``"price:size"`` (the venue's own
    strings), best first; only the first :data:`CHECKSUM_LEVELS` of each
    are used. O(levels).
    """
    b = bids[:CHECKSUM_LEVELS]
    a = asks[:CHECKSUM_LEVELS]
    # zip interleaves up to the shorter side; the longer side's rest follows.
    common = min(len(b), len(a))
    pairs = chain.from_iterable(zip(b, a, strict=False))
    return ":".join([*pairs, *b[common:], *a[common:]])


def checksum(bids: Sequence[str], asks: Sequence[str]) -> int:
    """The signed 32-bit CRC32 of :func:`checksum_text`, as OKX publishes it."""
    value = zlib.crc32(checksum_text(bids, asks).encode("ascii"))
    return value - 0x1_0000_0000 if value >= 0x8000_0000 else value
