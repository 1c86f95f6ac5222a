"""Store-level failures. Defined with the rest of the taxonomy in server/errors.py (a leaf
module with no project imports); re-exported here for the store's modules."""

from server.errors import (
    FingerprintMismatch,
    HeadRejected,
    InvalidTaskId,
    InvalidVisibility,
    InvalidVocabulary,
    QuotaExceeded,
    StoreError,
    StoreUnavailable,
    UnknownTask,
)

__all__ = [
    "FingerprintMismatch",
    "HeadRejected",
    "InvalidTaskId",
    "InvalidVisibility",
    "InvalidVocabulary",
    "QuotaExceeded",
    "StoreError",
    "StoreUnavailable",
    "UnknownTask",
]
