"""`Client.download` writes the format the file's name asks for, or refuses the name before asking
the API anything. The HTTP answer is isolated here (the API's own formats are tested against a real
server in tests/api); what is tested is the client's choice of format and how it writes the file."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest

from rmscore.client import Client
from rmscore.errors import BadRequest

LINES = b'{"line": 1, "score": 0.5}\n{"line": 2, "score": -1.0}\n'


def client(asked: list[httpx.Request]) -> Client:
    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, content=LINES)

    return Client("http://api.test", api_key="k", transport=httpx.MockTransport(answer))


def test_jsonl_gz_is_gzipped_json_lines(tmp_path: Path) -> None:
    asked: list[httpx.Request] = []
    with client(asked) as c:
        c.download("j1", tmp_path / "out.jsonl.gz")
    assert asked[0].url.params["format"] == "jsonl"
    assert gzip.decompress((tmp_path / "out.jsonl.gz").read_bytes()) == LINES
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("name", ["out.txt", "out.gz", "out.json", "out"])
def test_a_name_of_no_known_format_is_refused_before_asking(tmp_path: Path, name: str) -> None:
    asked: list[httpx.Request] = []
    with client(asked) as c, pytest.raises(BadRequest, match="cannot tell the format") as e:
        c.download("j1", tmp_path / name)
    assert e.value.code == "unknown_output_format"
    assert asked == [] and list(tmp_path.iterdir()) == []
