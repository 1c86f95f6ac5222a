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
    weights = pool[slots.clamp(min=0)]  # [B, N, K]
    out = torch.bmm(x, weights.transpose(1, 2))
    return out * (slots >= 0).to(out.dtype)[:, None, None]
