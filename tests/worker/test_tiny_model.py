"""The tiny model has the real model's layout and conventions and loads like a hub model."""

from __future__ import annotations

import json

from transformers import AutoModelForSequenceClassification, AutoTokenizer, LlamaForSequenceClassification

from worker.tiny_model import EOT, PAD, make_tiny_model


def test_layout_and_conventions(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    tok_cfg = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.bos_token == "<|begin_of_text|>" and tok.pad_token == PAD and tok.eos_token == EOT
    assert tok.truncation_side == "left" and tok.model_max_length == 4096
    ids = tok("hello")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    text = tok.apply_chat_template(
        [{"role": "user", "content": " hi "}, {"role": "assistant", "content": "yo"}], tokenize=False
    )
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nyo<|eot_id|>"
    )
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    assert isinstance(model, LlamaForSequenceClassification)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_seeded_and_reproducible(tmp_path, tiny_model_dir):
    again = make_tiny_model(tmp_path / "again", "tiny", seed=0)
    other = make_tiny_model(tmp_path / "other", "tiny", seed=1)
    same = (again / "model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()
    assert same
    assert (other / "model.safetensors").read_bytes() != (again / "model.safetensors").read_bytes()
