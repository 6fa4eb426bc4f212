"""Best-of-N (kind `listwise`) lines of every wrong shape, long lines, and the preference exports
(`/preferences`, `/best`) under crafted queries, other tenants and no key, against a real API
with default limits: every line ends as one result or one error, never a 5xx, and the API's peak
memory stays under the target, exports of long lines included."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from hostilekit import RSS_TARGET_MB, Hostile, job_records, wait_job

pytestmark = pytest.mark.integration

OK = {"prompt": "Name a prime.", "responses": ["7", "8", [{"role": "assistant", "content": "Nine."}]]}
# (line, the error code it must end with; None: scored)
LINES: list[tuple[Any, str | None]] = [
    (OK, None),
    ({"prompt": "p", "responses": ["r"] * 65}, "too_many_responses"),
    ({"prompt": "p", "responses": [""] * 10_000}, "too_many_responses"),
    ({"prompt": "p", "responses": []}, "no_responses"),
    ({"prompt": "p", "responses": ["", "a"]}, None),  # an empty reply is still a reply
    ({"prompt": "p", "responses": [[{"role": "user", "content": "x"}], "a"]}, "last_turn_not_assistant"),
    ({"prompt": "p", "responses": [[{"role": "wizard", "content": "x"}], "a"]}, "unknown_role"),
    ({"prompt": "p", "responses": [[], "a"]}, "empty_conversation"),
    ({"prompt": "p", "responses": [{"a": 1}, "a"]}, "invalid_field"),
    ({"prompt": "p", "responses": [[{"role": "assistant", "content": ["x"]}], "a"]}, "invalid_field"),
    ({"prompt": "p", "responses": [None, 1]}, "invalid_field"),
    ({"prompt": "p", "responses": "abc"}, "invalid_field"),
    ({"prompt": [], "responses": ["a", "b"]}, "empty_conversation"),
    ({"prompt": 5, "responses": ["a", "b"]}, "invalid_field"),
    ({"responses": ["a", "b"]}, "unknown_format"),
    ({"prompt": "p", "chosen": "a", "rejected": ["b", "c"]}, None),  # a string chosen is a list of one
    ({"prompt": "p", "chosen": [], "rejected": ["b"]}, "no_responses"),
    ({"prompt": "p", "chosen": ["a"], "rejected": ["b"], "responses": ["c", "d"]}, "unknown_format"),
    ({"prompt": "p", "chosen": "a", "rejected": "b"}, None),  # a pair with a prompt: a labelled list of two
    ({"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}, "kind_mismatch"),
    ({"prompt": "p", "response": "a"}, "kind_mismatch"),
    ({"custom_id": "ref:", "subset": "Ties", "prompt": "p", "chosen": ["a"], "rejected": ["b"]}, None),
    ({"custom_id": "tied:1e400", "subset": "Ties", "prompt": "p", "chosen": ["a", "b"], "rejected": ["c"]}, None),
    ({"custom_id": "ref:" + "9" * 60, "subset": "ties", "prompt": "p", "chosen": ["a"], "rejected": ["b"]}, None),
    ({"custom_id": "tied:\u0661", "subset": "Ties", "prompt": "p", "chosen": ["a"], "rejected": ["b"]}, None),
]
BAD_TEXT = ["\\ud800", "\\u0000"]  # JSON escapes: a lone surrogate, NUL


def _lines() -> tuple[list[bytes], dict[int, str | None]]:
    raw = [json.dumps(obj).encode() for obj, _ in LINES]
    want = {n: code for n, (_, code) in enumerate(LINES, start=1)}
    for bad in BAD_TEXT:  # in the prompt, a response, a response's message, a chosen, the custom_id
        for shape in (
            '{"prompt": "X", "responses": ["a", "b"]}',
            '{"prompt": "p", "responses": ["a", "X"]}',
            '{"prompt": "p", "responses": ["a", [{"role": "assistant", "content": "X"}]]}',
            '{"prompt": "p", "chosen": ["X"], "rejected": ["b"]}',
            '{"custom_id": "X", "prompt": "p", "responses": ["a", "b"]}',
        ):
            raw.append(shape.replace("X", bad).encode())
            want[len(raw)] = "invalid_text"
    raw.append(b'{"responses": ["a", "b"], "prompt": "p", "responses": ["x", "y", "z"]}')  # duplicate key: the last
    want[len(raw)] = None
    return raw, want


def _check(h: Hostile, job_id: str, want: dict[int, str | None]) -> list[dict[str, Any]]:
    with h.client() as c:
        wait_job(c, job_id)
        records = job_records(c, job_id)
    assert [r["line"] for r in records] == sorted(want)  # every line once
    for r in records:
        code = want[r["line"]]
        assert (r.get("error") or {}).get("code") == code, r
        if code is None:
            assert len(r["scores"]) >= 1 and 0 <= r["best"] < len(r["scores"]), r
    assert h.rss_mb() < RSS_TARGET_MB
    return records


@pytest.mark.parametrize("via", ["upload", "body"])
def test_listwise_lines_of_every_wrong_shape(hostile: Hostile, via: str) -> None:
    raw, want = _lines()
    with hostile.client() as c:
        if via == "upload":
            blob = gzip.compress(b"\n".join(raw) + b"\n")
            r = hostile.attack(
                "listwise .jsonl.gz: wrong shapes, 10,000 responses, surrogates/NUL, RB2 ids, duplicate keys",
                lambda: c.post("/v1/jobs/upload", params={"kind": "listwise"}, files={"file": ("l.jsonl.gz", blob)}),
                len(blob),
            )
        else:
            body = b'{"kind": "listwise", "items": [' + b",".join(raw) + b"]}"
            r = hostile.attack(
                "/v1/jobs listwise items: wrong shapes, 10,000 responses, surrogates/NUL, RB2 ids",
                lambda: c.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"}),
                len(body),
            )
    assert r.status_code == 202, r.text
    records = _check(hostile, r.json()["id"], want)
    assert records[-1]["scores"] and len(records[-1]["scores"]) == 3  # the duplicate key's last value


def _upload(h: Hostile, name: str, filename: str, blob: bytes) -> httpx.Response:
    with h.client() as c:
        return h.attack(name, lambda: c.post("/v1/jobs/upload", files={"file": (filename, blob)}), len(blob))


def test_millions_of_tiny_responses_in_a_small_upload(hostile: Hostile) -> None:
    # 300 lines of 100,000 empty responses: 30 M responses, 120 MB of JSON from a ~150 KB .jsonl.gz.
    line = b'{"prompt": "p", "responses": [' + b",".join([b'""'] * 100_000) + b"]}\n"
    blob = gzip.compress(line * 300 + json.dumps(OK).encode() + b"\n", compresslevel=9)
    r = _upload(hostile, "listwise .jsonl.gz: 30 M empty responses (300 lines of 100,000)", "tiny.jsonl.gz", blob)
    assert r.status_code == 202, r.text
    _check(hostile, r.json()["id"], {n: "too_many_responses" for n in range(1, 301)} | {301: None})


def _download(c: httpx.Client, path: str, **params: Any) -> tuple[int, bytes]:
    with c.stream("GET", path, params=params) as r:
        return r.status_code, r.read()


# PostgreSQL's stack: the SQLite one already runs the bombs, whose peak leaves little room under
# the target for the Parquet writer's one-off cost (~15 MB there, ~90 MB with pyarrow's import here).
@pytest.mark.parametrize("hostile", ["postgresql"], indirect=True)
def test_long_prompts_stored_and_exported_in_bounded_memory(hostile: Hostile) -> None:
    """40 identical lines of a ~500 KB prompt and 4 short responses (a 150 KB .jsonl.gz): stored,
    then exported as Parquet best-vs-rest, where each line's prompt is on 3 rows. Before, the API
    held 1000 item rows per insert and 1000 export rows per row group: 1.8 GB for such a job."""
    prompt = " ".join(f"word{i % 89}" for i in range(70_000))
    line = json.dumps({"prompt": prompt, "responses": ["r0", "r1", "r2", "r3"]}).encode() + b"\n"
    blob = gzip.compress(line * 40)
    r = _upload(hostile, "listwise .jsonl.gz: 40 lines of a 500 KB prompt", "long.jsonl.gz", blob)
    assert r.status_code == 202, r.text
    with hostile.client() as c:
        job_id = r.json()["id"]
        wait_job(c, job_id)
        assert hostile.rss_mb() < RSS_TARGET_MB
        records = job_records(c, job_id)
        assert len(records) == 40 and all("scores" in x for x in records), records[:1]
        expected = sum(sum(1 for s in x["scores"] if s < max(x["scores"])) for x in records)
        for what, params in (
            ("preferences", {"format": "parquet", "pairs": "best-vs-rest"}),
            ("best", {"format": "parquet"}),
            ("preferences", {"format": "jsonl", "pairs": "best-vs-rest"}),
        ):
            status, body = _download(c, f"/v1/jobs/{job_id}/{what}", **params)
            hostile.record(f"GET /{what} {params} of 40 lines of a 500 KB prompt", status, rows=None)
            assert status == 200
            n = pq.read_metadata(io.BytesIO(body)).num_rows if params["format"] == "parquet" else body.count(b"\n")
            assert n == (expected if what == "preferences" else 40), (what, params, n)
            assert hostile.rss_mb() < RSS_TARGET_MB, (what, params, hostile.rss_mb())


def test_export_queries_tenants_and_keys(hostile: Hostile) -> None:
    with hostile.client() as c:
        same = {"prompt": "p", "responses": ["same", "same", "same"]}
        r = c.post("/v1/jobs", json={"items": [OK, same]})
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        failed = c.post("/v1/jobs", json={"kind": "listwise", "items": [{"prompt": "p", "responses": []}]}).json()["id"]
        chat = c.post("/v1/jobs", json={"items": [{"prompt": "p", "response": "r"}]}).json()["id"]
        for j in (job, failed, chat):
            wait_job(c, j)
        base = f"/v1/jobs/{job}"
        crafted: list[tuple[str, dict[str, str], int, str | None]] = [
            ("preferences", {"min_margin": v}, 400, "invalid_min_margin") for v in ("nan", "inf", "-1", "1e309", "-inf")
        ]
        crafted += [("preferences", {"min_margin": v}, 422, "invalid_request") for v in ("abc", "", "0x1")]
        crafted += [("best", {"min_score": v}, 400, "invalid_min_score") for v in ("nan", "-1e400")]
        crafted += [("preferences", {"pairs": v}, 422, "invalid_request") for v in ("all", "BEST-WORST", "")]
        crafted += [("best", {"format": v}, 422, "invalid_request") for v in ("csv", "JSONL", "parquet\x00")]
        crafted += [("best", {"model": v}, 400, "unknown_model") for v in ("../../x", "\x00", "a,b", "tiny\n", "")]
        crafted += [("best", {"model": "m" * 300}, 422, "invalid_request")]
        for what, params, status, code in crafted:
            got = hostile.attack(f"GET /{what} {params!r}", lambda w=what, p=params: c.get(f"{base}/{w}", params=p))
            assert (got.status_code, got.json()["error"]["code"]) == (status, code), (what, params, got.text)
        for raw in ("%ED%A0%80", "%FF", "%C0%80"):  # not UTF-8 in the query and in the path
            got = hostile.attack(f"GET /best?model={raw}", lambda raw=raw: c.get(f"{base}/best?model={raw}"))
            assert got.status_code == 400, got.text
            got = hostile.attack(f"GET /jobs/<id>{raw}/best", lambda raw=raw: c.get(f"{base}{raw}/best"))
            assert got.status_code == 404, got.text
        for bad_id in ("nope", "0" * 64, "..%2F" + job):
            got = hostile.attack(f"GET /jobs/{bad_id}/preferences", lambda i=bad_id: c.get(f"/v1/jobs/{i}/preferences"))
            assert got.status_code == 404, (bad_id, got.text)
        for route in ("", "/results", "/errors", "/compare", "/report", "/preferences", "/best"):
            # NUL in a job id: PostgreSQL refuses it in a query (this was a 500 there).
            got = hostile.attack(f"GET /jobs/%00{route}", lambda r=route: c.get(f"/v1/jobs/%00{r}"))
            assert (got.status_code, got.json()["error"]["code"]) == (404, "job_not_found"), (route, got.text)
        got = hostile.attack("POST /jobs/%00/cancel", lambda: c.post("/v1/jobs/%00/cancel"))
        assert (got.status_code, got.json()["error"]["code"]) == (404, "job_not_found"), got.text
        got = hostile.attack("GET /jobs/<65 chars>/best", lambda: c.get(f"/v1/jobs/{'0' * 65}/best"))
        assert got.status_code == 422
        got = hostile.attack("GET /preferences of a chat job", lambda: c.get(f"/v1/jobs/{chat}/preferences"))
        assert (got.status_code, got.json()["error"]["code"]) == (400, "nothing_to_compare")
        # A job whose every line failed: no rows, and the Parquet file still has its columns.
        if hostile.backend == "postgresql":  # the Parquet writer's one-off cost on one stack (see above)
            status, body = _download(c, f"/v1/jobs/{failed}/best", format="parquet")
            assert status == 200
            assert pq.read_table(io.BytesIO(body)).column_names[:3] == ["prompt", "completion", "score"]
        assert _download(c, f"/v1/jobs/{failed}/preferences") == (200, b"")
        # Equal scores: no preference row (a tie prefers nothing), one best row (the first).
        prefs = [json.loads(x) for x in _download(c, f"{base}/preferences", pairs="best-vs-rest")[1].splitlines()]
        assert {p["line"] for p in prefs} == {1}, (prefs, job_records(c, job))  # were 1e-7 apart: a pair
        best = [json.loads(x) for x in _download(c, f"{base}/best")[1].splitlines()]
        assert [b["line"] for b in best] == [1, 2]
    for who, client in (
        ("another tenant", hostile.client("bob")),
        ("no key", hostile.client(None)),
        ("a key in HTTP Basic", httpx.Client(base_url=hostile.url, auth=("alice", hostile.keys["alice"]))),
    ):
        with client as other:
            for what in ("preferences", "best"):
                got = hostile.attack(f"GET /{what} with {who}", lambda w=what: other.get(f"{base}/{w}"))
                assert got.status_code == (404 if who == "another tenant" else 401), (who, got.text)


BOS = "<|begin_of_text|>"
JSON = {"Content-Type": "application/json"}
TEXT = (
    f"{BOS}<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
)


def test_online_faces(hostile: Hostile) -> None:
    """`/get_reward`, `/classify` and `/v1/score` (kind text): wrong types, empty and huge inputs,
    bad text, ambiguous items, and keys in HTTP Basic where they must not count."""
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    sent: list[tuple[str, str, Any, int, str | None]] = [
        ("/get_reward", "no query", {}, 422, "invalid_request"),
        ("/get_reward", "empty query", {"query": []}, 422, "invalid_request"),
        ("/get_reward", "query a string", {"query": TEXT}, 422, "invalid_request"),
        ("/get_reward", "65 texts", {"query": [TEXT] * 65}, 413, "too_many_items"),
        ("/get_reward", "a 1.2 MB text", {"query": ["x " * 600_000]}, 422, "line_too_long"),
        ("/get_reward", "an empty text", {"query": [TEXT, ""]}, 422, "empty_text"),
        ("/get_reward", "labels of any shape", {"query": [TEXT], "labels": [{"a": 1}]}, 200, None),
        ("/get_reward", "an unknown model", {"query": [TEXT], "model": "../x\x00"}, 400, "unknown_model"),
        ("/classify", "input and messages", {"input": TEXT, "messages": msgs}, 422, "invalid_request"),
        ("/classify", "neither", {"use_activation": True}, 422, "invalid_request"),
        ("/classify", "empty input list", {"input": []}, 422, "invalid_request"),
        ("/classify", "messages ending with the user", {"messages": msgs[:1]}, 422, "last_turn_not_assistant"),
        ("/v1/classify", "65 inputs", {"input": [TEXT] * 65}, 413, "too_many_items"),
    ]
    sent += [("/get_reward", f"a query of {t}", {"query": [v]}, 422, "invalid_field") for t, v in
             (("a number", 1), ("null", None), ("an object", {"a": 1}), ("messages", msgs))]  # fmt: skip
    with hostile.client() as c:
        for path, what, body, status, code in sent:
            r = hostile.attack(f"{path}: {what}", lambda p=path, b=body: c.post(p, json=b))
            assert r.status_code == status, (path, what, r.text)
            assert status == 200 or r.json()["error"]["code"] == code, (path, what, r.text)
        for bad in ("\\ud800", "a\\u0000b"):
            body = b'{"query": ["' + bad.encode() + b'"]}'
            send = lambda b=body: c.post("/get_reward", content=b, headers=JSON)  # noqa: E731
            r = hostile.attack(f"/get_reward: {bad} in a text", send)
            assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_text"), r.text
        # BOS strings are the card's rule: none, one or many score the same; a text is one text.
        r = hostile.attack("/get_reward: 0, 1 and 3 BOS strings", lambda: c.post(
            "/get_reward", json={"query": [TEXT.replace(BOS, ""), TEXT, BOS * 3 + TEXT]}))  # fmt: skip
        assert r.status_code == 200 and len(set(r.json()["rewards"])) == 1, r.text
        # An item with `text` and a conversation's fields was scored as the conversation, the text dropped.
        for other in ({"messages": msgs}, {"prompt": "p", "responses": ["a", "b"]}):
            item = {"text": TEXT, **other}
            name = f"/v1/score: text and {list(other)}"
            r = hostile.attack(name, lambda i=item: c.post("/v1/score", json={"items": [i]}))
            assert r.status_code == 200 and r.json()["results"][0]["error"]["code"] == "unknown_format", r.text
    # HTTP Basic carries a key on the trainer faces only: a browser keeps URL credentials and would
    # add them to a cross-site form post on every other route.
    basic = httpx.BasicAuth("rm", hostile.keys["alice"])
    page = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    with httpx.Client(base_url=hostile.url, auth=basic, timeout=120) as b:
        r = hostile.attack("/get_reward: key in HTTP Basic", lambda: b.post("/get_reward", json={"query": [TEXT]}))
        assert r.status_code == 200, r.text
        r = hostile.attack("/v1/classify: key in HTTP Basic", lambda: b.post("/v1/classify", json={"input": TEXT}))
        assert r.status_code == 200, r.text
        for path, kwargs in (
            ("/v1/jobs/upload", {"files": {"file": ("a.jsonl", b'{"prompt": "p", "response": "r"}')}}),
            ("/v1/jobs", {"json": {"items": [{"prompt": "p", "response": "r"}]}}),
            ("/v1/score", {"json": {"items": [{"prompt": "p", "response": "r"}]}}),
        ):
            name = f"{path}: key in HTTP Basic, cross-site"
            r = hostile.attack(name, lambda p=path, k=kwargs: b.post(p, headers=page, **k))
            assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_api_key"), (path, r.text)
        r = hostile.attack("GET /v1/jobs: key in HTTP Basic", lambda: b.get("/v1/jobs"))
        assert r.status_code == 401, r.text
