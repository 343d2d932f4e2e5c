"""The bench's processes: the exchange simulator, the publisher, the engine, the baseline.

Starts each round's processes on free loopback ports, runs the engine in
this process with its stages recorded sample by sample, collects the
exchange's arrival stamps and stops everything, whatever happens.

The engine speaks either order-API dialect: the project's own against
``exchange-sim``, or Binance spot (signed requests, HMAC-SHA256) against
``exchange-sim --dialect binance``; both simulators stamp an order's
arrival the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import httpx

from ...config import Config, parse_config
from ...core.builder import BookEntry
from ...core.errors import ConfigError
from ...lowlevel.metrics import LatencyHistogram
from .report import build_report
from .stats import percentiles, wire_to_wire
from .ticks import OTHER, SYMBOL, TRIGGER

__all__ = ["API_KEY", "BINANCE_SYMBOLS", "DIALECTS", "EngineCase", "bench_config", "run_bench"]

API_KEY = "bench-key"
#: The HMAC-SHA256 secret of the Binance dialect's key.
API_SECRET = "bench-secret"
#: ``--dialect``'s choices and the dialects each runs, in the order of a round.
DIALECTS: Final = {"own": ("own",), "binance": ("binance",), "both": ("own", "binance")}
#: The symbols the engine configures on the Binance dialect. The gateway takes one
#: instrument per process on that venue, so the background symbol's frames reach
#: an engine that does not know it (refused and counted, never applied); once it
#: takes more, this is ``(SYMBOL, OTHER)`` as on the own dialect.
BINANCE_SYMBOLS: Final = (SYMBOL, OTHER)
#: The venue's weight and order-count limits, lifted on both sides: at a tick
#: every 2 ms they would pause the benchmark, which measures latency, not them.
_UNLIMITED: Final = 10**9
#: The environment the exchange and the engine read their key (and secret) from.
_SECRETS: Final = {"TRADING_ENGINE_BENCH_KEY": API_KEY, "TRADING_ENGINE_BENCH_SECRET": API_SECRET}


class _Recording(LatencyHistogram):
    """A histogram that also keeps every sample (for exact percentiles)."""

    __slots__ = ("enabled", "samples")

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.samples: list[int] = []
        self.enabled = enabled

    def observe_ns(self, value_ns: int) -> None:
        self.samples.append(value_ns)
        if self.enabled:
            LatencyHistogram.observe_ns(self, value_ns)


class _Null(LatencyHistogram):
    """Latency metrics off: observing does nothing."""

    __slots__ = ()

    def observe_ns(self, value_ns: int) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_http(url: str, within_s: float = 15.0) -> None:
    """Poll ``url`` until the server answers anything (an HTTP error status included)."""
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient() as client:
        while True:
            try:
                await client.get(url, headers={"X-API-Key": API_KEY})
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


def pin_sets() -> tuple[set[int], set[int]] | None:
    """(the engine's CPUs, everyone else's) for ``--pin``, or None with one CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


def _place(pid: int, cpus: set[int] | None) -> None:
    if cpus is not None:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(pid, cpus)


def _exchange_arguments(port: int, dialect: str) -> list[str]:
    """``trading-engine exchange-sim``'s arguments for the bench on ``dialect``."""
    arguments = ["exchange-sim", "--port", str(port), "--stamp-arrivals",
                 "--api-key-env", "TRADING_ENGINE_BENCH_KEY"]  # fmt: skip
    if dialect == "binance":
        arguments += ["--dialect", "binance", "--api-secret-env", "TRADING_ENGINE_BENCH_SECRET",
                      "--weight-limit", str(_UNLIMITED), "--order-limit-10s", str(_UNLIMITED),
                      "--order-limit-1d", str(_UNLIMITED)]  # fmt: skip
    return arguments


