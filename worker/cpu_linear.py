"""Linear layers with oneDNN-packed weights, for fp32 inference on a CPU.

Matrix products are three quarters of a reward model's CPU time. torch's default CPU path for
`nn.Linear` is an MKL sgemm that repacks the weight on every call and, on AMD processors, does not
take MKL's AVX-512 code path; oneDNN with the weight packed once at load is 10-20% faster on the
same shapes (bench/README.md). Same arithmetic, different summation order: scores move by ~1e-6,
and the fidelity tests hold the engine to the card's pipeline at 1e-4 with these layers in place.

The oneDNN ops are the ones torch's own compiler emits for CPU linears (`torch.ops.mkldnn`). Where
they are missing, or a packed layer does not reproduce `F.linear` on a probe input, the model keeps
its plain layers.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def available() -> bool:
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_linear_weight")
        and hasattr(ops, "_linear_pointwise")
    )


class PackedLinear(nn.Module):
    """`nn.Linear` whose weight lives only in oneDNN's blocked layout (no second copy kept)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        weight = linear.weight.detach()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, None)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _agrees(linear: nn.Linear, packed: PackedLinear) -> bool:
    probe = torch.randn(3, 5, linear.in_features, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return torch.allclose(packed(probe), linear(probe), rtol=1e-4, atol=1e-5)


def pack_linears(module: nn.Module) -> int:
    """Swap every fp32 CPU `nn.Linear` under `module` for a `PackedLinear`; return how many."""
    if not available():
        return 0
    swapped = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear or child.weight.dtype != torch.float32 or child.weight.is_cuda:
                continue
            try:
                packed = PackedLinear(child)
            except RuntimeError as exc:  # an op torch has but this CPU or shape cannot run
                log.info("keeping plain linear layers: %s", exc)
                return swapped
            if not _agrees(child, packed):
                log.warning("oneDNN linear disagrees with F.linear on %s; keeping plain layers", name)
                return swapped
            setattr(parent, name, packed)
            swapped += 1
    return swapped
