"""The strategy plugin interface.

A strategy is a subclass of :class:`Strategy`. The engine calls its hooks;
the strategy reads books through :class:`BookView` and asks for orders,
cancels and replaces through its :class:`StrategyContext` (``self.ctx``).

Hooks (each may be ``def`` or ``async def``; an ``async def`` hook that
does not suspend costs about as much as a plain call):

=====================  ========  ===============================================
hook                   required  called
=====================  ========  ===============================================
``on_book(book)``      yes       after each update applied to a live book of a
                                 watched symbol
``on_start()``         no        once, before any market data
``on_trade(book, t)``  no        after each trade print on a live book
``on_fill(fill)``      no        when lots of one of its orders enter its position
``on_order_update(o)`` no        when one of its orders changes status
``on_timer()``         no        every ``timer_s`` seconds of the engine clock
                                 (the strategy's ``[[strategies]] timer_s``)
``on_stop()``          no        once, at shutdown, before open orders are canceled
                                 (also when start-up fails after ``on_start``)
=====================  ========  ===============================================

Strategies never see a stale, crossed or not-ready book: ``on_book`` and
``on_trade`` run only for live books, and a :class:`BookView` read later
(after an ``await``) answers ``None`` for a book that is no longer live.

Parameters are validated by the strategy's own pydantic model, its
``Params`` class attribute; a bad value stops start-up (and fails
``check-config``) with an error naming the key path
(``strategies[0].params.quantity: ...``). Prices are ``int`` ticks and
sizes ``int`` lots; convert decimal params once, in ``__init__``, with
:func:`price_param` and :func:`size_param` and
``self.ctx.instrument(symbol)``.

See ``strategies/template.py`` and ``docs/strategies.md``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import InvalidValue, StrategyError
from .instruments import Instrument
from .orders import Order, OrderType, Price, TimeInForce
from .protocol import Side, Trade
from .view import BookView

if TYPE_CHECKING:
    from .positions import Position

__all__ = [
    "ENTRY_POINT_GROUP",
    "BookView",
    "Fill",
    "NoParams",
    "Strategy",
    "StrategyContext",
    "load_strategy_class",
    "price_param",
    "size_param",
    "validate_params",
]

ENTRY_POINT_GROUP = "trading_engine.strategies"


class NoParams(BaseModel):
    """The params model of a strategy that takes none."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Fill:
    """Lots of one of the strategy's orders now in its position.

    ``price`` in ticks: a fill's price, or (an ``int`` or an exact
    ``Fraction``) the average of several fills an order answer reported at
    once, before the fills feed listed them one by one.
    """

    __slots__ = ("lots", "order", "price")

    def __init__(self, order: Order, price: Price, lots: int) -> None:
        self.order = order
        self.price = price
        self.lots = lots

    @property
    def tag(self) -> str | None:
        """The order's tag (``ctx.submit(..., tag=...)``), or None."""
        return self.order.tag

    def __repr__(self) -> str:
        inst = self.order.instrument
        if inst is None:
            return f"Fill({self.order.client_order_id!r}, {self.lots} lots @ {self.price} ticks)"
        price = self.price
        # An average between two ticks keeps two more decimals than the tick.
        shown = (
            inst.format_price(price)
            if isinstance(price, int)
            else inst.format_price_fraction(price, inst.money_scale)
        )
        return f"Fill({self.order.client_order_id!r}, {inst.format_size(self.lots)} @ {shown})"


class StrategyContext(Protocol):
    """What a strategy may ask of the engine (``self.ctx``)."""

    name: str
    log: logging.Logger

    def book(self, symbol: str) -> BookView:
        """The read-only view of a watched symbol's book."""
        ...

    def instrument(self, symbol: str) -> Instrument:
        """The instrument (tick and lot grids) of a configured symbol."""
        ...

    def position(self, symbol: str) -> Position:
        """This strategy's own position in ``symbol`` (read it, don't change it)."""
        ...

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """This strategy's open orders, optionally for one symbol."""
        ...

    def now_ns(self) -> int:
        """The engine clock, monotonic nanoseconds."""
        ...

    def submit(
        self,
        symbol: str,
        side: Side,
        lots: int,
        price: int | None = None,
        order_type: OrderType = OrderType.LIMIT,
        time_in_force: TimeInForce = TimeInForce.GTC,
        *,
        tag: str | None = None,
        post_only: bool = False,
    ) -> Order | None:
        """Send an order; ``None`` if it was denied (see ``last_denial``).

        ``tag``: the strategy's own label, kept with the order (1-32
        characters of ``[A-Za-z0-9._:-]``; another is denied
        ``invalid_tag``). ``post_only``: the venue rejects the order
        (reason ``post_only_would_take``) rather than let it take
        liquidity; only for a GTC limit order (else denied ``invalid_order``).
        """
        ...

    def buy(
        self,
        symbol: str,
        lots: int,
        price: int | None = None,
        time_in_force: TimeInForce = ...,
        *,
        tag: str | None = None,
        post_only: bool = False,
    ) -> Order | None:
        """A limit buy (market when ``price`` is None: an IOC limit at the band edge)."""
        ...

    def sell(
        self,
        symbol: str,
        lots: int,
        price: int | None = None,
        time_in_force: TimeInForce = ...,
        *,
        tag: str | None = None,
        post_only: bool = False,
    ) -> Order | None:
        """A limit sell (market when ``price`` is None: an IOC limit at the band edge)."""
        ...

    def cancel(self, order: Order) -> bool:
        """Ask to cancel one of this strategy's open orders."""
        ...

    def replace(
        self, order: Order, lots: int | None = None, price: int | None = None
    ) -> Order | None:
        """Cancel ``order`` and send a new one with the same side, symbol, tag and post-only."""
        ...

    @property
    def last_denial(self) -> str | None:
        """Why the last order request was denied, or None."""
        ...


