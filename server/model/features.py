"""Audio to model input: resampling and per-utterance log-mel features.

Features are computed one utterance at a time, before batching: the STFT's
edge padding and the mean/variance normalisation then never see another
utterance's padding, which keeps a batched result equal to a lone one.
"""

from __future__ import annotations

import torch
import torchaudio

SAMPLE_RATE = 16_000


def resample(waveform: torch.Tensor, orig_rate: int) -> torch.Tensor:
    """Mono float waveform [N] at `orig_rate` -> [M] at SAMPLE_RATE."""
    if orig_rate == SAMPLE_RATE:
        return waveform
    return torchaudio.functional.resample(waveform, orig_rate, SAMPLE_RATE)


class LogMelFrontend(torch.nn.Module):
    """25 ms windows every 10 ms, log-mel, normalised per utterance and channel.

    The per-utterance normalisation makes recording level irrelevant (FSDD
    speakers differ by 20 dB), which no head should have to learn.
    """

    def __init__(self, n_mels: int = 64) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=400, win_length=400, hop_length=160, n_mels=n_mels
        )

    @torch.no_grad()
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """waveform [N] at 16 kHz -> features [T, n_mels]."""
        mel = self.mel(waveform.float()).clamp_min(1e-10).log().transpose(0, 1)  # [T, F]
        mean = mel.mean(dim=0, keepdim=True)
        std = mel.std(dim=0, keepdim=True).clamp_min(1e-3) if mel.shape[0] > 1 else 1.0
        return (mel - mean) / std


def pad_features(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of [T_i, F] -> zero-padded [B, T_max, F] and lengths [B]."""
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    return padded, lengths
