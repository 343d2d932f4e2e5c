"""The ``trading-engine`` command line.

Exit codes: 0 success, 2 usage or configuration error, 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from .. import __version__
from ..config import DEFAULT_CONFIG_PATH, Config, load_config, load_default_config
from ..core.errors import ConfigError, EngineError, StrategyError
from ..io.journal import JournalError
from ..lowlevel.build import BUILD
from ..venues.registry import VENUES
from .bench import add_arguments as add_bench_arguments

if TYPE_CHECKING:
    from .feed import FeedChildren

__all__ = ["build_parser", "main"]

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A command-line value that makes no sense (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr, naming the argument, then exit 2.

    ``argparse`` prints the whole usage block first; the line already says
    what is wrong, and ``--help`` shows the rest.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default.

    Options whose default is None or a switch's False say in their own
    words what happens without them ("default: run until Ctrl-C").
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "%(default)" in text
            or "default" in text
            or not action.option_strings
            or action.default is None
            or action.default is False
            or action.default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


def _config(args: argparse.Namespace) -> Config:
    """The --config file, else config/engine.toml if present, else the embedded default."""
    return _config_and_source(args)[0]


def _config_and_source(args: argparse.Namespace) -> tuple[Config, str]:
    """The configuration and a phrase saying where it came from (for the log)."""
    path = getattr(args, "config", None)
    if path is not None:
        return load_config(path), f"configuration {path}"
    if DEFAULT_CONFIG_PATH.exists():
        return load_config(DEFAULT_CONFIG_PATH), f"configuration {DEFAULT_CONFIG_PATH}"
    return load_default_config(), (
        f"the built-in default configuration (no --config and no {DEFAULT_CONFIG_PATH} "
        "here), whose strategies trade"
    )


def _print_config_error(exc: ConfigError, args: argparse.Namespace) -> None:
    """``exc`` on standard error, with check-config's hints for strategy settings."""
    problems = exc.problems
    path = getattr(args, "config", None)
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = str(DEFAULT_CONFIG_PATH)
    if path is not None and any(problem.startswith("strategies[") for problem in problems):
        # The file loaded (its strategies' settings failed later, as they were built).
        try:
            config: Config | None = load_config(path)
        except ConfigError:
            config = None
        problems = _with_strategy_hints(config, str(path), problems)
    print(f"trading-engine: invalid configuration: {exc}", file=sys.stderr)
    for plain, problem in zip(exc.problems, problems, strict=True):
        if plain != str(exc) or problem != plain:
            print(f"  {problem}", file=sys.stderr)


