"""`api.fingerprint`: an upload's fingerprint depends on what was sent, not on how it was cut into
chunks nor on the multipart boundary a client drew for that attempt."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api.fingerprint import UploadFingerprint, json_request


def _multipart(boundary: bytes, content: bytes, kind: bytes) -> bytes:
    return (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="kind"\r\n\r\n' + kind + b"\r\n"
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--" + boundary + b"--\r\n"
    )


def _digest(body: bytes, cuts: list[int], boundary: bytes | None) -> str:
    fp = UploadFingerprint({"kind": None}, "multipart/form-data", boundary)
    at = 0
    for cut in sorted(c % (len(body) + 1) for c in cuts):
        fp.update(body[at:cut])
        at = cut
    fp.update(body[at:])
    return fp.hexdigest()


BOUNDARY = st.binary(min_size=16, max_size=40).map(lambda b: b.hex().encode())
CONTENT = st.binary(max_size=300).filter(lambda b: b"--" not in b)


@given(
    content=CONTENT,
    b1=BOUNDARY,
    b2=BOUNDARY,
    cuts1=st.lists(st.integers(0, 2000)),
    cuts2=st.lists(st.integers(0, 2000)),
)
def test_same_upload_same_fingerprint_whatever_the_boundary_and_chunks(
    content: bytes, b1: bytes, b2: bytes, cuts1: list[int], cuts2: list[int]
) -> None:
    d1 = _digest(_multipart(b1, content, b"chat"), cuts1, b1)
    d2 = _digest(_multipart(b2, content, b"chat"), cuts2, b2)
    assert d1 == d2


@given(content=CONTENT, b=BOUNDARY, cuts=st.lists(st.integers(0, 2000)))
def test_another_file_or_field_is_another_fingerprint(content: bytes, b: bytes, cuts: list[int]) -> None:
    d = _digest(_multipart(b, content, b"chat"), cuts, b)
    assert _digest(_multipart(b, content + b"x", b"chat"), cuts, b) != d
    assert _digest(_multipart(b, content, b"pairwise"), cuts, b) != d


def test_raw_bodies_and_json_requests() -> None:
    assert _digest(b"abc", [1], None) == _digest(b"abc", [2, 2], None) != _digest(b"abd", [], None)
    body = {"items": [{"prompt": "p", "response": "r"}], "kind": "chat"}
    assert json_request("jobs", body, {"cache": None}) == json_request(
        "jobs", dict(reversed(body.items())), {"cache": None}
    )
    assert json_request("jobs", body, {"cache": None}) != json_request("jobs", body, {"cache": False})
