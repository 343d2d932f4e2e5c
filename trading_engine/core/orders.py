"""Orders: client order ids and the order state machine.

Pure and synchronous. An :class:`Order` moves through :class:`OrderStatus`
only along the transitions in ``TRANSITIONS``; anything else raises
:class:`~trading_engine.errors.OrderStateError`::

    pending_new ──► new ──► partially_filled ──► filled
        │  │         │  \\          │    ▲  \\
        │  │         │   └────────►│────┘   └──► canceled
        │  │         └─────────────┴──────────► canceled
        │  └──► rejected
        └──► unknown ──► (any state pending_new may reach)

``unknown`` is an order whose request may or may not have reached the
exchange (timeout, 5xx, reset): it is settled by reading the order back
with the same client order id, never by sending a new one.
"""

from __future__ import annotations

import os
import string
import time
from enum import StrEnum
from typing import Final, Protocol

from .errors import OrderStateError
from .protocol import Side

__all__ = [
    "TRANSITIONS",
    "ClientOrderIds",
    "ExecutionListener",
    "Order",
    "OrderSink",
    "OrderStatus",
    "OrderType",
    "TimeInForce",
]


class OrderStatus(StrEnum):
    PENDING_NEW = "pending_new"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"


_S = OrderStatus
_SETTLED_FROM_PENDING: Final = frozenset(
    {_S.NEW, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED, _S.REJECTED}
)
TRANSITIONS: Final[dict[OrderStatus, frozenset[OrderStatus]]] = {
    _S.PENDING_NEW: _SETTLED_FROM_PENDING | {_S.UNKNOWN},
    _S.UNKNOWN: _SETTLED_FROM_PENDING,
    _S.NEW: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED}),
    _S.PARTIALLY_FILLED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED}),
    _S.FILLED: frozenset(),
    _S.CANCELED: frozenset(),
    _S.REJECTED: frozenset(),
}
#: States in which an order may still trade.
OPEN_STATES: Final = frozenset({_S.PENDING_NEW, _S.NEW, _S.PARTIALLY_FILLED, _S.UNKNOWN})
TERMINAL_STATES: Final = frozenset({_S.FILLED, _S.CANCELED, _S.REJECTED})

_ALPHABET: Final = string.digits + string.ascii_lowercase
_ID_CHARS: Final = frozenset(string.ascii_letters + string.digits + "._:-")


def _base36(number: int) -> str:
    digits = []
    while True:
        number, digit = divmod(number, 36)
        digits.append(_ALPHABET[digit])
        if not number:
            return "".join(reversed(digits))


