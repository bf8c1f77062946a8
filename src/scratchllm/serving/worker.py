"""One thread runs the model; requests wait in a bounded queue; results flow back to asyncio.

The event loop never runs the model: a request becomes a ``Job`` (a function of the job),
``Worker.submit`` puts it in the queue or raises ``QueueFull`` at once (the server answers
503 before sending a byte), and the worker thread runs jobs one at a time. A job sends
events with ``job.emit``; they arrive on an ``asyncio.Queue`` that the request handler
reads with ``async for event in job``.

A client that leaves sets ``job.cancel()``: a waiting job is skipped, a running one sees
``job.cancelled`` at its next token and returns. An exception in a job ends that job only
(it arrives as the last event); the worker goes on with the next one.

**Batches.** A job submitted with a ``group`` (the server's: the choices it generates,
``rows`` of them) can run together with others: when the worker takes one, it also takes
the other waiting jobs with a group, in order, while their rows add up to no more than
``max_group``, and calls ``run_group(jobs)`` once for them all (the engine decodes them as
one batch), even for a job alone. While it runs, ``run_group`` may take more jobs from the
head of the queue (``more``: continuous batching) and end each job when its work is
over (``done``); the jobs still running when it returns end then. An exception there goes
to each of its jobs that has not ended.

>>> worker = Worker(max_queue=4)                       # doctest: +SKIP
>>> job = worker.submit(lambda job: job.emit("hi"))    # doctest: +SKIP
>>> [event async for event in job]                     # doctest: +SKIP
['hi']
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from typing import Any


class QueueFull(Exception):
    """The worker's queue holds ``max_queue`` waiting jobs already."""

    def __init__(self, waiting: int) -> None:
        super().__init__(f"{waiting} jobs waiting")
        self.waiting = waiting


_END = object()  # the last event of every job


WAKE_INTERVAL = 0.05  # seconds: the event loop hears from a job at most about this often


class Job:
    """One request's work, with a way back to the event loop that waits for it.

    Events pile up in a deque and the loop is woken at most once per ``wake_interval``
    (the first event and the end of a choice at once). Each wake-up makes the event loop
    and the model's thread trade the interpreter lock, at the cost of a thread switch for
    each, and a small model makes a token in under a millisecond. Fewer writes than
    tokens can only help the model's thread; how much it helps is hard to see on a
    shared machine (bench_serve.py's last row), and a stream written every 50 ms still
    looks live.
    """

    def __init__(
        self,
        fn: Callable[[Job], Any],
        loop: asyncio.AbstractEventLoop,
        wake_interval: float = WAKE_INTERVAL,
    ) -> None:
        self.fn = fn
        self.group: Any = None  # set by Worker.submit: what run_group needs of the job
        self.rows = 1  # the batch rows the group takes
        self.wake_interval = wake_interval
        self._loop = loop
        self._buffer: collections.deque = collections.deque()
        self._ready = asyncio.Event()
        self._lock = threading.Lock()
        self._wake_pending = False
        self._last_wake = -float("inf")  # time.monotonic() of the last wake-up asked for
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def emit(self, event: Any, urgent: bool = False) -> None:
        """Send an event to the waiting handler (called from the worker thread); an
        ``urgent`` one (the end of a choice) wakes the loop at once."""
        self._buffer.append(event)
        now = time.monotonic()
        with self._lock:
            if self._wake_pending and not urgent:
                return
            self._wake_pending = True
            delay = 0.0 if urgent else max(0.0, self._last_wake + self.wake_interval - now)
            self._last_wake = now + delay
        try:
            if delay:
                self._loop.call_soon_threadsafe(self._loop.call_later, delay, self._wake)
            else:
                self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop has closed: the server is shutting down
            self.cancel()

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
        self._ready.set()

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        async for batch in self.batches():
            for event in batch:
                yield event

    async def batches(self):
        """The events in piles: everything that arrived since the last pile (at least one)."""
        while True:
            batch = []
            while self._buffer:
                event = self._buffer.popleft()
                if event is _END:
                    if batch:
                        yield batch
                    return
                if isinstance(event, BaseException):
                    if batch:
                        yield batch
                    raise event
                batch.append(event)
            if batch:
                yield batch
                continue
            self._ready.clear()
            if not self._buffer:
                await self._ready.wait()


