"""Testing strategies: the engine's own pieces around one strategy, on a fake clock.

:class:`StrategyHarness` builds a real :class:`~trading_engine.engine.engine.Engine`
(the book builder, the dispatcher, pre-trade risk and the execution
ledger, with the configuration a ``[[strategies]]`` entry would give)
around a strategy, with an in-process venue and a :class:`ManualClock`.
Nothing runs in the background and nothing touches the network: each call
returns once the engine has done everything it leads to (the strategy's
hooks, its orders, the venue's answers, the strategy's callbacks).

Two venues:

* ``venue="matching"`` (the default): the simulated venue of ``replay``,
  which fills orders against the books the test sends, with the exchange
  simulator's matching rules (a post-only order that would take is
  rejected, ``post_only_would_take``);
* ``venue="scripted"``: a :class:`ScriptedVenue` that answers nothing by
  itself; the test answers each order: :meth:`ScriptedVenue.accept`,
  :meth:`~ScriptedVenue.fill`, :meth:`~ScriptedVenue.reject`,
  :meth:`~ScriptedVenue.canceled` (the cancels the engine asked for are
  in :attr:`~ScriptedVenue.cancel_requests`). Its answers reach the engine exactly as
  the order gateway's do (order answers and fills of the venue's fills log).

Prices and sizes in the harness are decimal strings (``"100.02"``), as in
the configuration; ``int`` values are ticks and lots. A worked example::

    from trading_engine.testing import StrategyHarness

    def test_buys_when_the_spread_is_tight() -> None:
        h = StrategyHarness(
            "strategies.template:TemplateStrategy",
            params={"quantity": "0.002", "max_spread_ticks": 3},
        )
        h.snapshot(bids=[("100.00", "1")], asks=[("100.02", "1")])
        order = h.expect_order(side="buy", price="100.02", quantity="0.002", tif="IOC")
        assert order.status.value == "filled"
        h.expect_no_order()

The frame builders (:func:`snapshot_frame`, :func:`update_frame`,
:func:`trade_frame`), :func:`make_instrument` and :func:`make_book` build
the same inputs without a harness.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from itertools import count
from typing import Any, Literal

import orjson

from .config import Config, parse_config
from .core.builder import BookBuilder
from .core.clock import ManualClock
from .core.errors import InvalidValue
from .core.fees import fee_to_units
from .core.instruments import Instrument
from .core.orders import Order, OrderStatus, TimeInForce
from .core.positions import Position
from .core.protocol import Side
from .core.reports import FillReport, OrderReport
from .core.strategy import BookView, Strategy
from .engine.engine import Engine
from .sim.venue import simulated_venue

__all__ = [
    "ScriptedVenue",
    "StrategyHarness",
    "make_book",
    "make_instrument",
    "snapshot_frame",
    "trade_frame",
    "update_frame",
]

#: ``(price, size)`` of one book level: decimal strings (or anything the wire takes).
LevelSpec = tuple[str, str] | Sequence[str]

_DEFAULT_INSTRUMENT: dict[str, str] = {
    "symbol": "BTC-USD",
    "tick_size": "0.01",
    "lot_size": "0.001",
}

#: Strategy classes handed in as objects that cannot be imported by name.
_REGISTRY = types.ModuleType("trading_engine._testing_strategies")
sys.modules.setdefault(_REGISTRY.__name__, _REGISTRY)
_registered = count(1)


# -- inputs --------------------------------------------------------------------------


def make_instrument(
    symbol: str = "BTC-USD", tick_size: str = "0.01", lot_size: str = "0.001"
) -> Instrument:
    """An :class:`Instrument` (raises ``ValueError`` for a grid that is not a positive decimal)."""
    return Instrument(symbol, tick_size, lot_size)


def _levels(levels: Iterable[LevelSpec]) -> list[list[str]]:
    return [[str(level[0]), str(level[1])] for level in levels]


def snapshot_frame(
    symbol: str, seq: int, bids: Iterable[LevelSpec], asks: Iterable[LevelSpec]
) -> bytes:
    """A ``snapshot`` frame of the feed protocol: the whole book at ``seq``."""
    return orjson.dumps(
        {"type": "snapshot", "symbol": symbol, "seq": seq, "bids": _levels(bids),
         "asks": _levels(asks)}
    )  # fmt: skip


def update_frame(
    symbol: str, seq: int, bids: Iterable[LevelSpec] = (), asks: Iterable[LevelSpec] = ()
) -> bytes:
    """An ``update`` frame: levels set (size ``"0"`` removes one) at ``seq``."""
    return orjson.dumps(
        {"type": "update", "symbol": symbol, "seq": seq, "bids": _levels(bids),
         "asks": _levels(asks)}
    )  # fmt: skip


def trade_frame(symbol: str, seq: int, price: str, size: str, side: str | Side) -> bytes:
    """A ``trade`` frame: a print of ``size`` at ``price``; ``side`` is the aggressor's."""
    return orjson.dumps(
        {"type": "trade", "symbol": symbol, "seq": seq, "price": str(price), "size": str(size),
         "side": Side(side).value}
    )  # fmt: skip


