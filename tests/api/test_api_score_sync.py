"""`POST /v1/score` answers with the engine's scores (via a worker's sync queue)."""

from __future__ import annotations

from pathlib import Path

import pytest
from apistack import Stack

pytestmark = pytest.mark.integration

ITEMS = [
    {"custom_id": "a", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    {"prompt": "What is 2+2?", "response": "4"},
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven.", "subset": "s1"},
    {"messages": [{"role": "user", "content": "no reply"}]},
    {"prompt": "Long?", "response": "word " * 40},
]


def test_sync_score_equals_engine(stack: Stack, tiny_model_dir: Path) -> None:
    from rmscore.formats import parse_object
    from worker.engine import Scorer
    from worker.scoring import score_items

    engine = Scorer.load(str(tiny_model_dir), device="cpu")
    parsed = [parse_object(obj, i + 1) for i, obj in enumerate(ITEMS)]
    want = score_items(engine, [p for p in parsed if not hasattr(p, "code")])
    with stack.client() as c:
        r = c.post("/v1/score", json={"items": ITEMS})
        assert r.status_code == 200, r.text
        got = r.json()["results"]
    assert [g["line"] for g in got] == [1, 2, 3, 4, 5]
    assert got[3]["error"]["code"] == "last_turn_not_assistant"
    scored = [g for g in got if "error" not in g]
    assert len(scored) == len(want) == 4
    for g, w in zip(scored, want, strict=True):
        assert g.keys() == w.keys()
        for k, v in w.items():
            assert (abs(g[k] - v) <= 1e-4) if isinstance(v, float) else g[k] == v, (k, g, w)


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_sync_score_limits(stack: Stack) -> None:
    with stack.client() as c:
        r = c.post("/v1/score", json={"items": [ITEMS[1]] * 65})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_items"
        r = c.post("/v1/score", json={"items": [ITEMS[1]], "model": "/etc/passwd"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_model"
        r = c.post("/v1/score", json={"items": []})
        assert r.status_code == 422
