"""What a tenant is told when scoring fails, kept apart from what the operator needs to know.

An exception's text can hold a worker's host name, a file path, a SQL statement or another
tenant's data in flight; none of that belongs in a result another tenant reads. So a line that
failed scoring stores the stable code `scoring_failed` with one of these fixed messages, and the
exception itself goes to the worker's log (and the chunk's `error` column), where the reference
in the message (chunk, line) finds it.
"""

from __future__ import annotations


def chunk_failed(attempts: int, chunk_id: int) -> str:
    """A chunk used up its attempts (scoring raised, or its worker died each time)."""
    return (
        f"scoring failed after {attempts} attempt(s); the service operator can find the cause in the "
        f"worker logs under chunk {chunk_id}"
    )


def item_failed(line: int) -> str:
    """One item makes scoring raise even when scored on its own (see worker/poison.py)."""
    return (
        "this item makes scoring fail even when scored on its own; the service operator can find the "
        f"cause in the worker logs under line {line}"
    )


def request_failed() -> str:
    """A synchronous scoring request (`POST /v1/score`) raised in the worker."""
    return "the worker could not score these items; the service operator can find the cause in its logs"
