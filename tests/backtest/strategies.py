"""Strategies for backtest tests: each sends fixed orders, so fills can be computed by hand."""

from __future__ import annotations

import gc
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from trading_engine import BookView, Side, Strategy, TimeInForce


class OnceParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    side: str = "buy"
    price_ticks: int
    lots: int
    time_in_force: str = "GTC"


class Once(Strategy):
    """On the first live book: one GTC limit order of ``lots`` at ``price_ticks``."""

    Params = OnceParams

    sent = False

    def on_book(self, book: BookView) -> None:
        if self.sent:
            return
        self.sent = True
        params: OnceParams = self.params  # type: ignore[assignment]
        side = Side.BUY if params.side == "buy" else Side.SELL
        tif = TimeInForce(params.time_in_force)
        self.ctx.submit(book.symbol, side, params.lots, params.price_ticks, time_in_force=tif)


class OnTimer(Strategy):
    """At each ``on_timer``: one GTC limit buy of 1 lot at 99.00 (tick 0.01), below the book."""

    def on_book(self, book: BookView) -> None:
        pass

    def on_timer(self) -> None:
        self.ctx.submit("BTC-USD", Side.BUY, 1, 9900)


class Watch(Strategy):
    """Sends nothing; notes the collector's thresholds at each update and its runner's timing."""

    thresholds: ClassVar[list[tuple[int, int, int]]] = []
    timed_evaluations: ClassVar[list[int]] = []

    def on_book(self, book: BookView) -> None:
        Watch.thresholds.append(gc.get_threshold())

    def on_stop(self) -> None:
        runner = self.ctx.runner  # type: ignore[attr-defined]
        Watch.timed_evaluations.append(runner.latency.count)
