"""Request weight, order counts, 429 and the ban, on a fake clock."""

from __future__ import annotations

import pytest

from trading_engine.sim.binance import LimitSettings, RateLimiter, VenueError

MINUTE = 1_700_000_040_000  # the start of a minute (and of a ten-second window)


def refusal(limiter: RateLimiter, weight: int, now: int) -> VenueError:
    with pytest.raises(VenueError) as refused:
        limiter.admit(weight, now)
    return refused.value


def test_weight_adds_up_in_the_minute_and_starts_again_with_the_next() -> None:
    limiter = RateLimiter(LimitSettings(weight_per_minute=30))
    limiter.admit(20, MINUTE + 1)
    limiter.admit(4, MINUTE + 2)
    assert limiter.used_weight(MINUTE + 3) == 24
    over = refusal(limiter, 20, MINUTE + 30_500)
    assert (over.status, over.code) == (429, -1003)
    assert over.headers["Retry-After"] == "30"  # 29.5 s to the minute's end, rounded up
    assert limiter.used_weight(MINUTE + 60_000) == 0
    limiter.admit(20, MINUTE + 60_000)


def test_requests_during_a_429s_retry_after_lead_to_a_418_ban_that_ends() -> None:
    limiter = RateLimiter(LimitSettings(weight_per_minute=10, ban_after=3, ban_s=120))
    limiter.admit(10, MINUTE)
    assert refusal(limiter, 1, MINUTE + 1).status == 429
    assert refusal(limiter, 1, MINUTE + 2).status == 429  # violation 1
    assert refusal(limiter, 1, MINUTE + 3).status == 429  # violation 2
    ban = refusal(limiter, 1, MINUTE + 4)  # violation 3: banned
    assert (ban.status, ban.code) == (418, -1003)
    assert ban.headers["Retry-After"] == "120"
    assert f"IP banned until {MINUTE + 4 + 120_000}" in ban.msg
    later = refusal(limiter, 1, MINUTE + 100_004)  # still banned, in the next minute
    assert (later.status, later.headers["Retry-After"]) == (418, "20")
    limiter.admit(1, MINUTE + 120_004)  # the ban is over
    assert limiter.counts == {"429": 3, "418": 2, "orders_429": 0, "bans": 1}


def test_a_client_that_waits_out_the_retry_after_is_not_banned() -> None:
    limiter = RateLimiter(LimitSettings(weight_per_minute=10, ban_after=1))
    limiter.admit(10, MINUTE)
    assert refusal(limiter, 1, MINUTE + 1).status == 429
    limiter.admit(1, MINUTE + 60_000)


def test_orders_over_the_ten_second_limit_are_429_with_retry_after() -> None:
    limiter = RateLimiter(LimitSettings(orders_per_10s=2, orders_per_day=10))
    for offset in (0, 1):
        limiter.admit_order(MINUTE + offset)
        limiter.count_order(MINUTE + offset)
    assert limiter.order_counts(MINUTE + 2) == (2, 2)
    with pytest.raises(VenueError) as refused:
        limiter.admit_order(MINUTE + 2_500)
    assert (refused.value.status, refused.value.code) == (429, -1015)
    assert refused.value.headers["Retry-After"] == "8"
    assert "2 orders per 10 SECOND" in refused.value.msg
    limiter.admit_order(MINUTE + 10_000)
    assert limiter.order_counts(MINUTE + 10_000) == (0, 2)
