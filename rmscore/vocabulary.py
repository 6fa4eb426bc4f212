"""The words jobs are described in, once: statuses, kinds, overflow and control-token modes.

StrEnums, so a member is its string: what the tables store, the API sends and the CLI prints is the
same text as before these existed (`JobStatus.queued == "queued"`, `json.dumps` writes "queued").

Adding a kind of input is one line in `JobKind` for every run-time check (the API, the CLI, the
store; a kind for online requests only is also named in `ONLINE_ONLY`); the static `Literal`s that
type-check the same words (`rmscore.formats.Kind`, `api.schemas.KindIn`) are tied to it by
tests/unit/test_vocabulary.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


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


class Overflow(StrEnum):
    """What happens to a conversation longer than the model's context."""

    truncate = "truncate"  # keep the end, flag the result
    error = "error"


class ControlTokens(StrEnum):
    """How control-token strings inside content are read (`worker.render`)."""

    card = "card"  # as the model card does: as control tokens
    neutralize = "neutralize"  # as plain text; the result is flagged


def choices(words: Iterable[str]) -> str:
    """'a, b or c': the words as a message lists them."""
    names = [str(w) for w in words]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
