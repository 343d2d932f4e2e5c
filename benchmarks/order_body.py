"""The ``POST /orders`` body: rendering per order (``HttpGateway.order_body``).

``python -m benchmarks.order_body [--orders N] [--runs R] [--prices P]``

Renders N limit-order bodies whose price cycles through P distinct prices
(a strategy quoting near the market) at one size, and N market-order
bodies; prints nanoseconds per body, median over R runs (min-max), for
the gateway's ``order_body`` and, interleaved in the same runs, the
rendering it replaced (each decimal formatted and encoded per order, the
body grown by concatenation), with the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks._common import machine
from trading_engine import Instrument, Order, OrderType, Side, TimeInForce
from trading_engine.config import GatewayConfig
from trading_engine.core.breaker import BreakerSettings, CircuitBreaker
from trading_engine.io.gateway import HttpGateway


def _previous(gateway: HttpGateway, order: Order) -> bytes:
    """The body as it was rendered before the decimal cache (the reference)."""
    key = (order.symbol, order.side, order.type, order.time_in_force)
    fixed = gateway._body_fields[key]
    inst = gateway._instruments[order.symbol]
    body = b'{"client_order_id":"%s",%s,"quantity":"%s"' % (
        order.client_order_id.encode(),
        fixed,
        inst.format_size(order.quantity).encode(),
    )
    if order.type is OrderType.LIMIT:
        assert order.price is not None
        body += b',"price":"%s"' % inst.format_price(order.price).encode()
    return body + b"}"


class _Listener:
    def __getattr__(self, name: str) -> object:
        return lambda *args: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--prices", type=int, default=1_000)
    args = parser.parse_args()
    inst = Instrument("BTC-USD", "0.01", "0.001")
    gateway = HttpGateway(
        GatewayConfig(base_url="http://127.0.0.1:1"),
        _Listener(),  # type: ignore[arg-type]
        {"BTC-USD": inst},
        CircuitBreaker(BreakerSettings(), time.monotonic_ns),
        api_key="k",
    )
    limits = [
        Order(f"taker-bench00001-{i:09d}", "taker", "BTC-USD", Side.BUY, OrderType.LIMIT, 5,
              100_000 + i % args.prices, TimeInForce.IOC)
        for i in range(args.orders)
    ]  # fmt: skip
    markets = [
        Order(f"taker-bench00001-{i:09d}", "taker", "BTC-USD", Side.SELL, OrderType.MARKET, 5,
              None, TimeInForce.IOC)
        for i in range(args.orders)
    ]  # fmt: skip
    print(machine())
    for name, orders in (("limit", limits), ("market", markets)):
        assert all(gateway.order_body(o) == _previous(gateway, o) for o in orders[:1000])
        runs: dict[str, list[float]] = {"order_body": [], "previous": []}
        for _ in range(args.runs):
            for variant in runs:
                if variant == "order_body":
                    render = gateway.order_body
                else:

                    def render(order: Order) -> bytes:
                        return _previous(gateway, order)

                started = time.perf_counter_ns()
                for order in orders:
                    render(order)
                runs[variant].append((time.perf_counter_ns() - started) / len(orders))
        for variant, per_body in runs.items():
            print(
                f"{name} {variant}: {statistics.median(per_body):.0f} ns per body "
                f"(min {min(per_body):.0f}, max {max(per_body):.0f})"
            )
        ratios = [p / o for p, o in zip(runs["previous"], runs["order_body"], strict=True)]
        print(f"{name}: previous / order_body {statistics.median(ratios):.2f}x (per-run median)")


if __name__ == "__main__":
    main()
