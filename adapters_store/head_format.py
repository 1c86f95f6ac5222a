"""The on-disk/on-wire head format: one safetensors file, metadata inside it.

A head's metadata (type, shapes, fingerprint of the backbone+controller it was
trained against, version, owner) lives in the safetensors `__metadata__`, so
a downloaded head uploads again as is and a file can never be separated from
its description. Parsing never unpickles: safetensors is plain tensors.
"""

from __future__ import annotations

import json
import math
import re
import struct
import time
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from adapters_store.errors import (
    FingerprintMismatch,
    HeadRejected,
    InvalidTaskId,
    InvalidVocabulary,
)

FORMAT = "hra-head/1"
METADATA_KEY = "hra_head"
MAX_METADATA_BYTES = 131_072  # room for a 1,000-word vocabulary
MAX_VOCABULARY_WORDS = 1_000  # decoding cost grows with it: load_tests/bench_vocabulary.py
MAX_VOCABULARY_CHARACTERS = 8_000  # <= 17,002 word-loop states: decodes >= 7 s per request
ALLOWED_DTYPES = {torch.float32, torch.float16, torch.bfloat16}
_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_WORD = re.compile(r"^[a-z']{1,64}$")  # what the CTC character vocabulary can spell


def validate_task_id(task_id: str) -> str:
    """Ids become file names and Redis keys: no separators, no dot-dot."""
    if not _TASK_ID.match(task_id) or ".." in task_id:
        raise InvalidTaskId(
            f"task id {task_id!r} must be 1-128 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return task_id


@dataclass(frozen=True)
class HeadSpec:
    """What the loaded backbone+controller accepts: shapes follow from these."""

    fingerprint: str
    hidden_dim: int
    controller_dim: int
    num_layers: int


@dataclass(frozen=True)
class HeadMetadata:
    task_id: str
    head_type: str  # linear | ffn | residual
    fingerprint: str
    version: int = 0  # assigned by the store on write
    rank: int = 0  # FFN hidden size or residual bottleneck; 0 for linear
    dtype: str = "float32"
    created_at: float = field(default_factory=time.time)
    owner: str | None = None
    description: str | None = None
    extra: dict = field(default_factory=dict)
    vocabulary: tuple[str, ...] = ()  # non-empty: transcripts use only these words


@dataclass(frozen=True)
class HeadRecord:
    meta: HeadMetadata
    tensors: dict[str, torch.Tensor]

    @property
    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())

    def with_meta(self, **changes) -> HeadRecord:
        return HeadRecord(replace(self.meta, **changes), self.tensors)


class HeadType(StrEnum):
    LINEAR = "linear"
    FFN = "ffn"
    RESIDUAL = "residual"


