"""Parquet in and out (Hugging Face datasets are stored as Parquet), read and written in batches.

A Parquet row is read as the JSON line with the same fields would be: row n is line n, and
`rmscore.formats.parse_object` decides what it is. Null columns count as absent, so a file whose
schema has both `messages` and `prompt` columns still reads row by row. pyarrow is imported only
here and only when called.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from rmscore.errors import BadRequest, TooLarge
from rmscore.formats import (
    DEFAULT_MAX_LINE_BYTES,
    DEFAULT_MAX_RESPONSES,
    DEFAULT_MAX_TURNS,
    KindArg,
    KindLatch,
    LineError,
    Parsed,
    parse_object,
)

MAGIC = b"PAR1"
BATCH_ROWS = 4096


def is_parquet(path: str | Path, name: str | None = None) -> bool:
    """Parquet by its name (`name`, else the path's) ending in `.parquet`, or by its magic bytes: an
    upload's temporary file, or a CLI input, named otherwise is still read as what it is."""
    if str(name if name is not None else path).lower().endswith(".parquet"):
        return True
    try:
        # Only a regular file is sniffed: bytes read from a pipe (/dev/stdin, <(...)) would be lost.
        if not Path(path).is_file():
            return False
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def _clean(value: Any) -> Any:
    # Arrow maps give lists of (key, value) tuples; NaN has no JSON form.
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


# Decoded bytes one batch of rows may take before it becomes Python objects, and the per-value
# overhead counted for each (a list of a million empty strings is not free).
BATCH_BYTES = 16 * 1024**2
_VALUE_BYTES = 8


def _limits_error(what: str, size: int, limit: int) -> TooLarge:
    return TooLarge(f"{what} decodes to more than {limit:,} bytes (about {size:,})", code="job_too_large")


def _decoded_bounds(pf: Any) -> list[int]:
    """Per row group, what its pages hold uncompressed plus a cost per value, from the footer alone.

    This catches plain and run-length bombs (a zstd page of zeros, a billion-element list) before a
    byte is decoded. Dictionary-encoded strings can still repeat one large value on every row; the
    dictionary stays encoded while reading and each row's size is checked before it is decoded.
    """
    md = pf.metadata
    out = []
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        out.append(
            sum(
                rg.column(j).total_uncompressed_size + 2 * _VALUE_BYTES * rg.column(j).num_values
                for j in range(rg.num_columns)
            )
        )
    return out


def _sizes(arr: Any) -> Any:
    """Per element of an Arrow array, about how many bytes it decodes to (numpy int64), without decoding it."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(arr)
    t = arr.type
    if pa.types.is_dictionary(t):
        values = _sizes(arr.dictionary)
        idx = arr.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        out = values[idx] if len(values) else np.zeros(n, dtype=np.int64)
        return np.where(arr.is_null().to_numpy(zero_copy_only=False), 0, out)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pc.binary_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64) + _VALUE_BYTES
    if pa.types.is_struct(t):
        out = np.full(n, _VALUE_BYTES, dtype=np.int64)
        for child in arr.flatten():
            out += _sizes(child)
        return out
    if pa.types.is_map(t):
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        child = _sizes(arr.keys) + _sizes(arr.items)
        return np.bincount(parents, weights=child, minlength=n).astype(np.int64) + _VALUE_BYTES
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        child = _sizes(arr.flatten())
        return np.bincount(parents, weights=child, minlength=n).astype(np.int64) + _VALUE_BYTES
    return np.full(n, 2 * _VALUE_BYTES, dtype=np.int64)


def row_sizes(batch: Any) -> Any:
    """About how many bytes each row of a RecordBatch decodes to (dictionaries counted per use)."""
    import numpy as np

    out = np.zeros(batch.num_rows, dtype=np.int64)
    for col in batch.columns:
        out += _sizes(col)
    return out


def _open(source: str | Path | IO[bytes]) -> Any:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(source)
    strings = [c.path for c in pf.schema if c.physical_type == "BYTE_ARRAY"]
    # Strings stay dictionary-encoded in Arrow (indices + one copy of each distinct value) until a row
    # is turned into Python objects, so a value repeated on every row is never copied per row.
    return pq.ParquetFile(source, read_dictionary=strings) if strings else pf


def iter_rows(
    source: str | Path | IO[bytes],
    *,
    max_row_bytes: int | None = None,
    max_bytes: int | None = None,
) -> Iterator[dict[str, Any] | int]:
    """Rows as dicts, in batches whose decoded size is bounded, not the file's.

    A row over `max_row_bytes` (as decoded) comes back as its size, undecoded; all rows together over
    `max_bytes` raise TooLarge (`job_too_large`).
    """
    import pyarrow as pa

    try:
        yield from _rows(source, max_row_bytes, max_bytes)
    finally:
        # Arrow's allocator keeps freed pages for reuse; a long-lived API gives them back now.
        pa.default_memory_pool().release_unused()


def _rows(source: str | Path | IO[bytes], max_row_bytes: int | None, max_bytes: int | None) -> Iterator[Any]:
    pf = _open(source)
    bounds = _decoded_bounds(pf)
    if max_bytes is not None and sum(bounds) > max_bytes:
        raise _limits_error("this Parquet file", sum(bounds), max_bytes)
    md = pf.metadata
    rows = BATCH_ROWS
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        # Sizing a batch costs ~64 bytes of temporaries a value (the strings stay encoded), so a batch
        # holds ~BATCH_BYTES/64 values: one row at a time where a single row holds a huge list.
        cost = sum(rg.column(j).total_uncompressed_size + 64 * rg.column(j).num_values for j in range(rg.num_columns))
        if cost:
            rows = min(rows, max(1, rg.num_rows * BATCH_BYTES // cost))
    if max_bytes is not None:
        # A first pass sizes every row (strings still dictionary-encoded, nothing becomes Python
        # objects), so a file over the limit is refused before any of its rows is stored.
        total = 0
        for batch in pf.iter_batches(batch_size=rows, use_threads=False):
            total += int(row_sizes(batch).sum())
            if total > max_bytes:
                raise _limits_error("this Parquet file", total, max_bytes)
    total = 0
    for batch in pf.iter_batches(batch_size=rows, use_threads=False):
        sizes = row_sizes(batch)
        start = 0
        while start < batch.num_rows:
            # The next run of rows to decode: under the row limit, and together under BATCH_BYTES.
            end, run = start, 0
            while end < batch.num_rows and (max_row_bytes is None or sizes[end] <= max_row_bytes):
                if end > start and run + sizes[end] > BATCH_BYTES:
                    break
                run += int(sizes[end])
                end += 1
            if end == start:  # a row over the limit: its size, never its content
                total += int(sizes[start])
                if max_bytes is not None and total > max_bytes:
                    raise _limits_error("this Parquet file", total, max_bytes)
                yield int(sizes[start])
                start += 1
                continue
            total += run
            if max_bytes is not None and total > max_bytes:
                raise _limits_error("this Parquet file", total, max_bytes)
            for row in batch.slice(start, end - start).to_pylist():
                yield {k: _clean(v) for k, v in row.items() if v is not None}
            start = end


def iter_parsed(
    source: str | Path | IO[bytes],
    kind: KindArg = "auto",
    *,
    max_turns: int = DEFAULT_MAX_TURNS,
    max_line_bytes: int | None = DEFAULT_MAX_LINE_BYTES,
    max_bytes: int | None = None,
    max_responses: int = DEFAULT_MAX_RESPONSES,
) -> Iterator[Parsed]:
    """Like `rmscore.formats.iter_json`, for a Parquet file: one item or error per row, in order.

    A row is held to `max_line_bytes` as a JSON line is (`line_too_long`, judged on its decoded size),
    and the whole file to `max_bytes` decoded.
    """
    latch = KindLatch(kind)
    n = 0
    try:
        rows = iter_rows(source, max_row_bytes=max_line_bytes, max_bytes=max_bytes)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is both
        raise BadRequest(f"not a readable Parquet file: {e}", code="invalid_parquet") from None
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except (OSError, ValueError) as e:
            # A broken file cannot account for its rows one by one: the whole input is refused.
            raise BadRequest(f"not a readable Parquet file (after {n:,} rows): {e}", code="invalid_parquet") from None
        n += 1
        if isinstance(row, int):
            parsed: Parsed = LineError(
                n, None, "line_too_long", f"row decodes to about {row} bytes; the limit is {max_line_bytes}"
            )
        else:
            parsed = parse_object(row, n, latch.kind, max_turns=max_turns, max_responses=max_responses)
        yield latch.saw(parsed)


# --------------------------------------------------------------------------- results -> Parquet

# Columns of a results file per job kind (Parquet and CSV): the same whatever the rows hold.
RESULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "chat": ("line", "custom_id", "score", "num_tokens", "truncated", "cached", "error_code", "error_message"),
    "pairwise": (
        "line",
        "custom_id",
        "subset",
        "chosen_score",
        "rejected_score",
        "correct",
        "truncated",
        "cached",
        "error_code",
        "error_message",
    ),
    "listwise": (
        "line",
        "custom_id",
        "subset",
        "scores",
        "best",
        "worst",
        "correct",
        "truncated",
        "cached",
        "error_code",
        "error_message",
    ),
}


def result_columns(kind: str, *, with_model: bool = False) -> tuple[str, ...]:
    """The columns of a results file; `with_model` (a job scored by several models) adds `model`
    after `line`, since each line then appears once per model."""
    cols = RESULT_COLUMNS[kind]
    return (cols[0], "model", *cols[1:]) if with_model else cols


def _schema(kind: str, with_model: bool = False) -> Any:
    import pyarrow as pa

    types = {
        "line": pa.int64(),
        "num_tokens": pa.int64(),
        "score": pa.float64(),
        "chosen_score": pa.float64(),
        "rejected_score": pa.float64(),
        "correct": pa.bool_(),
        "truncated": pa.bool_(),
        "cached": pa.bool_(),  # the score came from the score cache (null on an error line)
        "scores": pa.list_(pa.float64()),
        "best": pa.int64(),
        "worst": pa.int64(),
    }
    if kind == "listwise":
        types["correct"] = pa.float64()  # RewardBench 2's credit: 1/k on a tie at the top
    return pa.schema([pa.field(c, types.get(c, pa.string())) for c in result_columns(kind, with_model=with_model)])


def flat_record(record: dict[str, Any]) -> dict[str, Any]:
    """A result record with its error flattened into `error_code` / `error_message` columns."""
    out = {k: v for k, v in record.items() if k != "error"}
    err = record.get("error")
    out["error_code"] = err["code"] if err else None
    out["error_message"] = err["message"] if err else None
    return out


def write_results(
    records: Iterable[dict[str, Any]], sink: str | Path | IO[bytes], kind: str, *, with_model: bool = False
) -> int:
    """Write result records (the `rmscore score` shapes) as Parquet, in row groups of `BATCH_ROWS`.

    Returns the number of rows written. Columns are fixed per kind (plus `model` with
    `with_model`), so every file of a kind has the same schema whatever its rows hold.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(kind, with_model)
    names = schema.names
    n = 0
    with pq.ParquetWriter(sink, schema) as writer:
        batch: list[dict[str, Any]] = []
        for rec in records:
            flat = flat_record(rec)
            batch.append({k: flat.get(k) for k in names})
            if len(batch) >= BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                n += len(batch)
                batch = []
        if batch or n == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a (small) Parquet file; for tests and notebooks."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows
