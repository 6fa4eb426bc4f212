"""Turn an upload's body into parsed lines, with every size bounded whatever the file holds.

Runs in a worker thread (the job store is synchronous). Body chunks are pulled from the event loop
one at a time (`read_chunk`) and written, as sent, to a temporary file: the multipart body is parsed
on the fly, form fields are kept in any order (before or after the file), and only the `file` part
is written. Nothing is parsed until the whole body is in, so `kind` may come last.

Then the file is checked before a line is stored: what it expands to (a .gz decompressed, a
Parquet file decoded) is held to `max_job_bytes`, and a `.json` document, parsed whole, to the
JSON body limits. Lines are cut at `max_line_bytes` (a longer line is never buffered: it becomes a
`line_too_long` error), Parquet rows and `.json` items are held to the same limit.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from rmscore import formats
from rmscore import parquet as pq
from rmscore.errors import BadRequest, TooLarge

ReadChunk = Callable[[], bytes | None]  # next body chunk, None at the end
_MAX_FIELD_BYTES = 64 * 1024
_MAX_PARTS = 32
_BUFFER = 1024 * 1024


class _Body:
    """Body chunks with the upload size limit applied as they arrive."""

    def __init__(self, read_chunk: ReadChunk, max_bytes: int) -> None:
        self.read_chunk, self.max_bytes, self.seen = read_chunk, max_bytes, 0

    def chunks(self) -> Iterator[bytes]:
        while (chunk := self.read_chunk()) is not None:
            self.seen += len(chunk)
            if self.seen > self.max_bytes:
                raise TooLarge(f"the upload is over the {self.max_bytes:,}-byte limit", code="upload_too_large")
            if chunk:
                yield chunk


@dataclass
class _Part:
    name: str | None = None
    filename: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Multipart:
    """Streaming multipart/form-data: yields ("part", _Part), ("data", bytes) and ("end", None) events."""

    def __init__(self, body: Iterator[bytes], boundary: bytes) -> None:
        self.body = body
        self.events: deque[tuple[str, Any]] = deque()
        self._field = b""
        self._value = b""
        self._part = _Part()
        self.finished = False
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": lambda d, s, e: self._add("_field", d[s:e]),
                "on_header_value": lambda d, s, e: self._add("_value", d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": lambda d, s, e: self.events.append(("data", bytes(d[s:e]))),
                "on_part_end": lambda: self.events.append(("end", None)),
                "on_end": self._end,
            },
        )

    def _add(self, attr: str, data: bytes) -> None:
        setattr(self, attr, getattr(self, attr) + data)
        if len(self._field) + len(self._value) > 16 * 1024:
            raise BadRequest("a multipart header is too long", code="invalid_multipart")

    def _begin(self) -> None:
        self._part = _Part()

    def _header_end(self) -> None:
        self._part.headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field = self._value = b""

    def _headers_done(self) -> None:
        disp = self._part.headers.get("content-disposition", "")
        _, params = parse_options_header(disp)
        name = params.get(b"name")
        filename = params.get(b"filename")
        self._part.name = name.decode("utf-8", "replace") if name is not None else None
        self._part.filename = filename.decode("utf-8", "replace") if filename is not None else None
        self.events.append(("part", self._part))

    def _end(self) -> None:
        self.finished = True

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        for chunk in self.body:
            try:
                self.parser.write(chunk)
            except BadRequest:
                raise
            except Exception as e:  # noqa: BLE001 - python-multipart raises its own errors on bad input
                raise BadRequest(f"malformed multipart body: {e}", code="invalid_multipart") from None
            while self.events:
                yield self.events.popleft()
        try:
            self.parser.finalize()
        except Exception as e:  # noqa: BLE001
            raise BadRequest(f"malformed multipart body: {e}", code="invalid_multipart") from None
        while self.events:
            yield self.events.popleft()
        if not self.finished:
            raise BadRequest("the multipart body ends before its closing boundary", code="invalid_multipart")


class BoundedLines:
    """Lines of a byte stream without their newline; a line over `limit` bytes comes back cut at
    `limit + 1` bytes (so the parser reports it as too long) and the rest of it is skipped unread."""

    def __init__(self, stream: Any, limit: int) -> None:
        self.stream, self.limit = stream, limit

    def __iter__(self) -> Iterator[bytes]:
        readline = self.stream.readline
        while True:
            line = readline(self.limit + 1)
            if not line:
                return
            if len(line) > self.limit and not line.endswith(b"\n"):
                while (rest := readline(_BUFFER)) and not rest.endswith(b"\n"):
                    pass
            yield line


@dataclass
class Upload:
    """What came with the file: the form fields (any order), and its name."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None


@dataclass(frozen=True)
class Limits:
    max_bytes: int  # on the wire
    max_job_bytes: int  # decompressed or decoded
    max_json_bytes: int  # a `.json` document, parsed whole
    max_line_bytes: int
    max_turns: int
    max_responses: int


_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error, OSError)


