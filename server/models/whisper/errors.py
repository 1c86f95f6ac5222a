"""Errors of the Whisper backbone's loading path (start-up, never a request's fault)."""

from __future__ import annotations


class WhisperLoadError(RuntimeError):
    """The Whisper weights could not be loaded; the message says what to do."""

    code = "whisper_load_failed"


class WeightsPackageMissing(WhisperLoadError):
    """The pinned weights package is not installed."""

    code = "whisper_weights_missing"


class WeightsHashMismatch(WhisperLoadError):
    """The installed weights file is not the one the manifest pins."""

    code = "whisper_weights_hash_mismatch"


class ModelFileError(WhisperLoadError):
    """model.bin is malformed, truncated, or beyond the reader's bounds."""

    code = "whisper_model_file_invalid"
