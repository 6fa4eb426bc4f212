"""The preference rows (`rmscore.preferences`), pure logic: how a pair splits into prompt and
replies, which rows best-worst / best-vs-rest give, ties, margins, the label, bad options, and
that the writers consume their rows lazily, in bounded memory (tracemalloc, not a timing)."""

from __future__ import annotations

import io
import math
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rmscore import preferences as prefs
from rmscore.errors import BadRequest
from rmscore.formats import parse_object


def msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def group(scores: list[float], n_chosen: int | None = None) -> prefs.Group:
    replies = [[msg("assistant", f"r{i}")] for i in range(len(scores))]
    return prefs.Group(7, "c7", [msg("user", "q")], replies, scores, n_chosen)


def test_a_pair_splits_at_the_messages_both_conversations_share() -> None:
    hh = parse_object({"chosen": "\n\nHuman: hi\n\nAssistant: yo\n\nHuman: help?\n\nAssistant: sure",
                       "rejected": "\n\nHuman: hi\n\nAssistant: yo\n\nHuman: help?\n\nAssistant: no"}, 1)  # fmt: skip
    prompt, chosen, rejected = prefs.split_pair(hh.chosen, hh.rejected)  # type: ignore[union-attr]
    assert prompt == [msg("user", "hi"), msg("assistant", "yo"), msg("user", "help?")]
    assert chosen == [msg("assistant", "sure")] and rejected == [msg("assistant", "no")]
    # Equal conversations still leave each side its reply, never an empty completion.
    same = [msg("user", "q"), msg("assistant", "a")]
    assert prefs.split_pair(same, same) == ([msg("user", "q")], [msg("assistant", "a")], [msg("assistant", "a")])


def test_strings_in_give_strings_out_and_messages_give_messages() -> None:
    text = parse_object({"prompt": "q", "chosen": "good", "rejected": "bad"}, 1)
    messages = parse_object({"prompt": [msg("user", "q")], "chosen": "good", "rejected": "bad"}, 2)
    hh = parse_object({"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q\n\nAssistant: bad"}, 3)
    assert [getattr(p, "text", None) for p in (text, messages, hh)] == [True, False, False]
    g = prefs.pair_group(1, None, text.payload(), 2.0, 0.5)  # type: ignore[union-attr]
    [row] = prefs.preference_rows(g, "text", prefs.Spec())
    assert (row["prompt"], row["chosen"], row["rejected"]) == ("q", "good", "bad")
    [row] = prefs.preference_rows(g, "messages", prefs.Spec())
    assert row["prompt"] == [msg("user", "q")] and row["chosen"] == [msg("assistant", "good")]


def test_a_pair_scored_against_its_label_still_prefers_the_higher_score() -> None:
    [row] = prefs.preference_rows(group([0.25, 1.5], n_chosen=1), "messages", prefs.Spec())
    assert row["chosen"] == [msg("assistant", "r1")] and row["rejected"] == [msg("assistant", "r0")]
    assert (row["chosen_score"], row["rejected_score"], row["margin"]) == (1.5, 0.25, 1.25)
    assert row["agrees_with_label"] is False and (row["custom_id"], row["line"]) == ("c7", 7)
    [row] = prefs.preference_rows(group([1.5, 0.25], n_chosen=1), "messages", prefs.Spec())
    assert row["agrees_with_label"] is True


def test_best_worst_best_vs_rest_ties_and_min_margin() -> None:
    scores = [0.5, 2.0, -1.0, 2.0, 1.0]
    g = group(scores)
    [row] = prefs.preference_rows(g, "messages", prefs.Spec())
    assert (row["chosen_score"], row["rejected_score"]) == (2.0, -1.0) and row["chosen"] == [msg("assistant", "r1")]
    assert row["agrees_with_label"] is None  # unlabelled
    rest = list(prefs.preference_rows(g, "messages", prefs.Spec(pairs="best-vs-rest")))
    # Against every other response but the one tied with the best: a tie prefers nothing.
    assert [r["rejected"][0]["content"] for r in rest] == ["r0", "r2", "r4"]
    assert all(r["margin"] == r["chosen_score"] - r["rejected_score"] > 0 for r in rest)
    kept = list(prefs.preference_rows(g, "messages", prefs.Spec(pairs="best-vs-rest", min_margin=1.5)))
    assert [r["margin"] for r in kept] == [1.5, 3.0]
    assert list(prefs.preference_rows(group([1.0, 1.0, 1.0]), "messages", prefs.Spec())) == []
    # Labelled listwise: both on the chosen side says nothing about the label.
    rest_spec = prefs.Spec(pairs="best-vs-rest")
    labelled = list(prefs.preference_rows(group([3.0, 2.0, 1.0], n_chosen=2), "messages", rest_spec))
    assert [r["agrees_with_label"] for r in labelled] == [None, True]


def test_best_picks_the_first_top_score_and_min_score_filters() -> None:
    [row] = prefs.best_rows(group([1.0, 3.0, 3.0]), "messages", prefs.Spec("best"))
    assert row == {"prompt": [msg("user", "q")], "completion": [msg("assistant", "r1")], "score": 3.0,
                   "custom_id": "c7", "line": 7}  # fmt: skip
    assert list(prefs.best_rows(group([1.0, 3.0]), "messages", prefs.Spec("best", min_score=3.5))) == []
    assert len(list(prefs.best_rows(group([1.0, 3.0]), "messages", prefs.Spec("best", min_score=3.0)))) == 1


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"min_margin": -0.1}, "invalid_min_margin"),
        ({"min_margin": math.nan}, "invalid_min_margin"),
        ({"min_margin": math.inf}, "invalid_min_margin"),
        ({"pairs": "all-pairs"}, "invalid_pairs"),
        ({"min_score": math.nan}, "invalid_min_score"),
    ],
)
def test_bad_options_are_bad_requests(options: dict[str, Any], code: str) -> None:
    with pytest.raises(BadRequest) as e:
        prefs.Spec(**options)
    assert e.value.code == code and e.value.http_status == 400


