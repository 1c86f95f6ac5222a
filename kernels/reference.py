"""Plain-torch reference of the fused multi-task head ops; runs on any device.

These define the semantics the Triton kernels must match, and are what the
model uses wherever Triton is unavailable (CPU, training).
"""

from __future__ import annotations

import torch


def gather_matmul(x: torch.Tensor, pool: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Per-utterance matrix product with weights picked from a slot pool.

    Semantics:
        for b in range(B):
            out[b] = x[b] @ pool[slots[b]].T   if slots[b] >= 0   else 0
    x      # [B, T, K]
    pool   # [S, N, K]
    slots  # [B] int64, -1 means "no weights for this utterance"
    returns  [B, T, N]
    """
    assert x.shape[0] == slots.shape[0] and x.shape[-1] == pool.shape[-1]
    # Gathered from the transposed pool: [B, K, N] in a layout BLAS multiplies faster
    # than bmm(x, W^T) on CPU (at the wav2vec2/Whisper sizes; docs/benchmarks.md).
    weights = pool.transpose(1, 2)[slots.clamp(min=0)]  # [B, K, N]
    out = torch.bmm(x, weights)
    if slots.device.type == "cpu" and not bool((slots < 0).any()):
        return out  # every utterance has a head: no mask pass over [B, T, N]
    return out * (slots >= 0).to(out.dtype)[:, None, None]
