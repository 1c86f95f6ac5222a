"""Errors of the Whisper backbone's loading path: defined in server/models/errors.py."""

from server.models.errors import (
    ModelFileError,
    WeightsHashMismatch,
    WeightsPackageMissing,
    WhisperLoadError,
)

__all__ = ["ModelFileError", "WeightsHashMismatch", "WeightsPackageMissing", "WhisperLoadError"]
