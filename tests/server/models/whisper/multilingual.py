"""A small multilingual-shaped Whisper model directory, written by our own writer.

CI installs tiny.en only (Whisper base is the optional `whisper-base` extra), so the
language plumbing is tested on a 2-layer, 16-wide random Whisper with a multilingual
vocabulary (51865 rows: openai-whisper's rule for "multilingual"), tiny.en's
tokenizer.json (its language tokens <|en|> .. <|su|> sit between
<|startoftranscript|> and <|translate|>, as in base's), and its model.bin split in
two "packages" joined by concatenation, as the base packages ship it. The packages
are folders put on sys.path (monkeypatch.syspath_prepend), importable by name.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

from server.models.registry import write_seeded_controller
from server.models.whisper.weights import WeightsManifest, locate
from tests.server.models.whisper.model_bin_files import write_model_bin

D, HEADS, FFN, LAYERS, VOCAB = 16, 2, 32, 2, 51865
MODULES = ("hra_test_whisper_ml_1", "hra_test_whisper_ml_2")


def _tensors(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * scale).to(torch.float16)

    w: dict[str, torch.Tensor] = {
        "encoder/conv1/weight": rnd(D, 80, 3),
        "encoder/conv1/bias": rnd(D),
        "encoder/conv2/weight": rnd(D, D, 3),
        "encoder/conv2/bias": rnd(D),
        "encoder/position_encodings/encodings": rnd(1500, D),
        "decoder/embeddings/weight": rnd(VOCAB, D, scale=1.0),
        "decoder/position_encodings/encodings": rnd(448, D),
        "encoder/num_heads": torch.tensor(HEADS, dtype=torch.int16),
        "decoder/num_heads": torch.tensor(HEADS, dtype=torch.int16),
    }

    def norm(prefix: str) -> None:
        w[f"{prefix}/gamma"] = torch.ones(D, dtype=torch.float16)
        w[f"{prefix}/beta"] = torch.zeros(D, dtype=torch.float16)

    def linear(prefix: str, out: int, inp: int) -> None:
        w[f"{prefix}/weight"] = rnd(out, inp)
        w[f"{prefix}/bias"] = rnd(out)

    for side in ("encoder", "decoder"):
        for i in range(LAYERS):
            p = f"{side}/layer_{i}"
            norm(f"{p}/self_attention/layer_norm")
            linear(f"{p}/self_attention/linear_0", 3 * D, D)
            linear(f"{p}/self_attention/linear_1", D, D)
            if side == "decoder":
                norm(f"{p}/attention/layer_norm")
                linear(f"{p}/attention/linear_0", D, D)
                linear(f"{p}/attention/linear_1", 2 * D, D)
                linear(f"{p}/attention/linear_2", D, D)
            norm(f"{p}/ffn/layer_norm")
            linear(f"{p}/ffn/linear_0", FFN, D)
            linear(f"{p}/ffn/linear_1", D, FFN)
        norm(f"{side}/layer_norm")
    return w


def write_multilingual_model(root: Path, tiny_en_root: Path, seed: int = 0) -> Path:
    """Packages under root/site, the model directory root/model; returns the latter.
    `tiny_en_root`: the installed tiny.en package's model folder (tokenizer, config)."""
    site, model_dir = root / "site", root / "model"
    raw = write_model_bin(_tensors(seed))
    half = len(raw) // 2
    folders = [site / m / "data" for m in MODULES]
    for module, folder in zip(MODULES, folders):
        folder.mkdir(parents=True)
        (site / module / "__init__.py").write_text("")
    (folders[0] / "model.bin.part1").write_bytes(raw[:half])
    (folders[1] / "model.bin.part2").write_bytes(raw[half:])
    shutil.copy(tiny_en_root / "tokenizer.json", folders[1] / "tokenizer.json")
    config = json.loads((tiny_en_root / "config.json").read_text())
    config["alignment_heads"] = [[0, 1], [1, 0]]
    (folders[1] / "config.json").write_text(json.dumps(config))

    def sha(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    part = lambda n: {  # noqa: E731
        "package": f"hra-test-whisper-ml-{n}",
        "version": "0.0.1",
        "module": MODULES[n - 1],
        "directory": "data",
        "file": f"model.bin.part{n}",
    }
    manifest = {
        "model": "whisper-test-multilingual",
        "package": "hra-test-whisper-ml-2",
        "version": "0.0.1",
        "module": MODULES[1],
        "directory": "data",
        "files": {
            "model.bin": hashlib.sha256(raw).hexdigest(),
            "config.json": sha(folders[1] / "config.json"),
            "tokenizer.json": sha(folders[1] / "tokenizer.json"),
        },
        "parts": {"model.bin": [part(1), part(2)]},
        "extra": "whisper-test",
        "kind": "whisper",
        "controller_dim": 8,
        "controller_seed": 0,
    }
    model_dir.mkdir(parents=True)
    (model_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    write_seeded_controller(model_dir, D, 8, 0)
    return model_dir


def check_importable(model_dir: Path) -> None:
    """Fails loudly if the packages are not on sys.path yet."""
    locate(WeightsManifest.load(model_dir))
