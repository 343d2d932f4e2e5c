"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from collections.abc import Callable

import pytest


async def wait_until(predicate: Callable[[], bool], within_s: float = 5.0, what: str = "") -> None:
    """Poll ``predicate`` until it is true; fail the test after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what or predicate}")
        await asyncio.sleep(0.005)


def ci_binary(name: str) -> str:
    """The path of a program the CI installs (``promtool``, ``prometheus``).

    Missing: the test fails under CI (``.ci/run`` installs it) and is
    skipped elsewhere.
    """
    binary = shutil.which(name)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return binary


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive TCP ports free on 127.0.0.1 right now."""
    for _ in range(200):
        base = free_port()
        if base + count > 65535:
            continue
        sockets = []
        try:
            for offset in range(count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise RuntimeError(f"no {count} consecutive free ports found")


def free_port_ranges(*counts: int) -> tuple[int, ...]:
    """The first ports of disjoint runs of ``counts`` consecutive free ports.

    Separate ``free_port_range`` calls can return the same port (each closes
    its probe sockets), so a feed range and an admin range taken that way may
    collide; this takes one run and splits it.
    """
    base = free_port_range(sum(counts))
    firsts = []
    for count in counts:
        firsts.append(base)
        base += count
    return tuple(firsts)
