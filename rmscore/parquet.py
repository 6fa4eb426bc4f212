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
from typing import IO, Any, Literal

from rmscore.errors import BadRequest
from rmscore.formats import DEFAULT_MAX_TURNS, Kind, LineError, Parsed, parse_object

MAGIC = b"PAR1"
BATCH_ROWS = 4096


def is_parquet(path: str | Path) -> bool:
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        return True
    try:
        with open(p, "rb") as f:
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


def iter_rows(source: str | Path | IO[bytes]) -> Iterator[dict[str, Any]]:
    """Rows as dicts, `BATCH_ROWS` at a time (memory bounded by one batch, not the file)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(source)
    for batch in pf.iter_batches(batch_size=BATCH_ROWS):
        for row in batch.to_pylist():
            yield {k: _clean(v) for k, v in row.items() if v is not None}


def iter_parsed(
    source: str | Path | IO[bytes],
    kind: Kind | Literal["auto"] | None = "auto",
    *,
    max_turns: int = DEFAULT_MAX_TURNS,
) -> Iterator[Parsed]:
    """Like `rmscore.formats.iter_parsed`, for a Parquet file: one item or error per row, in order."""
    fixed: Kind | None = None if kind in ("auto", None) else kind  # type: ignore[assignment]
    rows = iter_rows(source)
    n = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is both
            # A broken file cannot account for its rows one by one: the whole input is refused.
            raise BadRequest(f"not a readable Parquet file (after {n:,} rows): {e}", code="invalid_parquet") from None
        n += 1
        parsed = parse_object(row, n, fixed, max_turns=max_turns)
        if fixed is None and not isinstance(parsed, LineError):
            fixed = parsed.kind
        yield parsed


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
    }
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

    return pq.read_table(path).to_pylist()
