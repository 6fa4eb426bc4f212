"""Text that JSON can carry but UTF-8 (a lone surrogate) or PostgreSQL (NUL) cannot store, and bytes
that are not UTF-8, in every field of every input shape and format: each ends as its own line's
error, the rest of the job is scored, and job-level fields (metadata) are refused with a 400."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostilekit import RSS_TARGET_MB, Hostile, job_records, wait_job

pytestmark = pytest.mark.integration

BAD = ["\\ud800", "\\udfff", "\\u0000", "a\\u0000b"]  # as JSON escapes, inside a JSON string
CHAT_SHAPES = [
    {"custom_id": "X", "messages": [{"role": "user", "content": "X"}, {"role": "assistant", "content": "X"}]},
    {"custom_id": "X", "prompt": "X", "response": "X"},
]
PAIR_SHAPES = [
    {"custom_id": "X", "prompt": "X", "chosen": "X", "rejected": "X", "subset": "X"},
    {
        "prompt": [{"role": "system", "content": "X"}, {"role": "user", "content": "X"}],
        "chosen": [{"role": "assistant", "content": "X"}],
        "rejected": [{"role": "assistant", "content": "X"}],
    },
    {"chosen": "\n\nHuman: X\n\nAssistant: X", "rejected": "\n\nHuman: X\n\nAssistant: X"},
    {"instruction": "X", "response1": "X", "response2": "X", "label": "1", "bias": "X"},
]


def variants(shape: dict[str, Any], bad: str) -> Iterator[str]:
    """The shape as a JSON line with its n-th "X" replaced by `bad`, for every n (the rest plain)."""
    parts = json.dumps(shape).split("X")
    for i in range(len(parts) - 1):
        yield "".join(p + (bad if j == i else "ok") for j, p in enumerate(parts[:-1])) + parts[-1]


def lines_for(shapes: list[dict[str, Any]]) -> tuple[list[bytes], set[int]]:
    """Hostile lines of these shapes with a clean line of each among them; returns (lines, good line numbers)."""
    lines: list[bytes] = []
    good: set[int] = set()
    for shape in shapes:
        lines.append(json.dumps(shape).replace("X", "fine").encode())
        good.add(len(lines))
        for bad in BAD:
            lines.extend(v.encode() for v in variants(shape, bad))
        lines.extend(v.encode().replace(b"\\xff", b"\xff") for v in variants(shape, "\\xff"))  # raw invalid UTF-8
    return lines, good


def check_job(h: Hostile, job_id: str, n: int, good: set[int]) -> None:
    with h.client() as c:
        wait_job(c, job_id)
        records = job_records(c, job_id)
    assert [r["line"] for r in records] == list(range(1, n + 1))  # every line once, as a result or an error
    for r in records:
        if r["line"] in good:
            assert "error" not in r, r
        else:
            assert r["error"]["code"] in ("invalid_text", "invalid_utf8"), r
            json.dumps(r).encode("utf-8")  # what was stored and served back is valid text
    assert h.rss_mb() < RSS_TARGET_MB


@pytest.mark.parametrize("kind", ["chat", "pairwise"])
@pytest.mark.parametrize("compressed", [False, True])
def test_jsonl_upload(hostile: Hostile, kind: str, compressed: bool) -> None:
    lines, good = lines_for(CHAT_SHAPES if kind == "chat" else PAIR_SHAPES)
    blob = b"\n".join(lines) + b"\n"
    if compressed:
        blob = gzip.compress(blob)
    name = "in.jsonl.gz" if compressed else "in.jsonl"
    with hostile.client() as c:
        r = hostile.attack(
            f"{name}: {kind} lines with surrogates, NUL, invalid UTF-8 in every field",
            lambda: c.post("/v1/jobs/upload", params={"kind": kind}, files={"file": (name, blob)}),
        )
    assert r.status_code == 202, r.text
    check_job(hostile, r.json()["id"], len(lines), good)


@pytest.mark.parametrize("kind", ["chat", "pairwise"])
def test_json_body_items(hostile: Hostile, kind: str) -> None:
    lines, good = lines_for(CHAT_SHAPES if kind == "chat" else PAIR_SHAPES)
    lines = [ln for ln in lines if b"\xff" not in ln]  # a JSON body is one text: invalid UTF-8 fails it whole
    good = {n for n, ln in enumerate(lines, start=1) if b"fine" in ln}  # only the clean lines say "fine"
    body = b'{"kind": "' + kind.encode() + b'", "items": [' + b",".join(lines) + b"]}"
    with hostile.client() as c:
        r = hostile.attack(
            f"/v1/jobs: {kind} items with surrogates and NUL in every field",
            lambda: c.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"}),
        )
    assert r.status_code == 202, r.text
    check_job(hostile, r.json()["id"], len(lines), good)


GOOD_ITEM = {"prompt": "hello", "response": "hi"}


def test_score_items(hostile: Hostile) -> None:
    items = [json.dumps(GOOD_ITEM).encode()] + [v.encode() for v in variants(CHAT_SHAPES[1], "\\ud800")]
    items += [v.encode() for v in variants(CHAT_SHAPES[1], "\\u0000")]
    body = b'{"items": [' + b",".join(items) + b"]}"
    with hostile.client() as c:
        r = hostile.attack(
            "/v1/score: items with surrogates and NUL",
            lambda: c.post("/v1/score", content=body, headers={"Content-Type": "application/json"}),
        )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["line"] for x in results] == list(range(1, len(items) + 1))
    assert isinstance(results[0]["score"], float)
    assert all(x["error"]["code"] == "invalid_text" for x in results[1:])


def test_evalbiasbench_document(hostile: Hostile) -> None:
    row = {"instruction": "X", "response1": "X", "response2": "X", "label": "2"}
    rows = [json.loads(v.replace("X", "fine")) for v in [json.dumps(row)]]
    for bad in BAD:
        rows += [json.loads(v) for v in variants(row, bad)]
    doc = {"length bias": rows, "bad\ud800bias": [dict(row, instruction="ok")], "nul\u0000": [dict(row)]}
    blob = json.dumps(doc).encode()  # ensure_ascii: the bad text travels as escapes, as a user's would
    with hostile.client() as c:
        r = hostile.attack(
            "EvalBiasBench .json: surrogates and NUL in rows and bias names",
            lambda: c.post("/v1/jobs/upload", files={"file": ("ebb.json", blob)}),
        )
    assert r.status_code == 202, r.text
    check_job(hostile, r.json()["id"], len(rows) + 2, {1})


def test_parquet_strings(hostile: Hostile) -> None:
    table = pa.table(
        {
            "custom_id": ["ok", "a\x00b", "ok", "ok", "ok"],
            "prompt": ["fine", "fine", "nul\x00", "fine", "fine"],
            "response": ["fine", "fine", "fine", "\x00", "fine"],
            "subset": ["s", "s", "s", "s", "s\x00"],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    with hostile.client() as c:
        r = hostile.attack(
            "parquet: NUL in custom_id, prompt, response, subset",
            lambda: c.post("/v1/jobs/upload", files={"file": ("t.parquet", buf.getvalue())}),
        )
    assert r.status_code == 202, r.text
    check_job(hostile, r.json()["id"], 5, {1})


@pytest.mark.parametrize("bad", ["\ud800", "\x00"])
def test_metadata_and_headers(hostile: Hostile, bad: str) -> None:
    item = [GOOD_ITEM]
    with hostile.client() as c:
        for where, meta in (("value", {"k": bad}), ("key", {bad: 1}), ("nested", {"a": [{"b": bad}]})):
            body = json.dumps({"items": item, "metadata": meta}).encode()
            r = hostile.attack(
                f"/v1/jobs: {bad!r} in a metadata {where}",
                lambda body=body: c.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"}),
            )
            assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_metadata")
        meta = json.dumps({"k": bad})
        r = hostile.attack(
            f"upload: {bad!r} in the metadata form field",
            lambda: c.post(
                "/v1/jobs/upload", files={"file": ("a.jsonl", json.dumps(GOOD_ITEM).encode())}, data={"metadata": meta}
            ),
        )
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_metadata")
        one = {"file": ("a.jsonl", json.dumps(GOOD_ITEM).encode())}
        r = hostile.attack(
            f"upload: {bad!r} in the metadata query parameter",
            lambda: c.post("/v1/jobs/upload", params={"metadata": meta}, files=one),
        )
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_metadata")


def test_idempotency_key_with_bytes_beyond_ascii(hostile: Hostile) -> None:
    key = "k-\xe9\xff-" + hostile.backend  # sent as latin-1 bytes, as HTTP headers carry them
    with hostile.client() as c:
        first = hostile.attack(
            "/v1/jobs: Idempotency-Key with bytes beyond ASCII",
            lambda: c.post("/v1/jobs", json={"items": [GOOD_ITEM]}, headers={"Idempotency-Key": key.encode("latin-1")}),
        )
        again = c.post("/v1/jobs", json={"items": [GOOD_ITEM]}, headers={"Idempotency-Key": key.encode("latin-1")})
    assert first.status_code == 202, first.text
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
