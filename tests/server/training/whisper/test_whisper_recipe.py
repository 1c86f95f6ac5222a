"""`hra build-whisper --quick`: a model dir that loads, with its fingerprint, window and heads."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from adapters_store.disk_store import DiskStore
from server.cli import main
from server.config import REPO_ROOT, Settings
from server.models.registry import load_recognizer

WHISPER_DIR = REPO_ROOT / "models" / "whisper-tiny-en"


@pytest.mark.slow
def test_build_whisper_quick_writes_a_servable_model_dir_bound_to_its_new_controller(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    for name in ("manifest.json", "controller.safetensors"):
        shutil.copy(WHISPER_DIR / name, model_dir / name)
    old = json.loads((model_dir / "manifest.json").read_text())
    argv = ["--model-dir", str(model_dir), "--work-dir", str(tmp_path / "work")]
    assert main([*argv, "build-whisper", "--quick"]) == 0

    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["window"] == "cut" and manifest["cut_margin_s"] == 8.0
    assert manifest["files"] == old["files"]  # the weights pin is untouched
    settings = Settings(model_dir=model_dir, work_dir=REPO_ROOT / "build")
    recognizer, fp = load_recognizer(settings, torch.device("cpu"))
    assert fp == manifest["fingerprint"]  # checked at load, and changed by training
    assert recognizer.whisper.encoder.window == "cut"  # serves in the window it trained in
    for folder, head_type in (("heads", "linear"), ("baselines/ffn", "ffn")):
        store = DiskStore(model_dir / folder)
        assert sorted(store.task_ids()) == ["fsdd-theo", "synth-telephone"]
        for task in store.task_ids():
            head = store.get(task)
            assert head.meta.fingerprint == fp and head.meta.head_type == head_type
            assert store.is_public(task)
    summary = json.loads((model_dir / "build.json").read_text())
    assert [s["steps"] for s in summary["stages"]] == [2, 2]
