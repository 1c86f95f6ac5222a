"""Fused multi-task head ops: the torch reference everywhere, Triton on CUDA.

Which one runs is decided once at start-up by `enable_triton(device)`, which
says why; the hot path only follows that decision.
"""

from __future__ import annotations

import torch

from kernels.reference import gather_matmul as reference_gather_matmul

_impl = reference_gather_matmul


def gather_matmul(x: torch.Tensor, pool: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """See kernels.reference.gather_matmul for the semantics."""
    return _impl(x, pool, slots)


def enable_triton(device: torch.device) -> tuple[bool, str]:
    """Use the Triton kernel for inference on `device` if it can; returns (on, reason)."""
    global _impl
    if device.type != "cuda":
        return False, f"device is {device.type}, the Triton kernel is for CUDA"
    try:
        from kernels.triton_head import gather_matmul_triton
    except Exception as exc:  # import errors, missing driver, ...
        return False, f"triton unavailable: {exc}"

    def dispatch(x, pool, slots):
        # Training needs autograd, which only the reference provides.
        if x.is_cuda and not torch.is_grad_enabled():
            return gather_matmul_triton(x, pool, slots)
        return reference_gather_matmul(x, pool, slots)

    _impl = dispatch
    return True, "CUDA device and triton importable"
