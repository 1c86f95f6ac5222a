"""Our embedded backbone: log-mel -> conv subsampling -> Conformer layers -> CTC.

The layers are torchaudio's ConformerLayer; we step through their parts here
so padding frames are zeroed before every time convolution. Without that, the
depthwise convolution smears padding into the last real frames and an
utterance's output would depend on what it was batched with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torchaudio.models import Conformer

from server.models.backbone import padding_mask
from server.models.ctc.features import LogMelFrontend


@dataclass(frozen=True)
class ConformerConfig:
    n_mels: int = 64
    hidden_dim: int = 144
    num_layers: int = 6
    num_heads: int = 4
    ffn_dim: int = 576
    conv_kernel: int = 15
    subsample_channels: int = 32
    vocab_size: int = 29
    dropout: float = 0.1


class ConvSubsampling(nn.Module):
    """Two stride-2 3x3 convolutions: 100 frames/s in, 25 frames/s out.

    Runs a batch in chunks of about CHUNK_FRAMES input frames: its 32-channel
    maps are memory-bound, and a whole batch's no longer fits in cache. Each
    utterance is computed alone either way, so the result is the same, and large
    batches subsample faster on CPU (docs/benchmarks.md, Profile).
    """

    CHUNK_FRAMES = 2048

    def __init__(self, n_mels: int, channels: int, out_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        freq = (((n_mels + 1) // 2) + 1) // 2
        self.proj = nn.Linear(channels * freq, out_dim)

    @staticmethod
    def out_lengths(lengths: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            lengths = (lengths + 1) // 2
        return lengths

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        per_chunk = max(1, self.CHUNK_FRAMES // max(1, feats.shape[1]))
        if feats.shape[0] <= per_chunk:
            return self._subsample(feats, lengths)
        parts = [
            self._subsample(feats[i : i + per_chunk], lengths[i : i + per_chunk])
            for i in range(0, feats.shape[0], per_chunk)
        ]
        return torch.cat([x for x, _ in parts]), torch.cat([n for _, n in parts])

    def _subsample(self, feats: torch.Tensor, lengths: torch.Tensor):
        x = feats.unsqueeze(1)  # [B, 1, T, F]
        x = x * ~padding_mask(lengths, x.shape[2])[:, None, :, None]
        for conv in (self.conv1, self.conv2):
            x = torch.relu(conv(x))
            lengths = (lengths + 1) // 2
            x = x * ~padding_mask(lengths, x.shape[2])[:, None, :, None]
        b, c, t, f = x.shape
        x = self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))  # [B, T, D]
        return x, lengths


class ConformerCTC(nn.Module):
    """Implements server.models.backbone.Backbone."""

    frame_seconds = 0.04  # 10 ms features, subsampled 4x
    min_samples = 201  # the STFT's centre padding (n_fft / 2 = 200) needs more samples than that

    def __init__(self, config: ConformerConfig = ConformerConfig()) -> None:
        super().__init__()
        self.config = config
        self.hidden_dim = config.hidden_dim
        self.num_layers = config.num_layers
        self.vocab_size = config.vocab_size
        self.frontend = LogMelFrontend(config.n_mels)
        self.subsample = ConvSubsampling(
            config.n_mels, config.subsample_channels, config.hidden_dim
        )
        self.input_dropout = nn.Dropout(config.dropout)
        self.layers = Conformer(
            input_dim=config.hidden_dim,
            num_heads=config.num_heads,
            ffn_dim=config.ffn_dim,
            num_layers=config.num_layers,
            depthwise_conv_kernel_size=config.conv_kernel,
            dropout=config.dropout,
        ).conformer_layers
        self.ctc = nn.Linear(config.hidden_dim, config.vocab_size)

    def config_dict(self) -> dict:
        return {"type": "conformer_ctc", **asdict(self.config)}

    def featurize(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.frontend(waveform)

    def embed(self, inputs: torch.Tensor, lengths: torch.Tensor):
        x, lengths = self.subsample(inputs, lengths)
        return self.input_dropout(x), lengths

    def layer(self, index: int, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        layer = self.layers[index]
        x = x + 0.5 * layer.ffn1(x)  # position-wise modules run batch-first
        a = layer.self_attn_layer_norm(x).transpose(0, 1)  # torchaudio attention: [T, B, D]
        a, _ = layer.self_attn(a, a, a, key_padding_mask=pad_mask, need_weights=False)
        x = x + layer.self_attn_dropout(a).transpose(0, 1)
        x = x + self._convolution(layer.conv_module, x, pad_mask)
        x = x + 0.5 * layer.ffn2(x)
        return layer.final_layer_norm(x)

    @staticmethod
    def _convolution(module: nn.Module, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        pointwise_in, glu, depthwise, norm, act, pointwise_out, dropout = module.sequential
        y = module.layer_norm(x).transpose(1, 2)  # [B, D, T]
        y = glu(pointwise_in(y)) * ~pad_mask[:, None, :]
        y = dropout(pointwise_out(act(norm(depthwise_conv(depthwise, y)))))
        return y.transpose(1, 2)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.ctc(x)


def depthwise_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """conv(x) for a depthwise, "same"-padded Conv1d, as K shifted multiply-adds on CPU.

    oneDNN's depthwise path is slower than this at our sizes (B=16-32, 144 channels,
    K=15: docs/benchmarks.md, Profile). GPUs keep conv1d.
    """
    if x.is_cuda:
        return conv(x)
    length, k, pad = x.shape[-1], conv.kernel_size[0], conv.padding[0]
    weight = conv.weight[:, 0, :]  # [C, K]
    padded = torch.nn.functional.pad(x, (pad, pad))
    y = padded[..., :length] * weight[:, 0, None]
    for i in range(1, k):
        y = y.addcmul(padded[..., i : i + length], weight[:, i, None])
    return y if conv.bias is None else y + conv.bias[:, None]