class Worker:
    """The model's thread and its bounded queue; see the module docstring."""

    def __init__(
        self,
        max_queue: int,
        on_start: Callable[[], Any] | None = None,
        wake_interval: float = WAKE_INTERVAL,
        run_group: Callable[[list[Job]], Any] | None = None,
        max_group: int = 8,
    ) -> None:
        self.max_queue = max_queue
        self.wake_interval = wake_interval
        self._on_start = on_start  # run first on the worker thread (per-thread settings)
        self._run_group = run_group
        self.max_group = max_group
        self._waiting: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._running: list[Job] = []
        self._closed = False
        self.served = 0  # jobs finished (any outcome)
        self.cancelled = 0  # jobs a client left, waiting or running
        self.batches = 0  # runs of run_group with more than one job
        self.joined = 0  # jobs that joined a running run_group (``more``)
        self._thread = threading.Thread(target=self._loop, name="scratchllm-model", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Job], Any], group: Any = None, rows: int = 1) -> Job:
        """Queue ``fn`` (run as ``fn(job)`` on the worker thread); raise QueueFull if full.
        With ``group`` not None, the job may run in a batch instead (``run_group``), where
        it takes ``rows`` of the batch's ``max_group``.

        Call it from the event loop: events come back on that loop.
        """
        job = Job(fn, asyncio.get_running_loop(), self.wake_interval)
        job.group, job.rows = group, rows
        with self._cond:
            if self._closed:
                raise RuntimeError("the worker has been closed")
            if len(self._waiting) >= self.max_queue and self._running:
                raise QueueFull(len(self._waiting))
            self._waiting.append(job)
            self._cond.notify()
        return job

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {
                "running": bool(self._running),
                "waiting": len(self._waiting),
                "max_queue": self.max_queue,
                "served": self.served,
                "cancelled": self.cancelled,
                "batches": self.batches,
                "joined": self.joined,
            }

    def close(self, timeout: float = 5.0) -> None:
        """Cancel every job and stop the thread."""
        with self._cond:
            self._closed = True
            for job in [*self._waiting, *self._running]:
                job.cancel()
            self._cond.notify_all()
        self._thread.join(timeout)

    def _loop(self) -> None:
        if self._on_start is not None:
            self._on_start()
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed and not self._waiting:
                    return
                jobs = self._take()
                self._running = jobs
            try:
                live = [job for job in jobs if not job.cancelled]
                if live and live[0].group is not None and self._run_group is not None:
                    self.batches += len(live) > 1
                    self._run_group(live)
                elif live:
                    live[0].fn(live[0])
            except Exception as e:  # the jobs' own failure: it goes to their handlers only
                with self._cond:
                    failed = list(self._running)
                for job in failed:
                    job.emit(e)
            finally:
                with self._cond:
                    over = list(self._running)
                for job in over:
                    self.done(job)

    def more(self, rows: int, accept: Callable[[Job], bool]) -> list[Job]:
        """From ``run_group``, on the worker thread: the jobs at the head of the queue that
        can join the running batch, in order, while their rows fit in ``rows`` and
        ``accept(job)`` says yes; they are running from now on. It stops at the first job
        that cannot join, which keeps its place: no job waits behind later ones for
        ever. Cancelled jobs at the head are ended on the way."""
        if not self._waiting:  # no lock for the common case: nothing waits
            return []
        taken, skipped = [], []
        with self._cond:
            while self._waiting:
                job = self._waiting[0]
                if job.cancelled:
                    skipped.append(self._waiting.popleft())
                    continue
                if job.group is None or job.rows > rows or not accept(job):
                    break
                taken.append(self._waiting.popleft())
                rows -= job.rows
            self._running.extend(taken + skipped)
            self.joined += len(taken)
        for job in skipped:
            self.done(job)
        return taken

    def done(self, job: Job) -> None:
        """The end of ``job``: counted, and its handler hears it now (from ``run_group``
        when one job of a batch is over; the worker calls it for the rest)."""
        with self._cond:  # count before the handler hears the end (it may cancel then)
            if job not in self._running:
                return
            self._running.remove(job)
            self.served += 1
            self.cancelled += job.cancelled
        job.emit(_END, urgent=True)

    def _take(self) -> list[Job]:
        """The next job, and with it (if it has a group) the other waiting jobs that have
        one, in their order, while the rows fit in ``max_group``; the others keep their
        places. Under the lock."""
        first = self._waiting.popleft()
        if first.group is None or self._run_group is None:
            return [first]
        jobs, others, rows = [first], collections.deque(), first.rows
        while self._waiting:
            job = self._waiting.popleft()
            fits = rows + job.rows <= self.max_group
            if job.group is not None and not job.cancelled and fits:
                jobs.append(job)
                rows += job.rows
            else:
                others.append(job)
        self._waiting = others
        return jobs
