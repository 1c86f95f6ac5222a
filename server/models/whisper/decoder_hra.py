"""HRA over Whisper's DECODER depth: a second controller and per-row decoder heads.

Per token position, after decoder layer l (the encoder's equations, over decoder depth):
    h_l = ReLU(W_c y_l + u * h_{l-1} + b_c)      h_0 = 0 at every forward call
    x_l = y_l + V_task h_l                        V_task [D_dec, d_c], one per row
The recurrence runs over depth only, never over time, so it composes with the KV cache:
each decoding step adapts just its new token. Measured against encoder-only heads by
load_tests/exp_whisper_decoder_heads.py (README "HRA on Whisper's decoder"); not served.
"""

from __future__ import annotations

import torch
from torch import nn

from server.models.adapters import Controller


class DecoderHRA(nn.Module):
    """The shared decoder controller; `bind(V)` gives the per-call hook for the decoder."""

    def __init__(self, hidden_dim: int, controller_dim: int) -> None:
        super().__init__()
        self.controller = Controller(hidden_dim, controller_dim)

    def bind(self, heads: torch.Tensor) -> DecoderHook:
        """heads [B, D, d_c]: row b's decoder head (zeros: the row is unadapted)."""
        return DecoderHook(self.controller, heads)


class DecoderHook:
    """Called by WhisperDecoder.forward after each layer: x [B, n, D] -> adapted x."""

    def __init__(self, controller: Controller, heads: torch.Tensor) -> None:
        self.controller, self.heads = controller, heads  # heads [B, D, d_c]
        self.h: torch.Tensor | None = None

    def __call__(self, index: int, y: torch.Tensor) -> torch.Tensor:
        if index == 0:
            self.h = y.new_zeros(*y.shape[:2], self.controller.dim)
        self.h = self.controller.step(y, self.h)
        return y + torch.bmm(self.h, self.heads.transpose(1, 2))

    def select(self, rows: torch.Tensor) -> DecoderHook:
        """Only `rows` (finished utterances leave the batch)."""
        return DecoderHook(self.controller, self.heads[rows])
