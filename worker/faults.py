"""Fault injection for tests of the pipeline's guarantees; inert unless its variables are set.

- `RMSCORE_FAULT_CHUNK_DELAY=SECONDS`: sleep that long after claiming each chunk, so a test can
  kill or stop a worker while it holds a lease, or cancel a job while it runs.
- `RMSCORE_FAULT_BATCH_DELAY=SECONDS`: sleep that long before each micro-batch's forward pass, so a
  chunk of a few items takes seconds on the tiny model (online requests served mid-chunk).
- `RMSCORE_FAULT_SCORE_DELAY=SECONDS`: sleep that long on the device before scoring each chunk, so
  a test can kill a worker while it holds one chunk on the device and the next one prepared.
- `RMSCORE_FAULT_POISON=CUSTOM_ID`: scoring raises for any chunk (or `POST /v1/score` request)
  holding an item with that custom_id, as a model that chokes on one input would.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from rmscore.formats import Item

CHUNK_DELAY_ENV = "RMSCORE_FAULT_CHUNK_DELAY"
SCORE_DELAY_ENV = "RMSCORE_FAULT_SCORE_DELAY"
POISON_ENV = "RMSCORE_FAULT_POISON"
BATCH_DELAY_ENV = "RMSCORE_FAULT_BATCH_DELAY"


class InjectedFault(RuntimeError):
    pass


def _sleep(env: str) -> None:
    delay = float(os.environ.get(env) or 0)
    if delay > 0:
        time.sleep(delay)


def after_claim() -> None:
    _sleep(CHUNK_DELAY_ENV)


def on_device() -> None:
    _sleep(SCORE_DELAY_ENV)


def before_batch() -> None:
    _sleep(BATCH_DELAY_ENV)


def before_scoring(items: Sequence[Item]) -> None:
    poison = os.environ.get(POISON_ENV)
    if poison and any(item.custom_id == poison for item in items):
        raise InjectedFault(f"injected fault: item {poison!r} poisons its chunk")
