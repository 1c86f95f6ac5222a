"""Our model.bin reader: round trip on a file written here, bounds, and the real package."""

from __future__ import annotations

import struct

import pytest
import torch

from server.models.whisper.errors import ModelFileError
from server.models.whisper.model_bin import read_model_bin
from tests.server.models.whisper.model_bin_files import write_model_bin


def small_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "encoder/conv1/weight": torch.randn(4, 3, 3, generator=g).half(),
        "encoder/num_heads": torch.tensor(6, dtype=torch.int16),
        "decoder/embeddings/weight": torch.randn(5, 4, generator=g),
        "decoder/pre_norm": torch.tensor(1, dtype=torch.int8),
    }


def test_reader_returns_every_tensor_with_its_shape_dtype_values_and_aliases():
    tensors = small_tensors()
    raw = write_model_bin(
        tensors, aliases={"decoder/projection/weight": "decoder/embeddings/weight"}
    )
    parsed = read_model_bin(raw)
    assert parsed.spec == "WhisperSpec" and parsed.version == 6 and parsed.revision == 3
    assert set(parsed.tensors) == set(tensors)
    for name, t in tensors.items():
        assert parsed.tensors[name].dtype == t.dtype
        assert torch.equal(parsed.tensors[name], t)
    assert torch.equal(
        parsed.get("decoder/projection/weight"), tensors["decoder/embeddings/weight"]
    )
    assert parsed.scalar("encoder/num_heads") == 6


def test_every_truncation_of_a_valid_file_is_a_model_file_error():
    raw = write_model_bin(small_tensors())
    for cut in range(len(raw) - 1):
        with pytest.raises(ModelFileError):
            read_model_bin(raw[:cut])


def _header(count: int) -> bytes:
    spec = b"WhisperSpec\x00"
    return struct.pack("<IH", 6, len(spec)) + spec + struct.pack("<II", 3, count)


def _name(s: str) -> bytes:
    raw = s.encode() + b"\x00"
    return struct.pack("<H", len(raw)) + raw


@pytest.mark.parametrize(
    "body, message",
    [
        (struct.pack("<I", 7) + b"\x00" * 20, "version"),
        (_header(10**9), "tensors"),
        (_header(1) + _name("x") + struct.pack("<B", 200), "rank"),
        (_header(1) + _name("x") + struct.pack("<BIBI", 1, 4, 99, 8), "dtype"),
        # 2^32-1 x 2^32-1 floats claimed: refused before any allocation
        (_header(1) + _name("x") + struct.pack("<BIIBI", 2, 2**32 - 1, 2**32 - 1, 0, 16), "bytes"),
        # byte count disagreeing with the shape
        (_header(1) + _name("x") + struct.pack("<BIBI", 1, 4, 0, 12) + b"\x00" * 12, "bytes"),
        (struct.pack("<IH", 6, 60000), "limit"),
    ],
)
def test_hostile_headers_are_refused_with_a_model_file_error(body: bytes, message: str):
    with pytest.raises(ModelFileError, match=message):
        read_model_bin(body)


def test_alias_to_a_missing_tensor_is_refused():
    raw = write_model_bin(small_tensors(), aliases={"a": "nope"})
    with pytest.raises(ModelFileError, match="missing"):
        read_model_bin(raw)


def test_reader_parses_the_pinned_tiny_en_package(whisper_files):
    parsed = read_model_bin(whisper_files.path("model.bin"))
    assert parsed.spec == "WhisperSpec"
    assert len(parsed.tensors) == 148
    assert parsed.scalar("encoder/num_heads") == 6
    assert parsed.get("decoder/projection/weight").shape == (51864, 384)
    assert parsed.get("encoder/conv1/weight").dtype == torch.float16
    assert parsed.get("encoder/position_encodings/encodings").shape == (1500, 384)
