"""Whisper's encoder as an HRA backbone: featurize, embed, step through layers, output.

Two windowing policies (`window`):
    "pad": every utterance becomes Whisper's 30 s window (3000 frames -> 1500 states),
           the frames after the clip holding the front end's silence value, exactly
           what Whisper was trained on; no masks.
    "cut": the batch is cut to its longest clip; positions are the first T of the
           table; shorter rows are zero beyond their length before each conv (as a
           lone run's conv padding sees) and masked in attention, so a row's states
           do not depend on its batch.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from server.models.backbone import padding_mask
from server.models.whisper import frontend
from server.models.whisper.modules import EncoderLayer, LayerNorm, Tensors

Window = Literal["pad", "cut"]


def additive_mask(pad: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """pad [B, T] True on padding -> additive key mask [B, 1, 1, T] (0 or -inf)."""
    mask = torch.zeros(pad.shape, dtype=dtype, device=pad.device)
    return mask.masked_fill(pad, float("-inf"))[:, None, None, :]


class WhisperEncoder(nn.Module):
    """Implements the encoder side of server.models.backbone.Backbone for Whisper."""

    frame_seconds = 0.02  # conv2 strides 2 frames of 10 ms
    min_samples = frontend.HOP  # one 10 ms frame

    def __init__(
        self,
        w: Tensors,
        heads: int,
        window: Window = "pad",
        dtype: torch.dtype = torch.float32,
        cut_margin_frames: int = 800,
    ) -> None:
        super().__init__()
        self.window: Window = window
        self.cut_margin_frames = cut_margin_frames
        self.heads = heads
        self.conv1_weight = nn.Parameter(w["encoder/conv1/weight"].to(dtype), requires_grad=False)
        self.conv1_bias = nn.Parameter(w["encoder/conv1/bias"].to(dtype), requires_grad=False)
        self.conv2_weight = nn.Parameter(w["encoder/conv2/weight"].to(dtype), requires_grad=False)
        self.conv2_bias = nn.Parameter(w["encoder/conv2/bias"].to(dtype), requires_grad=False)
        pos = w["encoder/position_encodings/encodings"].to(dtype)
        self.positions = nn.Parameter(pos, requires_grad=False)  # [1500, D]
        self.num_layers = sum(
            1
            for k in w
            if k.endswith("self_attention/linear_0/weight") and k.startswith("encoder/")
        )
        self.layers = nn.ModuleList(
            EncoderLayer(w, i, heads, dtype) for i in range(self.num_layers)
        )
        self.norm = LayerNorm(w, "encoder/layer_norm", dtype)
        self.hidden_dim = pos.shape[1]
        self.vocab_size = self.hidden_dim  # `logits` returns encoder states [B, T, D]
        self.n_mels = self.conv1_weight.shape[1]

    def featurize(self, waveform: torch.Tensor) -> torch.Tensor:
        """16 kHz mono [N] (at most 30 s) -> log-mel [T_in, 80] of the clip's frames."""
        return frontend.log_mel(waveform, self.n_mels)

    def embed(
        self, inputs: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs [B, T_in, 80], lengths [B] -> states [B, T, D], lengths [B]."""
        pad = padding_mask(lengths, inputs.shape[1])  # [B, T_in]
        dtype = self.conv1_weight.dtype
        if self.window == "pad":
            x = self._pad_to_window(inputs, lengths, pad, frontend.WINDOW_FRAMES)
        else:
            x, lengths = self._add_margin(inputs, lengths, pad)
            pad = padding_mask(lengths, x.shape[1])
            x = x.masked_fill(pad[..., None], 0.0)
        x = x.to(dtype).transpose(1, 2)  # [B, 80, T_in]
        x = F.gelu(F.conv1d(x, self.conv1_weight, self.conv1_bias, padding=1))
        if self.window == "cut":
            x = x.masked_fill(pad[:, None, :], 0.0)
        x = F.gelu(F.conv1d(x, self.conv2_weight, self.conv2_bias, stride=2, padding=1))
        # contiguous: every layer (and the HRA controller reading it) keeps this layout;
        # left transposed, each layer and the controller copied it (profiled)
        x = x.transpose(1, 2).contiguous()  # [B, T, D]
        t = x.shape[1]
        assert t <= self.positions.shape[0], "clip longer than Whisper's 30 s window"
        out_lengths = torch.full_like(lengths, t) if self.window == "pad" else (lengths + 1) // 2
        return x + self.positions[:t], out_lengths

    def _pad_to_window(self, inputs, lengths, pad, frames: int) -> torch.Tensor:
        """Rows -> [B, frames, 80], frames past each clip at its silence value."""
        b, t_in, f = inputs.shape
        real = inputs.masked_fill(pad[..., None], float("-inf"))
        silence = torch.clamp(real.amax(dim=(1, 2)) - 2.0, min=(frontend.LOG_FLOOR + 4) / 4)
        out = silence[:, None, None].expand(b, frames, f).clone()
        keep = ~pad
        out[:, :t_in][keep] = inputs[keep]
        return out

    def whisper_window(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Padded clip frames [B, T_in, 80] -> Whisper's 30 s mel windows [B, 3000, 80]
        (what openai-whisper and ctranslate2 take, transposed)."""
        pad = padding_mask(lengths, inputs.shape[1])
        return self._pad_to_window(inputs, lengths, pad, frontend.WINDOW_FRAMES)

    def _add_margin(self, inputs, lengths, pad) -> tuple[torch.Tensor, torch.Tensor]:
        """Cut window: each clip followed by `cut_margin_frames` of its silence value.

        Whisper was trained on speech followed by silence up to 30 s; cut right after
        the speech it loops until max_tokens. Measured on 7 short clips + JFK (greedy,
        transcript equal to the 30 s window's): margin 0 -> 1 of 8, 1 s -> 2, 2 s -> 3,
        4 s -> 4, 8 s -> 7 (the 8th differs only in a capital letter). Hence the 8 s
        default. The margin belongs to the utterance, so its states do not depend on
        the batch."""
        margin = self.cut_margin_frames
        if margin == 0:
            return inputs, lengths
        new_lengths = torch.clamp(lengths + margin, max=frontend.WINDOW_FRAMES)
        frames = int(new_lengths.max())
        return self._pad_to_window(inputs, lengths, pad, frames), new_lengths

    def attention_mask(self, pad_mask: torch.Tensor) -> torch.Tensor | None:
        """None when nothing is padding (the 30 s window), else an additive mask."""
        if self.window == "pad" or not bool(pad_mask.any()):
            return None
        return additive_mask(pad_mask, self.conv1_weight.dtype)

    def layer(self, index: int, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """Encoder layer `index` on x [B, T, D]; pad_mask [B, T] is True on padding."""
        return self.layers[index](x, self.attention_mask(pad_mask))

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """Last layer's states [B, T, D] -> encoder output (the final LayerNorm)."""
        return self.norm(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone's last step. Whisper has no CTC projection: what follows the layers
        is the final LayerNorm, and its output [B, T, D] feeds the text decoder. With
        this, server.models.hra.HRAModel steps Whisper's encoder unchanged."""
        return self.output(x)

    def config_dict(self) -> dict:
        return {"window": self.window, "cut_margin_frames": self.cut_margin_frames}

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor):
        """inputs [B, T_in, 80] -> encoder output [B, T, D], lengths [B] (no heads)."""
        x, lengths = self.embed(inputs, lengths)
        pad = padding_mask(lengths, x.shape[1])
        mask = self.attention_mask(pad)
        for layer in self.layers:
            x = layer(x, mask)
        return self.output(x), lengths
