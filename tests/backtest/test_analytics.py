"""Backtest analytics against hand-computed figures, and their invariants."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_engine.backtest.analytics import (
    NS_PER_YEAR,
    analyze,
    decimal_text,
    quote_currency,
)
from trading_engine.backtest.result import (
    BacktestMeta,
    BacktestResult,
    FillRecord,
    MarkSample,
    OrderRecord,
)
from trading_engine.core.instruments import Instrument
from trading_engine.core.protocol import Side

S = 10**9  # one second in ns
BTC = "BTC-USD"
#: One money unit of BTC-USD: a tick (0.01) times a lot (0.001) = 0.00001 USD.
UNIT = Fraction(1, 100_000)


def _meta(first: int | None = 0, last: int | None = 3 * S, interval: int = S) -> BacktestMeta:
    return BacktestMeta(
        data=("x.csv",), from_ns=None, to_ns=None, first_ns=first, last_ns=last, events=0,
        frames=0, wall_s=0.0, sample_interval_ns=interval, fill_model="queue:front",
        feed_latency="constant:0", order_latency="constant:0",
    )  # fmt: skip


def _hand_result(end_position: int = 6) -> BacktestResult:
    """Two fills and four marks, one a second (every figure below is worked out by hand).

    t=0: mid 10001; mm buys 10 lots at 10002, taker, fee 4 units.
    t=1s: mid 10005. t=2s: mid 9999; mm sells 4 at 10000, maker, rebate 1.
    t=3s: mid 10011.
    """
    fills = [
        FillRecord(0, "mm", BTC, "b1", Side.BUY, 10_002, 10, "taker", 4),
        FillRecord(2 * S, "mm", BTC, "s1", Side.SELL, 10_000, 4, "maker", -1),
    ]
    marks = [
        MarkSample(0, BTC, 10_000, 10_002),
        MarkSample(S, BTC, 10_004, 10_006),
        MarkSample(2 * S, BTC, 9_998, 10_000),
        MarkSample(3 * S, BTC, 10_010, 10_012),
    ]
    orders = [
        OrderRecord(0, 0, "mm", BTC, "b1", Side.BUY, "limit", "ioc", 10_002, 10, 10, "filled"),
        OrderRecord(S, S, "mm", BTC, "s1", Side.SELL, "limit", "gtc", 10_000, 10, 4, "canceled"),
        OrderRecord(S, None, "mm", BTC, "r1", Side.BUY, "limit", "gtc", 9_000, 5, 0, "rejected",
                    "max_position"),
    ]  # fmt: skip
    return BacktestResult(
        _meta(), {BTC: Instrument(BTC, "0.01", "0.001")}, ("mm",), fills, orders, marks,
        {("mm", BTC): end_position},
    )  # fmt: skip


def test_equity_drawdown_and_pnl_by_hand() -> None:
    a = analyze(_hand_result())
    assert a.times == (0, S, 2 * S, 3 * S)
    # Equity in units: t0 -4 fee + (10001*10 - 100020) = -14; t1 -4 + 30 = 26;
    # t2 realized -4 - 8 + 1 = -11, open 6 lots cost 60012 at 9999: -18 -> -29;
    # t3 -11 + (60066 - 60012) = 43.
    usd = a.currencies["USD"]
    assert usd.equity == tuple(v * UNIT for v in (-14, 26, -29, 43))
    assert a.equity_by_key[("mm", BTC)] == usd.equity
    # Peak 26 at 1 s, trough -29 at 2 s: 55 units; back above 26 at 3 s.
    dd = usd.drawdown
    assert dd.max == 55 * UNIT
    assert (dd.peak_ns, dd.trough_ns, dd.duration_ns, dd.recovered_ns) == (S, 2 * S, S, 3 * S)
    assert dd.series == tuple(v * UNIT for v in (0, 0, 55, 0))
    row = usd.pnl
    assert (row.realized_gross, row.fees, row.realized) == (-8 * UNIT, 3 * UNIT, -11 * UNIT)
    assert (row.unrealized, row.total) == (54 * UNIT, 43 * UNIT)
    assert row.turnover == Fraction("1.4002")  # (100020 + 40000) units
    assert decimal_text(row.total) == "0.00043"
    assert a.positions[("mm", BTC)] == ((0, 0), (0, 10), (2 * S, 6))


def test_sharpe_and_sortino_by_hand() -> None:
    r = analyze(_hand_result()).currencies["USD"].ratios
    # Returns 40, -55, 72 units: mean 19, sample variance (21^2 + 74^2 + 53^2) / 2 = 4363,
    # downside sqrt(55^2 / 3).
    assert r.intervals == 3
    assert r.mean == 19 * UNIT
    assert r.sharpe == pytest.approx(19 / math.sqrt(4363))
    assert r.sortino == pytest.approx(19 / math.sqrt(55**2 / 3))
    assert r.periods_per_year == 365 * 86_400
    assert r.sharpe_annualised == pytest.approx(19 / math.sqrt(4363) * math.sqrt(31_536_000))
    assert r.interval_ns == S


def test_the_grid_starts_when_the_strategies_start_trading() -> None:
    # With --from, the data before it only builds the books: an equity grid
    # from the data's first instant adds intervals of zero return in which no
    # strategy could trade, and dilutes Sharpe and Sortino.
    hand = _hand_result()
    early = dataclasses.replace(hand.meta, first_ns=-100 * S, from_ns=0)
    a = analyze(dataclasses.replace(hand, meta=early))
    assert a.times == (0, S, 2 * S, 3 * S)
    r = a.currencies["USD"].ratios
    assert r.intervals == 3
    assert r.sharpe == pytest.approx(19 / math.sqrt(4363))
    # A --from before the data changes nothing: the grid starts with the data.
    before = dataclasses.replace(hand.meta, from_ns=-100 * S)
    assert analyze(dataclasses.replace(hand, meta=before)).times == (0, S, 2 * S, 3 * S)


def test_a_coarser_interval_is_stated_and_used() -> None:
    a = analyze(_hand_result(), interval_ns=2 * S)
    assert a.times == (0, 2 * S, 4 * S)
    assert a.currencies["USD"].ratios.periods_per_year == NS_PER_YEAR / (2 * S)
    assert a.currencies["USD"].equity == tuple(v * UNIT for v in (-14, -29, 43))


def test_markouts_by_hand() -> None:
    a = analyze(_hand_result())
    got = {(m.side, m.horizon_ns): m for m in a.markouts if m.strategy == "mm"}
    # Buy 10 at 10002: mid 10001 at once (-1 tick), 10005 a second later (+3).
    assert got[("buy", 0)].mean_ticks == -1
    assert got[("buy", S)].mean_ticks == 3
    # Sell 4 at 10000: mid 9999 at once (+1), 10011 a second later (-11).
    assert got[("sell", 0)].mean_ticks == 1
    assert got[("sell", S)].mean_ticks == -11
    both = got[("all", S)]
    assert (both.lots, both.money) == (14, -14 * UNIT)
    assert both.mean_ticks == -1
    # 100 ms: the latest marks are still those of the fills.
    assert got[("all", 100_000_000)].money == (-10 + 4) * UNIT
    # 10 s and 60 s are past the data's end (3 s): counted, not measured.
    assert (got[("all", 10 * S)].fills, got[("all", 10 * S)].beyond) == (0, 2)
    assert got[("all", 60 * S)].mean_ticks is None


def test_fill_ratios_by_hand() -> None:
    ratio = next(r for r in analyze(_hand_result()).fill_ratios if r.strategy == "mm")
    assert (ratio.orders, ratio.orders_refused, ratio.orders_filled) == (3, 1, 1)
    assert (ratio.orders_with_fills, ratio.lots_ordered, ratio.lots_filled) == (2, 25, 14)
    assert ratio.lots_ratio == pytest.approx(14 / 25)
    assert ratio.orders_ratio == pytest.approx(2 / 3)


def test_positions_that_do_not_add_up_are_refused() -> None:
    with pytest.raises(ValueError, match="position of 6 lots in BTC-USD, but end_positions says 5"):
        analyze(_hand_result(end_position=5))


def test_currencies_are_never_added_together() -> None:
    result = _hand_result()
    eth = Instrument("ETH-BTC", "0.00001", "0.001")
    fills = [*result.fills, FillRecord(S, "mm", "ETH-BTC", "e1", Side.BUY, 5_000, 2, "taker", 1)]
    marks = [*result.marks, MarkSample(S, "ETH-BTC", 5_000, 5_002)]
    mixed = BacktestResult(
        result.meta, {**result.instruments, "ETH-BTC": eth}, ("mm",), fills, result.orders,
        marks, {("mm", BTC): 6, ("mm", "ETH-BTC"): 2},
    )  # fmt: skip
    a = analyze(mixed)
    assert sorted(a.currencies) == ["BTC", "USD"]
    assert a.currencies["USD"].equity == tuple(v * UNIT for v in (-14, 26, -29, 43))
    # 2 lots bought at 5000, mid 5001, fee 1: 2 - 1 = 1 unit of 1e-8 BTC.
    assert a.currencies["BTC"].pnl.total == Fraction(1, 10**8)
    assert {(r.strategy, r.currency) for r in a.pnl if r.symbol is None} == {
        ("mm", "BTC"), ("mm", "USD"), (None, "BTC"), (None, "USD"),
    }  # fmt: skip


def test_no_fills_and_no_marks() -> None:
    empty = BacktestResult(_meta(None, None), {BTC: Instrument(BTC, "0.01", "0.001")}, ("mm",),
                           [], [], [], {})  # fmt: skip
    a = analyze(empty)
    assert a.times == ()
    assert a.currencies["USD"].ratios.sharpe is None
    assert a.currencies["USD"].pnl.total == 0


def test_an_unmarked_position_is_marked_at_its_last_fill() -> None:
    result = _hand_result()
    one_sided = [MarkSample(0, BTC, None, 10_002), *result.marks[1:]]
    a = analyze(
        BacktestResult(
            result.meta, result.instruments, result.strategies, result.fills, result.orders,
            one_sided, result.end_positions,
        )
    )  # fmt: skip
    assert a.unmarked == 1
    assert a.currencies["USD"].equity[0] == -4 * UNIT  # at 10002: only the fee


@pytest.mark.parametrize(
    ("value", "text"),
    [(Fraction(-7, 100_000), "-0.00007"), (Fraction(5), "5"), (Fraction(3, 2), "1.5"),
     (Fraction(0), "0"), (Fraction(1, 3), "0.333333333333333333")],
)  # fmt: skip
def test_decimal_text(value: Fraction, text: str) -> None:
    assert decimal_text(value) == text


def test_quote_currency() -> None:
    assert [quote_currency(s) for s in ("BTC-USD", "ETHUSDT", "SOL/EUR")] == ["USD", "USDT", "EUR"]


_fill = st.tuples(
    st.integers(0, 50),  # time in 100 ms steps
    st.sampled_from(["a", "b"]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(1, 200),  # price in ticks
    st.integers(1, 30),  # lots
    st.integers(-3, 10),  # fee in units
)
_mark = st.tuples(st.integers(0, 60), st.integers(1, 200), st.integers(0, 4))


@settings(max_examples=150, deadline=None)
@given(st.lists(_fill, max_size=25), st.lists(_mark, min_size=1, max_size=30))
def test_last_equity_is_cash_plus_marked_position_net_of_fees(
    raw_fills: list[tuple[int, str, Side, int, int, int]], raw_marks: list[tuple[int, int, int]]
) -> None:
    step = 100_000_000
    fills = [
        FillRecord(t * step, s, BTC, f"c{i}", side, p, q, "taker", fee)
        for i, (t, s, side, p, q, fee) in enumerate(sorted(raw_fills, key=lambda f: f[0]))
    ]
    marks = sorted(
        (MarkSample(t * step, BTC, bid, bid + spread) for t, bid, spread in raw_marks),
        key=lambda m: m.ts_ns,
    )
    ends: dict[tuple[str, str], int] = {}
    for f in fills:
        ends[(f.strategy, BTC)] = ends.get((f.strategy, BTC), 0) + (
            f.quantity if f.side is Side.BUY else -f.quantity
        )
    instruments = {BTC: Instrument(BTC, "0.01", "0.001")}
    result = BacktestResult(
        _meta(0, None, interval=step * 3), instruments, ("a", "b"), fills, [], marks, ends
    )
    a = analyze(result)
    usd = a.currencies["USD"]
    # Independent of FIFO: cash flows, minus fees, plus the position at the last mid.
    last_mid = Fraction(marks[-1].bid + marks[-1].ask, 2)  # type: ignore[operator]
    cash = sum(
        (-f.price * f.quantity if f.side is Side.BUY else f.price * f.quantity) - f.fee
        for f in fills
    )
    position = sum(ends.values())
    expected = (cash + position * last_mid) * UNIT
    if fills:
        assert usd.equity[-1] == expected
    assert usd.pnl.total == expected
    assert usd.pnl.total == usd.pnl.realized + usd.pnl.unrealized
    assert usd.pnl.realized == usd.pnl.realized_gross - usd.pnl.fees
    assert usd.pnl.fees == sum(f.fee for f in fills) * UNIT
    for row in a.pnl:
        assert row.total == row.realized + row.unrealized
    assert max(usd.drawdown.series, default=Fraction(0)) == usd.drawdown.max
    assert all(d >= 0 for d in usd.drawdown.series)


def test_a_symbol_without_an_instrument_is_refused() -> None:
    result = _hand_result()
    marks = [*result.marks, MarkSample(S, "ETH-USD", 1, 2)]
    with pytest.raises(ValueError, match="'ETH-USD' of a record has no instrument"):
        analyze(
            BacktestResult(
                result.meta,
                result.instruments,
                result.strategies,
                result.fills,
                result.orders,
                marks,
                result.end_positions,
            )
        )
