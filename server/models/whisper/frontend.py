"""Whisper's log-mel front end, computed per utterance.

Semantics (openai-whisper's `log_mel_spectrogram`, on audio followed by silence):
    S     = |STFT(x, n_fft=400, hop=160, Hann, centred)|^2, last frame dropped
    M     = log10(max(mel_slaney_80 @ S, 1e-10))
    M     = max(M, max(M) - 8);  out = (M + 4) / 4

Whisper computes this on the clip followed by 30 s of zeros. We keep only the
frames whose window touches the clip (the rest are the same "silence" value,
max(out) - 2 floored at -1.5, which `silence_value` gives back), so a short clip
does not carry 3000 frames around; the encoder pads to its window itself.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torchaudio

from server.errors import AudioTooLong, EmptyAudio

SAMPLE_RATE = 16_000
N_FFT = 400
HOP = 160
N_MELS = 80
WINDOW_FRAMES = 3000  # 30 s
WINDOW_SAMPLES = WINDOW_FRAMES * HOP
LOG_FLOOR = -10.0  # log10(1e-10)


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = N_MELS) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised filterbank [n_mels, n_fft/2 + 1] (librosa's default)."""
    fb = torchaudio.functional.melscale_fbanks(
        n_freqs=N_FFT // 2 + 1,
        f_min=0.0,
        f_max=SAMPLE_RATE / 2,
        n_mels=n_mels,
        sample_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return fb.T.contiguous()  # [n_mels, F]


def num_frames(num_samples: int) -> int:
    """Frames whose window overlaps the clip, at most one 30 s window."""
    return min(WINDOW_FRAMES, max(1, math.ceil((num_samples + N_FFT // 2) / HOP)))


def log_mel(waveform: torch.Tensor, n_mels: int = N_MELS) -> torch.Tensor:
    """16 kHz mono waveform [N] (N <= 30 s) -> normalised log-mel [num_frames(N), n_mels].

    Raises EmptyAudio for no samples and AudioTooLong past 30 s (never a silent cut)."""
    if waveform.dim() != 1:
        raise ValueError(f"expected a mono waveform [N], got shape {tuple(waveform.shape)}")
    if waveform.numel() == 0:
        raise EmptyAudio("the audio has no samples")
    if waveform.numel() > WINDOW_SAMPLES:
        raise AudioTooLong(
            f"{waveform.numel() / SAMPLE_RATE:.2f} s of audio; Whisper's window is 30 s "
            "(longer audio must be split before featurize)"
        )
    n = num_frames(waveform.numel())
    # zeros after the clip, as Whisper's 30 s padding puts there; enough that the kept
    # frames' windows and the centred STFT's reflect padding only ever see zeros
    padded = torch.nn.functional.pad(waveform.float(), (0, 2 * N_FFT))
    window = torch.hann_window(N_FFT)
    stft = torch.stft(padded, N_FFT, HOP, window=window, return_complex=True)
    power = stft[:, :-1].abs() ** 2  # [F, frames]
    mel = mel_filters(n_mels) @ power[:, :n]  # [n_mels, n]
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).T.contiguous()  # [n, n_mels]


def silence_value(features: torch.Tensor) -> torch.Tensor:
    """The value Whisper's front end gives a frame of pure zeros, per utterance.

    features [..., T, F] (real frames only) -> [...]: (max - 8 + 4) / 4 in the
    normalised scale, i.e. max - 2, floored at (LOG_FLOOR + 4) / 4.
    """
    peak = features.amax(dim=(-2, -1))
    return torch.clamp(peak - 2.0, min=(LOG_FLOOR + 4.0) / 4.0)
