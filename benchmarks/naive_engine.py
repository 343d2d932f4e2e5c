"""The naive reference engine that ``trading-engine bench --baseline`` compares against.

Written the way the design this product grew from sketches its trading
engine, made to run correctly: every frame parsed with the standard
library's ``json``; books kept in ``SortedDict``s with an ``async``
``apply_update``; one Task per update that ``asyncio.gather``s one
coroutine per strategy; and a new ``httpx.AsyncClient`` for every order.
Its strategy is ThresholdTaker's rule (buy at the best ask when the best
ask is at or below the trigger, one order per update). Prices stay
``Decimal``, never float.

    python benchmarks/naive_engine.py --exchange http://127.0.0.1:8080 \\
        --trigger 150.00 --quantity 0.001 [--port 0]

Prints ``listening PORT`` once the feed server listens; runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
from collections import defaultdict
from decimal import Decimal
from typing import Any

import httpx
from sortedcontainers import SortedDict


class OrderBook:
    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()

    async def apply_update(self, message: dict[str, Any]) -> None:
        if message["type"] == "snapshot":
            self.bids.clear()
            self.asks.clear()
        for side, levels in ((self.bids, message.get("bids", [])), (self.asks, message["asks"])):
            for price, size in levels:
                if Decimal(size) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(size)

    def best_ask(self) -> Decimal | None:
        return self.asks.peekitem(0)[0] if self.asks else None


class ThresholdBuyer:
    def __init__(self, symbol: str, trigger: Decimal, quantity: str) -> None:
        self.symbol = symbol
        self.trigger = trigger
        self.quantity = quantity
        self.ids = itertools.count(1)

    def generate_signal(self, book: OrderBook) -> dict[str, Any] | None:
        ask = book.best_ask()
        if ask is None or ask > self.trigger:
            return None
        return {
            "client_order_id": f"naive-{next(self.ids):09d}",
            "symbol": self.symbol,
            "side": "buy",
            "type": "limit",
            "price": str(ask),
            "quantity": self.quantity,
            "time_in_force": "IOC",
        }


class NaiveEngine:
    def __init__(self, exchange: str, api_key: str, strategies: list[ThresholdBuyer]) -> None:
        self.exchange = exchange
        self.api_key = api_key
        self.strategies = strategies
        self.books: defaultdict[str, OrderBook] = defaultdict(OrderBook)
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle_market_data(self, symbol: str, update: dict[str, Any]) -> None:
        book = self.books[symbol]
        await book.apply_update(update)
        tasks = [self._run_strategy(s, book) for s in self.strategies if s.symbol == symbol]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run_strategy(self, strategy: ThresholdBuyer, book: OrderBook) -> None:
        signal = strategy.generate_signal(book)
        if signal:
            await self._place_order(signal)

    async def _place_order(self, order: dict[str, Any]) -> Any:
        async with httpx.AsyncClient(timeout=0.5) as client:
            response = await client.post(
                f"{self.exchange}/orders", json=order, headers={"X-API-Key": self.api_key}
            )
            return response.json()


class FeedProtocol(asyncio.Protocol):
    def __init__(self, engine: NaiveEngine) -> None:
        self.engine = engine
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if message.get("type") in ("snapshot", "update"):
                task = asyncio.get_running_loop().create_task(
                    self.engine.handle_market_data(message["symbol"], message)
                )
                self.engine.tasks.add(task)
                task.add_done_callback(self.engine.tasks.discard)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--trigger", default="150.00")
    parser.add_argument("--quantity", default="0.001")
    parser.add_argument("--symbol", default="BTC-USD")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    engine = NaiveEngine(
        args.exchange,
        os.environ["EXCHANGE_API_KEY"],
        [ThresholdBuyer(args.symbol, Decimal(args.trigger), args.quantity)],
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FeedProtocol(engine), "127.0.0.1", args.port)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    if engine.tasks:
        await asyncio.wait(engine.tasks, timeout=2)


if __name__ == "__main__":
    asyncio.run(main())
