"""OKX messages as the venue writes them, built from a small reference book."""

from __future__ import annotations

import json
import zlib
from decimal import Decimal

Level = tuple[str, str]


def ref_checksum(bids: dict[Decimal, str], asks: dict[Decimal, str]) -> int:
    """The documented algorithm, written plainly: 25 best per side, interleaved."""
    b = [f"{format(p, 'f')}:{bids[p]}" for p in sorted(bids, reverse=True)[:25]]
    a = [f"{format(p, 'f')}:{asks[p]}" for p in sorted(asks)[:25]]
    parts: list[str] = []
    for i in range(max(len(b), len(a))):
        if i < len(b):
            parts.append(b[i])
        if i < len(a):
            parts.append(a[i])
    value = zlib.crc32(":".join(parts).encode())
    return value - 2**32 if value >= 2**31 else value


def book_message(
    symbol: str,
    action: str,
    bids: list[Level],
    asks: list[Level],
    *,
    seq: int,
    prev: int,
    checksum: int,
    ts: str = "1700000000000",
) -> str:
    data = {
        "asks": [[p, s, "0", "1"] for p, s in asks],
        "bids": [[p, s, "0", "1"] for p, s in bids],
        "ts": ts,
        "checksum": checksum,
        "prevSeqId": prev,
        "seqId": seq,
    }
    return json.dumps(
        {"arg": {"channel": "books", "instId": symbol}, "action": action, "data": [data]},
        separators=(",", ":"),
    )


class RefBook:
    """The reference model: plain dicts, price -> size string."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, str] = {}
        self.asks: dict[Decimal, str] = {}

    def apply(self, bids: list[Level], asks: list[Level]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, s in levels:
                if Decimal(s) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = s

    def checksum(self) -> int:
        return ref_checksum(self.bids, self.asks)

    def sorted_levels(self) -> tuple[list[Level], list[Level]]:
        bids = [(format(p, "f"), self.bids[p]) for p in sorted(self.bids, reverse=True)]
        asks = [(format(p, "f"), self.asks[p]) for p in sorted(self.asks)]
        return bids, asks
