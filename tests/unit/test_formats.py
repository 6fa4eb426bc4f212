"""Every line ends as exactly one item or one error with its line number, a stable code and a message."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from rmscore.formats import ChatItem, LineError, PairItem, parse_line, split_hh
from rmscore.inputs import iter_parsed

GOOD_CHAT = {
    "custom_id": "a",
    "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
}


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'{"foo": 1}', "unknown_format"),
        (b'{"messages": "hi"}', "invalid_field"),
        (b'{"messages": []}', "empty_conversation"),
        (b'{"messages": [{"role": "robot", "content": "x"}]}', "unknown_role"),
        (b'{"messages": [{"role": "user", "content": 3}]}', "invalid_field"),
        (
            b'{"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}',
            "last_turn_not_assistant",
        ),
        (b'{"prompt": "p", "chosen": "c"}', "unknown_format"),
        (b'{"chosen": "no transcript", "rejected": "x"}', "invalid_field"),
        (b'{"custom_id": {"x": 1}, "prompt": "p", "response": "r"}', "invalid_field"),
        (b'{"prompt": "p", "response": "r\\u0000"}', "invalid_text"),
        (b'{"prompt": "p", "response": "r\\ud800"}', "invalid_text"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (b"[" * 100_000, "invalid_json"),
    ],
)
def test_bad_lines_get_documented_codes(line, code):
    parsed = parse_line(line, 7)
    assert isinstance(parsed, LineError)
    assert (parsed.line, parsed.code) == (7, code)
    assert parsed.message and len(parsed.message) < 300


# Every stored string of every shape, with text JSON carries but UTF-8 (a lone surrogate) or
# PostgreSQL (NUL) cannot store.
_SHAPES = [
    {"custom_id": "X", "messages": [{"role": "user", "content": "X"}, {"role": "assistant", "content": "X"}]},
    {"custom_id": "X", "prompt": "X", "response": "X"},
    {"custom_id": "X", "prompt": "X", "chosen": "X", "rejected": "X", "subset": "X"},
    {
        "prompt": [{"role": "user", "content": "X"}],
        "chosen": [{"role": "assistant", "content": "X"}],
        "rejected": [{"role": "assistant", "content": "X"}],
    },
    {"chosen": "\n\nHuman: X\n\nAssistant: X", "rejected": "\n\nHuman: X\n\nAssistant: X"},
    {"instruction": "X", "response1": "X", "response2": "X", "label": 1, "bias": "X"},
]


def _variants(obj, bad):
    """`obj` with its n-th "X" replaced by `bad` (and the others by plain text), for every n."""
    text = json.dumps(obj)
    n = text.count("X")
    for i in range(n):
        parts = text.split("X")
        yield "".join(p + (bad if j == i else "ok") for j, p in enumerate(parts[:-1])) + parts[-1]


@pytest.mark.parametrize("bad", ["\\ud800", "\\udfff\\ud800", "\\u0000", "a\\u0000b"])
@pytest.mark.parametrize("shape", range(len(_SHAPES)))
def test_text_no_database_can_store_is_that_lines_error(shape, bad):
    clean = json.dumps(_SHAPES[shape]).replace("X", "ok")
    assert not isinstance(parse_line(clean, 1), LineError), clean
    for line in _variants(_SHAPES[shape], bad):
        parsed = parse_line(line, 3)
        assert isinstance(parsed, LineError), line
        assert (parsed.line, parsed.code) == (3, "invalid_text"), (line, parsed)
        # The error itself must be storable: no bad text echoed, nor kept as its custom_id or subset.
        for value in (parsed.message, parsed.custom_id, parsed.subset):
            assert value is None or ("\x00" not in value and value.encode("utf-8"))


def test_line_limit():
    parsed = parse_line(json.dumps(GOOD_CHAT).encode(), 1, max_line_bytes=64)
    assert isinstance(parsed, LineError) and parsed.code == "line_too_long"


def test_stream_keeps_going_and_keeps_order(tmp_path):
    path = tmp_path / "in.jsonl.gz"
    lines = [
        json.dumps(GOOD_CHAT),
        "oops",
        "",
        json.dumps({"prompt": "p", "response": "r"}),
        json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}),
    ]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    out = list(iter_parsed(path))
    assert [p.line for p in out] == [1, 2, 4, 5]  # the blank line 3 is skipped but counted
    assert isinstance(out[0], ChatItem) and out[0].custom_id == "a"
    assert isinstance(out[1], LineError) and out[1].code == "invalid_json"
    assert isinstance(out[2], ChatItem) and out[2].messages[-1] == {"role": "assistant", "content": "r"}
    assert isinstance(out[3], LineError) and out[3].code == "kind_mismatch"


def test_pairwise_shapes():
    p = parse_line(
        json.dumps(
            {
                "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                "chosen": "good",
                "rejected": "bad",
                "subset": "x",
            }
        ),
        1,
    )
    assert isinstance(p, PairItem) and p.subset == "x"
    assert [m["role"] for m in p.chosen] == ["system", "user", "assistant"]
    assert p.chosen[-1]["content"] == "good" and p.rejected[-1]["content"] == "bad"


def test_hh_transcripts_split_into_turns():
    conv = split_hh("\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: bye\n\nAssistant: ok")
    assert conv == [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "ok"},
    ]


def test_evalbiasbench_document(shared_data):
    items = list(iter_parsed(shared_data / "evalbiasbench.json"))
    assert len(items) == 80 and all(isinstance(i, PairItem) for i in items)
    raw = json.loads((shared_data / "evalbiasbench.json").read_text())
    assert {i.subset for i in items} == set(raw)  # type: ignore[union-attr]
    first_bias, rows = next(iter(raw.items()))
    row = rows[0]
    want = row["response1"] if str(row["label"]) == "1" else row["response2"]
    assert items[0].chosen[-1]["content"] == want  # type: ignore[union-attr]
    assert items[0].chosen[0] == {"role": "user", "content": row["instruction"]}  # type: ignore[union-attr]


def test_hh_file_parses(shared_data):
    items = list(iter_parsed(shared_data / "hh-rlhf-harmless-base-test.jsonl.gz"))
    assert len(items) == 2312
    assert not [i for i in items if isinstance(i, LineError)]
    assert [i.line for i in items] == list(range(1, 2313))


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_byte_order_mark_before_the_first_line_is_not_an_error(tmp_path, suffix):
    """Editors on Windows save UTF-8 with a BOM; line 1 must still parse (and only line 1 carries one)."""
    body = b"\xef\xbb\xbf" + b'{"prompt": "a", "response": "b"}\r\n{"prompt": "c", "response": "d"}\r\n'
    path = tmp_path / f"bom{suffix}"
    path.write_bytes(gzip.compress(body) if suffix.endswith(".gz") else body)
    parsed = list(iter_parsed(path, "auto"))
    assert [type(p) for p in parsed] == [ChatItem, ChatItem]
    assert parsed[0].conversations[0][0]["content"] == "a"


def test_a_json_document_saved_with_a_byte_order_mark_parses(tmp_path):
    path = tmp_path / "bias.json"
    row = {"instruction": "q", "response1": "a", "response2": "b", "label": 1}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"length": [row]}).encode())
    (parsed,) = list(iter_parsed(path, "auto"))
    assert isinstance(parsed, PairItem) and parsed.subset == "length"


def test_every_reader_fixes_the_kind_from_the_first_valid_line(tmp_path: Path) -> None:
    # "auto": the first valid line (not the first line) fixes the kind for the rest, in JSON lines,
    # a .json document and request items alike; None (online requests): each item any kind.
    from rmscore.formats import KindLatch, iter_json, iter_objects, parse_object

    pair = {"prompt": "q", "chosen": "a", "rejected": "b"}
    chat = {"prompt": "q", "response": "a"}
    rows: list[Any] = [[1], pair, chat, pair]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    document = tmp_path / "in.json"
    document.write_text(json.dumps(rows))
    for parsed in (list(iter_json(jsonl)), list(iter_json(document)), list(iter_objects(rows))):
        assert [type(p).__name__ for p in parsed] == ["LineError", "PairItem", "LineError", "PairItem"]
    assert [p.kind for p in iter_objects(rows[1:], None)] == ["pairwise", "chat", "pairwise"]
    latch = KindLatch("chat")
    assert latch.kind == "chat" and latch.saw(parse_object(pair, 1, None)).kind == "pairwise"
    assert latch.kind == "chat"  # a kind named up front is never replaced
