"""docs/protocol.md's example does what the page says it does."""

from __future__ import annotations

from pathlib import Path

from trading_engine.core.builder import BookBuilder, BookState
from trading_engine.core.instruments import Instrument
from trading_engine.core.protocol import Reason

ROOT = Path(__file__).resolve().parents[2]


def example_frames() -> list[bytes]:
    text = (ROOT / "docs/protocol.md").read_text(encoding="utf-8")
    block = text.split("## Example", 1)[1].split("```", 2)[1]
    return [line.encode() for line in block.strip().splitlines()]


def test_the_documented_example_builds_the_documented_books() -> None:
    frames = example_frames()
    assert len(frames) == 6
    builder = BookBuilder([Instrument("BTC-USD", "0.01", "0.001")])
    entry = builder.books["BTC-USD"]
    states = []
    for frame in frames:
        builder.handle(frame)
        states.append((entry.state, entry.seq, entry.book.best_bid, entry.book.best_ask))
    live, stale = BookState.LIVE, BookState.STALE
    assert states == [
        (live, 1, 10000, 10001),  # best bid 100.00 x 2, best ask 100.01 x 1
        (live, 2, 9999, 10001),  # the 100.00 bid removed
        (live, 3, 9999, 10001),  # a trade changes no level
        (live, 3, 9999, 10001),  # a heartbeat has no sequence
        (stale, 3, 9999, 10001),  # seq 5 after 3: a gap, nothing applied
        (live, 5, 9999, 10001),  # the snapshot recovers it
    ]
    assert builder.rejected[Reason.GAP] == 1
    assert sum(builder.rejected.values()) == 1