async def _start_exchange(
    port: int, cpus: set[int] | None = None, dialect: str = "own"
) -> asyncio.subprocess.Process:
    # The bench sends the market data itself, so the simulator's warning that
    # it publishes none is expected: its stderr is shown only if it fails.
    with tempfile.TemporaryFile() as errors:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trading_engine", *_exchange_arguments(port, dialect),
            env={**os.environ, **_SECRETS, "TRADING_ENGINE__ENGINE__LOG_LEVEL": "error"},
            stdout=asyncio.subprocess.DEVNULL, stderr=errors,
        )  # fmt: skip
        _place(process.pid, cpus)
        try:
            await _wait_http(f"http://127.0.0.1:{port}/bench/arrivals")
        except httpx.TransportError:
            await _stop(process)
            errors.seek(0)
            sys.stderr.write(errors.read().decode(errors="replace"))
            raise
    return process


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


async def _publish(
    port: int,
    ticks: int,
    interval_s: float,
    burst: int,
    background_rate: float,
    cpus: set[int] | None = None,
) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trading_engine.commands.bench", str(port), str(ticks),
        str(interval_s), str(burst), str(background_rate), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _place(process.pid, cpus)
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"the publisher failed with exit code {process.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


async def _arrivals(port: int, quiet_s: float = 1.0, limit_s: float = 120.0) -> list[Any]:
    """The exchange's arrival stamps, once no order has arrived for ``quiet_s``."""
    deadline = time.monotonic() + limit_s
    seen = -1
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            answer = await client.get(
                f"http://127.0.0.1:{port}/bench/arrivals", headers={"X-API-Key": API_KEY}
            )
            answer.raise_for_status()
            result: list[Any] = answer.json()
            if len(result) == seen or time.monotonic() > deadline:
                return result
            seen = len(result)
            await asyncio.sleep(quiet_s)


def bench_config(
    loop: str,
    gateway: str,
    exchange_port: int,
    busy_poll_s: float = 0.0,
    journal_path: str = ":memory:",
    dialect: str = "own",
) -> Config:
    """The engine's configuration for the benchmark: ThresholdTaker firing on every tick.

    ``dialect`` is the order API's (``own`` or ``binance``); on ``binance``
    the instruments are :data:`BINANCE_SYMBOLS`.
    """
    symbols = BINANCE_SYMBOLS if dialect == "binance" else (SYMBOL, OTHER)
    signing = {"api_secret_env": "TRADING_ENGINE_BENCH_SECRET"} if dialect == "binance" else {}
    return parse_config(
        {
            "engine": {"loop": loop, "log_level": "error", "busy_poll_s": busy_poll_s},
            "journal": {"path": journal_path},
            "feed": {"port": 0},
            "admin": {"port": 0},
            "gateway": {
                "mode": gateway,
                "venue": dialect,
                "base_url": f"http://127.0.0.1:{exchange_port}",
                "api_key_env": "TRADING_ENGINE_BENCH_KEY",
                **signing,
                "max_requests_per_s": 100000,
                "fast_connections": 4,
            },
            "risk": {
                "max_order_quantity": "1",
                "max_order_notional": "100000",
                "max_position": "1000000",
                "max_orders_per_s": 100000,
                "price_band": 0.1,
            },
            "instruments": [
                {"symbol": symbol, "tick_size": "0.01", "lot_size": "0.001"} for symbol in symbols
            ],
            "strategies": [
                {
                    "name": "taker",
                    "class": "strategies.threshold:ThresholdTaker",
                    "symbols": [SYMBOL],
                    "params": {"side": "buy", "trigger_price": TRIGGER, "quantity": "0.001"},
                }
            ],
        },
        environ={},
    )


@dataclass(frozen=True)
class EngineCase:
    """One run of the engine under the benchmark."""

    loop: str
    gateway: str
    ticks: int
    interval_s: float
    burst: int
    metrics: bool = True
    background_rate: float = 0.0
    busy_poll_s: float = 0.0
    #: Journal every order to an SQLite file in a temporary folder (off: no journal).
    journal: bool = True
    pin: bool = False
    #: The order API's dialect: ``own`` or ``binance``.
    dialect: str = "own"


