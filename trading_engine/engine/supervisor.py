"""Per-core workers: ``trading-engine run --workers N``.

The supervisor starts N worker processes, each a plain ``trading-engine
run`` with its own event loop and these settings overridden through the
environment (the same mechanism docker-compose uses)::

    worker i:  engine.shard = i, engine.shards = N
               feed.port    = feed.port + i        (market data for its shard)
               admin.host   = 127.0.0.1
               admin.port   = admin.port + 1 + i   (scraped by the supervisor)
               feed.capture_path = <path>.<i>      (when capturing)

and serves the admin API on ``admin.host:admin.port`` for all of them:
``/metrics`` merges every worker's exposition with a ``worker`` label and
adds ``trading_engine_worker_up``, ``trading_engine_worker_restarts_total``
and the supervisor's own ``process_*``, ``python_gc_*`` and ``python_info``
(label ``worker="supervisor"``); parsing and rendering run in a thread,
off the supervisor's loop, which places no orders;
``/status`` merges books, positions and strategies (shards own disjoint
symbols) and lists the workers; ``/halt``, ``/reduce`` and ``/resume`` check
the token and are forwarded to every worker.

The supervisor remembers the trading state last set through it and
makes every worker hold it: a worker that did not answer the switch (still
starting: its admin API is not listening yet) gets it again every 0.2 s
until its admin API answers; a worker it starts or restarts gets it in its
environment (``[engine] initial_trading_state``). A worker's start-up takes
the strictest of that state and its own journal's (halted > reducing >
active), so a worker restarted after its own risk or journal halt stays
halted even when the supervisor's last word was ``/resume``.

A worker that exits while the supervisor is running is restarted after a
back-off that doubles on each quick failure (up to 10 s). Each worker keeps
its own journal: ``journal.path`` with the worker's index before the
suffix (``state/journal.0.db``). SIGTERM or SIGINT
stop the supervisor, which sends SIGTERM to every worker and waits for them
(SIGKILL after ``stop_timeout_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import httpx
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from ..config import ENV_PREFIX, Config
from ..core.errors import ConfigError
from ..core.sharding import shard_of
from ..io.admin import admin_app, authorize
from ..io.journal import lock_deployment
from ..io.webserver import json_response, listen_error, serve
from ..lowlevel.build import BUILD
from ..lowlevel.metrics import register_process_collectors
from ..lowlevel.tasks import TaskCrashes, cancel_and_wait
from .notices import admin_token_notice

__all__ = ["Supervisor", "Worker", "merged_exposition", "worker_environment"]

log = logging.getLogger("trading_engine.supervisor")

_MAX_BACKOFF_S = 10.0
#: A worker's exit code for its configuration, or a venue refusing it: never restarted.
_EXIT_USAGE = 2
_STABLE_AFTER_S = 30.0  # a worker up this long resets its back-off
_TRADING_ORDER = {"active": 0, "reducing": 1, "halted": 2}
_BREAKER_ORDER = {"closed": 0, "half_open": 1, "open": 2}
_SWITCHED_TO = {"/halt": "halted", "/reduce": "reducing", "/resume": "active"}
_SWITCH_PATH = {state: path for path, state in _SWITCHED_TO.items()}
_DELIVERY_RETRY_S = 0.2


def worker_environment(config: Config, index: int, count: int) -> dict[str, str]:
    """The environment overrides that make a ``run`` process worker ``index`` of ``count``."""
    env = {
        f"{ENV_PREFIX}ENGINE__SHARD": str(index),
        f"{ENV_PREFIX}ENGINE__SHARDS": str(count),
        f"{ENV_PREFIX}FEED__PORT": str(config.feed.port + index),
        f"{ENV_PREFIX}ADMIN__HOST": "127.0.0.1",
        f"{ENV_PREFIX}ADMIN__PORT": str(config.admin.port + 1 + index),
    }
    if config.feed.capture_path:
        env[f"{ENV_PREFIX}FEED__CAPTURE_PATH"] = f"{config.feed.capture_path}.{index}"
    if config.journal.path != ":memory:":
        # One journal per process: state/journal.db -> state/journal.0.db, ...
        path = PurePath(config.journal.path)
        env[f"{ENV_PREFIX}JOURNAL__PATH"] = str(path.with_name(f"{path.stem}.{index}{path.suffix}"))
    return env


class Worker:
    """One worker process and its restart history."""

    def __init__(self, index: int, config: Config, count: int) -> None:
        self.index = index
        self.env = worker_environment(config, index, count)
        self.feed_port = config.feed.port + index
        self.admin_port = config.admin.port + 1 + index
        #: The symbols of this worker's shard.
        self.symbols = tuple(
            item.symbol for item in config.instruments if shard_of(item.symbol, count) == index
        )
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.backoff_s = 0.5
        #: The supervisor's trading state this process is known to hold (through
        #: its environment at start, or a switch its admin API answered 200).
        self.delivered: str | None = None
        #: The state this process refused to switch to (409: after a fills-log reset it
        #: trades no more): not retried until another state is asked or it restarts.
        self.refused: str | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def describe(self) -> dict[str, Any]:
        return {
            "worker": self.index,
            "pid": self.process.pid if self.process else None,
            "alive": self.alive,
            "restarts": self.restarts,
            "feed_port": self.feed_port,
            "admin_port": self.admin_port,
            # The switch it refused (409), not asked again: it is not pending.
            "refused": self.refused,
        }


def _not_ready_reason(answer: httpx.Response | None) -> str:
    """Why a worker's ``/readyz`` said no: its own reason, else what it answered."""
    if answer is None:
        return "no answer"
    try:
        reason = answer.json().get("reason")
    except (ValueError, AttributeError):
        reason = None
    return str(reason) if reason else f"HTTP {answer.status_code}"