def receive_multipart(read_chunk: ReadChunk, boundary: bytes, upload: Upload, dest: Path, max_bytes: int) -> None:
    """Write the `file` part of a multipart body to `dest`; its other fields go to `upload.fields`."""
    current: _Part | None = None
    value = b""
    seen_file = False
    parts = 0
    with open(dest, "wb") as out:
        for ev, arg in Multipart(_Body(read_chunk, max_bytes).chunks(), boundary):
            if ev == "part":
                current, value = arg, b""
                parts += 1
                if parts > _MAX_PARTS:  # each field is bounded; so is their number
                    raise BadRequest(f"a multipart body holds at most {_MAX_PARTS} parts", code="invalid_multipart")
                if current.name == "file":
                    if seen_file:
                        raise BadRequest("send one file per upload", code="invalid_multipart")
                    seen_file = True
                    upload.filename = current.filename
            elif ev == "data" and current is not None:
                if current.name == "file":
                    out.write(arg)
                    continue
                value += arg
                if len(value) > _MAX_FIELD_BYTES:
                    raise BadRequest(f"form field {current.name!r} is too long", code="invalid_multipart")
            elif ev == "end" and current is not None:
                if current.name and current.name != "file":
                    if current.name in upload.fields:
                        raise BadRequest(f"form field {current.name!r} is sent twice", code="invalid_multipart")
                    upload.fields[current.name] = value.decode("utf-8", "replace")
                current = None
    if not seen_file:
        raise BadRequest("the multipart body has no 'file' field", code="missing_file")


def receive_raw(read_chunk: ReadChunk, dest: Path, max_bytes: int) -> None:
    """Write a body that is the file itself (`Content-Type: application/x-ndjson`, …) to `dest`."""
    with open(dest, "wb") as out:
        for chunk in _Body(read_chunk, max_bytes).chunks():
            out.write(chunk)


def parse_file(path: Path, filename: str | None, kind: str, limits: Limits) -> Iterator[formats.Parsed]:
    """Parsed lines of an uploaded file (JSONL, .jsonl.gz, Parquet, or one .json document).

    Raises before the first line when the file expands beyond the limits, so a bomb stores nothing.
    """
    if pq.is_parquet(path, filename or ""):
        yield from pq.iter_parsed(
            path,
            formats.kind_arg(kind),
            max_turns=limits.max_turns,
            max_line_bytes=limits.max_line_bytes,
            max_bytes=limits.max_job_bytes,
            max_responses=limits.max_responses,
        )
        return
    with open(path, "rb") as f:
        gz = f.read(2) == formats.GZIP_MAGIC
    document = formats.is_json_document(filename or "")
    # Counted up to the limit that applies (a document's is smaller), then stopped: never more work.
    limit = min(limits.max_job_bytes, limits.max_json_bytes) if document else limits.max_job_bytes
    size = _gunzipped_size(path, limit) if gz else path.stat().st_size
    if document:
        yield from _document(path, gz, size, kind, limits)
        return
    if size > limits.max_job_bytes:
        raise _expanded_too_large(limits.max_job_bytes)
    with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw as source:
        try:
            yield from formats.iter_json(
                BoundedLines(source, limits.max_line_bytes),  # type: ignore[arg-type]
                formats.kind_arg(kind),
                max_line_bytes=limits.max_line_bytes,
                max_turns=limits.max_turns,
                max_responses=limits.max_responses,
            )
        except _GZIP_ERRORS as e:
            raise BadRequest(f"the file is not valid gzip: {e}", code="invalid_gzip") from None


def _expanded_too_large(limit: int) -> TooLarge:
    return TooLarge(f"the file expands to more than the {limit:,}-byte limit of a job", code="job_too_large")


def _gunzipped_size(path: Path, limit: int) -> int:
    """Bytes the gzip file decompresses to, counted (not kept) and stopped just past `limit`."""
    n = 0
    try:
        with gzip.open(path, "rb") as g:
            while chunk := g.read(_BUFFER):
                n += len(chunk)
                if n > limit:
                    break
    except _GZIP_ERRORS as e:
        raise BadRequest(f"the file is not valid gzip: {e}", code="invalid_gzip") from None
    return n


def _document(path: Path, gz: bool, size: int, kind: str, limits: Limits) -> Iterator[formats.Parsed]:
    """A `.json` document is parsed whole, so it is held to the JSON body limits (use JSONL for more)."""
    from api.guard import PARSED_BUDGET_FACTOR, parsed_size_estimate

    limit = limits.max_json_bytes
    if size > limit:
        raise TooLarge(
            f"a .json document is parsed whole, so it may be at most {limit:,} bytes; send JSONL for more",
            code="document_too_large",
        )
    blob = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    if parsed_size_estimate(blob) > PARSED_BUDGET_FACTOR * limit:
        raise TooLarge(
            "this .json document is too dense in tiny values to parse whole; send it as JSONL",
            code="document_too_large",
        )
    try:
        doc = json.loads(blob)
    except (ValueError, RecursionError) as e:
        yield formats.LineError(1, None, "invalid_json", f"file is not valid JSON: {e}")
        return
    del blob
    yield from formats.iter_objects(
        formats.document_rows(doc),
        formats.kind_arg(kind),
        max_line_bytes=limits.max_line_bytes,
        max_turns=limits.max_turns,
        max_responses=limits.max_responses,
    )


def parse_metadata(raw: str | None) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"metadata is not JSON: {e}", code="invalid_metadata") from None
    if not isinstance(value, dict):
        raise BadRequest("metadata must be a JSON object", code="invalid_metadata")
    return value
