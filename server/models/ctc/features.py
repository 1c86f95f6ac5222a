"""Audio to model input: per-utterance log-mel features (resampling: server/audio/resample.py).

Features are computed one utterance at a time, on the engine's thread, before
the batch is padded: the STFT's edge padding and the mean/variance
normalisation then never see another utterance's padding, which keeps a
batched result equal to a lone one.
"""

from __future__ import annotations

import torch
import torchaudio

from server.audio.resample import SAMPLE_RATE


class LogMelFrontend(torch.nn.Module):
    """25 ms windows every 10 ms, log-mel, normalised per utterance.

    Power is floored 60 dB below the utterance's peak, then each channel's mean
    is removed and the whole utterance scaled to unit variance. Recording level
    stops mattering (FSDD speakers differ by 20 dB), and bands a recording does
    not have (8 kHz telephone audio above 4 kHz) become flat zeros instead of
    noise stretched to unit variance, which no head should have to learn.
    """

    DYNAMIC_RANGE = 1e-6  # 60 dB

    def __init__(self, n_mels: int = 64) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=400, win_length=400, hop_length=160, n_mels=n_mels
        )

    @torch.no_grad()
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """waveform [N] at 16 kHz -> features [T, n_mels]."""
        power = self.mel(waveform.float())  # [F, T]
        floor = (power.max() * self.DYNAMIC_RANGE).clamp_min(1e-12)
        mel = power.clamp_min(floor).log().transpose(0, 1)  # [T, F]
        mel = mel - mel.mean(dim=0, keepdim=True)
        return mel / mel.std().clamp_min(1e-3)


def pad_features(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of [T_i, F] -> zero-padded [B, T_max, F] and lengths [B]."""
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    return padded, lengths
