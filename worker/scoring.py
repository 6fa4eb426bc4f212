"""Score items (chat or pairwise) with an Engine and shape the results as output records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rmscore.formats import ChatItem, Item, chat_record, error_record, pair_record
from worker.engine import Engine, Overflow, Rejected, Scored


def score_items(
    engine: Engine, items: Sequence[Item], *, overflow: Overflow | None = None
) -> list[dict[str, Any]]:
    """One record per item, in order: formats.chat_record / pair_record / error_record shapes.

    All conversations of all items go to the engine in one call, so a pair's two sides and
    neighbouring items share micro-batches.
    """
    conversations = [c for item in items for c in item.conversations]
    results = engine.score(conversations, overflow=overflow)
    records: list[dict[str, Any]] = []
    pos = 0
    for item in items:
        if isinstance(item, ChatItem):
            r = results[pos]
            pos += 1
            if isinstance(r, Rejected):
                records.append(error_record(item.line, item.custom_id, r.code, r.message))
            else:
                records.append(chat_record(item.line, item.custom_id, r.score, r.num_tokens, r.truncated))
            continue
        chosen, rejected = results[pos], results[pos + 1]
        pos += 2
        bad = [
            (side, r) for side, r in (("chosen", chosen), ("rejected", rejected)) if isinstance(r, Rejected)
        ]
        if bad:
            side, r = bad[0]
            assert isinstance(r, Rejected)
            records.append(error_record(item.line, item.custom_id, r.code, f"{side}: {r.message}", item.subset))
            continue
        assert isinstance(chosen, Scored) and isinstance(rejected, Scored)
        records.append(
            pair_record(
                item.line,
                item.custom_id,
                item.subset,
                chosen.score,
                rejected.score,
                chosen.truncated or rejected.truncated,
            )
        )
    return records
