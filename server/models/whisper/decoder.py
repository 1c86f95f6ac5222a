"""Whisper's text decoder with a self-attention KV cache and per-utterance cross K/V.

x_0     = E[tokens] + P[offset : offset + n]
x_l     = DecoderLayer_l(x_{l-1}; self K/V cache, cross K/V of the encoder output)
logits  = LN(x_L) E^T                      (output layer tied to the embedding)

Rows whose prompts differ in length (a previous-text prompt) are LEFT-padded: row b's
first `pad[b]` slots are filler that no real token attends to, and its positions
start at 0 after them (P[t - pad[b]]), so a row decodes as it would alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from server.models.whisper.modules import DecoderLayer, LayerNorm, Tensors

KV = tuple[torch.Tensor, torch.Tensor]  # [B, H, T, d_h] each


@dataclass
class DecoderState:
    """What one utterance batch carries between decoding steps."""

    memory: list[KV]  # per layer: cross-attention K, V of the encoder output
    memory_mask: torch.Tensor | None  # additive [B, 1, 1, S], None when nothing is padding
    cache: list[KV] | None  # per layer: self-attention K, V so far
    offset: int  # tokens already in the cache (filler slots included)
    pad: torch.Tensor | None = None  # [B] left filler slots per row; None: none

    def select(self, rows: torch.Tensor) -> DecoderState:
        """Keep only `rows` [B'] (finished utterances leave the batch)."""
        pick = [(k[rows], v[rows]) for k, v in self.memory]
        cache = None if self.cache is None else [(k[rows], v[rows]) for k, v in self.cache]
        mask = None if self.memory_mask is None else self.memory_mask[rows]
        pad = None if self.pad is None else self.pad[rows]
        return DecoderState(pick, mask, cache, self.offset, pad)


class WhisperDecoder(nn.Module):
    def __init__(self, w: Tensors, heads: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.embedding = nn.Parameter(w["decoder/embeddings/weight"].to(dtype), requires_grad=False)
        self.positions = nn.Parameter(
            w["decoder/position_encodings/encodings"].to(dtype), requires_grad=False
        )  # [448, D]
        n = sum(
            1
            for k in w
            if k.startswith("decoder/") and k.endswith("self_attention/linear_0/weight")
        )
        self.layers = nn.ModuleList(DecoderLayer(w, i, heads, dtype) for i in range(n))
        self.norm = LayerNorm(w, "decoder/layer_norm", dtype)
        self.vocab_size = self.embedding.shape[0]
        self.max_positions = self.positions.shape[0]

    def start(self, encoded: torch.Tensor, memory_mask: torch.Tensor | None) -> DecoderState:
        """Encoder output [B, S, D] -> a state with every layer's cross K/V, empty cache."""
        memory = [layer.cross.memory(encoded) for layer in self.layers]
        return DecoderState(memory, memory_mask, None, 0)

    def forward(
        self,
        tokens: torch.Tensor,
        state: DecoderState,
        keep: list | None = None,
    ) -> tuple[torch.Tensor, DecoderState]:
        """tokens [B, n] after state.offset -> logits [B, n, V] and the advanced state.
        `keep`, a list: each layer's cross-attention weights [B, H, n, S] are appended."""
        n = tokens.shape[1]
        offset = state.offset
        if offset + n > self.max_positions:
            raise ValueError(f"decoder context is {self.max_positions} tokens; asked {offset + n}")
        if state.pad is not None:
            x, causal = self._padded_inputs(tokens, offset, state.pad)
        else:
            x = self.embedding[tokens] + self.positions[offset : offset + n]
            causal = None
            if n > 1:  # the prompt: token i sees the cache and tokens <= i
                full = torch.ones(n, offset + n, dtype=torch.bool, device=x.device).tril(offset)
                causal = torch.zeros(full.shape, dtype=x.dtype, device=x.device)
                causal = causal.masked_fill(~full, float("-inf"))[None, None]
        caches: list[KV] = []
        for index, layer in enumerate(self.layers):
            past = None if state.cache is None else state.cache[index]
            x, kv = layer(x, causal, past, state.memory[index], state.memory_mask, keep)
            caches.append(kv)
        logits = self.norm(x) @ self.embedding.T  # [B, n, V]
        return logits, DecoderState(state.memory, state.memory_mask, caches, offset + n, state.pad)

    def _padded_inputs(
        self, tokens: torch.Tensor, offset: int, pad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded rows: embeddings at each row's own positions, and a mask [B, 1, n,
        offset + n] letting each query see the earlier real keys (a filler slot sees only
        itself, so its softmax is defined; nothing real ever sees it)."""
        n, device = tokens.shape[1], tokens.device
        slots = torch.arange(offset, offset + n, device=device)  # [n] query slots
        pad = pad.to(device)
        positions = (slots[None, :] - pad[:, None]).clamp(min=0)  # [B, n]
        x = self.embedding[tokens] + self.positions[positions]
        keys = torch.arange(offset + n, device=device)  # [T_k]
        seen = keys[None, :] <= slots[:, None]  # [n, T_k] causal
        real = keys[None, :] >= pad[:, None]  # [B, T_k]
        allowed = seen[None] & real[:, None, :]  # [B, n, T_k]
        allowed = allowed | (keys[None, None, :] == slots[None, :, None])  # itself
        mask = torch.zeros(allowed.shape, dtype=x.dtype, device=device)
        return x, mask.masked_fill(~allowed, float("-inf"))[:, None]
