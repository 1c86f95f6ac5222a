"""Domain errors raised in the core; server/api/errors.py maps them to HTTP once.

Each carries a stable `code` that clients may switch on; messages are for humans.
"""

from __future__ import annotations

from adapters_store.errors import (  # re-exported: store errors are domain errors too
    FingerprintMismatch,
    HeadRejected,
    InvalidTaskId,
    InvalidVisibility,
    QuotaExceeded,
    StoreError,
    StoreUnavailable,
    UnknownTask,
)


class ServingError(Exception):
    code = "internal_error"


class AudioDecodeError(ServingError):
    code = "invalid_audio"


class EmptyAudio(AudioDecodeError):
    code = "empty_audio"


class AudioTooShort(AudioDecodeError):
    """Fewer samples than the model's front end can turn into a single frame."""

    code = "audio_too_short"


class UnsupportedSampleRate(AudioDecodeError):
    code = "unsupported_sample_rate"


class TooManyChannels(AudioDecodeError):
    code = "too_many_channels"


class AudioTooLong(ServingError):
    code = "audio_too_long"


class TooManySamples(AudioTooLong):
    """Duration x rate x channels past the decoded-samples bound (413)."""

    code = "too_many_samples"


class VocabularyTooCostly(AudioTooLong):
    """The audio is too long for the task's vocabulary: decoding would cost more than
    the per-request bound in states x frames (413)."""

    code = "vocabulary_too_costly"


class PayloadTooLarge(ServingError):
    code = "payload_too_large"


class InvalidRequest(ServingError):
    code = "invalid_request"


class UnsupportedLanguage(InvalidRequest):
    """A `language` the served model has no token for (or an English-only model)."""

    code = "unsupported_language"


class Overloaded(ServingError):
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(ServingError):
    code = "deadline_exceeded"


class ClientGone(ServingError):
    """The client disconnected while its long transcription was running: the rest of its
    windows are not submitted (nobody reads the answer; logged, status 499)."""

    code = "client_disconnected"


class BatchFailed(ServingError):
    code = "batch_failed"


class SlotPoolExhausted(ServingError):
    """A batch needs more distinct heads of one family than the device slot pool holds."""

    code = "slot_pool_exhausted"


class InferenceFailed(ServingError):
    """This request alone failed inside the engine (its batch-mates were not affected)."""

    code = "inference_failed"

    def __init__(self, message: str, stage: str = "") -> None:
        super().__init__(message)
        self.stage = stage  # features | forward | decode


class TooManyStreams(ServingError):
    """The tenant's or the server's live-stream limit is reached (429 / close 1013)."""

    code = "too_many_streams"


class StreamError(ServingError):
    """A live stream broke its protocol or bounds: sent as an `error` event (the specific
    kinds live in server/live/errors.py); `fatal` ones close the stream after it."""

    code = "stream_error"
    fatal = False


class UnknownFile(UnknownTask):
    """A dataset that does not exist, or belongs to another tenant (404 alike)."""

    code = "unknown_file"


class UnknownJob(UnknownTask):
    """A fine-tuning job that does not exist, or belongs to another tenant (404 alike)."""

    code = "unknown_job"


class UnsupportedHyperparameter(InvalidRequest):
    """A fine-tuning hyperparameter that does not apply to the served model's kind."""

    code = "unsupported_hyperparameter"


class InvalidDataset(InvalidRequest):
    """A dataset archive or one of its items was refused (the message lists the items)."""

    code = "invalid_dataset"


class TooManyJobs(QuotaExceeded):
    """A tenant's concurrent fine-tuning jobs or stored datasets are at their limit (429)."""

    code = "too_many_jobs"


__all__ = [
    "AudioDecodeError",
    "AudioTooLong",
    "AudioTooShort",
    "BatchFailed",
    "ClientGone",
    "DeadlineExceeded",
    "EmptyAudio",
    "FingerprintMismatch",
    "HeadRejected",
    "InferenceFailed",
    "InvalidDataset",
    "InvalidRequest",
    "InvalidTaskId",
    "InvalidVisibility",
    "Overloaded",
    "PayloadTooLarge",
    "QuotaExceeded",
    "ServingError",
    "SlotPoolExhausted",
    "StoreError",
    "StoreUnavailable",
    "StreamError",
    "TooManyStreams",
    "UnknownTask",
    "TooManyChannels",
    "TooManyJobs",
    "UnknownFile",
    "UnknownJob",
    "TooManySamples",
    "UnsupportedHyperparameter",
    "UnsupportedSampleRate",
    "UnsupportedLanguage",
    "VocabularyTooCostly",
]
