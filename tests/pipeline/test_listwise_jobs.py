"""Listwise (best-of-N) jobs through real workers: each response scored as its own chat would be,
RewardBench 2's per-line credit and table as computed by hand, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pipekit import Pipeline
from testkit import card_pipeline

from rmscore.formats import ListwiseItem, PairItem, parse_object, split_hh

SECTIONS = ("Factuality", "Precise IF", "Math", "Safety", "Focus")


def _pairs(shared_data: Path, n: int) -> list[PairItem]:
    with gzip.open(shared_data / "hh-rlhf-harmless-base-test.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in itertools.islice(f, n)]
    out = []
    for i, row in enumerate(rows, 1):
        chosen, rejected = split_hh(row["chosen"]), split_hh(row["rejected"])
        out.append(PairItem(i, None, None, chosen, rejected))
    return out


@pytest.fixture(scope="module")
def listwise_lines(shared_data: Path) -> list[dict[str, Any]]:
    """RewardBench 2's shape built from HH-RLHF: per prompt one correct reply (the chosen) against
    three wrong ones (its rejected and two other prompts' replies), in its five accuracy domains;
    a Ties-shaped sample (ref:N with one correct, tied:N with three); unlabelled lines whose responses
    are strings, messages and multi-turn continuations; and two bad lines."""
    pairs = _pairs(shared_data, 16)
    lines: list[dict[str, Any]] = []
    for i in range(10):
        p, q, r = pairs[i], pairs[i + 1], pairs[i + 2]
        single = len(p.chosen) == 2
        lines.append(
            {
                "custom_id": f"rb2-{i}",
                "subset": SECTIONS[i % 5],
                # A one-turn prompt as RewardBench 2 gives it (a string), a longer one as messages.
                "prompt": p.chosen[0]["content"] if single else p.chosen[:-1],
                "chosen": [p.chosen[-1]["content"]],
                "rejected": [p.rejected[-1]["content"], q.chosen[-1]["content"], r.rejected[-1]["content"]],
            }
        )
    for k in range(2):
        p, q = pairs[10 + k], pairs[12 + k]
        good = p.chosen[-1]["content"]
        wrong = [p.rejected[-1]["content"], q.chosen[-1]["content"], q.rejected[-1]["content"]]
        prompt = p.chosen[:-1]
        lines.append({"custom_id": f"ref:{k}", "subset": "Ties", "prompt": prompt, "chosen": [good], "rejected": wrong})
        lines.append(
            {
                "custom_id": f"tied:{k}",
                "subset": "Ties",
                "prompt": prompt,
                "chosen": [good, good + " Indeed.", "In short: " + good],
                "rejected": wrong,
            }
        )
    bad_at = len(lines)
    lines.append({"custom_id": "too-many", "prompt": "q", "responses": ["a"] * 65})
    for i in range(3):
        p = pairs[13 + i]
        lines.append(
            {
                "custom_id": f"open-{i}",
                "prompt": p.chosen[:-1],
                "responses": [
                    p.chosen[-1]["content"],
                    [p.rejected[-1]],
                    [{"role": "assistant", "content": "Hmm."}, {"role": "user", "content": "Go on."}, p.chosen[-1]],
                ],
            }
        )
    lines.insert(bad_at + 2, {"custom_id": "robot", "prompt": "q", "responses": [[{"role": "robot", "content": "b"}]]})
    return lines


@pytest.fixture(scope="module")
def parsed(listwise_lines: list[dict[str, Any]]) -> list[Any]:
    return [parse_object(obj, n) for n, obj in enumerate(listwise_lines, 1)]


@pytest.fixture(scope="module")
def card_scores(parsed: list[Any], tiny_model_dir: Path) -> dict[int, list[float]]:
    """The card's pipeline on each response's own conversation, per line."""
    items = [p for p in parsed if isinstance(p, ListwiseItem)]
    flat = card_pipeline(tiny_model_dir)([c for item in items for c in item.conversations])
    out, pos = {}, 0
    for item in items:
        out[item.line] = flat[pos : pos + len(item.conversations)]
        pos += len(item.conversations)
    return out


def test_a_listwise_job_scores_each_response_as_its_own_chat_and_as_the_card(
    pipeline: Pipeline,
    steady_worker: Any,
    listwise_lines: list[dict[str, Any]],
    parsed: list[Any],
    card_scores: dict[int, list[float]],
    tmp_path: Path,
) -> None:
    src = tmp_path / "best-of-n.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in listwise_lines))
    # Small chunks: lines of several responses are split across chunks and workers' batches.
    job_id = pipeline.submit(src, chunk_size=3, options={"cache": False})
    items = [p for p in parsed if isinstance(p, ListwiseItem)]
    # Every response again, as a chat line of its own, scored afresh (not from the score cache).
    chats = tmp_path / "as-chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": c}) + "\n" for item in items for c in item.conversations))
    chat_job = pipeline.submit(chats, chunk_size=17, options={"cache": False})
    job, _ = pipeline.wait(job_id), pipeline.wait(chat_job)

    assert job.status == "completed" and job.kind == "listwise"
    records = pipeline.records(job_id)
    assert [r["line"] for r in records] == list(range(1, len(listwise_lines) + 1))
    errors = {r["custom_id"]: r["error"]["code"] for r in records if "error" in r}
    assert errors == {"too-many": "too_many_responses", "robot": "unknown_role"}
    counts = job.to_dict()["request_counts"]
    assert counts == {
        "total": len(listwise_lines),
        "completed": len(items),
        "failed": 2,
        "responses": sum(len(i.responses) for i in items),
    }

    alone = [r["score"] for r in pipeline.records(chat_job)]
    by_line = {r["line"]: r for r in records if "error" not in r}
    pos = 0
    for item in items:
        rec = by_line[item.line]
        n = len(item.responses)
        assert (rec["custom_id"], rec["subset"], rec["cached"]) == (item.custom_id, item.subset, False)
        assert max(abs(a - b) for a, b in zip(rec["scores"], alone[pos : pos + n], strict=True)) <= 1e-6
        assert max(abs(a - b) for a, b in zip(rec["scores"], card_scores[item.line], strict=True)) <= 1e-4
        assert rec["best"] == int(np.argmax(rec["scores"])) and rec["worst"] == int(np.argmin(rec["scores"]))
        pos += n
        if item.n_chosen is None:
            assert "correct" not in rec
            continue
        # RewardBench 2's per-prompt result (reroll_and_score_dataset), written out again here.
        s = np.array(rec["scores"])
        top = s.max()
        want = 1 / np.sum(s == top) if (s[: item.n_chosen] == top).any() else 0
        assert rec["correct"] == pytest.approx(float(want))

    _check_summary(pipeline, job_id, [by_line[i.line] for i in items], items)

    # The score cache keeps working per conversation: the same file again is answered from it.
    again = pipeline.records(pipeline.wait(pipeline.submit(src, chunk_size=4)).id)
    assert [r["line"] for r in again if "error" not in r] == list(by_line)
    for r in again:
        if "error" not in r:
            # Within 1e-6, not bit for bit: a Ties line repeats conversations of its ref line, which
            # were scored in other batches, and the cache holds one score per conversation.
            first = by_line[r["line"]]["scores"]
            assert r["cached"] and max(abs(a - b) for a, b in zip(r["scores"], first, strict=True)) <= 1e-6


def _check_summary(pipeline: Pipeline, job_id: str, recs: list[dict[str, Any]], items: list[ListwiseItem]) -> None:
    """The job summary's numbers, recomputed by hand from the records: best/worst spread, credit per
    subset, and RewardBench 2's table with Ties by reward-bench's `process_single_model`."""
    from db.jobs import job_summary

    s = job_summary(pipeline.db, job_id)
    best = [r["scores"][r["best"]] for r in recs]
    worst = [r["scores"][r["worst"]] for r in recs]
    b = s["best_of_n"]
    assert b["n"] == len(recs)
    assert b["best"]["mean"] == pytest.approx(np.mean(best)) and b["best"]["max"] == pytest.approx(max(best))
    assert b["worst"]["min"] == pytest.approx(min(worst))
    assert b["margin"]["mean"] == pytest.approx(np.mean(np.array(best) - np.array(worst)))

    labelled = [r for r in recs if "correct" in r]
    for name in (*SECTIONS, "Ties"):
        got = [r["correct"] for r in labelled if r["subset"] == name]
        row = s["accuracy"]["subsets"][name]
        assert row["n"] == len(got) and row["accuracy"] == pytest.approx(sum(got) / len(got))

    # Ties by hand, as reward-bench's process_single_model does it with numpy.
    n_correct = {i.line: i.n_chosen for i in items}
    stats: dict[tuple[str, int], tuple[bool, float | None, float]] = {}
    for r in (r for r in labelled if r["subset"] == "Ties"):
        kind, pid = r["custom_id"].split(":")
        k = n_correct[r["line"]]
        right, wrong = r["scores"][:k], r["scores"][k:]
        spread = max(right) - min(right) if len(right) > 1 else None
        stats[(kind, int(pid))] = (min(right) - max(wrong) > 0, spread, min(right) - max(wrong))
    ref = {p: v for (kind, p), v in stats.items() if kind == "ref"}
    tied = {p: v for (kind, p), v in stats.items() if kind == "tied"}
    both = set(ref) & set(tied)
    diff = np.array([tied[p][1] for p in both])
    gap_t = np.array([tied[p][2] for p in both])
    gap_hard = np.minimum(np.array([ref[p][2] for p in both]), gap_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        margin = float(np.mean(np.nan_to_num(np.tanh(gap_hard / diff - 1), nan=0.0)))
    ties = (
        0.30 * np.mean([v[0] for v in tied.values()])
        + 0.30 * np.mean([v[0] for v in ref.values()])
        + 0.20 * np.mean(gap_t > diff)
        + 0.20 * np.mean(gap_hard > diff)
        + 0.01 * margin
    )
    table = s["evaluation"]["rewardbench2"]
    by = {row["section"]: row["score"] for row in table["sections"]}
    assert by["Ties"] == pytest.approx(float(ties), abs=1e-12)
    domains = [s["accuracy"]["subsets"][name]["accuracy"] for name in SECTIONS] + [float(ties)]
    assert table["complete"] and table["score"] == pytest.approx(sum(domains) / 6, abs=1e-12)
    assert math.isfinite(table["score"])
