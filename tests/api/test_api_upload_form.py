"""Multipart form fields may come before or after the file (curl sends them in the order given:
`-F file=@pairs.jsonl.gz -F kind=pairwise`); without a kind, the first valid line decides it."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest
from apistack import Stack, wait_job

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("stack", ["sqlite"], indirect=True)]

CHAT = json.dumps({"prompt": "hello", "response": "hi"}).encode()
PAIR = json.dumps({"prompt": "hello", "chosen": "hi", "rejected": "go away"}).encode()


def _multipart(parts: list[tuple[str, bytes, str | None]], boundary: str = "rmscoreform") -> tuple[bytes, str]:
    """A multipart body with its parts in exactly this order (name, value, filename)."""
    out = b""
    for name, value, filename in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _post(c: httpx.Client, parts: list[tuple[str, bytes, str | None]]) -> httpx.Response:
    body, ctype = _multipart(parts)
    return c.post("/v1/jobs/upload", content=body, headers={"Content-Type": ctype})


def _codes(c: httpx.Client, job: dict[str, Any]) -> list[str | None]:
    wait_job(c, job["id"])
    lines = c.get(f"/v1/jobs/{job['id']}/results").text.splitlines()
    return [json.loads(x).get("error", {}).get("code") for x in lines]


def test_fields_after_the_file_are_applied(stack: Stack) -> None:
    blob = gzip.compress(CHAT + b"\n" + PAIR + b"\n")
    with stack.client("carol") as c:
        r = _post(
            c,
            [
                ("file", blob, "pairs.jsonl.gz"),
                ("kind", b"pairwise", None),
                ("metadata", b'{"run": "late"}', None),
            ],
        )
        assert r.status_code == 202, r.text
        job = r.json()
        assert (job["kind"], job["metadata"]) == ("pairwise", {"run": "late"})
        # The kind sent after the file decided how line 1 was read: a chat line in a pairwise job.
        assert _codes(c, job) == ["kind_mismatch", None]


def test_fields_before_the_file_still_work(stack: Stack) -> None:
    with stack.client("carol") as c:
        r = _post(c, [("kind", b"chat", None), ("file", CHAT + b"\n" + PAIR + b"\n", "a.jsonl")])
        assert r.status_code == 202, r.text
        assert r.json()["kind"] == "chat"
        assert _codes(c, r.json()) == [None, "kind_mismatch"]


def test_without_a_kind_the_first_valid_line_decides(stack: Stack) -> None:
    with stack.client("carol") as c:
        r = _post(c, [("file", b"not json\n" + PAIR + b"\n" + CHAT + b"\n", "a.jsonl")])
        assert r.status_code == 202, r.text
        assert r.json()["kind"] == "pairwise"
        assert _codes(c, r.json()) == ["invalid_json", None, "kind_mismatch"]


@pytest.mark.parametrize(
    ("parts", "code"),
    [
        ([("kind", b"pairwise", None)], "missing_file"),
        ([("file", CHAT, "a.jsonl"), ("file", CHAT, "b.jsonl")], "invalid_multipart"),
        ([("file", CHAT, "a.jsonl"), ("kind", b"chat", None), ("kind", b"pairwise", None)], "invalid_multipart"),
        ([("file", CHAT, "a.jsonl"), ("kind", b"images", None)], "invalid_kind"),
        ([("file", CHAT, "a.jsonl")] + [(f"f{i}", b"x", None) for i in range(40)], "invalid_multipart"),
    ],
)
def test_bad_forms(stack: Stack, parts: list[tuple[str, bytes, str | None]], code: str) -> None:
    with stack.client("carol") as c:
        r = _post(c, parts)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code
