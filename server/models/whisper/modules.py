"""Whisper's transformer blocks, gpt-fast style: the math visible, weights from model.bin.

Pre-LN blocks throughout (CTranslate2's tensor names in brackets):
    self-attention   x = x + W_o softmax(q k^T / sqrt(d_h) + mask) v     [self_attention]
    cross-attention  x = x + W_o softmax(q K_enc^T / sqrt(d_h) + mask) V_enc  [attention]
    MLP              x = x + W_2 GELU(W_1 LN(x))                        [ffn]
q, k, v are one fused projection (linear_0) in self-attention; cross-attention
has a query projection (linear_0) and a fused key/value projection (linear_1).
Masks are additive (-inf where a key must not be seen) and broadcast per head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Tensors = dict[str, torch.Tensor]


def _param(t: torch.Tensor, dtype: torch.dtype) -> nn.Parameter:
    return nn.Parameter(t.to(dtype).clone(), requires_grad=False)


class LayerNorm(nn.Module):
    def __init__(self, w: Tensors, prefix: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = _param(w[f"{prefix}/gamma"], dtype)
        self.bias = _param(w[f"{prefix}/beta"], dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, eps=1e-5)


class Linear(nn.Module):
    def __init__(self, w: Tensors, prefix: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = _param(w[f"{prefix}/weight"], dtype)  # [out, in]
        self.bias = _param(w[f"{prefix}/bias"], dtype) if f"{prefix}/bias" in w else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, T, D] -> [B, H, T, D/H]."""
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, T, d_h] -> [B, T, H * d_h]."""
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None):
    """softmax(q k^T / sqrt(d_h) + mask) v; q [B,H,Tq,d], k/v [B,H,Tk,d], mask [B,1,Tq|1,Tk]."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class SelfAttention(nn.Module):
    def __init__(self, w: Tensors, prefix: str, heads: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.heads = heads
        self.norm = LayerNorm(w, f"{prefix}/layer_norm", dtype)
        self.qkv = Linear(w, f"{prefix}/linear_0", dtype)  # [3D, D]
        self.out = Linear(w, f"{prefix}/linear_1", dtype)

    def forward(
        self,
        x: torch.Tensor,  # [B, T, D]
        mask: torch.Tensor | None,  # additive [B, 1, T|1, T_k]
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,  # past k, v [B, H, T_past, d_h]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        q, k, v = (split_heads(t, self.heads) for t in (q, k, v))
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        return self.out(merge_heads(attend(q, k, v, mask))), (k, v)


class CrossAttention(nn.Module):
    def __init__(self, w: Tensors, prefix: str, heads: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.heads = heads
        self.norm = LayerNorm(w, f"{prefix}/layer_norm", dtype)
        self.query = Linear(w, f"{prefix}/linear_0", dtype)
        self.kv = Linear(w, f"{prefix}/linear_1", dtype)  # [2D, D]
        self.out = Linear(w, f"{prefix}/linear_2", dtype)

    def memory(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output [B, S, D] -> K, V [B, H, S, d_h], computed once per utterance."""
        k, v = self.kv(encoded).chunk(2, dim=-1)
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def forward(
        self, x: torch.Tensor, memory, mask: torch.Tensor | None, keep: list | None = None
    ) -> torch.Tensor:
        """`keep`, a list: the attention weights [B, H, Tq, S] are appended to it (the
        explicit softmax; word alignment reads them), else the fused kernel runs."""
        q = split_heads(self.query(self.norm(x)), self.heads)
        if keep is None:
            return self.out(merge_heads(attend(q, memory[0], memory[1], mask)))
        scores = (q @ memory[0].transpose(-1, -2)) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores + mask
        weights = torch.softmax(scores.float(), dim=-1)
        keep.append(weights)
        return self.out(merge_heads(weights.to(q.dtype) @ memory[1]))


class MLP(nn.Module):
    def __init__(self, w: Tensors, prefix: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.norm = LayerNorm(w, f"{prefix}/layer_norm", dtype)
        self.fc1 = Linear(w, f"{prefix}/linear_0", dtype)
        self.fc2 = Linear(w, f"{prefix}/linear_1", dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class EncoderLayer(nn.Module):
    def __init__(self, w: Tensors, index: int, heads: int, dtype: torch.dtype) -> None:
        super().__init__()
        prefix = f"encoder/layer_{index}"
        self.attn = SelfAttention(w, f"{prefix}/self_attention", heads, dtype)
        self.mlp = MLP(w, f"{prefix}/ffn", dtype)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(x, mask)[0]
        return x + self.mlp(x)


class DecoderLayer(nn.Module):
    def __init__(self, w: Tensors, index: int, heads: int, dtype: torch.dtype) -> None:
        super().__init__()
        prefix = f"decoder/layer_{index}"
        self.attn = SelfAttention(w, f"{prefix}/self_attention", heads, dtype)
        self.cross = CrossAttention(w, f"{prefix}/attention", heads, dtype)
        self.mlp = MLP(w, f"{prefix}/ffn", dtype)

    def forward(self, x, self_mask, cache, memory, memory_mask, keep: list | None = None):
        a, cache = self.attn(x, self_mask, cache)
        x = x + a
        x = x + self.cross(x, memory, memory_mask, keep)
        return x + self.mlp(x), cache
