"""The words jobs are described in, once: statuses, kinds, overflow and control-token modes.

Statuses and kinds are StrEnums, so a member is its string: what the tables store, the API sends
and the CLI prints is the same text as before these existed (`JobStatus.queued == "queued"`,
`json.dumps` writes "queued").

Adding a kind of input is one line in `JobKind` for every run-time check (the API, the CLI, the
store; a kind for online requests only is also named in `ONLINE_ONLY`); the static `Literal`s that
type-check the same words (`rmscore.formats.Kind`, `api.schemas.KindIn`) are tied to it by
tests/unit/test_vocabulary.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Literal, TypeVar, get_args


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelling = "cancelling"  # cancelled, while chunks already running finish
    cancelled = "cancelled"


# Still taking work / never changing again.
JOB_ACTIVE = (JobStatus.queued, JobStatus.running)
JOB_TERMINAL = (JobStatus.completed, JobStatus.failed, JobStatus.cancelled)


class JobProgress:
    """`done` and `terminal`, read the same way from every view of a job (`db.jobs.JobInfo`,
    `rmscore.client.Job`): each is a dataclass with these three fields."""

    status: str
    completed: int
    failed: int

    @property
    def done(self) -> int:
        """Lines with an outcome (scored or failed)."""
        return self.completed + self.failed

    @property
    def terminal(self) -> bool:
        return self.status in JOB_TERMINAL


class ChunkStatus(StrEnum):
    queued = "queued"
    leased = "leased"  # a worker holds it until its lease expires
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


CHUNK_OPEN = (ChunkStatus.queued, ChunkStatus.leased)
CHUNK_TERMINAL = (ChunkStatus.done, ChunkStatus.failed, ChunkStatus.cancelled)


class JobKind(StrEnum):
    chat = "chat"
    pairwise = "pairwise"
    listwise = "listwise"  # best-of-N: one prompt, several responses
    text = "text"  # a conversation already rendered: online requests only, never a stored job


ONLINE_ONLY = (JobKind.text,)  # a stored job keeps turns, which reports and exports show
JOB_KINDS = tuple(k for k in JobKind if k not in ONLINE_ONLY)  # what a job can be
AUTO = "auto"  # not a kind: "the first line that names one"
KIND_CHOICES = (*JOB_KINDS, AUTO)  # what a submission may ask for


# Modes are `Literal`s, not enums: Settings, the API's schemas and the engine's signatures type them
# with these very aliases (a Literal keeps the OpenAPI schema an inline enum), and the tuples are what
# run-time checks (the store, the CLI) test against.
Overflow = Literal["truncate", "error"]
"""What happens to a conversation longer than the model's context: keep the end and flag the result
(truncate), or an error for that line."""
OVERFLOW_MODES: tuple[Overflow, ...] = get_args(Overflow)

ControlTokens = Literal["card", "neutralize"]
"""How control-token strings inside content are read (`worker.render`): as the model card does, as
control tokens (card), or as plain text with the result flagged (neutralize)."""
CONTROL_TOKEN_MODES: tuple[ControlTokens, ...] = get_args(ControlTokens)

T = TypeVar("T", bound=str)


def one_of(value: str | None, allowed: tuple[T, ...]) -> T | None:
    """`value` as the member of `allowed` it equals (typed as such), None when not given; ValueError
    naming the allowed words otherwise."""
    if value is None:
        return None
    for word in allowed:
        if word == value:
            return word
    raise ValueError(f"{value!r} is not {choices(allowed)}")


def choices(words: Iterable[str]) -> str:
    """'a, b or c': the words as a message lists them."""
    names = [str(w) for w in words]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
