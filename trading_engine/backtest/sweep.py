"""Parameter sweeps: one backtest per combination of strategy parameters, in parallel.

A sweep is a grid ``{"strategy.param": [value, ...]}`` (from repeated
``--sweep 'strategy.param=v1,v2,...'``); its combinations are the
cartesian product, in the order the keys and values were given. Each
combination is one call of ``run_one(combination)``, which returns a
:class:`~.result.BacktestResult`; the worker that ran it reduces it to a
:class:`SweepRow` (PnL net, fees, turnover, Sharpe, max drawdown, fills),
so only the row crosses between processes.

Where the calls run:

- by default a local pool of ``workers`` processes
  (:class:`~concurrent.futures.ProcessPoolExecutor`, started with
  ``spawn``: the workers import the package afresh, nothing is inherited
  from the parent's threads); ``run_one`` must pickle, so it is a
  module-level function or an instance of a module-level class such as
  :class:`BacktestJob` (a config path and data paths, not a loaded
  config);
- ``workers=1``: in this process, one after the other;
- ``cluster="tcp://HOST:PORT"``: on the Dask distributed scheduler
  there (the ``cluster`` extra), whose workers must have the same
  package and strategies installed.

A combination that raises, or whose worker dies, is a row with its error
(``SweepRow.error``), counted in ``SweepResult.failed``: never dropped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import importlib
import io
import itertools
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from ..config import Config
from .analytics import analyze, decimal_text
from .result import BacktestResult

__all__ = [
    "MAX_COMBINATIONS",
    "BacktestJob",
    "SweepError",
    "SweepResult",
    "SweepRow",
    "SweepSpecError",
    "add_sweep_arguments",
    "check_grid",
    "combinations",
    "evaluate",
    "nested_parameters",
    "parse_sweep",
    "run_sweep",
    "sweep_command",
    "validate_cluster",
]

#: The most combinations one sweep runs (a typo in a grid should not queue a week of work).
MAX_COMBINATIONS: Final = 10_000
_KEY: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_]*)")
_CLUSTER: Final = re.compile(r"(tcp|tls)://[^\s/:]+(:[0-9]{1,5})?")


class SweepSpecError(ValueError):
    """A ``--sweep``, ``--workers`` or ``--cluster`` value that makes no sense (exit 2)."""


class SweepError(RuntimeError):
    """The sweep could not run at all (the cluster unreachable); exit 1."""


def parse_sweep(specs: Sequence[str]) -> dict[str, list[str]]:
    """The grid of ``--sweep`` values: ``['mm.spread=2,3']`` -> ``{'mm.spread': ['2', '3']}``.

    Each spec is ``STRATEGY.PARAM=V1,V2,...``: a strategy name, a dot, a
    parameter name, ``=``, one or more comma-separated non-empty values,
    each at most once. A key may appear once. Raises
    :class:`SweepSpecError` with a one-line message naming the spec, also
    when the product has more than :data:`MAX_COMBINATIONS` combinations.
    """
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, equals, values_text = spec.partition("=")
        key = key.strip()
        if not equals:
            raise SweepSpecError(f"--sweep {spec!r}: expected STRATEGY.PARAM=V1,V2,...")
        if _KEY.fullmatch(key) is None:
            raise SweepSpecError(
                f"--sweep {spec!r}: {key!r} is not STRATEGY.PARAM (a strategy name, a dot, "
                "a parameter name)"
            )
        values = [v.strip() for v in values_text.split(",")]
        if not values_text.strip() or any(not v for v in values):
            raise SweepSpecError(f"--sweep {spec!r}: {key} needs non-empty values V1,V2,...")
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise SweepSpecError(f"--sweep {spec!r}: {key} repeats {', '.join(duplicates)}")
        if key in grid:
            raise SweepSpecError(f"--sweep {spec!r}: {key} is swept twice")
        grid[key] = values
    count = 1
    for values in grid.values():
        count *= len(values)
    if count > MAX_COMBINATIONS:
        raise SweepSpecError(
            f"--sweep: {count} combinations, more than {MAX_COMBINATIONS}; narrow the grid"
        )
    return grid


def combinations(grid: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """The cartesian product of ``grid``, keys and values in their given order.

    An empty grid has one combination, the empty one (the configured run).
    """
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def nested_parameters(combination: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``{'mm.spread': '3'}`` -> ``{'mm': {'spread': '3'}}``: the runner's parameter overrides."""
    nested: dict[str, dict[str, str]] = {}
    for key, value in combination.items():
        strategy, _, parameter = key.partition(".")
        nested.setdefault(strategy, {})[parameter] = value
    return nested


