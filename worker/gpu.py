"""The worker's CUDA device and its memory, as the Flower stats (`worker.monitoring`) and the
Prometheus metrics (`worker.metrics`) both show it. A module of its own: monitoring starts the
metrics endpoint, so the reading can live in neither without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CudaMemory:
    """A CUDA device and its memory in bytes, as torch reports it (Flower and Prometheus show it)."""

    index: int
    name: str
    total: int
    allocated: int
    reserved: int
    max_allocated: int


def cuda_memory(device: str) -> CudaMemory | None:
    """The worker's CUDA device (its current one for a bare "cuda") and its memory; None on a CPU.

    Raises what the driver raises: each caller decides what it answers then."""
    if not device.startswith("cuda"):
        return None
    import torch

    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    props = torch.cuda.get_device_properties(index)
    return CudaMemory(
        index=index,
        name=props.name,
        total=props.total_memory,
        allocated=torch.cuda.memory_allocated(index),
        reserved=torch.cuda.memory_reserved(index),
        max_allocated=torch.cuda.max_memory_allocated(index),
    )
