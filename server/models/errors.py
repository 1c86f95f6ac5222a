"""Errors of loading a model (start-up, never a request's fault): the Whisper weights and
the backbone checkpoints `hra adapt-backbone` reads. Not public: their text names files and
quotes libraries, so a client that met one would see only `internal_error`. They keep their
builtin bases (RuntimeError, ValueError) for callers that catch those."""

from __future__ import annotations

from server.errors import HraError


class ModelLoadError(HraError):
    public = False


class WhisperLoadError(ModelLoadError, RuntimeError):
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


class HfCheckpointError(ModelLoadError, ValueError):
    """A Hugging Face checkpoint folder we cannot load; the message says which file and why."""

    code = "hf_checkpoint_invalid"


class NemoCheckpointError(ModelLoadError, ValueError):
    """A .nemo archive we cannot load; the message says which member or field and why."""

    code = "nemo_checkpoint_invalid"