def check_grid(config: Config, grid: Mapping[str, Sequence[str]]) -> None:
    """Check every swept value against its strategy before anything runs.

    Each value is set alone over the configured params and its strategy is
    built as ``check-config`` builds it (class, params model, tick and lot
    grids), so a parameter the strategy does not have, a value of the wrong
    type or off the instrument's grid, or a strategy that is not configured
    is refused once, up front, instead of failing every combination. Raises
    :class:`SweepSpecError` with one line naming the key and the value.
    Values that are only invalid together are still failed rows.
    """
    from ..core.errors import ConfigError
    from ..engine.engine import Engine
    from ..sim.venue import simulated_venue

    index = {item.name: i for i, item in enumerate(config.strategies)}
    for key, values in grid.items():
        name, _, parameter = key.partition(".")
        i = index.get(name)
        if i is None:
            configured = ", ".join(sorted(index)) or "none"
            raise SweepSpecError(
                f"--sweep {key}: no strategy named {name!r} is configured (configured: "
                f"{configured})"
            )
        item = config.strategies[i]
        for value in values:
            one = item.model_copy(update={"params": {**item.params, parameter: value}})
            try:
                Engine(
                    config.model_copy(update={"strategies": [one]}),
                    sink_factory=simulated_venue,
                )
            except ConfigError as exc:
                problem = exc.problems[0].replace("strategies[0].", f"strategies[{i}].", 1)
                if "not permitted" in problem:
                    problem += _parameter_hint(name, item.class_, parameter)
                raise SweepSpecError(f"--sweep {key}={value}: {problem}") from None


def _parameter_hint(name: str, class_spec: str, parameter: str) -> str:
    """``; did you mean `--sweep name.param=...`?`` for the closest parameter, or ``""``."""
    from ..config import closest_strategy_parameter

    hint = closest_strategy_parameter(name, class_spec, parameter)
    return "" if hint is None else f"; did you mean `--sweep {name}.{hint}=...`?"


def validate_cluster(address: str) -> str:
    """A Dask scheduler address ``tcp://HOST:PORT`` (or ``tls://``).

    Raises :class:`SweepSpecError` for anything else.
    """
    if _CLUSTER.fullmatch(address) is None:
        raise SweepSpecError(
            f"--cluster {address!r}: expected a Dask scheduler address such as tcp://10.0.0.5:8786"
        )
    return address


@dataclass(frozen=True, slots=True)
class CurrencyFigures:
    """One combination's figures in one quote currency (money as exact decimal strings)."""

    pnl_net: str
    fees: str
    turnover: str
    max_drawdown: str
    sharpe: float | None
    sortino: float | None


@dataclass(frozen=True, slots=True)
class SweepRow:
    """One combination's outcome: its figures, or the error it failed with.

    ``index`` is its place in :func:`combinations`; ``figures`` maps a
    quote currency to its :class:`CurrencyFigures` (empty on error);
    ``wall_s`` the machine time its backtest and analytics took;
    ``notes`` what its single run's summary would say about its input and
    its strategies (:meth:`~.result.BacktestMeta.notes`: a range with no
    data, input left out, hooks that raised).
    """

    index: int
    parameters: Mapping[str, str]
    error: str | None = None
    figures: Mapping[str, CurrencyFigures] = field(default_factory=dict)
    fills: int = 0
    orders: int = 0
    interval_ns: int = 0
    wall_s: float = 0.0
    notes: tuple[str, ...] = ()


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())


