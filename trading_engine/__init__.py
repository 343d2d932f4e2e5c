"""trading-engine: market data in, safe orders out, in microseconds.

The public API is what ``__all__`` lists; everything else may change.
A strategy needs only these names: :class:`Strategy`, its
:class:`StrategyContext`, :class:`BookView`, :class:`Fill`,
:class:`Order` and the enums :class:`Side`, :class:`OrderType`,
:class:`TimeInForce` and :class:`OrderStatus`, and :func:`price_param` and
:func:`size_param`, which turn decimal params into ticks and lots.

The package tree is the architecture (``docs/design.md``), imports
running one way, bottom to top: ``core`` (pure, synchronous),
``lowlevel`` (the event loop, task helpers, latency histograms, logs),
``config``, ``io`` (the asyncio edges), ``engine`` (the runtime that
wires them), ``sim`` (simulators and replay), ``commands`` (the CLI).

:data:`compiled` is True when the core runs as C extension modules built
by mypyc at install time, False for the pure-Python build; :data:`BUILD`
says which modules and why (``trading_engine.lowlevel.build``).
"""

# First: decides between the compiled and the pure core before any core
# module is imported.
from .lowlevel.build import BUILD, BuildInfo

# isort: split
from .config import Config, load_config, parse_config
from .core.book import Level, OrderBook
from .core.builder import BookBuilder, BookEntry, BookListener, BookState
from .core.errors import (
    ConfigError,
    EngineError,
    InvalidValue,
    InvariantError,
    StrategyError,
)
from .core.instruments import Instrument
from .core.orders import Order, OrderStatus, OrderType, TimeInForce
from .core.positions import Position
from .core.protocol import (
    BookMessage,
    Decoder,
    Heartbeat,
    MessageType,
    Reason,
    Rejected,
    Side,
    Trade,
)
from .core.strategy import BookView, Fill, Strategy, StrategyContext, price_param, size_param
from .lowlevel.loop import Priority, PriorityEventLoop, create_task, critical, mark_critical

__version__ = "0.1.0"

#: True when the core runs compiled (mypyc), False for the pure-Python build.
compiled: bool = BUILD.compiled

__all__ = [
    "BUILD",
    "BookBuilder",
    "BookEntry",
    "BookListener",
    "BookMessage",
    "BookState",
    "BookView",
    "BuildInfo",
    "Config",
    "ConfigError",
    "Decoder",
    "EngineError",
    "Fill",
    "Heartbeat",
    "Instrument",
    "InvalidValue",
    "InvariantError",
    "Level",
    "MessageType",
    "Order",
    "OrderBook",
    "OrderStatus",
    "OrderType",
    "Position",
    "Priority",
    "PriorityEventLoop",
    "Reason",
    "Rejected",
    "Side",
    "Strategy",
    "StrategyContext",
    "StrategyError",
    "TimeInForce",
    "Trade",
    "__version__",
    "compiled",
    "create_task",
    "critical",
    "load_config",
    "mark_critical",
    "parse_config",
    "price_param",
    "size_param",
]
