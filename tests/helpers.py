"""Small helpers shared by the tests, and a real engine process to kill and restart."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from trading_engine import BookView, Order, Strategy, TimeInForce

ROOT = Path(__file__).resolve().parents[1]


async def wait_until(predicate: Callable[[], bool], within_s: float = 5.0, what: str = "") -> None:
    """Poll ``predicate`` until it is true; fail the test after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what or predicate}")
        await asyncio.sleep(0.005)


def ci_binary(name: str) -> str:
    """The path of a program the CI installs (``promtool``, ``prometheus``).

    Missing: the test fails under CI (``.ci/run`` installs it) and is
    skipped elsewhere.
    """
    binary = shutil.which(name)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return binary


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range of source ports for outgoing connections (Linux), inclusive."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_EPHEMERAL = _ephemeral_range()
#: Where test servers' ports come from: below the ephemeral range, so that no
#: outgoing connection (the suite's own, a simulator's, a worker's) can be
#: holding the port as its source port when the server comes to bind it.
_TEST_PORTS = (10000, max(10001, _EPHEMERAL[0] - 1)) if _EPHEMERAL[0] > 12000 else (1024, 65535)
_pick = random.Random(os.getpid() ^ time.monotonic_ns())


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, outside the ephemeral range."""
    return free_port_range(1)


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive TCP ports free on 127.0.0.1 right now.

    The ports are outside the kernel's ephemeral range (see ``_TEST_PORTS``).
    """
    low, high = _TEST_PORTS
    for _ in range(500):
        base = _pick.randrange(low, high - count)
        sockets = []
        try:
            for offset in range(count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise RuntimeError(f"no {count} consecutive free ports found")


def free_port_ranges(*counts: int) -> tuple[int, ...]:
    """The first ports of disjoint runs of ``counts`` consecutive free ports.

    Separate ``free_port_range`` calls can return the same port (each closes
    its probe sockets), so a feed range and an admin range taken that way may
    collide; this takes one run and splits it.
    """
    base = free_port_range(sum(counts))
    firsts = []
    for count in counts:
        firsts.append(base)
        base += count
    return tuple(firsts)


# -- a real `trading-engine run`, killed and started again ----------------------------------

#: How far under the bid :class:`Accumulator` rests its deep bid: inside the price
#: band, never reached in the tests.
DEEP_TICKS = 300


class Accumulator(Strategy):
    """One deep resting bid of 4 lots; IOC buys of 2 lots at the ask, 0.3 s apart.

    Trades its first symbol. A deep bid the engine finds open at start is
    kept (never a second one); one the venue closed is placed again.
    """

    def on_start(self) -> None:
        self.symbol = self.symbols[0]
        self.deep = [o for o in self.ctx.open_orders(self.symbol) if o.quantity == 4]
        self.closed_ns = 0

    def on_book(self, book: BookView) -> None:
        bid, ask = book.best_bid, book.best_ask
        if bid is None or ask is None:
            return
        self.deep = [o for o in self.deep if o.is_open]
        if not self.deep:
            order = self.ctx.buy(self.symbol, 4, bid - DEEP_TICKS, TimeInForce.GTC)
            if order is not None:
                self.deep.append(order)
            return
        takers = [o for o in self.ctx.open_orders(self.symbol) if o.quantity == 2]
        if takers or self.ctx.now_ns() - self.closed_ns < 300_000_000:
            return
        self.ctx.buy(self.symbol, 2, ask, TimeInForce.IOC)

    def on_order_update(self, order: Order) -> None:
        if not order.is_open:
            self.closed_ns = self.ctx.now_ns()


def _toml_table(name: str, keys: Mapping[str, object]) -> str:
    lines = [f"[{name}]"]
    for key, value in keys.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()}")
        else:
            lines.append(
                f'{key} = "{value}"' if isinstance(value, str | Path) else f"{key} = {value}"
            )
    return "\n".join(lines)


async def wait_for(predicate: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    """Poll the coroutine ``predicate`` every 50 ms until it is true; fail after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def start_run(
    config: Path, log: Path, env: Mapping[str, str] | None = None
) -> asyncio.subprocess.Process:
    """``trading-engine run --config config`` as a process, stderr appended to ``log``;
    ``env`` is added to this process's environment."""
    with log.open("ab") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trading_engine", "run", "--config", str(config),
            cwd=ROOT, env={**os.environ, **(env or {})}, stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )  # fmt: skip


