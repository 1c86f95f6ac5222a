"""Hostile training data for Whisper heads: refused before training, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch

from server.cli import main
from server.config import REPO_ROOT
from server.data.manifest import Utterance
from server.models.whisper.model import load_whisper
from server.training.whisper.data import WhisperSet
from server.training.whisper.text import normalize

WHISPER_DIR = REPO_ROOT / "models" / "whisper-tiny-en"


@pytest.fixture(scope="module")
def whisper():
    return load_whisper(window="cut")


def _wav(path: Path, seconds: float) -> str:
    g = torch.Generator().manual_seed(0)
    sf.write(str(path), (torch.randn(int(16_000 * seconds), generator=g) * 0.05).numpy(), 16_000)
    return str(path)


def test_a_transcript_past_the_decoders_context_is_refused_naming_the_file(whisper, tmp_path):
    rows = [Utterance(_wav(tmp_path / "a.wav", 0.5), "word " * 500, "t")]
    with pytest.raises(ValueError, match=r"a.wav: transcript of 50\d tokens \(1-200\)"):
        WhisperSet.build(rows, whisper)


def test_a_megabyte_transcript_is_refused_before_it_is_tokenized(whisper, tmp_path):
    rows = [Utterance(_wav(tmp_path / "a.wav", 0.5), "x" * 1_000_000, "t")]
    with pytest.raises(ValueError, match="a.wav: transcript of 1000000 characters"):
        WhisperSet.build(rows, whisper)


def test_an_empty_transcript_is_refused(whisper, tmp_path):
    rows = [Utterance(_wav(tmp_path / "a.wav", 0.5), "   ", "t")]
    with pytest.raises(ValueError, match="transcript of 0 tokens"):
        WhisperSet.build(rows, whisper)


def test_audio_longer_than_the_30_s_window_is_refused_not_cut(whisper, tmp_path):
    rows = [Utterance(_wav(tmp_path / "long.wav", 31.0), "hello", "t")]
    with pytest.raises(Exception, match="30 s|too long|longer"):
        WhisperSet.build(rows, whisper)


def test_train_head_on_whisper_refuses_a_vocabulary_and_writes_nothing(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    for name in ("manifest.json", "controller.safetensors"):
        shutil.copy(WHISPER_DIR / name, model_dir / name)
    manifest = tmp_path / "train.jsonl"
    manifest.write_text(json.dumps({"audio": _wav(tmp_path / "a.wav", 0.5), "text": "hi"}) + "\n")
    store = tmp_path / "store"
    argv = ["--model-dir", str(model_dir), "--work-dir", str(REPO_ROOT / "build"), "train-head"]
    argv += ["--task", "t", "--manifest", str(manifest), "--store", str(store)]
    with pytest.raises(SystemExit, match="no vocabulary"):
        main([*argv, "--vocabulary", "hi there"])
    assert not (store / "t").exists()


def test_wer_normal_form_equates_digits_and_number_words_and_drops_punctuation():
    assert normalize("Zero.") == normalize("0") == "zero"
    assert normalize("I saw 42 cats, didn't I?") == "i saw forty two cats didn't i"
    assert normalize("007") == "zero zero seven"
    assert normalize("...!") == ""
