"""Synthetic speech: deterministic, really spoken, domains really differ."""

from __future__ import annotations

import soundfile as sf
import torch

from server.data import synthetic
from server.data.manifest import read_manifest


def test_synthesis_is_deterministic_per_domain_split_and_index():
    wav1, text1 = synthetic.synthesize("noisy", "test", 5)
    wav2, text2 = synthetic.synthesize("noisy", "test", 5)
    assert text1 == text2
    torch.testing.assert_close(wav1, wav2)
    others = [synthetic.synthesize("noisy", "train", i) for i in range(5)]
    assert len({text for _, text in others}) > 1  # different seeds, different utterances


def test_texts_are_digit_words_and_audio_is_speech_length():
    for domain in synthetic.DOMAINS:
        wav, text = synthetic.synthesize(domain, "train", 1)
        words = text.split()
        assert 1 <= len(words) <= 5
        assert all(w in synthetic.DIGIT_WORDS for w in words)
        seconds = wav.shape[0] / 16_000
        assert 0.2 * len(words) < seconds < 1.5 * len(words) + 1.5, (domain, seconds)
        assert torch.isfinite(wav).all() and wav.abs().max() > 0.01


def test_telephone_domain_has_no_energy_above_4khz():
    wav, _ = synthetic.synthesize("telephone", "train", 2)
    spectrum = torch.fft.rfft(wav).abs() ** 2
    freqs = torch.fft.rfftfreq(wav.shape[0], 1 / 16_000)
    high = spectrum[freqs > 4200].sum() / spectrum.sum()
    assert high < 1e-3
    clean, _ = synthetic.synthesize("base", "train", 2)
    spec_clean = torch.fft.rfft(clean).abs() ** 2
    freqs_clean = torch.fft.rfftfreq(clean.shape[0], 1 / 16_000)
    assert spec_clean[freqs_clean > 4200].sum() / spec_clean.sum() > 10 * high


def test_child_effect_shifts_the_spectrum_up_and_shortens_by_the_same_factor():
    wav = synthetic.speak("three seven", "en-us+f5", 140, 97)
    shifted = synthetic.EFFECTS["child"](wav, torch.Generator().manual_seed(0))
    factor = wav.shape[0] / shifted.shape[0]
    assert 1.24 < factor < 1.36

    def centroid(x):
        power = torch.fft.rfft(x).abs() ** 2
        return float((torch.fft.rfftfreq(x.shape[0], 1 / 16_000) * power).sum() / power.sum())

    assert centroid(shifted) / centroid(wav) > 1.15


def test_generate_domain_writes_wavs_and_a_manifest(tmp_path):
    manifest = synthetic.generate_domain(tmp_path, "whisper", "test", 3, workers=2)
    rows = read_manifest(manifest)
    assert [r.task for r in rows] == ["synth-whisper"] * 3
    for row in rows:
        info = sf.info(row.audio)
        assert info.samplerate == 16_000 and info.frames > 1000
