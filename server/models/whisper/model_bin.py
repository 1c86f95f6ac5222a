"""Our own reader of CTranslate2's `model.bin` (binary versions 2 to 6).

The file is a little-endian stream:

    u32 version
    str spec_name            (version >= 2)      str = u16 length, bytes (NUL-terminated)
    u32 revision             (version >= 2)
    u32 count
    count x { str name; u8 rank; u32 dims[rank];
              u8 dtype (version >= 4; an item size before); u32 nbytes; nbytes raw }
    u32 alias_count          (version >= 3)
    alias_count x { str alias; str name }

The file comes from a third-party package, so it is read as untrusted: every
count, rank, dimension and byte size is bounded, and a byte count must equal
shape x item size, before anything is allocated.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from server.models.whisper.errors import ModelFileError

SUPPORTED_VERSIONS = range(2, 7)
MAX_VARIABLES = 10_000
MAX_ALIASES = 10_000
MAX_RANK = 8
MAX_NAME_BYTES = 1024
MAX_TENSOR_BYTES = 4 << 30  # 4 GiB: Whisper large's biggest tensor is ~ 0.2 GiB

# CTranslate2's DataType enum (include/ctranslate2/types.h).
DTYPES: dict[int, tuple[str, torch.dtype, int]] = {
    0: ("float32", torch.float32, 4),
    1: ("int8", torch.int8, 1),
    2: ("int16", torch.int16, 2),
    3: ("int32", torch.int32, 4),
    4: ("float16", torch.float16, 2),
    5: ("bfloat16", torch.bfloat16, 2),
}


@dataclass
class ModelBin:
    version: int
    spec: str
    revision: int
    tensors: dict[str, torch.Tensor]
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> real name

    def get(self, name: str) -> torch.Tensor:
        """A tensor by name or alias; ModelFileError naming it when absent."""
        real = self.aliases.get(name, name)
        try:
            return self.tensors[real]
        except KeyError:
            raise ModelFileError(f"model.bin has no tensor {name!r}") from None

    def scalar(self, name: str) -> int:
        return int(self.get(name).reshape(-1)[0].item())


class _Reader:
    def __init__(self, stream: BinaryIO, size: int | None) -> None:
        self.stream = stream
        self.remaining = size  # None: unknown (a pipe); checked by short reads only

    def take(self, n: int, what: str) -> bytes:
        if self.remaining is not None and n > self.remaining:
            raise ModelFileError(
                f"model.bin truncated: {what} needs {n} bytes, {self.remaining} left"
            )
        data = self.stream.read(n)
        if len(data) != n:
            raise ModelFileError(f"model.bin truncated while reading {what}")
        if self.remaining is not None:
            self.remaining -= n
        return data

    def unpack(self, fmt: str, what: str) -> tuple[int, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def u8(self, what: str) -> int:
        return self.unpack("B", what)[0]

    def u32(self, what: str) -> int:
        return self.unpack("I", what)[0]

    def string(self, what: str) -> str:
        (length,) = self.unpack("H", what)
        if length > MAX_NAME_BYTES:
            raise ModelFileError(f"model.bin {what} is {length} bytes, limit {MAX_NAME_BYTES}")
        raw = self.take(length, what)
        try:
            return raw.rstrip(b"\x00").decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"model.bin {what} is not UTF-8") from None


def read_model_bin(source: Path | bytes) -> ModelBin:
    """Parse model.bin from a path or bytes; tensors keep the file's dtype."""
    if isinstance(source, bytes | bytearray):
        with io.BytesIO(source) as stream:
            return _parse(_Reader(stream, len(source)))
    path = Path(source)
    with path.open("rb") as stream:
        return _parse(_Reader(stream, path.stat().st_size))


def _parse(r: _Reader) -> ModelBin:
    version = r.u32("version")
    if version not in SUPPORTED_VERSIONS:
        raise ModelFileError(f"model.bin version {version} unsupported (reader knows 2..6)")
    spec = r.string("spec name")
    revision = r.u32("revision")
    count = r.u32("tensor count")
    if count > MAX_VARIABLES:
        raise ModelFileError(f"model.bin claims {count} tensors, limit {MAX_VARIABLES}")
    tensors: dict[str, torch.Tensor] = {}
    for _ in range(count):
        name = r.string("tensor name")
        tensors[name] = _read_tensor(r, name, version)
    aliases: dict[str, str] = {}
    if version >= 3:
        n_alias = r.u32("alias count")
        if n_alias > MAX_ALIASES:
            raise ModelFileError(f"model.bin claims {n_alias} aliases, limit {MAX_ALIASES}")
        for _ in range(n_alias):
            alias = r.string("alias")
            target = r.string("alias target")
            if target not in tensors:
                raise ModelFileError(f"alias {alias!r} names missing tensor {target!r}")
            aliases[alias] = target
    return ModelBin(version, spec, revision, tensors, aliases)


def _read_tensor(r: _Reader, name: str, version: int) -> torch.Tensor:
    rank = r.u8(f"{name} rank")
    if rank > MAX_RANK:
        raise ModelFileError(f"tensor {name!r} has rank {rank}, limit {MAX_RANK}")
    shape = r.unpack("I" * rank, f"{name} shape") if rank else ()
    if version >= 4:
        code = r.u8(f"{name} dtype")
        if code not in DTYPES:
            raise ModelFileError(f"tensor {name!r} has unknown dtype code {code}")
    else:  # versions 2-3 store an item size; 4 bytes meant float32, 1 int8
        code = {4: 0, 1: 1, 2: 2}.get(r.u8(f"{name} item size"), -1)
        if code < 0:
            raise ModelFileError(f"tensor {name!r} has an unknown item size")
    _, dtype, item = DTYPES[code]
    nbytes = r.u32(f"{name} byte count")
    numel = 1
    for d in shape:
        numel *= d
    if numel * item > MAX_TENSOR_BYTES or nbytes != numel * item:
        raise ModelFileError(
            f"tensor {name!r}: shape {tuple(shape)} x {item} B != {nbytes} bytes "
            f"(or above {MAX_TENSOR_BYTES} bytes)"
        )
    raw = bytearray(r.take(nbytes, f"{name} data"))
    flat = torch.frombuffer(raw, dtype=dtype) if nbytes else torch.empty(0, dtype=dtype)
    return flat.reshape(shape)
