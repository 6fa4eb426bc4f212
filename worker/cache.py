"""The worker's side of the score cache (`db.cache`): only conversations it has never scored go to the model.

`CachingScorer` is consulted while a chunk is prepared (`worker.scoring.prepare_items` takes its
`lookup`): cached scores are answered from the database, only the rest are rendered and go to the
engine, and their scores are stored for later jobs (`remember`). A cached score of a truncated
conversation is not used under overflow=error (the engine must reject it), and rejections are never
cached, so a job's overflow policy decides as it would without the cache.

The conversations hashed are the ones the engine is fed: with `control_tokens="neutralize"`,
`prepare_items` has already broken control-token strings in their content, so such a conversation
never meets the card-mode score of its original text (the key is the text the model reads).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine as DbEngine

from db.cache import CachedScore, conversation_hash, identity_hash, lookup, store
from rmscore.formats import Conversation, Item

if TYPE_CHECKING:
    from rmscore.vocabulary import Overflow
    from worker.engine import Rejected, Scored, Scorer

log = logging.getLogger(__name__)


def cache_enabled(options: dict[str, Any]) -> bool:
    """On unless the job asked to rescore (`options.cache = false`)."""
    return options.get("cache", True) is not False


class CachingScorer:
    """The score cache in front of a loaded engine: `lookup` before the device, `remember` after it
    (a worker runs them on its prepare and store threads), or `score`, engine-shaped, for both.

    `scope`: the job's tenant, or the shared scope (`db.cache.cache_scope`); lookups and stores
    never leave it. An engine whose weights have no identity (`Scorer.weights` None: built in
    memory, or a hub model without a commit) never uses the cache: nothing could prove a cached
    score came from the same weights.
    """

    def __init__(self, engine: Scorer, db: DbEngine, scope: str, *, enabled: bool = True) -> None:
        self.engine, self.db, self.scope = engine, db, scope
        # Stores need known weights; lookups also need the job to want cached scores (`cache: false`
        # rescores, and its fresh scores still fill the cache).
        self.storable = engine.identity.get("weights") is not None
        self.enabled = enabled and self.storable
        self.identity = identity_hash(engine.identity)
        self.hits = 0  # conversations answered from the cache (not scored by the model)
        self.from_cache: list[bool] = []  # per conversation of the last `lookup`
        self._hashes: list[str] = []

    def lookup(
        self, conversations: Sequence[Conversation | str], *, overflow: Overflow | None = None
    ) -> dict[int, Scored]:
        """The cached scores usable for `conversations` (by position): a database read, done while a
        worker prepares a chunk (before the device)."""
        from worker.engine import Scored

        self._hashes = [conversation_hash(c) for c in conversations]
        policy = overflow or self.engine.overflow
        found = lookup(self.db, self.scope, self.identity, self._hashes) if self.enabled else {}
        usable = {h: s for h, s in found.items() if not (s.truncated and policy == "error")}
        self.from_cache = [h in usable for h in self._hashes]
        self.hits += sum(self.from_cache)
        return {
            i: Scored(usable[h].score, usable[h].num_tokens, usable[h].truncated)
            for i, h in enumerate(self._hashes)
            if self.from_cache[i]
        }

    def remember(self, todo: Sequence[int], results: Sequence[Scored | Rejected]) -> None:
        """Store the model's new scores (`results`, for the conversations at positions `todo` of the
        last `lookup`): a database write, done after the device, beside storing the chunk."""
        from worker.engine import Scored

        if not self.storable:
            return
        new = {
            self._hashes[i]: CachedScore(r.score, r.num_tokens, r.truncated)
            for i, r in zip(todo, results, strict=True)
            if isinstance(r, Scored)
        }
        if not new:
            return
        try:
            store(self.db, self.scope, self.identity, self.engine.name, new)
        except Exception as exc:  # noqa: BLE001 - a cache write failing must not fail the chunk
            log.warning("could not store %d scores in the score cache: %s", len(new), exc)

    def score(
        self, conversations: Sequence[Conversation | str], *, overflow: Overflow | None = None
    ) -> list[Scored | Rejected]:
        """Engine-shaped: cached scores from the cache, the rest from the engine (then cached)."""
        out: dict[int, Scored | Rejected] = dict(self.lookup(conversations, overflow=overflow))
        misses = [i for i, hit in enumerate(self.from_cache) if not hit]
        if misses:
            scored = self.engine.score([conversations[i] for i in misses], overflow=overflow)
            out.update(zip(misses, scored, strict=True))
            self.remember(misses, scored)
        return [out[i] for i in range(len(conversations))]

    def mark(self, items: Sequence[Item], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Flag each record whose conversations all came from the cache (`cached`: True)."""
        pos = 0
        for item, rec in zip(items, records, strict=True):
            n = len(item.conversations)
            if "error" not in rec and n and all(self.from_cache[pos : pos + n]):
                rec["cached"] = True
            pos += n
        return records
