"""On a GPU: does the engine still score as the card's pipeline does? (CI has no GPU; run this where one is.)

Builds the tiny model, then scores EvalBiasBench and the first --pairs HH-RLHF pairs with
  - the card's pipeline (text-classification, function_to_apply="none", batch_size=1), and
  - the engine, with and without its padding mask (worker.engine.MASK_FREE),
in fp32 (held to 1e-4, as tests/worker/test_fidelity.py holds the CPU) and in bf16 (reported: bf16
kernels differ by batch shape, so the figure is a spread, not a pass/fail).

    python bench/gpu_fidelity.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_fidelity.json")
    args = ap.parse_args()

    import torch
    from transformers import pipeline

    from rmscore.inputs import iter_parsed
    from worker.engine import Scorer
    from worker.tiny_model import make_tiny_model

    items = list(iter_parsed(args.data_dir / "evalbiasbench.json"))
    items += itertools.islice(iter_parsed(args.data_dir / "hh-rlhf-harmless-base-test.jsonl.gz"), args.pairs)
    convs = [c for it in items for c in it.conversations]  # type: ignore[union-attr]
    model_dir = make_tiny_model(Path(tempfile.mkdtemp()) / "tiny", "tiny", seed=0)
    report: dict[str, object] = {"device": torch.cuda.get_device_name() if args.device == "cuda" else args.device}
    report["conversations"] = len(convs)
    for dtype, limit in (("float32", 1e-4), ("bfloat16", None)):
        engine = Scorer.load(str(model_dir), device=args.device, dtype=dtype)
        tok = engine.renderer.tokenizer
        pipe = pipeline(
            "text-classification", model=str(model_dir), tokenizer=tok, device=args.device, dtype=getattr(torch, dtype)
        )
        texts = [engine.renderer.text(c) for c in convs]
        card = [o[0]["score"] for o in pipe(texts, batch_size=1, function_to_apply="none", top_k=None)]
        for mask_free in (True, False):
            engine.mask_free = mask_free
            ours = [r.score for r in engine.score(convs)]  # type: ignore[union-attr]
            worst = max(abs(a - b) for a, b in zip(ours, card, strict=True))
            key = f"{dtype}_{'mask_free' if mask_free else 'padding_mask'}"
            report[key] = {"max_abs_diff": worst, "lanes": engine.lanes, "batches": engine.stats.batches}
            verdict = "" if limit is None else ("  ok" if worst < limit else f"  FAIL (>= {limit})")
            print(f"{key:<26} max |engine - card| = {worst:.3e}{verdict}", flush=True)
            if limit is not None and worst >= limit:
                report["failed"] = True
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
