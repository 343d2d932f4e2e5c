"""A signed Binance new order against today's unsigned order body, in one run.

``python -m benchmarks.binance_order [--orders N] [--runs R] [--json FILE]``

Times, order by order (each call on its own clock reading), what the hot
path does between the decision and the bytes: the project's own API body
(``HttpGateway.order_body``, unsigned JSON) and Binance's signed form body
(``BinanceSpotCodec.new_order``: the parameters, then the signature, with
an HMAC-SHA256 key and with an Ed25519 key). Limit orders at one size with
prices cycling through 1,000 values and a new client order id each, as a
quoting strategy sends them. The three variants are interleaved in each
run after a warm-up; per run the median and p99 of each, then the median
over the runs, and what signing adds to the unsigned body (the budget:
at most 10 us).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchmarks._common import BINANCE_API_KEY, BINANCE_SECRET, Variants, print_variants
from trading_engine import Instrument, Order, OrderType, Side, TimeInForce
from trading_engine.config import GatewayConfig
from trading_engine.core.breaker import BreakerSettings, CircuitBreaker
from trading_engine.io.gateway import HttpGateway
from trading_engine.venues.binance import BinanceSpotCodec, Ed25519Signer, HmacSha256Signer

SYMBOL = "BTCUSDT"
UNSIGNED = "own API body (unsigned)"
TIMESTAMP_MS = 1_760_000_000_000


class _Listener:
    def __getattr__(self, name: str) -> object:
        return lambda *args: None


def _variants() -> dict[str, Callable[[Order], object]]:
    instrument = Instrument(SYMBOL, "0.01", "0.00001")
    gateway = HttpGateway(
        GatewayConfig(base_url="http://127.0.0.1:1"),
        _Listener(),  # type: ignore[arg-type]
        {SYMBOL: instrument},
        CircuitBreaker(BreakerSettings(), time.monotonic_ns),
        api_key="k",
    )
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    hmac_codec = BinanceSpotCodec(
        BINANCE_API_KEY, HmacSha256Signer(BINANCE_SECRET), {SYMBOL: instrument}
    )
    ed_codec = BinanceSpotCodec(BINANCE_API_KEY, Ed25519Signer(pem), {SYMBOL: instrument})
    hmac_order, ed_order = hmac_codec.new_order, ed_codec.new_order
    return {
        UNSIGNED: gateway.order_body,
        "binance, HMAC-SHA256": lambda order: hmac_order(order, TIMESTAMP_MS),
        "binance, Ed25519": lambda order: ed_order(order, TIMESTAMP_MS),
    }


def _orders(count: int, prices: int) -> list[Order]:
    return [
        Order(f"te-mm-tpl3obog6r-{i:x}", "mm", SYMBOL, Side.BUY, OrderType.LIMIT, 150,
              6_500_000 + i % prices, TimeInForce.GTC)
        for i in range(count)
    ]  # fmt: skip


def _time_each(build: Callable[[Order], object], orders: list[Order]) -> list[int]:
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    for order in orders:
        started = clock()
        build(order)
        append(clock() - started)
    return samples


def run(orders: int = 20_000, runs: int = 5, prices: int = 1_000) -> dict[str, Any]:
    """Per variant: the medians over the runs of each run's median and p99, in ns."""
    variants = _variants()
    batch = _orders(orders, prices)
    for build in variants.values():
        _time_each(build, batch[: min(len(batch), 5_000)])  # warm-up: caches, allocator
    figures = Variants(list(variants))
    for _ in range(runs):
        for name, build in variants.items():
            figures.add_run(name, _time_each(build, batch))
    return figures.result(UNSIGNED, orders=orders, runs=runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--prices", type=int, default=1_000)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    print_variants(run(args.orders, args.runs, args.prices), "variant", args)


if __name__ == "__main__":
    main()
