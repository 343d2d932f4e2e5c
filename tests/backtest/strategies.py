"""Strategies for backtest tests: each sends fixed orders, so fills can be computed by hand."""

from __future__ import annotations

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
