"""Score items (chat, pairwise, listwise or text) with a Scorer and shape the results as output records.

Three steps, so a worker can run each on its own thread (worker/chunk_pipeline.py): `prepare_items`
(control tokens, score cache lookup, chat template and tokenizer: no device), `score_prepared` (the
model), `shape_records` (the output records). `score_items` runs the three in a row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rmscore.formats import (
    ChatItem,
    Conversation,
    Item,
    ListwiseItem,
    TextItem,
    chat_record,
    error_record,
    listwise_record,
    pair_record,
    response_name,
)
from rmscore.vocabulary import ControlTokens, Overflow
from worker.batching import filled
from worker.engine import Rejected, Scored, Scorer
from worker.render import Encoded, Renderer

# Conversations (as the model reads them) -> the ones already scored, by position: the score cache.
Lookup = Callable[[Sequence[Conversation | str]], dict[int, Scored]]


@dataclass
class Prepared:
    """Items made ready for the device: every conversation as the model reads it, the scores the
    cache already had, and the token ids of the rest (`todo`, in that order)."""

    items: Sequence[Item]
    conversations: list[Conversation | str]
    changed: list[bool]  # content altered by control-token neutralizing, per conversation
    known: dict[int, Scored]
    todo: list[int]
    encoded: list[Encoded]
    # A conversation the model reads as an earlier one in `todo` (position -> that one's): scored once.
    same: dict[int, int] = field(default_factory=dict)


def prepare_items(
    renderer: Renderer, items: Sequence[Item], *, control_tokens: ControlTokens = "card", lookup: Lookup | None = None
) -> Prepared:
    """Everything before the model. `control_tokens="neutralize"` breaks control-token strings in
    content before anything else sees it (`worker.render.ControlStrings`), so the score cache keys on
    what the model is really fed. The conversations the cache lacks are rendered and tokenized in
    one call (`Renderer.encode`)."""
    conversations = [c for item in items for c in item.conversations]
    changed = [False] * len(conversations)
    if control_tokens == "neutralize":
        for i, conversation in enumerate(conversations):
            # A pre-rendered text (a `str`) is left as it is: its control tokens are the template's own.
            if not isinstance(conversation, str):
                conversations[i], changed[i] = renderer.control.neutralize(conversation)
    known = lookup(conversations) if lookup is not None else {}
    rest = [i for i in range(len(conversations)) if i not in known]
    # Each distinct input goes to the model once: packed at different places among others, the
    # same token ids came back a few 1e-7 apart, so a listwise line of equal responses had a "best"
    # one (and its export a pair of the same reply), and a text with its BOS string and one without
    # scored differently in one request. Equal ids (what the model reads), equal score.
    todo: list[int] = []
    encoded: list[Encoded] = []
    same: dict[int, int] = {}
    first: dict[tuple[bool, tuple[int, ...]], int] = {}
    for i, enc in zip(rest, renderer.encode([conversations[i] for i in rest]), strict=True):
        key = (enc.too_long, tuple(enc.ids))
        if key in first:
            same[i] = first[key]
        else:
            first[key] = i
            todo.append(i)
            encoded.append(enc)
    return Prepared(items, conversations, changed, known, todo, encoded, same)


def score_prepared(engine: Scorer, prepared: Prepared, *, overflow: Overflow | None = None) -> list[Scored | Rejected]:
    """One result per conversation, in order: the cache's, or the model's."""
    scored = engine.score_encoded(prepared.encoded, overflow=overflow) if prepared.todo else []
    results: list[Scored | Rejected | None] = [None] * len(prepared.conversations)
    for i, known in prepared.known.items():
        results[i] = known
    for i, result in zip(prepared.todo, scored, strict=True):
        results[i] = result
    for i, earlier in prepared.same.items():
        results[i] = results[earlier]
    return filled(results)


def shape_records(prepared: Prepared, results: Sequence[Scored | Rejected]) -> list[dict[str, Any]]:
    """One record per item, in order: formats.chat_record / pair_record / listwise_record / error_record shapes; each
    scored record whose input neutralizing changed carries `"neutralized": true`."""
    records = _records(prepared.items, results)
    pos = 0
    for item, record in zip(prepared.items, records, strict=True):
        n = len(item.conversations)
        if "error" not in record and any(prepared.changed[pos : pos + n]):
            record["neutralized"] = True
        pos += n
    return records


def score_items(
    engine: Scorer, items: Sequence[Item], *, overflow: Overflow | None = None, control_tokens: ControlTokens = "card"
) -> list[dict[str, Any]]:
    """One record per item, in order (see `shape_records`).

    All conversations of all items go to the engine in one call, so a pair's two sides, a listwise
    line's responses and neighbouring items share micro-batches (packed by length, never per line).
    """
    prepared = prepare_items(engine.renderer, items, control_tokens=control_tokens)
    return shape_records(prepared, score_prepared(engine, prepared, overflow=overflow))


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
