"""trading-engine: market data in, safe orders out, in microseconds.

The public API is what ``__all__`` lists; everything else may change.
"""

from .book import Level, OrderBook
from .builder import BookBuilder, BookEntry, BookListener, BookState
from .config import Config, load_config, parse_config
from .errors import (
    BookError,
    ConfigError,
    EngineError,
    FeedProtocolError,
    InvalidValue,
    InvariantError,
)
from .instruments import Instrument
from .loop import Priority, PriorityEventLoop, critical, mark_critical
from .protocol import (
    BookMessage,
    Decoder,
    Heartbeat,
    MessageType,
    Reason,
    Rejected,
    Side,
    Trade,
)

__version__ = "0.1.0"

__all__ = [
    "BookBuilder",
    "BookEntry",
    "BookError",
    "BookListener",
    "BookMessage",
    "BookState",
    "Config",
    "ConfigError",
    "Decoder",
    "EngineError",
    "FeedProtocolError",
    "Heartbeat",
    "Instrument",
    "InvalidValue",
    "InvariantError",
    "Level",
    "MessageType",
    "OrderBook",
    "Priority",
    "PriorityEventLoop",
    "Reason",
    "Rejected",
    "Side",
    "Trade",
    "__version__",
    "critical",
    "load_config",
    "mark_critical",
    "parse_config",
]
