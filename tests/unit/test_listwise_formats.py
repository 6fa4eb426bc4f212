"""Kind `listwise`: every line ends as one item or one error, and the record's best/worst/correct."""

from __future__ import annotations

import io
import json

import pytest

from rmscore.formats import (
    LineError,
    ListwiseItem,
    content_hash,
    item_from_payload,
    iter_json,
    listwise_record,
    parse_object,
)

ASSISTANT = [{"role": "assistant", "content": "turned"}]


def test_unlabelled_keeps_the_shapes_given_and_builds_one_chat_per_response() -> None:
    prompt = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    item = parse_object({"custom_id": 9, "prompt": prompt, "responses": ["a", ASSISTANT]}, 1)
    assert isinstance(item, ListwiseItem)
    assert item.custom_id == "9" and item.n_chosen is None
    assert item.conversations == [prompt + [{"role": "assistant", "content": "a"}], prompt + ASSISTANT]
    # The stored payload keeps a string a string and messages messages, for exports to write back.
    assert item.payload() == {"prompt": prompt, "responses": ["a", ASSISTANT]}
    again = item_from_payload("listwise", 1, "9", None, json.loads(json.dumps(item.payload())))
    assert again.conversations == item.conversations and content_hash(again) == content_hash(item)


def test_rewardbench2_rows_list_chosen_first() -> None:
    row = {"prompt": "q", "chosen": ["c1", "c2"], "rejected": ["r1", "r2", "r3"], "subset": "Ties", "id": "x"}
    item = parse_object(row, 4)
    assert isinstance(item, ListwiseItem)
    assert item.responses == ["c1", "c2", "r1", "r2", "r3"] and item.n_chosen == 2 and item.subset == "Ties"
    assert item.payload()["n_chosen"] == 2
    # A single chosen string is one correct answer; in a listwise job a 1-vs-1 pair line is a list of two.
    assert parse_object({"prompt": "q", "chosen": "c", "rejected": ["r"]}, 1).n_chosen == 1  # type: ignore[union-attr]
    two = parse_object({"prompt": "q", "chosen": "c", "rejected": "r"}, 1, "listwise")
    assert isinstance(two, ListwiseItem) and two.responses == ["c", "r"] and two.n_chosen == 1
    pair = parse_object({"prompt": "q", "chosen": ASSISTANT, "rejected": ["r"]}, 1, "listwise")
    assert isinstance(pair, ListwiseItem) and pair.responses == [ASSISTANT, "r"]
    # Without the kind named, that line is still an ordinary pair.
    assert parse_object({"prompt": "q", "chosen": "c", "rejected": "r"}, 1).kind == "pairwise"


@pytest.mark.parametrize(
    ("obj", "code", "names"),
    [
        ({"prompt": "q", "responses": []}, "no_responses", "responses"),
        ({"prompt": "q", "responses": "one"}, "invalid_field", "responses"),
        ({"prompt": "q", "responses": [{"role": "assistant", "content": "a"}]}, "invalid_field", "responses[0]"),
        ({"prompt": "q", "responses": ["a", 5]}, "invalid_field", "responses[1]"),
        ({"prompt": "q", "responses": ["ok", "nul\x00"]}, "invalid_text", "responses[1]"),
        ({"prompt": "q", "responses": ["ok", "\ud800"]}, "invalid_text", "responses[1]"),
        ({"prompt": "\ud800", "responses": ["a"]}, "invalid_text", "prompt"),
        ({"responses": ["a"]}, "unknown_format", "prompt"),
        ({"prompt": "q", "responses": ["a"], "chosen": ["b"]}, "unknown_format", "not both"),
        ({"prompt": "q", "chosen": ["a"]}, "unknown_format", "rejected"),
        ({"prompt": "q", "chosen": ["a"], "rejected": []}, "no_responses", "rejected"),
        ({"prompt": "q", "chosen": ["a"], "rejected": [[{"role": "user", "content": "u"}]]}, "last_turn_not_assistant",
         "rejected[0]"),
        ({"prompt": "q", "responses": ["a"] * 65}, "too_many_responses", "65"),
        ({"prompt": "q", "chosen": ["a"] * 40, "rejected": ["b"] * 40}, "too_many_responses", "80"),
    ],
)
def test_bad_lines_get_one_error_naming_the_field(obj: dict, code: str, names: str) -> None:
    got = parse_object({**obj, "custom_id": "c", "subset": "S"}, 7)
    assert isinstance(got, LineError), got
    assert (got.line, got.code, got.custom_id, got.subset) == (7, code, "c", "S")
    assert names in got.message
    json.dumps(got.message).encode("utf-8")  # storable: no surrogate or NUL copied in


