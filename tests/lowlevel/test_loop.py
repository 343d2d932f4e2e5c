"""The priority event loop: ordering, polling, fairness, asyncio compatibility."""

from __future__ import annotations

import asyncio
import contextvars
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from tests.helpers import wait_until
from trading_engine.core.errors import ConfigError
from trading_engine.lowlevel.loop import (
    PRIORITY,
    Priority,
    PriorityEventLoop,
    critical,
    mark_critical,
    new_event_loop,
    unmark_critical,
)


def run(main: Callable[[], Coroutine[Any, Any, Any]], **options: Any) -> Any:
    with asyncio.Runner(loop_factory=lambda: PriorityEventLoop(**options)) as runner:
        return runner.run(main())


def test_critical_task_runs_before_normal_tasks_created_earlier() -> None:
    order: list[str] = []

    async def work(name: str) -> None:
        order.append(name)
        await asyncio.sleep(0)
        order.append(name + "2")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, PriorityEventLoop)
        tasks = [loop.create_task(work(f"n{i}")) for i in range(3)]
        tasks.append(loop.create_task(work("c"), priority=Priority.CRITICAL))
        await asyncio.gather(*tasks)

    run(main)
    # The critical task's first and second steps both run ahead of the normal ones.
    assert order[0] == "c"
    assert order.index("c2") < order.index("n0")


def test_critical_decorator_marks_the_coroutine_function() -> None:
    seen: list[Priority] = []

    @critical
    async def urgent() -> None:
        seen.append(PRIORITY.get())

    async def normal() -> None:
        seen.append(PRIORITY.get())

    async def main() -> None:
        await asyncio.gather(asyncio.create_task(normal()), asyncio.create_task(urgent()))

    run(main)
    assert seen == [Priority.CRITICAL, Priority.NORMAL]


def test_work_scheduled_by_critical_code_inherits_its_priority() -> None:
    seen: dict[str, Priority] = {}

    async def child() -> None:
        seen["child task"] = PRIORITY.get()

    @critical
    async def parent() -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: seen.__setitem__("callback", PRIORITY.get()))
        loop.call_later(0.001, lambda: seen.__setitem__("timer", PRIORITY.get()))
        await asyncio.create_task(child())
        background = loop.create_task(_read_priority(seen), priority=Priority.NORMAL)
        await background
        await asyncio.sleep(0.01)

    async def main() -> None:
        await asyncio.create_task(parent())

    run(main)
    assert seen == {
        "callback": Priority.CRITICAL,
        "timer": Priority.CRITICAL,
        "child task": Priority.CRITICAL,
        "explicit normal": Priority.NORMAL,
    }


async def _read_priority(seen: dict[str, Priority]) -> None:
    seen["explicit normal"] = PRIORITY.get()


def test_call_critical_jumps_the_ready_queue() -> None:
    order: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, PriorityEventLoop)
        for i in range(100):
            loop.call_soon(order.append, f"n{i}")
        loop.call_critical(order.append, "c")
        await asyncio.sleep(0.01)

    run(main)
    assert order[0] == "c"
    assert len(order) == 101


class _Sink(asyncio.Protocol):
    def __init__(self, arrivals: list[int]) -> None:
        self.arrivals = arrivals
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        mark_critical(transport)

    def data_received(self, data: bytes) -> None:
        self.arrivals.append(time.perf_counter_ns())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            unmark_critical(self.transport)


def _busy_tasks(count: int, stop: asyncio.Event, work_us: float) -> list[asyncio.Task[None]]:
    async def busy() -> None:
        while not stop.is_set():
            end = time.perf_counter() + work_us / 1e6
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)

    return [asyncio.create_task(busy()) for _ in range(count)]


