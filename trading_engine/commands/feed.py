"""The ``feed`` and ``instruments`` commands, ``check-config --venue``, and ``run``'s feeds.

``feed`` runs one :class:`~trading_engine.io.feedhandler.FeedHandler`:
a venue's public market data published to engine feed ports. Its
settings come from the flags, else from a ``[[feeds]]`` entry of
``--config``, else from the venue's defaults.

``run`` starts one ``feed`` process per ``[[feeds]]`` entry rather than a
task on its own event loop: decoding a venue's JSON (a Binance snapshot of
5,000 levels a side takes milliseconds) would stall the engine's loop,
whose order path is measured in microseconds; a venue decoder that fails
must not take the engine down; and the handler speaks to the engine
through the same TCP feed protocol as every other publisher, so nothing
in the engine changes. A feed process that exits is started again with
back-off; it ends with ``run``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from ..config import Config, FeedHandlerConfig, InstrumentConfig, load_config
from ..core.errors import ConfigError, EngineError, UnreadableAnswer
from ..core.feeds import VenueInstrument
from ..io.feedhandler import EngineAddress, FeedHandler, serve_metrics
from ..io.venue_capture import VenueCaptureWriter
from ..lowlevel.metrics import register_process_collectors
from ..venues.registry import venue

__all__ = [
    "FeedChildren",
    "FeedUsageError",
    "VenueUnavailable",
    "check_venue",
    "feed_arguments",
    "fetch_instruments",
    "instruments_toml",
    "run_feed",
]

log = logging.getLogger("trading_engine.feed")


class FeedUsageError(Exception):
    """A flag or ``[[feeds]]`` value that makes no sense (exit code 2)."""


class VenueUnavailable(EngineError):
    """The venue could not be reached, or answered 429 or 5xx (exit code 1)."""


def _addresses(values: Sequence[str], flag: str) -> list[EngineAddress]:
    found: list[EngineAddress] = []
    for value in values:
        host, sep, port = value.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise FeedUsageError(f"{flag}: expected HOST:PORT[,HOST:PORT...], got {value!r}")
        found.append(EngineAddress(host, int(port)))
    return found


def _url(value: str, flag: str, schemes: tuple[str, ...]) -> str:
    if not value.startswith(tuple(f"{scheme}://" for scheme in schemes)):
        raise FeedUsageError(f"{flag}: expected a {' or '.join(schemes)} URL, got {value!r}")
    return value


def feed_arguments(args: argparse.Namespace) -> tuple[FeedHandlerConfig, int | None]:
    """The feed handler's settings: flags over the ``[[feeds]]`` entry of ``--config``.

    Returns the settings and the metrics port. Raises
    :class:`FeedUsageError` naming the flag for a bad or missing value,
    :class:`~trading_engine.core.errors.ConfigError` for a bad file.
    """
    entry: FeedHandlerConfig | None = None
    if args.config is not None:
        config = load_config(args.config)
        entries = [item for item in config.feeds if item.venue == args.venue]
        if args.entry is not None:
            if not 0 <= args.entry < len(config.feeds):
                raise FeedUsageError(f"--entry: {args.config} has no [[feeds]] entry {args.entry}")
            entry = config.feeds[args.entry]
            if entry.venue != args.venue:
                raise FeedUsageError(f"--entry: [[feeds]] entry {args.entry} is for {entry.venue}")
        elif entries:
            entry = entries[0]
    elif args.entry is not None:
        raise FeedUsageError("--entry: needs --config")
    symbols = (
        [item.strip() for item in args.symbols.split(",")]
        if args.symbols is not None
        else (entry.symbols if entry else [])
    )
    if not symbols or any(not item for item in symbols):
        raise FeedUsageError("--symbols: give the venue's symbols, SYM[,SYM...]")
    if len(set(symbols)) != len(symbols):
        raise FeedUsageError("--symbols: a symbol is listed twice")
    to = args.to.split(",") if args.to is not None else (entry.to if entry else [])
    if not to:
        raise FeedUsageError("--to: give the engine feed ports, HOST:PORT[,HOST:PORT...]")
    _addresses(to, "--to")
    ws_url = args.ws_url or (entry.ws_url if entry else None)
    rest_url = args.rest_url or (entry.rest_url if entry else None)
    if ws_url is not None:
        _url(ws_url, "--ws-url", ("ws", "wss"))
    if rest_url is not None:
        _url(rest_url, "--rest-url", ("http", "https"))
    try:
        settings = FeedHandlerConfig(
            venue=args.venue,
            symbols=symbols,
            to=to,
            ws_url=ws_url,
            rest_url=rest_url,
            symbol_map={
                k: v for k, v in (entry.symbol_map if entry else {}).items() if k in symbols
            },
            capture_path=args.capture or (entry.capture_path if entry else None),
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        raise FeedUsageError(f"--{error['loc'][0]}: {error['msg']}") from None
    port = (
        args.metrics_port
        if args.metrics_port is not None
        else (entry.metrics_port if entry else None)
    )
    return settings, port


def run_feed(args: argparse.Namespace) -> int:
    """The ``feed`` command: run a feed handler until SIGINT, SIGTERM or ``--duration``."""
    from ..lowlevel.logs import configure

    settings, metrics_port = feed_arguments(args)
    spec = venue(settings.venue)
    configure(args.log_level)
    rest_url = settings.rest_url or spec.default_rest_url
    try:
        dialect = spec.feed_dialect(settings.symbols, rest_url)
    except ValueError as exc:
        raise FeedUsageError(f"--symbols: {exc}") from None
    capture: VenueCaptureWriter | None = None
    if settings.capture_path is not None:
        try:
            capture = VenueCaptureWriter(settings.capture_path)
        except OSError as exc:
            raise FeedUsageError(
                f"--capture: cannot write {settings.capture_path}: {exc}"
            ) from None
    registry = CollectorRegistry(auto_describe=False)
    register_process_collectors(registry)
    handler = FeedHandler(
        dialect,
        ws_url=settings.ws_url or spec.default_ws_url,
        engines=_addresses(settings.to, "--to"),
        symbol_map=settings.engine_symbols(),
        registry=registry,
        capture=capture,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handler.stop)
        runner = None
        if metrics_port is not None:
            try:
                runner = await serve_metrics(registry, args.metrics_host, metrics_port)
            except OSError as exc:
                raise FeedUsageError(
                    f"--metrics-port: cannot listen on {args.metrics_host}:{metrics_port}: "
                    f"{exc.strerror or exc}"
                ) from None
        try:
            await handler.run(args.duration)
        finally:
            if runner is not None:
                await runner.cleanup()

    try:
        asyncio.run(main())
    finally:
        if capture is not None:
            capture.close()
    return 0


# -- instruments ---------------------------------------------------------------------------------


def fetch_instruments(
    venue_name: str, symbols: Sequence[str], rest_url: str | None = None, timeout_s: float = 10.0
) -> list[VenueInstrument]:
    """The venue's instrument metadata of ``symbols``.

    Raises :class:`~trading_engine.core.errors.ConfigError` for an unknown
    venue, :class:`~trading_engine.core.errors.UnreadableAnswer` when the
    venue answers something else (a symbol it does not list included), and
    :class:`VenueUnavailable` when it cannot be reached or is overloaded.
    """
    spec = venue(venue_name)
    url = spec.instruments_url(rest_url or spec.default_rest_url, symbols)
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise VenueUnavailable(f"{venue_name}: cannot read {url}: {exc}") from None
    status = response.status_code
    if status == 429 or status >= 500:
        raise VenueUnavailable(f"{venue_name}: {url} answered HTTP {status}")
    if status != 200:
        # A 4xx names the request: Binance answers 400 for a symbol it does not list.
        raise UnreadableAnswer(f"{venue_name}: {url} answered HTTP {status}: {response.text[:200]}")
    return spec.parse_instruments(response.content, symbols)


def instruments_toml(instruments: Sequence[VenueInstrument], venue_name: str) -> str:
    """``[[instruments]]`` tables for a configuration file."""
    lines = [f"# From {venue_name}'s public instrument metadata."]
    for item in instruments:
        lines += [
            "",
            "[[instruments]]",
            f'symbol = "{item.symbol}"',
            f'tick_size = "{item.tick_size}"',
            f'lot_size = "{item.lot_size}"',
        ]
        if item.min_quantity is not None:
            lines.append(f'min_quantity = "{item.min_quantity}"')
        if item.min_notional is not None:
            lines.append(f'min_notional = "{item.min_notional}"')
        if item.base_asset is not None:
            lines.append(f'base_asset = "{item.base_asset}"')
        if item.quote_asset is not None:
            lines.append(f'quote_asset = "{item.quote_asset}"')
    return "\n".join(lines) + "\n"


def _same(ours: str | None, theirs: str | None) -> bool:
    if ours is None or theirs is None:
        return ours is None and theirs is None
    return Decimal(ours) == Decimal(theirs)


def check_venue(config: Config, venue_name: str, rest_url: str | None = None) -> list[str]:
    """How ``config``'s instruments differ from the venue's (nothing: they agree).

    An engine symbol is compared with the venue symbol that ``[[feeds]]``
    maps to it for this venue, else with the same name. An instrument whose
    ``min_quantity`` or ``min_notional`` is unset is not compared on it; a
    symbol the venue refuses is a difference. Raises
    :class:`VenueUnavailable` when the venue cannot be asked.
    """
    venue_of = {
        engine_symbol: venue_symbol
        for feed in config.feeds
        if feed.venue == venue_name
        for venue_symbol, engine_symbol in feed.engine_symbols().items()
    }
    problems: list[str] = []
    for item in config.instruments:
        symbol = venue_of.get(item.symbol, item.symbol)
        # One request per instrument: a symbol the venue refuses is that
        # instrument's problem, not every other's.
        try:
            (theirs,) = fetch_instruments(venue_name, [symbol], rest_url)
        except VenueUnavailable:
            raise
        except UnreadableAnswer as exc:
            problems.append(f"instruments[{item.symbol}]: {exc}")
            continue
        problems.extend(_differences(item, theirs, venue_name))
    return problems


def _differences(item: InstrumentConfig, theirs: VenueInstrument, venue_name: str) -> list[str]:
    problems = []
    for key, ours, value in (
        ("tick_size", item.tick_size, theirs.tick_size),
        ("lot_size", item.lot_size, theirs.lot_size),
    ):
        if not _same(ours, value):
            problems.append(
                f"instruments[{item.symbol}].{key}: {ours} here, {value} on {venue_name} "
                f"({theirs.symbol})"
            )
    for key, ours_optional, value_optional in (
        ("min_quantity", item.min_quantity, theirs.min_quantity),
        ("min_notional", item.min_notional, theirs.min_notional),
    ):
        if ours_optional is not None and not _same(ours_optional, value_optional):
            problems.append(
                f"instruments[{item.symbol}].{key}: {ours_optional} here, "
                f"{value_optional or 'none'} on {venue_name} ({theirs.symbol})"
            )
    for key, asset, venue_asset in (
        ("base_asset", item.base_asset, theirs.base_asset),
        ("quote_asset", item.quote_asset, theirs.quote_asset),
    ):
        if asset is not None and venue_asset is not None and asset != venue_asset:
            problems.append(
                f"instruments[{item.symbol}].{key}: {asset} here, {venue_asset} on {venue_name} "
                f"({theirs.symbol})"
            )
    return problems


# -- the feed processes of run -------------------------------------------------------------------


class FeedChildren:
    """One ``trading-engine feed`` process per ``[[feeds]]`` entry, restarted when it exits.

    ``config_path``: the file the entries come from (the children read
    their entry from it). ``default_to``: the engine feed ports for entries
    without ``to``.
    """

    def __init__(
        self, config: Config, config_path: str | Path | None, default_to: Sequence[str]
    ) -> None:
        if any(feed.spawn for feed in config.feeds) and config_path is None:
            message = "feeds: [[feeds]] entries need run --config FILE (the feed processes read it)"
            raise ConfigError(message, [message])
        self.commands: list[list[str]] = []
        for index, feed in enumerate(config.feeds):
            if not feed.spawn:
                continue
            command = [sys.executable, "-m", "trading_engine", "feed", feed.venue]
            command += ["--config", str(config_path), "--entry", str(index)]
            if not feed.to:
                command += ["--to", ",".join(default_to)]
            self.commands.append(command)
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * len(self.commands)
        self.restarts = 0

    def start(self) -> None:
        from ..engine.supervisor import _terminate_with_parent

        for index, command in enumerate(self.commands):
            self.processes[index] = subprocess.Popen(command, preexec_fn=_terminate_with_parent)
            log.info("feed %d started: %s", index, " ".join(command[3:]))

    async def watch(self) -> None:
        """Start again, with back-off, every feed process that exits (until cancelled)."""
        from ..engine.supervisor import _terminate_with_parent

        delays = [0.5] * len(self.commands)
        started = [time.monotonic()] * len(self.commands)
        while True:
            await asyncio.sleep(0.5)
            for index, process in enumerate(self.processes):
                if process is None or process.poll() is None:
                    continue
                if time.monotonic() - started[index] > 60:
                    delays[index] = 0.5
                log.error(
                    "feed %d exited with %s; starting it again in %.1f s",
                    index, process.returncode, delays[index],
                )  # fmt: skip
                await asyncio.sleep(delays[index])
                delays[index] = min(delays[index] * 2, 30.0)
                self.processes[index] = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                    self.commands[index], preexec_fn=_terminate_with_parent
                )
                started[index] = time.monotonic()
                self.restarts += 1

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every feed process, then SIGKILL what is left after ``timeout_s``."""
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            if process is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.0, deadline - time.monotonic()))
            if process.poll() is None:
                process.kill()
                process.wait()
