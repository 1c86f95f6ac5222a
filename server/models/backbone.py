"""What an encoder must expose to carry HRA adapters.

HRA wraps every layer of a frozen encoder, so the adapter model needs the
encoder split into: per-utterance input features, an embedding step, the
stack of layers it can step through one at a time, and the CTC projection.
Any encoder with that shape (our Conformer-CTC, torchaudio's wav2vec2/HuBERT)
can carry the same controller and heads.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Backbone(Protocol):
    hidden_dim: int  # D
    num_layers: int  # L
    vocab_size: int  # V (CTC symbols, blank included)
    frame_seconds: float  # audio seconds per output frame, for timestamps
    min_samples: int  # shortest 16 kHz waveform featurize + embed can process

    def featurize(self, waveform: torch.Tensor) -> torch.Tensor:
        """One 16 kHz mono waveform [N] -> input frames [T_in, F]."""

    def embed(
        self, inputs: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded inputs [B, T_in, F] -> hidden [B, T, D] and lengths [B]."""

    def layer(self, index: int, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Apply encoder layer `index` to x [B, T, D]; pad_mask [B, T] is True on padding."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final hidden [B, T, D] -> CTC logits [B, T, V]."""

    def config_dict(self) -> dict:
        """Constructor arguments, so a checkpoint can rebuild the module."""


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """lengths [B] -> mask [B, max_len], True where a frame is padding."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]
