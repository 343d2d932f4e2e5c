"""What a backtest produced: the record the report and sweeps read.

A :class:`BacktestResult` is plain data, built by the backtest runner and
read by the analytics (:mod:`trading_engine.backtest.analytics`), the
report and the sweep table. It holds no engine object: it pickles (a
sweep sends it between processes) and it round-trips through JSON
(:meth:`BacktestResult.to_json` / :meth:`BacktestResult.from_json`)
exactly.

Units, everywhere in this module:

- times are integer nanoseconds on the data's clock (since the Unix
  epoch: the time each message was received where it was recorded; an
  engine capture's own receive clock), never the machine's;
- prices are integer ticks and quantities integer lots of the symbol's
  :class:`~trading_engine.core.instruments.Instrument`;
- money (fees, PnL) is an integer count of the symbol's money unit,
  ``tick_size * lot_size`` of the quote currency (the unit positions
  count in, :mod:`trading_engine.core.fees`); in JSON it is a decimal
  string of the quote currency, exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from ..core.instruments import Instrument
from ..core.protocol import Side

__all__ = [
    "Y2000_NS",
    "BacktestMeta",
    "BacktestResult",
    "FillRecord",
    "MarkSample",
    "OrderRecord",
    "meta_dict",
    "rfc3339",
    "strategy_error_line",
]

Liquidity = Literal["maker", "taker"]


@dataclass(frozen=True, slots=True)
class FillRecord:
    """One fill of one of the strategies' orders at the simulated venue.

    ``ts_ns`` is when the venue matched it (data clock, with the order
    latency applied); ``fee`` is in the symbol's money unit, positive when
    paid and negative for a rebate, rounded up (:mod:`~trading_engine.core.fees`).
    """

    ts_ns: int
    strategy: str
    symbol: str
    client_order_id: str
    side: Side
    price: int
    quantity: int
    liquidity: Liquidity
    fee: int


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order a strategy decided, from decision to its final state.

    ``decided_ns`` is the data time the strategy sent it; ``arrived_ns``
    when it reached the simulated venue (``decided_ns`` plus the order
    latency), None when it never left (refused by risk or the gateway).
    ``price`` is None for a market order. ``status`` is the engine's final
    :class:`~trading_engine.core.orders.OrderStatus` value (``filled``,
    ``canceled``, ``rejected``, ``expired``, or ``new`` /
    ``partially_filled`` for an order still resting when the data ended);
    ``reason`` the refusal or rejection reason, if any.
    """

    decided_ns: int
    arrived_ns: int | None
    strategy: str
    symbol: str
    client_order_id: str
    side: Side
    order_type: str
    time_in_force: str
    price: int | None
    quantity: int
    filled: int
    status: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class MarkSample:
    """The symbol's best bid and ask (ticks) at ``ts_ns``: None for an empty side.

    Sampled every ``BacktestMeta.sample_interval_ns`` of data time, and
    at every fill (so a fill's own mark and its later marks exist).
    """

    ts_ns: int
    symbol: str
    bid: int | None
    ask: int | None


