"""``trading-engine bench``: wire-to-wire tick-to-trade on loopback.

Three processes, one clock (CLOCK_MONOTONIC, which every process on a
Linux host shares)::

    publisher process ──ticks──► engine (this process) ──orders──► exchange process
    stamps each tick when        the default pipeline with          (the exchange simulator)
    it is sent                   ThresholdTaker, fast path          stamps each order when
                                                                    its first bytes arrive

Each tick moves the best ask to a price no other tick of the run has
within 4,000 ticks, and ThresholdTaker buys at the best ask on every
tick, so each order names the tick that caused it by its price. The
wire-to-wire latency of an order is its arrival stamp minus its tick's
send stamp. The engine's own stages (feed handling, strategy, risk, tick
to order written, order round trip) are recorded sample by sample.

After the latency ticks the publisher moves the ask above the trigger and
sends a burst of updates as fast as it can: the engine's throughput is
that burst's size over the time the engine took to apply it.

``--baseline`` runs, in the same rounds, the naive engine in
``benchmarks/naive_engine.py`` (stdlib json, a SortedDict book, an
``asyncio.gather`` of tasks per update, a new ``httpx.AsyncClient`` per
order) against the same publisher and exchange, and reports the ratio.
``--compare-metrics`` also runs the engine with its latency histograms
replaced by no-ops, to show what metrics cost.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import orjson

from .builder import BookEntry
from .config import Config, parse_config
from .errors import ConfigError
from .metrics import LatencyHistogram

__all__ = ["EngineCase", "machine", "main", "percentile", "percentiles", "run_bench"]

SYMBOL = "BTC-USD"
OTHER = "ETH-USD"  # background market data nobody trades
API_KEY = "bench-key"
_PRICE_CYCLE = 4000  # distinct ask prices: 1000.00 .. 1039.99
_QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))


# -- the publisher process --------------------------------------------------------------


def _ask(i: int) -> str:
    cents = 100_000 + i % _PRICE_CYCLE
    return f"{cents // 100}.{cents % 100:02d}"


def _frame(seq: int, bids: list[list[str]], asks: list[list[str]], symbol: str = SYMBOL) -> bytes:
    message = {"type": "update", "symbol": symbol, "seq": seq, "bids": bids, "asks": asks}
    return orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE)


def publish(
    port: int, ticks: int, interval_s: float, burst: int, background_rate: float = 0.0
) -> dict[str, Any]:
    """Send the snapshots, the paced ticks, then the burst; returns the send stamps.

    ``background_rate`` > 0 also sends that many updates per second of a
    second symbol between the ticks (no strategy trades it), as a real feed
    would: the engine's path stays as warm as it is in production.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    seq = 1
    for symbol, bid, ask in ((SYMBOL, "999.99", _ask(0)), (OTHER, "99.99", "100.01")):
        snapshot = {"type": "snapshot", "symbol": symbol, "seq": 1,
                    "bids": [[bid, "10"]], "asks": [[ask, "1"]]}  # fmt: skip
        sock.sendall(orjson.dumps(snapshot, option=orjson.OPT_APPEND_NEWLINE))
    time.sleep(0.3)
    sent: list[tuple[int, str, int]] = []
    previous = _ask(0)
    other_seq = 1
    gap = 1 / background_rate if background_rate > 0 else None
    for i in range(1, ticks + 1):
        seq += 1
        price = _ask(i)
        frame = _frame(seq, [], [[previous, "0"], [price, "1"]])
        previous = price
        deadline = time.monotonic() + interval_s
        sent.append((seq, price, time.monotonic_ns()))
        sock.sendall(frame)
        while (now := time.monotonic()) < deadline:
            if gap is None:
                time.sleep(deadline - now)  # one wake-up per tick: quiet for the engine
                continue
            # Background updates, paced, never within one gap of the next tick.
            if deadline - now > gap:
                other_seq += 1
                sock.sendall(_frame(other_seq, [["99.99", str(1 + other_seq % 9)]], [], OTHER))
            time.sleep(min(gap, max(0.0, deadline - time.monotonic())))
    burst_first = seq + 2
    if burst:
        seq += 1
        sock.sendall(_frame(seq, [], [[previous, "0"], ["1060.00", "1"]]))
        frames = []
        for i in range(burst):
            seq += 1
            frames.append(_frame(seq, [["999.99", str(1 + i % 9)]], []))
        payload = b"".join(frames)
        view = memoryview(payload)
        for start in range(0, len(payload), 65536):
            sock.sendall(view[start : start + 65536])
    time.sleep(0.2)
    sock.close()
    return {"ticks": sent, "burst_first_seq": burst_first, "last_seq": seq}


