"""A reference book fed by a dialect's actions: what an engine's book holds."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from trading_engine.core.feeds import Action, BookFrame, Resync


class ReferenceBook:
    """Levels of the venue symbols a dialect published, by the feed protocol's rules.

    A snapshot frame replaces the book, an update sets levels (size 0
    removes), a :class:`Resync` clears it and marks it not live.
    """

    def __init__(self) -> None:
        self.bids: dict[str, dict[Decimal, Decimal]] = {}
        self.asks: dict[str, dict[Decimal, Decimal]] = {}
        self.live: dict[str, bool] = {}
        self.resyncs: list[str] = []

    def apply(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, BookFrame):
                symbol = action.symbol
                if action.snapshot:
                    self.bids[symbol] = {}
                    self.asks[symbol] = {}
                    self.live[symbol] = True
                assert self.live.get(symbol), f"an update of {symbol} before its snapshot"
                for side, levels in (
                    (self.bids[symbol], action.bids),
                    (self.asks[symbol], action.asks),
                ):
                    for price, size in levels:
                        if Decimal(size) == 0:
                            side.pop(Decimal(price), None)
                        else:
                            side[Decimal(price)] = Decimal(size)
            elif isinstance(action, Resync):
                self.live[action.symbol] = False
                self.bids[action.symbol] = {}
                self.asks[action.symbol] = {}
                self.resyncs.append(action.reason)

    def best(self, symbol: str) -> tuple[tuple[Decimal, Decimal], tuple[Decimal, Decimal]]:
        bids, asks = self.bids[symbol], self.asks[symbol]
        bid = max(bids)
        ask = min(asks)
        return (bid, bids[bid]), (ask, asks[ask])
