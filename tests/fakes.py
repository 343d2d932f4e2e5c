"""Small hand-written fakes and builders shared by the engine tests."""

from __future__ import annotations

from typing import Any

import orjson

from trading_engine import Config, OrderType, Side, TimeInForce, parse_config
from trading_engine.core.orders import Order
from trading_engine.core.strategy import (
    BookView,
    Fill,
    Strategy,
)


class Probe(Strategy):
    """A strategy that does nothing by itself; tests drive its context."""

    def on_book(self, book: BookView) -> None:
        pass


def config(strategies: list[dict[str, Any]] | None = None, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "instruments": [
            {"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.001"},
            {"symbol": "ETH-USD", "tick_size": "0.01", "lot_size": "0.001"},
        ],
        "strategies": strategies
        if strategies is not None
        else [{"name": "probe", "class": "tests.fakes:Probe", "symbols": ["BTC-USD"]}],
    }
    # Tests keep no journal on disk unless they ask for one: a journal left
    # in the working directory would carry one test's state into the next.
    data["journal"] = {"path": ":memory:"}
    data.update(sections)
    return parse_config(data, environ={})


def snapshot(
    seq: int, bids: list[list[str]], asks: list[list[str]], symbol: str = "BTC-USD"
) -> bytes:
    return orjson.dumps(
        {"type": "snapshot", "symbol": symbol, "seq": seq, "bids": bids, "asks": asks}
    )


def update(
    seq: int, bids: list[list[str]], asks: list[list[str]], symbol: str = "BTC-USD"
) -> bytes:
    return orjson.dumps(
        {"type": "update", "symbol": symbol, "seq": seq, "bids": bids, "asks": asks}
    )


class Recorder(Strategy):
    """Records every hook call."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: list[str] = []

    def on_start(self) -> None:
        self.calls.append("start")

    def on_book(self, book: BookView) -> None:
        self.calls.append(f"book:{book.seq}")

    def on_stop(self) -> None:
        self.calls.append("stop")

    def on_fill(self, fill: Fill) -> None:
        self.calls.append(repr(fill))


class Raiser(Strategy):
    """Raises on every update."""

    def on_book(self, book: BookView) -> None:
        raise RuntimeError("boom")


class AsyncQuick(Strategy):
    """An async hook that never suspends."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.seen = 0

    async def on_book(self, book: BookView) -> None:
        self.seen += 1


class AsyncSlow(Strategy):
    """Suspends for ``delay`` seconds, then tries to buy."""

    delay = 0.05

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.done = 0
        self.results: list[object] = []

    async def on_book(self, book: BookView) -> None:
        import asyncio

        await asyncio.sleep(self.delay)
        self.done += 1
        self.results.append(self.ctx.buy(book.symbol, 1, 10000))


class Stubborn(AsyncSlow):
    """Ignores its cancellation and tries to trade anyway (late answer)."""

    async def on_book(self, book: BookView) -> None:
        import asyncio

        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.results.append(self.ctx.buy(book.symbol, 1, 10000))
            raise


class Sweeper(Strategy):
    """Takes several levels at once: alternately buys 8 lots of 0.001 x 1000 IOC
    five ticks through the best ask and sells them five ticks through the
    best bid, at most one order per 20 ms, so fills come at several prices
    per order and half of them close the position the other half opened."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.buy_next = True
        self.last_ns = 0

    def on_book(self, book: BookView) -> None:
        now = self.ctx.now_ns()
        if now - self.last_ns < 20_000_000:
            return
        if self.buy_next:
            price = book.best_ask
            side = Side.BUY
        else:
            price = book.best_bid
            side = Side.SELL
        if price is None:
            return
        price = price + 5 if side is Side.BUY else price - 5
        order = self.ctx.submit(book.symbol, side, 8000, price, OrderType.LIMIT, TimeInForce.IOC)
        if order is not None:
            self.last_ns = now
            self.buy_next = not self.buy_next


class NullSink:
    """An order sink that sends nothing: every call of the contract, doing nothing.

    Test sinks subclass it and override what they observe.
    """

    def allow(self) -> bool:
        return True

    def submit(self, order: Order) -> str | None:
        return None

    def cancel(self, order: Order) -> None:
        pass

    def start(self) -> None:
        pass

    def stop_orders(self) -> None:
        pass

    def resume_orders(self) -> None:
        pass

    async def drain(self, within_s: float) -> bool:
        return True

    async def close(self) -> None:
        pass

    def forget(self, client_order_id: str) -> None:
        pass

    def not_ready(self) -> str | None:
        return None

    def breaker_state(self) -> str:
        return "closed"
