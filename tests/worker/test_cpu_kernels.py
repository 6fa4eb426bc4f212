"""The CPU fast paths: oneDNN-packed linear layers and several micro-batches in flight at once."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from worker import cpu_linear
from worker.engine import Scored, Scorer, lanes_for

needs_onednn = pytest.mark.skipif(not cpu_linear.available(), reason="this torch build has no oneDNN linear ops")


@needs_onednn
@pytest.mark.parametrize("bias", [False, True])
def test_packed_linear_computes_the_same_product(bias):
    torch.manual_seed(0)
    linear = nn.Linear(64, 48, bias=bias)
    packed = cpu_linear.PackedLinear(linear)
    for shape in [(1, 64), (7, 64), (3, 11, 64)]:
        x = torch.randn(*shape)
        with torch.inference_mode():
            assert torch.allclose(packed(x), linear(x), rtol=1e-5, atol=1e-5)
            assert packed(x).shape == linear(x).shape


@needs_onednn
def test_pack_linears_swaps_fp32_layers_only():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 4)), nn.Linear(4, 2).half())
    assert cpu_linear.pack_linears(model) == 2
    assert isinstance(model[0], cpu_linear.PackedLinear) and isinstance(model[2][0], cpu_linear.PackedLinear)
    assert type(model[3]) is nn.Linear  # fp16 stays as it was


def test_lanes_follow_the_cpu_threads():
    threads = torch.get_num_threads()
    assert lanes_for(torch.device("cpu"), None) == (threads, 1)
    assert lanes_for(torch.device("cpu"), 1) == (1, threads)
    assert lanes_for(torch.device("cuda"), None) == (1, threads)  # a GPU runs one batch at a time


def test_lanes_return_results_in_input_order(tiny_model_dir):
    convs = [
        [{"role": "user", "content": "q " * (1 + i % 13)}, {"role": "assistant", "content": f"a{i}"}]
        for i in range(60)
    ]
    one = Scorer.load(str(tiny_model_dir), max_batch_tokens=64, lanes=1, packed=False)
    four = Scorer.load(str(tiny_model_dir), max_batch_tokens=64, lanes=4, packed=False)
    a, b = one.score(convs), four.score(convs)
    assert four.stats.batches > 8  # enough batches for the lanes to overlap
    assert all(isinstance(r, Scored) for r in a + b)
    # Same batches, computed in other threads: each conversation keeps its own score.
    assert [r.score for r in b] == pytest.approx([r.score for r in a], abs=1e-5)  # type: ignore[union-attr]
    assert [r.num_tokens for r in b] == [r.num_tokens for r in a]  # type: ignore[union-attr]
    assert four.stats.items == 60 and four.stats.tokens == one.stats.tokens


def test_a_failing_batch_fails_the_call(tiny_model_dir, monkeypatch):
    engine = Scorer.load(str(tiny_model_dir), max_batch_tokens=64, lanes=2)

    def forward(batch):
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "_forward", forward)
    conv = [{"role": "user", "content": "q " * 20}, {"role": "assistant", "content": "a"}]
    with pytest.raises(RuntimeError, match="boom"):
        # Distinct conversations: equal ones are scored once (one batch), not ten times.
        engine.score([conv[:1] + [{"role": "assistant", "content": "a" * (i + 1)}] for i in range(10)])
