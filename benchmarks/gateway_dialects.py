"""The fast-path order on each dialect: decision to bytes written, in one run.

``python -m benchmarks.gateway_dialects [--orders N] [--runs R] [--json FILE]``

Two gateways in fast mode, each with one warm connection, place IOC orders
one at a time: one on the project's own API (an unsigned JSON body) against
the exchange simulator, one on Binance spot (a form body signed with
HMAC-SHA256, timestamp and recvWindow included) against the simulator's
Binance dialect. Both simulators run in this process; an order is timed
from the call to ``HttpGateway.submit`` (the strategy's decision) to the
fast channel's ``before_write`` (``on_written``: the bytes handed to the
kernel), which happens synchronously inside ``submit``, so the simulators'
work never falls inside the interval. Each order waits for its answer
before the next (the connection is idle again). The two dialects alternate
order by order after a warm-up; per run the median and p99 of each, then
the median over the runs, and what the signed order adds (the budget: at
most 10 us).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from benchmarks._common import BINANCE_API_KEY as API_KEY
from benchmarks._common import BINANCE_SECRET as SECRET
from benchmarks._common import Variants, print_variants
from trading_engine import Instrument
from trading_engine.config import GatewayConfig
from trading_engine.core.breaker import BreakerSettings, CircuitBreaker
from trading_engine.core.orders import Order, OrderStatus, OrderType, TimeInForce
from trading_engine.core.protocol import Side
from trading_engine.core.reports import FillReport, OrderReport
from trading_engine.io.fastpath import FastOrderChannel
from trading_engine.io.gateway import HttpGateway
from trading_engine.io.order_api import OrderApiDialect
from trading_engine.sim.binance import ApiKeys, BinanceSimulator, LimitSettings
from trading_engine.sim.exchange_sim import ExchangeSimulator
from trading_engine.venues.binance import BinanceSpotCodec, HmacSha256Signer
from trading_engine.venues.binance.order_api import BinanceOrderDialect

OWN = "own API (unsigned JSON)"
BINANCE = "binance (HMAC-signed form)"


class _Listener:
    """Records when each order's bytes were written; follows statuses."""

    def __init__(self) -> None:
        self.written_ns = 0
        self.open: dict[str, Order] = {}

    def on_written(self, order: Order) -> None:
        self.written_ns = time.perf_counter_ns()

    def on_report(self, report: OrderReport) -> bool:
        self.on_status(report.client_order_id, report.status, report.reason)
        return True

    def on_fill(self, fill: FillReport) -> None:
        pass

    def on_status(self, client_order_id: str, status: OrderStatus, reason: str | None) -> None:
        order = self.open.get(client_order_id)
        if order is not None:
            order.status = status
            if status not in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
                del self.open[client_order_id]

    def on_order_fault(self, client_order_id: str, kind: str) -> None:
        pass

    def resting_orders(self) -> list[Order]:
        return []

    def order(self, client_order_id: str) -> Order | None:
        return self.open.get(client_order_id)


def _gateway(
    base: str, instrument: Instrument, dialect: OrderApiDialect | None
) -> tuple[HttpGateway, _Listener]:
    listener = _Listener()
    target = "/orders" if dialect is None else dialect.fast_target
    headers = None if dialect is None else dialect.fast_headers
    fast = FastOrderChannel(base, API_KEY, 1, target=target, headers=headers)
    config = GatewayConfig(
        base_url=base,
        venue="own" if dialect is None else "binance",
        max_requests_per_s=100_000,
        fills_poll_s=3600,
        resting_order_check_s=3600,
    )
    gateway = HttpGateway(
        config,
        listener,  # type: ignore[arg-type]
        {instrument.symbol: instrument},
        CircuitBreaker(BreakerSettings(), time.monotonic_ns),
        api_key=API_KEY,
        fast=fast,
        dialect=dialect,
        rng=random.Random(1),
    )
    return gateway, listener


async def _place(gateway: HttpGateway, listener: _Listener, order: Order) -> int:
    """Submit ``order``; ns from the call to its bytes written (-1: not on the fast path)."""
    listener.open[order.client_order_id] = order
    sent_before = gateway.fast.sent if gateway.fast is not None else 0
    start = time.perf_counter_ns()
    refused = gateway.submit(order)
    assert refused is None, refused
    written = listener.written_ns - start
    on_fast = gateway.fast is not None and gateway.fast.sent > sent_before
    assert await gateway.drain(5.0), "an order got no answer"
    return written if on_fast else -1


async def run(orders: int, runs: int) -> dict[str, Any]:
    own_inst = Instrument("BTC-USD", "0.01", "0.001")
    bin_inst = Instrument("BTCUSDT", "0.01", "0.001")
    own_sim = ExchangeSimulator([own_inst], api_key=API_KEY, port=0, rate=1.0, seed=1)
    bin_sim = BinanceSimulator(
        [bin_inst],
        keys=ApiKeys(hmac={API_KEY: SECRET}),
        # The venue's order and weight limits would pause a benchmark, not an engine.
        limits=LimitSettings(weight_per_minute=10**9, orders_per_10s=10**9, orders_per_day=10**9),
        port=0,
        rate=1.0,
        seed=1,
    )
    await own_sim.start()
    await bin_sim.start()
    codec = BinanceSpotCodec(API_KEY, HmacSha256Signer(SECRET), {bin_inst.symbol: bin_inst})
    own, own_listener = _gateway(f"http://127.0.0.1:{own_sim.port}", own_inst, None)
    binance, bin_listener = _gateway(
        f"http://127.0.0.1:{bin_sim.port}",
        bin_inst,
        BinanceOrderDialect(codec, API_KEY, order_limit_10s=10**9),
    )
    for gateway in (own, binance):
        assert gateway.fast is not None
        await gateway.fast.start()
    await binance.check_clock()
    # The venue's filters are checked before each order, as the engine does:
    # read at start, the order's own price standing for the book's mid.
    await binance.load_rules()
    binance.market = lambda order: (order.price, 0)
    figures = Variants([OWN, BINANCE])
    count = 0

    def order(symbol: str, price: int) -> Order:
        nonlocal count
        count += 1
        return Order(
            f"b-r-{count}", "b", symbol, Side.BUY, OrderType.LIMIT, 10, price, TimeInForce.IOC
        )

    try:
        deep = {
            OWN: (own, own_listener, own_inst, own_sim),
            BINANCE: (binance, bin_listener, bin_inst, bin_sim),
        }
        for run_index in range(runs + 1):  # the first is the warm-up
            samples: dict[str, list[int]] = {OWN: [], BINANCE: []}
            for _ in range(orders):
                for name, (gateway, listener, inst, sim) in deep.items():
                    # Far under the bid: the IOC order expires, no position builds.
                    price = sim.walks[inst.symbol].best_bid - 500
                    written = await _place(gateway, listener, order(inst.symbol, price))
                    if written >= 0:
                        samples[name].append(written)
            if run_index == 0:
                continue
            for name, values in samples.items():
                figures.add_run(name, values)
    finally:
        for gateway in (own, binance):
            await gateway.close()
        await own_sim.stop()
        await bin_sim.stop()
    return figures.result(OWN, orders=orders, runs=runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    print_variants(asyncio.run(run(args.orders, args.runs)), "dialect", args)


if __name__ == "__main__":
    main()
