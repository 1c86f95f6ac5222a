"""Store-level failures; the HTTP layer maps each to a status and stable code."""


class StoreError(Exception):
    code = "store_error"


class UnknownTask(StoreError):
    code = "unknown_task"


class InvalidTaskId(StoreError):
    code = "invalid_task_id"


class HeadRejected(StoreError):
    """An uploaded or stored head failed validation; the message says why."""

    code = "head_rejected"


class InvalidVocabulary(HeadRejected):
    code = "invalid_vocabulary"


class FingerprintMismatch(HeadRejected):
    code = "fingerprint_mismatch"


class StoreUnavailable(StoreError):
    """The backing store (Redis) cannot be reached; cached heads still serve."""

    code = "store_unavailable"


class QuotaExceeded(StoreError):
    """A tenant's write would pass one of its quotas (tasks, versions per task, bytes)."""

    code = "quota_exceeded"


class InvalidVisibility(StoreError):
    """A visibility other than exactly "private" or "public"."""

    code = "invalid_visibility"