class Strategy:
    """Base class of strategy plugins. Override ``on_book`` at least."""

    #: The pydantic model that validates this strategy's ``params``.
    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(
        self, name: str, params: BaseModel, context: StrategyContext, symbols: Sequence[str]
    ) -> None:
        self.name = name
        self.params = params
        self.ctx = context
        self.symbols = tuple(symbols)

    def on_start(self) -> Any:
        """Called once before any market data."""

    def on_book(self, book: BookView) -> Any:
        """Called after each update of a live book this strategy watches."""
        raise NotImplementedError(f"{type(self).__name__} must implement on_book")

    def on_trade(self, book: BookView, trade: Trade) -> Any:
        """Called after each trade print on a live book this strategy watches."""

    def on_fill(self, fill: Fill) -> Any:
        """Called for each fill of one of this strategy's orders."""

    def on_order_update(self, order: Order) -> Any:
        """Called when one of this strategy's orders changes status."""

    def on_timer(self) -> Any:
        """Called every ``timer_s`` seconds of the engine clock (when configured).

        A timer that falls behind (the clock moved by several intervals at
        once) fires once, not once per missed interval.
        """

    def on_stop(self) -> Any:
        """Called once at shutdown, before open orders are canceled."""


def load_strategy_class(name: str, spec: str) -> type[Strategy]:
    """Resolve ``module:Class`` or an entry-point name to a Strategy subclass.

    ``module`` is imported from ``sys.path`` as it stands (the command line
    puts the current directory on it first, as ``python -m`` does). Raises
    :class:`StrategyError` naming the strategy, whose one problem reads
    ``class: ...``.
    """

    def error(text: str) -> StrategyError:
        return StrategyError(f"strategy {name!r}: {text}", [f"class: {text}"])

    target: object
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise error(f"cannot import {module_name!r}: {exc}") from exc
        except Exception as exc:
            raise error(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
        try:
            target = getattr(module, attribute)
        except AttributeError:
            raise error(f"module {module_name!r} has no {attribute!r}") from None
    else:
        found = [ep for ep in _entry_points() if ep.name == spec]
        if not found:
            raise error(
                f"{spec!r} is neither module:Class nor an entry point "
                f"in the group {ENTRY_POINT_GROUP!r}"
            )
        try:
            target = found[0].load()
        except Exception as exc:
            raise error(f"entry point {spec!r} failed: {exc}") from exc
    if not (isinstance(target, type) and issubclass(target, Strategy)):
        raise error(f"{spec!r} is not a Strategy subclass")
    if target.on_book is Strategy.on_book:
        raise error(f"{spec!r} does not implement on_book")
    return target


@cache
def _entry_points() -> tuple[EntryPoint, ...]:
    """The installed strategies' entry points, read once per process.

    Reading them scans every installed distribution's metadata (about
    1.5 ms with 80 installed), once per configured strategy otherwise:
    each backtest of a sweep and each start would pay it again.
    """
    return tuple(entry_points(group=ENTRY_POINT_GROUP))


def validate_params(name: str, cls: type[Strategy], raw: dict[str, Any]) -> BaseModel:
    """Validate params with the strategy's model.

    Raises :class:`StrategyError` naming the strategy, one problem per
    invalid key (``params.quantity: ...``).
    """
    try:
        return cls.Params.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            path = f"params.{key}" if key else "params"
            problems.append(f"{path}: {error['msg']} (value {error.get('input')!r})")
        raise StrategyError(f"strategy {name!r}: " + "; ".join(problems), problems) from exc


def price_param(instrument: Instrument, key: str, value: object) -> int:
    """A positive price param (a decimal string) on ``instrument``'s tick grid, in ticks.

    For a strategy's ``__init__``. Raises :class:`StrategyError` whose one
    problem reads ``params.<key>: ...``, naming the value and the tick.
    """
    try:
        return instrument.price_to_ticks(value)
    except InvalidValue as exc:
        text = (
            f"params.{key}: {value!r} is not a valid price for {instrument.symbol} "
            f"(tick {instrument.tick_size}): {exc.reason}"
        )
        raise StrategyError(text, [text]) from None


def size_param(instrument: Instrument, key: str, value: object) -> int:
    """A positive size param (a decimal string) on ``instrument``'s lot grid, in lots.

    For a strategy's ``__init__``. Raises :class:`StrategyError` whose one
    problem reads ``params.<key>: ...``, naming the value and the lot.
    """
    try:
        lots = instrument.size_to_lots(value)
    except InvalidValue as exc:
        reason = exc.reason
    else:
        if lots > 0:
            return lots
        reason = "zero"
    text = (
        f"params.{key}: {value!r} is not a valid size for {instrument.symbol} "
        f"(lot {instrument.lot_size}): {reason}"
    )
    raise StrategyError(text, [text])
