"""One error hierarchy. Each error carries a stable `code` that users and tests can match on."""

from __future__ import annotations


class RmscoreError(Exception):
    """Base of every error rmscore raises on purpose."""

    code = "error"
    http_status = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InputError(RmscoreError):
    """One input line (or request item) cannot be scored as given."""

    code = "invalid_input"
    http_status = 422


class ConfigError(RmscoreError):
    code = "config_error"
    http_status = 500


class NotFound(RmscoreError):
    code = "not_found"
    http_status = 404


class Conflict(RmscoreError):
    code = "conflict"
    http_status = 409


class TooLarge(RmscoreError):
    code = "too_large"
    http_status = 413


class Overloaded(RmscoreError):
    code = "overloaded"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unauthorized(RmscoreError):
    code = "unauthorized"
    http_status = 401


class Forbidden(RmscoreError):
    """A valid key without the right for this (a tenant key on an operator endpoint)."""

    code = "forbidden"
    http_status = 403


class ReadTimeout(RmscoreError):
    """The client stopped sending its request body (a stalled upload holds a slot others need)."""

    code = "read_timeout"
    http_status = 408


class Timeout(RmscoreError):
    """Not done in time (a synchronous scoring request)."""

    code = "timeout"
    http_status = 504


class ScoringFailed(RmscoreError):
    """The worker could not score the items."""

    code = "scoring_failed"
    http_status = 502


class Unavailable(RmscoreError):
    """No worker, broker or database to do the work right now."""

    code = "unavailable"
    http_status = 503

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 5) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class BadRequest(RmscoreError):
    code = "bad_request"
    http_status = 400


class IdempotencyMismatch(RmscoreError):
    """An `Idempotency-Key` already used for a different request (as the IETF idempotency-key draft
    says: 422). Answering with the first job would silently drop the second request."""

    code = "idempotency_key_reused"
    http_status = 422


class ModelNotFound(ConfigError):
    """The model is neither a local model directory nor reachable on the hub (an offline machine)."""

    code = "model_not_found"