# -- statistics ---------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def percentiles(samples_us: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max (nearest rank) of microsecond samples."""
    ordered = sorted(samples_us)
    if not ordered:
        return {name: float("nan") for name, _ in _QUANTILES} | {"max": float("nan"), "n": 0}
    result: dict[str, float] = {}
    for name, fraction in _QUANTILES:
        result[name] = percentile(ordered, fraction)
    result["max"] = ordered[-1]
    result["n"] = len(ordered)
    return result


def machine() -> dict[str, Any]:
    """Python version and machine description for the record."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": model,
        "cores": os.cpu_count(),
    }


def wire_to_wire(ticks: list[list[Any]], arrivals: list[dict[str, Any]]) -> list[float]:
    """Microseconds from each order's tick being sent to the order arriving."""
    by_price: dict[str, list[int]] = {}
    for _, price, sent_ns in ticks:
        by_price.setdefault(price, []).append(sent_ns)
    latencies = []
    for arrival in arrivals:
        stamps = by_price.get(arrival["price"])
        if not stamps or not arrival["arrival_ns"]:
            continue
        index = bisect.bisect_left(stamps, arrival["arrival_ns"]) - 1
        if index >= 0:
            latencies.append((arrival["arrival_ns"] - stamps[index]) / 1000)
    return latencies


# -- processes -----------------------------------------------------------------------------


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


async def _start_exchange(port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trading_engine", "exchange-sim", "--port", str(port),
        "--stamp-arrivals", "--api-key-env", "TRADING_ENGINE_BENCH_KEY",
        env={**os.environ, "TRADING_ENGINE_BENCH_KEY": API_KEY,
             "TRADING_ENGINE__ENGINE__LOG_LEVEL": "error"},
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await _wait_http(f"http://127.0.0.1:{port}/orders")
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
    port: int, ticks: int, interval_s: float, burst: int, background_rate: float
) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trading_engine.bench", "publish", str(port), str(ticks),
        str(interval_s), str(burst), str(background_rate), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
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


