"""Any input file into parsed lines: the reader is picked by the file's type.

This is the one module that knows both readers. `rmscore.formats` reads JSON (JSONL, `.gz`, one
`.json` document) and `rmscore.parquet` reads Parquet on top of `formats`' line parser; keeping the
dispatch here, above both, is what keeps the two free of an import cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Unpack

from rmscore import parquet
from rmscore.formats import KindArg, LineLimits, Parsed, iter_json


def iter_parsed(
    source: str | Path | IO[bytes], kind: KindArg = "auto", **limits: Unpack[LineLimits]
) -> Iterator[Parsed]:
    """Items and errors, one per input line (or Parquet row), in order, from a path or byte stream.

    A path ending in `.parquet`, or a file that starts with Parquet's magic bytes, is read as Parquet
    (`parquet.is_parquet`; pyarrow is imported only then); anything else as JSON
    (`rmscore.formats.iter_json`: JSONL, `.jsonl.gz`, or one `.json` document).
    """
    if isinstance(source, str | Path) and parquet.is_parquet(source):
        yield from parquet.iter_parsed(source, kind, **limits)
        return
    yield from iter_json(source, kind, **limits)
