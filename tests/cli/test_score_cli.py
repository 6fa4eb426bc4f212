"""`rmscore score` as a user runs it: one output line per input line, in order, bad lines reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RMSCORE = str(Path(sys.executable).parent / "rmscore")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([RMSCORE, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path) -> Path:
    """The session's tiny model (tests/conftest.py builds it with `rmscore make-tiny-model` too)."""
    return tiny_model_dir


def test_mixed_file(tmp_path, model_dir):
    long_reply = "word " * 5000  # over the 4096-token limit
    lines = [
        json.dumps({"custom_id": "ok1", "prompt": "hi", "response": "hello"}),
        "{broken",
        json.dumps({"custom_id": "long", "prompt": "tell me", "response": long_reply}),
        json.dumps({"messages": [{"role": "user", "content": "x"}]}),
        json.dumps(
            {
                "custom_id": "ok2",
                "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            }
        ),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")

    out = tmp_path / "out.jsonl"
    proc = run(
        "score",
        str(src),
        "-o",
        str(out),
        "--model",
        str(model_dir),
        "--summary-json",
        str(tmp_path / "s.json"),
    )
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["line"] for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0]["custom_id"] == "ok1" and isinstance(recs[0]["score"], float)
    assert recs[1]["error"]["code"] == "invalid_json"
    assert recs[2]["truncated"] is True and recs[2]["num_tokens"] == 4096
    assert recs[3]["error"]["code"] == "last_turn_not_assistant"
    assert recs[4]["custom_id"] == "ok2" and recs[4]["truncated"] is False
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (summary["lines"], summary["scored"], summary["failed"], summary["truncated"]) == (5, 3, 2, 1)
    assert "items/s" in proc.stderr and "padding efficiency" in proc.stderr

    out2 = tmp_path / "out2.jsonl"
    proc = run("score", str(src), "-o", str(out2), "--model", str(model_dir), "--overflow", "error")
    assert proc.returncode == 0, proc.stderr
    recs2 = [json.loads(x) for x in out2.read_text().splitlines()]
    assert recs2[2]["error"]["code"] == "too_long" and recs2[2]["custom_id"] == "long"
    assert recs2[0]["score"] == pytest.approx(recs[0]["score"], abs=1e-6)


def test_pairwise_summary_has_accuracy(tmp_path, model_dir, shared_data):
    out = tmp_path / "ebb.jsonl"
    proc = run(
        "score",
        str(shared_data / "evalbiasbench.json"),
        "-o",
        str(out),
        "--model",
        str(model_dir),
        "--summary-json",
        str(tmp_path / "s.json"),
    )
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 80
    acc = json.loads((tmp_path / "s.json").read_text())["accuracy"]
    assert acc["n"] == 80 and len(acc["subsets"]) == 6
    assert acc["overall"] == pytest.approx(sum(r["correct"] for r in recs) / 80)
    assert "overall" in proc.stderr


def test_parquet_input_scores_like_jsonl(tmp_path, model_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"custom_id": f"p{i}", "prompt": f"question {i}", "chosen": "a good answer", "rejected": "no", "subset": "s"}
        for i in range(5)
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    outs = []
    for name in ("in.jsonl", "in.parquet"):
        proc = run("score", str(tmp_path / name), "-o", str(tmp_path / f"{name}.out"), "--model", str(model_dir))
        assert proc.returncode == 0, proc.stderr
        outs.append([json.loads(x) for x in (tmp_path / f"{name}.out").read_text().splitlines()])
    assert outs[0] == outs[1] and len(outs[0]) == 5


def test_bad_option_is_a_clear_error(tmp_path, model_dir):
    src = tmp_path / "in.jsonl"
    src.write_text("{}\n")
    proc = run("score", str(src), "--model", str(model_dir), "--overflow", "drop")
    assert proc.returncode != 0 and "overflow" in proc.stderr
