"""Score items (chat, pairwise or listwise) with an Engine and shape the results as output records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rmscore.formats import (
    ChatItem,
    Item,
    ListwiseItem,
    TextItem,
    chat_record,
    error_record,
    listwise_record,
    pair_record,
    response_name,
)
from worker.engine import Engine, Overflow, Rejected, Scored
from worker.render import ControlTokens


def score_items(
    engine: Engine, items: Sequence[Item], *, overflow: Overflow | None = None, control_tokens: ControlTokens = "card"
) -> list[dict[str, Any]]:
    """One record per item, in order: formats.chat_record / pair_record / listwise_record / error_record.

    All conversations of all items go to the engine in one call, so a pair's two sides, a listwise
    line's responses and neighbouring items share micro-batches (packed by length, never per line).
    `control_tokens="neutralize"` breaks control-token strings in content before anything else sees
    it (`worker.render.ControlStrings`), so the score cache keys on what the model is really fed;
    each scored record whose input it changed carries `"neutralized": true`.
    """
    conversations = [c for item in items for c in item.conversations]
    changed = [False] * len(conversations)
    if control_tokens == "neutralize":
        control = engine.renderer.control
        for i, conversation in enumerate(conversations):
            # A pre-rendered text is left as it is: its control tokens are the chat template's own.
            if not isinstance(conversation, str):
                conversations[i], changed[i] = control.neutralize(conversation)
    results = engine.score(conversations, overflow=overflow)
    records = _records(items, results)
    pos = 0
    for item, record in zip(items, records, strict=True):
        n = len(item.conversations)
        if "error" not in record and any(changed[pos : pos + n]):
            record["neutralized"] = True
        pos += n
    return records


def _records(items: Sequence[Item], results: Sequence[Scored | Rejected]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    pos = 0
    for item in items:
        if isinstance(item, ChatItem | TextItem):
            r = results[pos]
            pos += 1
            if isinstance(r, Rejected):
                records.append(error_record(item.line, item.custom_id, r.code, r.message))
            else:
                records.append(chat_record(item.line, item.custom_id, r.score, r.num_tokens, r.truncated))
            continue
        if isinstance(item, ListwiseItem):
            n = len(item.conversations)
            records.append(_listwise(item, results[pos : pos + n]))
            pos += n
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


def _listwise(item: ListwiseItem, results: Sequence[Scored | Rejected]) -> dict[str, Any]:
    """One record for the line: an error names the first response the engine refused (as the user
    named it: responses[i], chosen[i] or rejected[i]); otherwise every response's score, in order."""
    for i, r in enumerate(results):
        if isinstance(r, Rejected):
            message = f"{response_name(i, item.n_chosen)}: {r.message}"
            return error_record(item.line, item.custom_id, r.code, message, item.subset)
    scored = [r for r in results if isinstance(r, Scored)]
    return listwise_record(
        item.line,
        item.custom_id,
        item.subset,
        [r.score for r in scored],
        any(r.truncated for r in scored),
        item.n_chosen,
    )
