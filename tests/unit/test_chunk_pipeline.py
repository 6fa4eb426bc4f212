"""worker/chunk_pipeline.py, pure logic: hand-offs of depth one (a stage takes one chunk at a time,
so a worker holds at most three), order kept, a failing chunk never stops a stage, close drains."""

from __future__ import annotations

import threading

from worker.chunk_pipeline import ChunkPipeline


def test_depth_one_order_kept_and_close_drains() -> None:
    release = threading.Event()
    on_device: list[str] = []
    stored: list[str] = []

    def device(chunk: str) -> str:
        on_device.append(chunk)
        if chunk == "a":
            release.wait(10)
        return chunk

    pipeline: ChunkPipeline[str] = ChunkPipeline(device, stored.append)
    pipeline.submit("a")  # returns once the device took it: "a" is on the device, held there
    assert on_device == ["a"]
    taken = threading.Event()
    second = threading.Thread(target=lambda: (pipeline.submit("b"), taken.set()))
    second.start()
    # The device is busy with "a", so "b" waits in the prepare stage: no queue grows behind it.
    assert not taken.wait(0.3)
    assert not pipeline.wait_idle(timeout=0)
    release.set()
    assert taken.wait(10)
    second.join()
    pipeline.submit("c")
    pipeline.close()
    assert on_device == stored == ["a", "b", "c"]
    assert pipeline.wait_idle(timeout=0)


def test_a_chunk_that_fails_or_is_given_back_does_not_stop_the_stages() -> None:
    stored: list[str] = []

    def device(chunk: str) -> str | None:
        if chunk == "raises":
            raise RuntimeError("a bug in one chunk")
        return None if chunk == "given-back" else chunk

    def store(chunk: str) -> None:
        if chunk == "store-raises":
            raise RuntimeError("storing failed")
        stored.append(chunk)

    pipeline: ChunkPipeline[str] = ChunkPipeline(device, store)
    for chunk in ("raises", "given-back", "store-raises", "ok"):
        pipeline.submit(chunk)
    assert pipeline.wait_idle(timeout=10)  # every chunk left the pipeline, whatever became of it
    pipeline.close()
    assert stored == ["ok"]
