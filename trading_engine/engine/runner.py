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
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final, TypeVar

from ..config import Config, budget_problems
from ..core.breaker import CircuitBreaker
from ..core.errors import ConfigError
from ..core.orders import Order, OrderSink
from ..io.admin import AdminServer
from ..io.fastpath import FastOrderChannel
from ..io.gateway import HttpGateway, ssl_context
from ..io.journal import Journal, VenueIdentity
from ..io.order_api import OrderApiDialect
from ..io.webserver import listen_error
from ..lowlevel.loop import new_event_loop
from ..lowlevel.tasks import cancel_and_wait
from .engine import Engine
from .notices import BookGridWatch, admin_token_notice
from .telemetry import GcMonitor, LoopMonitor, registry_for
from .venue_links import attach_venue_links

__all__ = ["Service", "build_engine", "missing_secrets", "prepare_engine", "run_on_loop"]

log = logging.getLogger("trading_engine.runner")

T = TypeVar("T")


def run_on_loop(config: Config, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on a new event loop of the kind ``[engine] loop`` names.

    Raises :class:`ConfigError` when the loop cannot be made (uvloop not
    installed, the priority loop on an unsupported Python).
    """
    try:
        loop = _new_loop(config)
    except ConfigError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        return runner.run(main)


def _new_loop(config: Config) -> asyncio.AbstractEventLoop:
    settings = config.engine
    return new_event_loop(
        settings.loop, slow_callback_s=settings.slow_callback_s, busy_poll_s=settings.busy_poll_s
    )


#: The stand-in API key of a dialect built to validate a configuration without one.
_NO_KEY: Final = "unset"


def missing_secrets(config: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per secret the configuration names that the environment lacks.

    Only the gateway's API key is needed to start (the admin token is
    optional: without it the mutating admin endpoints answer 403).
    """
    env = os.environ if environ is None else environ
    settings = config.gateway
    if settings.mode == "simulated":
        return []
    problems = []
    name = settings.api_key_env
    key = env.get(name)
    if not key:
        problems.append(f"gateway.api_key_env: the environment variable {name} is not set")
    elif not (key.isascii() and key.isprintable()) or " " in key:
        # It goes in a header: never a character of it in a message.
        problems.append(
            f"gateway.api_key_env: the API key in {name} is not printable ASCII without spaces"
        )
    if settings.venue == "binance":
        problems.extend(signing_key_problems(config, env))
    return problems


def signing_key_problems(config: Config, environ: Mapping[str, str]) -> list[str]:
    """Why venue ``binance`` has no signing key: one line naming the key and variable."""
    from ..venues.binance import signer_from_environment

    settings = config.gateway
    if not settings.api_secret_env and not settings.private_key_env:
        return [
            "gateway.api_secret_env: venue 'binance' signs every order: set api_secret_env "
            "(HMAC) or private_key_env (Ed25519)"
        ]
    try:
        signer_from_environment(settings.api_secret_env, settings.private_key_env, environ)
    except ConfigError as exc:
        key = "api_secret_env" if settings.api_secret_env else "private_key_env"
        return [f"gateway.{key}: {line}" for line in exc.problems]
    return []


def order_dialect(
    config: Config, instruments: Mapping[str, Any], api_key: str, environ: Mapping[str, str]
) -> OrderApiDialect | None:
    """The order-API dialect ``[gateway] venue`` names (None: the gateway's own default).

    Raises :class:`ConfigError` (one line naming the key) when venue
    ``binance`` has no signing key in the environment or an API key the
    venue cannot take.
    """
    settings = config.gateway
    if settings.venue != "binance":
        return None
    from ..venues.binance import BinanceSpotCodec, signer_from_environment
    from ..venues.binance.clock import VenueClock
    from ..venues.binance.order_api import BinanceOrderDialect

    problems = signing_key_problems(config, environ)
    if problems:
        raise ConfigError(problems[0], problems)
    signer = signer_from_environment(settings.api_secret_env, settings.private_key_env, environ)
    try:
        codec = BinanceSpotCodec(
            # Built without a key (validation: missing_secrets names the variable).
            api_key or _NO_KEY,
            signer,
            instruments,
            recv_window_ms=settings.recv_window_ms,
            quote_assets={i.symbol: i.quote_asset for i in config.instruments if i.quote_asset},
            base_assets={i.symbol: i.base_asset for i in config.instruments if i.base_asset},
            fee_conversion={
                pair: Fraction(Decimal(price)) for pair, price in config.fees.conversion.items()
            },
        )
    except ValueError as exc:
        message = f"gateway.api_key_env: {exc}"
        raise ConfigError(message, [message]) from None
    # One clock signs every request; the gateway reads the venue's time for it.
    clock = VenueClock(None, interval_s=settings.clock_check_s)
    return BinanceOrderDialect(codec, api_key or _NO_KEY, clock=clock)


def prepare_engine(
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    venue: Callable[[Engine], OrderSink] | None = None,
    require_secrets: bool = True,
    journal: bool = True,
) -> Engine:
    """Validate ``config`` by building everything ``run`` builds, short of opening sockets.

    ``trading-engine run`` and ``trading-engine check-config`` both call
    this, so a file that checks valid starts. It checks that the file
    configures at least one instrument, that ``[engine] loop`` can be made,
    that every strategy's class resolves, its params validate and it
    constructs against its instruments (prices on the tick grid, sizes on
    the lot grid), that the risk limits convert for every instrument, and
    (with ``require_secrets``) that the API key variable is set. With
    ``journal`` False the journal is not opened (validation alone must not
    create one).

    Returns the engine, not started. Raises :class:`ConfigError` listing
    every problem found, each line naming its key path.
    """
    problems: list[str] = []
    if not config.instruments:
        problems.append(
            "instruments: no [[instruments]] entry; the engine needs at least one to trade"
        )
    try:
        _new_loop(config).close()
    except ConfigError as exc:
        problems.extend(exc.problems)
    secrets = missing_secrets(config, environ)
    if require_secrets:
        problems.extend(secrets)
    engine: Engine | None = None
    try:
        engine = build_engine(
            config, environ, venue=venue, api_key="" if secrets else None, journal=False
        )
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        problems = list(dict.fromkeys(problems))  # the key's problem, once (two checks see it)
        raise ConfigError(f"{len(problems)} invalid setting(s)", problems)
    assert engine is not None
    # Only a valid configuration opens (or creates) the journal.
    return _with_journal(engine, journal, _venue_of(config, environ))


def build_engine(
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    venue: Callable[[Engine], OrderSink] | None = None,
    api_key: str | None = None,
    journal: bool = True,
) -> Engine:
    """The engine with the order path ``[gateway] mode`` chooses.

    ``venue`` builds the in-process order sink of ``mode = "simulated"``
    (the commands pass ``trading_engine.sim.venue.simulated_venue``).
    The engine records to the journal at ``[journal] path`` (``journal=False``:
    no journal, for benchmarks that measure what it costs). ``api_key``
    overrides the environment variable (``prepare_engine`` passes ``""``
    to build without one). Raises :class:`ConfigError` when
    the gateway's API key variable is unset, when the mode is
    ``simulated`` and no ``venue`` is given, or when a strategy is invalid;
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
    for problem in budget_problems(config):
        log.warning(
            "%s: new orders beyond it are refused rate_limited (live only: a backtest "
            "sends no requests)",
            problem,
        )
    ca_file = config.gateway.ca_file
    if ca_file is not None:
        try:
            ssl_context(ca_file)
        except (OSError, ValueError) as exc:
            message = f"gateway.ca_file: cannot load {ca_file!r}: {exc}"
            raise ConfigError(message, [message]) from exc
    if api_key is None:
        name = config.gateway.api_key_env
        api_key = env.get(name)
        if not api_key:
            message = f"gateway.api_key_env: the environment variable {name} is not set"
            raise ConfigError(message, [message])
    key = api_key
    if config.gateway.venue == "binance" and key:
        order_dialect(config, {i.symbol: i.to_instrument() for i in config.instruments},
                      key, env)  # fmt: skip

    def gateway(engine: Engine) -> OrderSink:
        settings = engine.config.gateway
        dialect = order_dialect(engine.config, engine.instruments, key, env)
        fast = None
        if settings.mode == "fast":
            fast = FastOrderChannel(
                settings.base_url,
                key,
                settings.fast_connections,
                ssl_context=ssl_context(settings.ca_file)
                if settings.base_url.startswith("https://")
                else None,
                backoff_s=settings.reconnect_backoff_s,
                backoff_max_s=settings.reconnect_backoff_max_s,
                crashes=engine.task_crashes,
                target=dialect.fast_target if dialect is not None else "/orders",
                headers=dialect.fast_headers if dialect is not None else None,
            )
        made = HttpGateway(
            settings,
            engine,
            engine.instruments,
            CircuitBreaker(engine.config.breaker.settings(), engine.clock.monotonic_ns),
            api_key=key,
            fast=fast,
            crashes=engine.task_crashes,
            dialect=dialect,
        )
        made.market = engine.venue_market  # the venue's rules are checked with these
        attach_venue_links(made, engine.task_crashes)  # the venue's user data stream
        return made

    identity = VenueIdentity.of(config.gateway.base_url, key)
    return _with_journal(Engine(config, sink_factory=gateway), journal, identity)


def _venue_of(config: Config, environ: Mapping[str, str] | None) -> VenueIdentity | None:
    """The venue ``config`` trades on: base URL and API key (None: the in-process venue)."""
    if config.gateway.mode == "simulated":
        return None
    env = os.environ if environ is None else environ
    return VenueIdentity.of(config.gateway.base_url, env.get(config.gateway.api_key_env, ""))


def _with_journal(engine: Engine, wanted: bool, venue: VenueIdentity | None = None) -> Engine:
    """Open the journal (locked for this process) and attach it.

    ``venue``: the gateway's identity, which start-up compares with the
    journal's (None: the in-process venue, nothing to compare).
    """
    if not wanted:
        return engine
    settings = engine.config.journal
    journal = Journal.open(
        settings.path,
        flush_s=settings.flush_ms / 1000,
        write_timeout_s=settings.write_timeout_s,
        synchronous=settings.synchronous,
    )
    journal.venue = venue
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
            registry_for(
                engine, self.monitor, self.gc_monitor, engine.config.admin.metrics_symbols
            ),
            heartbeat=lambda: self.monitor.last_beat,
            environ=environ,
        )
        self._stop = asyncio.Event()
        #: Orders still open when the last shutdown gave up waiting.
        self.still_open: list[Order] = []
        self._environ = os.environ if environ is None else environ
        #: Warns about books kept from going live by frames off their grid.
        self.book_watch = BookGridWatch(engine.builder, engine.notices)
        self._book_watch_task: asyncio.Task[None] | None = None

    def stop(self) -> None:
        self._stop.set()

    async def start(self) -> None:
        """Start the loop monitor, the admin API and the engine.

        A part that cannot start undoes the parts started before it and
        raises (:class:`ConfigError` for a port that cannot be listened on).
        """
        self.monitor.start(self.engine.task_crashes)
        self.gc_monitor.install()
        # /status serves from now on; the positions are known once reconciled.
        self.engine.mark_reconciliation_pending()
        try:
            try:
                await self.admin.start()
            except OSError as exc:
                admin = self.engine.config.admin
                raise listen_error("admin", admin.host, admin.port, exc) from exc
            self._warn_no_admin_token()
            self._book_watch_task = self.engine.task_crashes.spawn(
                self.book_watch.run(), name="book-watch", kind="book-watch"
            )
            try:
                await self.engine.start()
            except BaseException:
                await self.admin.stop()
                raise
        except BaseException:
            await cancel_and_wait(self._book_watch_task)
            await self.monitor.stop()
            self.gc_monitor.uninstall()
            raise
        settings = self.engine.config.engine
        # Start-up objects (modules, config, books) never need collecting again.
        GcMonitor.tune(settings.gc_freeze, settings.gc_threshold)

    def _warn_no_admin_token(self) -> None:
        config = self.engine.config
        if config.engine.shards > 1:
            return  # a worker: the supervisor serves the admin API and says it
        notice = admin_token_notice(config.admin.token_env, self._environ)
        if notice is not None:
            self.engine.notices.warn("admin_token", notice)

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
            # Both tasks are awaited right here and the start's outcome is read
            # below (a start-up error is the command's exit status, not a crash).
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
        await cancel_and_wait(self._book_watch_task)
        self._book_watch_task = None
        self.still_open = await self.engine.stop()
        await self.admin.stop()
        await self.monitor.stop()
        self.gc_monitor.uninstall()