async def _engine_run(case: EngineCase) -> dict[str, Any]:
    from ...engine.runner import build_engine
    from ...engine.telemetry import GcMonitor

    pins = pin_sets() if case.pin else None
    others = None if pins is None else pins[1]
    exchange_port = _free_port()
    exchange = await _start_exchange(exchange_port, others, case.dialect)
    folder = tempfile.TemporaryDirectory(prefix="trading-engine-bench-")
    try:
        config = bench_config(
            case.loop,
            case.gateway,
            exchange_port,
            case.busy_poll_s,
            journal_path=str(Path(folder.name) / "journal.db"),
            dialect=case.dialect,
        )
        engine = build_engine(config, environ=_SECRETS, journal=case.journal)
        dialect = getattr(engine.sink, "dialect", None)
        if dialect is not None and hasattr(dialect, "order_limit_10s"):
            # The venue's limits, lifted as the simulator's are (see _UNLIMITED).
            dialect.weight_limit_1m = dialect.order_limit_10s = _UNLIMITED
        await engine.start()
        assert engine.feed is not None
        GcMonitor.tune(config.engine.gc_freeze, config.engine.gc_threshold)  # as `run` does
        fast = getattr(engine.sink, "fast", None)
        deadline = time.monotonic() + 5
        while fast is not None and len(list(fast.connections())) < config.gateway.fast_connections:
            if time.monotonic() > deadline:
                raise RuntimeError("the fast path did not connect to the exchange")
            await asyncio.sleep(0.01)
        # The engine's own stages, sample by sample (metrics on) or off.
        # tick_to_trade keeps its samples either way: it is what is compared.
        stage = _Recording if case.metrics else _Null
        stages: dict[str, LatencyHistogram] = {}
        stages["tick_to_trade"] = engine.tick_to_trade = _Recording(case.metrics)
        stages["feed_handle"] = engine.feed.handle_latency = stage()
        stages["risk"] = engine.risk_latency = stage()
        for runner in engine.runners.values():
            stages["strategy"] = runner.latency = stage()
        if hasattr(engine.sink, "roundtrip"):
            stages["roundtrip"] = engine.sink.roundtrip = stage()
        first_burst = case.ticks + 3
        last_burst = case.ticks + 2 + case.burst
        marks: dict[str, int] = {}
        burst_done = asyncio.Event()
        if case.burst:
            # Throughput: from the read that carried the burst's first update to
            # the end of applying its last one. Runs after each fan-out, so it
            # adds nothing between a tick and its order.
            previous = engine.dispatcher.after_book

            def mark(entry: BookEntry, recv_ns: int) -> None:
                if previous is not None:
                    previous(entry, recv_ns)
                if entry.symbol == SYMBOL:
                    if entry.seq == first_burst:
                        marks["start"] = recv_ns
                    elif entry.seq == last_burst:
                        marks["end"] = time.monotonic_ns()
                        burst_done.set()

            engine.dispatcher.after_book = mark
        published = await _publish(
            engine.feed.port,
            case.ticks,
            case.interval_s,
            case.burst,
            case.background_rate,
            others,
        )
        if case.burst:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await burst_done.wait()
        arrivals = await _arrivals(exchange_port, quiet_s=0.3)
        await engine.stop()
    finally:
        await _stop(exchange)
        folder.cleanup()
    throughput = None
    if "start" in marks and "end" in marks and marks["end"] > marks["start"]:
        throughput = (case.burst - 1) / ((marks["end"] - marks["start"]) / 1e9)
    return {
        "wire_to_wire_us": wire_to_wire(published["ticks"], arrivals),
        "ticks": len(published["ticks"]),
        "orders": len(arrivals),
        "stages_us": {
            name: [ns / 1000 for ns in getattr(histogram, "samples", [])]
            for name, histogram in stages.items()
        },
        "throughput_msg_per_s": throughput,
    }


