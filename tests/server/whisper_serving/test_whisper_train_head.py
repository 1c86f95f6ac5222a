"""`hra train-head` on the Whisper model directory writes a head that serves over HTTP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from adapters_store.disk_store import DiskStore
from server.cli import main
from server.config import REPO_ROOT
from tests.helpers import running_client
from tests.server.models.whisper.helpers import FSDD, FSDD_ALT
from tests.server.whisper_serving.helpers import WHISPER_DIR, whisper_settings


def whisper_copy(tmp_path: Path) -> Path:
    """The committed model dir (manifest + trained controller), without its shipped heads."""
    target = tmp_path / "whisper-model"
    target.mkdir()
    for name in ("manifest.json", "controller.safetensors"):
        shutil.copy(WHISPER_DIR / name, target / name)
    return target


def fsdd_manifest(tmp_path: Path, names: list[str]) -> Path:
    folder = FSDD if FSDD.is_dir() else FSDD_ALT
    if not folder.is_dir():
        pytest.skip("FSDD recordings not present")
    words = "zero one two three four five six seven eight nine".split()
    path = tmp_path / "train.jsonl"
    path.write_text(
        "".join(
            json.dumps({"audio": str(folder / n), "text": words[int(n[0])]}) + "\n" for n in names
        )
    )
    return path


@pytest.mark.slow
async def test_train_head_on_whisper_writes_a_bound_head_that_serves_over_http(tmp_path):
    model_dir = whisper_copy(tmp_path)
    manifest = fsdd_manifest(tmp_path, ["3_theo_0.wav", "7_theo_1.wav"])
    store_dir = tmp_path / "store"
    argv = ["--model-dir", str(model_dir), "--work-dir", str(REPO_ROOT / "build")]
    argv += ["train-head", "--task", "theo-digits", "--manifest", str(manifest)]
    argv += ["--steps", "2", "--store", str(store_dir), "--owner", "acme"]
    assert main(argv) == 0

    record = DiskStore(store_dir).get("theo-digits")
    fp = json.loads((model_dir / "manifest.json").read_text())["fingerprint"]
    assert record.meta.fingerprint == fp and record.meta.head_type == "linear"
    assert record.meta.owner == "acme" and record.meta.vocabulary == ()
    assert record.tensors["V"].abs().sum() > 0  # trained away from the zero init

    clip = (FSDD if FSDD.is_dir() else FSDD_ALT) / "3_theo_35.wav"
    settings = whisper_settings(tmp_path, model_dir=model_dir, disk_store_path=store_dir)
    async with running_client(settings) as client:
        r = await client.post(
            "/v1/transcribe?task_id=theo-digits",
            content=clip.read_bytes(),
            headers={"content-type": "audio/wav"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["task_id"] == "theo-digits" and body["head_version"] == 1
