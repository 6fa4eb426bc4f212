"""Request fingerprints for `Idempotency-Key`: the same key must come with the same request.

As Stripe does, the first request under a key is remembered by a digest of what it asked for; a
retry with that key and the same digest gets the first job back, and a different request under the
same key is refused (`rmscore.errors.IdempotencyMismatch`), never silently answered with a job
that is not what it asked for.

- JSON submissions: SHA-256 of the canonical JSON of the validated body (defaults filled in, keys
  sorted) and the query parameters that change the job.
- Uploads: SHA-256 over the query parameters, the media type, and the body bytes as they stream in,
  with the multipart boundary taken out: a client picks a fresh random boundary on every retry, and
  it is the only part of an identical upload that changes. Computed in passing, so an upload is
  still read once, and memory stays flat.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_VERSION = b"rmscore-fingerprint-1\0"  # changes if what a fingerprint covers changes


def _canonical(value: Any) -> bytes:
    # surrogatepass: a lone surrogate (valid JSON, not UTF-8) still hashes, to one value; the request
    # then fails its own validation with a 4xx instead of the fingerprint failing with a 500.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode(
        "utf-8", "surrogatepass"
    )


def json_request(route: str, body: dict[str, Any], params: dict[str, Any]) -> str:
    """The fingerprint of a JSON submission to `route`: its body and the parameters that shape the job."""
    h = hashlib.sha256(_VERSION)
    h.update(_canonical({"route": route, "body": body, "params": params}))
    return h.hexdigest()


class UploadFingerprint:
    """Fed the body of an upload chunk by chunk (`update`); `hexdigest()` once it has all been read."""

    def __init__(self, params: dict[str, Any], media_type: str, boundary: bytes | None) -> None:
        self._h = hashlib.sha256(_VERSION)
        self._h.update(_canonical({"route": "upload", "params": params, "media_type": media_type}))
        self._h.update(b"\0")
        self._boundary = boundary or b""
        self._carry = b""  # a tail that may be the start of a boundary split across two chunks
        self.seen = 0  # body bytes fed so far

    def update(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        if not self._boundary:
            self._h.update(chunk)
            return
        data = (self._carry + chunk).replace(self._boundary, b"")
        keep = _partial_suffix(data, self._boundary)
        self._carry = data[len(data) - keep :] if keep else b""
        self._h.update(data[: len(data) - keep])

    def hexdigest(self) -> str:
        h = self._h.copy()
        h.update(self._carry)  # the body ended: a partial boundary at its very end is just bytes
        return h.hexdigest()


def _partial_suffix(data: bytes, boundary: bytes) -> int:
    """Length of the longest end of `data` that is a proper start of `boundary` (0 if none)."""
    for n in range(min(len(boundary) - 1, len(data)), 0, -1):
        if data.endswith(boundary[:n]):
            return n
    return 0
