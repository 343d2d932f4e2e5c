"""The venue's limits: request weight, unfilled order count, 429 and the 418 ban.

Pure: the clock (wall milliseconds) is passed in. The venue counts in fixed
windows aligned to its clock (a one-minute window starts every minute, a
ten-second one at 00, 10, 20... seconds, a day at 00:00 UTC):

* every request adds its endpoint's weight to the minute's
  ``REQUEST_WEIGHT``; past ``weight_per_minute`` it is answered 429
  (``-1003``) with ``Retry-After`` (seconds to the end of the minute), and
  nothing is done;
* every order taken adds one to the ten-second and the day's ``ORDERS``
  count; an order past either limit is answered 429 (``-1015``) with
  ``Retry-After``;
* a client that keeps sending while a weight 429's ``Retry-After`` runs is
  banned after ``ban_after`` such requests: every request is then answered
  418 (``-1003``, "IP banned until ...") with ``Retry-After`` the seconds
  left of the ban, ``ban_s`` long.

Simplified: the venue tracks weight by IP and orders by account; the
simulator has one client and counts both once. The venue lowers the order
count when orders fill; the simulator does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .errors import VenueError

__all__ = ["LimitSettings", "RateLimiter"]

_MINUTE_MS: Final = 60_000
_TEN_SECONDS_MS: Final = 10_000
_DAY_MS: Final = 86_400_000


@dataclass(frozen=True)
class LimitSettings:
    """The limits (the venue's defaults) and how quickly the ban comes."""

    weight_per_minute: int = 6000
    orders_per_10s: int = 100
    orders_per_day: int = 200_000
    #: Requests sent while a 429's Retry-After runs before the client is banned.
    ban_after: int = 5
    #: How long a ban lasts (the venue's shortest: two minutes).
    ban_s: int = 120

    def rate_limits(self) -> list[dict[str, object]]:
        """The ``rateLimits`` of exchangeInfo."""
        return [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": self.weight_per_minute},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
             "limit": self.orders_per_10s},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1,
             "limit": self.orders_per_day},
        ]  # fmt: skip


def _seconds_until(now_ms: int, end_ms: int) -> int:
    """Whole seconds from ``now_ms`` to ``end_ms``, rounded up, at least 1."""
    return max(1, -(-(end_ms - now_ms) // 1000))


class _Window:
    """A count in fixed windows of ``length_ms`` aligned to the clock."""

    __slots__ = ("count", "length_ms", "start_ms")

    def __init__(self, length_ms: int) -> None:
        self.length_ms = length_ms
        self.start_ms = -1
        self.count = 0

    def current(self, now_ms: int) -> int:
        start = now_ms - now_ms % self.length_ms
        if start != self.start_ms:
            self.start_ms, self.count = start, 0
        return self.count

    def end_ms(self) -> int:
        return self.start_ms + self.length_ms


class RateLimiter:
    """The weight and order counters of the simulated venue, and its ban.

    Every method takes the venue's clock in wall milliseconds; O(1) each.
    """

    def __init__(self, settings: LimitSettings | None = None) -> None:
        self.settings = settings or LimitSettings()
        self._weight = _Window(_MINUTE_MS)
        self._orders_10s = _Window(_TEN_SECONDS_MS)
        self._orders_day = _Window(_DAY_MS)
        self._backoff_until_ms = 0
        self._violations = 0
        self.banned_until_ms = 0
        #: Answers by kind: ``429``, ``418``, ``orders_429``, ``bans``.
        self.counts: dict[str, int] = {"429": 0, "418": 0, "orders_429": 0, "bans": 0}

    def backing_off(self, now_ms: int) -> bool:
        """Whether a 429's ``Retry-After`` still runs: requests now count towards a ban."""
        return now_ms < self._backoff_until_ms

    def used_weight(self, now_ms: int) -> int:
        """The minute's weight so far (the ``X-MBX-USED-WEIGHT-1M`` header)."""
        return self._weight.current(now_ms)

    def order_counts(self, now_ms: int) -> tuple[int, int]:
        """The ten-second and the day's order counts (``X-MBX-ORDER-COUNT-10S`` and ``-1D``)."""
        return self._orders_10s.current(now_ms), self._orders_day.current(now_ms)

    def admit(self, weight: int, now_ms: int) -> None:
        """Count a request of ``weight``; raise the 418 or 429 answer when it is refused."""
        if self.banned_until_ms > now_ms:
            self.counts["418"] += 1
            raise self._banned(now_ms)
        if self.banned_until_ms:
            self.banned_until_ms = 0
            self._violations = 0
            self._backoff_until_ms = 0
        if now_ms < self._backoff_until_ms:
            self._violations += 1
            if self._violations >= self.settings.ban_after:
                self.banned_until_ms = now_ms + self.settings.ban_s * 1000
                self.counts["bans"] += 1
                self.counts["418"] += 1
                raise self._banned(now_ms)
        self._weight.current(now_ms)
        self._weight.count += weight
        if self._weight.count > self.settings.weight_per_minute:
            self.counts["429"] += 1
            end = self._weight.end_ms()
            self.note_429(now_ms, end)
            raise VenueError(
                429,
                -1003,
                f"Too much request weight used; current limit is "
                f"{self.settings.weight_per_minute} request weight per 1 MINUTE. "
                "Please use WebSocket Streams for live updates to avoid polling the API.",
                {"Retry-After": str(_seconds_until(now_ms, end))},
            )

    def note_429(self, now_ms: int, until_ms: int) -> None:
        """A 429 was answered: requests before ``until_ms`` count towards a ban."""
        if until_ms > self._backoff_until_ms:
            self._backoff_until_ms = until_ms

    def admit_order(self, now_ms: int) -> None:
        """Refuse a new order over the order-count limits (429, ``-1015``)."""
        settings = self.settings
        for window, limit, name in (
            (self._orders_10s, settings.orders_per_10s, "10 SECOND"),
            (self._orders_day, settings.orders_per_day, "1 DAY"),
        ):
            if window.current(now_ms) >= limit:
                self.counts["orders_429"] += 1
                raise VenueError(
                    429,
                    -1015,
                    f"Too many new orders; current limit is {limit} orders per {name}.",
                    {"Retry-After": str(_seconds_until(now_ms, window.end_ms()))},
                )

    def count_order(self, now_ms: int) -> None:
        """An order was taken."""
        for window in (self._orders_10s, self._orders_day):
            window.current(now_ms)
            window.count += 1

    def _banned(self, now_ms: int) -> VenueError:
        until = self.banned_until_ms
        return VenueError(
            418,
            -1003,
            f"Way too much request weight used; IP banned until {until}. "
            "Please use WebSocket Streams for live updates to avoid bans.",
            {"Retry-After": str(_seconds_until(now_ms, until))},
        )
