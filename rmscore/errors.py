"""One error hierarchy. Each error carries a stable `code` that users and tests can match on.

A class names its default `code` and its `http_status` in its header (`class NotFound(RmscoreError,
code="not_found", http_status=404)`), so the table of codes and statuses reads down the class lines;
a subclass that names neither inherits its parent's.
"""

from __future__ import annotations

from typing import Any


class RmscoreError(Exception):
    """Base of every error rmscore raises on purpose."""

    code: str = "error"
    http_status: int = 500

    def __init_subclass__(cls, *, code: str | None = None, http_status: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if http_status is not None:
            cls.http_status = http_status

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InputError(RmscoreError, code="invalid_input", http_status=422):
    """One input line (or request item) cannot be scored as given."""


class ConfigError(RmscoreError, code="config_error", http_status=500):
    """The service or worker is set up wrong (a setting, a model it cannot load): a fault of the
    deployment, not of the request, hence a 500."""


class NotFound(RmscoreError, code="not_found", http_status=404):
    """No such job or API key for this caller (another tenant's job reads as missing, too)."""


class Conflict(RmscoreError, code="conflict", http_status=409):
    """Valid, but not in the job's state: cancelling a job that has ended, exporting one still running."""


class TooLarge(RmscoreError, code="too_large", http_status=413):
    """An upload, request body or job over a size limit (bytes, decoded bytes or lines)."""


class Overloaded(RmscoreError, code="overloaded", http_status=429):
    """Too much already waits (queued lines, online requests, a tenant's uploads): retry after `retry_after` s."""

    def __init__(self, message: str, *, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unauthorized(RmscoreError, code="unauthorized", http_status=401):
    """No API key, or one the service does not know."""


class Forbidden(RmscoreError, code="forbidden", http_status=403):
    """A valid key without the right for this (a tenant key on an operator endpoint)."""


class ReadTimeout(RmscoreError, code="read_timeout", http_status=408):
    """The client stopped sending its request body (a stalled upload holds a slot others need)."""


class Timeout(RmscoreError, code="timeout", http_status=504):
    """Not done in time (a synchronous scoring request)."""


class ScoringFailed(RmscoreError, code="scoring_failed", http_status=502):
    """The worker could not score the items."""


class Unavailable(RmscoreError, code="unavailable", http_status=503):
    """No worker, broker or database to do the work right now."""

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 5) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class BadRequest(RmscoreError, code="bad_request", http_status=400):
    """An option or file the request names cannot be used (a cursor, an export format, a Parquet file)."""


class UnsupportedMediaType(RmscoreError, code="unsupported_media_type", http_status=415):
    """A request body of a content type the endpoint does not read."""


class IdempotencyMismatch(RmscoreError, code="idempotency_key_reused", http_status=422):
    """An `Idempotency-Key` already used for a different request (as the IETF idempotency-key draft
    says: 422). Answering with the first job would silently drop the second request."""


class ModelNotFound(ConfigError, code="model_not_found"):
    """The model is neither a local model directory nor reachable on the hub (an offline machine)."""
