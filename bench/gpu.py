"""GPU benchmark: tokens/s and MFU of the 8B reward model, scored four ways on HH-RLHF conversations.

The model is a random-init LlamaForSequenceClassification with Llama-3-8B shapes (hidden 4096,
32 layers, FFN 14336, 32 heads, 8 KV heads, vocab 128256, one label) built in bf16 directly on the
device from a config: no download, and random weights cost exactly the FLOPs real ones do.

Methods, each on the same conversations (HH-RLHF harmless-base test, chosen and rejected):
  pipeline-bs1   the model card's way: pipeline("text-classification", function_to_apply="none",
                 top_k=None) on the rendered text, batch_size=1
  pipeline-bs16  the same pipeline, batch_size=16 (file order, padded to each batch's longest)
  packed         the engine's algorithm, model only, on pre-tokenized ids: sort by length, pack
                 micro-batches under --max-batch-tokens, right-pad (no padding mask: exact under a causal
                 mask, see worker.engine.MASK_FREE), sdpa, pool the last real token
  engine         worker.engine.Scorer.from_model(...).score(...), so rendering and tokenization are
                 on the clock too
packed and engine get --chunk conversations per call, as a worker gets a chunk: batches are packed
within a call, so small chunks leave part-filled batches (on an H200, 512 conversations per call gave
30% MFU, the whole set in one call 47%).

FLOPs per conversation of n real tokens (padding is waste, not work, so it earns nothing):
  2 * P * n  +  2 * layers * hidden * n^2
P = parameters other than the embedding table (~6.98e9 for 8B: ~14 GFLOP/token); the second term is
QK^T and AV (2 * 2 * layers * hidden per token pair), halved for the causal mask. MFU = FLOPs / s /
peak (--peak-tflops, default 989: H100 SXM dense bf16).

Tokens: --tokenizer DIR loads a real tokenizer (e.g. `rmscore make-tiny-model` output or a Llama-3
tokenizer). Without it a stand-in splits text with Llama-3's pre-tokenizer regex, then into pieces of
at most 8 characters, one id per piece (~4.1 characters/token on HH-RLHF; Llama-3 averages ~4 on
English). Cost depends on how many tokens there are, not which, so the ids themselves are arbitrary.

Every result prints as soon as it is measured and --out is rewritten each time, so a run cut short
(--time-budget, SIGTERM, Ctrl-C) still reports what it measured.
  python bench/gpu.py                                     # one H100, < 5 minutes
  python bench/gpu.py --device cpu --layers 2 --hidden 64 --intermediate 128 --heads 4 --kv-heads 2 --vocab 2048

The queued job on the GPU (issue 17: queued job / engine, 8B shape): save the model, then run a real
worker against a real job beside the engine in-process (bench/queued.py; bench/gpu_queued.sh runs both):
  python bench/gpu.py --save-model /tmp/rand8b && python bench/queued.py --device cuda --model /tmp/rand8b
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a fresh clone without installing
DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
METHODS = ("engine", "packed", "pipeline-bs16", "pipeline-bs1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), help="default: bf16 on cuda, fp32 on cpu")
    p.add_argument("--attn", default="sdpa", choices=("sdpa", "flash_attention_2", "eager"))
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--intermediate", type=int, default=14336)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--tokenizer", type=Path, help="tokenizer directory (default: Llama-3-like stand-in)")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--n-items", type=int, default=0, help="conversations to score (default: all 4,624)")
    p.add_argument("--max-batch-tokens", type=int, help="packed/engine budget (default: the engine's)")
    p.add_argument(
        "--chunk",
        type=int,
        default=512,
        help="conversations per engine/packed call (default 512:"
        " a worker's chunk of 256 pairs); batches are packed within a call",
    )
    p.add_argument(
        "--padding-mask",
        action="store_true",
        help="packed/engine pass a padding mask (the engine leaves it out for Llama: exact under right"
        " padding, and lets sdpa pick its causal kernel); for an A/B of that choice",
    )
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    p.add_argument("--time-budget", type=float, default=240.0, help="seconds for the whole run (default 240)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="peak dense FLOP/s of the device, in T")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu.json")
    p.add_argument(
        "--save-model",
        type=Path,
        help="also write the model and tokenizer to this directory (then exit before measuring), for"
        " bench/queued.py: a real `rmscore worker` on the same random 8B-shaped model against a real job",
    )
    return p.parse_args(argv)


def stand_in_tokenizer() -> Any:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from worker.tiny_model import BOS, EOT, LLAMA3_CHAT_TEMPLATE, LLAMA3_SPLIT, PAD, special_tokens

    tok = Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.Split(Regex(r"[\s\S]{1,8}"), behavior="isolated"),  # long words: several tokens
        ]
    )
    tok.add_special_tokens(special_tokens())
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOT, pad_token=PAD, unk_token="<unk>", model_max_length=8192
    )
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    return fast


def build_model(args: argparse.Namespace, pad_token_id: int, device: Any, dtype: Any) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        num_labels=1,
        pad_token_id=pad_token_id,
        tie_word_embeddings=False,
    )
    config._attn_implementation = args.attn
    # Allocate and initialise on the device in the target dtype: no 32 GB fp32 copy on the host.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForSequenceClassification(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def conversation_flops(n: int, params: int, layers: int, hidden: int) -> float:
    return 2.0 * params * n + 2.0 * layers * hidden * n * n


def pipeline_method(model: Any, tok: Any, texts: list[str], batch_size: int, device: Any) -> Any:
    from transformers import pipeline

    pipe = pipeline("text-classification", model=model, tokenizer=tok, device=device)

    def run(idx: list[int]) -> None:
        pipe([texts[i] for i in idx], batch_size=batch_size, function_to_apply="none", top_k=None)

    return run


def packed_method(model: Any, ids: list[list[int]], budget: int, device: Any, padding_mask: bool) -> Any:
    import torch

    from worker.batching import pack

    base = getattr(model, model.base_model_prefix)
    pad = model.config.pad_token_id

    @torch.inference_mode()
    def run(idx: list[int]) -> None:
        for batch in pack([len(ids[i]) for i in idx], budget, 256):
            rows = [ids[idx[b]] for b in batch]
            lengths = torch.tensor([len(r) for r in rows])
            input_ids = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for r, row in enumerate(rows):
                input_ids[r, : len(row)] = torch.tensor(row)
                mask[r, : len(row)] = 1
            kwargs = {"attention_mask": mask.to(device)} if padding_mask else {}
            hidden = base(input_ids=input_ids.to(device), **kwargs).last_hidden_state
            pooled = hidden[torch.arange(len(rows), device=device), lengths.to(device) - 1]
            model.score(pooled)[:, 0].float().tolist()  # .tolist() waits for the GPU, as a worker does

    return run


def engine_method(
    model: Any, tok: Any, convs: list[Any], budget: int | None, device: Any, padding_mask: bool
) -> Any:
    from worker.engine import Scorer

    engine = Scorer.from_model(model, tok, model="bench-random-8b", device=str(device), max_batch_tokens=budget)
    engine.mask_free = engine.mask_free and not padding_mask

    def run(idx: list[int]) -> None:
        engine.score([convs[i] for i in idx])

    return run


class Report:
    def __init__(self, out: Path, meta: dict[str, Any]) -> None:
        self.out, self.meta, self.results = out, meta, []
        print(
            f"{'method':<14} {'items':>6} {'tokens':>9} {'seconds':>8} {'items/s':>9} {'tokens/s':>10} {'TFLOP/s':>8}"
            f" {'MFU':>7}  note",
            flush=True,
        )

    def add(self, result: dict[str, Any]) -> None:
        self.results.append(result)
        if "error" in result:
            print(f"{result['method']:<14} error: {result['error']}", flush=True)
        else:
            r = result
            print(
                f"{r['method']:<14} {r['items']:>6} {r['tokens']:>9} {r['seconds']:>8.2f} {r['items_per_s']:>9.1f}"
                f" {r['tokens_per_s']:>10.0f} {r['tflops']:>8.2f} {r['mfu']:>7.2%}  {r['note']}",
                flush=True,
            )
        self.write(complete=False)

    def write(self, complete: bool) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps({**self.meta, "complete": complete, "results": self.results}, indent=2))


def measure(name: str, run: Any, step: int, lengths: list[int], flops: list[float], seconds: float, sync: Any) -> dict:
    """Warm up, then score `step` items per call until the items or the time share run out (always one call)."""
    n = len(lengths)
    run(list(range(min(16, n))))  # untimed: kernel selection, allocator, cuBLAS handles
    sync()
    done, note, t0 = 0, "", time.perf_counter()
    try:
        while done < n and (done == 0 or time.perf_counter() - t0 < seconds):
            end = min(done + step, n)
            run(list(range(done, end)))
            sync()
            done = end
    except KeyboardInterrupt:
        note = "interrupted"
        if done == 0:
            raise
    elapsed = time.perf_counter() - t0
    if done < n and not note:
        note = f"time share {seconds:.0f}s used: {done}/{n} items"
    tokens, work = sum(lengths[:done]), sum(flops[:done])
    return {
        "method": name,
        "items": done,
        "tokens": tokens,
        "seconds": elapsed,
        "items_per_s": done / elapsed,
        "tokens_per_s": tokens / elapsed,
        "tflops": work / elapsed / 1e12,
        "note": note,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM reports like Ctrl-C
    import torch
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from rmscore.formats import LineError
    from rmscore.inputs import iter_parsed
    from worker.engine import DEFAULT_BUDGET

    hf_logging.set_verbosity_error()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    tok = AutoTokenizer.from_pretrained(args.tokenizer) if args.tokenizer else stand_in_tokenizer()
    items = (p for p in iter_parsed(args.data) if not isinstance(p, LineError))
    convs = list(itertools.chain.from_iterable(p.conversations for p in items))[: args.n_items or None]
    bos = tok.bos_token or ""
    texts = [tok.apply_chat_template(c, tokenize=False).replace(bos, "") for c in convs]  # the card's rendering
    ids = tok(texts, add_special_tokens=True)["input_ids"]
    if max(max(i) for i in ids) >= args.vocab:
        raise SystemExit(f"tokenizer ids reach {max(max(i) for i in ids)}; --vocab {args.vocab} is too small")
    lengths = [len(i) for i in ids]

    model = build_model(args, tok.pad_token_id, device, dtype)
    if args.save_model:
        # Random weights of the real shapes: a worker loads them as it would the card's (from_pretrained).
        model.save_pretrained(args.save_model)
        tok.save_pretrained(args.save_model)
        print(f"# wrote the model to {args.save_model}", flush=True)
        return 0
    sync()
    params = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    flops = [conversation_flops(n, params, args.layers, args.hidden) for n in lengths]
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    meta = {
        "device": gpu,
        "dtype": str(dtype).removeprefix("torch."),
        "attn": args.attn,
        "padding_mask": args.padding_mask,
        "layers": args.layers,
        "hidden": args.hidden,
        "non_embedding_params": params,
        "peak_tflops": args.peak_tflops,
        "tokenizer": str(args.tokenizer or "stand-in (Llama-3 pre-tokenizer, <=8 chars/token)"),
        "items": len(convs),
        "tokens": sum(lengths),
        "mean_tokens": sum(lengths) / len(lengths),
        "setup_seconds": time.perf_counter() - started,
    }
    print(
        f"# {gpu}, {meta['dtype']}, attn={args.attn}: {params / 1e9:.2f}B non-embedding params, "
        f"{len(convs)} conversations, {meta['mean_tokens']:.0f} tokens each on average, "
        f"setup {meta['setup_seconds']:.0f}s",
        flush=True,
    )
    report = Report(args.out, meta)
    methods = [m for m in args.methods.split(",") if m]
    budget = args.max_batch_tokens or DEFAULT_BUDGET.get(device.type, DEFAULT_BUDGET["cuda"])
    makers = {  # method -> (build it, items per call: between clock checks, and what one batching call sees)
        "engine": (lambda: engine_method(model, tok, convs, budget, device, args.padding_mask), args.chunk),
        "packed": (lambda: packed_method(model, ids, budget, device, args.padding_mask), args.chunk),
        "pipeline-bs16": (lambda: pipeline_method(model, tok, texts, 16, device), 64),
        "pipeline-bs1": (lambda: pipeline_method(model, tok, texts, 1, device), 32),
    }
    try:
        for k, name in enumerate(methods):
            share = max(0.0, args.time_budget - (time.perf_counter() - started)) / (len(methods) - k)
            try:
                make, step = makers[name]
                result = measure(name, make(), step, lengths, flops, share, sync)
            except (NotImplementedError, ImportError, torch.OutOfMemoryError) as e:
                result = {"method": name, "error": f"{type(e).__name__}: {e}"}
            if "error" not in result:
                result["mfu"] = result["tflops"] / args.peak_tflops
            report.add(result)
            if result.get("note") == "interrupted":
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        print("# cut short: the rows above are what was measured (an 'interrupted' row covers its part)", flush=True)
        report.write(complete=False)
        return 130
    report.write(complete=True)
    print(f"# wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
