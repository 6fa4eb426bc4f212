"""STUB — being implemented. Turns items into output records with an Engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rmscore.formats import Item
from worker.engine import Engine


def score_items(engine: Engine, items: Sequence[Item], *, overflow: str | None = None) -> list[dict[str, Any]]:
    """One record per item, in order: formats.chat_record / pair_record / error_record shapes."""
    raise NotImplementedError
