"""Whisper's log-mel front end against a line-by-line reference on a 30 s padded clip."""

from __future__ import annotations

import pytest
import torch

from server.errors import AudioTooLong, EmptyAudio
from server.models.whisper import frontend


def whisper_reference(audio: torch.Tensor) -> torch.Tensor:
    """openai-whisper's log_mel_spectrogram(audio, padding=N_SAMPLES)[:, :3000], transposed."""
    padded = torch.nn.functional.pad(audio, (0, frontend.WINDOW_SAMPLES))
    stft = torch.stft(padded, 400, 160, window=torch.hann_window(400), return_complex=True)
    mags = stft[..., :-1].abs() ** 2
    mel = frontend.mel_filters() @ mags
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0)[:, :3000].T


def test_clip_frames_equal_whisper_reference_and_the_rest_is_the_silence_value():
    g = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(16_000 * 2 + 37, generator=g)
    ours = frontend.log_mel(audio)
    ref = whisper_reference(audio)
    n = ours.shape[0]
    assert n == frontend.num_frames(audio.numel())
    torch.testing.assert_close(ours, ref[:n], atol=1e-4, rtol=1e-4)
    silence = frontend.silence_value(ours)
    torch.testing.assert_close(ref[n:], silence.expand_as(ref[n:]), atol=1e-5, rtol=0)


def test_filterbank_is_slaney_80_bands_with_slaney_norm():
    fb = frontend.mel_filters()
    assert fb.shape == (80, 201)
    # Slaney normalisation: each triangle's area ~ 2 / bandwidth, so peaks fall with frequency
    assert fb[0].max() > fb[-1].max()
    assert torch.all(fb >= 0)


def test_a_30_s_clip_gives_exactly_one_window_of_frames():
    audio = torch.zeros(frontend.WINDOW_SAMPLES)
    assert frontend.log_mel(audio).shape == (3000, 80)


def test_audio_past_30_s_is_refused_with_a_typed_error_not_silently_cut():
    with pytest.raises(AudioTooLong, match="30 s"):
        frontend.log_mel(torch.zeros(frontend.WINDOW_SAMPLES + 1))


def test_empty_audio_is_refused_with_a_typed_error():
    with pytest.raises(EmptyAudio):
        frontend.log_mel(torch.zeros(0))