def evaluate(
    run_one: Callable[[Mapping[str, str]], BacktestResult], index: int, combination: dict[str, str]
) -> SweepRow:
    """Run one combination and reduce it to its row; an exception becomes the row's error.

    Module-level so a process pool or a Dask worker can run it.
    """
    started = time.perf_counter()
    try:
        result = run_one(combination)
        a = analyze(result)
    except Exception as exc:  # every failure becomes a counted row, whatever it was
        return SweepRow(index, combination, _one_line(exc), wall_s=time.perf_counter() - started)
    figures = {
        currency: CurrencyFigures(
            pnl_net=decimal_text(s.pnl.total),
            fees=decimal_text(s.pnl.fees),
            turnover=decimal_text(s.pnl.turnover),
            max_drawdown=decimal_text(s.drawdown.max),
            sharpe=s.ratios.sharpe,
            sortino=s.ratios.sortino,
        )
        for currency, s in sorted(a.currencies.items())
    }
    return SweepRow(
        index=index,
        parameters=combination,
        figures=figures,
        fills=a.fills,
        orders=a.orders,
        interval_ns=a.interval_ns,
        wall_s=time.perf_counter() - started,
        notes=tuple(result.meta.notes()),
    )


@dataclass(frozen=True, slots=True)
class SweepResult:
    """Every combination's row, in :func:`combinations` order, and how they ran.

    ``failed`` counts the rows with an error; ``executor`` says where they
    ran (``serial``, ``processes:N``, ``dask:ADDRESS``); ``wall_s`` the
    whole sweep's machine time.
    """

    grid: Mapping[str, Sequence[str]]
    rows: tuple[SweepRow, ...]
    failed: int
    executor: str
    wall_s: float

    @property
    def currencies(self) -> list[str]:
        """Every quote currency any row has figures in, sorted."""
        return sorted({c for row in self.rows for c in row.figures})

    def notes(self) -> list[str]:
        """Each distinct note of the rows (:attr:`SweepRow.notes`), once, in first-seen order.

        A note every row that ran has (the data's: the same input for
        all) stands alone; any other names its combinations' indexes.
        """
        ran = [row for row in self.rows if not row.error]
        where: dict[str, list[int]] = {}
        for row in ran:
            for note in row.notes:
                where.setdefault(note, []).append(row.index)
        return [
            note
            if len(indexes) == len(ran)
            else f"{note} (combination{'s' if len(indexes) > 1 else ''} "
            f"{', '.join(map(str, indexes))})"
            for note, indexes in where.items()
        ]

    def table(self) -> list[dict[str, object]]:
        """One dict per row: ``index``, the parameters, ``status``, ``error``, figures per currency.

        Figure columns are ``NAME_CURRENCY`` (``pnl_net_USD``); empty for
        a failed row. ``notes`` joins the row's notes with ``"; "``. The
        CSV and the JSON hold exactly this.
        """
        out: list[dict[str, object]] = []
        for row in self.rows:
            entry: dict[str, object] = {"index": row.index}
            entry.update({key: row.parameters.get(key, "") for key in self.grid})
            entry["status"] = "error" if row.error else "ok"
            entry["error"] = row.error or ""
            for currency in self.currencies:
                figures = row.figures.get(currency)
                for name in CurrencyFigures.__slots__:
                    value = getattr(figures, name) if figures is not None else None
                    entry[f"{name}_{currency}"] = "" if value is None else value
            entry["fills"] = row.fills
            entry["orders"] = row.orders
            entry["wall_s"] = round(row.wall_s, 6)
            entry["notes"] = "; ".join(row.notes)
            out.append(entry)
        return out

    def write(self, directory: Path) -> list[Path]:
        """Write ``sweep.csv``, ``sweep.json`` and ``sweep.png`` into ``directory`` (created).

        Returns their paths. The plot needs matplotlib (the ``backtest``
        extra); raises ``OSError`` from the file system.
        """
        directory.mkdir(parents=True, exist_ok=True)
        table = self.table()
        csv_path = directory / "sweep.csv"
        buffer = io.StringIO()
        columns = list(table[0]) if table else ["index", *self.grid, "status", "error"]
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
        csv_path.write_text(buffer.getvalue(), encoding="utf-8")
        json_path = directory / "sweep.json"
        document = {
            "grid": {key: list(values) for key, values in self.grid.items()},
            "combinations": len(self.rows),
            "failed": self.failed,
            "executor": self.executor,
            "wall_s": round(self.wall_s, 6),
            "interval_ns": next((r.interval_ns for r in self.rows if not r.error), None),
            "rows": table,
        }
        json_path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        png_path = directory / "sweep.png"
        png_path.write_bytes(self._plot())
        return [csv_path, json_path, png_path]

    def _plot(self) -> bytes:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        labels = [", ".join(f"{k}={v}" for k, v in row.parameters.items()) for row in self.rows]
        figure = Figure(figsize=(max(6.0, 0.6 * len(self.rows) + 2), 6))
        pnl_axes, sharpe_axes = figure.subplots(2, 1, sharex=True)
        positions = list(range(len(self.rows)))
        currencies = self.currencies
        width = 0.8 / max(1, len(currencies))
        for n, currency in enumerate(currencies):
            offsets = [p + n * width for p in positions]
            pnl = [_float(row.figures.get(currency), "pnl_net") for row in self.rows]
            sharpe = [_float(row.figures.get(currency), "sharpe") for row in self.rows]
            pnl_axes.bar(offsets, pnl, width, label=currency)
            sharpe_axes.bar(offsets, sharpe, width, label=currency)
        for position, row in zip(positions, self.rows, strict=True):
            if row.error:
                pnl_axes.text(position, 0, "failed", rotation=90, ha="center", va="bottom")
        pnl_axes.set_ylabel("PnL net, quote currency")
        sharpe_axes.set_ylabel("Sharpe per interval")
        sharpe_axes.set_xticks(positions, labels, rotation=60, ha="right", fontsize="small")
        for axes in (pnl_axes, sharpe_axes):
            axes.axhline(0, color="grey", lw=0.5)
            axes.grid(True, axis="y", alpha=0.3)
            if currencies:
                axes.legend(loc="best", fontsize="small")
        figure.tight_layout()
        FigureCanvasAgg(figure)
        out = io.BytesIO()
        figure.savefig(out, format="png", dpi=100, metadata={"Software": None})
        return out.getvalue()


