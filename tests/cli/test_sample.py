"""`rmscore sample`: the bundled data a README reader starts from parses as the kind it claims."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rmscore.formats import ChatItem, PairItem, parse_line

RMSCORE = str(Path(sys.executable).parent / "rmscore")


def _run(*args: str) -> list[str]:
    done = subprocess.run([RMSCORE, "sample", *args], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def test_pairwise_sample_parses_as_pairs() -> None:
    lines = _run()
    parsed = [parse_line(ln, i, "pairwise") for i, ln in enumerate(lines, 1)]
    assert lines and all(isinstance(p, PairItem) for p in parsed)


def test_chat_sample_is_each_pair_side_as_a_chat(tmp_path: Path) -> None:
    pairs = [json.loads(ln) for ln in _run()]
    _run("--kind", "chat", "-o", str(tmp_path / "chats.jsonl"))
    chats = (tmp_path / "chats.jsonl").read_text().splitlines()
    assert len(chats) == 2 * len(pairs)
    parsed = [parse_line(ln, i, "chat") for i, ln in enumerate(chats, 1)]
    assert all(isinstance(p, ChatItem) for p in parsed)
    first = json.loads(chats[1])
    assert first["messages"][-1]["content"] == pairs[0]["rejected"]
    assert first["custom_id"] == f"{pairs[0]['custom_id']}-rejected"
