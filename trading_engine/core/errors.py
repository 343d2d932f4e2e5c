"""The engine's one exception tree.

Every error the engine raises on purpose derives from :class:`EngineError`.
Third-party errors (orjson, pydantic, httpx) are translated at the boundary
with ``raise X(...) from exc``::

    EngineError
    ├── ConfigError              invalid configuration file, value or override
    ├── InvalidValue             a wire price or size that cannot be taken (has .reason)
    ├── UnreadableAnswer         a venue answer outside the contract or its bounds
    ├── StrategyError            a strategy could not be loaded or configured
    ├── OrderStateError          an order was moved along a transition that does not exist
    │   └── DuplicateFill        a fill id already counted for the order came again
    └── InvariantError           an internal consistency check failed (a bug)

Hot paths never build an exception for an expected event: the decoder and
the book builder return reason codes instead (a bad frame or a bad peer is
a :class:`~trading_engine.core.protocol.Reason`, counted, never raised),
and only the instrument conversions raise :class:`InvalidValue`, which the
decoder turns into a reason.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DuplicateFill",
    "EngineError",
    "InvalidValue",
    "InvariantError",
    "OrderStateError",
    "StrategyError",
    "UnreadableAnswer",
]


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(EngineError):
    """The configuration is invalid.

    ``problems`` lists one human-readable line per invalid key, each naming
    the key, the value and what was expected.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems if problems is not None else [message]


class InvalidValue(EngineError):
    """A price or size that cannot be converted to the instrument's grid.

    ``reason`` is a short machine-readable code: ``malformed``, ``negative``,
    ``zero``, ``not_finite``, ``too_large``, ``off_tick`` or ``off_lot``.
    """

    def __init__(self, reason: str, value: object) -> None:
        super().__init__(f"{reason}: {value!r}")
        self.reason = reason
        self.value = value


class UnreadableAnswer(EngineError):
    """A venue's answer about an order or a fill that the engine cannot take.

    Outside the exchange API (a missing field, an out-of-contract status) or
    outside sane bounds (an exponent, too many digits, a price <= 0 on a
    filled quantity). The answer says nothing: the order is settled by
    reading it back, never guessed.
    """


class InvariantError(EngineError):
    """An internal invariant does not hold. Always a bug in the engine."""


class StrategyError(EngineError):
    """A strategy could not be loaded, or its params are invalid.

    ``problems`` lists one line per problem, each starting with its key
    path inside the strategy's ``[[strategies]]`` entry (``class: ...``,
    ``params.quantity: ...``); the engine prefixes ``strategies[i].``.
    The message names the strategy when the raiser knows it.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems if problems is not None else [message]


class OrderStateError(EngineError):
    """An order state transition that the state machine does not allow."""


class DuplicateFill(OrderStateError):
    """A fill whose ``fill_id`` the order has already counted (it is ignored)."""