def head_shapes(
    head_type: HeadType, hidden_dim: int, controller_dim: int, rank: int, num_layers: int
) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of each head type (see server/model/adapters.py)."""
    if head_type == HeadType.LINEAR:
        return {"V": (hidden_dim, controller_dim)}
    if head_type == HeadType.FFN:
        return {"V1": (rank, controller_dim), "V2": (hidden_dim, rank)}
    return {"down": (num_layers, rank, hidden_dim), "up": (num_layers, hidden_dim, rank)}


def expected_shapes(head_type: str, rank: int, spec: HeadSpec) -> dict[str, tuple[int, ...]]:
    try:
        kind = HeadType(head_type)
    except ValueError:
        raise HeadRejected(f"unknown head type {head_type!r}") from None
    return head_shapes(kind, spec.hidden_dim, spec.controller_dim, rank, spec.num_layers)


def encode_head(record: HeadRecord) -> bytes:
    meta = json.dumps(asdict(record.meta), sort_keys=True)
    tensors = {k: v.contiguous() for k, v in record.tensors.items()}
    return save_safetensors(tensors, metadata={"format": FORMAT, METADATA_KEY: meta})


def _read_header(data: bytes) -> dict:
    if len(data) < 8:
        raise HeadRejected("not a safetensors file: shorter than its 8-byte header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8 or header_len > 100_000_000:
        raise HeadRejected("not a safetensors file: header length exceeds the file")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HeadRejected("not a safetensors file: header is not JSON") from None
    if not isinstance(header, dict):
        raise HeadRejected("not a safetensors file: header is not an object")
    return header


def decode_head(data: bytes, spec: HeadSpec | None = None) -> HeadRecord:
    """Parse and validate a head file; with `spec`, check it fits the loaded model."""
    header = _read_header(data)
    raw_meta = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw_meta is None:
        raise HeadRejected(f"safetensors metadata has no {METADATA_KEY!r} entry")
    if len(raw_meta) > MAX_METADATA_BYTES:
        raise HeadRejected(f"head metadata is {len(raw_meta)} bytes, limit {MAX_METADATA_BYTES}")
    try:
        fields = json.loads(raw_meta)
        meta = HeadMetadata(**fields)
    except (json.JSONDecodeError, TypeError) as exc:
        raise HeadRejected(f"head metadata is malformed: {exc}") from None
    meta = replace(meta, vocabulary=validate_vocabulary(meta.vocabulary))
    try:
        tensors = load_safetensors(data)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise HeadRejected(f"malformed safetensors: {exc}") from None
    record = HeadRecord(meta, tensors)
    if spec is not None:
        validate_head(record, spec)
    return record


def validate_vocabulary(words: object) -> tuple[str, ...]:
    """A task vocabulary: distinct lower-case words of letters and apostrophes, at most
    MAX_VOCABULARY_WORDS words and MAX_VOCABULARY_CHARACTERS characters in all (what the
    word loop's size, and so its decoding cost per frame, grows with)."""
    if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) for w in words):
        raise InvalidVocabulary("vocabulary must be a list of words")
    if len(words) > MAX_VOCABULARY_WORDS:
        raise InvalidVocabulary(f"vocabulary has {len(words)} words, limit {MAX_VOCABULARY_WORDS}")
    bad = [w for w in words if not _WORD.match(w)]
    if bad:
        raise InvalidVocabulary(
            f"vocabulary words must be 1-64 characters of a-z and ' (lower case): {bad[:5]}"
        )
    characters = sum(len(w) for w in words)
    if characters > MAX_VOCABULARY_CHARACTERS:
        raise InvalidVocabulary(
            f"vocabulary has {characters} characters in all, limit {MAX_VOCABULARY_CHARACTERS}"
        )
    if len(set(words)) != len(words):
        raise InvalidVocabulary("vocabulary lists a word twice")
    return tuple(words)


def validate_head(record: HeadRecord, spec: HeadSpec) -> None:
    meta = record.meta
    if meta.fingerprint != spec.fingerprint:
        raise FingerprintMismatch(
            f"head was trained against backbone+controller {meta.fingerprint}, "
            f"this server runs {spec.fingerprint}"
        )
    expected = expected_shapes(meta.head_type, meta.rank, spec)
    if set(record.tensors) != set(expected):
        raise HeadRejected(
            f"{meta.head_type} head needs tensors {sorted(expected)}, got {sorted(record.tensors)}"
        )
    for name, shape in expected.items():
        tensor = record.tensors[name]
        if tuple(tensor.shape) != shape:
            raise HeadRejected(f"tensor {name} has shape {tuple(tensor.shape)}, expected {shape}")
        if tensor.dtype not in ALLOWED_DTYPES:
            raise HeadRejected(f"tensor {name} has dtype {tensor.dtype}; use float32/16 or bf16")
        if not bool(torch.isfinite(tensor).all()):
            raise HeadRejected(f"tensor {name} holds NaN or infinite values")
    if meta.head_type != "linear" and not (0 < meta.rank <= 4096):
        raise HeadRejected(f"rank {meta.rank} out of range for a {meta.head_type} head")
    if not math.isfinite(meta.created_at):
        raise HeadRejected("created_at must be a finite timestamp")
