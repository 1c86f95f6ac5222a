"""All configuration, read once from environment variables prefixed `HRA_`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HRA_")

    model_dir: Path = REPO_ROOT / "models" / "default"
    """Folder with model.safetensors (backbone + controller) and heads/ (default store)."""

    fsdd_root: Path = REPO_ROOT.parent / "shared" / "data" / "fsdd" / "recordings"
    """FSDD recordings, for training and evaluation only."""

    work_dir: Path = REPO_ROOT / "build"
    """Generated data and resumable training checkpoints (not committed)."""

    torch_threads: int = Field(default=0, ge=0)
    """Intra-op threads for torch; 0 keeps torch's default (one per core)."""


@lru_cache
def get_settings() -> Settings:
    return Settings()