class Supervisor:
    """Runs and watches the workers; serves the combined admin API."""

    def __init__(
        self,
        config: Config,
        workers: int,
        *,
        config_path: str | None = None,
        environ: Mapping[str, str] | None = None,
        stop_timeout_s: float = 10.0,
        command: Sequence[str] | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError("--workers must be at least 1", ["--workers must be at least 1"])
        problems = []
        if config.feed.port == 0:
            problems.append("feed.port: workers need a fixed port (worker i listens on port + i)")
        if config.admin.port == 0:
            problems.append("admin.port: workers need a fixed port (worker i uses port + 1 + i)")
        if config.feed.port + workers - 1 > 65535 or config.admin.port + workers > 65535:
            problems.append("feed.port/admin.port: too high for this many workers")
        if problems:
            raise ConfigError(f"cannot run {workers} workers", problems)
        self.config = config
        self.environ = dict(os.environ if environ is None else environ)
        self.workers = [Worker(i, config, workers) for i in range(workers)]
        self.stop_timeout_s = stop_timeout_s
        base = [sys.executable, "-m", "trading_engine", "run"]
        if config_path is not None:
            base += ["--config", config_path]
        self.command = list(command) if command is not None else base
        self.token = self.environ.get(config.admin.token_env) or None
        self.port = config.admin.port
        #: The supervisor's own process, GC and platform metrics.
        self.registry = CollectorRegistry(auto_describe=False)
        register_process_collectors(self.registry)
        self._stop = asyncio.Event()
        #: The command's exit code: 2 once a worker exited 2 (then every worker stops).
        self.exit_code = 0
        self._watchers: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._client: httpx.AsyncClient | None = None
        #: The trading state last set through this supervisor (None: never).
        #: Every worker is brought to it (see the module's docstring).
        self.trading_state: str | None = None
        #: Crashes of the supervisor's own tasks (watchers, delivery), by kind.
        self.task_crashes = TaskCrashes(kinds=("watch-worker", "deliver-state"))
        self._deliveries = asyncio.Lock()
        #: The lock on ``journal.path`` held while the deployment runs.
        self._deployment_lock: int | None = None
        self._undelivered = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def run(self, duration_s: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        try:
            await self.start()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration_s):
                    await self._stop.wait()
        finally:
            await self.shutdown()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    async def start(self) -> None:
        """Lock the deployment's journal path, serve the admin API, start the workers.

        Raises :class:`~trading_engine.io.journal.JournalLocked` when another
        engine or supervisor runs on ``journal.path`` (exit 2).
        """
        if self._deployment_lock is None:
            self._deployment_lock = lock_deployment(self.config.journal.path)
        self._client = httpx.AsyncClient(timeout=2.0)
        try:
            self._runner, self.port = await serve(self.app(), self.config.admin.host, self.port)
        except OSError as exc:
            raise listen_error("admin", self.config.admin.host, self.port, exc) from exc
        if (notice := admin_token_notice(self.config.admin.token_env, self.environ)) is not None:
            log.warning("%s", notice)
        for worker in self.workers:
            await self._spawn(worker)
            self._watchers.append(
                self.task_crashes.spawn(
                    self._watch(worker), name=f"watch-worker-{worker.index}", kind="watch-worker"
                )
            )
        self._watchers.append(
            self.task_crashes.spawn(
                self._deliver_forever(), name="deliver-state", kind="deliver-state"
            )
        )
        log.info(
            "supervising %d workers; combined admin API on http://%s:%d",
            len(self.workers),
            self.config.admin.host,
            self.port,
        )

    async def shutdown(self) -> None:
        self._stop.set()
        for task in self._watchers:
            await cancel_and_wait(task)
        self._watchers.clear()
        await asyncio.gather(*(self._terminate(worker) for worker in self.workers))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._deployment_lock is not None:
            os.close(self._deployment_lock)
            self._deployment_lock = None

    async def _spawn(self, worker: Worker) -> None:
        env = {**self.environ, **worker.env}
        if self.config.journal.accept_new_venue and worker.restarts == 0:
            # ``run --workers N --accept-new-venue`` (or the key): each worker's
            # first start accepts a new venue. A restart after a crash does not:
            # it must stop at the venue check like any start.
            env[f"{ENV_PREFIX}JOURNAL__ACCEPT_NEW_VENUE"] = "true"
        if self.trading_state is not None:
            env[f"{ENV_PREFIX}ENGINE__INITIAL_TRADING_STATE"] = self.trading_state
        worker.delivered = self.trading_state
        worker.refused = None
        worker.process = await asyncio.create_subprocess_exec(
            *self.command, env=env, preexec_fn=_terminate_with_parent
        )
        worker.started_at = time.monotonic()
        log.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    async def _watch(self, worker: Worker) -> None:
        while not self._stop.is_set():
            assert worker.process is not None
            code = await worker.process.wait()
            if self._stop.is_set():
                return
            uptime = time.monotonic() - worker.started_at
            if code == _EXIT_USAGE:
                # Its configuration, or the venue refusing it (a key, another venue):
                # a restart would fail the same way, one more request to the venue each.
                log.error(
                    "worker %d exited with code 2 (its configuration or the venue refuses "
                    "it; its log says which): stopping every worker",
                    worker.index,
                )
                self.exit_code = _EXIT_USAGE
                self.stop()
                return
            if uptime >= _STABLE_AFTER_S:
                worker.backoff_s = 0.5
            log.error(
                "worker %d exited with code %s after %.1f s; restarting in %.1f s",
                worker.index,
                code,
                uptime,
                worker.backoff_s,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(worker.backoff_s):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            worker.backoff_s = min(worker.backoff_s * 2, _MAX_BACKOFF_S)
            worker.restarts += 1
            await self._spawn(worker)

    async def _terminate(self, worker: Worker) -> None:
        process = worker.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(self.stop_timeout_s):
                await process.wait()
        except TimeoutError:
            log.error("worker %d did not stop in time; killing it", worker.index)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    # -- the combined admin API -----------------------------------------------------------

    def app(self) -> web.Application:
        forward = self._forward
        return admin_app(
            self._metrics,
            self._healthz,
            self._readyz,
            self._status,
            {"/halt": forward, "/reduce": forward, "/resume": forward},
        )

    async def _ask(self, worker: Worker, path: str, **kwargs: Any) -> httpx.Response | None:
        if not worker.alive or self._client is None:
            return None
        method = kwargs.pop("method", "GET")
        try:
            return await self._client.request(
                method, f"http://127.0.0.1:{worker.admin_port}{path}", **kwargs
            )
        except httpx.HTTPError:
            return None

    async def _ask_all(self, path: str, **kwargs: Any) -> list[httpx.Response | None]:
        return list(
            await asyncio.gather(*(self._ask(worker, path, **kwargs) for worker in self.workers))
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        answers = await self._ask_all("/metrics")
        state = self.trading_state
        scraped = [
            (
                worker.index,
                worker.restarts,
                answer.text if answer is not None and answer.status_code == 200 else None,
                state is not None and worker.delivered != state and worker.refused != state,
            )
            for worker, answer in zip(self.workers, answers, strict=True)
        ]
        crashes = dict(self.task_crashes.counts)
        # Parsing the workers' text is pure Python and grows with their
        # series: a thread, so the loop goes on forwarding /halt meanwhile.
        body = await asyncio.to_thread(merged_exposition, scraped, self.registry, crashes)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        # As a single engine's: the supervisor's own event loop turns. The
        # workers' health is in /readyz and /status (``workers``).
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        """Ready when every worker is: the body of a single engine's ``/readyz``."""
        answers = await self._ask_all("/readyz")
        failing = [
            worker.index
            for worker, answer in zip(self.workers, answers, strict=True)
            if answer is None or answer.status_code != 200
        ]
        if failing:
            reasons = {
                worker.index: _not_ready_reason(answer)
                for worker, answer in zip(self.workers, answers, strict=True)
                if worker.index in failing
            }
            reason = "; ".join(f"worker {index}: {why}" for index, why in reasons.items())
            return json_response(
                {"ready": False, "reason": reason, "failing_workers": failing}, 503
            )
        return json_response({"ready": True, "workers": len(self.workers)}, 200)

    async def _status(self, request: web.Request) -> web.Response:
        answers = await self._ask_all("/status")
        documents = [
            answer.json() if answer is not None and answer.status_code == 200 else None
            for answer in answers
        ]
        workers = [w.describe() for w in self.workers]
        for described, document in zip(workers, documents, strict=True):
            described["trading_state"] = None if document is None else document["trading_state"]
            # Each worker reconciles and journals on its own: show each one's.
            for key in ("reconciliation", "journal", "venue"):
                described[key] = None if document is None else document.get(key)
        merged = merge_status(
            documents,
            workers,
            own_state=self.trading_state,
            silent_symbols=[
                symbol
                for worker, document in zip(self.workers, documents, strict=True)
                if document is None
                for symbol in worker.symbols
            ],
        )
        return json_response(merged, 200)

    async def _forward(self, request: web.Request) -> web.Response:
        """Set the supervisor's trading state and switch every worker to it.

        200: every worker applied it. 202: the workers that did not answer
        (starting, or restarting) get it as soon as they can (``pending``).
        409: a worker refused it (``refused``, its reason in ``workers``; after a
        fills-log reset it trades no more) and is not asked again until another
        state is asked or it restarts. 502: a worker answered with an error.
        ``trading_state`` is the state asked for, which the others hold.
        """
        refused = authorize(request, self.token)
        if refused is not None:
            return refused
        state = _SWITCHED_TO[request.path]
        self.trading_state = state
        async with self._deliveries:
            answers = await asyncio.gather(*(self._switch(w, state) for w in self.workers))
        results: dict[str, Any] = {}
        pending = []
        for worker, answer in zip(self.workers, answers, strict=True):
            if answer is None:
                pending.append(worker.index)
                results[str(worker.index)] = {
                    "pending": "not answering yet (starting or restarting); "
                    "it gets this state as soon as it can"
                }
            else:
                results[str(worker.index)] = answer.json()
        refusing = [
            worker.index
            for worker, answer in zip(self.workers, answers, strict=True)
            if answer is not None and answer.status_code == 409
        ]
        failed = any(
            answer is not None and answer.status_code not in (200, 409) for answer in answers
        )
        if pending:
            self._undelivered.set()
        log.warning(
            "%s forwarded to %d workers (pending: %s, failed: %s)",
            request.path,
            len(answers),
            pending or "none",
            failed,
        )
        code = 502 if failed else 409 if refusing else 202 if pending else 200
        return json_response(
            {"trading_state": state, "workers": results, "pending": pending, "refused": refusing},
            code,
        )

    async def _switch(self, worker: Worker, state: str) -> httpx.Response | None:
        """POST the switch to ``state`` to one worker; notes it delivered on a 200."""
        answer = await self._ask(
            worker,
            _SWITCH_PATH[state],
            method="POST",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if answer is not None and answer.status_code == 200:
            worker.delivered = state
            worker.refused = None
        elif answer is not None and answer.status_code == 409:
            worker.refused = state
        return answer

    async def _deliver_forever(self) -> None:
        """Retry the supervisor's trading state on workers that did not get it yet.

        A worker still starting answers once its admin API listens (before
        its start-up reconciliation, whose end keeps the strictest state).
        A worker that is not running gets it in its environment instead.
        """
        while True:
            await self._undelivered.wait()
            async with self._deliveries:
                state = self.trading_state
                behind = [
                    w
                    for w in self.workers
                    if w.alive and w.delivered != state and w.refused != state
                ]
                if state is None or not behind:
                    self._undelivered.clear()
                    continue
                await asyncio.gather(*(self._switch(w, state) for w in behind))
            if any(w.alive and w.delivered != state and w.refused != state for w in behind):
                await asyncio.sleep(_DELIVERY_RETRY_S)


#: The ``/status`` book of a symbol whose worker did not answer.
_SILENT_BOOK: dict[str, Any] = {
    "state": "stale", "seq": None, "best_bid": None, "best_ask": None,
    "reason": "its worker did not answer",
}  # fmt: skip


def merge_status(
    documents: list[dict[str, Any] | None],
    workers: list[dict[str, Any]],
    *,
    own_state: str | None = None,
    silent_symbols: Iterable[str] = (),
) -> Any:
    """One ``/status`` document from the workers' (None for a worker that did not answer).

    Shards own disjoint symbols, so books, positions and strategies merge
    by key; the trading state and the breaker report the most restrictive
    of the workers' and of ``own_state`` (the state last set through the
    supervisor; each worker's own state is in ``workers``). The books of
    ``silent_symbols`` (those of workers that did not answer) are listed
    ``stale`` (nothing is known of them): a book is never dropped from
    ``/status``. ``positions`` is null when a worker did not answer or
    gave null (still reconciling): unknown, never a partial map.
    """
    merged: dict[str, Any] = {
        "trading_state": own_state or "active",
        "breaker": "closed",
        "books": {},
        "positions": {},
        "open_orders": 0,
        "open_order_list": [],
        "strategies": {},
        "fees_unconverted": {},
        "workers": workers,
        # The workers run this process's install.
        "build": BUILD.as_dict(),
    }
    positions_known = True
    for document in documents:
        if document is None:
            continue
        if _TRADING_ORDER[document["trading_state"]] > _TRADING_ORDER[merged["trading_state"]]:
            merged["trading_state"] = document["trading_state"]
        if _BREAKER_ORDER[document["breaker"]] > _BREAKER_ORDER[merged["breaker"]]:
            merged["breaker"] = document["breaker"]
        for key in ("books", "strategies"):
            merged[key].update(document[key])
        if document["positions"] is None:
            positions_known = False
        else:
            merged["positions"].update(document["positions"])
        merged["open_orders"] += document["open_orders"]
        merged["open_order_list"].extend(document.get("open_order_list", ()))
        venue = document.get("venue")
        if isinstance(venue, dict):
            # One account: the first answering worker's view, with the latest ban of any
            # (ISO-8601 UTC times compare as text); each worker's own is in ``workers``.
            shown = merged.setdefault("venue", dict(venue))
            ban = venue.get("ban_until")
            if ban is not None and (shown.get("ban_until") is None or ban > shown["ban_until"]):
                shown["ban_until"] = ban
        # Venue fees in an asset without a price: each worker's own fills, summed per asset.
        for asset, amount in (document.get("fees_unconverted") or {}).items():
            total = Decimal(merged["fees_unconverted"].get(asset, "0")) + Decimal(amount)
            merged["fees_unconverted"][asset] = _plain_decimal(total)
    for symbol in silent_symbols:
        merged["books"].setdefault(symbol, _SILENT_BOOK)
    # A worker that did not answer, or is still reconciling, leaves the positions
    # unknown: a partial map would read as flat positions in its symbols.
    if not positions_known or any(document is None for document in documents):
        merged["positions"] = None
        merged["fees_unconverted"] = None
    return merged


def _plain_decimal(value: Decimal) -> str:
    """A decimal written without an exponent or trailing zeros."""
    text = format(value.normalize(), "f")
    return text if value else "0"


#: Per worker: index, restarts, exposition text (None: no answer), state pending.
Scraped = tuple[int, int, str | None, bool]


def merged_exposition(
    scraped: Sequence[Scraped],
    own: CollectorRegistry | None = None,
    crashes: dict[str, int] | None = None,
) -> bytes:
    """The supervisor's ``/metrics`` body.

    ``scraped`` holds ``(worker index, restarts, exposition text or None
    if it did not answer, trading state not yet confirmed)`` per worker;
    ``own`` is the supervisor's own registry, whose samples get
    ``worker="supervisor"``; ``crashes`` its own task crashes by kind.
    Thread-safe: it reads only its arguments.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_MergedMetrics(scraped, own, crashes or {}))
    return generate_latest(registry)


class _MergedMetrics(Collector):
    """The workers' expositions, each sample labelled with its worker."""

    def __init__(
        self,
        scraped: Sequence[Scraped],
        own: CollectorRegistry | None,
        crashes: dict[str, int],
    ) -> None:
        self.scraped = scraped
        self.own = own
        self.crashes = crashes

    def collect(self) -> list[Metric]:
        families: dict[str, Metric] = {}
        up = Metric("trading_engine_worker_up", "1 while a worker answers its scrape.", "gauge")
        restarts = Metric(
            "trading_engine_worker_restarts", "Times the supervisor restarted a worker.", "counter"
        )
        pending = Metric(
            "trading_engine_worker_trading_state_pending",
            "1 while a worker has not confirmed the trading state set through the supervisor.",
            "gauge",
        )
        crashes = Metric(
            "trading_engine_supervisor_task_crashes",
            "The supervisor's own tasks that ended with an exception, by kind.",
            "counter",
        )
        for kind, count in sorted(self.crashes.items()):
            crashes.samples.append(Sample(crashes.name + "_total", {"task": kind}, float(count)))

        def merge(found: Iterable[Metric], label: str) -> None:
            for family in found:
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                merged.samples.extend(
                    sample._replace(labels={**sample.labels, "worker": label})
                    for sample in family.samples
                )

        for index, restart_count, text, behind in self.scraped:
            label = str(index)
            up.samples.append(Sample(up.name, {"worker": label}, 0.0 if text is None else 1.0))
            restarts.samples.append(
                Sample(restarts.name + "_total", {"worker": label}, float(restart_count))
            )
            pending.samples.append(Sample(pending.name, {"worker": label}, float(behind)))
            if text is not None:
                merge(text_string_to_metric_families(text), label)
        if self.own is not None:
            merge(self.own.collect(), "supervisor")
        return [up, restarts, pending, crashes, *families.values()]


def _terminate_with_parent() -> None:
    """In a worker, before it runs: SIGTERM it when the supervisor dies.

    A supervisor killed with SIGKILL cannot stop its workers; without this
    they would go on trading with no one to restart, halt or stop them. On
    SIGTERM a worker stops new orders and cancels its open ones. Linux's
    ``prctl(PR_SET_PDEATHSIG)``; elsewhere nothing (the supervisor's own
    SIGTERM handling still stops them).
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