class ClientOrderIds:
    """Client order ids unique across restarts: ``<strategy>-<run id>-<counter>``.

    The run id is the start time in seconds (base 36) plus four random
    base-36 characters, so two runs started in the same second still
    differ. Every id uses only ``[A-Za-z0-9._:-]`` and is at most 64
    characters, as the exchange API requires.
    """

    def __init__(self, run_id: str | None = None) -> None:
        if run_id is None:
            entropy = int.from_bytes(os.urandom(4), "big") % 36**4
            run_id = _base36(time.time_ns() // 10**9) + _base36(entropy).rjust(4, "0")
        if not run_id or not set(run_id) <= _ID_CHARS or len(run_id) > 16:
            raise ValueError(f"run id {run_id!r} must be 1-16 characters of [A-Za-z0-9._:-]")
        self.run_id = run_id
        self._counter = 0

    def next(self, strategy: str) -> str:
        self._counter += 1
        client_order_id = f"{strategy}-{self.run_id}-{self._counter}"
        if len(client_order_id) > 64 or not set(strategy) <= _ID_CHARS:
            raise ValueError(f"strategy name {strategy!r} cannot form a valid client order id")
        return client_order_id


class Order:
    """One order, in ticks and lots, with its state and fills so far."""

    __slots__ = (
        "avg_price_text",
        "cancel_requested",
        "client_order_id",
        "created_ns",
        "exchange_order_id",
        "filled",
        "filled_cost",
        "price",
        "quantity",
        "reason",
        "recv_ns",
        "side",
        "status",
        "strategy",
        "symbol",
        "time_in_force",
        "type",
    )

    def __init__(
        self,
        client_order_id: str,
        strategy: str,
        symbol: str,
        side: Side,
        type: OrderType,
        quantity: int,
        price: int | None,
        time_in_force: TimeInForce,
        created_ns: int = 0,
    ) -> None:
        self.client_order_id = client_order_id
        self.strategy = strategy
        self.symbol = symbol
        self.side = side
        self.type = type
        self.quantity = quantity
        self.price = price
        self.time_in_force = time_in_force
        self.created_ns = created_ns
        self.status = OrderStatus.PENDING_NEW
        #: Filled lots so far, and the sum of price * lots over the fills.
        self.filled = 0
        self.filled_cost = 0
        self.exchange_order_id: str | None = None
        self.reason: str | None = None
        self.avg_price_text: str | None = None
        self.cancel_requested = False
        #: Receive time of the feed bytes that led to this order (0: none).
        self.recv_ns = 0

    def __repr__(self) -> str:
        return (
            f"Order({self.client_order_id!r}, {self.side.value} {self.quantity} "
            f"{self.symbol} @ {self.price}, {self.status.value}, filled={self.filled})"
        )

    @property
    def is_open(self) -> bool:
        """True while the order may still trade (including ``unknown``)."""
        return self.status in OPEN_STATES

    @property
    def remaining(self) -> int:
        """Lots not yet filled (0 once the order is closed)."""
        return self.quantity - self.filled if self.is_open else 0

    def transition(self, status: OrderStatus, reason: str | None = None) -> bool:
        """Move to ``status``; returns False when already there.

        Raises :class:`OrderStateError` for a transition that does not exist.
        ``partially_filled`` -> ``partially_filled`` is allowed (more fills).
        """
        current = self.status
        if status is current and status is not OrderStatus.PARTIALLY_FILLED:
            return False
        if status not in TRANSITIONS[current]:
            raise OrderStateError(
                f"order {self.client_order_id}: {current.value} -> {status.value} is not allowed"
            )
        self.status = status
        if reason is not None:
            self.reason = reason
        return True

    def add_fill(self, price: int, lots: int) -> None:
        """Record a fill of ``lots`` at ``price`` ticks (does not change status)."""
        if lots <= 0:
            raise OrderStateError(f"order {self.client_order_id}: fill of {lots} lots")
        if self.filled + lots > self.quantity:
            raise OrderStateError(
                f"order {self.client_order_id}: fills exceed quantity "
                f"({self.filled} + {lots} > {self.quantity})"
            )
        self.filled += lots
        self.filled_cost += price * lots


class ExecutionListener(Protocol):
    """What an order sink reports back (the engine implements it)."""

    def on_written(self, order: Order) -> None:
        """The order's request was written toward the venue (tick-to-trade ends)."""

    def on_accepted(self, client_order_id: str, exchange_order_id: str | None) -> None:
        """The venue acknowledged the order (it is at least ``new``)."""

    def on_fill(
        self, client_order_id: str, price: int, lots: int, fill_id: int | None = None
    ) -> None:
        """A fill of ``lots`` at ``price`` ticks (``fill_id``: from the venue's fills log)."""

    def on_status(self, client_order_id: str, status: OrderStatus, reason: str | None) -> None:
        """The order reached ``status`` (after any fills that led to it)."""


class OrderSink(Protocol):
    """Where orders go: the simulated venue or the exchange gateway."""

    def allow(self) -> bool:
        """May an order be sent now? (False while a circuit breaker is open.)"""

    def submit(self, order: Order) -> None:
        """Send a new order. Outcomes arrive through the ExecutionListener."""

    def cancel(self, order: Order) -> None:
        """Ask to cancel an open order."""
