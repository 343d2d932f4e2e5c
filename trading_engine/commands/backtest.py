"""``trading-engine backtest``: the configured strategies over recorded market data.

:func:`add_parser` adds the command to the CLI's subcommands; more options
(sweeps) are added to the parser it returns, and read in :func:`options`.
"""

from __future__ import annotations

import argparse
import calendar
import importlib
import sys
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import Any

__all__ = ["add_parser", "options", "parse_time", "run"]


#: The earliest ns time taken (1973-03-03): smaller integers are seconds, ms or us.
_EARLIEST_NS = 10**17


def parse_time(text: str) -> int:
    """A time option: ns since the epoch (digits), or RFC 3339 (``2021-08-14T14:46:37Z``).

    An integer below 10**17 (before 1973 in ns) is refused: it is a time in
    seconds, milliseconds or microseconds, which read as ns would silently
    start the run in 1970.

    Raises ``argparse.ArgumentTypeError`` for anything else (a time without
    a UTC offset is refused: a backtest's clock is UTC).
    """
    if text.isdigit():
        value = int(text)
        if value < _EARLIEST_NS:
            # 1628952397 is a time in seconds; read as ns it is 1970 and the whole file runs.
            raise argparse.ArgumentTypeError(
                f"{text!r} is before 1973 in ns since the epoch: seconds, ms or us? give ns "
                "(1628952397000000000) or an RFC 3339 time (2021-08-14T14:46:37Z)"
            )
        return value
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither ns since the epoch nor an RFC 3339 time"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset (add Z or +00:00)")
    # Integer arithmetic: a float of ns since the epoch loses the microseconds.
    utc = moment.astimezone(UTC)
    return calendar.timegm(utc.timetuple()) * 1_000_000_000 + utc.microsecond * 1000