def journal_statuses(journal: Path) -> list[str]:
    """Every order's status in the journal at ``journal``, read-only ([] before it exists)."""
    if not journal.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            return [row[0] for row in db.execute("SELECT status FROM orders")]
        finally:
            db.close()
    except sqlite3.Error:
        return []


class EngineRun:
    """``trading-engine run`` of :class:`Accumulator` on ``symbol``, as a real process.

    Writes ``folder/engine.toml``: ``gateway`` and ``risk`` are those
    tables' keys (``base_url`` is the simulator at ``sim_port``), the
    journal is ``folder/journal.db``, stderr goes to ``folder/engine.log``;
    ``env`` is added to this process's environment. ``feed`` and
    ``client`` (the admin API) are the engine's. Use as an async context
    manager: on exit the process is killed if still running.
    """

    def __init__(
        self,
        folder: Path,
        symbol: str,
        sim_port: int,
        *,
        gateway: Mapping[str, object],
        risk: Mapping[str, object],
        env: Mapping[str, str],
    ) -> None:
        self.feed, admin = free_port_ranges(1, 1)
        self.journal = folder / "journal.db"
        self.log = folder / "engine.log"
        self.config = folder / "engine.toml"
        tables = [
            _toml_table("engine", {"log_level": "warning", "shutdown_s": 1.0}),
            _toml_table("feed", {"port": self.feed}),
            _toml_table("admin", {"port": admin}),
            _toml_table("gateway", {"base_url": f"http://127.0.0.1:{sim_port}", **gateway}),
            _toml_table("risk", risk),
            _toml_table("journal", {"path": self.journal, "flush_ms": 5.0}),
            _toml_table("[instruments]", {"symbol": symbol, "tick_size": "0.01",
                                          "lot_size": "0.001"}),
            _toml_table("[strategies]", {"name": "acc", "class": "tests.helpers:Accumulator"})
            + f'\nsymbols = ["{symbol}"]',
        ]  # fmt: skip
        self.config.write_text("\n\n".join(tables) + "\n")
        self.env = {**os.environ, **env}
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin}", timeout=2.0)
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> EngineRun:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.aclose()
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def start(self) -> None:
        """Start the process (again): the same configuration, journal and log."""
        self.process = await start_run(self.config, self.log, self.env)

    def journal_statuses(self) -> list[str]:
        """Every order's status in the journal, read-only ([] before it exists)."""
        return journal_statuses(self.journal)

    async def kill_mid_trading(
        self,
        position: Callable[[], int],
        venue_orders: Callable[[], Iterable[Any]],
        within_s: float,
    ) -> None:
        """SIGKILL the process mid-trading, then check the venue kept what it had.

        Mid-trading: the journal has an order of unknown outcome, the venue a
        long ``position()`` (lots) and :class:`Accumulator`'s deep bid open
        among ``venue_orders()`` (the simulator's orders, ``is_open`` and
        ``quantity`` in lots). Fails the test after ``within_s``.
        """

        async def unknown_in_flight() -> bool:
            resting = any(o.is_open and o.quantity == 4 for o in venue_orders())
            return "unknown" in self.journal_statuses() and position() > 0 and resting

        await wait_for(
            unknown_in_flight, within_s, "an order of unknown outcome, a fill, a deep bid"
        )
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert await self.process.wait() == -signal.SIGKILL
        assert position() > 0

    async def restart(self, within_s: float) -> None:
        """Start the process again; return once its ``/readyz`` answers 200."""
        await self.start()
        await self.wait_ready(within_s)

    async def wait_ready(self, within_s: float) -> None:
        """Return once ``/readyz`` answers 200; fail the test after ``within_s``."""

        async def ready() -> bool:
            try:
                return (await self.client.get("/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(ready, within_s, "the engine to be ready")

    async def status(self) -> dict[str, Any]:
        """The engine's ``GET /status``."""
        answer: dict[str, Any] = (await self.client.get("/status")).json()
        return answer

    async def terminate(self) -> int:
        """SIGTERM; the exit code (within 30 s)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 30)
