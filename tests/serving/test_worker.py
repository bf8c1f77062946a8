"""The model thread and its queue on their own: order, piles, failures, fullness, cancelling."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from scratchllm.serving.worker import QueueFull, Worker


def run(coro):
    return asyncio.run(coro)


def test_events_arrive_in_order_in_few_piles():
    async def main():
        worker = Worker(4, wake_interval=0.05)
        job = worker.submit(lambda job: [job.emit(i) for i in range(1000)])
        piles = [batch async for batch in job.batches()]
        worker.close()
        return piles

    piles = run(main())
    assert [e for pile in piles for e in pile] == list(range(1000))
    assert len(piles) <= 3  # the first event at once, the rest gathered


def test_the_first_event_is_not_held_back():
    async def main():
        worker = Worker(4, wake_interval=0.5)
        gate = threading.Event()

        def fn(job):
            job.emit("first")
            gate.wait(5)

        job = worker.submit(fn)
        t0 = time.perf_counter()
        first = await job.__aiter__().__anext__()
        waited = time.perf_counter() - t0
        gate.set()
        worker.close()
        return first, waited

    first, waited = run(main())
    assert first == "first" and waited < 0.4


def test_a_failing_job_fails_alone():
    async def main():
        worker = Worker(4)

        def bad(job):
            job.emit("partial")
            raise ValueError("broken")

        first = worker.submit(bad)
        second = worker.submit(lambda job: job.emit("fine"))
        got = []
        with pytest.raises(ValueError, match="broken"):
            async for event in first:
                got.append(event)
        after = [e async for e in second]
        status = worker.status()
        worker.close()
        return got, after, status

    got, after, status = run(main())
    assert got == ["partial"] and after == ["fine"] and status["served"] == 2


def test_full_queue_and_cancelled_waiting_jobs():
    async def main():
        worker = Worker(1)
        gate = threading.Event()
        running = worker.submit(lambda job: gate.wait(5))
        while not worker.status()["running"]:
            await asyncio.sleep(0.01)
        waiting = worker.submit(lambda job: job.emit("never"))
        with pytest.raises(QueueFull):
            worker.submit(lambda job: None)
        waiting.cancel()
        gate.set()
        assert [e async for e in running] == []
        assert [e async for e in waiting] == []  # skipped, never run
        status = worker.status()
        worker.close()
        return status

    status = run(main())
    assert status["cancelled"] == 1 and status["served"] == 2 and status["waiting"] == 0
