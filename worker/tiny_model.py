"""Build a tiny, structurally faithful stand-in for NCSOFT/Llama-3-OffsetBias-RM-8B.

Same file layout, same token conventions (Llama-3 special tokens and chat template, BOS
`<|begin_of_text|>` added by the tokenizer, pad `<|reserved_special_token_5|>`, truncation on the
left, model_max_length 4096) and the same class (LlamaForSequenceClassification, one label), so it
loads through exactly the `from_pretrained` path a hub id takes. Weights are random but seeded:
scores are reproducible, meaningless as rewards.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

Size = Literal["tiny", "small"]

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
EOT = "<|eot_id|>"
PAD = "<|reserved_special_token_5|>"
MAX_LENGTH = 4096

# Llama-3's pre-tokenizer split: words with a leading non-letter, digits in threes, punctuation runs.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The Llama-3-Instruct chat template, which the OffsetBias reward model ships.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def special_tokens() -> list[str]:
    """Llama-3's 256 special tokens, in its order (ids 128000.. in the real vocabulary)."""
    named = {0: BOS, 1: EOS, 6: "<|start_header_id|>", 7: "<|end_header_id|>", 9: EOT}
    out, reserved = [], 0
    for i in range(256):
        if i in named:
            out.append(named[i])
        else:
            out.append(f"<|reserved_special_token_{reserved}|>")
            reserved += 1
    return out


@dataclass(frozen=True)
class Shape:
    vocab: int  # BPE merges target; the corpus may stop earlier
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int


SHAPES: dict[Size, Shape] = {
    "tiny": Shape(vocab=1000, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=192),
    "small": Shape(vocab=4000, hidden=512, layers=8, heads=8, kv_heads=4, intermediate=1536),
}


def corpus_lines() -> list[str]:
    text = resources.files("worker").joinpath("data/tokenizer_corpus.txt").read_text(encoding="utf-8")
    return text.splitlines(keepends=True)


def build_tokenizer(vocab_size: int):  # -> PreTrainedTokenizerFast
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer)
    # Specials go after the learned vocabulary, as in Llama-3 (ids 128000+).
    tok.add_special_tokens(special_tokens())
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD,
        model_max_length=MAX_LENGTH,
        truncation_side="left",
        clean_up_tokenization_spaces=True,
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    return fast


def make_tiny_model(out_dir: str | Path, size: Size = "tiny", seed: int = 0) -> Path:
    """Write tokenizer + seeded random LlamaForSequenceClassification (safetensors) to out_dir."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    shape = SHAPES[size]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(shape.vocab)
    # num_labels and rope_theta reach PretrainedConfig as **kwargs at run time; LlamaConfig's
    # signature as the checker sees it lists only Llama's own arguments.
    config = LlamaConfig(  # type: ignore[call-arg]
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        num_labels=1,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(EOT),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():
        # Default init (std 0.02) gives rewards near 1e-3; a unit-scale head makes score differences
        # large enough that a 1e-4 tolerance in tests actually discriminates.
        model.score.weight.normal_(0.0, shape.hidden**-0.5 * 4)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _as_llama3_tokenizer_config(out)
    return out


def _as_llama3_tokenizer_config(out: Path) -> None:
    """Write tokenizer_config.json as the real model's is: class PreTrainedTokenizerFast, template inline.

    transformers 5 would record its own backend class, which transformers 4 cannot load.
    """
    import json

    path = out / "tokenizer_config.json"
    cfg = json.loads(path.read_text())
    cfg.pop("backend", None)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["chat_template"] = LLAMA3_CHAT_TEMPLATE
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    (out / "chat_template.jinja").unlink(missing_ok=True)


def count_parameters(model_dir: str | Path) -> int:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    return sum(p.numel() for p in model.parameters())