def _float(figures: CurrencyFigures | None, name: str) -> float:
    if figures is None:
        return 0.0
    value = getattr(figures, name)
    return 0.0 if value is None else float(value)


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def _local(
    run_one: Callable[[Mapping[str, str]], BacktestResult],
    combos: list[dict[str, str]],
    workers: int,
) -> list[SweepRow]:
    if workers == 1:
        return [evaluate(run_one, i, combo) for i, combo in enumerate(combos)]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(evaluate, run_one, i, c) for i, c in enumerate(combos)]
        rows: list[SweepRow] = []
        for i, future in enumerate(futures):
            try:
                rows.append(future.result())
            except Exception as exc:  # a worker that died, run_one that does not pickle
                rows.append(SweepRow(i, combos[i], _one_line(exc)))
        return rows


def _dask(
    run_one: Callable[[Mapping[str, str]], BacktestResult],
    combos: list[dict[str, str]],
    address: str,
    connect_timeout_s: float,
) -> list[SweepRow]:
    try:
        from distributed import Client
    except ImportError as exc:
        raise SweepError(
            "--cluster needs Dask distributed: pip install 'trading-engine[cluster]'"
        ) from exc
    try:
        client = Client(address, timeout=connect_timeout_s, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise SweepError(f"cannot reach the Dask scheduler at {address}: {_one_line(exc)}") from exc
    try:
        futures = client.map(
            evaluate,
            [run_one] * len(combos),
            list(range(len(combos))),
            combos,
            pure=False,
        )
        rows: list[SweepRow] = []
        for i, future in enumerate(futures):
            try:
                rows.append(future.result())
            except Exception as exc:  # a lost worker, run_one that does not pickle
                rows.append(SweepRow(i, combos[i], _one_line(exc)))
        return rows
    finally:
        client.close()  # type: ignore[no-untyped-call]


def run_sweep(
    grid: Mapping[str, Sequence[str]],
    run_one: Callable[[Mapping[str, str]], BacktestResult],
    *,
    workers: int | None = None,
    cluster: str | None = None,
    connect_timeout_s: float = 10.0,
) -> SweepResult:
    """One backtest per combination of ``grid``, gathered into one table.

    ``run_one`` gets one combination (``{'strategy.param': 'value'}``) and
    returns its result; it must pickle unless ``workers`` is 1. Runs on
    ``workers`` local processes (default: the CPUs this process may use,
    at most one per combination), or on the Dask scheduler at ``cluster``
    (``workers`` is then the cluster's business and ignored; the scheduler
    must answer within ``connect_timeout_s``). Raises
    :class:`SweepSpecError` for ``workers < 1`` or a malformed cluster
    address, :class:`SweepError` when the cluster cannot be reached; a
    failing combination does not raise (see :class:`SweepRow`).
    """
    if workers is not None and workers < 1:
        raise SweepSpecError(f"--workers {workers}: expected a positive number of processes")
    combos = combinations(grid)
    started = time.perf_counter()
    if cluster is not None:
        address = validate_cluster(cluster)
        rows = _dask(run_one, combos, address, connect_timeout_s)
        executor = f"dask:{address}"
    else:
        count = max(1, min(workers or _default_workers(), len(combos)))
        rows = _local(run_one, combos, count)
        executor = "serial" if count == 1 else f"processes:{count}"
    return SweepResult(
        grid={key: list(values) for key, values in grid.items()},
        rows=tuple(rows),
        failed=sum(1 for row in rows if row.error),
        executor=executor,
        wall_s=time.perf_counter() - started,
    )


@dataclass(frozen=True, slots=True)
class BacktestJob:
    """A picklable ``run_one`` for the backtest runner: paths, not loaded objects.

    Each call loads ``config_path`` afresh in the worker, sets the
    combination's parameters (``BacktestOptions.parameters``) and runs the
    backtest over ``data``. ``options`` holds the other
    ``BacktestOptions`` fields (``from_ns``, ``to_ns``, ``seed``, ...).
    """

    config_path: str | None
    data: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, combination: Mapping[str, str]) -> BacktestResult:
        # Imported by name: the runner sits beside this module and is only needed in workers.
        runner = importlib.import_module("trading_engine.backtest.runner")
        config_module = importlib.import_module("trading_engine.config")
        config = config_module.load_config(self.config_path)
        options = runner.BacktestOptions(
            **dict(self.options), parameters=nested_parameters(combination)
        )
        result: BacktestResult = runner.run_backtest(config, [Path(p) for p in self.data], options)
        return result


