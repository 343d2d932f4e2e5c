"""The figures of a backtest, computed from its :class:`~.result.BacktestResult`.

Pure: no I/O, no clock. Money is exact: every amount is a
:class:`~fractions.Fraction` of its **quote currency** (a symbol's money
unit, ``tick_size * lot_size``, times the integer count the result
holds), so a figure prints as an exact decimal string. Floats appear only
in ratios (Sharpe, Sortino, fill ratios).

Definitions (docs/backtest.md says the same for the reader of a report):

- **Positions and PnL** are rebuilt from the fills with the ledger's own
  FIFO :class:`~trading_engine.core.positions.Position`: realized PnL is
  net of fees (a rebate adds to it); unrealized PnL marks the open lots
  at the **mid** ``(bid + ask) / 2`` of the latest two-sided mark at or
  before the instant. A symbol with no two-sided mark yet is marked at
  its last fill price (the count of such grid points is
  ``Analytics.unmarked``). A symbol's figures are the sum of its
  strategies'; a strategy's and the total's are summed **within one
  quote currency only** (from :func:`quote_currency`): amounts in
  different currencies are never added.
- **Equity** at an instant is realized + unrealized (net of fees), on a
  grid of ``interval_ns`` (by default the marks' sample interval) from
  the data's first instant until the first grid point at or after the
  last one, so the last point includes every fill.
- **Drawdown** at a grid point is the running peak of equity minus the
  equity (>= 0); the maximum drawdown names its peak and trough times
  and when equity first regained the peak (None if it never did).
- **Returns** are equity differences per interval, in the quote currency
  (``r_k = E_k - E_{k-1}``). **Sharpe** is ``mean(r) / stdev(r)`` with the
  sample standard deviation (n - 1); **Sortino** is ``mean(r) / sqrt(mean
  (min(r, 0)^2))`` (target 0, over all intervals). Both take the
  risk-free rate as 0 and, being ratios, are the same as on returns
  relative to any fixed capital. They are given per interval and
  annualised by ``sqrt(periods per year)`` with a year of 365 days of
  24 hours (markets that never close): ``periods = 365 * 86400 s /
  interval``. None with fewer than two intervals or a zero deviation.
- **Fill ratio**: lots filled / lots ordered, and orders with a fill /
  orders, over every order the strategies decided (refused ones too).
- **Markouts** (adverse selection): for a fill at price ``p`` and a mid
  ``m`` at ``fill time + horizon``, ``m - p`` for a buy and ``p - m`` for
  a sell, in ticks; positive is a fill the market then moved towards.
  Aggregated weighted by lots (``money = sum(ticks * lots)`` in the
  quote currency, ``mean_ticks = sum(ticks * lots) / sum(lots)``). The
  mid is the latest mark at or before that instant, so the resolution
  is the marks' sampling; a horizon past the data's end is not
  measured and is counted in ``beyond``.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from ..core.instruments import Instrument
from ..core.positions import Position
from ..core.protocol import Side
from ..sim.binance.rules import split_assets
from .result import BacktestResult, FillRecord, MarkSample

__all__ = [
    "DEFAULT_HORIZONS_NS",
    "NS_PER_YEAR",
    "Analytics",
    "CurrencySummary",
    "Drawdown",
    "FillRatio",
    "LatencyEffect",
    "Markout",
    "PnLRow",
    "Ratios",
    "analyze",
    "decimal_text",
    "drawdown_of",
    "latency_effects",
    "quote_currency",
    "ratios_of",
]

#: Markout horizons by default: 0 (the mid at the fill), 100 ms, 1 s, 10 s, 60 s.
DEFAULT_HORIZONS_NS: Final = (0, 100_000_000, 1_000_000_000, 10_000_000_000, 60_000_000_000)
#: The year the ratios are annualised over: 365 days of 24 hours, in ns.
NS_PER_YEAR: Final = 365 * 86_400 * 10**9
#: Decimals a money amount that is not an exact decimal is rounded to.
_MAX_DECIMALS: Final = 18


def quote_currency(symbol: str) -> str:
    """The quote currency of a symbol: after a separator (``BTC-USD`` -> ``USD``),
    else a known quote asset at the end (``BTCUSDT`` -> ``USDT``), else its
    last three characters. Amounts are only ever added within one currency.
    """
    return split_assets(symbol)[1]


def decimal_text(value: Fraction | int) -> str:
    """An exact amount as a plain decimal string (``Fraction(-7, 100000)`` -> ``"-0.00007"``).

    Exact whenever the value has a finite decimal expansion (every money
    figure here does); otherwise rounded half to even at 18 decimals.
    No exponent, no trailing zeros after the point.
    """
    value = Fraction(value)
    denominator = value.denominator
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    places = max(twos, fives) if denominator == 1 else _MAX_DECIMALS
    scaled = round(value * 10**places)
    sign = "-" if scaled < 0 else ""
    whole, fraction = divmod(abs(scaled), 10**places)
    if not places:
        return f"{sign}{whole}"
    digits = f"{fraction:0{places}d}".rstrip("0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


@dataclass(frozen=True, slots=True)
class PnLRow:
    """PnL of one strategy on one symbol, or an aggregate (None = all).

    Money in ``currency`` (exact). ``position`` is the signed lots at the
    end (None for a row over several symbols). ``realized`` is net of
    fees: ``realized_gross - fees``; ``total = realized + unrealized``.
    ``turnover`` is the notional traded (sum of price times size).
    """

    strategy: str | None
    symbol: str | None
    currency: str
    position: int | None
    realized_gross: Fraction
    fees: Fraction
    realized: Fraction
    unrealized: Fraction
    total: Fraction
    turnover: Fraction
    fills: int


@dataclass(frozen=True, slots=True)
class Drawdown:
    """The drawdown of an equity series (money, >= 0) and its worst episode.

    ``series`` has one value per grid point. ``peak_ns`` / ``trough_ns``
    bound the maximum drawdown (None when there was none), ``duration_ns``
    is trough minus peak, ``recovered_ns`` when equity first came back to
    the peak (None if never).
    """

    series: tuple[Fraction, ...]
    max: Fraction
    peak_ns: int | None
    trough_ns: int | None
    duration_ns: int
    recovered_ns: int | None


@dataclass(frozen=True, slots=True)
class Ratios:
    """Sharpe and Sortino of per-interval equity differences (see the module doc).

    ``mean`` is the mean return per interval (money, exact). The ratios
    are None with fewer than two intervals or a zero deviation.
    """

    interval_ns: int
    periods_per_year: float
    intervals: int
    mean: Fraction | None
    stdev: float | None
    downside: float | None
    sharpe: float | None
    sortino: float | None
    sharpe_annualised: float | None
    sortino_annualised: float | None


@dataclass(frozen=True, slots=True)
class CurrencySummary:
    """Everything summed in one quote currency: equity, drawdown, ratios, PnL."""

    currency: str
    equity: tuple[Fraction, ...]
    drawdown: Drawdown
    ratios: Ratios
    pnl: PnLRow


@dataclass(frozen=True, slots=True)
class FillRatio:
    """How much of what a strategy ordered on a symbol filled (None = all strategies).

    ``lots_ratio`` = ``lots_filled / lots_ordered``; ``orders_ratio`` =
    ``orders_with_fills / orders``; None when there was no order.
    ``orders_refused`` never reached the venue.
    """

    strategy: str | None
    symbol: str
    orders: int
    orders_refused: int
    orders_filled: int
    orders_with_fills: int
    lots_ordered: int
    lots_filled: int
    lots_ratio: float | None
    orders_ratio: float | None


@dataclass(frozen=True, slots=True)
class Markout:
    """Fills' mid markouts at one horizon, for one strategy (None = all), symbol and side.

    ``side`` is ``"buy"``, ``"sell"`` or ``"all"``. ``fills`` counts the
    fills measured, ``beyond`` those whose horizon passed the data's end.
    ``mean_ticks`` is lot-weighted (None when nothing was measured);
    ``money`` the sum of ticks times lots in ``currency``.
    """

    strategy: str | None
    symbol: str
    side: str
    horizon_ns: int
    currency: str
    fills: int
    beyond: int
    lots: int
    mean_ticks: Fraction | None
    money: Fraction


@dataclass(frozen=True, slots=True)
class Analytics:
    """The figures of one backtest (see the module doc for every definition).

    ``times`` is the equity grid (ns, every ``interval_ns``); each equity
    series has one value per time. Series and position keys:
    ``equity_by_key[(strategy, symbol)]``, ``equity_by_symbol[symbol]``,
    ``equity_by_strategy[(strategy, currency)]`` and, per currency,
    ``currencies[currency].equity``. ``positions[(strategy, symbol)]``
    and ``symbol_positions[symbol]`` are step series ``(ts_ns, lots)``:
    the position from each instant on, starting at 0 at ``times[0]``.
    """

    interval_ns: int
    times: tuple[int, ...]
    currencies: Mapping[str, CurrencySummary]
    pnl: tuple[PnLRow, ...]
    equity_by_key: Mapping[tuple[str, str], tuple[Fraction, ...]]
    equity_by_symbol: Mapping[str, tuple[Fraction, ...]]
    equity_by_strategy: Mapping[tuple[str, str], tuple[Fraction, ...]]
    positions: Mapping[tuple[str, str], tuple[tuple[int, int], ...]]
    symbol_positions: Mapping[str, tuple[tuple[int, int], ...]]
    fill_ratios: tuple[FillRatio, ...]
    markouts: tuple[Markout, ...]
    horizons_ns: tuple[int, ...]
    symbol_currency: Mapping[str, str]
    unmarked: int
    fills: int
    orders: int


def _unit(instrument: Instrument) -> Fraction:
    """The value of one money unit (one tick times one lot) in the quote currency."""
    return Fraction(instrument.tick_size) * Fraction(instrument.lot_size)


class _Mids:
    """One symbol's mids (twice the mid, an int: ``bid + ask``) over time, carried forward."""

    __slots__ = ("mid2", "times")

    def __init__(self, marks: Iterable[MarkSample]) -> None:
        self.times: list[int] = []
        self.mid2: list[int | None] = []
        last: int | None = None
        for mark in marks:
            if mark.bid is not None and mark.ask is not None:
                last = mark.bid + mark.ask
            self.times.append(mark.ts_ns)
            self.mid2.append(last)

    def at(self, ts_ns: int) -> int | None:
        """Twice the latest two-sided mid at or before ``ts_ns``, or None."""
        index = bisect.bisect_right(self.times, ts_ns) - 1
        return self.mid2[index] if index >= 0 else None


