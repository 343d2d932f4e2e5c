"""The one-command demo: the engine, the exchange simulator, a live status.

Everything runs in one process on loopback: the exchange simulator serves
the order API on a free port and publishes its books to the engine's feed
port; the engine runs the given configuration (the embedded default when
there is no ``config/engine.toml``) with its orders going to the
simulator over HTTP, exactly as ``trading-engine run`` does; the admin API
serves ``/metrics`` and ``/status``. If the configured feed or admin port
is taken, the demo uses a free one and says so. The terminal shows a
refreshing status (log lines go to a file, whose path the command
prints); Ctrl-C or ``--duration`` stops it and prints a JSON summary.

Tick-to-trade on the screen and in the summary is measured: nearest-rank
percentiles of the last 100,000 samples (feed bytes received -> order
request handed to the socket), never a histogram bucket's bound.


With ``faults`` (``demo --faults``) the simulator misbehaves the way the
order path must survive: 5xx before and after taking orders, held and
late answers, 429s on orders and reads, lost orders, dropped and refused
connections. The screen's gateway line shows how each was handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from ..config import Config
from ..engine.runner import Service, prepare_engine
from ..engine.strategy_view import strategies_status
from ..io.gateway import HttpGateway
from ..lowlevel.metrics import SampledHistogram
from ..sim.exchange_sim import ExchangeSimulator, Faults

__all__ = ["DEMO_FAULTS", "free_ports", "render", "run_demo", "strategy_lines", "summary"]

#: The order-path faults ``demo --faults`` turns on (probabilities per request).
DEMO_FAULTS = Faults(
    fail_before=0.02, fail_after=0.02, hang=0.01, hang_s=0.6, late_answer=0.03,
    rate_limit=0.005, read_rate_limit=0.01, retry_after_s=1, forget=0.02, reset=0.01,
    accept_close=0.02,
)  # fmt: skip


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_ports(config: Config) -> tuple[Config, list[str]]:
    """``config`` with a free port for the feed and the admin API where theirs is taken.

    Returns the configuration and one line per port moved, for the user.
    """
    notes: list[str] = []
    update: dict[str, Any] = {}
    for key in ("feed", "admin"):
        section = getattr(config, key)
        if section.port and not _port_free(section.host, section.port):
            port = _free_port(section.host)
            notes.append(f"{key}.port {section.port} is in use; the demo uses {port}")
            update[key] = section.model_copy(update={"port": port})
    return (config.model_copy(update=update) if update else config), notes


def _us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:,.0f} us"


def render(
    service: Service,
    simulator: ExchangeSimulator,
    started: float,
    frames_before: int,
    elapsed: float,
) -> str:
    """The status screen as text."""
    engine = service.engine
    status = engine.status()
    frames = sum(engine.builder.accepted.values())
    rate = (frames - frames_before) / elapsed if elapsed > 0 else 0.0
    latency = engine.tick_to_trade
    p50 = p99 = None
    if isinstance(latency, SampledHistogram):
        p50, p99 = latency.percentile_s(0.5), latency.percentile_s(0.99)
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
        f"orders {engine.order_counts['submitted']:,}   fills {engine.order_counts['fills']:,} "
        f"(exchange: {len(simulator.fills):,})   open {status['open_orders']}   "
        f"risk denials {sum(engine.risk.denied.values()):,}{_reasons(engine.risk.denied)}",
        f"tick-to-trade (measured) p50 {_us(p50)}   p99 {_us(p99)}   n={latency.count:,}",
    ]
    gateway = engine.sink
    if isinstance(gateway, HttpGateway):
        events = gateway.counts
        lines.append(
            f"gateway: unknown {events['unknown']}  settled {events['settled']}  "
            f"re-sent {events['resent']}  rate_limited {events['rate_limited']}  "
            f"429s {events['venue_rate_limited']} "
            f"(paused {gateway.scheduler.paused_ns_total / 1e9:.0f} s)  "
            f"not_found {events['not_found']}  read failures {events['read_failed']}"
        )
    lines += [
        "",
        f"{'position':10} {'quantity':>12} {'avg price':>12} {'realized':>14} {'unrealized':>14}",
    ]
    if status["positions"] is None:
        lines.append("unknown until start-up reconciliation settles them")
    for symbol, position in (status["positions"] or {}).items():
        lines.append(
            f"{symbol:10} {position['quantity']:>12} {position['avg_price'] or '-':>12} "
            f"{position['realized_pnl']:>14} {position['unrealized_pnl']:>14}"
        )
    lines += ["", *strategy_lines(service)]
    return "\n".join(lines)


def _reasons(counts: Mapping[Any, int]) -> str:
    """`` (reason n, ...)`` for the nonzero counts, or nothing."""
    named = ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items()) if n)
    return f" ({named})" if named else ""


def strategy_lines(service: Service) -> list[str]:
    """The per-strategy table of the screen: one line per strategy and symbol.

    A strategy's first line gives its state, counts, total PnL and how long
    ago it last evaluated a hook; a disabled one adds a line with why, a
    denied one a line with its denials by reason.
    """
    engine = service.engine
    lines = [
        f"{'strategy':12} {'state':9} {'orders':>7} {'fills':>6} {'denied':>7} {'errors':>6} "
        f"{'symbol':10} {'position':>10} {'realized':>12} {'unrealized':>12} {'decided':>9}"
    ]
    now_ns = time.perf_counter_ns()
    for name, view in strategies_status(engine).items():
        runner = engine.runners[name]
        last = runner.last_evaluation_ns
        ago = "-" if not last else f"{(now_ns - last) / 1e9:.1f} s ago"
        positions = list((view["positions"] or {}).items()) or [("-", None)]
        for index, (symbol, position) in enumerate(positions):
            quantity = position["quantity"] if position else "-"
            realized = position["realized_pnl"] if position else "-"
            unrealized = position["unrealized_pnl"] if position else "-"
            if index == 0:
                head = (
                    f"{name:12} {view['state']:9} {view['orders']:>7,} {view['fills']:>6,} "
                    f"{view['denied']:>7,} {view['errors']:>6,} "
                )
                tail = f" {ago:>9}"
            else:
                head, tail = " " * 53, ""
            lines.append(f"{head}{symbol:10} {quantity:>10} {realized:>12} {unrealized:>12}{tail}")
        if view["disabled_reason"]:
            lines.append(f"  {name} disabled: {view['disabled_reason']}")
        elif view["last_error"]:
            lines.append(f"  {name} last error: {view['last_error']}")
        if view["denials"]:
            lines.append(f"  {name} denials:{_reasons(view['denials'])}")
    return lines


def summary(service: Service, simulator: ExchangeSimulator, seconds: float) -> dict[str, Any]:
    """The end-of-demo summary: JSON-safe (no NaN or infinity; None when unmeasured)."""
    engine = service.engine
    status = engine.status()
    latency = engine.tick_to_trade
    measured: dict[str, Any] = {"n": latency.count}
    if isinstance(latency, SampledHistogram):
        for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)):
            value = latency.percentile_s(fraction)
            measured[f"{name}_us"] = None if value is None else round(value * 1e6, 1)
    return {
        "seconds": round(seconds, 1),
        "frames": sum(engine.builder.accepted.values()),
        "feed_rejected": sum(engine.builder.rejected.values()),
        "orders": dict(engine.order_counts),
        "exchange_fills": len(simulator.fills),
        "risk_denied": {k.value: v for k, v in engine.risk.denied.items() if v},
        "positions": status["positions"],
        "strategies": status["strategies"],
        "tick_to_trade": measured,
        "gateway": {k: v for k, v in getattr(engine.sink, "counts", {}).items() if v},
    }


async def run_demo(
    config: Config,
    duration_s: float | None,
    out: TextIO = sys.stdout,
    refresh_s: float = 1.0,
    faults: Faults | None = None,
) -> dict[str, Any]:
    """Run the demo until Ctrl-C or ``duration_s``; returns the summary.

    ``config``'s feed and admin ports are used as given (see :func:`free_ports`).
    The gateway runs in the configuration's mode (``fast`` or ``httpx``;
    ``simulated`` becomes ``fast``) against the simulator, which injects
    ``faults`` when given.
    """
    api_key = secrets.token_hex(16)
    simulator = ExchangeSimulator(
        [item.to_instrument() for item in config.instruments],
        api_key=api_key,
        port=_free_port(),
        rate=200,
        seed=int(time.time()),
        faults=faults,
    )
    await simulator.start()
    mode = "fast" if config.gateway.mode == "simulated" else config.gateway.mode
    gateway = config.gateway.model_copy(
        update={"base_url": f"http://127.0.0.1:{simulator.port}", "mode": mode}
    )
    # Each demo has a fresh simulator: a journal kept across demos would not match it.
    journal = config.journal.model_copy(update={"path": ":memory:"})
    config = config.model_copy(update={"gateway": gateway, "journal": journal})
    engine = prepare_engine(config, environ={config.gateway.api_key_env: api_key})
    engine.tick_to_trade = SampledHistogram()
    service = Service(engine)
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
            screen = render(service, simulator, started, frames_before, now - last)
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
    return summary(service, simulator, time.monotonic() - started)
