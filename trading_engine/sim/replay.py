"""Replay: a captured feed through the same books, strategies and risk.

Frames are applied in order, as fast as possible, to an :class:`Engine`
whose orders go to the in-process simulated venue. The engine's clock is
the capture's receive time of each frame, and client order ids use the
fixed run id ``replay``, so the same capture and configuration always give
the same orders, fills and PnL.

Strategy timers (``on_timer``) fire on that clock: as it passes each
due time, before the frame that moved it.

Strategy hooks that suspend (``await`` something that is not ready) need
the live event loop and cannot be replayed deterministically; replay runs
without one, so such a hook counts as a strategy error.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..core.clock import ManualClock
from ..core.orders import Order, OrderSink
from ..engine.engine import Engine
from ..io.capture import read_capture
from .venue import simulated_venue

__all__ = ["ReplayResult", "replay"]


@dataclass
class ReplayResult:
    frames: int
    seconds: float
    orders: dict[str, int]
    fills: int
    positions: dict[str, Any]
    order_log: list[tuple[str, str, str, int, int | None, str, int]] = field(repr=False)
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.frames_per_s),
            "orders": self.orders,
            "fills": self.fills,
            "positions": self.positions,
            "feed_rejected": self.rejected,
        }


def replay(config: Config, frames: Iterable[tuple[int, bytes]]) -> ReplayResult:
    """Run ``(recv_ns, frame)`` pairs through a fresh engine."""
    simulated = config.model_copy(
        update={"gateway": config.gateway.model_copy(update={"mode": "simulated"})}
    )
    clock = ManualClock(start_ns=0)
    # The order log lists every order; the engine keeps closed ones only a while.
    every_order: list[Order] = []

    def venue(engine: Engine) -> OrderSink:
        return _Recorded(simulated_venue(engine), every_order)

    engine = Engine(simulated, clock=clock, run_id="replay", sink_factory=venue)
    engine.start_strategies()
    handle = engine.builder.handle
    count = 0
    started = time.perf_counter()
    for recv_ns, frame in frames:
        if recv_ns > clock.now_ns:
            clock.now_ns = recv_ns
            # Strategy timers run on the capture's clock, before the frame that moved it.
            engine.run_timers()
        handle(frame, recv_ns)
        count += 1
    engine.stop_strategies()
    seconds = time.perf_counter() - started
    status = engine.status()
    order_log = [
        (o.client_order_id, o.symbol, o.side.value, o.quantity, o.price, o.status.value, o.filled)
        for o in every_order
    ]
    orders = {key: value for key, value in sorted(engine.order_counts.items()) if key != "fills"}
    return ReplayResult(
        frames=count,
        seconds=seconds,
        orders=orders,
        fills=engine.order_counts["fills"],
        positions=status["positions"],
        order_log=order_log,
        rejected={k.value: v for k, v in engine.builder.rejected.items() if v},
    )


class _Recorded:
    """An order sink that notes every order it is given, then passes it on."""

    def __init__(self, sink: OrderSink, orders: list[Order]) -> None:
        self._sink = sink
        self._orders = orders

    def allow(self) -> bool:
        return self._sink.allow()

    def submit(self, order: Order) -> str | None:
        self._orders.append(order)
        return self._sink.submit(order)

    def cancel(self, order: Order) -> None:
        self._sink.cancel(order)

    def start(self) -> None:
        self._sink.start()

    def stop_orders(self) -> None:
        self._sink.stop_orders()

    def resume_orders(self) -> None:
        self._sink.resume_orders()

    async def drain(self, within_s: float) -> bool:
        return await self._sink.drain(within_s)

    async def close(self) -> None:
        await self._sink.close()

    def forget(self, client_order_id: str) -> None:
        self._sink.forget(client_order_id)

    def not_ready(self) -> str | None:
        return self._sink.not_ready()

    def breaker_state(self) -> str:
        return self._sink.breaker_state()


def replay_file(config: Config, path: str) -> ReplayResult:
    """Replay a capture file (see :mod:`trading_engine.capture`)."""
    return replay(config, read_capture(path))
