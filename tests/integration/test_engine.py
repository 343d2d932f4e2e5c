"""The whole engine on loopback: feed in, strategy, risk, simulated venue."""

from __future__ import annotations

import orjson
import pytest

from tests.fakes import config
from tests.helpers import wait_until
from trading_engine.core.orders import OrderStatus
from trading_engine.engine.engine import Engine
from trading_engine.sim.publisher import Publisher
from trading_engine.sim.venue import simulated_venue


def frame(obj: dict[str, object]) -> bytes:
    return orjson.dumps(obj) + b"\n"


@pytest.mark.asyncio
async def test_feed_to_fill_and_clean_shutdown() -> None:
    cfg = config(
        [
            {
                "name": "taker",
                "class": "threshold",
                "symbols": ["BTC-USD"],
                "params": {"side": "buy", "trigger_price": "99.00", "quantity": "1"},
            },
            {
                "name": "maker",
                "class": "strategies.market_maker:MarketMaker",
                "symbols": ["ETH-USD"],
                "params": {"quantity": "0.5", "max_inventory": "2"},
            },
        ],
        feed={"host": "127.0.0.1", "port": 0},
    )
    engine = Engine(cfg, sink_factory=simulated_venue)
    await engine.start()
    assert engine.feed is not None
    async with Publisher("127.0.0.1", engine.feed.port) as pub:
        await pub.send(
            frame({"type": "snapshot", "symbol": "BTC-USD", "seq": 1,
                   "bids": [["98.50", "1"]], "asks": [["99.50", "4"]]})
            + frame({"type": "snapshot", "symbol": "ETH-USD", "seq": 7,
                     "bids": [["10.00", "3"]], "asks": [["10.20", "3"]]})
            + frame({"type": "update", "symbol": "BTC-USD", "seq": 2,
                     "bids": [], "asks": [["98.99", "0.4"]]})
        )  # fmt: skip
        await wait_until(lambda: engine.builder.books["BTC-USD"].seq == 2)
    await wait_until(lambda: engine.builder.books["BTC-USD"].state.value == "stale")
    taker_orders = [o for o in engine.orders.values() if o.strategy == "taker"]
    assert len(taker_orders) == 1
    (order,) = taker_orders
    # IOC for 1.000 at 98.99 against 0.400 shown: partly filled, rest canceled.
    assert order.filled == 400
    assert order.status is OrderStatus.CANCELED
    status = engine.status()
    assert status["positions"]["BTC-USD"]["quantity"] == "0.400"
    assert status["positions"]["BTC-USD"]["avg_price"] == "98.99"
    assert status["books"]["BTC-USD"] == {
        "state": "stale",  # the publisher disconnected
        "seq": 2,
        "best_bid": ["98.50", "1.000"],
        "best_ask": ["98.99", "0.400"],
    }
    taker = status["strategies"]["taker"]
    assert (taker["enabled"], taker["errors"], taker["orders"], taker["fills"]) == (True, 0, 1, 1)
    maker_open = [o for o in engine.orders.values() if o.strategy == "maker" and o.is_open]
    assert len(maker_open) == 2  # a bid and an ask resting
    assert status["open_orders"] == 2
    assert engine.tick_to_trade.count >= 1
    await engine.stop()
    assert all(not o.is_open for o in engine.orders.values())  # canceled at shutdown
    assert engine.feed is not None
    assert not engine.feed.listening
