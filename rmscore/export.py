"""Result records to files: the format comes from the file's suffix, and an unknown suffix is refused.

One writer per format, shared by the API's downloads and `rmscore results` (local or over the API):
JSON lines (plain or gzipped), CSV (`csv_chunks`), Parquet (`rmscore.parquet.write_results`).
A file that names a format rmscore cannot write is an error, never JSONL under a misleading name.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rmscore.errors import BadRequest

# Longest suffix first: "x.jsonl.gz" is gzipped JSONL, not an unknown ".gz".
SUFFIXES: tuple[tuple[str, str], ...] = (
    (".jsonl.gz", "jsonl.gz"),
    (".jsonl", "jsonl"),
    (".csv", "csv"),
    (".parquet", "parquet"),
)
FLUSH_CHARS = 64 * 1024  # CSV or JSON text handed on at a time: bounded memory, few writes


def format_of(output: str | os.PathLike[str]) -> str:
    """The format a results file's name asks for ('-' is stdout: JSON lines). BadRequest otherwise."""
    name = os.fspath(output)
    if name == "-":
        return "jsonl"
    lower = name.lower()
    for suffix, fmt in SUFFIXES:
        if lower.endswith(suffix):
            return fmt
    known = ", ".join(s for s, _ in SUFFIXES)
    raise BadRequest(
        f"cannot tell the format of {name!r} from its name: use one of {known} (or '-' for stdout)",
        code="unknown_output_format",
    )


def jsonl_chunks(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """Records as JSON lines, UTF-8, in pieces of about `FLUSH_CHARS` characters."""
    buf: list[str] = []
    size = 0
    for rec in records:
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        buf.append(line)
        size += len(line)
        if size >= FLUSH_CHARS:
            yield "".join(buf).encode()
            buf, size = [], 0
    if buf:
        yield "".join(buf).encode()


def csv_chunks(records: Iterable[dict[str, Any]], kind: str, *, with_model: bool = False) -> Iterator[str]:
    """Result records as CSV text (a header, then one row per record), in pieces of ~`FLUSH_CHARS`."""
    from rmscore.parquet import flat_record, result_columns

    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=result_columns(kind, with_model=with_model), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for rec in records:
        row = flat_record(rec)
        if isinstance(row.get("scores"), list):
            row["scores"] = json.dumps(row["scores"])  # one cell: a listwise line's scores as a JSON array
        writer.writerow(row)
        if out.tell() >= FLUSH_CHARS:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    if out.tell():
        yield out.getvalue()


def write_records(
    records: Iterable[dict[str, Any]], output: str | os.PathLike[str], kind: str, *, with_model: bool = False
) -> int:
    """Write records to `output` in the format its suffix names; returns how many were written.

    The file appears complete or not at all: it is written next to its final name and renamed,
    so a failure half-way (a lost connection) never leaves a truncated file that looks finished.
    """
    fmt = format_of(output)  # refuse before anything is written
    path = Path(output)
    tmp = path.with_name(path.name + ".part")
    counted = Counted(records)
    try:
        if fmt == "parquet":
            from rmscore.parquet import write_results

            write_results(counted, tmp, kind, with_model=with_model)
        elif fmt == "csv":
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                for piece in csv_chunks(counted, kind, with_model=with_model):
                    f.write(piece)
        else:
            opener: Any = gzip.open if fmt == "jsonl.gz" else open
            with opener(tmp, "wt", encoding="utf-8") as f:
                for rec in counted:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return counted.n


class Counted:
    """Records passed through once, counting them (`n`) on the way: a writer's total without a second pass."""

    def __init__(self, records: Iterable[dict[str, Any]]) -> None:
        self._records = records
        self.n = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for rec in self._records:
            self.n += 1
            yield rec


def save(pieces: Iterable[bytes], output: str | os.PathLike[str], *, gz: bool = False) -> int:
    """Write `pieces` to `output` (gzipped with `gz`) through a `.part` file renamed when complete,
    so a failure half-way never leaves a file that looks finished; returns the bytes received."""
    path = Path(output)
    tmp = path.with_name(path.name + ".part")
    n = 0
    try:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") if gz else raw as f:
            for piece in pieces:
                f.write(piece)
                n += len(piece)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename in (str(tmp), tmp) and e.errno is not None:
            # Name the file the user asked for: "Is a directory: out.jsonl.part" (the output is a
            # directory) or a missing folder reported on the .part file named a path never typed.
            raise type(e)(e.errno, e.strerror, str(output)) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
