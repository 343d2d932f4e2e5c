"""Splitting the symbol universe into shards.

A symbol belongs to shard ``crc32(symbol as UTF-8) % shards``: stable across
processes, hosts, Python versions and restarts (unlike ``hash()``, which is
salted per process). Shard ``i`` of a deployment listens for market data on
``feed.port + i`` when one host runs all the workers (``run --workers N``),
or on ``feed.port`` on its own host when each host runs one shard
(``[engine] shard = i``, ``shards = N``). See docs/design.md.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

__all__ = ["shard_of", "shards_of"]


def shard_of(symbol: str, shards: int) -> int:
    """The shard (0 <= result < shards) that owns ``symbol``."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    return zlib.crc32(symbol.encode("utf-8")) % shards


def shards_of(symbols: Iterable[str], shards: int) -> set[int]:
    """The shards a set of symbols spans."""
    return {shard_of(symbol, shards) for symbol in symbols}
