"""The on-disk/on-wire head format: one safetensors file, metadata inside it.

A head's metadata (type, shapes, fingerprint of the backbone+controller it was
trained against, version, owner) lives in the safetensors `__metadata__`, so
a downloaded head uploads again as is and a file can never be separated from
its description. Parsing never unpickles: safetensors is plain tensors.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import struct
import time
from collections.abc import Callable, Mapping
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
from adapters_store.json_limits import JsonTooDeep, loads_bounded

FORMAT = "hra-head/1"
METADATA_KEY = "hra_head"
MAX_METADATA_BYTES = 131_072  # room for a 1,000-word vocabulary
MAX_VOCABULARY_WORDS = 1_000  # decoding cost grows with it: load_tests/bench_vocabulary.py
MAX_VOCABULARY_CHARACTERS = 8_000  # <= 17,002 word-loop states: decodes >= 7 s per request
ALLOWED_DTYPES = {torch.float32, torch.float16, torch.bfloat16}
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # fullmatch: "$" would let "\n" end one
_WORD = re.compile(r"[a-z']{1,64}")  # what the CTC characters can spell (fullmatch)


def validate_task_id(task_id: str) -> str:
    """Ids become file names and Redis keys: no separators, no dot-dot."""
    if not _TASK_ID.fullmatch(task_id) or ".." in task_id:
        raise InvalidTaskId(
            f"task id {task_id!r} must be 1-128 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return task_id


ShapesFn = Callable[[str, int], dict[str, tuple[int, ...]]]  # (head type, rank) -> shapes
DEFAULT_MAX_RANK = 64  # largest FFN/residual rank when a spec names none (HeadSettings)


@dataclass(frozen=True)
class HeadSpec:
    """What the loaded backbone+controller and the device slot pool accept.

    Head shapes come from the model side (adapters_store/families.py builds specs with
    `make_head_spec`): the store validates against them but does not define them.
    `max_ranks` is the largest rank per head family that the slot pool holds; a
    head above it is rejected at upload, so it can never reach a batch.
    """

    fingerprint: str
    hidden_dim: int
    controller_dim: int
    num_layers: int
    shapes: ShapesFn | None = field(default=None, compare=False)
    max_ranks: Mapping[str, int] = field(default_factory=dict, hash=False)

    def max_rank(self, head_type: str) -> int:
        """Largest rank a head of this family may have here (0 for rank-less linear)."""
        if head_type == HeadType.LINEAR:
            return 0
        return self.max_ranks.get(head_type, DEFAULT_MAX_RANK)


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


def expected_shapes(head_type: str, rank: int, spec: HeadSpec) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a head of this type and rank, as the spec's model defines them."""
    kind = _head_type(head_type)
    if spec.shapes is None:
        raise TypeError(
            "HeadSpec has no shapes: build it with adapters_store.families.make_head_spec"
        )
    return spec.shapes(kind, rank)


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
        header = loads_bounded(data[8 : 8 + header_len])
        # The metadata entry is JSON inside a JSON string: bound its depth here too, so
        # decode_head's json.loads of it cannot recurse without limit.
        raw_meta = header.get("__metadata__") if isinstance(header, dict) else None
        raw_meta = raw_meta.get(METADATA_KEY) if isinstance(raw_meta, dict) else None
        if isinstance(raw_meta, str) and len(raw_meta) <= MAX_METADATA_BYTES:
            with contextlib.suppress(json.JSONDecodeError):  # decode_head reports it
                loads_bounded(raw_meta)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HeadRejected("not a safetensors file: header is not JSON") from None
    except JsonTooDeep as exc:
        raise HeadRejected(f"safetensors header: {exc}") from None
    if not isinstance(header, dict):
        raise HeadRejected("not a safetensors file: header is not an object")
    return header


def decode_head(data: bytes, spec: HeadSpec | None = None) -> HeadRecord:
    """Parse and validate a head file; with `spec`, check it fits the loaded model."""
    header = _read_header(data)
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise HeadRejected("safetensors __metadata__ must be an object of strings")
    raw_meta = metadata.get(METADATA_KEY)
    if not isinstance(raw_meta, str):
        raise HeadRejected(f"safetensors metadata has no {METADATA_KEY!r} entry")
    if len(raw_meta) > MAX_METADATA_BYTES:
        raise HeadRejected(f"head metadata is {len(raw_meta)} bytes, limit {MAX_METADATA_BYTES}")
    try:
        fields = loads_bounded(raw_meta)
        meta = HeadMetadata(**fields)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and JsonTooDeep among them
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
    bad = [w for w in words if not _WORD.fullmatch(w)]
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
    kind = _head_type(meta.head_type)
    if kind != HeadType.LINEAR:
        check_rank(kind, meta.rank, spec)
    expected = expected_shapes(kind, meta.rank, spec)
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
    if not isinstance(meta.created_at, (int, float)) or not math.isfinite(meta.created_at):
        raise HeadRejected("created_at must be a finite timestamp")


def _head_type(head_type: object) -> HeadType:
    try:
        return HeadType(head_type)
    except (ValueError, TypeError):
        raise HeadRejected(f"unknown head type {head_type!r}") from None


def check_rank(head_type: str, rank: object, spec: HeadSpec) -> None:
    """A head's rank must fit the device slot pool: 1 <= rank <= the family's max rank."""
    limit = spec.max_rank(head_type)
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 < rank <= limit:
        raise HeadRejected(
            f"{head_type} head rank {rank!r} is outside 1..{limit}, "
            f"the largest {head_type} rank this server holds"
        )
