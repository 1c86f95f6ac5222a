"""Fused multi-task head ops: the torch reference everywhere, Triton on CUDA.

Which one a device runs is a `HeadKernel` chosen once at start-up by
`select_kernel(device)`, which says why; the engine holds it and hands it to
every fused batch it builds (nothing module-global, so two engines on two
devices never disagree). Training and evaluation use the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kernels.reference import gather_matmul

GatherMatmul = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class HeadKernel:
    """The gather-matmul one device runs (semantics: kernels.reference.gather_matmul)."""

    name: str  # "reference" | "triton"
    reason: str  # why this one, for the start-up log
    op: GatherMatmul

    def __call__(self, x: torch.Tensor, pool: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        return self.op(x, pool, slots)


REFERENCE = HeadKernel("reference", "plain torch, any device", gather_matmul)


def select_kernel(device: torch.device) -> HeadKernel:
    """Triton on a CUDA device when it imports, else the reference; with the reason."""
    if device.type != "cuda":
        return HeadKernel(
            "reference", f"device is {device.type}; Triton is for CUDA", gather_matmul
        )
    try:
        from kernels.triton_head import gather_matmul_triton
    except Exception as exc:  # import errors, missing driver, ...
        return HeadKernel("reference", f"triton unavailable: {exc}", gather_matmul)

    def dispatch(x, pool, slots):
        # Training needs autograd, which only the reference provides.
        if x.is_cuda and not torch.is_grad_enabled():
            return gather_matmul_triton(x, pool, slots)
        return gather_matmul(x, pool, slots)

    return HeadKernel("triton", "CUDA device and triton importable", dispatch)


__all__ = ["REFERENCE", "GatherMatmul", "HeadKernel", "gather_matmul", "select_kernel"]
