"""The one-command demo: the engine, the exchange simulator, a live status.

Everything runs in one process on loopback: the exchange simulator serves
the order API on a free port and publishes its books to the engine's feed
port; the engine runs the given configuration (the embedded default when
there is no ``config/engine.toml``) with its orders going to the
simulator over HTTP, exactly as ``trading-engine run`` does; the admin API
serves ``/metrics`` and ``/status``. The terminal shows a refreshing
status; Ctrl-C or ``--duration`` stops it and prints a summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import sys
import time
from typing import Any, TextIO

from ..config import Config
from ..engine.runner import Service, build_engine
from ..sim.exchange_sim import ExchangeSimulator

__all__ = ["run_demo"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render(service: Service, started: float, frames_before: int, elapsed: float) -> str:
    """The status screen as text."""
    engine = service.engine
    status = engine.status()
    frames = sum(engine.builder.accepted.values())
    rate = (frames - frames_before) / elapsed if elapsed > 0 else 0.0
    p50 = engine.tick_to_trade.quantile_s(0.5)
    p99 = engine.tick_to_trade.quantile_s(0.99)
    lines = [
        f"trading-engine demo   up {time.monotonic() - started:6.1f} s   "
        f"trading {status['trading_state']}   breaker {status['breaker']}   "
        f"admin http://{service.admin.host}:{service.admin.port}/metrics",
        "",
        f"{'symbol':10} {'state':18} {'bid':>22} {'ask':>22}",
    ]
    for symbol, book in status["books"].items():
        bid = " x ".join(book["best_bid"]) if book["best_bid"] else "-"
        ask = " x ".join(book["best_ask"]) if book["best_ask"] else "-"
        lines.append(f"{symbol:10} {book['state']:18} {bid:>22} {ask:>22}")
    lines += [
        "",
        f"feed {rate:8,.0f} msg/s   frames {frames:,}   "
        f"rejected {sum(engine.builder.rejected.values()):,}",
        f"orders {engine.order_counts['submitted']:,}   fills {engine.order_counts['fills']:,}   "
        f"open {status['open_orders']}   risk denials {sum(engine.risk.denied.values()):,}",
        "tick-to-trade (bucket bound) "
        f"p50 {_us(p50)}   p99 {_us(p99)}   n={engine.tick_to_trade.count:,}",
        "",
        f"{'position':10} {'quantity':>12} {'avg price':>12} {'realized':>12} {'unrealized':>12}",
    ]
    for symbol, position in status["positions"].items():
        lines.append(
            f"{symbol:10} {position['quantity']:>12} {position['avg_price'] or '-':>12} "
            f"{position['realized_pnl']:>12} {position['unrealized_pnl']:>12}"
        )
    return "\n".join(lines)


def _us(seconds: float | None) -> str:
    return "-" if seconds is None else f"<= {seconds * 1e6:,.0f} us"


def summary(service: Service, seconds: float) -> dict[str, Any]:
    engine = service.engine
    status = engine.status()
    return {
        "seconds": round(seconds, 1),
        "frames": sum(engine.builder.accepted.values()),
        "feed_rejected": sum(engine.builder.rejected.values()),
        "orders": dict(engine.order_counts),
        "risk_denied": {k.value: v for k, v in engine.risk.denied.items() if v},
        "positions": status["positions"],
        "tick_to_trade_p50_s": engine.tick_to_trade.quantile_s(0.5),
        "tick_to_trade_p99_s": engine.tick_to_trade.quantile_s(0.99),
    }


async def run_demo(
    config: Config, duration_s: float | None, out: TextIO = sys.stdout, refresh_s: float = 1.0
) -> dict[str, Any]:
    """Run the demo until Ctrl-C or ``duration_s``; returns the summary."""
    api_key = secrets.token_hex(16)
    simulator = ExchangeSimulator(
        [item.to_instrument() for item in config.instruments],
        api_key=api_key,
        port=_free_port(),
        rate=200,
        seed=int(time.time()),
    )
    await simulator.start()
    gateway = config.gateway.model_copy(
        update={"base_url": f"http://127.0.0.1:{simulator.port}", "mode": "httpx"}
    )
    # Each demo has a fresh simulator: a journal kept across demos would not match it.
    journal = config.journal.model_copy(update={"path": ":memory:"})
    config = config.model_copy(update={"gateway": gateway, "journal": journal})
    service = Service(build_engine(config, environ={config.gateway.api_key_env: api_key}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    try:
        await service.start()
        assert service.engine.feed is not None
        simulator.publish_to("127.0.0.1", service.engine.feed.port)
        interactive = out.isatty()
        frames_before = 0
        last = time.monotonic()
        deadline = None if duration_s is None else started + duration_s
        while not stop.is_set():
            timeout = (
                refresh_s
                if deadline is None
                else max(0.0, min(refresh_s, deadline - time.monotonic()))
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await stop.wait()
            now = time.monotonic()
            screen = render(service, started, frames_before, now - last)
            frames_before = sum(service.engine.builder.accepted.values())
            last = now
            if interactive:
                out.write("\x1b[H\x1b[2J" + screen + "\n")
            else:
                out.write(screen + "\n\n")
            out.flush()
            if deadline is not None and now >= deadline:
                break
    finally:
        await service.shutdown()
        await simulator.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return summary(service, time.monotonic() - started)
