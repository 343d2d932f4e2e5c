from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from trading_engine.lowlevel.logs import JsonFormatter

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect garbage after each test, so a resource a test leaks (an unclosed
    socket's ResourceWarning) fails that test, not whichever test the
    collector happens to run in later."""
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def _restore_log_level() -> Iterator[None]:
    """Give the next test the root logger's level as this one found it,
    commands run in-process (``bench``, ``feed``, ``run``) configure logging
    for a real process, and a root level of ``error`` left behind would hide
    the warnings a later test's ``caplog`` looks for."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)
    # And without the JSON handlers they installed (their streams may be closed).
    for handler in list(root.handlers):
        if isinstance(handler.formatter, JsonFormatter):
            root.removeHandler(handler)