def test_the_response_limit_is_a_setting_and_huge_lines_are_refused_before_their_contents_are_read() -> None:
    assert isinstance(parse_object({"prompt": "q", "responses": ["a"] * 3}, 1, max_responses=2), LineError)
    assert isinstance(parse_object({"prompt": "q", "responses": ["a"] * 2}, 1, max_responses=2), ListwiseItem)
    # A million non-strings: the count refuses the line; checking each would have named element 0.
    got = parse_object({"prompt": "q", "responses": [0] * 1_000_000}, 1)
    assert isinstance(got, LineError) and got.code == "too_many_responses"


def test_a_file_mixes_good_and_bad_lines_one_outcome_each() -> None:
    lines = [
        json.dumps({"prompt": "q", "responses": ["a", "b"]}),
        "{broken",
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
        json.dumps({"prompt": "q", "chosen": ["a"], "rejected": ["b", "c"]}),
    ]
    got = list(iter_json(io.BytesIO("\n".join(lines).encode()), "auto"))
    assert [type(p).__name__ for p in got] == ["ListwiseItem", "LineError", "LineError", "ListwiseItem"]
    assert got[2].code == "kind_mismatch"  # type: ignore[union-attr]


def test_record_best_worst_and_rewardbench2_credit() -> None:
    rec = listwise_record(3, "id", "Math", [0.5, 2.0, -1.0, 2.0], True, 1)
    assert (rec["best"], rec["worst"], rec["truncated"]) == (1, 2, True)
    assert rec["correct"] == 0.0  # the correct answer (index 0) is not at the top
    # Shared top score with a correct answer among them: 1/k.
    assert listwise_record(1, None, None, [2.0, 2.0, 2.0, 1.0], n_chosen=1)["correct"] == pytest.approx(1 / 3)
    assert listwise_record(1, None, None, [1.0, 3.0, 3.0, 0.0], n_chosen=2)["correct"] == 0.5
    assert listwise_record(1, None, None, [3.0, 1.0], n_chosen=1)["correct"] == 1.0
    assert "correct" not in listwise_record(1, None, None, [3.0, 1.0])


def test_content_hash_of_a_long_listwise_line_is_the_arrays_digest_in_bounded_memory() -> None:
    """64 responses to a 1 MB prompt are 64 conversations of 1 MB: hashing them as one JSON string
    held 64 MB of text and 64 MB of bytes in the API per line. Fed one conversation at a time, the
    digest is the same and the peak is about one conversation."""
    import hashlib
    import tracemalloc

    item = parse_object({"prompt": "p" * 1_000_000, "responses": [f"r{i}" for i in range(64)]}, 1)
    assert isinstance(item, ListwiseItem)
    whole = json.dumps(item.conversations, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    expected = hashlib.sha256(whole.encode()).hexdigest()
    del whole
    tracemalloc.start()
    try:
        digest = content_hash(item)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == expected
    assert peak < 8 * 1024**2, peak


@pytest.mark.parametrize(
    "other", [{"messages": ASSISTANT}, {"prompt": "p", "responses": ["a", "b"]}, {"prompt": "p", "response": "r"}]
)
def test_an_online_item_with_text_and_a_conversation_is_refused_not_half_read(other: dict) -> None:
    """`text` beside `messages` (or a listwise line's fields) was scored as the conversation, the
    text silently dropped: which one the caller meant is theirs to say."""
    got = parse_object({"text": "<|begin_of_text|>hi", **other}, 3, text_ok=True)
    assert isinstance(got, LineError) and got.code == "unknown_format", got