@dataclass(frozen=True, slots=True)
class BacktestMeta:
    """How the backtest was run: inputs, models and counts.

    ``events`` counts book events applied (one price level changed, or one
    trade); ``frames`` the messages or rows they came in. ``wall_s`` is the
    machine time the run took (the only field that differs between two
    runs of the same inputs). ``skipped`` counts input left out by reason
    (``out_of_order``, ``sequence_gap``, ``unknown_symbol``, ...): every
    skip is counted here, none is silent. ``denied`` counts each strategy's
    order requests refused before they became orders, by reason
    (``max_quantity``, ``venue_rule``, ...). ``parameters`` holds the
    strategy parameters a sweep set for this run (empty otherwise).
    """

    data: tuple[str, ...]
    from_ns: int | None
    to_ns: int | None
    first_ns: int | None
    last_ns: int | None
    events: int
    frames: int
    wall_s: float
    sample_interval_ns: int
    fill_model: str
    feed_latency: str
    order_latency: str
    skipped: Mapping[str, int] = field(default_factory=dict)
    parameters: Mapping[str, str] = field(default_factory=dict)
    #: Order requests refused before they became orders (risk, the venue's
    #: rules, lateness), by strategy then reason: they are in no order list.
    denied: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: The part of ``skipped`` each data file left out, by file (as named
    #: in ``data``) then reason; files that left nothing out are absent.
    skipped_by_file: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: Strategies whose hooks raised: ``{"errors": count, "last": "Type:
    #: message", "disabled": why, or None while it still ran at the end}``.
    strategy_errors: Mapping[str, Mapping[str, int | str | None]] = field(default_factory=dict)

    def data_warnings(self) -> list[str]:
        """What makes this run's figures suspect whatever the strategies did, a line each.

        ``--from``/``--to`` outside the data (a mistyped date gives an
        empty result that reads like a strategy that never traded), and
        data whose times read as before 2000 (milliseconds where the
        format has microseconds or nanoseconds: the run is otherwise
        valid). Empty when neither applies.
        """
        out = []
        if self.last_ns is None and self.to_ns is not None:
            out.append(
                "no data in the range: the data starts after --to; the strategies saw nothing"
            )
        elif self.last_ns is not None and self.from_ns is not None and self.from_ns > self.last_ns:
            if self.to_ns is None:
                where = (
                    f"the data ends at {rfc3339(self.last_ns)} ({self.last_ns} ns), before --from"
                )
            else:
                # The read stops at --to: the data may go on past it.
                where = (
                    f"the last event up to --to is at {rfc3339(self.last_ns)} "
                    f"({self.last_ns} ns), before --from"
                )
            out.append(f"no data in the range: {where}; the strategies saw nothing")
        if self.first_ns is not None and self.first_ns < Y2000_NS:
            out.append(
                f"the data starts at {rfc3339(self.first_ns)}, before 2000: are its times in the "
                "unit its format has (Tardis CSV: us since the epoch; captures: ns)?"
            )
        return out

    def notes(self) -> list[str]:
        """:meth:`data_warnings`, then the input left out and the strategies' hook errors.

        One line each, for a table of many runs (a sweep's): what a
        single run's summary prints about its input and its strategies.
        """
        out = self.data_warnings()
        if self.skipped:
            out.append("left out: " + ", ".join(f"{r} {n}" for r, n in self.skipped.items()))
        for strategy, row in self.strategy_errors.items():
            out.append(strategy_error_line(strategy, row))
        return out


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Everything a backtest produced, in data-time order within each list.

    ``instruments`` has every symbol that appears in the records; the
    strategies are named as configured (``strategies``). ``end_positions``
    is each (strategy, symbol)'s signed position in lots at the end, as
    the engine's ledger holds it: the analytics must arrive at the same
    figures from ``fills`` (a check, not a second source of truth).

    ``latency_effect``: when the run had latency, the same run's figures
    with none, next to its own, keyed ``"<strategy> <symbol>"``: ``fills``,
    ``filled_lots``, ``fees`` (money units), ``cash`` (ticks * lots: sells
    minus buys, before fees) and ``position`` (lots at the end), each also
    with the suffix ``_zero_latency``. Empty without latency.
    """

    meta: BacktestMeta
    instruments: Mapping[str, Instrument]
    strategies: tuple[str, ...]
    fills: list[FillRecord]
    orders: list[OrderRecord]
    marks: list[MarkSample]
    end_positions: Mapping[tuple[str, str], int]
    latency_effect: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """The result as JSON: money and prices as exact decimal strings.

        Prices and quantities are written both as decimal strings
        (``price``, ``quantity``) and as the integer units the records
        hold (``price_ticks``, ``quantity_lots``) so :meth:`from_json`
        is exact.
        """
        return orjson.dumps(_to_dict(self))

    @classmethod
    def from_json(cls, data: bytes) -> BacktestResult:
        """A result from :meth:`to_json`'s bytes.

        Raises ``ValueError`` naming the field that is missing or wrong.
        """
        try:
            return _from_dict(orjson.loads(data))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a backtest result: {exc}") from exc


def meta_dict(meta: BacktestMeta) -> dict[str, Any]:
    """``meta`` as a JSON-ready dict: times in ns, ``skipped`` and ``parameters`` by key.

    The one rendering of a run's description, for the result's JSON and the
    report's (which adds its own counts to it).
    """
    return {
        "data": list(meta.data),
        "from_ns": meta.from_ns,
        "to_ns": meta.to_ns,
        "first_ns": meta.first_ns,
        "last_ns": meta.last_ns,
        "events": meta.events,
        "frames": meta.frames,
        "wall_s": meta.wall_s,
        "sample_interval_ns": meta.sample_interval_ns,
        "fill_model": meta.fill_model,
        "feed_latency": meta.feed_latency,
        "order_latency": meta.order_latency,
        "skipped": dict(sorted(meta.skipped.items())),
        "parameters": dict(sorted(meta.parameters.items())),
        "denied": {
            name: dict(sorted(reasons.items())) for name, reasons in sorted(meta.denied.items())
        },
        "skipped_by_file": {
            name: dict(sorted(reasons.items())) for name, reasons in meta.skipped_by_file.items()
        },
        "strategy_errors": {name: dict(row) for name, row in sorted(meta.strategy_errors.items())},
    }


def _to_dict(result: BacktestResult) -> dict[str, Any]:
    inst = result.instruments
    meta = result.meta
    return {
        "meta": meta_dict(meta),
        "instruments": {
            symbol: {"tick_size": i.tick_size, "lot_size": i.lot_size} for symbol, i in inst.items()
        },
        "strategies": list(result.strategies),
        "fills": [
            {
                "ts_ns": f.ts_ns,
                "strategy": f.strategy,
                "symbol": f.symbol,
                "client_order_id": f.client_order_id,
                "side": f.side.value,
                "price": inst[f.symbol].format_price(f.price),
                "price_ticks": f.price,
                "quantity": inst[f.symbol].format_size(f.quantity),
                "quantity_lots": f.quantity,
                "liquidity": f.liquidity,
                "fee": inst[f.symbol].format_money(f.fee),
                "fee_units": f.fee,
            }
            for f in result.fills
        ],
        "orders": [
            {
                "decided_ns": o.decided_ns,
                "arrived_ns": o.arrived_ns,
                "strategy": o.strategy,
                "symbol": o.symbol,
                "client_order_id": o.client_order_id,
                "side": o.side.value,
                "order_type": o.order_type,
                "time_in_force": o.time_in_force,
                "price": None if o.price is None else inst[o.symbol].format_price(o.price),
                "price_ticks": o.price,
                "quantity": inst[o.symbol].format_size(o.quantity),
                "quantity_lots": o.quantity,
                "filled_lots": o.filled,
                "status": o.status,
                "reason": o.reason,
            }
            for o in result.orders
        ],
        "marks": [[m.ts_ns, m.symbol, m.bid, m.ask] for m in result.marks],
        "end_positions": [
            {"strategy": strategy, "symbol": symbol, "position_lots": lots}
            for (strategy, symbol), lots in sorted(result.end_positions.items())
        ],
        "latency_effect": {key: dict(row) for key, row in result.latency_effect.items()},
    }


def _from_dict(d: dict[str, Any]) -> BacktestResult:
    m = d["meta"]
    meta = BacktestMeta(
        data=tuple(m["data"]),
        from_ns=m["from_ns"],
        to_ns=m["to_ns"],
        first_ns=m["first_ns"],
        last_ns=m["last_ns"],
        events=m["events"],
        frames=m["frames"],
        wall_s=m["wall_s"],
        sample_interval_ns=m["sample_interval_ns"],
        fill_model=m["fill_model"],
        feed_latency=m["feed_latency"],
        order_latency=m["order_latency"],
        skipped=dict(m["skipped"]),
        parameters=dict(m["parameters"]),
        denied={name: dict(reasons) for name, reasons in m.get("denied", {}).items()},
        skipped_by_file={
            name: dict(reasons) for name, reasons in m.get("skipped_by_file", {}).items()
        },
        strategy_errors={name: dict(row) for name, row in m.get("strategy_errors", {}).items()},
    )
    instruments = {
        symbol: Instrument(symbol, i["tick_size"], i["lot_size"])
        for symbol, i in d["instruments"].items()
    }
    fills = [
        FillRecord(
            ts_ns=f["ts_ns"],
            strategy=f["strategy"],
            symbol=f["symbol"],
            client_order_id=f["client_order_id"],
            side=Side(f["side"]),
            price=f["price_ticks"],
            quantity=f["quantity_lots"],
            liquidity=f["liquidity"],
            fee=f["fee_units"],
        )
        for f in d["fills"]
    ]
    orders = [
        OrderRecord(
            decided_ns=o["decided_ns"],
            arrived_ns=o["arrived_ns"],
            strategy=o["strategy"],
            symbol=o["symbol"],
            client_order_id=o["client_order_id"],
            side=Side(o["side"]),
            order_type=o["order_type"],
            time_in_force=o["time_in_force"],
            price=o["price_ticks"],
            quantity=o["quantity_lots"],
            filled=o["filled_lots"],
            status=o["status"],
            reason=o["reason"],
        )
        for o in d["orders"]
    ]
    marks = [MarkSample(ts_ns=t, symbol=s, bid=b, ask=a) for t, s, b, a in d["marks"]]
    end_positions = {(p["strategy"], p["symbol"]): p["position_lots"] for p in d["end_positions"]}
    return BacktestResult(
        meta=meta,
        instruments=instruments,
        strategies=tuple(d["strategies"]),
        fills=fills,
        orders=orders,
        marks=marks,
        end_positions=end_positions,
        latency_effect={key: dict(row) for key, row in d.get("latency_effect", {}).items()},
    )


#: 2000-01-01T00:00:00Z in ns: recorded venue data before it is a time in the wrong unit.
Y2000_NS = 946_684_800 * 10**9


def rfc3339(ns: int) -> str:
    """``ns`` since the epoch as an RFC 3339 UTC time with its nanoseconds."""
    seconds, rest = divmod(ns, 10**9)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest:09d}Z"


def strategy_error_line(strategy: str, row: Mapping[str, int | str | None]) -> str:
    """One line for a strategy's hook errors (``BacktestMeta.strategy_errors``): the
    exception's text with its line breaks and runs of spaces made single spaces."""
    disabled = f"; disabled: {_one_line(row['disabled'])}" if row["disabled"] else ""
    return f"{strategy}: {row['errors']} hook errors, the last {_one_line(row['last'])}{disabled}"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())