def _engine_case(case: EngineCase) -> dict[str, Any]:
    from ...lowlevel.loop import new_event_loop

    pins = pin_sets() if case.pin else None
    saved = os.sched_getaffinity(0)
    if pins is not None:
        os.sched_setaffinity(0, pins[0])
    try:
        loop = new_event_loop(case.loop, busy_poll_s=case.busy_poll_s)
        with asyncio.Runner(loop_factory=lambda: loop) as runner:
            result: dict[str, Any] = runner.run(_engine_run(case))
            return result
    finally:
        os.sched_setaffinity(0, saved)


async def _baseline_run(
    script: Path, ticks: int, interval_s: float, background_rate: float
) -> dict[str, Any]:
    exchange_port = _free_port()
    exchange = await _start_exchange(exchange_port)
    try:
        engine = await asyncio.create_subprocess_exec(
            sys.executable, str(script), "--exchange", f"http://127.0.0.1:{exchange_port}",
            "--trigger", TRIGGER, "--quantity", "0.001",
            env={**os.environ, "EXCHANGE_API_KEY": API_KEY}, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert engine.stdout is not None
            line = (await engine.stdout.readline()).decode()
            if not line.startswith("listening "):
                raise RuntimeError(f"the baseline engine did not start: {line!r}")
            port = int(line.split()[1])
            published = await _publish(port, ticks, interval_s, 0, background_rate)
            arrivals = await _arrivals(exchange_port, quiet_s=3.0)
        finally:
            await _stop(engine)
    finally:
        await _stop(exchange)
    return {
        "wire_to_wire_us": wire_to_wire(published["ticks"], arrivals),
        "ticks": len(published["ticks"]),
        "orders": len(arrivals),
    }


def _find_baseline(path: str | None) -> Path:
    candidates = [Path(path)] if path else []
    candidates += [
        Path.cwd() / "benchmarks" / "naive_engine.py",
        Path(__file__).resolve().parent.parent / "benchmarks" / "naive_engine.py",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "--baseline: benchmarks/naive_engine.py not found (run from a checkout of the "
        "repository, or give --baseline-script)",
        [],
    )


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run every round and return the report.

    Each round runs the engine on every dialect ``args.dialect`` names
    (``both``: own and Binance, their order swapped every other round so
    that drift in the machine's load hits both alike); the comparisons
    (``--compare-metrics``, ``--compare-journal``, ``--baseline``) run with
    the first. Raises :class:`ConfigError` when ``--baseline`` cannot find
    its script.
    """
    baseline_script = _find_baseline(args.baseline_script) if args.baseline else None
    interval_s = args.interval_ms / 1000
    dialects = DIALECTS[getattr(args, "dialect", "own")]
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        current: dict[str, Any] = {}
        rate = args.background_rate
        case = EngineCase(
            args.loop,
            args.gateway,
            args.ticks,
            interval_s,
            args.burst,
            True,
            rate,
            args.busy_poll_s,
            pin=args.pin,
            dialect=dialects[0],
        )
        for dialect in dialects[::-1] if number % 2 else dialects:
            key = "engine" if dialect == dialects[0] else f"engine_{dialect}"
            current[key] = _engine_case(replace(case, dialect=dialect))
        if args.compare_metrics:
            current["engine_metrics_off"] = _engine_case(replace(case, burst=0, metrics=False))
        if args.compare_journal:
            current["engine_journal_off"] = _engine_case(replace(case, journal=False))
        if baseline_script is not None:
            current["baseline"] = asyncio.run(
                _baseline_run(
                    baseline_script,
                    args.baseline_ticks,
                    args.baseline_interval_ms / 1000,
                    args.background_rate,
                )
            )
        rounds.append(current)
        for dialect in dialects:
            key = "engine" if dialect == dialects[0] else f"engine_{dialect}"
            w2w = percentiles(current[key]["wire_to_wire_us"])
            print(
                f"round {number + 1}/{args.rounds}: engine ({dialect} dialect) wire-to-wire "
                f"p50 {w2w['p50']:.1f} us p99 {w2w['p99']:.1f} us ({current[key]['orders']} "
                "orders)",
                file=sys.stderr,
            )
    return build_report(args, rounds, dialects)