def add_parser(commands: Any, default_config: str) -> argparse.ArgumentParser:
    """Add ``backtest`` to ``commands`` (argparse subparsers); returns its parser."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "backtest",
        help="run the configured strategies over recorded market data",
        description="Run the configured strategies over recorded market data (engine "
        "captures, feed-handler venue captures, Tardis.dev incremental_book_L2 and trades "
        "CSV; gzip read directly) through the same books, strategies, risk, ledger and "
        "matching engine as live, with the [backtest] queue, latency and fee models. "
        "Deterministic: the same data and config give the same result.",
    )
    parser.add_argument("data", nargs="+", metavar="DATA", help="data files, merged by time")
    parser.add_argument(
        "--config", metavar="FILE", help=f"configuration (default {default_config})"
    )
    parser.add_argument(
        "--from",
        dest="from_ns",
        type=parse_time,
        metavar="T",
        help="trade from this data time (RFC 3339, or ns since the epoch); earlier data "
        "only builds the books",
    )
    parser.add_argument(
        "--to", dest="to_ns", type=parse_time, metavar="T", help="stop after this data time"
    )
    parser.add_argument(
        "--report", metavar="DIR", help="write the report (HTML and figures) into DIR"
    )
    parser.add_argument(
        "--json", metavar="FILE", help="write the result as JSON to FILE ('-': standard output)"
    )
    from ..backtest.sweep import add_sweep_arguments

    add_sweep_arguments(parser)
    return parser


def options(args: argparse.Namespace) -> Any:
    """The :class:`~trading_engine.backtest.runner.BacktestOptions` of the command line."""
    from ..backtest.runner import BacktestOptions

    return BacktestOptions(from_ns=args.from_ns, to_ns=args.to_ns)


class BacktestUsageError(Exception):
    """Bad input to the command: the message is one line (exit 2)."""


def run(args: argparse.Namespace, config: Any) -> int:
    """Run the command; returns the exit code. Raises :class:`BacktestUsageError`."""
    from ..backtest.data import DataError
    from ..backtest.models import LatencyError
    from ..backtest.runner import run_backtest

    if args.from_ns is not None and args.to_ns is not None and args.to_ns < args.from_ns:
        raise BacktestUsageError("--to is before --from")
    _check_data_once(args.data)
    if not getattr(args, "sweep", None):
        for flag in ("workers", "cluster"):
            if getattr(args, flag, None) is not None:
                raise BacktestUsageError(f"--{flag}: only for a sweep (add --sweep)")
    elif getattr(args, "workers", None) is not None and getattr(args, "cluster", None):
        raise BacktestUsageError("--workers: local processes or --cluster, not both")
    if getattr(args, "sweep", None):
        from ..backtest.sweep import (
            BacktestJob,
            SweepSpecError,
            check_grid,
            parse_sweep,
            sweep_command,
        )

        if args.json is not None:
            raise BacktestUsageError("--json: a sweep writes its table into --report DIR")
        # Every file readable before the first run (not one failure per combination).
        from ..backtest.data import detect_format

        for name in args.data:
            try:
                detect_format(name)
            except DataError as exc:
                raise BacktestUsageError(str(exc)) from None
        try:
            check_grid(config, parse_sweep(args.sweep))
        except SweepSpecError as exc:
            raise BacktestUsageError(str(exc)) from None
        job = BacktestJob(
            args.config,
            tuple(args.data),
            # One run per combination: the zero-latency comparison is for single runs.
            {"from_ns": args.from_ns, "to_ns": args.to_ns, "compare_zero_latency": False},
        )
        return sweep_command(args, job, _report_directory(args.report or "."))
    writer = None
    if args.report is not None:
        report_dir = _report_directory(args.report)
        try:
            writer = importlib.import_module("trading_engine.backtest.report").write_report
        except (ImportError, AttributeError):
            raise BacktestUsageError(
                "--report: this installation has no report writer (trading_engine.backtest.report)"
            ) from None
    try:
        result = run_backtest(config, [Path(p) for p in args.data], options(args))
    except (DataError, LatencyError) as exc:
        raise BacktestUsageError(str(exc)) from None
    except ValueError as exc:
        raise BacktestUsageError(str(exc)) from None
    if args.json is not None:
        data = result.to_json()
        if args.json == "-":
            sys.stdout.buffer.write(data + b"\n")
        else:
            try:
                Path(args.json).write_bytes(data)
            except OSError as exc:
                raise BacktestUsageError(
                    f"--json: cannot write {args.json}: {exc.strerror}"
                ) from None
    if writer is not None:
        try:
            writer(result, report_dir)
        except OSError as exc:
            raise BacktestUsageError(
                f"--report: cannot write into {report_dir}: {exc.strerror}"
            ) from None
    if args.json != "-":
        _summary(result)
    for line in result.meta.data_warnings():
        print(f"backtest: {line}", file=sys.stderr)
    return 0


def _check_data_once(names: list[str]) -> None:
    """Refuse a data file given twice (merged, every event would count twice).

    Raises :class:`BacktestUsageError` naming both spellings; paths that
    do not exist or are not regular files are left to the reader's error.
    """
    seen: dict[tuple[int, int], str] = {}
    for name in names:
        try:
            stat = Path(name).stat()
        except OSError:
            continue
        if not S_ISREG(stat.st_mode):
            continue  # a directory, a device: the reader names what it is
        key = (stat.st_dev, stat.st_ino)
        first = seen.get(key)
        if first is None:
            seen[key] = name
        else:
            same = f"twice ({first} and {name} are one file)" if first != name else "twice"
            raise BacktestUsageError(f"DATA: {name} is given {same}")


def _report_directory(name: str) -> Path:
    """``--report DIR``, made before the run (a run is never lost to a bad path).

    Raises :class:`BacktestUsageError` when ``name`` is an existing file or
    cannot be made a directory.
    """
    path = Path(name)
    if path.exists() and not path.is_dir():
        raise BacktestUsageError(f"--report: {name} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BacktestUsageError(f"--report: cannot create {name}: {exc.strerror}") from None
    return path


def _summary(result: Any) -> None:
    from ..backtest.result import strategy_error_line

    meta = result.meta
    rate = meta.events / meta.wall_s if meta.wall_s else 0.0
    print(
        f"backtest: {meta.frames:,} messages, {meta.events:,} book events in {meta.wall_s:.2f} s "
        f"({rate:,.0f} events/s); fill model {meta.fill_model}; feed latency "
        f"{meta.feed_latency}; order latency {meta.order_latency}"
    )
    if meta.skipped:
        skipped = ", ".join(f"{reason} {count}" for reason, count in meta.skipped.items())
        print(f"left out: {skipped}")
        for name, counts in meta.skipped_by_file.items():
            print(f"  {name}: {', '.join(f'{reason} {count}' for reason, count in counts.items())}")
    for strategy, row in meta.strategy_errors.items():
        print(f"  {strategy_error_line(strategy, row)}")
    for strategy, reasons in meta.denied.items():
        refused = ", ".join(f"{reason} {count}" for reason, count in reasons.items())
        print(f"  {strategy}: order requests refused before sending: {refused}")
    fills: dict[tuple[str, str], list[int]] = {}
    for fill in result.fills:
        row = fills.setdefault((fill.strategy, fill.symbol), [0, 0, 0])
        row[0] += 1
        row[1] += fill.quantity
        row[2] += fill.fee
    orders: dict[tuple[str, str], int] = {}
    for order in result.orders:
        key = (order.strategy, order.symbol)
        orders[key] = orders.get(key, 0) + 1
    keys = sorted(set(fills) | set(orders) | set(result.end_positions))
    for strategy in result.strategies:
        if not any(name == strategy for name, _ in keys):
            print(f"  {strategy}: no orders")
    for strategy, symbol in keys:
        count, lots, fee = fills.get((strategy, symbol), [0, 0, 0])
        inst = result.instruments[symbol]
        position = result.end_positions.get((strategy, symbol), 0)
        print(
            f"  {strategy} {symbol}: orders {orders.get((strategy, symbol), 0)}  fills {count} "
            f"({inst.format_size(lots)})  fees {inst.format_money(fee)}  "
            f"position {inst.format_size(position)}"
        )
