"""The fast-path order on each dialect: decision to bytes written, in one run.

``python -m benchmarks.gateway_dialects [--orders N] [--runs R] [--json FILE]``

Two gateways in fast mode, each with one warm connection, place IOC orders
one at a time: one on the project's own API (an unsigned JSON body) against
the exchange simulator, one on Binance spot (a form body signed with
HMAC-SHA256, timestamp and recvWindow included) against the simulator's
Binance dialect. Each simulator runs in a process of its own (``trading-engine
exchange-sim``), as a venue is never in the engine's process: in this one,
a simulator's work between two orders evicts the gateway's code and data
from the CPU's caches, which the next order then pays for (``--in-process``
measures that way too, for comparison). An order is timed
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
import os
import random
import socket
import sys
import tempfile
import time
from pathlib import Path
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


#: Far under the simulators' books (which start near 100.00): every IOC order
#: expires unfilled, inside Binance's percent-price band (0.2x to 5x the mid).
PRICE = "50.00"


async def _child_simulator(
    dialect: str, instrument: Instrument, folder: Path
) -> tuple[asyncio.subprocess.Process, int]:
    """``trading-engine exchange-sim`` of ``dialect`` in a child process; (process, port)."""
    config = folder / f"{dialect}.toml"
    config.write_text(
        f'[[instruments]]\nsymbol = "{instrument.symbol}"\n'
        f'tick_size = "{instrument.tick_size}"\nlot_size = "{instrument.lot_size}"\n'
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    arguments = [
        "exchange-sim", "--config", str(config), "--dialect", dialect, "--port", str(port),
        "--rate", "1", "--seed", "1", "--api-key-env", "BENCH_API_KEY",
    ]  # fmt: skip
    if dialect == "binance":
        # The venue's order and weight limits would pause a benchmark, not an engine.
        arguments += [
            "--api-secret-env", "BENCH_API_SECRET", "--weight-limit", "1000000000",
            "--order-limit-10s", "1000000000", "--order-limit-1d", "1000000000",
        ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trading_engine", *arguments,
        env={**os.environ, "BENCH_API_KEY": API_KEY, "BENCH_API_SECRET": SECRET},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline or process.returncode is not None:
                process.kill()
                raise RuntimeError(f"the {dialect} simulator did not start") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return process, port


async def _in_process_simulators(
    own_inst: Instrument, bin_inst: Instrument
) -> tuple[list[Any], int, int]:
    own_sim = ExchangeSimulator([own_inst], api_key=API_KEY, port=0, rate=1.0, seed=1)
    bin_sim = BinanceSimulator(
        [bin_inst],
        keys=ApiKeys(hmac={API_KEY: SECRET}),
        limits=LimitSettings(weight_per_minute=10**9, orders_per_10s=10**9, orders_per_day=10**9),
        port=0,
        rate=1.0,
        seed=1,
    )
    await own_sim.start()
    await bin_sim.start()
    return [own_sim, bin_sim], own_sim.port, bin_sim.port


async def run(orders: int, runs: int, in_process: bool = False) -> dict[str, Any]:
    own_inst = Instrument("BTC-USD", "0.01", "0.001")
    bin_inst = Instrument("BTCUSDT", "0.01", "0.001")
    with tempfile.TemporaryDirectory() as tmp:
        if in_process:
            simulators, own_port, bin_port = await _in_process_simulators(own_inst, bin_inst)
            children: list[asyncio.subprocess.Process] = []
        else:
            simulators = []
            own_child, own_port = await _child_simulator("own", own_inst, Path(tmp))
            bin_child, bin_port = await _child_simulator("binance", bin_inst, Path(tmp))
            children = [own_child, bin_child]
        try:
            return await _measure(orders, runs, own_inst, bin_inst, own_port, bin_port)
        finally:
            for simulator in simulators:
                await simulator.stop()
            for child in children:
                child.terminate()
                await child.wait()


async def _measure(
    orders: int,
    runs: int,
    own_inst: Instrument,
    bin_inst: Instrument,
    own_port: int,
    bin_port: int,
) -> dict[str, Any]:
    codec = BinanceSpotCodec(API_KEY, HmacSha256Signer(SECRET), {bin_inst.symbol: bin_inst})
    own, own_listener = _gateway(f"http://127.0.0.1:{own_port}", own_inst, None)
    binance, bin_listener = _gateway(
        f"http://127.0.0.1:{bin_port}",
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

    def order(instrument: Instrument) -> Order:
        nonlocal count
        count += 1
        return Order(
            f"b-r-{count}", "b", instrument.symbol, Side.BUY, OrderType.LIMIT, 10,
            instrument.price_to_ticks(PRICE), TimeInForce.IOC,
        )  # fmt: skip

    try:
        deep = {OWN: (own, own_listener, own_inst), BINANCE: (binance, bin_listener, bin_inst)}
        for run_index in range(runs + 1):  # the first is the warm-up
            samples: dict[str, list[int]] = {OWN: [], BINANCE: []}
            for _ in range(orders):
                for name, (gateway, listener, inst) in deep.items():
                    written = await _place(gateway, listener, order(inst))
                    if written >= 0:
                        samples[name].append(written)
            if run_index == 0:
                continue
            for name, values in samples.items():
                figures.add_run(name, values)
    finally:
        for gateway in (own, binance):
            await gateway.close()
    return figures.result(OWN, orders=orders, runs=runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the simulators in this process (their work shares the CPU caches)",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.orders, args.runs, args.in_process))
    result["simulators"] = "in this process" if args.in_process else "child processes"
    print_variants(result, "dialect", args)


if __name__ == "__main__":
    main()
