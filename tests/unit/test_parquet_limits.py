"""Parquet input is read in bounded batches: a tiny file that decodes to gigabytes (dictionary
encoding repeats one value on every row; run-length encoding repeats one number a billion times)
is refused from its footer or from each row's size, computed before the row becomes Python objects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rmscore import parquet
from rmscore.errors import TooLarge
from rmscore.formats import ChatItem, LineError

GIB = 1024**3


def _dictionary_bomb(path: Path, rows: int, value_bytes: int) -> Path:
    """One `value_bytes` string, dictionary-encoded and zstd-compressed, on every row: a few KB on disk."""
    value = pa.array(["a" * value_bytes]).dictionary_encode()
    table = pa.table({"prompt": pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), value.dictionary)})
    table = table.append_column("response", pa.array(["r"] * rows))
    pq.write_table(table, path, compression="zstd", use_dictionary=True)
    return path


def test_row_sizes_count_dictionary_values_per_use_and_nested_lists() -> None:
    batch = pa.record_batch(
        {
            "s": pa.array(["abc", None, "abcdef"]).dictionary_encode(),
            "l": pa.array([[{"c": "xx"}] * 3, [], None]),
        }
    )
    sizes = parquet.row_sizes(batch)
    # "abc" 3 + per-value 8; a list of three structs of one 2-byte string.
    assert sizes[0] == (3 + 8) + (8 + 3 * (8 + 2 + 8))
    assert sizes[1] == 0 + 8  # a null value; an empty list
    assert sizes[2] == (6 + 8) + 8  # a null list costs its slot


def test_dictionary_bomb_is_refused_before_any_row(tmp_path: Path) -> None:
    path = _dictionary_bomb(tmp_path / "bomb.parquet", rows=3000, value_bytes=500_000)
    assert path.stat().st_size < 10_000  # 1.5 GB of rows in a few KB
    rows = parquet.iter_parsed(path, "auto", max_bytes=GIB)
    with pytest.raises(TooLarge) as e:
        next(rows)
    assert e.value.code == "job_too_large"


def test_rows_over_the_line_limit_are_their_lines_errors(tmp_path: Path) -> None:
    path = _dictionary_bomb(tmp_path / "wide.parquet", rows=50, value_bytes=2_000_000)
    out = list(parquet.iter_parsed(path, "auto", max_line_bytes=1_000_000, max_bytes=GIB))
    assert [p.line for p in out] == list(range(1, 51))
    assert all(isinstance(p, LineError) and p.code == "line_too_long" for p in out)


def test_run_length_bomb_is_refused_from_the_footer(tmp_path: Path) -> None:
    path = tmp_path / "zeros.parquet"
    pq.write_table(pa.table({"n": pa.array(np.zeros(70_000_000, np.int8))}), path, compression="zstd")
    with pytest.raises(TooLarge):
        next(parquet.iter_parsed(path, "auto", max_bytes=GIB))


def test_a_dictionary_bomb_under_the_limit_reads_in_bounded_memory(tmp_path: Path) -> None:
    """900 MB of rows (each under the line limit) from a small file: read in a fresh process, whose
    peak memory must stay far below what the rows decode to."""
    path = _dictionary_bomb(tmp_path / "big.parquet", rows=1000, value_bytes=900_000)
    code = (
        "import re, sys\n"
        "from rmscore import parquet\n"
        "n = sum(1 for p in parquet.iter_parsed(sys.argv[1], 'auto', max_bytes=2**30))\n"
        # VmHWM, not ru_maxrss: the latter keeps the forking test process' peak across exec.
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "print(n, int(hwm) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    n, peak_mb = map(int, out.stdout.split())
    assert n == 1000
    assert peak_mb < 400, f"peak {peak_mb} MB reading 900 MB of rows"


def test_ordinary_files_read_as_before(tmp_path: Path) -> None:
    path = tmp_path / "ok.parquet"
    pq.write_table(pa.table({"prompt": [f"p{i}" for i in range(10_000)], "response": ["r"] * 10_000}), path)
    out = list(parquet.iter_parsed(path, "auto", max_bytes=GIB))
    assert len(out) == 10_000 and all(isinstance(p, ChatItem) for p in out)
    assert out[-1].messages[0]["content"] == "p9999"


def test_a_parquet_file_is_read_as_parquet_whatever_its_name(tmp_path: Path) -> None:
    # One rule for every reader (the CLI's path, the API's upload): the name, else the magic bytes.
    from rmscore.inputs import iter_parsed

    path = tmp_path / "export.bin"
    pq.write_table(pa.table({"prompt": ["q"], "response": ["r"]}), path)
    assert parquet.is_parquet(path) and parquet.is_parquet(tmp_path / "x", name="x.PARQUET")
    (item,) = iter_parsed(path)
    assert isinstance(item, ChatItem) and item.messages[-1]["content"] == "r"
    jsonl = tmp_path / "lines.bin"
    jsonl.write_text('{"prompt": "q", "response": "r"}\n')
    assert not parquet.is_parquet(jsonl)


def test_a_pipe_is_never_sniffed(tmp_path: Path) -> None:
    # Reading its first bytes to look would lose them for the reader that follows.
    import os

    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    assert not parquet.is_parquet(fifo)  # returns at once: opening the FIFO would block