def _tick_latencies(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> list[float]:
    """Send ticks to a critical connection while 2,000 tasks are busy; latency in ms."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        arrivals: list[int] = []
        server = await loop.create_server(lambda: _Sink(arrivals), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sender = socket.create_connection(("127.0.0.1", port))
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stop = asyncio.Event()
        tasks = _busy_tasks(2000, stop, work_us=20)
        await asyncio.sleep(0.05)
        sent: list[int] = []
        for _ in range(10):
            # The send happens between loop callbacks, as a peer's would.
            loop.call_soon_threadsafe(lambda: None)
            sent.append(time.perf_counter_ns())
            sender.send(b"x")
            await asyncio.sleep(0.005)
            await wait_until(lambda: len(arrivals) >= len(sent), 10.0, "the tick")
        stop.set()
        await asyncio.gather(*tasks)
        sender.close()
        server.close()
        await server.wait_closed()
        return [(a - s) / 1e6 for s, a in zip(sent, arrivals, strict=True)]

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result: list[float] = runner.run(main())
        return result


def test_critical_socket_is_read_between_background_callbacks() -> None:
    # 2,000 busy tasks of 20 us each make one stock iteration take 40 ms or more.
    priority = _tick_latencies(lambda: PriorityEventLoop(critical_poll_s=50e-6))
    stock = _tick_latencies(asyncio.SelectorEventLoop)
    # Bounds an order of magnitude apart, so scheduling noise cannot flip them.
    assert sorted(priority)[5] < 5.0, priority
    assert sorted(stock)[5] > 20.0, stock


def test_background_work_is_not_starved_by_a_critical_busy_loop() -> None:
    async def main() -> tuple[int, float]:
        stop = asyncio.Event()

        @critical
        async def hog() -> None:
            while not stop.is_set():
                end = time.perf_counter() + 0.0005
                while time.perf_counter() < end:
                    pass
                await asyncio.sleep(0)

        hogs = [asyncio.create_task(hog()) for _ in range(4)]
        started = time.perf_counter()
        done = 0
        for _ in range(50):
            await asyncio.sleep(0)
            done += 1
        elapsed = time.perf_counter() - started
        stop.set()
        await asyncio.gather(*hogs)
        return done, elapsed

    done, elapsed = run(main)
    # Each background step waits for at most one round of the 4 hogs (2 ms).
    assert done == 50
    assert elapsed < 50 * 0.0025 * 4, elapsed


def test_critical_share_leaves_background_its_time() -> None:
    """Mid-batch drains wait while critical work is over its share."""

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, PriorityEventLoop)
        stop = asyncio.Event()
        progress = [0]

        def spin(seconds: float) -> None:
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass

        def critical_again() -> None:
            spin(0.001)  # 1 ms of critical work, rescheduled forever
            if not stop.is_set():
                loop.call_critical(critical_again)

        async def background() -> None:
            while not stop.is_set():
                spin(0.0001)
                progress[0] += 1
                await asyncio.sleep(0)

        tasks = [asyncio.create_task(background()) for _ in range(10)]
        loop.call_critical(critical_again)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*tasks)
        return progress[0], loop.stats.share_deferrals

    progress, deferrals = run(main, critical_share=0.5)
    # 0.3 s with at least half for 0.1 ms steps: well over 300 steps.
    assert progress > 300, progress
    assert deferrals > 0


def test_slow_callbacks_are_counted() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, PriorityEventLoop)
        loop.call_soon(time.sleep, 0.02)
        loop.call_critical(time.sleep, 0.02)
        await asyncio.sleep(0.05)
        return loop.stats.slow_callbacks

    assert run(main, slow_callback_s=0.01) == 2


def test_asyncio_apis_work_on_the_priority_loop(tmp_path: Any) -> None:
    async def main() -> None:
        # Streams and servers.
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello\n")
        assert await reader.readline() == b"hello\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        # Subprocesses.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print(6 * 7)", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        assert out.strip() == b"42"
        # Threads, timeouts, cancellation.
        assert await asyncio.to_thread(sum, [1, 2, 3]) == 6
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(1)
        task = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Context variables still flow as usual.
        var: contextvars.ContextVar[int] = contextvars.ContextVar("var", default=0)
        var.set(5)
        assert await asyncio.create_task(_get(var)) == 5
        # call_soon_threadsafe from another thread.
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        await asyncio.to_thread(loop.call_soon_threadsafe, future.set_result, 7)
        assert await future == 7

    run(main)


async def _get(var: contextvars.ContextVar[int]) -> int:
    return var.get()


def test_mark_critical_is_a_no_op_on_other_loops() -> None:
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        marked = mark_critical(transport)
        unmark_critical(transport)
        transport.close()
        server.close()
        await server.wait_closed()
        return marked

    assert asyncio.run(main()) is False


def test_marking_a_connected_socket_moves_its_reader() -> None:
    async def main() -> list[Priority]:
        loop = asyncio.get_running_loop()
        received = asyncio.Event()
        seen: list[Priority] = []
        accepted: list[asyncio.BaseTransport] = []

        class Accepting(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.append(transport)

        class Reader(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                seen.append(PRIORITY.get())
                received.set()

        server = await loop.create_server(Accepting, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(Reader, "127.0.0.1", port)
        assert mark_critical(transport)  # after connecting: the reader is re-registered
        await wait_until(lambda: bool(accepted), 5.0, "the connection")
        accepted[0].write(b"tick")  # type: ignore[attr-defined]
        await received.wait()
        unmark_critical(transport)
        transport.close()
        accepted[0].close()
        server.close()
        await server.wait_closed()
        return seen

    assert run(main) == [Priority.CRITICAL]


def test_new_event_loop_choices() -> None:
    priority = new_event_loop("priority")
    assert isinstance(priority, PriorityEventLoop)
    priority.close()
    stock = new_event_loop("asyncio")
    assert type(stock) is asyncio.SelectorEventLoop
    stock.close()
    with pytest.raises(ConfigError):
        new_event_loop("nonsense")


def test_priority_falls_back_to_asyncio_on_an_unpinned_python(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import trading_engine.lowlevel.loop as loop_module

    monkeypatch.setattr(loop_module, "SUPPORTED_PYTHONS", ((3, 0),))
    loop = new_event_loop("priority")
    try:
        assert type(loop) is asyncio.SelectorEventLoop
    finally:
        loop.close()
    assert "running the stock asyncio loop" in caplog.text
    with pytest.raises(ConfigError):
        PriorityEventLoop()


def test_create_task_helper_works_on_every_loop() -> None:
    from trading_engine.lowlevel.loop import create_task

    async def read() -> Priority:
        return PRIORITY.get()

    @critical
    async def from_critical() -> tuple[Priority, Priority]:
        inherited = await create_task(read())
        background = await create_task(read(), priority=Priority.NORMAL)
        return inherited, background

    async def main() -> tuple[Priority, Priority]:
        return await asyncio.create_task(from_critical())

    assert run(main) == (Priority.CRITICAL, Priority.NORMAL)
    # Stock asyncio: the priority is ignored, the task runs.
    assert asyncio.run(main()) == (Priority.NORMAL, Priority.NORMAL)


def test_critical_drain_runs_chains_in_rounds_but_at_most_eight() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, PriorityEventLoop)
        steps = [0]
        seen_at: list[int] = []

        def again() -> None:  # critical work that reschedules itself forever
            steps[0] += 1
            if steps[0] < 1000:
                loop.call_critical(again)

        loop.call_critical(again)
        loop.call_soon(lambda: seen_at.append(steps[0]))
        await asyncio.sleep(0.01)
        return seen_at[0]

    # The chain ran several rounds before the normal callback: at most 8 at
    # the iteration's start, plus one mid-batch round if main's own step
    # took longer than critical_poll_s.
    assert 2 <= run(main) <= 9
