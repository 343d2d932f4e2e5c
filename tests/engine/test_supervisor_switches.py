"""The supervisor's switches against workers that refuse one: no retry storm."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import make_mocked_request

from tests.fakes import config
from trading_engine.engine.supervisor import Supervisor, Worker


class _Alive:
    returncode = None
    pid = 1


@pytest.mark.asyncio
async def test_a_worker_that_refuses_a_switch_is_not_asked_again_and_again() -> None:
    cfg = config(feed={"port": 17001}, admin={"port": 19100})
    supervisor = Supervisor(cfg, 2, environ={"TRADING_ENGINE_ADMIN_TOKEN": "t"})
    for worker in supervisor.workers:
        worker.process = _Alive()  # type: ignore[assignment]
    asked: list[int] = []
    refusal = {"trading_state": "halted", "refused": "the venue's fills log was reset"}

    async def ask(worker: Worker, path: str, **_: Any) -> httpx.Response | None:
        if path == "/metrics":
            return None  # a scrape: nothing to merge here
        asked.append(worker.index)
        if worker.index == 0:
            return httpx.Response(409, json=refusal)
        if asked.count(1) < 3:
            return None  # starting: not answering yet
        return httpx.Response(200, json={"trading_state": "active"})

    supervisor._ask = ask  # type: ignore[method-assign]
    delivery = asyncio.create_task(supervisor._deliver_forever())
    try:
        request = make_mocked_request("POST", "/resume", headers={"Authorization": "Bearer t"})
        answer = await supervisor._forward(request)
        assert answer.status == 409
        assert isinstance(answer.body, bytes)
        body = json.loads(answer.body)
        assert body["refused"] == [0]
        assert body["pending"] == [1]
        assert body["workers"]["0"] == refusal
        # Worker 1 gets the state once it answers; worker 0 is not asked again.
        for _ in range(50):
            if supervisor.workers[1].delivered == "active":
                break
            await asyncio.sleep(0.1)
        assert supervisor.workers[1].delivered == "active"
        await asyncio.sleep(0.5)
        assert asked.count(0) == 1
        assert supervisor.workers[0].refused == "active"
        assert supervisor.workers[0].describe()["refused"] == "active"
        # Refused is not pending: no alert that the worker may still trade against a halt.
        answer = await supervisor._metrics(make_mocked_request("GET", "/metrics"))
        assert isinstance(answer.body, bytes)
        text = answer.body.decode()
        assert 'trading_engine_worker_trading_state_pending{worker="0"} 0.0' in text
    finally:
        delivery.cancel()
        await asyncio.gather(delivery, return_exceptions=True)
