"""The circuit breaker on a fake clock."""

from __future__ import annotations

from trading_engine.config import BreakerConfig
from trading_engine.core.breaker import BreakerState, CircuitBreaker
from trading_engine.core.clock import ManualClock

MS = 1_000_000


def breaker(**settings: object) -> tuple[CircuitBreaker, ManualClock]:
    base: dict[str, object] = {
        "window_size": 10,
        "minimum_calls": 5,
        "failure_rate_threshold": 0.5,
        "slow_call_s": 0.25,
        "slow_call_rate_threshold": 1.0,
        "open_s": 5.0,
        "half_open_calls": 3,
    }
    base.update(settings)
    clock = ManualClock()
    return CircuitBreaker(BreakerConfig.model_validate(base).settings(), clock.monotonic_ns), clock


def call(cb: CircuitBreaker, failed: bool, duration_ns: int = MS) -> bool:
    if not cb.allow():
        return False
    cb.record(duration_ns, failed)
    return True


def test_stays_closed_below_minimum_calls() -> None:
    cb, _ = breaker()
    for _ in range(4):
        call(cb, failed=True)
    assert cb.state is BreakerState.CLOSED  # 4 < minimum_calls


def test_opens_at_the_failure_rate_threshold() -> None:
    cb, _ = breaker()
    for failed in (False, True, False, True, False):
        call(cb, failed)
    assert cb.state is BreakerState.CLOSED  # 2/5 = 40%
    call(cb, failed=True)  # 3/6 = 50%: at the threshold
    assert cb.state is BreakerState.OPEN
    assert cb.transitions == {("closed", "open"): 1}


def test_sliding_window_forgets_old_calls() -> None:
    cb, _ = breaker(window_size=5, minimum_calls=5)
    for failed in (True, True, False, False, False):
        call(cb, failed)  # 2/5 = 40%
    for _ in range(5):
        call(cb, failed=False)
    call(cb, failed=True)
    call(cb, failed=True)  # window: F F ok ok ok -> 2/5 again
    assert cb.state is BreakerState.CLOSED
    call(cb, failed=True)  # 3/5
    assert cb.state is BreakerState.OPEN


def test_open_denies_at_once_then_half_opens_after_open_s() -> None:
    cb, clock = breaker()
    for _ in range(5):
        call(cb, failed=True)
    assert cb.state is BreakerState.OPEN
    assert not cb.allow()
    clock.advance(4.999)
    assert not cb.allow()
    assert cb.denied == 2
    clock.advance(0.001)
    assert cb.allow()
    assert cb.state is BreakerState.HALF_OPEN


def test_half_open_permits_exactly_the_trial_calls_and_closes() -> None:
    cb, clock = breaker()
    for _ in range(5):
        call(cb, failed=True)
    clock.advance(5)
    assert [cb.allow() for _ in range(4)] == [True, True, True, False]
    cb.record(MS, failed=False)
    cb.record(MS, failed=True)
    assert cb.state is BreakerState.HALF_OPEN
    cb.record(MS, failed=False)  # 1/3 failures < 50%
    assert cb.state is BreakerState.CLOSED
    assert cb.failure_rate == 0.0  # a fresh window


def test_a_closing_breaker_starts_with_an_empty_window() -> None:
    # Opened by five failures, closed by three good trials: the five failures
    # must be gone. A window kept across the close (or its failure and slow
    # counts kept) reopens at the first failure below, or never reopens.
    cb, clock = breaker(slow_call_rate_threshold=0.6)
    for _ in range(5):
        call(cb, failed=True, duration_ns=300 * MS)
    assert cb.state is BreakerState.OPEN
    clock.advance(5)
    for _ in range(3):
        call(cb, failed=False)
    assert cb.state is BreakerState.CLOSED
    assert cb.failure_rate == 0.0
    fresh, _ = breaker(slow_call_rate_threshold=0.6)
    # ok x4, one failure (1/5: closed), then until the window holds 50% failures.
    calls = [(False, MS)] * 4 + [(True, MS)] + [(False, MS)] * 5 + [(True, 300 * MS)] * 4
    states = []
    for failed, duration_ns in calls:
        call(cb, failed, duration_ns)
        call(fresh, failed, duration_ns)
        assert cb.failure_rate == fresh.failure_rate
        states.append((cb.state, fresh.state))
    assert [ours for ours, _ in states] == [theirs for _, theirs in states]
    assert states[4] == (BreakerState.CLOSED, BreakerState.CLOSED)  # 1 failure in 5
    assert states[-1][0] is BreakerState.OPEN  # 5 failures in the last 10


def test_half_open_reopens_on_failed_trials() -> None:
    cb, clock = breaker()
    for _ in range(5):
        call(cb, failed=True)
    clock.advance(5)
    for failed in (True, True, False):
        call(cb, failed)
    assert cb.state is BreakerState.OPEN
    assert cb.transitions[("half_open", "open")] == 1
    assert not cb.allow()  # a full open_s again


def test_slow_calls_open_the_breaker() -> None:
    cb, _ = breaker(slow_call_rate_threshold=0.6)
    for slow in (True, True, False, True, False):
        call(cb, failed=False, duration_ns=300 * MS if slow else MS)
    assert cb.state is BreakerState.OPEN  # 3/5 = 60% slow, no failures at all


def test_late_outcomes_while_open_are_ignored() -> None:
    cb, _ = breaker()
    permitted = [cb.allow() for _ in range(6)]
    assert all(permitted)
    for _ in range(5):
        cb.record(MS, failed=True)
    assert cb.state is BreakerState.OPEN
    cb.record(MS, failed=False)  # the sixth, answered after opening
    assert cb.state is BreakerState.OPEN
