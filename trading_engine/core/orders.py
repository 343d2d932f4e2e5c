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
from fractions import Fraction
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol, TypeAlias

from .errors import DuplicateFill, OrderStateError
from .instruments import Instrument
from .protocol import Side

if TYPE_CHECKING:
    from .reports import FillReport, OrderReport

__all__ = [
    "BINANCE_ID_RULE",
    "CLIENT_ID_RULES",
    "FAULT_KINDS",
    "MAX_TAG_LENGTH",
    "OWN_API_ID_RULE",
    "POST_ONLY_REJECTED",
    "TRANSITIONS",
    "ClientIdRule",
    "ClientOrderIds",
    "ExecutionListener",
    "Order",
    "OrderSink",
    "OrderStatus",
    "OrderType",
    "Price",
    "TimeInForce",
    "client_id_problem",
    "valid_tag",
]

#: A price in ticks: an ``int`` for a fill, a ``Fraction`` for an average
#: an order answer reported that falls between ticks.
Price: TypeAlias = int | Fraction
#: What an order sink may report through ``ExecutionListener.on_order_fault``.
FAULT_KINDS: Final = (
    "overfill",
    "unreadable_answer",
    "unreadable_fill",
    "cancel_refused",
    "not_found",
)


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

#: Longest order tag a strategy may give (characters of ``_TAG_CHARS``).
MAX_TAG_LENGTH: Final = 32
_TAG_CHARS: Final = frozenset(string.ascii_letters + string.digits + "._:-")
#: The reason a venue gives for refusing a post-only order that would take liquidity.
POST_ONLY_REJECTED: Final = "post_only_would_take"


def valid_tag(tag: str) -> bool:
    """True for an order tag: 1 to ``MAX_TAG_LENGTH`` characters of ``[A-Za-z0-9._:-]``."""
    return 0 < len(tag) <= MAX_TAG_LENGTH and set(tag) <= _TAG_CHARS


_ALPHABET: Final = string.digits + string.ascii_lowercase
_ID_CHARS: Final = frozenset(string.ascii_letters + string.digits + "._:-")
_DEPLOYMENT_CHARS: Final = frozenset(string.ascii_letters + string.digits)


def _base36(number: int) -> str:
    digits = []
    while True:
        number, digit = divmod(number, 36)
        digits.append(_ALPHABET[digit])
        if not number:
            return "".join(reversed(digits))


class ClientIdRule(NamedTuple):
    """A venue's rule for client order ids: the longest id and the characters it may use.

    ``counter_digits`` is how many base-36 digits of the per-run counter a
    strategy name must leave room for (36**5 is 60 million orders in one run).
    """

    name: str
    max_length: int
    characters: frozenset[str]
    counter_digits: int


#: The project's own exchange API: up to 64 characters of ``[A-Za-z0-9._:-]``.
OWN_API_ID_RULE: Final = ClientIdRule("own", 64, _ID_CHARS, 6)
#: Binance spot ``newClientOrderId``: ``^[a-zA-Z0-9-_]{1,36}$`` (the venue's own
#: ``-1100`` answer states that range; the REST API's "New order" parameters).
BINANCE_ID_RULE: Final = ClientIdRule(
    "binance", 36, frozenset(string.ascii_letters + string.digits + "-_"), 5
)
#: The rule of each ``[gateway] venue``.
CLIENT_ID_RULES: Final[dict[str, ClientIdRule]] = {
    rule.name: rule for rule in (OWN_API_ID_RULE, BINANCE_ID_RULE)
}


