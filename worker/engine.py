"""STUB — interface only; being implemented. Do not edit (owned by the engine author)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rmscore.formats import Conversation

Overflow = Literal["truncate", "error"]


@dataclass(slots=True)
class Scored:
    score: float  # the raw logit of the single-output head: the reward
    num_tokens: int  # tokens the model saw (after truncation), BOS included
    truncated: bool


@dataclass(slots=True)
class Rejected:
    code: str  # stable, e.g. "too_long"
    message: str


@dataclass
class EngineStats:
    items: int = 0
    tokens: int = 0  # real tokens
    padded_tokens: int = 0  # batch_size x longest, summed over batches
    batches: int = 0
    oom_splits: int = 0
    seconds: float = 0.0

    @property
    def padding_efficiency(self) -> float:
        return self.tokens / self.padded_tokens if self.padded_tokens else 1.0


@dataclass
class Engine:
    model: str
    name: str
    device: str
    dtype: str
    max_length: int
    max_batch_tokens: int
    max_batch_size: int
    overflow: Overflow
    stats: EngineStats = field(default_factory=EngineStats)

    @classmethod
    def load(
        cls,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_batch_tokens: int | None = None,
        max_batch_size: int = 256,
        overflow: Overflow = "truncate",
    ) -> Engine:
        raise NotImplementedError

    @property
    def identity(self) -> dict[str, Any]:
        """model id, revision, dtype, max_length: what makes two scores comparable."""
        raise NotImplementedError

    def warmup(self) -> None:
        raise NotImplementedError

    def score(
        self, conversations: Sequence[Conversation], *, overflow: Overflow | None = None
    ) -> list[Scored | Rejected]:
        """Score each conversation; results in input order, one per conversation."""
        raise NotImplementedError