# -- command line --------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--sweep`` (repeatable), ``--cluster`` and ``--workers`` to ``parser``."""
    group = parser.add_argument_group("parameter sweeps")
    group.add_argument(
        "--sweep",
        action="append",
        default=None,
        metavar="STRATEGY.PARAM=V1,V2,...",
        help="run one backtest per value; repeated, one backtest per combination (the "
        "cartesian product); results in DIR/sweep.csv, sweep.json and sweep.png "
        "(default: one backtest with the configured parameters)",
    )
    group.add_argument(
        "--cluster",
        default=None,
        metavar="tcp://HOST:PORT",
        help="run the sweep on this Dask distributed scheduler, whose workers have the same "
        "package and strategies installed (default: local processes)",
    )
    group.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="N",
        help="local processes for a sweep; 1 runs them one after the other in this process "
        "(default: one per CPU this process may use)",
    )


def sweep_command(
    args: argparse.Namespace,
    run_one: Callable[[Mapping[str, str]], BacktestResult],
    directory: Path,
    *,
    out: Callable[[str], None] = print,
) -> int:
    """Run the sweep ``args`` describes and write its table into ``directory``.

    For the ``backtest`` command when ``args.sweep`` is set. Returns the
    exit code: 0 when every combination ran, 1 when one failed (its
    error in the table) or the cluster was unreachable, 2 for a bad
    ``--sweep``/``--cluster`` (message on ``out``, one line).
    """
    try:
        grid = parse_sweep(args.sweep or [])
        if args.cluster is not None:
            validate_cluster(args.cluster)
        result = run_sweep(grid, run_one, workers=args.workers, cluster=args.cluster)
    except SweepSpecError as exc:
        out(f"error: {exc}")
        return 2
    except SweepError as exc:
        out(f"error: {exc}")
        return 1
    paths = result.write(directory)
    out(
        f"sweep: {len(result.rows)} combinations on {result.executor} in {result.wall_s:.2f} s, "
        f"{result.failed} failed; table in {paths[0]}"
    )
    for row in result.rows:
        if row.error:
            out(f"failed: {dict(row.parameters)}: {row.error}")
    for line in result.notes():
        out(f"note: {line}")
    return 1 if result.failed else 0
