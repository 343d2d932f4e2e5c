"""Running the service: build the engine from a config and serve until told to stop.

``trading-engine run`` and ``trading-engine demo`` both go through
:func:`build_engine` and :class:`Service`, so the demo runs exactly what
production runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from asyncio import FIRST_COMPLETED
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from ..config import Config
from ..core.breaker import CircuitBreaker
from ..core.errors import ConfigError
from ..core.orders import Order, OrderSink
from ..io.admin import AdminServer
from ..io.fastpath import FastOrderChannel
from ..io.gateway import HttpGateway
from ..io.journal import Journal
from ..lowlevel.loop import new_event_loop
from .engine import Engine
from .telemetry import GcMonitor, LoopMonitor, registry_for

__all__ = ["Service", "build_engine", "run_on_loop"]

log = logging.getLogger("trading_engine.runner")

T = TypeVar("T")


def run_on_loop(config: Config, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on a new event loop of the kind ``[engine] loop`` names.

    Raises :class:`ConfigError` when the loop cannot be made (uvloop not
    installed, the priority loop on an unsupported Python).
    """
    settings = config.engine
    try:
        loop = new_event_loop(
            settings.loop,
            slow_callback_s=settings.slow_callback_s,
            busy_poll_s=settings.busy_poll_s,
        )
    except ConfigError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        return runner.run(main)


def build_engine(
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    venue: Callable[[Engine], OrderSink] | None = None,
    journal: bool = True,
) -> Engine:
    """The engine with the order path ``[gateway] mode`` chooses.

    ``venue`` builds the in-process order sink of ``mode = "simulated"``
    (the commands pass ``trading_engine.sim.venue.simulated_venue``).
    The engine records to the journal at ``[journal] path`` (``journal=False``:
    no journal, for benchmarks that measure what it costs).
    Raises :class:`ConfigError` when the gateway's API key variable is
    unset, or when the mode is ``simulated`` and no ``venue`` is given;
    :class:`~trading_engine.io.journal.JournalError` when the journal
    cannot be opened, is corrupt, newer, or cannot be written.
    """
    env = os.environ if environ is None else environ
    config = config.for_shard()
    if config.engine.shards > 1:
        log.info(
            "shard %d of %d: instruments %s",
            config.engine.shard,
            config.engine.shards,
            ", ".join(item.symbol for item in config.instruments) or "none",
        )
    if config.gateway.mode == "simulated":
        if venue is None:
            message = "gateway.mode: 'simulated' needs an in-process venue here"
            raise ConfigError(message, [message])
        return _with_journal(Engine(config, sink_factory=venue), journal)
    name = config.gateway.api_key_env
    api_key = env.get(name)
    if not api_key:
        message = f"gateway.api_key_env: the environment variable {name} is not set"
        raise ConfigError(message, [message])

    def gateway(engine: Engine) -> OrderSink:
        settings = engine.config.gateway
        fast = None
        if settings.mode == "fast":
            fast = FastOrderChannel(settings.base_url, api_key, settings.fast_connections)
        return HttpGateway(
            settings,
            engine,
            engine.instruments,
            CircuitBreaker(engine.config.breaker.settings(), engine.clock.monotonic_ns),
            api_key=api_key,
            fast=fast,
        )

    return _with_journal(Engine(config, sink_factory=gateway), journal)


def _with_journal(engine: Engine, wanted: bool) -> Engine:
    if not wanted:
        return engine
    settings = engine.config.journal
    journal = Journal.open(
        settings.path, flush_s=settings.flush_ms / 1000, synchronous=settings.synchronous
    )
    try:
        engine.attach_journal(journal)
    except BaseException:
        journal.close()
        raise
    return engine


class Service:
    """The engine plus its admin API, stopped by SIGINT/SIGTERM or :meth:`stop`."""

    def __init__(self, engine: Engine, environ: Mapping[str, str] | None = None) -> None:
        self.engine = engine
        settings = engine.config.engine
        self.monitor = LoopMonitor(slow_callback_s=settings.slow_callback_s)
        self.gc_monitor = GcMonitor()
        self.admin = AdminServer(
            engine,
            engine.config.admin,
            registry_for(engine, self.monitor, self.gc_monitor),
            heartbeat=lambda: self.monitor.last_beat,
            environ=environ,
        )
        self._stop = asyncio.Event()
        #: Orders still open when the last shutdown gave up waiting.
        self.still_open: list[Order] = []

    def stop(self) -> None:
        self._stop.set()

    async def start(self) -> None:
        self.monitor.start()
        self.gc_monitor.install()
        await self.admin.start()
        await self.engine.start()
        settings = self.engine.config.engine
        # Start-up objects (modules, config, books) never need collecting again.
        GcMonitor.tune(settings.gc_freeze, settings.gc_threshold)

    async def run(self, duration_s: float | None = None) -> int:
        """Start, serve until stopped (or ``duration_s``), then shut down.

        Returns the exit code: 0, or 1 when orders were still open when the
        shutdown bound passed (they are logged).
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        deadline = None if duration_s is None else loop.time() + duration_s
        try:
            # Start-up (reconciliation) may wait on the venue: a stop interrupts it.
            starting = loop.create_task(self.start(), name="service-start")
            stopping = loop.create_task(self._stop.wait(), name="service-stop")
            try:
                await asyncio.wait(
                    {starting, stopping}, timeout=duration_s, return_when=FIRST_COMPLETED
                )
            finally:
                for task in (starting, stopping):
                    if not task.done():
                        task.cancel()
                        await asyncio.wait({task})
            if not starting.cancelled():
                starting.result()  # a start-up error propagates
                log.info("engine running")
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._stop.wait()
        finally:
            log.info("engine stopping")
            await self.shutdown()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

        return 1 if self.still_open else 0

    async def shutdown(self) -> None:
        self.still_open = await self.engine.stop()
        await self.admin.stop()
        await self.monitor.stop()
        self.gc_monitor.uninstall()
