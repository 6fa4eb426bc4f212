"""Turn an upload's body, as it arrives, into parsed lines: memory stays flat on any file size.

Runs in a worker thread (the job store is synchronous). Body chunks are pulled from the event loop
one at a time (`read_chunk`), parsed as multipart on the fly (only the `file` part is kept, form
fields before it are read as options), un-gzipped when the file starts with gzip's magic bytes,
and cut into lines of at most `max_line_bytes` (a longer line is not buffered: it becomes a
`line_too_long` error). Parquet and single-document `.json` files need the whole file, so they
are spooled to a temporary file first (disk, not memory).
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tempfile
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
FORM_FIELDS = ("kind", "model", "metadata")
_MAX_FIELD_BYTES = 64 * 1024
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


class _PartReader(io.RawIOBase):
    """A file-like view of one part's data events (stops at the part's end)."""

    def __init__(self, data: Iterator[bytes]) -> None:
        self._data = data
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._data)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


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
    """What came with the file: form fields sent before it, and its name."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None


def _is_gzip(head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b"


def parse_stream(
    stream: io.BufferedIOBase,
    filename: str | None,
    kind: str,
    *,
    max_line_bytes: int,
    max_turns: int,
) -> Iterator[formats.Parsed]:
    """Parsed lines of an uploaded file (JSONL, .jsonl.gz, Parquet, or one .json document)."""
    buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream, _BUFFER)  # type: ignore[arg-type]
    head = buffered.peek(4)[:4]
    name = (filename or "").lower()
    if head == pq.MAGIC or name.endswith(".parquet"):
        yield from _spooled(buffered, ".parquet", lambda p: pq.iter_parsed(p, kind, max_turns=max_turns))  # type: ignore[arg-type]
        return
    source: Any = buffered
    if _is_gzip(head):
        source = gzip.GzipFile(fileobj=buffered, mode="rb")
    if name.removesuffix(".gz").endswith(".json"):
        yield from _spooled(
            source,
            ".json",
            lambda p: formats.iter_parsed(p, kind, max_line_bytes=max_line_bytes, max_turns=max_turns),  # type: ignore[arg-type]
        )
        return
    try:
        yield from formats.iter_parsed(
            BoundedLines(source, max_line_bytes),  # type: ignore[arg-type]
            kind,  # type: ignore[arg-type]
            max_line_bytes=max_line_bytes,
            max_turns=max_turns,
        )
    except (gzip.BadGzipFile, EOFError, OSError) as e:
        raise BadRequest(f"the file is not valid gzip: {e}", code="invalid_gzip") from None


def _spooled(source: Any, suffix: str, parse: Callable[[Path], Iterator[formats.Parsed]]) -> Iterator[formats.Parsed]:
    with tempfile.TemporaryDirectory(prefix="rmscore-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        try:
            with open(path, "wb") as f:
                shutil.copyfileobj(source, f, _BUFFER)
        except (gzip.BadGzipFile, EOFError) as e:
            raise BadRequest(f"the file is not valid gzip: {e}", code="invalid_gzip") from None
        yield from parse(path)


def multipart_lines(
    read_chunk: ReadChunk,
    boundary: bytes,
    upload: Upload,
    kind_of: Callable[[Upload], str],
    *,
    max_bytes: int,
    max_line_bytes: int,
    max_turns: int,
) -> Iterator[formats.Parsed]:
    """Parsed lines of the `file` part of a multipart body.

    Form fields before the file fill `upload.fields`; `kind_of(upload)` is asked for the kind once
    the file starts. A `kind`, `model` or `metadata` field after the file is refused (raised
    before the job is stored) rather than silently ignored.
    """
    events = iter(Multipart(_Body(read_chunk, max_bytes).chunks(), boundary))
    current: _Part | None = None
    value = b""
    for ev, arg in events:
        if ev == "part":
            current, value = arg, b""
            if current.name == "file":
                break
        elif ev == "data" and current is not None:
            value += arg
            if len(value) > _MAX_FIELD_BYTES:
                raise BadRequest(f"form field {current.name!r} is too long", code="invalid_multipart")
        elif ev == "end" and current is not None:
            if current.name:
                upload.fields[current.name] = value.decode("utf-8", "replace")
            current = None
    else:
        raise BadRequest("the multipart body has no 'file' field", code="missing_file")
    assert current is not None
    upload.filename = current.filename
    kind = kind_of(upload)

    def file_data() -> Iterator[bytes]:
        for ev2, arg2 in events:
            if ev2 == "data":
                yield arg2
            elif ev2 == "end":
                return

    reader = io.BufferedReader(_PartReader(file_data()), _BUFFER)
    yield from parse_stream(reader, upload.filename, kind, max_line_bytes=max_line_bytes, max_turns=max_turns)
    # The rest of the body: only fields that change nothing are allowed after the file.
    late = _Part()
    for ev, arg in events:
        if ev == "part":
            late = arg
            if late.name in FORM_FIELDS:
                raise BadRequest(
                    f"form field {late.name!r} comes after the file; send it before, or as a query parameter",
                    code="invalid_multipart",
                )
            if late.name == "file":
                raise BadRequest("send one file per upload", code="invalid_multipart")


def raw_lines(
    read_chunk: ReadChunk,
    filename: str | None,
    kind: str,
    *,
    max_bytes: int,
    max_line_bytes: int,
    max_turns: int,
) -> Iterator[formats.Parsed]:
    """Parsed lines of a body that is the file itself (`Content-Type: application/x-ndjson`, …)."""

    def data() -> Iterator[bytes]:
        yield from _Body(read_chunk, max_bytes).chunks()

    reader = io.BufferedReader(_PartReader(data()), _BUFFER)
    yield from parse_stream(reader, filename, kind, max_line_bytes=max_line_bytes, max_turns=max_turns)


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