def _signed_cost(position: Position) -> int:
    cost = position.cost
    assert type(cost) is int  # fills are whole ticks: cost stays an int
    return cost if position.quantity >= 0 else -cost


def _equity2(position: Position, mid2: int | None, last_price: int) -> tuple[int, bool]:
    """Twice the position's equity (realized net of fees + unrealized), money units.

    Returns (value, marked): ``marked`` is False when an open position had
    no mid and was marked at ``last_price``.
    """
    realized = position.realized
    assert type(realized) is int
    if not position.quantity:
        return 2 * realized, True
    marked = mid2 is not None
    mark2 = mid2 if mid2 is not None else 2 * last_price
    return 2 * realized + mark2 * position.quantity - 2 * _signed_cost(position), marked


def _grid(result: BacktestResult, interval_ns: int) -> tuple[int, ...]:
    instants = [f.ts_ns for f in result.fills] + [m.ts_ns for m in result.marks]
    meta = result.meta
    first = meta.first_ns
    if first is not None and meta.from_ns is not None and meta.from_ns > first:
        # The data before ``from`` only built the books: no strategy traded
        # there, and intervals of it would dilute the ratios with zeros.
        first = meta.from_ns if meta.last_ns is None else min(meta.from_ns, meta.last_ns)
    instants += [t for t in (first, meta.last_ns) if t is not None]
    if not instants:
        return ()
    start, end = min(instants), max(instants)
    steps = -(-(end - start) // interval_ns)
    return tuple(start + k * interval_ns for k in range(steps + 1))


def drawdown_of(times: Sequence[int], equity: Sequence[Fraction]) -> Drawdown:
    """The drawdown of ``equity`` sampled at ``times`` (ns); see :class:`Drawdown`."""
    series: list[Fraction] = []
    peak = Fraction(0)
    peak_ns: int | None = None
    worst = Fraction(0)
    worst_peak: int | None = None
    worst_trough: int | None = None
    for ts, value in zip(times, equity, strict=True):
        if peak_ns is None or value > peak:
            peak, peak_ns = value, ts
        down = peak - value
        series.append(down)
        if down > worst:
            worst, worst_peak, worst_trough = down, peak_ns, ts
    recovered: int | None = None
    if worst_peak is not None and worst_trough is not None:
        level = equity[list(times).index(worst_peak)]
        for ts, value in zip(times, equity, strict=True):
            if ts > worst_trough and value >= level:
                recovered = ts
                break
    duration = 0 if worst_peak is None or worst_trough is None else worst_trough - worst_peak
    return Drawdown(tuple(series), worst, worst_peak, worst_trough, duration, recovered)


def ratios_of(equity: Sequence[Fraction], interval_ns: int) -> Ratios:
    """Sharpe and Sortino of the differences of ``equity`` sampled every ``interval_ns``.

    Raises ``ValueError`` for a non-positive interval.
    """
    if interval_ns <= 0:
        raise ValueError(f"interval_ns must be positive, got {interval_ns}")
    periods = NS_PER_YEAR / interval_ns
    returns = [b - a for a, b in itertools.pairwise(equity)]
    n = len(returns)
    if n == 0:
        return Ratios(interval_ns, periods, 0, None, None, None, None, None, None, None)
    mean = sum(returns, Fraction(0)) / n
    stdev: float | None = None
    if n >= 2:
        variance = sum(((r - mean) ** 2 for r in returns), Fraction(0)) / (n - 1)
        stdev = math.sqrt(variance)
    downside_sq = sum((r * r for r in returns if r < 0), Fraction(0)) / n
    downside = math.sqrt(downside_sq)
    sharpe = float(mean) / stdev if n >= 2 and stdev else None
    sortino = float(mean) / downside if n >= 2 and downside else None
    root = math.sqrt(periods)
    return Ratios(
        interval_ns=interval_ns,
        periods_per_year=periods,
        intervals=n,
        mean=mean,
        stdev=stdev,
        downside=downside,
        sharpe=sharpe,
        sortino=sortino,
        sharpe_annualised=None if sharpe is None else sharpe * root,
        sortino_annualised=None if sortino is None else sortino * root,
    )


def _sum_series(series: Iterable[Sequence[Fraction]], length: int) -> tuple[Fraction, ...]:
    totals = [Fraction(0)] * length
    for values in series:
        for index, value in enumerate(values):
            totals[index] += value
    return tuple(totals)


def _check_positions(
    positions: Mapping[tuple[str, str], Position], expected: Mapping[tuple[str, str], int]
) -> None:
    for key in sorted(set(positions) | set(expected)):
        have = positions[key].quantity if key in positions else 0
        want = expected.get(key, 0)
        if have != want:
            raise ValueError(
                f"the fills give {key[0]} a position of {have} lots in {key[1]}, "
                f"but end_positions says {want}"
            )


def analyze(
    result: BacktestResult,
    *,
    interval_ns: int | None = None,
    horizons_ns: Sequence[int] = DEFAULT_HORIZONS_NS,
    currencies: Mapping[str, str] | None = None,
) -> Analytics:
    """Every figure of ``result`` (see the module doc for the definitions).

    ``interval_ns`` is the equity grid's and the ratios' sampling interval
    (default: the marks' ``meta.sample_interval_ns``); ``horizons_ns`` the
    markout horizons (ns, >= 0); ``currencies`` overrides
    :func:`quote_currency` per symbol. ``O(G * K + F log M)`` for ``G``
    grid points, ``K`` (strategy, symbol) pairs, ``F`` fills and ``M`` marks.

    Raises ``ValueError`` when a record names a symbol without an
    instrument, when the fills do not add up to ``result.end_positions``,
    or for a non-positive interval or a negative horizon.
    """
    interval = result.meta.sample_interval_ns if interval_ns is None else interval_ns
    if interval <= 0:
        raise ValueError(f"interval_ns must be positive, got {interval}")
    if any(h < 0 for h in horizons_ns):
        raise ValueError(f"markout horizons must be >= 0 ns, got {list(horizons_ns)}")
    instruments = result.instruments
    named = {f.symbol for f in result.fills} | {o.symbol for o in result.orders}
    for symbol in sorted(named | {m.symbol for m in result.marks}):
        if symbol not in instruments:
            raise ValueError(f"symbol {symbol!r} of a record has no instrument")
    symbol_currency = {
        symbol: (currencies or {}).get(symbol) or quote_currency(symbol)
        for symbol in sorted(instruments)
    }
    units = {symbol: _unit(instrument) for symbol, instrument in instruments.items()}

    fills = sorted(result.fills, key=lambda f: f.ts_ns)
    marks_by_symbol: dict[str, list[MarkSample]] = {}
    for mark in sorted(result.marks, key=lambda m: m.ts_ns):
        marks_by_symbol.setdefault(mark.symbol, []).append(mark)
    mids = {symbol: _Mids(marks) for symbol, marks in marks_by_symbol.items()}
    times = _grid(result, interval)

    keys = sorted({(f.strategy, f.symbol) for f in fills})
    positions = {key: Position(key[1]) for key in keys}
    last_price: dict[str, int] = {}
    gross: dict[tuple[str, str], int] = dict.fromkeys(keys, 0)
    turnover: dict[tuple[str, str], int] = dict.fromkeys(keys, 0)
    fill_count: dict[tuple[str, str], int] = dict.fromkeys(keys, 0)
    steps: dict[tuple[str, str], list[tuple[int, int]]] = {k: [] for k in keys}
    twice: dict[tuple[str, str], list[int]] = {key: [] for key in keys}
    unmarked = 0
    next_fill = 0
    for t in times:
        while next_fill < len(fills) and fills[next_fill].ts_ns <= t:
            fill = fills[next_fill]
            key = (fill.strategy, fill.symbol)
            position = positions[key]
            realized = position.fill(fill.side, fill.price, fill.quantity)
            assert type(realized) is int
            gross[key] += realized
            position.charge(fill.fee)
            turnover[key] += fill.price * fill.quantity
            fill_count[key] += 1
            last_price[fill.symbol] = fill.price
            steps[key].append((fill.ts_ns, position.quantity))
            next_fill += 1
        for key in keys:
            symbol = key[1]
            symbol_mids = mids.get(symbol)
            mid2 = symbol_mids.at(t) if symbol_mids is not None else None
            value, marked = _equity2(positions[key], mid2, last_price.get(symbol, 0))
            unmarked += not marked
            twice[key].append(value)
    if next_fill != len(fills):  # pragma: no cover - the grid ends at or after the last fill
        raise AssertionError("fills past the equity grid")
    _check_positions(positions, result.end_positions)

    equity_by_key = {
        key: tuple(Fraction(v, 2) * units[key[1]] for v in values) for key, values in twice.items()
    }
    rows: list[PnLRow] = []
    end = times[-1] if times else 0
    for key in keys:
        strategy, symbol = key
        position = positions[key]
        symbol_mids = mids.get(symbol)
        mid2 = symbol_mids.at(end) if symbol_mids is not None else None
        value2, _ = _equity2(position, mid2, last_price.get(symbol, 0))
        unit = units[symbol]
        realized = Fraction(position.realized) * unit
        total = Fraction(value2, 2) * unit
        rows.append(
            PnLRow(
                strategy=strategy,
                symbol=symbol,
                currency=symbol_currency[symbol],
                position=position.quantity,
                realized_gross=gross[key] * unit,
                fees=position.fees * unit,
                realized=realized,
                unrealized=total - realized,
                total=total,
                turnover=turnover[key] * unit,
                fills=fill_count[key],
            )
        )

    def aggregate(
        strategy: str | None, symbol: str | None, currency: str, parts: list[PnLRow]
    ) -> PnLRow:
        position = sum(p.position or 0 for p in parts) if symbol is not None else None
        zero = Fraction(0)
        return PnLRow(
            strategy=strategy,
            symbol=symbol,
            currency=currency,
            position=position,
            realized_gross=sum((p.realized_gross for p in parts), zero),
            fees=sum((p.fees for p in parts), zero),
            realized=sum((p.realized for p in parts), zero),
            unrealized=sum((p.unrealized for p in parts), zero),
            total=sum((p.total for p in parts), zero),
            turnover=sum((p.turnover for p in parts), zero),
            fills=sum(p.fills for p in parts),
        )

    traded_symbols = sorted({symbol for _, symbol in keys})
    strategies = sorted({strategy for strategy, _ in keys})
    all_currencies = sorted(set(symbol_currency.values()))
    symbol_rows = [
        aggregate(None, s, symbol_currency[s], [r for r in rows if r.symbol == s])
        for s in traded_symbols
    ]
    strategy_rows = [
        aggregate(st, None, c, parts)
        for st in strategies
        for c in all_currencies
        if (parts := [r for r in rows if r.strategy == st and r.currency == c])
    ]
    total_rows = {
        c: aggregate(None, None, c, [r for r in rows if r.currency == c]) for c in all_currencies
    }

    length = len(times)
    equity_by_symbol = {
        s: _sum_series((v for k, v in equity_by_key.items() if k[1] == s), length)
        for s in traded_symbols
    }
    equity_by_strategy = {
        (row.strategy, row.currency): _sum_series(
            (
                v
                for k, v in equity_by_key.items()
                if k[0] == row.strategy and symbol_currency[k[1]] == row.currency
            ),
            length,
        )
        for row in strategy_rows
        if row.strategy is not None
    }
    summaries: dict[str, CurrencySummary] = {}
    for currency in all_currencies:
        equity = _sum_series(
            (v for k, v in equity_by_key.items() if symbol_currency[k[1]] == currency), length
        )
        summaries[currency] = CurrencySummary(
            currency=currency,
            equity=equity,
            drawdown=drawdown_of(times, equity),
            ratios=ratios_of(equity, interval),
            pnl=total_rows[currency],
        )

    start = times[0] if times else 0
    position_steps = {key: ((start, 0), *steps[key]) for key in keys}
    symbol_steps: dict[str, tuple[tuple[int, int], ...]] = {}
    for symbol in traded_symbols:
        net = 0
        series = [(start, 0)]
        for fill in fills:
            if fill.symbol == symbol:
                net += fill.quantity if fill.side is Side.BUY else -fill.quantity
                series.append((fill.ts_ns, net))
        symbol_steps[symbol] = tuple(series)

    last_data = max(
        [t for t in (result.meta.last_ns,) if t is not None] + [m.ts_ns for m in result.marks],
        default=None,
    )
    return Analytics(
        interval_ns=interval,
        times=times,
        currencies=summaries,
        pnl=(*rows, *symbol_rows, *strategy_rows, *total_rows.values()),
        equity_by_key=equity_by_key,
        equity_by_symbol=equity_by_symbol,
        equity_by_strategy=equity_by_strategy,
        positions=position_steps,
        symbol_positions=symbol_steps,
        fill_ratios=_fill_ratios(result),
        markouts=_markouts(fills, mids, units, symbol_currency, tuple(horizons_ns), last_data),
        horizons_ns=tuple(horizons_ns),
        symbol_currency=symbol_currency,
        unmarked=unmarked,
        fills=len(fills),
        orders=len(result.orders),
    )


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _fill_ratios(result: BacktestResult) -> tuple[FillRatio, ...]:
    groups: dict[tuple[str | None, str], list[int]] = {}
    for order in result.orders:
        for key in ((order.strategy, order.symbol), (None, order.symbol)):
            counts = groups.setdefault(key, [0, 0, 0, 0, 0, 0])
            counts[0] += 1
            counts[1] += order.arrived_ns is None
            counts[2] += order.filled >= order.quantity > 0
            counts[3] += order.filled > 0
            counts[4] += order.quantity
            counts[5] += order.filled
    ordered = sorted(
        groups.items(), key=lambda item: (item[0][0] is None, item[0][0] or "", item[0][1])
    )
    return tuple(
        FillRatio(
            strategy=strategy,
            symbol=symbol,
            orders=c[0],
            orders_refused=c[1],
            orders_filled=c[2],
            orders_with_fills=c[3],
            lots_ordered=c[4],
            lots_filled=c[5],
            lots_ratio=_ratio(c[5], c[4]),
            orders_ratio=_ratio(c[3], c[0]),
        )
        for (strategy, symbol), c in ordered
    )


def _markouts(
    fills: Sequence[FillRecord],
    mids: Mapping[str, _Mids],
    units: Mapping[str, Fraction],
    symbol_currency: Mapping[str, str],
    horizons: tuple[int, ...],
    last_data: int | None,
) -> tuple[Markout, ...]:
    # key -> [fills measured, beyond, lots, sum of twice-ticks times lots]
    acc: dict[tuple[str | None, str, str, int], list[int]] = {}
    for fill in fills:
        symbol_mids = mids.get(fill.symbol)
        sign = 1 if fill.side is Side.BUY else -1
        for horizon in horizons:
            at = fill.ts_ns + horizon
            mid2 = None
            if symbol_mids is not None and (last_data is None or at <= last_data):
                mid2 = symbol_mids.at(at)
            for strategy in (fill.strategy, None):
                for side in (fill.side.value, "all"):
                    counts = acc.setdefault((strategy, fill.symbol, side, horizon), [0, 0, 0, 0])
                    if mid2 is None:
                        counts[1] += 1
                        continue
                    counts[0] += 1
                    counts[2] += fill.quantity
                    counts[3] += sign * (mid2 - 2 * fill.price) * fill.quantity
    out: list[Markout] = []
    for (strategy, symbol, side, horizon), c in sorted(
        acc.items(), key=lambda item: (item[0][0] is None, item[0][0] or "", *item[0][1:])
    ):
        out.append(
            Markout(
                strategy=strategy,
                symbol=symbol,
                side=side,
                horizon_ns=horizon,
                currency=symbol_currency[symbol],
                fills=c[0],
                beyond=c[1],
                lots=c[2],
                mean_ticks=Fraction(c[3], 2 * c[2]) if c[2] else None,
                money=Fraction(c[3], 2) * units[symbol],
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class LatencyEffect:
    """One (strategy, symbol)'s figures with the run's latency and with none.

    From the runner's ``latency_effect`` (the same run again at zero
    latency). Money in ``currency``, exact; ``pnl_net`` is cash flow less
    fees plus the end position at the last mid (None when the position is
    open and the symbol never had a two-sided mark): the same equity the
    analytics compute, FIFO or not.
    """

    strategy: str
    symbol: str
    currency: str
    fills: int
    fills_zero_latency: int
    filled_lots: int
    filled_lots_zero_latency: int
    fees: Fraction
    fees_zero_latency: Fraction
    position: int
    position_zero_latency: int
    pnl_net: Fraction | None
    pnl_net_zero_latency: Fraction | None


def _effect_pnl(
    row: Mapping[str, int], suffix: str, mid2: int | None, unit: Fraction
) -> Fraction | None:
    """Cash less fees plus the position at the mid (``mid2`` is twice the mid), in money."""
    position = row.get("position" + suffix, 0)
    if position and mid2 is None:
        return None
    cash2 = 2 * (row.get("cash" + suffix, 0) - row.get("fees" + suffix, 0))
    return Fraction(cash2 + position * (mid2 or 0), 2) * unit


def latency_effects(
    result: BacktestResult, currencies: Mapping[str, str] | None = None
) -> tuple[LatencyEffect, ...]:
    """The difference latency made, per (strategy, symbol); empty for a run without latency.

    Reads ``result.latency_effect`` (``{"<strategy> <symbol>": {"fills":
    ..., "fills_zero_latency": ..., ...}}``: counts, lots, and money units
    for ``fees`` and ``cash``), absent on a result that has none. Raises
    ``ValueError`` for a key whose symbol has no instrument.
    """
    effect: Mapping[str, Mapping[str, int]] = getattr(result, "latency_effect", None) or {}
    last_mid2: dict[str, int] = {}
    for mark in sorted(result.marks, key=lambda m: m.ts_ns):
        if mark.bid is not None and mark.ask is not None:
            last_mid2[mark.symbol] = mark.bid + mark.ask
    out: list[LatencyEffect] = []
    for key in sorted(effect):
        strategy, _, symbol = key.rpartition(" ")
        instrument = result.instruments.get(symbol)
        if instrument is None:
            raise ValueError(f"latency_effect {key!r}: symbol {symbol!r} has no instrument")
        unit = _unit(instrument)
        row = effect[key]
        mid2 = last_mid2.get(symbol)

        out.append(
            LatencyEffect(
                strategy=strategy,
                symbol=symbol,
                currency=(currencies or {}).get(symbol) or quote_currency(symbol),
                fills=row.get("fills", 0),
                fills_zero_latency=row.get("fills_zero_latency", 0),
                filled_lots=row.get("filled_lots", 0),
                filled_lots_zero_latency=row.get("filled_lots_zero_latency", 0),
                fees=row.get("fees", 0) * unit,
                fees_zero_latency=row.get("fees_zero_latency", 0) * unit,
                position=row.get("position", 0),
                position_zero_latency=row.get("position_zero_latency", 0),
                pnl_net=_effect_pnl(row, "", mid2, unit),
                pnl_net_zero_latency=_effect_pnl(row, "_zero_latency", mid2, unit),
            )
        )
    return tuple(out)
