"""The order calls take their arguments the same way in both builds.

``ctx.submit``/``buy``/``sell``/``replace`` accept integers as anything
with ``__index__`` and enums as their values; a float, Fraction or Decimal
price or size is refused ``invalid_order`` (prices are ticks, never a
float); an async hook that awaits where no loop runs is a counted error
that says so; ``BookView`` reads refuse a count that is not an integer.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from fractions import Fraction
from typing import Any, ClassVar

import pytest

from trading_engine import BookView, Strategy
from trading_engine.testing import StrategyHarness


class Lots:
    """An integer that is not an int (as numpy's are): it has ``__index__``."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


class Calls(Strategy):
    """On each book update, makes the call the test put in ``plan``."""

    plan: ClassVar[list[Any]] = []
    denials: ClassVar[list[str | None]] = []

    def on_book(self, book: BookView) -> None:
        if not self.plan:
            return
        call = self.plan.pop(0)
        order = call(self.ctx)
        type(self).denials.append(None if order is not None else self.ctx.last_denial)


def harness(*calls: Any) -> StrategyHarness:
    Calls.plan = list(calls)
    Calls.denials = []
    h = StrategyHarness(Calls, params={})
    h.snapshot(bids=[("100.00", "1")], asks=[("100.10", "1")])
    for _ in calls[1:]:
        h.update(bids=[("100.00", "2")])
    return h


def test_integers_and_enum_values_are_taken_as_ints_and_enums() -> None:
    h = harness(
        lambda ctx: ctx.buy("BTC-USD", Lots(5), Lots(9_990)),
        lambda ctx: ctx.submit("BTC-USD", "sell", 7, 10_020, "limit", "GTC", post_only=True),
        lambda ctx: ctx.sell("BTC-USD", True, 10_030, "IOC"),
    )
    assert Calls.denials == [None, None, None]
    sent = h.sent()
    assert [(o.side, o.quantity, o.price) for o in sent] == [
        ("buy", 5, 9_990),
        ("sell", 7, 10_020),
        ("sell", 1, 10_030),
    ]
    for order in sent:
        assert type(order.quantity) is int
        assert type(order.price) is int
    assert sent[1].post_only is True
    assert str(sent[2].time_in_force) == "IOC"


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda ctx: ctx.buy("BTC-USD", 5, 9_990.0), "invalid_order"),
        (lambda ctx: ctx.buy("BTC-USD", 5, Fraction(9_990)), "invalid_order"),
        (lambda ctx: ctx.buy("BTC-USD", Decimal(5), 9_990), "invalid_order"),
        (lambda ctx: ctx.buy("BTC-USD", 0.005, 9_990), "invalid_order"),
        (lambda ctx: ctx.buy("BTC-USD", 5, 9_990, post_only=1), "invalid_order"),
        (lambda ctx: ctx.buy("BTC-USD", 5, 9_990, "FOK"), "invalid_order"),
        (lambda ctx: ctx.submit("BTC-USD", "long", 5, 9_990), "invalid_order"),
        (lambda ctx: ctx.submit(42, "buy", 5, 9_990), "invalid_order"),
        (lambda ctx: ctx.buy("BTC-USD", 5, 9_990, tag=7), "invalid_tag"),
    ],
)
def test_a_size_or_price_that_is_not_an_integer_is_refused_and_counted(
    call: Any, reason: str
) -> None:
    h = harness(call)
    assert Calls.denials == [reason]
    assert h.sent() == []
    runner = h.engine.dispatcher.runners[0]
    assert runner.denials == {reason: 1}
    assert runner.errors == 0
    assert h.engine.risk.denied[reason] == 1


def test_replace_takes_integers_too() -> None:
    h = harness(
        lambda ctx: ctx.buy("BTC-USD", 5, 9_990),
        lambda ctx: ctx.replace(ctx.open_orders("BTC-USD")[0], Lots(6), Lots(9_980)),
        lambda ctx: ctx.replace(ctx.open_orders("BTC-USD")[0], price=9_970.5),
    )
    assert Calls.denials == [None, None, "invalid_order"]
    assert [(o.quantity, o.price) for o in h.sent()] == [(5, 9_990), (6, 9_980)]


class Awaits(Strategy):
    async def on_book(self, book: BookView) -> None:
        await asyncio.sleep(0)


class Sleeps(Strategy):
    async def on_book(self, book: BookView) -> None:
        await asyncio.sleep(0.01)  # asks for the running loop first


@pytest.mark.parametrize("strategy", [Awaits, Sleeps], ids=["sleep(0)", "sleep(0.01)"])
def test_an_awaiting_hook_without_a_loop_is_a_counted_error_that_says_why(
    strategy: type[Strategy],
) -> None:
    h = StrategyHarness(strategy, params={})
    h.snapshot(bids=[("100.00", "1")], asks=[("100.10", "1")])
    runner = h.engine.dispatcher.runners[0]
    assert runner.errors == 1
    assert runner.in_flight is None
    assert runner.last_error is not None
    assert "must not await" in runner.last_error
    assert runner.last_error.startswith("StrategyError: strategy test: an async hook ")


class Reads(Strategy):
    seen: ClassVar[list[Any]] = []

    def on_book(self, book: BookView) -> None:
        out = type(self).seen
        out.append(book.imbalance(Lots(1)))
        out.append(list(book.bids(Lots(1))))
        out.append(book.depth(Lots(1)))
        for bad in (lambda: book.imbalance(0), lambda: book.bids(1.0), lambda: book.depth("1")):
            try:
                bad()
            except (TypeError, ValueError) as exc:
                out.append(f"{type(exc).__name__}: {exc}")


def test_book_view_counts_are_integers_of_at_least_one_level() -> None:
    Reads.seen = []
    h = StrategyHarness(Reads, params={})
    h.snapshot(bids=[("100.00", "1")], asks=[("100.10", "3")])
    assert Reads.seen == [
        -0.5,
        [(10_000, 1000)],
        ([(10_000, 1000)], [(10_010, 3000)]),
        "ValueError: imbalance: levels must be at least 1, got 0",
        "TypeError: depth must be an integer, got float",
        "TypeError: levels must be an integer, got str",
    ]