def test_csv_is_refused_with_the_formats_that_work(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match=r"\.jsonl, \.jsonl\.gz or \.parquet"):
        prefs.write(iter([]), str(tmp_path / "p.csv"), "preferences", "text")
    assert not list(tmp_path.iterdir())


def test_an_output_that_is_a_directory_is_named_as_given(tmp_path: Path) -> None:
    """The error named `out.jsonl.part`, a path the user never typed; nothing is left behind."""
    (tmp_path / "out.jsonl").mkdir()
    for output in (tmp_path / "out.jsonl", tmp_path / "missing" / "out.parquet"):
        with pytest.raises(OSError) as e:
            prefs.write(endless(3, [0]), str(output), "preferences", "text")
        assert e.value.filename == str(output), e.value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def endless(n: int, seen: list[int], size: int = 100) -> Iterator[dict[str, Any]]:
    """`n` rows of about 3 x `size` bytes, counting in `seen[0]` how many were taken so far."""
    for i in range(n):
        seen[0] = i + 1
        texts = {"prompt": "q" * size, "chosen": "c" * size, "rejected": "r" * size}
        yield {**texts, "chosen_score": 1.0, "rejected_score": 0.0, "margin": 1.0, "agrees_with_label": True,
               "custom_id": str(i), "line": i}  # fmt: skip


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_the_writers_take_rows_as_they_go(fmt: str) -> None:
    """The first bytes come out after one buffer / one row group of rows, not after the last row."""
    seen = [0]
    pieces = prefs.chunks(endless(10**9, seen), fmt, "preferences", "text")
    first = next(pieces)
    assert first and seen[0] <= prefs.ROW_GROUP + 1000, seen[0]


def test_a_parquet_row_group_holds_a_bounded_amount_of_text() -> None:
    """Rows of ~1 MB (best-vs-rest repeats a long prompt on up to 63 rows of a line): a row group
    is cut by its text as well as its row count. Arrow's copies are not seen by tracemalloc, so
    this counts the rows taken before the first bytes: all 40 (36 MB) before the cut."""
    seen = [0]
    first = next(prefs.chunks(endless(40, seen, size=300_000), "parquet", "preferences", "text"))
    assert first and seen[0] <= 16, seen[0]  # ~3 at ROW_GROUP_CHARS (2 M characters)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_rows_are_written_in_bounded_memory(tmp_path: Path, suffix: str) -> None:
    """20,000 rows of ~3 KB (60 MB held at once, were they materialized) through the file writer:
    the peak of traced allocations stays at a few buffers / one row group (~3.6 MB measured)."""
    seen = [0]
    out = tmp_path / f"rows{suffix}"
    prefs.write(endless(1, [0]), str(out), "preferences", "text")  # imports pyarrow before tracing
    tracemalloc.start()
    try:
        n = prefs.write(endless(20_000, seen, size=1000), str(out), "preferences", "text")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == seen[0] == 20_000
    assert peak < 16 * 1024**2, peak
    assert out.stat().st_size > (20 * 1024**2 if suffix == ".jsonl" else 0)


def test_parquet_rows_keep_their_types() -> None:
    import pyarrow.parquet as pq

    rows = list(prefs.preference_rows(group([0.0, 2.0], n_chosen=1), "messages", prefs.Spec()))
    table = pq.read_table(io.BytesIO(b"".join(prefs.chunks(iter(rows), "parquet", "preferences", "messages"))))
    assert table.to_pylist() == rows


def test_a_listwise_line_keeps_its_prompt_and_its_shape() -> None:
    text = parse_object({"prompt": "q", "responses": ["a", "b", "c"]}, 4)
    turns = [msg("user", "q")]
    mixed = parse_object({"prompt": turns, "chosen": ["a"], "rejected": ["b", [msg("assistant", "c")]]}, 5)
    assert text.payload()["text"] is True and "text" not in mixed.payload()  # type: ignore[union-attr]
    g = prefs.listwise_group(4, "x", text.payload(), [0.0, 2.0, 1.0])  # type: ignore[union-attr]
    [row] = prefs.preference_rows(g, "text", prefs.Spec())
    assert (row["prompt"], row["chosen"], row["rejected"], row["agrees_with_label"]) == ("q", "b", "a", None)
    g = prefs.listwise_group(5, None, mixed.payload(), [2.0, 1.0, 0.0])  # type: ignore[union-attr]
    assert g.prompt == turns and g.n_chosen == 1
    rows = list(prefs.preference_rows(g, "messages", prefs.Spec(pairs="best-vs-rest")))
    assert [r["rejected"] for r in rows] == [[msg("assistant", "b")], [msg("assistant", "c")]]
    assert all(r["agrees_with_label"] is True for r in rows)
    [best] = prefs.best_rows(g, "messages", prefs.Spec("best"))
    assert best["prompt"] + best["completion"] == mixed.conversations[0]  # type: ignore[union-attr]