def make_book(
    bids: Iterable[LevelSpec],
    asks: Iterable[LevelSpec],
    instrument: Instrument | None = None,
) -> BookView:
    """A live :class:`BookView` of one snapshot (for testing a strategy's pure logic).

    Raises ``ValueError`` when the book the snapshot gives is not live
    (crossed, or a level off the instrument's grid).
    """
    inst = instrument if instrument is not None else make_instrument()
    builder = BookBuilder([inst])
    result = builder.handle(snapshot_frame(inst.symbol, 1, bids, asks))
    entry = builder.books[inst.symbol]
    view = BookView(entry)
    if not view.live:
        raise ValueError(f"the snapshot does not give a live book: {result!r}")
    return view


# -- the scripted venue ------------------------------------------------------------------


class ScriptedVenue:
    """An order sink whose answers the test gives, delivered as the gateway delivers them.

    ``submitted`` lists every order sent to it, ``cancel_requests`` every
    order whose cancel was asked for (in order). Each answer method raises
    ``ValueError`` for an answer the venue could not give (a fill beyond the
    order's quantity, an answer for an order it never received).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.submitted: list[Order] = []
        self.cancel_requests: list[Order] = []
        #: Refuse new orders locally (the reason), as a gateway out of request slots does.
        self.refuse_with: str | None = None
        self._fill_ids = count(1)
        self._venue_ids: dict[str, str] = {}
        #: Per order: lots the venue filled and their cost (ticks * lots).
        self._filled: dict[str, list[int]] = {}

    # -- OrderSink ---------------------------------------------------------------------

    def allow(self) -> bool:
        return True

    def submit(self, order: Order) -> str | None:
        if self.refuse_with is not None:
            return self.refuse_with
        self.submitted.append(order)
        self._venue_ids[order.client_order_id] = f"V-{len(self.submitted)}"
        self._filled[order.client_order_id] = [0, 0]
        self._engine.on_written(order)
        return None

    def cancel(self, order: Order) -> None:
        """The engine asks to cancel ``order``: noted; answer it with :meth:`canceled`."""
        self.cancel_requests.append(order)

    def start(self) -> None:
        """Nothing runs in the background."""

    def stop_orders(self) -> None:
        """Nothing is queued."""

    def resume_orders(self) -> None:
        """Nothing was stopped."""

    async def drain(self, within_s: float) -> bool:
        return True

    async def close(self) -> None:
        """Nothing to release."""

    def forget(self, client_order_id: str) -> None:
        """The engine forgot a closed order; the venue keeps its record."""

    def not_ready(self) -> str | None:
        return None

    def breaker_state(self) -> str:
        return "closed"

    # -- answers -----------------------------------------------------------------------

    def _known(self, order: Order) -> list[int]:
        filled = self._filled.get(order.client_order_id)
        if filled is None:
            raise ValueError(f"the venue never received {order.client_order_id}")
        return filled

    def _answer(self, order: Order, status: OrderStatus, reason: str | None = None) -> bool:
        """An order answer: the venue's cumulative fill and average (at the tick's precision)."""
        lots, cost = self._known(order)
        average = None
        inst = order.instrument
        if lots and inst is not None:
            average = inst.average_to_ticks(inst.format_price_fraction(Fraction(cost, lots)))
        cid = order.client_order_id
        return self._engine.on_report(
            OrderReport(cid, status, lots, average, self._venue_ids.get(cid), reason)
        )

    def accept(self, order: Order) -> None:
        """The venue took the order and it rests (``new``, or as filled so far)."""
        lots, _ = self._known(order)
        self._answer(order, OrderStatus.PARTIALLY_FILLED if lots else OrderStatus.NEW)

    def fill(
        self,
        order: Order,
        quantity: str | int | None = None,
        price: str | int | None = None,
        *,
        fee: str | None = None,
    ) -> None:
        """The venue filled ``quantity`` (default: the rest) at ``price`` (default: its limit).

        Delivered as the gateway delivers it: one fill of the fills log
        (with a fill id and, when ``fee`` is given, the venue's fee in
        quote currency), then the order's answer with its cumulative fill.
        A fill of an order the venue has not answered yet is a fill on its
        placement answer (taker lots); of an accepted one, a later fill of
        a resting order (maker lots).
        """
        filled = self._known(order)
        inst = order.instrument
        assert inst is not None
        lots = order.quantity - filled[0] if quantity is None else _lots(inst, quantity)
        if lots <= 0 or filled[0] + lots > order.quantity:
            raise ValueError(
                f"cannot fill {lots} lots of {order.client_order_id}: "
                f"{filled[0]} of {order.quantity} filled"
            )
        if price is None:
            if order.price is None:
                raise ValueError(f"{order.client_order_id} has no limit price: give one")
            ticks = order.price
        else:
            ticks = _ticks(inst, price)
        venue_fee = None
        if fee is not None:
            venue_fee = fee_to_units(fee, inst.tick_size, inst.lot_size)
        filled[0] += lots
        filled[1] += ticks * lots
        self._engine.on_fill(
            FillReport(
                order.client_order_id,
                ticks,
                lots,
                next(self._fill_ids),
                order.symbol,
                order.side,
                venue_fee,
            )
        )
        done = filled[0] >= order.quantity
        if done:
            self._answer(order, OrderStatus.FILLED)
        elif order.time_in_force is TimeInForce.IOC and order.status is OrderStatus.PENDING_NEW:
            self._answer(order, OrderStatus.CANCELED, "ioc_remainder")
        else:
            self._answer(order, OrderStatus.PARTIALLY_FILLED)

    def reject(self, order: Order, reason: str = "rejected") -> None:
        """The venue refused the order (``rejected`` with ``reason``)."""
        self._answer(order, OrderStatus.REJECTED, reason)

    def canceled(self, order: Order, reason: str | None = None) -> None:
        """The venue canceled the order (what filled before stays filled)."""
        self._answer(order, OrderStatus.CANCELED, reason)

    def confirm_cancels(self) -> int:
        """Answer every cancel asked for so far with ``canceled``; returns how many."""
        pending, self.cancel_requests = self.cancel_requests, []
        answered = 0
        for order in pending:
            if order.is_open:
                self.canceled(order)
                answered += 1
        return answered


def _ticks(inst: Instrument, price: str | int) -> int:
    if isinstance(price, int):
        return price
    try:
        return inst.price_to_ticks(price)
    except InvalidValue as exc:
        raise ValueError(f"price {price!r} for {inst.symbol}: {exc.reason}") from None


def _lots(inst: Instrument, size: str | int) -> int:
    if isinstance(size, int):
        return size
    try:
        return inst.size_to_lots(size)
    except InvalidValue as exc:
        raise ValueError(f"quantity {size!r} for {inst.symbol}: {exc.reason}") from None


# -- the harness ----------------------------------------------------------------------


def _class_spec(strategy: str | type[Strategy]) -> str:
    """``module:Class`` (or an entry-point name) for a strategy given by name or class."""
    if isinstance(strategy, str):
        return strategy
    module = sys.modules.get(strategy.__module__)
    if module is not None and getattr(module, strategy.__qualname__, None) is strategy:
        return f"{strategy.__module__}:{strategy.__qualname__}"
    # Defined inside a function (or otherwise not importable by name): made findable.
    name = f"{strategy.__name__}_{next(_registered)}"
    setattr(_REGISTRY, name, strategy)
    return f"{_REGISTRY.__name__}:{name}"


class StrategyHarness:
    """One strategy in a real engine, an in-process venue and a fake clock.

    ``strategy``: ``module:Class``, an entry-point name or the class itself.
    ``symbols`` it trades; ``params`` its ``params`` table; ``name`` its
    name (client order ids start with it); ``timer_s`` its timer.
    ``instruments``: ``[[instruments]]`` entries (default ``BTC-USD``,
    tick 0.01, lot 0.001; keys ``symbol``, ``tick_size``, ``lot_size``,
    ``maker_fee``, ``taker_fee``); ``risk`` and ``engine``: keys of those
    sections (by default risk allows 1000 orders a second, else the shipped
    defaults); ``venue``: ``"matching"`` or ``"scripted"`` (see the
    module). The clock starts at ``start_s`` seconds.

    Raises :class:`~trading_engine.core.errors.ConfigError` naming the key
    for a configuration the engine would refuse (a bad param included), as
    ``check-config`` does.
    """

    def __init__(
        self,
        strategy: str | type[Strategy],
        *,
        symbols: Sequence[str] | None = None,
        params: Mapping[str, Any] | None = None,
        name: str = "test",
        timer_s: float | None = None,
        instruments: Sequence[Mapping[str, str]] | None = None,
        risk: Mapping[str, Any] | None = None,
        engine: Mapping[str, Any] | None = None,
        venue: Literal["matching", "scripted"] = "matching",
        start_s: float = 1000.0,
    ) -> None:
        entries = [dict(item) for item in instruments or [_DEFAULT_INSTRUMENT]]
        traded = list(symbols) if symbols is not None else [entries[0]["symbol"]]
        item: dict[str, Any] = {
            "name": name,
            "class": _class_spec(strategy),
            "symbols": traded,
            "params": dict(params or {}),
        }
        if timer_s is not None:
            item["timer_s"] = timer_s
        data: dict[str, Any] = {
            "instruments": entries,
            "strategies": [item],
            "risk": {"max_orders_per_s": 1000, **(risk or {})},
            # No journal file: a test leaves nothing behind.
            "journal": {"path": ":memory:"},
        }
        if engine:
            data["engine"] = dict(engine)
        self.config: Config = parse_config(data, environ={})
        self.clock = ManualClock(start_ns=round(start_s * 1e9))
        self.venue: ScriptedVenue | None = None
        self._sent: list[Order] = []
        self._seen = 0

        def sink(engine: Engine) -> Any:
            inner: Any = simulated_venue(engine) if venue == "matching" else ScriptedVenue(engine)
            if isinstance(inner, ScriptedVenue):
                self.venue = inner
            return _Noting(inner, self._sent)

        if venue not in ("matching", "scripted"):
            raise ValueError(f"venue must be 'matching' or 'scripted', not {venue!r}")
        self.engine = Engine(self.config, clock=self.clock, run_id="test", sink_factory=sink)
        self.name = name
        self.runner = self.engine.runners[name]
        #: The strategy object itself (its own attributes are the test's to read).
        self.strategy: Strategy = self.runner.strategy
        self._seq: dict[str, int] = {}
        self.engine.start_strategies()
        self.engine.builder.set_listener(self.engine.dispatcher)

    # -- market data ---------------------------------------------------------------------

    def _symbol(self, symbol: str | None) -> str:
        return symbol if symbol is not None else self.runner.strategy.symbols[0]

    def _next_seq(self, symbol: str) -> int:
        seq = self._seq.get(symbol, 0) + 1
        self._seq[symbol] = seq
        return seq

    def frame(self, frame: bytes) -> None:
        """Feed one raw frame, received now on the fake clock."""
        self.engine.builder.handle(frame, self.clock.now_ns)

    def snapshot(
        self,
        bids: Iterable[LevelSpec] = (),
        asks: Iterable[LevelSpec] = (),
        symbol: str | None = None,
    ) -> None:
        """The whole book of ``symbol`` (default: the strategy's first), at the next sequence."""
        sym = self._symbol(symbol)
        self.frame(snapshot_frame(sym, self._next_seq(sym), bids, asks))

    def update(
        self,
        bids: Iterable[LevelSpec] = (),
        asks: Iterable[LevelSpec] = (),
        symbol: str | None = None,
    ) -> None:
        """Levels set (size ``"0"`` removes one), at the next sequence."""
        sym = self._symbol(symbol)
        self.frame(update_frame(sym, self._next_seq(sym), bids, asks))

    def trade(self, price: str, size: str, side: str | Side, symbol: str | None = None) -> None:
        """A trade print (``side``: the aggressor), at the next sequence."""
        sym = self._symbol(symbol)
        self.frame(trade_frame(sym, self._next_seq(sym), price, size, side))

    # -- time ---------------------------------------------------------------------------

    def advance(self, seconds: float) -> int:
        """Move the fake clock forward, then run the timers due; returns how many fired."""
        self.clock.advance(seconds)
        return self.engine.run_timers()

    # -- orders -------------------------------------------------------------------------

    @property
    def orders(self) -> list[Order]:
        """Every order the strategy sent to the venue, oldest first."""
        return list(self._sent)

    def sent(self) -> list[Order]:
        """The orders sent since the last call (or ``expect_order``), oldest first."""
        new = self._sent[self._seen :]
        self._seen = len(self._sent)
        return new

    def open_orders(self) -> list[Order]:
        """The strategy's open orders (as ``ctx.open_orders()`` sees them)."""
        return self.engine.contexts[self.name].open_orders()

    def expect_order(
        self,
        *,
        side: str | Side | None = None,
        price: str | int | None = None,
        quantity: str | int | None = None,
        tif: str | TimeInForce | None = None,
        post_only: bool | None = None,
        tag: str | None = None,
        symbol: str | None = None,
    ) -> Order:
        """The next order sent since the last look, checked field by field; returns it.

        Fields left None are not checked; ``price`` and ``quantity`` are
        decimal strings (or ticks and lots). Raises ``AssertionError``
        naming every field that differs, or when no order was sent.
        """
        if self._seen >= len(self._sent):
            raise AssertionError(f"no order was sent{self._denial_note()}")
        order = self._sent[self._seen]
        self._seen += 1
        inst = order.instrument
        assert inst is not None
        wrong: list[str] = []

        def check(field: str, want: object, got: object) -> None:
            if want is not None and want != got:
                wrong.append(f"{field} {got!r}, expected {want!r}")

        check("symbol", symbol, order.symbol)
        check("side", None if side is None else Side(side), order.side)
        if price is not None:
            check("price", _ticks(inst, price), order.price)
        if quantity is not None:
            check("quantity", _lots(inst, quantity), order.quantity)
        check("time_in_force", None if tif is None else TimeInForce(tif), order.time_in_force)
        check("post_only", post_only, order.post_only)
        check("tag", tag, order.tag)
        if wrong:
            raise AssertionError(f"{order!r}: " + "; ".join(wrong))
        return order

    def expect_no_order(self) -> None:
        """Raises ``AssertionError`` if an order was sent since the last look."""
        new = self._sent[self._seen :]
        if new:
            raise AssertionError(f"expected no order, {len(new)} sent: {new!r}")

    def _denial_note(self) -> str:
        denial = self.engine.contexts[self.name].last_denial
        return "" if denial is None else f" (the last order asked for was denied: {denial})"

    # -- what the engine knows ------------------------------------------------------------

    @property
    def last_denial(self) -> str | None:
        """Why the strategy's last order request was denied, or None."""
        return self.engine.contexts[self.name].last_denial

    def denials(self) -> dict[str, int]:
        """Order requests denied so far, by reason (only reasons that occurred)."""
        return {str(k.value): v for k, v in self.engine.risk.denied.items() if v}

    def position(self, symbol: str | None = None) -> Position:
        """The strategy's position: ``quantity`` (lots), ``realized``, ``fees`` (tick*lot units)."""
        return self.engine.positions.of_strategy(self.name, self._symbol(symbol))

    @property
    def errors(self) -> int:
        """Exceptions the strategy's hooks raised so far (each counted, as live)."""
        return self.runner.errors

    @property
    def enabled(self) -> bool:
        """False once the strategy was disabled after too many consecutive errors."""
        return self.runner.enabled

    def stop(self) -> None:
        """Call ``on_stop`` and cancel the strategy's open orders, as a shutdown does."""
        self.engine.stop_strategies()


class _Noting:
    """An order sink that notes each order it sends on, in order."""

    def __init__(self, sink: Any, sent: list[Order]) -> None:
        self._sink = sink
        self._sent = sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)

    def submit(self, order: Order) -> str | None:
        refusal: str | None = self._sink.submit(order)
        if refusal is None:
            self._sent.append(order)
        return refusal
