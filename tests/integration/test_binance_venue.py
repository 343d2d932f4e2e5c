"""A real ``trading-engine run`` on Binance spot's dialect: faults, SIGKILL, restart.

The simulator speaks Binance's spot REST API in the test (its order book is
the truth; signatures, weights and filters checked as the venue checks
them); the engine is a real process with ``[gateway] venue = "binance"``,
an HMAC key from the environment, journaling to a file. The strategy keeps
one deep GTC bid resting and buys with IOC orders at the ask until
pre-trade risk's ``max_position`` stops it, while every order-path fault of
the simulator is on: answers lost before and after the order was taken
(503 ``-1008``, 500 ``-1001``), "execution status unknown" (``-1007``),
429s on orders and reads, hung, late and reset answers, and resting
orders the venue expires. The process is killed with SIGKILL while orders
of unknown outcome are in flight, started again, and trades on until it
and the venue agree.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from tests.helpers import EngineRun, wait_for, wait_until
from tests.sim.binance.helpers import API_KEY, SECRET, keys
from trading_engine import Instrument
from trading_engine.sim.binance import BinanceSimulator
from trading_engine.sim.exchange_sim import Faults

SYMBOL = "BTCUSDT"
INSTRUMENT = Instrument(SYMBOL, "0.01", "0.001")
MAX_POSITION_LOTS = 20
EVERY_FAULT = Faults(
    fail_before=0.1, fail_after=0.15, unknown_status=0.1, rate_limit=0.03, retry_after_s=1,
    read_rate_limit=0.03, hang=0.03, hang_s=0.6, late_answer=0.05, reset=0.03, expire=0.02,
)  # fmt: skip


def binance_engine(
    folder: Path, sim: BinanceSimulator, gateway: Mapping[str, object], risk: Mapping[str, object]
) -> EngineRun:
    """A ``trading-engine run`` on the simulator's Binance dialect, keys in its environment."""
    env = {"EXCHANGE_API_KEY": API_KEY, "BINANCE_TEST_SECRET": SECRET}
    return EngineRun(folder, SYMBOL, sim.port, gateway=gateway, risk=risk, env=env)


