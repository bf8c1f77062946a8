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


def test_waiting_jobs_with_a_group_run_together_and_the_others_keep_their_turn():
    async def main():
        groups: list[list[str]] = []

        def run_group(jobs):
            groups.append([job.group for job in jobs])
            for job in jobs:
                job.emit(f"batched {job.group}")

        worker = Worker(16, run_group=run_group, max_group=3)
        gate = threading.Event()
        first = worker.submit(lambda job: gate.wait(5))  # the others wait behind it
        while not worker.status()["running"]:
            await asyncio.sleep(0.01)
        jobs = [
            worker.submit(lambda job: job.emit("alone a"), group="g1"),
            worker.submit(lambda job: job.emit("plain")),  # no group: runs on its own
            worker.submit(lambda job: job.emit("alone c"), group="g2"),
            worker.submit(lambda job: job.emit("never"), group="g3"),
            worker.submit(lambda job: job.emit("alone e"), group="g4"),
            worker.submit(lambda job: job.emit("alone f"), group="g5"),
            worker.submit(lambda job: job.emit("alone g"), group="g6"),
        ]
        jobs[3].cancel()  # a cancelled job is not taken into a batch
        gate.set()
        assert [e async for e in first] == []
        got = [[e async for e in job] for job in jobs]
        status = worker.status()
        worker.close()
        return groups, got, status

    groups, got, status = run(main())
    # up to 3 a batch, in order, the cancelled job left out; the plain job keeps its place,
    # after the first batch
    assert groups == [["g1", "g2", "g4"], ["g5", "g6"]]
    assert got == [["batched g1"], ["plain"], ["batched g2"], [], ["batched g4"],
                   ["batched g5"], ["batched g6"]]  # fmt: skip
    assert status["served"] == 8 and status["cancelled"] == 1 and status["batches"] == 2


def test_a_failing_batch_fails_each_of_its_jobs_and_the_worker_goes_on():
    async def main():
        def run_group(jobs):
            jobs[0].emit("partial")
            raise ValueError("broken batch")

        worker = Worker(8, run_group=run_group)
        gate = threading.Event()
        first = worker.submit(lambda job: gate.wait(5))
        while not worker.status()["running"]:
            await asyncio.sleep(0.01)
        a, b = (worker.submit(lambda job: None, group=i) for i in range(2))
        after = worker.submit(lambda job: job.emit("fine"))
        gate.set()
        outcomes = []
        for job in (a, b):
            got = []
            with pytest.raises(ValueError, match="broken batch"):
                async for event in job:
                    got.append(event)
            outcomes.append(got)
        fine = [e async for e in after]
        assert [e async for e in first] == []
        worker.close()
        return outcomes, fine

    outcomes, fine = run(main())
    assert outcomes == [["partial"], []] and fine == ["fine"]


def test_a_batch_holds_jobs_while_their_rows_fit():
    async def main():
        groups: list[list[str]] = []
        worker = Worker(16, run_group=lambda jobs: groups.append([j.group for j in jobs]),
                        max_group=8)  # fmt: skip
        gate = threading.Event()
        first = worker.submit(lambda job: gate.wait(5))
        while not worker.status()["running"]:
            await asyncio.sleep(0.01)
        jobs = [worker.submit(lambda job: None, group=name, rows=rows)
                for name, rows in [("a", 3), ("b", 4), ("c", 3), ("d", 1), ("e", 6)]]  # fmt: skip
        gate.set()
        for job in [first, *jobs]:
            assert [e async for e in job] == []
        worker.close()
        return groups

    # a (3) + b (4) + d (1) fill 8; c (3) + e (6) would not fit together: c then e alone,
    # each in a group of one (a running group can take more: see the next tests)
    assert run(main()) == [["a", "b", "d"], ["c"], ["e"]]


def test_a_running_group_takes_jobs_from_the_head_of_the_queue_and_ends_each_alone():
    async def main():
        log: list[list[str]] = []
        joining, release = threading.Event(), threading.Event()

        def run_group(jobs):
            log.append([job.group for job in jobs])
            if jobs[0].group != "a":
                return
            joining.wait(5)
            more = worker.more(3, lambda job: job.group != "refused")
            log.append([job.group for job in more])
            for job in more:
                job.emit(f"joined {job.group}")
            worker.done(more[0])  # its work is over before the group's
            release.wait(5)
            log.append([job.group for job in worker.more(8, lambda job: True)])

        worker = Worker(16, run_group=run_group)
        first = worker.submit(lambda job: None, group="a")
        while not worker.status()["running"]:
            await asyncio.sleep(0.01)
        gone = worker.submit(lambda job: None, group="gone")
        gone.cancel()  # at the head of the queue: ended on the way
        b = worker.submit(lambda job: None, group="b")
        c = worker.submit(lambda job: None, group="c", rows=2)
        d = worker.submit(lambda job: job.emit("plain"))  # no group: it cannot join
        e = worker.submit(lambda job: None, group="e")  # behind d, so it waits for d
        joining.set()
        assert [x async for x in b] == ["joined b"]  # over while the group still runs
        during = worker.status()
        release.set()
        got = [[x async for x in job] for job in (first, gone, c, d, e)]
        status = worker.status()
        worker.close()
        return log, got, during, status

    log, got, during, status = run(main())
    # b (1 row) and c (2) fill the 3 rows; d, with no group, stops the second call, so e,
    # which could join, keeps its place behind it
    assert log == [["a"], ["b", "c"], [], ["e"]]
    assert got == [[], [], ["joined c"], ["plain"], []]
    assert during["running"] and during["joined"] == 2 and during["waiting"] == 2
    assert status["served"] == 6 and status["cancelled"] == 1 and status["joined"] == 2