def _generated_run_id_length() -> int:
    # The start time in seconds, base 36 (6 digits until 2038), and 4 random digits.
    return len(_base36(time.time_ns() // 10**9)) + 4


def client_id_problem(rule: ClientIdRule, deployment: str, strategy: str) -> str | None:
    """Why ``strategy`` of ``deployment`` cannot form ids under ``rule``, or None.

    The id ``<deployment>-<strategy>-<run id>-<counter>`` must use only the
    rule's characters and, with a generated run id and a counter of
    ``rule.counter_digits`` digits, fit ``rule.max_length``. The answer is
    one line naming the limits (for a configuration error). ``O(len(strategy))``.
    """
    room = rule.max_length - len(deployment) - _generated_run_id_length() - 3
    room -= rule.counter_digits
    allowed = "".join(sorted(rule.characters))
    if not strategy or not set(strategy) <= rule.characters or len(strategy) > room:
        return (
            f"{strategy!r} cannot form {rule.name} client order ids: with deployment "
            f"{deployment!r} a strategy name has at most {room} characters of "
            f"[{_ranges(allowed)}] (ids are at most {rule.max_length} characters)"
        )
    return None


def _ranges(characters: str) -> str:
    """``A-Za-z0-9`` and the rest of a character set, for messages."""
    text = ""
    for first, last in (("A", "Z"), ("a", "z"), ("0", "9")):
        if first in characters and last in characters:
            text += f"{first}-{last}"
            characters = "".join(c for c in characters if not first <= c <= last)
    return text + characters


class ClientOrderIds:
    """Client order ids unique across restarts: ``<deployment>-<strategy>-<run id>-<counter>``.

    The deployment name (``[engine] deployment``, 1-8 of ``[A-Za-z0-9]``)
    comes first: the venue's fills of orders whose id starts with
    ``<deployment>-`` are the deployment's positions, whichever worker or
    journal sent them (:meth:`owns`, :meth:`strategy_of`). The run id is
    the start time in seconds (base 36) plus four random base-36
    characters, so two runs started in the same second still differ; the
    counter is base 36. ``rule`` is the venue's id rule: the project's own
    API takes up to 64 characters of ``[A-Za-z0-9._:-]`` (the default),
    Binance up to 36 of ``[A-Za-z0-9_-]`` (:data:`CLIENT_ID_RULES`).
    """

    def __init__(
        self,
        run_id: str | None = None,
        deployment: str = "te",
        rule: ClientIdRule = OWN_API_ID_RULE,
    ) -> None:
        if run_id is None:
            entropy = int.from_bytes(os.urandom(4), "big") % 36**4
            run_id = _base36(time.time_ns() // 10**9) + _base36(entropy).rjust(4, "0")
        run_chars = _ID_CHARS & rule.characters
        if not run_id or not set(run_id) <= run_chars or len(run_id) > 12:
            allowed = _ranges("".join(sorted(run_chars)))
            raise ValueError(f"run id {run_id!r} must be 1-12 characters of [{allowed}]")
        if not deployment or not set(deployment) <= _DEPLOYMENT_CHARS or len(deployment) > 8:
            raise ValueError(f"deployment {deployment!r} must be 1-8 characters of [A-Za-z0-9]")
        self.run_id = run_id
        self.deployment = deployment
        self.rule = rule
        self.prefix = deployment + "-"
        self._counter = 0

    def next(self, strategy: str) -> str:
        """The next id of ``strategy``; ``ValueError`` if it breaks the venue's rule."""
        self._counter += 1
        client_order_id = f"{self.prefix}{strategy}-{self.run_id}-{_base36(self._counter)}"
        rule = self.rule
        if len(client_order_id) > rule.max_length or not set(strategy) <= rule.characters:
            raise ValueError(
                f"strategy name {strategy!r} cannot form a valid {rule.name} client order id"
            )
        return client_order_id

    def owns(self, client_order_id: str) -> bool:
        """Whether ``client_order_id`` is one of this deployment's (any run, any worker)."""
        return client_order_id.startswith(self.prefix) and client_order_id.count("-") >= 3

    def strategy_of(self, client_order_id: str) -> str:
        """The strategy name in one of this deployment's ids (see :meth:`owns`)."""
        return client_order_id[len(self.prefix) :].rsplit("-", 2)[0]


def _exact(value: Fraction) -> Price:
    """``value`` as an ``int`` when it is whole (the common case), else the Fraction."""
    return value.numerator if value.denominator == 1 else value


class Order:
    """One order, in ticks and lots, with its state and what it has filled.

    Fills reach an order from two sources: the cumulative
    ``filled_quantity``/``avg_price`` of an order answer
    (:meth:`credit_report`) and single fills from the venue's fills feed
    (:meth:`credit_fill`). ``filled`` is what the position holds from this
    order: the most either source has shown, never their sum. See
    docs/design.md, "Crediting fills and exposure".
    """

    __slots__ = (
        "avg_price_text",
        "cancel_requested",
        "client_order_id",
        "closed_ns",
        "created_ns",
        "exchange_order_id",
        "fee",
        "fee_pending",
        "fee_pending_lots",
        "feed_cost",
        "feed_filled",
        "feed_fills",
        "fill_ids",
        "filled",
        "filled_cost",
        "held",
        "instrument",
        "post_only",
        "price",
        "quantity",
        "reason",
        "recv_ns",
        "reported",
        "side",
        "status",
        "strategy",
        "symbol",
        "tag",
        "taker_lots",
        "time_in_force",
        "type",
        "unconfirmed",
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
        instrument: Instrument | None = None,
    ) -> None:
        self.client_order_id = client_order_id
        #: The symbol's grids, for rendering prices and sizes as decimals.
        self.instrument = instrument
        self.strategy = strategy
        self.symbol = symbol
        self.side = side
        self.type = type
        self.quantity = quantity
        self.price = price
        self.time_in_force = time_in_force
        self.created_ns = created_ns
        self.status = OrderStatus.PENDING_NEW
        #: Lots credited to the position so far, and their cost (price *
        #: lots in tick*lot units; a Fraction only while an off-tick average
        #: from an answer is not yet replaced by the fills feed's prices).
        self.filled = 0
        self.filled_cost: Price = 0
        #: The most lots any source reported filled (>= ``filled``; more
        #: while an answer reported fills without an average price).
        self.reported = 0
        #: Lots and cost over the distinct fills of the fills feed.
        self.feed_filled = 0
        self.feed_cost = 0
        #: The fills feed's ``(price, lots)`` in order, and its fill ids seen.
        self.feed_fills: list[tuple[int, int]] | None = None
        self.fill_ids: set[int] | None = None
        #: Lots this order counts in its side's open exposure (kept by the engine).
        self.held = 0
        #: True while lots credited from an answer's average await the feed's prices.
        self.unconfirmed = False
        self.exchange_order_id: str | None = None
        self.reason: str | None = None
        self.avg_price_text: str | None = None
        self.cancel_requested = False
        #: Receive time of the feed bytes that led to this order (0: none).
        self.recv_ns = 0
        #: Monotonic ns when the order reached a final status (0: open).
        self.closed_ns = 0
        #: The strategy's own label for the order (``valid_tag``), or None.
        self.tag: str | None = None
        #: Post-only: the venue refuses it (``POST_ONLY_REJECTED``) rather than let it take.
        self.post_only = False
        #: Fees charged to the position for this order so far, in tick*lot units
        #: (negative: a rebate). ``fee_pending`` of it was charged on lots an
        #: answer credited and no fill has listed yet (``fee_pending_lots``).
        self.fee = 0
        self.fee_pending = 0
        self.fee_pending_lots = 0
        #: Lots filled before the venue first acknowledged the order: taker lots.
        #: -1 until then (every lot credited meanwhile is a taker lot).
        self.taker_lots = -1

    def __repr__(self) -> str:
        size, filled, price = self.render()
        return (
            f"Order({self.client_order_id!r}, {self.side.value} {size} {self.symbol} @ {price}, "
            f"{self.status.value}, filled={filled})"
        )

    def render(self) -> tuple[str, str, str]:
        """(quantity, filled, price) as decimal strings, for logs.

        Without an instrument they read ``<n> lots`` and ``<n> ticks``, never
        bare integers that look like prices.
        """
        inst = self.instrument
        if inst is None:
            price = "market" if self.price is None else f"{self.price} ticks"
            return f"{self.quantity} lots", f"{self.filled} lots", price
        price = "market" if self.price is None else inst.format_price(self.price)
        return inst.format_size(self.quantity), inst.format_size(self.filled), price

    @property
    def is_open(self) -> bool:
        """True while the order may still trade (including ``unknown``)."""
        return self.status in OPEN_STATES

    @property
    def remaining(self) -> int:
        """Lots not yet filled (0 once the order is closed)."""
        if not self.is_open:
            return 0
        left = self.quantity - self.filled
        return left if left > 0 else 0

    def held_lots(self) -> int:
        """Lots this order must count in open exposure right now.

        Open: every lot not yet in the position (``quantity - filled``; more
        if the venue reported more). Closed: only lots the venue reported
        filled that the position does not hold yet (an answer without an
        average price); the unfilled rest left with the final status.
        """
        top = self.reported
        if self.status in OPEN_STATES and self.quantity > top:
            top = self.quantity
        return top - self.filled if top > self.filled else 0

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

    def credit_report(self, filled_lots: int, avg_price: Price | None) -> tuple[Price, int] | None:
        """Apply an order answer's cumulative fill; returns ``(price, lots)`` to credit now.

        ``filled_lots`` is the answer's cumulative ``filled_quantity`` in
        lots, ``avg_price`` its average in ticks (exact, possibly between
        ticks) or None. The lots beyond ``filled`` are credited at the price
        that makes the order's total cost ``avg_price * filled_lots``. An
        answer that reports no more than is already credited adds nothing;
        one without an average adds to ``reported`` only (those lots stay in
        exposure until the fills feed prices them). Raises
        :class:`OrderStateError` for a negative count or a cost that would
        give the new lots a price <= 0. ``O(1)``.
        """
        if filled_lots < 0:
            raise OrderStateError(f"order {self.client_order_id}: {filled_lots} lots filled")
        if filled_lots <= self.filled or avg_price is None:
            if filled_lots > self.reported:
                self.reported = filled_lots
            return None
        lots = filled_lots - self.filled
        total = avg_price * filled_lots
        added = total - self.filled_cost
        price: Price
        if isinstance(added, int):
            whole, rest = divmod(added, lots)
            price = whole if not rest else Fraction(added, lots)
        else:
            price = _exact(Fraction(added) / lots)
        if price <= 0:
            raise OrderStateError(
                f"order {self.client_order_id}: average {avg_price} over {filled_lots} lots "
                f"prices the new {lots} lots at {price} ticks"
            )
        if filled_lots > self.reported:
            self.reported = filled_lots
        self.filled = filled_lots
        self.filled_cost = total if isinstance(total, int) else _exact(total)
        self.unconfirmed = True
        return price, lots

    def credit_fill(
        self, price: int, lots: int, fill_id: int | None
    ) -> tuple[tuple[Price, int] | None, Price | None]:
        """Apply one fill of the fills feed (or of the in-process venue, ``fill_id`` None).

        Returns ``(credit, provisional)``: ``credit`` the ``(price, lots)``
        to add to the position now (the part of the feed's cumulative
        quantity that answers have not credited), or None; ``provisional``
        the cost the position was credited for this order, when this fill
        completes the feed's view of lots an answer credited at an average
        that is not each lot's own price (the position then reprices the
        order's lots, see ``Position.reprice``), else None. A fill id
        seen before raises :class:`DuplicateFill`; lots or price <= 0 raise
        :class:`OrderStateError`. ``O(1)``.
        """
        if lots <= 0 or price <= 0:
            raise OrderStateError(f"order {self.client_order_id}: fill of {lots} lots at {price}")
        if fill_id is not None:
            ids = self.fill_ids
            if ids is None:
                ids = self.fill_ids = set()
                self.feed_fills = []
            elif fill_id in ids:
                raise DuplicateFill(f"order {self.client_order_id}: fill {fill_id} seen before")
            ids.add(fill_id)
            assert self.feed_fills is not None
            self.feed_fills.append((price, lots))
        self.feed_filled += lots
        self.feed_cost += price * lots
        if self.feed_filled > self.reported:
            self.reported = self.feed_filled
        credit: tuple[Price, int] | None = None
        if self.feed_filled > self.filled:
            extra = self.feed_filled - self.filled
            credit = (price, extra)
            self.filled = self.feed_filled
            self.filled_cost += price * extra
        provisional: Price | None = None
        if self.unconfirmed and self.feed_filled == self.filled:
            self.unconfirmed = False
            fills = self.feed_fills
            # Even at the right total, an average spreads the cost evenly over
            # lots that filled at different prices: their FIFO split differs.
            if self.filled_cost != self.feed_cost or (
                fills is not None and any(p != fills[0][0] for p, _ in fills)
            ):
                provisional = self.filled_cost
                self.filled_cost = self.feed_cost
        return credit, provisional

    def add_fill(self, price: int, lots: int) -> None:
        """Record a fill of ``lots`` at ``price`` ticks that may not exceed the quantity.

        Raises :class:`OrderStateError` for lots <= 0 or an overfill.
        """
        if lots <= 0:
            raise OrderStateError(f"order {self.client_order_id}: fill of {lots} lots")
        if self.filled + lots > self.quantity:
            raise OrderStateError(
                f"order {self.client_order_id}: fills exceed quantity "
                f"({self.filled} + {lots} > {self.quantity})"
            )
        self.credit_fill(price, lots, None)


class ExecutionListener(Protocol):
    """What an order sink reports back (the engine implements it, for its ledger).

    Venue answers arrive parsed into typed reports
    (:mod:`trading_engine.core.reports`); the sink's own decisions arrive
    as statuses and faults.
    """

    def on_written(self, order: Order) -> None:
        """The order's request was written toward the venue (tick-to-trade ends)."""

    def on_report(self, report: OrderReport) -> bool:
        """One order answer (status, cumulative fill, average); False: not taken, read it back."""

    def on_fill(self, fill: FillReport) -> None:
        """One fill (of the venue's fills log, or of the in-process venue)."""

    def on_status(self, client_order_id: str, status: OrderStatus, reason: str | None) -> None:
        """A status the sink decided itself (``unknown``, a local ``rejected``/``canceled``)."""

    def on_order_fault(self, client_order_id: str, kind: str) -> None:
        """Something about the order the sink cannot resolve alone (see ``FAULT_KINDS``)."""

    def resting_orders(self) -> list[Order]:
        """The orders the venue acknowledged and that are still open (for audits)."""

    def order(self, client_order_id: str) -> Order | None:
        """The order tracked under ``client_order_id``, or None (not this engine's, or gone)."""


class OrderSink(Protocol):
    """Where orders go: the in-process venue or the exchange gateway. The whole contract.

    ``submit`` and ``cancel`` are called on the hot path and never block:
    an order is sent now or refused now.
    """

    def allow(self) -> bool:
        """May an order be sent now? (False while a circuit breaker is open.)"""

    def submit(self, order: Order) -> str | None:
        """Send a new order now, or refuse it now: returns the refusal's reason, else None.

        A refused order never left (``rate_limited``, ``halted``); outcomes
        of a sent one arrive through the :class:`ExecutionListener`.
        """

    def cancel(self, order: Order) -> None:
        """Ask to cancel an open order (never two cancels of one order at once)."""

    def start(self) -> None:
        """Start background work (fills polling, audits); needs a running loop."""

    def stop_orders(self) -> None:
        """A halt or stop began: no new order leaves from now on."""

    def resume_orders(self) -> None:
        """Trading resumed: new orders may be sent again."""

    async def drain(self, within_s: float) -> bool:
        """Wait up to ``within_s`` for requests in flight; False if some remain."""

    async def close(self) -> None:
        """Stop everything and release connections."""

    def forget(self, client_order_id: str) -> None:
        """A closed order left the ledger: drop anything kept for it."""

    def not_ready(self) -> str | None:
        """Why the sink cannot trade yet (the venue not reached), or None."""

    def breaker_state(self) -> str:
        """``closed``, ``half_open`` or ``open`` (``closed`` without a breaker)."""
