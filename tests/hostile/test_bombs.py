"""Expansion bombs in every input format, against a real API with default limits.

Each is refused with a 413 and a clear code before a row is stored, or ends as its lines'
`line_too_long`; the API's peak memory stays under the target whatever it was sent.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostilekit import MIB, RSS_TARGET_MB, Hostile, gzip_repeated, job_records, wait_job

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("hostile", ["sqlite"], indirect=True)]

GOOD = {"prompt": "hello", "response": "hi there"}


def _job_count(h: Hostile) -> int:
    with h.client() as c:
        return len(c.get("/v1/jobs", params={"limit": 100}).json()["data"])


def _upload(h: Hostile, name: str, filename: str, blob: bytes, **params: str) -> dict:
    def send():
        with h.client() as c:
            return c.post("/v1/jobs/upload", params=params, files={"file": (filename, blob)})

    r = h.attack(name, send, len(blob))
    assert h.rss_mb() < RSS_TARGET_MB, h.summary()
    return {**r.json(), "http": r.status_code}


def test_jsonl_gz_of_many_lines_past_the_job_limit_stores_nothing(hostile: Hostile) -> None:
    # ~1 MB of valid lines, repeated: 1.1 GB decompressed from ~2 MB (the default job limit is 1 GiB).
    line = json.dumps({"prompt": "p", "response": "x" * 100_000}).encode() + b"\n"
    blob = gzip_repeated(line * 10, 1100)
    assert len(blob) < 3 * MIB
    before = _job_count(hostile)
    out = _upload(hostile, "jsonl.gz: 1.1 GB of valid lines", "many.jsonl.gz", blob)
    assert (out["http"], out["error"]["code"]) == (413, "job_too_large")
    assert _job_count(hostile) == before


def test_jsonl_gz_with_one_300mb_line_scores_the_rest(hostile: Hostile) -> None:
    head = b'{"prompt": "p", "response": "'
    tail = b'"}\n' + json.dumps(GOOD).encode()
    blob = gzip_repeated(head, 1) + gzip_repeated(b"a" * MIB, 300) + gzip_repeated(tail, 1)
    out = _upload(hostile, "jsonl.gz: one 300 MB line, then a good one", "one.jsonl.gz", blob)
    assert out["http"] == 202, out
    with hostile.client() as c:
        wait_job(c, out["id"])
        records = job_records(c, out["id"])
    assert [r["line"] for r in records] == [1, 2]
    assert records[0]["error"]["code"] == "line_too_long"
    assert isinstance(records[1]["score"], float)


def test_plain_jsonl_with_a_huge_line(hostile: Hostile) -> None:
    blob = b'{"prompt": "p", "response": "' + b"a" * (40 * MIB) + b'"}\n' + json.dumps(GOOD).encode() + b"\n"
    out = _upload(hostile, "jsonl: one 40 MB line, then a good one", "one.jsonl", blob)
    assert out["http"] == 202, out
    with hostile.client() as c:
        wait_job(c, out["id"])
        codes = [r.get("error", {}).get("code") for r in job_records(c, out["id"])]
    assert codes == ["line_too_long", None]


@pytest.mark.parametrize(
    ("name", "filename", "blob"),
    [
        (".json.gz: 1.1 GB document", "bomb.json.gz", gzip_repeated(b"[" + b'{"prompt": "p"},' * 60_000, 1100)),
        (".json.gz: 100 MB document", "big.json.gz", gzip_repeated(b" " * MIB, 100) + gzip_repeated(b"[]", 1)),
        (".json: 20 MB document", "big.json", b"[" + b" " * (20 * MIB) + b"]"),
        (".json: 15 MB of empty objects", "dense.json", b"[" + b"{}," * (5 * MIB) + b"{}]"),
    ],
)
def test_json_documents_are_bounded(hostile: Hostile, name: str, filename: str, blob: bytes) -> None:
    before = _job_count(hostile)
    out = _upload(hostile, name, filename, blob)
    assert out["http"] == 413, out
    assert out["error"]["code"] in ("document_too_large", "job_too_large"), out
    assert _job_count(hostile) == before


def _parquet(table: pa.Table, **kw: object) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", **kw)
    return buf.getvalue()


def _dictionary_column(value: str, rows: int) -> pa.Array:
    dictionary = pa.array([value])
    return pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), dictionary)


def test_parquet_dictionary_bomb(hostile: Hostile) -> None:
    # The file: one 1 MB string, dictionary-encoded, on 4,000 rows: 4 GB of rows in ~1.5 KB.
    table = pa.table({"prompt": _dictionary_column("a" * MIB, 4000), "response": _dictionary_column("r", 4000)})
    blob = _parquet(table, use_dictionary=True)
    assert len(blob) < 5000
    before = _job_count(hostile)
    out = _upload(hostile, f"parquet: dictionary bomb ({len(blob)} bytes, 4 GB of rows)", "bomb.parquet", blob)
    assert (out["http"], out["error"]["code"]) == (413, "job_too_large")
    assert _job_count(hostile) == before


def test_parquet_rows_over_the_line_limit_and_a_good_one(hostile: Hostile) -> None:
    # Four rows of 200,000 messages each (one 1 KB string, dictionary-encoded): ~800 MB of rows.
    n = 200_001  # a huge row's messages: 200,000 user turns and one assistant turn
    roles = np.concatenate([np.tile(np.r_[np.zeros(n - 1), 1], 4), [0, 1]]).astype(np.int32)
    contents = np.concatenate([np.tile(np.r_[np.zeros(n - 1), 1], 4), [2, 3]]).astype(np.int32)
    turns = pa.StructArray.from_arrays(
        [
            pa.DictionaryArray.from_arrays(pa.array(roles), pa.array(["user", "assistant"])),
            pa.DictionaryArray.from_arrays(pa.array(contents), pa.array(["x" * 1000, "y", "hi", "hello"])),
        ],
        names=["role", "content"],
    )
    offsets = pa.array([0, n, 2 * n, 3 * n, 4 * n, 4 * n + 2], pa.int32())
    blob = _parquet(pa.table({"messages": pa.ListArray.from_arrays(offsets, turns)}))
    out = _upload(hostile, f"parquet: 4 rows of ~200 MB ({len(blob)} bytes) and a good row", "rows.parquet", blob)
    assert out["http"] == 202, out
    with hostile.client() as c:
        wait_job(c, out["id"])
        codes = [r.get("error", {}).get("code") for r in job_records(c, out["id"])]
    assert codes == ["line_too_long"] * 4 + [None]


def test_parquet_run_length_bomb(hostile: Hostile) -> None:
    blob = _parquet(pa.table({"prompt": pa.array(np.zeros(70_000_000, np.int8))}))
    out = _upload(hostile, f"parquet: 70M zeros ({len(blob)} bytes)", "zeros.parquet", blob)
    assert (out["http"], out["error"]["code"]) == (413, "job_too_large")


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/score"])
def test_json_bodies_are_bounded(hostile: Hostile, path: str) -> None:
    dense = b'{"items": [' + b"{}," * (2 * MIB) + b"{}]}"  # 6 MB that parses to ~150 MB of objects
    big = b'{"items": [' + json.dumps(GOOD).encode() + b"]" + b" " * (20 * MIB) + b"}"
    cases = [
        ("6 MB of empty objects", dense, {}, "body_too_complex"),
        ("20 MB body", big, {}, "body_too_large"),
        ("20 MB body, chunked (no Content-Length)", big, {"chunked": True}, "body_too_large"),
    ]
    with hostile.client() as c:
        for name, body, how, code in cases:
            content = (body[i : i + MIB] for i in range(0, len(body), MIB)) if how else body
            r = hostile.attack(
                f"{path}: {name}",
                lambda content=content: c.post(path, content=content, headers={"Content-Type": "application/json"}),
                len(body),
            )
            assert (r.status_code, r.json()["error"]["code"]) == (413, code)
            assert hostile.rss_mb() < RSS_TARGET_MB, hostile.summary()


def test_the_densest_body_accepted_for_parsing(hostile: Hostile) -> None:
    """Just under the parse budget: FastAPI parses it whole; the route then refuses its item count."""
    from api.guard import PARSED_BUDGET_FACTOR, parsed_size_estimate
    from rmscore.settings import Settings

    budget = PARSED_BUDGET_FACTOR * Settings(_env_file=None).max_json_body_bytes
    item = json.dumps(GOOD, separators=(",", ":")).encode()
    n = budget // parsed_size_estimate(item + b",") - 10
    body = b'{"items":[' + b",".join([item] * n) + b"]}"
    assert parsed_size_estimate(body) <= budget
    with hostile.client() as c:
        r = hostile.attack(
            f"/v1/score: {n:,} items, the densest body parsed",
            lambda: c.post("/v1/score", content=body, headers={"Content-Type": "application/json"}),
            len(body),
        )
    assert (r.status_code, r.json()["error"]["code"]) == (413, "too_many_items")
    assert hostile.rss_mb() < RSS_TARGET_MB, hostile.summary()
    # And the largest body: one item, nearly 8 MiB of text (over the line limit: that item's error).
    body = json.dumps({"items": [{"prompt": "p", "response": "x" * (budget // 4 - 100)}]}).encode()
    with hostile.client() as c:
        r = hostile.attack(
            "/v1/score: the largest body, one item",
            lambda: c.post("/v1/score", content=body, headers={"Content-Type": "application/json"}),
            len(body),
        )
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["error"]["code"] == "line_too_long"
    assert hostile.rss_mb() < RSS_TARGET_MB, hostile.summary()
