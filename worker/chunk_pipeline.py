"""The worker's chunk pipeline: while chunk N is on the device, chunk N+1 is claimed, loaded,
rendered and tokenized, and chunk N-1's results are stored.

Three stages, each working on one chunk at a time on its own thread:

- prepare: the Celery task's thread (`WorkerRuntime.process`): claim the chunk its message names,
  load its items, look up the score cache, render and tokenize the rest;
- device: score it with the engine (failures: retried, given back or bisected, as before);
- store: its results and the chunk done, in one transaction (`db.chunks.complete_chunk`).

A hand-off waits until the next stage has taken the chunk (a queue of depth one), so a worker holds
at most three chunks: one being prepared, one on the device, one being stored. Each one is leased
from its claim until it leaves the worker, renewed by the lease keeper and named by the heartbeat
all along, so a worker that dies holding several loses none: the reconciler takes each back.

The Celery task returns once its chunk is on the device (its message is acknowledged then: from
the claim on the database holds the chunk, and the reconciler re-sends any chunk a dead worker
held), and the consumer fetches the next message: that is how the next chunk gets prepared
meanwhile, with no second copy of Celery's prefetch.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Handoff(Generic[T]):
    """Passes one item at a time from one thread to another: `give` returns once `take` has it."""

    def __init__(self) -> None:
        self._q: queue.Queue[T] = queue.Queue(maxsize=1)

    def give(self, item: T) -> None:
        self._q.put(item)
        self._q.join()  # one giver per hand-off, so this waits for exactly this item to be taken

    def take(self) -> T:
        item = self._q.get()
        self._q.task_done()
        return item


class ChunkPipeline(Generic[T]):
    """The device and store stages behind the prepare stage (the caller of `submit`).

    `device(chunk)` returns the chunk to store, or None when it is done with it (given back, failed,
    handed back); `store(chunk)` stores it. Both must let go of the chunk's lease themselves; an
    exception escaping either is logged and the pipeline goes on with the next chunk.
    """

    def __init__(self, device: Callable[[T], T | None], store: Callable[[T], None]) -> None:
        self._device, self._store = device, store
        self._to_device: Handoff[T | None] = Handoff()
        self._to_store: Handoff[T | None] = Handoff()
        self._in_flight = 0  # chunks submitted and not yet through their last stage
        self._idle = threading.Condition()
        self._threads = [
            threading.Thread(target=self._device_loop, name="rmscore-device", daemon=True),
            threading.Thread(target=self._store_loop, name="rmscore-store", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def submit(self, chunk: T) -> None:
        """Hand a prepared chunk to the device stage; returns once that stage has taken it."""
        with self._idle:
            self._in_flight += 1
        self._to_device.give(chunk)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every submitted chunk has been through its last stage; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def close(self) -> None:
        """Finish the chunks in hand, then stop both stages (a worker's warm shutdown)."""
        self.wait_idle()
        self._to_device.give(None)
        for t in self._threads:
            t.join()

    def _finished(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _device_loop(self) -> None:
        while (chunk := self._to_device.take()) is not None:
            out: T | None = None
            try:
                out = self._device(chunk)
            except Exception:  # noqa: BLE001 - one chunk's bug must not stop the worker's device stage
                log.exception("device stage failed on a chunk")
            if out is None:
                self._finished()
            else:
                self._to_store.give(out)
        self._to_store.give(None)

    def _store_loop(self) -> None:
        while (chunk := self._to_store.take()) is not None:
            try:
                self._store(chunk)
            except Exception:  # noqa: BLE001 - as above, for the store stage
                log.exception("store stage failed on a chunk")
            finally:
                self._finished()
