"""The error taxonomy: one root, `HraError`, and every error's boundary behaviour on its class.

Lives here, a leaf with no project imports, so adapters_store (the lower layer) imports it
without loading any of server's modules.

Each concrete error declares, once, its stable `code` (clients may switch on it); its HTTP
`status` comes from a base below (BadRequest 400, NotFound 404, TooLarge 413,
Unprocessable 422, TooMany 429, Unavailable 503) or from the class itself; `close_code` is
the WebSocket close code when it ends a live stream (default 1011) and `fatal` says whether
it ends the stream when it refuses one client event (server/live/session.py). Every
boundary reads these: server/api/errors.py (HTTP and SSE), server/api/routes/realtime.py
and server/api/auth_gate.py (WebSocket). Messages are for humans. Codes are unique per
class. More errors live in server/live/errors.py (stream kinds) and server/models/errors.py
(start-up); `taxonomy()` lists them all.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

# RFC 6455 close codes used by live streams.
CLOSE_POLICY = 1008  # the client broke a rule
CLOSE_SERVER_ERROR = 1011
CLOSE_TRY_LATER = 1013

# The modules that define errors outside this one (imported by taxonomy()).
ERROR_MODULES = ("server.live.errors", "server.models.errors")


class HraError(Exception):
    """The server failed for a reason none of the other codes names."""

    code = "internal_error"
    status = 500
    close_code = CLOSE_SERVER_ERROR
    fatal = False
    # False for start-up errors: a client that meets one gets a bare `internal_error`
    # (their text may name server paths or quote a library; the log has it).
    public = True


ServingError = HraError  # the serving side's former root, kept importable


def shown(exc: BaseException, message: str = "internal server error") -> HraError:
    """What a client may see of `exc`: itself when it is a public HraError, else a bare
    `internal_error` with `message` (never the exception's own text)."""
    if isinstance(exc, HraError) and exc.public:
        return exc
    return HraError(message)


# --- bases by HTTP status: they declare no code of their own, so are never raised. A live
# stream that ends on one closes with 1008 (policy) for the client's own errors, 1013 (try
# again later) for load, 1011 (server error) for the server's ---


class BadRequest(HraError):
    status = 400
    close_code = CLOSE_POLICY


class NotFound(HraError):
    status = 404
    close_code = CLOSE_POLICY


class TooLarge(HraError):
    status = 413
    close_code = CLOSE_POLICY


class Unprocessable(HraError):
    status = 422
    close_code = CLOSE_POLICY


class TooMany(HraError):
    status = 429
    close_code = CLOSE_TRY_LATER


class Unavailable(HraError):
    status = 503
    close_code = CLOSE_TRY_LATER


# --- the request itself ---


class Unauthorized(HraError):
    """A missing or wrong API key (checked before any of the body is read)."""

    code = "unauthorized"
    status = 401
    close_code = CLOSE_POLICY


class UnknownPath(NotFound):
    """No route answers this path."""

    code = "not_found"


class MethodNotAllowed(HraError):
    """The path exists, but not with this HTTP method."""

    code = "method_not_allowed"
    status = 405
    close_code = CLOSE_POLICY


class RequestTimeout(HraError):
    """The request body did not arrive in time (HttpSettings.body_read_timeout_s)."""

    code = "request_timeout"
    status = 408
    close_code = CLOSE_POLICY


class PayloadTooLarge(TooLarge):
    """The request body is larger than the server accepts."""

    code = "payload_too_large"


class InvalidRequest(BadRequest):
    """A request the server cannot act on (a body it cannot parse, a field out of bounds)."""

    code = "invalid_request"


class ValidationFailed(Unprocessable):
    """A request field failed validation (the message names each field)."""

    code = "validation_error"


class UnsupportedLanguage(InvalidRequest):
    """A `language` the served model has no token for (or an English-only model)."""

    code = "unsupported_language"


class ClientGone(HraError):
    """The client disconnected while its long transcription was running: the rest of its
    windows are not submitted (nobody reads the answer; logged, status 499)."""

    code = "client_disconnected"
    status = 499


# --- audio ---


class AudioDecodeError(BadRequest):
    """The audio could not be decoded."""

    code = "invalid_audio"


class EmptyAudio(AudioDecodeError):
    """The audio holds no samples."""

    code = "empty_audio"


class AudioTooShort(AudioDecodeError):
    """Fewer samples than the model's front end can turn into a single frame."""

    code = "audio_too_short"


class UnsupportedSampleRate(AudioDecodeError):
    """A sample rate the server does not resample from."""

    code = "unsupported_sample_rate"


class TooManyChannels(AudioDecodeError):
    """More audio channels than the server mixes down."""

    code = "too_many_channels"


class AudioTooLong(TooLarge):
    """The audio is longer than the server transcribes in one request."""

    code = "audio_too_long"


class TooManySamples(AudioTooLong):
    """Duration x rate x channels past the decoded-samples bound."""

    code = "too_many_samples"


class VocabularyTooCostly(AudioTooLong):
    """The audio is too long for the task's vocabulary: decoding would cost more than
    the per-request bound in states x frames."""

    code = "vocabulary_too_costly"


# --- serving ---


class TooManyWindows(AudioTooLong):
    """A long file would be cut into more windows than its length allows (clicks or
    bursts where a pause follows every few hops); refused before any window runs."""

    code = "too_many_windows"


class Overloaded(Unavailable):
    """The queue, a tenant's share of it, or the audio waiting in it is full (Retry-After)."""

    code = "overloaded"
    close_code = CLOSE_TRY_LATER

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SlotPoolExhausted(Unavailable):
    """A batch needs more distinct heads of one family than the device slot pool holds."""

    code = "slot_pool_exhausted"


class DeadlineExceeded(HraError):
    """The request's deadline passed before its batch ran."""

    code = "deadline_exceeded"
    status = 504


class BatchFailed(HraError):
    """The batch holding this request failed as a whole."""

    code = "batch_failed"


class InferenceFailed(HraError):
    """This request alone failed inside the engine (its batch-mates were not affected)."""

    code = "inference_failed"

    def __init__(self, message: str, stage: str = "") -> None:
        super().__init__(message)
        self.stage = stage  # features | forward | decode


class TranscriptTooLong(Unprocessable):
    """A dataset item's transcript has more characters than its audio has CTC frames to
    align them to (a head trained on it would learn nothing)."""

    code = "transcript_too_long"


class DecodeBudgetExceeded(Unprocessable):
    """Decoding this audio needed more tokens than its budget allows (Whisper looping on
    it through every fallback temperature); the request stopped there, alone."""

    code = "decode_budget_exceeded"


# --- live streams (the kinds a stream sends as `error` events: server/live/errors.py) ---


class TooManyStreams(TooMany):
    """The tenant's or the server's live-stream limit is reached."""

    code = "too_many_streams"
    close_code = CLOSE_TRY_LATER


class StreamError(HraError):
    """A live stream broke its protocol or bounds (the base of the stream's own kinds)."""

    code = "stream_error"
    close_code = CLOSE_POLICY


# --- the adapter store (raised by adapters_store, re-exported by adapters_store.errors) ---


class StoreError(HraError):
    """A store failure none of the other codes names (the base of the store's errors)."""

    code = "store_error"


class UnknownTask(StoreError, NotFound):
    """A task that does not exist, or one the caller may not use (alike, so ids never leak)."""

    code = "unknown_task"
    close_code = CLOSE_POLICY


class InvalidTaskId(StoreError, Unprocessable):
    """A task id outside the allowed characters or length."""

    code = "invalid_task_id"


class HeadRejected(StoreError, Unprocessable):
    """An uploaded or stored head failed validation; the message says why."""

    code = "head_rejected"


class InvalidVocabulary(HeadRejected):
    """A head's vocabulary is malformed or does not fit its head."""

    code = "invalid_vocabulary"


class FingerprintMismatch(HeadRejected):
    """A head was trained on another backbone than the one served."""

    code = "fingerprint_mismatch"


class StoreUnavailable(StoreError, Unavailable):
    """The backing store (Redis) cannot be reached; cached heads still serve."""

    code = "store_unavailable"


class QuotaExceeded(StoreError, TooMany):
    """A tenant's write would pass one of its quotas (tasks, versions per task, bytes)."""

    code = "quota_exceeded"


class InvalidVisibility(StoreError, BadRequest):
    """A visibility other than exactly "private" or "public"."""

    code = "invalid_visibility"


# --- fine-tuning jobs and their datasets ---


class UnknownFile(NotFound):
    """A dataset that does not exist, or belongs to another tenant (alike)."""

    code = "unknown_file"


class UnknownJob(NotFound):
    """A fine-tuning job that does not exist, or belongs to another tenant (alike)."""

    code = "unknown_job"


class UnsupportedHyperparameter(InvalidRequest):
    """A fine-tuning hyperparameter that does not apply to the served model's kind."""

    code = "unsupported_hyperparameter"


class InvalidDataset(InvalidRequest):
    """A dataset archive or one of its items was refused (the message lists the items)."""

    code = "invalid_dataset"


class JobTooLarge(TooLarge):
    """A fine-tuning job's features (seconds of audio x augmented copies) would take more
    memory than the server allows one job."""

    code = "job_too_large"


class TooManyJobs(TooMany):
    """A tenant's concurrent fine-tuning jobs or stored datasets are at their limit."""

    code = "too_many_jobs"


# --- the taxonomy, for docs and tests ---


@dataclass(frozen=True)
class ErrorKind:
    cls: type[HraError]
    code: str
    status: int
    close_code: int
    fatal: bool
    public: bool
    doc: str  # the class docstring's first paragraph, on one line


def taxonomy() -> list[ErrorKind]:
    """Every concrete error (a class of the project that declares its own `code`), by
    HTTP status then code. Imports the modules that define errors (ERROR_MODULES) first."""
    for name in ERROR_MODULES:
        importlib.import_module(name)
    kinds, todo, seen = [], [HraError], set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        todo.extend(cls.__subclasses__())
        if "code" in vars(cls) and cls.__module__.split(".")[0] in ("server", "adapters_store"):
            doc = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
            k = ErrorKind(cls, cls.code, cls.status, cls.close_code, cls.fatal, cls.public, doc)
            kinds.append(k)
    return sorted(kinds, key=lambda k: (k.status, k.code))