def journaled_ban(path: Path) -> int:
    """The end of the ban a journal holds (wall-clock ms; 0: none), read-only."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT max(value) FROM cursor WHERE name LIKE 'venue_banned_until_ms:%'"
        ).fetchone()
    return int(row[0] or 0)


def venue_position(sim: BinanceSimulator) -> tuple[int, int]:
    """(position now, the largest position ever) in lots, from the venue's trades."""
    position = peak = 0
    for trade in sim.trades[SYMBOL]:
        position += trade.lots if trade.order.side == "buy" else -trade.lots
        peak = max(peak, abs(position))
    return position, peak


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_every_fault_then_sigkill_then_restart_matches_the_binance_venue(
    tmp_path: Path,
) -> None:
    sim = BinanceSimulator([INSTRUMENT], keys=keys(), port=0, rate=300, seed=11, faults=EVERY_FAULT)
    gateway = {
        "venue": "binance",
        "api_secret_env": "BINANCE_TEST_SECRET",
        "timeout_s": 0.3,
        "settle_backoff_s": 0.5,
        "max_requests_per_s": 100,
        "resting_order_check_s": 2.0,
    }
    risk = {"max_position": INSTRUMENT.format_size(MAX_POSITION_LOTS), "max_orders_per_s": 20}
    async with sim, binance_engine(tmp_path, sim, gateway, risk) as engine:
        sim.publish_to("127.0.0.1", engine.feed)

        await engine.kill_mid_trading(lambda: venue_position(sim)[0], sim.binance_orders.values, 90)
        # The journal keeps the pauses the killed process read; a 429 answered to a
        # request in flight when it died never reached it, and the venue counts requests
        # sent meanwhile towards a ban (docs/venues.md): restart once it has run out.
        await wait_until(
            lambda: not sim.limiter.backing_off(sim.now_ms()), 65, "the 429's Retry-After to end"
        )
        await engine.restart(60)
        status = await engine.status()
        assert status["venue"]["dialect"] == "binance"
        assert status["venue"]["clock_offset_ms"] is not None

        # The engine trades on, faults still on, until risk stops it; then the faults
        # stop and it and the venue agree.
        async def at_limit() -> bool:
            position, _ = venue_position(sim)
            return position >= MAX_POSITION_LOTS - 4

        await wait_for(at_limit, 90, "the venue's position to reach the limit")
        sim.faults = Faults()

        async def agrees() -> bool:
            status = await engine.status()
            position, _ = venue_position(sim)
            venue_open = [o for o in sim.binance_orders.values() if o.is_open]
            quantity = status["positions"].get(SYMBOL, {}).get("quantity")
            return bool(
                quantity == INSTRUMENT.format_size(position)
                and status["open_orders"] == len(venue_open)
            )

        await wait_for(agrees, 60, "the engine's position and open orders to be the venue's")
        _, peak = venue_position(sim)
        assert peak <= MAX_POSITION_LOTS
        counts = sim.counts
        assert counts.get("fail_after", 0) + counts.get("unknown_status", 0) >= 1, counts
        assert await engine.terminate() == 0, engine.log.read_text()[-3000:]


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_an_engine_killed_during_a_ban_and_started_again_sends_nothing_into_it(
    tmp_path: Path,
) -> None:
    """The venue bans the engine (418, 12 s); the engine halts and journals the
    ban's end; it is killed (SIGKILL) and started again at once. The new process
    sends no request until the ban ends (the venue lengthens a repeat offender's
    ban): ``/readyz`` says what start-up waits for, ``/status`` shows the ban's
    end and the halt; then it reconciles and is ready, still halted."""
    sim = BinanceSimulator([INSTRUMENT], keys=keys(), port=0, rate=50, seed=5)
    # Without the user data stream the fills poll (every 0.1 s) hears the ban at once.
    gateway = {
        "venue": "binance",
        "api_secret_env": "BINANCE_TEST_SECRET",
        "fills_poll_s": 0.1,
        "user_stream": False,
    }
    risk = {"max_position": INSTRUMENT.format_size(MAX_POSITION_LOTS)}
    async with sim, binance_engine(tmp_path, sim, gateway, risk) as engine:
        await engine.wait_ready(60)
        sim.limiter.banned_until_ms = ban_end_ms = sim.now_ms() + 12_000

        async def banned() -> bool:
            status = await engine.status()
            return bool(status["venue"]["ban_until"]) and status["trading_state"] == "halted"

        await wait_for(banned, 8, "the engine to hear the ban and halt")
        # The journal's row follows /status by a millisecond or so (its own thread).
        await wait_until(lambda: journaled_ban(engine.journal) > 0, 5, "the ban's journal row")
        assert engine.process is not None
        engine.process.send_signal(signal.SIGKILL)
        await engine.process.wait()
        answered = sim.limiter.counts["418"]
        requests = len(sim.request_log)
        await engine.start()

        async def waits_for_the_ban() -> bool:
            try:
                answer = await engine.client.get("/readyz")
            except httpx.HTTPError:
                return False
            return answer.status_code == 503 and "ban" in answer.text

        await wait_for(waits_for_the_ban, 20, "the restarted engine to say it waits for the ban")
        assert sim.now_ms() < ban_end_ms, "the test is too slow for its ban"
        status = await engine.status()
        assert status["venue"]["ban_until"] is not None
        assert status["trading_state"] == "halted"
        await engine.wait_ready(40)
        assert sim.now_ms() >= ban_end_ms
        assert sim.limiter.counts["418"] == answered  # nothing was sent into the ban
        first = sim.request_log[requests][0]  # the new process's first request
        assert first >= time.monotonic_ns() - (sim.now_ms() - ban_end_ms) * 1_000_000 - 10**8
        assert (await engine.status())["trading_state"] == "halted"
        assert await engine.terminate() == 0, engine.log.read_text()[-3000:]
