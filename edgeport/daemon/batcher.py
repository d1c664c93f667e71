"""Sharing the model: turn-taking between the camera loop and HTTP (`ModelTurns`), and the dynamic batcher
that groups decoded uploads into model invokes (`Batcher`, as Triton's dynamic batcher does).

Policy: callers take the model in arrival order (FIFO), so while the camera loop and the batcher both
wait, they alternate: a camera never waits more than one HTTP batch, and HTTP never more than one gather.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from edgeport.runtime.detections import Detections
from edgeport.runtime.preprocess import Letterbox

log = logging.getLogger("edgeport.daemon")


class QueueFull(Exception):
    """The batcher's queue holds `max_queue` uploads already (answered 503 with Retry-After)."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before the model took it (answered 504)."""


class ModelTurns:
    """A FIFO lock over the model; `busy_since` is set only while a holder runs (not while it waits)."""

    def __init__(self, on_wait: Callable[[str, float], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._waiting: deque[threading.Event] = deque()
        self._held = False
        self._on_wait = on_wait
        self.busy_since: float | None = None

    @contextmanager
    def turn(self, user: str) -> Iterator[float]:
        """Wait for the model in arrival order, hold it for the block (which gets the milliseconds waited);
        `user` labels the wait metric."""
        started = time.monotonic()
        with self._lock:
            if not self._held and not self._waiting:
                self._held = True
                mine = None
            else:
                mine = threading.Event()
                self._waiting.append(mine)
        if mine is not None:
            mine.wait()  # the releasing holder hands the model over directly (no barging)
        waited_ms = (time.monotonic() - started) * 1000
        if self._on_wait:
            self._on_wait(user, waited_ms)
        self.busy_since = time.monotonic()
        try:
            yield waited_ms
        finally:
            self.busy_since = None
            with self._lock:
                if self._waiting:
                    self._waiting.popleft().set()
                else:
                    self._held = False


@dataclass(eq=False)
class Job:
    """One decoded, letterboxed upload waiting for the model."""

    canvas: np.ndarray  # (H, W, 3) uint8 model-size canvas
    placement: Letterbox
    deadline: float  # time.monotonic() after which the answer is useless
    queued: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


class Batcher:
    """Groups queued jobs into invokes of up to `max_batch` images, waiting at most `max_queue_delay_ms`
    after the oldest job for more to arrive. `run_batch(canvases, placements)` runs the model (under
    ModelTurns) and returns one Detections per canvas. Jobs whose deadline passed are never invoked."""

    def __init__(self, run_batch: Callable[[np.ndarray, Sequence[Letterbox]], list[Detections]], *,
                 max_batch: int, max_queue_delay_ms: float, max_queue: int,
                 on_batch: Callable[[int, list[float]], None] | None = None,
                 on_expired: Callable[[int], None] | None = None) -> None:
        self._run_batch = run_batch
        self.max_batch, self.max_queue = max(1, max_batch), max_queue
        self.delay_s = max(0.0, max_queue_delay_ms) / 1000
        self._on_batch, self._on_expired = on_batch, on_expired
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="http-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._queue)

    def submit(self, job: Job) -> Future:
        """Queue a job; its future gets the Detections, or DeadlineExceeded. Raises QueueFull."""
        with self._cond:
            if self._stopped or len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} uploads already queued")
            self._queue.append(job)
            self._cond.notify()
        return job.future

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=10)
        for job in self._queue:
            job.future.cancel()

    def _take(self) -> list[Job]:
        """Wait for a first job, then up to `delay_s` after it for a full batch; return up to max_batch."""
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return []
            flush_at = self._queue[0].queued + self.delay_s
            while len(self._queue) < self.max_batch and not self._stopped:
                left = flush_at - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]

    def _loop(self) -> None:
        while True:
            jobs = self._take()
            if not jobs:
                return
            now = time.monotonic()
            live = [j for j in jobs if j.future.set_running_or_notify_cancel() and j.deadline > now]
            expired = [j for j in jobs if j.future.running() and j not in live]
            for job in expired:
                job.future.set_exception(DeadlineExceeded("the request's deadline passed while it was queued"))
            if expired and self._on_expired:
                self._on_expired(len(expired))
            if not live:
                continue
            if self._on_batch:
                self._on_batch(len(live), [(now - j.queued) * 1000 for j in live])
            try:
                results = self._run_batch(np.stack([j.canvas for j in live]), [j.placement for j in live])
            except Exception as exc:  # the model failed: every waiting request gets the error (a 500)
                log.error("batched inference failed: %s", exc)
                for job in live:
                    job.future.set_exception(exc)
                continue
            for job, detections in zip(live, results):
                job.future.set_result(detections)


def http_batcher(batching, run_batch: Callable[[np.ndarray, Sequence[Letterbox]], list[Detections]],
                 metrics) -> Batcher:
    """The batcher of POST /detect from the `http.batching` config (disabled: a batch of one, at once),
    its batch sizes, queue waits and expired requests counted in `metrics`."""
    def on_batch(size: int, waits_ms: list[float]) -> None:
        metrics.batch_size.observe(size)
        for wait in waits_ms:
            metrics.queue_wait_ms.observe(wait)

    return Batcher(run_batch, max_batch=batching.max_batch if batching.enabled else 1,
                   max_queue_delay_ms=batching.max_queue_delay_ms if batching.enabled else 0,
                   max_queue=batching.max_queue, on_batch=on_batch,
                   on_expired=lambda n: metrics.http_refused.inc("deadline_queued", amount=n))