def _import_path_has_cwd() -> None:
    """Put the current directory first on ``sys.path``, as ``python -m`` and uvicorn do.

    A console script's ``sys.path`` starts with its own bin directory, so a
    strategy in the user's own package (``class = "mypkg.mod:Class"``)
    would not import from the directory the command runs in.
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


# -- check-config ------------------------------------------------------------------


def _check_config(args: argparse.Namespace) -> int:
    from ..engine.notices import admin_token_notice
    from ..engine.runner import missing_secrets, prepare_engine
    from ..sim.venue import simulated_venue

    config = None
    try:
        config = load_config(args.file)
        prepare_engine(config, venue=simulated_venue, require_secrets=False, journal=False)
    except ConfigError as exc:
        problems = exc.problems
        if config is None:
            # Other sections failed: the strategies are still checked, alone, so that
            # every error is printed in one run.
            strategies, partial = _strategies_alone(args.file)
            problems = problems + [p for p in strategies if p not in problems]
            config = partial
        print(f"{args.file}: invalid", file=sys.stderr)
        for problem in _with_strategy_hints(config, args.file, problems):
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    for line in missing_secrets(config):
        print(f"{args.file}: note: {line}; run refuses to start until it is", file=sys.stderr)
    token = admin_token_notice(config.admin.token_env, os.environ)
    if token is not None:
        print(f"{args.file}: note: admin.token_env: {token}", file=sys.stderr)
    if args.venue is not None:
        from .feed import check_venue

        differences = check_venue(config, args.venue, args.rest_url)
        if differences:
            print(f"{args.file}: instruments differ from {args.venue}'s", file=sys.stderr)
            for line in differences:
                print(f"  {line}", file=sys.stderr)
            return EXIT_USAGE
        print(f"{args.file}: instruments agree with {args.venue}'s")
    count = len(config.strategies)
    print(
        f"{args.file}: valid ({len(config.instruments)} instrument(s), "
        f"{count} strateg{'y' if count == 1 else 'ies'})"
    )
    return EXIT_OK


def _strategies_alone(file: str) -> tuple[list[str], Config | None]:
    """The problems of ``file``'s strategies, built against its instruments with every
    other setting at its default, and that partial configuration (None when the
    instruments or the strategies' own keys do not validate: nothing more to say)."""
    import tomllib
    from pathlib import Path

    from ..config import parse_config
    from ..engine.runner import prepare_engine
    from ..sim.venue import simulated_venue

    try:
        data = tomllib.loads(Path(file).read_text(encoding="utf-8-sig"))
        partial = parse_config(
            {key: data[key] for key in ("instruments", "strategies") if key in data}, environ={}
        )
    except (OSError, ValueError, ConfigError):
        return [], None
    try:
        prepare_engine(partial, venue=simulated_venue, require_secrets=False, journal=False)
    except ConfigError as exc:
        return [p for p in exc.problems if p.startswith("strategies")], partial
    return [], partial


def _with_strategy_hints(config: Config | None, file: str, problems: list[str]) -> list[str]:
    """``problems`` with suggestions for strategies: the classes found where a ``class``
    is a bare name, the closest param where a params key is unknown."""
    if config is None:
        return problems
    import re
    from pathlib import Path

    from ..config import closest_strategy_parameter
    from .strategy_finder import bare_class_hint, find_strategy_classes

    found: list[str] | None = None
    out = []
    for problem in problems:
        match = re.match(r"strategies\[(\d+)\]\.(class|params\.(\w+)): ", problem)
        index = int(match.group(1)) if match else len(config.strategies)
        if match is None or index >= len(config.strategies):
            out.append(problem)
            continue
        item = config.strategies[index]
        if match.group(2) == "class" and ":" not in item.class_:
            if found is None:
                found = find_strategy_classes(Path(file).parent)
            problem += bare_class_hint(item.class_, found)
        elif match.group(3) is not None and "not permitted" in problem:
            hint = closest_strategy_parameter(item.name, item.class_, match.group(3))
            if hint is not None:
                problem += f"; did you mean `strategies[{index}].params.{hint}`?"
        out.append(problem)
    return out


# -- run -------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    import logging

    from ..engine.runner import Service, prepare_engine, run_on_loop
    from ..lowlevel.logs import configure
    from ..sim.venue import simulated_venue

    if getattr(args, "config", None) is None and not DEFAULT_CONFIG_PATH.exists():
        # A trading process never starts on a configuration nobody wrote.
        print(
            f"trading-engine: run: no --config given and no {DEFAULT_CONFIG_PATH} here "
            "(`trading-engine demo` runs the built-in configuration against the simulator)",
            file=sys.stderr,
        )
        return 2
    config, source = _config_and_source(args)
    if args.capture:
        feed = config.feed.model_copy(update={"capture_path": args.capture})
        config = config.model_copy(update={"feed": feed})
    if args.accept_new_venue:
        journal = config.journal.model_copy(update={"accept_new_venue": True})
        config = config.model_copy(update={"journal": journal})
    configure(config.engine.log_level)
    log = logging.getLogger("trading_engine.cli")
    # With workers, each worker opens its own journal; this process only validates.
    engine = prepare_engine(config, venue=simulated_venue, journal=args.workers <= 1)
    log.info(
        "loaded %s: %d instrument(s), %d strateg%s, orders to %s",
        source,
        len(config.instruments),
        len(config.strategies),
        "y" if len(config.strategies) == 1 else "ies",
        "the in-process simulated venue"
        if config.gateway.mode == "simulated"
        else config.gateway.base_url,
    )
    feeds = _feed_children(config, args)
    if args.workers > 1:
        from ..engine.supervisor import Supervisor

        supervisor = Supervisor(config, args.workers, config_path=args.config)
        asyncio.run(_with_feeds(feeds, supervisor.run(args.duration)))
        return supervisor.exit_code
    return run_on_loop(config, _with_feeds(feeds, Service(engine).run(args.duration)))


def _feed_children(config: Config, args: argparse.Namespace) -> FeedChildren | None:
    """The ``[[feeds]]`` processes ``run`` starts (None without entries, and in a worker).

    A worker of ``run --workers N`` (``engine.shards`` > 1 with one
    process) leaves the feeds to its supervisor, which starts them once.
    """
    if not any(feed.spawn for feed in config.feeds) or (
        args.workers == 1 and config.engine.shards > 1
    ):
        return None
    from .feed import FeedChildren

    host = config.feed.host if config.feed.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    ports = [config.feed.port + i for i in range(args.workers)]
    return FeedChildren(config, args.config, [f"{host}:{port}" for port in ports])


async def _with_feeds(feeds: FeedChildren | None, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` with the feed processes started before it and stopped after it."""
    if feeds is None:
        return await main
    feeds.start()
    watcher = asyncio.create_task(feeds.watch())
    try:
        return await main
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        feeds.stop()


# -- exchange-sim ------------------------------------------------------------------------


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a probability is between 0 and 1, got {text}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite non-negative number, got {text}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def _whole_seconds(text: str) -> int:
    """A ``Retry-After`` in whole seconds (RFC 9110's delay-seconds): 0.5 is refused, not cut."""
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected whole seconds (0, 1, 2, ...), got {text!r}")
    return int(text)


FAULT_FLAGS: dict[str, tuple[Callable[[str], Any], str]] = {
    "fail_before": (_probability, "probability of a 503 before an order is taken"),
    "fail_after": (_probability, "probability of a 500 after an order was taken"),
    "hang": (_probability, "probability of holding the answer past the client timeout"),
    "hang_s": (_non_negative, "how long a held answer is held (seconds)"),
    "rate_limit": (_probability, "probability of a 429 with Retry-After"),
    "retry_after_s": (_whole_seconds, "the Retry-After of a 429 (whole seconds)"),
    "read_rate_limit": (_probability, "probability of a 429 on GET /orders/{id} and GET /fills"),
    "forget": (_probability, "probability that a resting order is lost (GET/DELETE answer 404)"),
    "late_answer": (_probability, "probability of answering an order after its fills"),
    "late_answer_s": (_non_negative, "how late such an answer is (seconds)"),
    "accept_close": (_probability, "probability of closing a new connection at once"),
    "reset": (_probability, "probability of dropping the connection after taking an order"),
    "latency_s": (_non_negative, "latency added to every answer (seconds)"),
    "expire": (_probability, "probability per book move that the venue expires a resting order"),
    "unknown_status": (
        _probability,
        "binance: probability of a -1007 (execution status unknown) after an order was taken",
    ),
    "stream_drop": (
        _probability,
        "binance: probability of dropping a user data stream connection after an event",
    ),
    "feed_gap": (_probability, "probability of skipping a sequence number on the feed"),
    "feed_duplicate": (_probability, "probability of sending a feed frame twice"),
    "feed_cross": (_probability, "probability of a crossing update on the feed"),
}


def _exchange_sim(args: argparse.Namespace) -> int:
    from ..io.webserver import listen_error
    from ..lowlevel.logs import configure
    from ..sim.exchange_sim import ExchangeSimulator, Faults

    config = _config(args)
    configure(config.engine.log_level)
    api_key = os.environ.get(args.api_key_env)
    if not api_key and args.dialect == "own":
        raise UsageError(f"--api-key-env: the environment variable {args.api_key_env} is not set")
    if args.dialect == "own":
        for name in ("unknown_status", "stream_drop"):
            if getattr(args, name) is not None:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag}: a fault of the Binance dialect (--dialect binance)")
    faults = Faults(
        **{name: getattr(args, name) for name in FAULT_FLAGS if getattr(args, name) is not None}
    )
    tls = None
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key: give both or neither")
    if args.tls_cert is not None:
        import ssl

        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"--tls-cert/--tls-key: cannot load: {exc}") from exc
    simulator: ExchangeSimulator
    if args.dialect == "binance":
        from .binance_sim import binance_simulator

        try:
            simulator = binance_simulator(args, config, faults, tls)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    else:
        simulator = ExchangeSimulator(
            [item.to_instrument() for item in config.instruments],
            api_key=api_key or "",
            host=args.host,
            port=args.port,
            feed=args.feed,
            feed_shards=args.feed_shards,
            stamp_arrivals=args.stamp_arrivals,
            rate=args.rate,
            seed=args.seed,
            faults=faults,
            ssl_context=tls,
        )

    async def serve() -> None:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await simulator.start()
        except OSError as exc:
            await simulator.stop()
            raise UsageError(str(listen_error("--port", args.host, args.port, exc))) from exc
        try:
            scheme = "https" if tls is not None else "http"
            print(
                f"exchange simulator ({args.dialect} dialect) on "
                f"{scheme}://{args.host}:{simulator.port}",
                flush=True,
            )
            if args.feed is None:
                print(
                    "trading-engine: warning: no --feed HOST:PORT: the simulator publishes no "
                    "market data, so an engine gets no books and sends no orders",
                    file=sys.stderr,
                    flush=True,
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.duration):
                    await stop.wait()
        finally:
            await simulator.stop()

    asyncio.run(serve())
    return EXIT_OK


# -- bench -------------------------------------------------------------------------------------


def _bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    if args.ticks < 10 or args.rounds < 1 or args.interval_ms <= 0 or args.burst < 0:
        raise UsageError("bench: --ticks >= 10, --rounds >= 1, --interval-ms > 0, --burst >= 0")
    if args.max_load < 0:
        raise UsageError(f"bench: --max-load: expected a number >= 0, got {args.max_load}")
    return bench_main(args)


# -- demo, replay and backtest --------------------------------------------------------------


def _backtest(args: argparse.Namespace) -> int:
    from .backtest import BacktestUsageError, run

    config = _config(args)
    if args.config is None and not DEFAULT_CONFIG_PATH.exists():
        # Its instruments are the demo's: say so before "unknown_symbol" does.
        print(
            "backtest: the built-in default configuration "
            f"(no --config and no {DEFAULT_CONFIG_PATH} here)",
            file=sys.stderr,
        )
    try:
        return run(args, config)
    except BacktestUsageError as exc:
        raise UsageError(str(exc)) from None


def _demo(args: argparse.Namespace) -> int:
    import json
    import tempfile
    from pathlib import Path

    from ..engine.runner import run_on_loop
    from ..lowlevel.logs import configure
    from .demo import DEMO_FAULTS, free_ports, run_demo

    config = _config(args)
    config, notes = free_ports(config)
    for note in notes:
        print(note, flush=True)
    if args.log is not None:
        log_path = Path(args.log)
    else:
        log_path = Path(tempfile.gettempdir()) / f"trading-engine-demo-{os.getpid()}.log"
    try:
        log_file = log_path.open("a", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--log: cannot write {log_path}: {exc.strerror}") from None
    # The status screen is the terminal's; log lines go to the file.
    print(f"logs: {log_path}", flush=True)
    with log_file:
        configure(config.engine.log_level, log_file)
        faults = DEMO_FAULTS if args.faults else None
        result = run_on_loop(config, run_demo(config, args.duration, faults=faults))
        configure(config.engine.log_level)
    print("summary:", json.dumps(result, indent=2, allow_nan=False))
    print(f"logs: {log_path}")
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    import json

    from ..sim.replay import replay_file

    config = _config(args)
    try:
        result = replay_file(config, args.file)
    except FileNotFoundError:
        raise UsageError(f"{args.file}: no such file") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    summary = result.summary()
    if args.json:
        print(json.dumps({**summary, "order_log": result.order_log}, indent=2))
    else:
        print(
            f"replayed {result.frames:,} frames in {result.seconds:.2f} s "
            f"({result.frames_per_s:,.0f} frames/s)"
        )
        print(f"orders: {summary['orders']}   fills: {result.fills}")
        for symbol, position in result.positions.items():
            print(
                f"  {symbol}: quantity {position['quantity']}  avg {position['avg_price']}  "
                f"realized {position['realized_pnl']}  unrealized {position['unrealized_pnl']}"
            )
    return EXIT_OK


def _journal(args: argparse.Namespace) -> int:
    from .journal import JournalUsageError, run_journal_command
    from .journal_workers import JournalPathError, journal_paths

    config = _config(args)
    try:
        paths, note = journal_paths(config.journal.path, getattr(args, "workers", None))
    except JournalPathError as exc:
        raise UsageError(str(exc)) from None
    if note is not None:
        print(note, file=sys.stderr, flush=True)
    try:
        run_journal_command(
            paths,
            args.what,
            config_instruments=config.instrument_map(),
            since=args.since,
            strategy=args.strategy,
            as_csv=args.csv,
            plot_path=getattr(args, "plot", None),
        )
    except JournalUsageError as exc:
        raise UsageError(str(exc)) from None
    return EXIT_OK


# -- feed and instruments ------------------------------------------------------------------


def _feed(args: argparse.Namespace) -> int:
    from .feed import FeedUsageError, run_feed

    try:
        return run_feed(args)
    except FeedUsageError as exc:
        raise UsageError(str(exc)) from None


def _instruments(args: argparse.Namespace) -> int:
    from .feed import fetch_instruments, instruments_toml

    if args.rest_url is not None and not args.rest_url.startswith(("http://", "https://")):
        raise UsageError(f"--rest-url: expected an http or https URL, got {args.rest_url!r}")
    if len(set(args.symbols)) != len(args.symbols):
        raise UsageError("SYM: a symbol is listed twice")
    found = fetch_instruments(args.venue, args.symbols, args.rest_url)
    print(instruments_toml(found, args.venue), end="")
    return EXIT_OK


# -- the parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    parser = Parser(
        prog="trading-engine",
        formatter_class=HelpFormatter,
        description="A low-latency trading engine: market data in, safe orders out.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    class Commands:
        """``add_parser`` with the formatter that shows defaults."""

        @staticmethod
        def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
            parser: argparse.ArgumentParser = subparsers.add_parser(
                name, formatter_class=HelpFormatter, **kwargs
            )
            return parser

    commands = Commands()

    run = commands.add_parser(
        "run",
        help="the service: feed server, books, strategies, risk, gateway, admin API",
        description="Run the engine until SIGINT or SIGTERM, then stop cleanly "
        "(open orders are canceled).",
    )
    run.add_argument(
        "--config", metavar="FILE", help=f"configuration file (default {DEFAULT_CONFIG_PATH})"
    )
    run.add_argument(
        "--capture",
        metavar="FILE",
        help="record every complete frame received to FILE (default: feed.capture_path, "
        "which is unset in the default configuration)",
    )
    run.add_argument(
        "--duration",
        type=_non_negative,
        metavar="S",
        help="stop after S seconds (default: run until SIGINT or SIGTERM)",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="run N worker processes, one shard of the symbols each: worker i listens on "
        "feed.port + i; one admin API for all on admin.port (default 1)",
    )
    run.add_argument(
        "--accept-new-venue",
        action="store_true",
        help="start even though the journal was written against another venue or account, "
        "or the venue's fills log was reset: record this venue and restart the fills cursor, "
        "keeping the journaled fills and positions (default: journal.accept_new_venue, false in "
        "the default configuration)",
    )
    run.set_defaults(handler=_run)

    demo = commands.add_parser(
        "demo",
        help="everything on this machine: engine, exchange simulator, live status",
        description="Start the engine with the default configuration (or --config) and the "
        "exchange simulator on loopback, show a live status, print a summary at the end.",
    )
    demo.add_argument(
        "--config",
        metavar="FILE",
        help=f"configuration (default: {DEFAULT_CONFIG_PATH} if present, else the built-in one)",
    )
    demo.add_argument(
        "--duration",
        type=_non_negative,
        metavar="S",
        help="stop after S seconds (default: run until Ctrl-C)",
    )
    demo.add_argument(
        "--log",
        metavar="FILE",
        help="append log lines to FILE (default: a new trading-engine-demo-<pid>.log in the "
        "temporary directory; its path is printed)",
    )
    demo.add_argument(
        "--faults",
        action="store_true",
        help="the simulator injects order-path faults (5xx, 429s, lost orders, dropped "
        "connections; default: off); the gateway line shows how each was handled",
    )
    demo.set_defaults(handler=_demo)

    replay = commands.add_parser(
        "replay",
        help="run a captured feed through books, strategies and risk, as fast as possible",
        description="Replay a capture file (from `run --capture`) through the same books, "
        "strategies, risk and order state machine with the in-process simulated venue. "
        "Deterministic: the same file and config give the same orders and PnL.",
    )
    replay.add_argument("file", metavar="FILE", help="the capture file")
    replay.add_argument(
        "--config", metavar="FILE", help=f"configuration (default {DEFAULT_CONFIG_PATH})"
    )
    replay.add_argument(
        "--json", action="store_true", help="print the result as JSON (default: a text summary)"
    )
    replay.set_defaults(handler=_replay)

    from .backtest import add_parser as add_backtest_parser

    add_backtest_parser(commands, str(DEFAULT_CONFIG_PATH)).set_defaults(handler=_backtest)

    sim = commands.add_parser(
        "exchange-sim",
        help="the exchange simulator: order API, market data, fault injection",
        description="Serve the exchange order API and publish market data to an engine's "
        "feed port. The API key is read from the environment variable --api-key-env names.",
    )
    sim.add_argument(
        "--config",
        metavar="FILE",
        help=f"take the instruments from this file (default: {DEFAULT_CONFIG_PATH} if "
        "present, else the built-in configuration)",
    )
    sim.add_argument(
        "--dialect",
        choices=["own", "binance"],
        default="own",
        help="the order API to serve: the project's own, or Binance's spot REST API and user "
        "data stream (default: own)",
    )
    sim.add_argument("--host", default="127.0.0.1", help="address of the order API")
    sim.add_argument("--port", type=_port, default=8080, metavar="P", help="port of the order API")
    sim.add_argument(
        "--feed",
        type=_host_port,
        metavar="HOST:PORT",
        help="publish market data to this engine feed port (default: none; without it the "
        "simulator publishes nothing and only serves the order API)",
    )
    sim.add_argument(
        "--feed-shards",
        type=_positive_int,
        default=1,
        metavar="N",
        help="the engine runs N workers: publish each symbol to the feed port plus its shard",
    )
    sim.add_argument(
        "--rate", type=_positive, default=200.0, help="market-data messages per second, in total"
    )
    sim.add_argument(
        "--stamp-arrivals",
        action="store_true",
        help="note when each order's first bytes arrive; GET /bench/arrivals lists them "
        "(used by `trading-engine bench`; default: off)",
    )
    sim.add_argument("--seed", type=int, default=0, help="seed of the books' random walks")
    sim.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve https with this PEM certificate (default: none, plain http)",
    )
    sim.add_argument(
        "--tls-key", metavar="FILE", help="...and this PEM private key (default: none)"
    )
    sim.add_argument(
        "--api-key-env",
        default="EXCHANGE_API_KEY",
        metavar="NAME",
        help="the environment variable that holds the API key clients must send",
    )
    sim.add_argument(
        "--duration",
        type=_non_negative,
        metavar="S",
        help="stop after S seconds (default: run until SIGINT or SIGTERM)",
    )
    from ..sim.exchange_sim import Faults

    defaults = Faults()
    for name, (kind, text) in FAULT_FLAGS.items():
        sim.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=None,
            help=f"{text} (default: {getattr(defaults, name)})",
        )
    from .binance_sim import add_binance_arguments

    add_binance_arguments(sim)
    sim.set_defaults(handler=_exchange_sim)

    bench = commands.add_parser(
        "bench",
        help="wire-to-wire tick-to-trade on loopback, with a report",
        description="Publisher process -> this engine (ThresholdTaker) -> exchange simulator "
        "process, on one clock: wire-to-wire p50/p90/p99/p99.9/max, the engine's own stages, "
        "throughput, Python and machine. --baseline compares the naive engine in "
        "benchmarks/naive_engine.py; --compare-metrics runs with latency metrics off too.",
    )
    add_bench_arguments(bench)
    bench.set_defaults(handler=_bench)

    journal = commands.add_parser(
        "journal",
        help="the order journal: orders, fills, realized PnL",
        description="Read the order journal named by [journal] path (read-only: works while "
        "the engine runs). Prices, sizes and money are exact decimals; times are UTC.",
    )
    journal.add_argument(
        "--config", metavar="FILE", help=f"configuration (default {DEFAULT_CONFIG_PATH})"
    )
    workers_help = (
        "read the journals of `run --workers N` (journal.path with the worker's index before "
        "the suffix: state/journal.0.db, ...) as one, each venue fill once; 1: journal.path "
        "alone (default: journal.path, and every worker journal beside it when there are any)"
    )
    journal.add_argument("--workers", type=_positive_int, metavar="N", help=workers_help)
    views = journal.add_subparsers(dest="what", metavar="VIEW", required=True)
    for name, text in (
        ("orders", "every order as submitted, with its current status and filled quantity"),
        ("fills", "every fill"),
        ("pnl", "realized PnL by strategy and symbol (FIFO)"),
    ):
        view = views.add_parser(name, help=text, description=text)
        view.add_argument(
            "--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration"
        )
        view.add_argument(
            "--workers",
            type=_positive_int,
            metavar="N",
            default=argparse.SUPPRESS,
            help=workers_help,
        )
        view.add_argument(
            "--since",
            metavar="TIME",
            help="from this time on: ISO 8601 (UTC unless it says otherwise) or an age "
            "such as 90s, 15m, 2h, 3d",
        )
        view.add_argument("--strategy", metavar="NAME", help="only this strategy's rows")
        view.add_argument("--csv", action="store_true", help="CSV instead of a table")
        if name == "pnl":
            view.add_argument(
                "--plot", metavar="FILE", help="draw the cumulative PnL over time to a PNG"
            )
    journal.set_defaults(handler=_journal)

    check = commands.add_parser(
        "check-config",
        help="validate a configuration file and print each error",
        description="Validate a configuration file (with TRADING_ENGINE__* overrides) the way "
        "`run` does, building everything it builds short of opening sockets: each strategy "
        "(its class, its params against its instruments' grids), the risk limits, the event "
        "loop. Exit 0 when valid, 2 when not.",
    )
    check.add_argument("file", metavar="FILE", help="the TOML configuration file")
    check.add_argument(
        "--venue",
        choices=VENUES,
        help="also compare the instruments' tick size, lot size, minimum quantity and minimum "
        "notional with the venue's public metadata (exit 2 when they differ; default: no "
        "comparison)",
    )
    check.add_argument(
        "--rest-url", metavar="URL", help="the venue's REST URL (default: the venue's own)"
    )
    check.set_defaults(handler=_check_config)

    feed = commands.add_parser(
        "feed",
        help="publish a venue's public market data to engine feed ports",
        description="Connect to VENUE's public market data, apply its sequencing rules and "
        "publish the engine's feed protocol to each engine that owns a symbol's shard. Flags "
        "override the first [[feeds]] entry of VENUE in --config. Runs until SIGINT or SIGTERM.",
    )
    feed.add_argument("venue", metavar="VENUE", choices=VENUES, help=f"one of {', '.join(VENUES)}")
    feed.add_argument(
        "--symbols",
        metavar="SYM[,SYM...]",
        help="the venue's symbols (BTCUSDT, BTC-USDT, BTC/USD; default: the [[feeds]] entry's)",
    )
    feed.add_argument(
        "--to",
        metavar="HOST:PORT[,...]",
        help="engine feed ports; a symbol goes to port i = crc32(symbol) %% count (default: the "
        "[[feeds]] entry's)",
    )
    feed.add_argument(
        "--ws-url", metavar="URL", help="the venue's WebSocket URL (default: its own)"
    )
    feed.add_argument("--rest-url", metavar="URL", help="the venue's REST URL (default: its own)")
    feed.add_argument(
        "--capture",
        metavar="FILE",
        help="append what the venue sent and what was published to FILE (default: none)",
    )
    feed.add_argument(
        "--config",
        metavar="FILE",
        help="read the [[feeds]] entry of VENUE from FILE (default: none)",
    )
    feed.add_argument(
        "--entry",
        type=int,
        metavar="N",
        help="use [[feeds]] entry N of --config (default: the first one of VENUE)",
    )
    feed.add_argument(
        "--metrics-port",
        type=_port,
        metavar="P",
        help="serve GET /metrics on this port (default: the entry's metrics_port, else none)",
    )
    feed.add_argument("--metrics-host", default="127.0.0.1", help="address of /metrics")
    feed.add_argument(
        "--duration",
        type=_non_negative,
        metavar="S",
        help="stop after S seconds (default: run until SIGINT or SIGTERM)",
    )
    feed.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    feed.set_defaults(handler=_feed)

    instruments = commands.add_parser(
        "instruments",
        help="print [[instruments]] tables from a venue's public instrument metadata",
        description="Read tick size, lot size, minimum quantity and minimum notional of each "
        "SYM from VENUE and print them as [[instruments]] TOML for a configuration file.",
    )
    instruments.add_argument(
        "venue", metavar="VENUE", choices=VENUES, help=f"one of {', '.join(VENUES)}"
    )
    instruments.add_argument("symbols", metavar="SYM", nargs="+", help="the venue's symbols")
    instruments.add_argument(
        "--rest-url", metavar="URL", help="the venue's REST URL (default: its own)"
    )
    instruments.set_defaults(handler=_instruments)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    if BUILD.fallback:
        # pip hides the build's own warning unless run with -v.
        print(f"trading-engine: WARNING: {BUILD.note}", file=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    _import_path_has_cwd()
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        _print_config_error(exc, args)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"trading-engine: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StrategyError as exc:
        # A strategy that cannot be loaded or configured is a configuration error.
        print(f"trading-engine: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JournalError as exc:
        # Bad state is an error, never a blank slate: nothing starts.
        print(f"trading-engine: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as exc:
        print(f"trading-engine: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        if exc.filename is None:
            raise
        # A file named on the command line (or in the configuration) that cannot be used.
        print(f"trading-engine: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (``journal orders | head``): stop quietly, and
        # keep Python's own flush at exit from failing the same way.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    return code


if __name__ == "__main__":
    sys.exit(main())
