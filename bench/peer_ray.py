"""A peer side by side: the same HH-RLHF job through Ray Data and through rmscore, in one run.

Ray Data's batch-inference recipe (docs: "End-to-end: Offline Batch Inference"): a dataset of rows,
`map_batches` with a callable class, so an actor pool holds the model once per actor, and a
Hugging Face text-classification pipeline called on each batch of 16. The actor renders each
conversation the model card's way (chat template, BOS string removed, `function_to_apply="none"`).
Measured on the same pairs and the same model (`small` by default, built if missing):
  ray_data   ray.data.from_items(...).map_batches(Scorer, batch_size=16,
             compute=ActorPoolStrategy(size=N)), take_all()
             (the clock starts after ray.init, so Ray's start-up is not counted);
  engine     rmscore's engine in this process (worker.scoring.score_items);
  system     with --system: the job through rmscore's API, Redis, one worker and SQLite
             (bench/system.py's stack), results read back.
Also checks the two agree: the largest |score difference| between Ray's and the engine's scores.

    .venv/bin/pip install 'ray[data]'      # or: pip install -e '.[bench]'
    .venv/bin/python bench/peer_ray.py --pairs 300 --system
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchkit import HH, ROOT, write_report  # first: puts the repository and tests/ on sys.path, sets HF_HUB_OFFLINE


class Scorer:
    """What a Ray Data user writes: load once per actor, score a batch per call."""

    def __init__(self, model: str, threads: int) -> None:
        import torch
        from transformers import AutoTokenizer, pipeline

        torch.set_num_threads(threads)
        self.tok = AutoTokenizer.from_pretrained(model)
        self.pipe = pipeline("text-classification", model=model, tokenizer=self.tok, device="cpu",
                             dtype=torch.float32)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        bos = self.tok.bos_token
        texts = [self.tok.apply_chat_template(json.loads(c), tokenize=False).replace(bos, "")
                 for c in batch["conversation"]]
        out = self.pipe(texts, batch_size=16, function_to_apply="none", top_k=None)
        return {"id": batch["id"], "score": [o[0]["score"] for o in out]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small", choices=["tiny", "small"], help="model size (built if missing)")
    ap.add_argument("--pairs", type=int, default=300, help="HH-RLHF pairs (two conversations each)")
    ap.add_argument("--actors", type=int, default=1, help="Ray actors (each holds a model)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per actor / process")
    ap.add_argument("--system", action="store_true", help="also run the job through rmscore's full system")
    ap.add_argument("--broker-url", default="redis://127.0.0.1:6379/5", help="for --system; flushed")
    ap.add_argument("--data", default=str(HH))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "peer_ray.json"))
    args = ap.parse_args()

    import tempfile

    from system import hh_lines

    from rmscore.inputs import iter_parsed
    from worker.tiny_model import make_tiny_model

    model = str(ROOT / "models" / args.size)
    if not (Path(model) / "config.json").exists():
        make_tiny_model(model, args.size)
    tmp = Path(tempfile.mkdtemp(prefix="rmscore-bench-ray-"))
    data = tmp / "hh.jsonl"
    data.write_bytes(b"\n".join(hh_lines(Path(args.data), args.pairs)) + b"\n")
    items = list(iter_parsed(str(data)))
    rows = [{"id": 2 * i + s, "conversation": json.dumps(c)}
            for i, it in enumerate(items) for s, c in enumerate(it.conversations)]  # type: ignore[union-attr]
    print(f"{len(items)} pairs, {len(rows)} conversations, model {args.size}, load {os.getloadavg()[0]:.2f}",
          flush=True)
    results: dict[str, Any] = {"pairs": len(items), "conversations": len(rows), "size": args.size,
                               "actors": args.actors, "threads": args.threads}

    import ray

    ray.init(num_cpus=max(os.cpu_count() or 1, args.actors), include_dashboard=False, log_to_driver=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        t0 = time.perf_counter()
        ds = ray.data.from_items(rows).map_batches(
            Scorer, fn_constructor_args=(model, args.threads), batch_size=16,
            compute=ray.data.ActorPoolStrategy(size=args.actors), num_cpus=1,
        )
        out = ds.take_all()
        ray_s = time.perf_counter() - t0
    finally:
        ray.shutdown()
    if len(out) != len(rows):
        raise RuntimeError(f"Ray returned {len(out)} scores for {len(rows)} conversations")
    ray_scores = {int(r["id"]): float(r["score"]) for r in out}
    results["ray_data"] = {"seconds": ray_s, "pairs_per_s": len(items) / ray_s,
                           "note": "includes each actor's model load, as a one-off Ray job does"}

    # The engine on the same pairs; its scores checked against Ray's.
    import torch

    from worker.engine import Scorer as WorkerScorer
    from worker.scoring import score_items

    torch.set_num_threads(args.threads)
    engine = WorkerScorer.load(model, device="cpu")
    engine.warmup()
    t0 = time.perf_counter()
    records = score_items(engine, items)  # type: ignore[arg-type]
    eng_rate = len(items) / (time.perf_counter() - t0)
    diffs = [max(abs(r["chosen_score"] - ray_scores[2 * i]), abs(r["rejected_score"] - ray_scores[2 * i + 1]))
             for i, r in enumerate(records)]
    results["engine"] = {"pairs_per_s": eng_rate}
    results["max_abs_score_difference"] = max(diffs)
    if args.system:
        import redis
        from system import Stack, system_rate

        from db.migrate import ensure_schema
        from db.session import get_engine

        db_url = f"sqlite:///{tmp / 'bench.db'}"
        ensure_schema(get_engine(db_url))
        r = redis.Redis.from_url(args.broker_url)
        r.flushdb()
        stack = Stack(model, db_url, args.broker_url, 1, args.threads, tmp, {})
        try:
            stack.wait_ready(r)
            sys_rate, phases = system_rate(stack, data, len(items))
        finally:
            stack.stop()
            r.flushdb()
        results["system"] = {"pairs_per_s": sys_rate, **phases}

    print("\npeer            pairs/s   vs Ray Data")
    ray_rate = results["ray_data"]["pairs_per_s"]
    for name in ("ray_data", "engine", "system"):
        if name in results:
            rate = results[name]["pairs_per_s"]
            print(f"{name:<14} {rate:8.1f}   {rate / ray_rate:6.2f}x")
    print(f"largest |score difference| Ray vs engine: {results['max_abs_score_difference']:.2e}")
    write_report(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