def bench_config(loop: str, gateway: str, exchange_port: int, busy_poll_s: float = 0.0) -> Config:
    """The engine's configuration for the benchmark: ThresholdTaker firing on every tick."""
    return parse_config(
        {
            "engine": {"loop": loop, "log_level": "error", "busy_poll_s": busy_poll_s},
            "feed": {"port": 0},
            "admin": {"port": 0},
            "gateway": {
                "mode": gateway,
                "base_url": f"http://127.0.0.1:{exchange_port}",
                "api_key_env": "TRADING_ENGINE_BENCH_KEY",
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
                {"symbol": SYMBOL, "tick_size": "0.01", "lot_size": "0.001"},
                {"symbol": OTHER, "tick_size": "0.01", "lot_size": "0.001"},
            ],
            "strategies": [
                {
                    "name": "taker",
                    "class": "strategies.threshold:ThresholdTaker",
                    "symbols": [SYMBOL],
                    "params": {"side": "buy", "trigger_price": "1050.00", "quantity": "0.001"},
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


async def _engine_run(case: EngineCase) -> dict[str, Any]:
    from .runner import build_engine
    from .telemetry import GcMonitor

    exchange_port = _free_port()
    exchange = await _start_exchange(exchange_port)
    try:
        config = bench_config(case.loop, case.gateway, exchange_port, case.busy_poll_s)
        engine = build_engine(config, environ={"TRADING_ENGINE_BENCH_KEY": API_KEY})
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
            engine.feed.port, case.ticks, case.interval_s, case.burst, case.background_rate
        )
        if case.burst:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await burst_done.wait()
        arrivals = await _arrivals(exchange_port, quiet_s=0.3)
        await engine.stop()
    finally:
        await _stop(exchange)
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
    from .loop import new_event_loop

    loop = new_event_loop(case.loop, busy_poll_s=case.busy_poll_s)
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        result: dict[str, Any] = runner.run(_engine_run(case))
        return result


async def _baseline_run(
    script: Path, ticks: int, interval_s: float, background_rate: float
) -> dict[str, Any]:
    exchange_port = _free_port()
    exchange = await _start_exchange(exchange_port)
    try:
        engine = await asyncio.create_subprocess_exec(
            sys.executable, str(script), "--exchange", f"http://127.0.0.1:{exchange_port}",
            "--trigger", "1050.00", "--quantity", "0.001",
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


# -- the report ---------------------------------------------------------------------------


def _median_of(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run every round and return the report (also printed unless ``quiet``)."""
    baseline_script = _find_baseline(args.baseline_script) if args.baseline else None
    interval_s = args.interval_ms / 1000
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
        )
        current["engine"] = _engine_case(case)
        if args.compare_metrics:
            current["engine_metrics_off"] = _engine_case(replace(case, burst=0, metrics=False))
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
        w2w = percentiles(current["engine"]["wire_to_wire_us"])
        print(
            f"round {number + 1}/{args.rounds}: engine wire-to-wire p50 {w2w['p50']:.1f} us "
            f"p99 {w2w['p99']:.1f} us ({current['engine']['orders']} orders)",
            file=sys.stderr,
        )
    return _report(args, rounds)


def _report(args: argparse.Namespace, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def per_round(kind: str, key: str = "wire_to_wire_us") -> list[dict[str, float]]:
        return [percentiles(r[kind][key]) for r in rounds if kind in r]

    def summary(runs: list[dict[str, float]]) -> dict[str, float]:
        return {name: _median_of(runs, name) for name in ("p50", "p90", "p99", "p99.9", "max")}

    engine_w2w = per_round("engine")
    stage_names = sorted({name for r in rounds for name in r["engine"]["stages_us"]})
    stages = {
        name: summary([percentiles(r["engine"]["stages_us"][name]) for r in rounds])
        for name in stage_names
        if all(r["engine"]["stages_us"].get(name) for r in rounds)
    }
    throughputs = [
        r["engine"]["throughput_msg_per_s"] for r in rounds if r["engine"]["throughput_msg_per_s"]
    ]
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": {
            "loop": args.loop,
            "gateway": args.gateway,
            "busy_poll_s": args.busy_poll_s,
            "background_rate": args.background_rate,
            "ticks": args.ticks,
            "interval_ms": args.interval_ms,
            "burst": args.burst,
            "rounds": args.rounds,
            "baseline_ticks": args.baseline_ticks if args.baseline else None,
            "baseline_interval_ms": args.baseline_interval_ms if args.baseline else None,
        },
        "engine": {
            "wire_to_wire_us": summary(engine_w2w),
            "orders_per_round": [r["engine"]["orders"] for r in rounds],
            "stages_us": stages,
            "throughput_msg_per_s": statistics.median(throughputs) if throughputs else None,
        },
        "note": "medians over rounds of each round's percentile; microseconds",
    }
    samples = {"engine": [x for r in rounds for x in r["engine"]["wire_to_wire_us"]]}
    if any("engine_metrics_off" in r for r in rounds):
        off = per_round("engine_metrics_off")
        internal_on = summary(
            [percentiles(r["engine"]["stages_us"]["tick_to_trade"]) for r in rounds]
        )
        internal_off = summary(
            [percentiles(r["engine_metrics_off"]["stages_us"]["tick_to_trade"]) for r in rounds]
        )
        report["metrics_off"] = {
            "wire_to_wire_us": summary(off),
            "tick_to_trade_us": internal_off,
            "cost_pct_internal_p50": 100 * (internal_on["p50"] / internal_off["p50"] - 1),
            "cost_pct_internal_p99": 100 * (internal_on["p99"] / internal_off["p99"] - 1),
            "cost_pct_wire_p50": 100
            * (report["engine"]["wire_to_wire_us"]["p50"] / summary(off)["p50"] - 1),
        }
    if any("baseline" in r for r in rounds):
        base = summary(per_round("baseline"))
        ours = report["engine"]["wire_to_wire_us"]
        report["baseline"] = {
            "wire_to_wire_us": base,
            "orders_per_round": [r["baseline"]["orders"] for r in rounds],
            "ratio_p50": base["p50"] / ours["p50"],
            "ratio_p99": base["p99"] / ours["p99"],
        }
        samples["baseline"] = [x for r in rounds for x in r["baseline"]["wire_to_wire_us"]]
    report["_samples"] = samples
    return report


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    s = report["settings"]
    print(
        f"trading-engine bench: Python {m['python']} ({m['implementation']}), {m['cpu']}, "
        f"{m['cores']} cores\nloop {s['loop']} (busy_poll_s {s['busy_poll_s']}), gateway "
        f"{s['gateway']}, {s['ticks']} ticks every {s['interval_ms']} ms with "
        f"{s['background_rate']:g} background updates/s, {s['rounds']} rounds\n"
        f"({report['note']})\n"
    )
    header = f"{'':34s}{'p50':>10s}{'p90':>10s}{'p99':>10s}{'p99.9':>10s}{'max':>10s}"
    print(header)

    def row(name: str, values: dict[str, float]) -> None:
        cells = "".join(f"{values[k]:10.1f}" for k in ("p50", "p90", "p99", "p99.9", "max"))
        print(f"{name:34s}{cells}")

    engine = report["engine"]
    row("wire to wire (tick sent -> order in)", engine["wire_to_wire_us"])
    labels = {
        "feed_handle": "  feed: decode+apply (1 in 16)",
        "strategy": "  strategy evaluation",
        "risk": "  risk check",
        "tick_to_trade": "  engine: bytes in -> order written",
        "roundtrip": "  order round trip",
    }
    for name, values in engine["stages_us"].items():
        row(labels.get(name, name), values)
    if "metrics_off" in report:
        off = report["metrics_off"]
        row("metrics off: wire to wire", off["wire_to_wire_us"])
        row("metrics off: bytes in -> written", off["tick_to_trade_us"])
        print(
            f"metrics cost: {off['cost_pct_internal_p50']:+.1f}% at p50, "
            f"{off['cost_pct_internal_p99']:+.1f}% at p99 of the engine's tick-to-trade"
        )
    if "baseline" in report:
        base = report["baseline"]
        row(f"naive baseline (1 tick/{s['baseline_interval_ms']:g} ms)", base["wire_to_wire_us"])
        print(
            f"baseline / engine: {base['ratio_p50']:.1f}x at p50, {base['ratio_p99']:.1f}x at p99"
        )
    if engine["throughput_msg_per_s"]:
        print(f"throughput: {engine['throughput_msg_per_s']:,.0f} updates/s applied (burst)")
    print(f"orders per round: {engine['orders_per_round']} of {s['ticks']} ticks")


def plot(report: dict[str, Any], path: str) -> None:
    """A PNG of the percentile curves (needs the ``plot`` extra: matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'trading-engine[plot]'", []
        ) from None
    fractions = [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999]
    figure, axes = plt.subplots(figsize=(8, 5))
    for name, samples in report["_samples"].items():
        ordered = sorted(samples)
        if not ordered:
            continue
        values = [percentile(ordered, f) for f in fractions]
        axes.plot(fractions, values, marker="o", label=name)
    axes.set_xscale("logit")
    axes.set_yscale("log")
    axes.set_xlabel("quantile")
    axes.set_ylabel("wire-to-wire tick-to-trade (us)")
    axes.set_title(f"trading-engine bench, Python {report['machine']['python']}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ticks", type=int, default=1000, help="latency ticks per round")
    parser.add_argument("--interval-ms", type=float, default=2.0, help="time between ticks")
    parser.add_argument("--burst", type=int, default=50000, help="updates in the throughput burst")
    parser.add_argument(
        "--background-rate",
        type=float,
        default=5000.0,
        help="updates per second of a second, untraded symbol between the ticks (0: none)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop", choices=("priority", "asyncio", "uvloop"), default="priority")
    parser.add_argument("--gateway", choices=("fast", "httpx"), default="fast")
    parser.add_argument(
        "--busy-poll-s",
        type=float,
        default=0.0,
        metavar="S",
        help="engine.busy_poll_s for the engine (priority loop; default 0: sleep when idle)",
    )
    parser.add_argument("--baseline", action="store_true", help="also run the naive engine")
    parser.add_argument(
        "--baseline-ticks", type=int, default=100, help="ticks per round for the baseline"
    )
    parser.add_argument(
        "--baseline-interval-ms",
        type=float,
        default=100.0,
        help="time between the baseline's ticks: it needs tens of ms per order, and a "
        "shorter interval measures its queue instead of its latency",
    )
    parser.add_argument("--baseline-script", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument(
        "--compare-metrics", action="store_true", help="also run with latency metrics off"
    )
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--plot", metavar="FILE", help="write a PNG percentile plot (matplotlib)")


def main(args: argparse.Namespace) -> int:
    from .logs import configure

    configure("error")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--plot needs matplotlib: pip install 'trading-engine[plot]'", []
            ) from None
    report = run_bench(args)
    print_report(report)
    if args.json:
        Path(args.json).write_text(
            json.dumps({k: v for k, v in report.items() if k != "_samples"}, indent=2)
        )
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    # The publisher process: python -m trading_engine.bench publish PORT TICKS INTERVAL_S
    # BURST BACKGROUND_RATE
    if len(sys.argv) == 7 and sys.argv[1] == "publish":
        _, _, port, ticks, interval, burst, rate = sys.argv
        print(json.dumps(publish(int(port), int(ticks), float(interval), int(burst), float(rate))))
    else:
        sys.exit("usage: python -m trading_engine.bench publish PORT TICKS INTERVAL_S BURST RATE")
