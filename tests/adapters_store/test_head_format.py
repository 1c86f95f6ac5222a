"""Head files: round trip, and every malformed or mismatched head refused."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save

from adapters_store.errors import (
    FingerprintMismatch,
    HeadRejected,
    InvalidTaskId,
    InvalidVocabulary,
)
from adapters_store.families import make_head_spec
from adapters_store.head_format import (
    HeadMetadata,
    HeadRecord,
    HeadSpec,
    decode_head,
    encode_head,
    validate_task_id,
)

SPEC = make_head_spec(fingerprint="abc123", hidden_dim=6, controller_dim=4, num_layers=2)


def _record(**changes) -> HeadRecord:
    meta = HeadMetadata(task_id="t1", head_type="linear", fingerprint="abc123", owner="acme")
    return HeadRecord(meta, {"V": torch.randn(6, 4)}).with_meta(**changes)


def test_encode_decode_round_trips_tensors_and_metadata():
    record = _record(description="call centre")
    back = decode_head(encode_head(record), SPEC)
    assert back.meta == record.meta
    torch.testing.assert_close(back.tensors["V"], record.tensors["V"])


def test_ffn_and_residual_shapes_are_checked_against_the_spec():
    ffn = HeadRecord(
        HeadMetadata("t", "ffn", "abc123", rank=3),
        {"V1": torch.randn(3, 4), "V2": torch.randn(6, 3)},
    )
    decode_head(encode_head(ffn), SPEC)
    residual = HeadRecord(
        HeadMetadata("t", "residual", "abc123", rank=3),
        {"down": torch.randn(2, 3, 6), "up": torch.randn(2, 6, 3)},
    )
    decode_head(encode_head(residual), SPEC)
    wrong = HeadRecord(residual.meta, {"down": torch.randn(3, 3, 6), "up": torch.randn(3, 6, 3)})
    with pytest.raises(HeadRejected, match="shape"):
        decode_head(encode_head(wrong), SPEC)


@pytest.mark.parametrize(
    "tensors,match",
    [
        ({"W": torch.randn(6, 4)}, "needs tensors"),
        ({"V": torch.randn(4, 6)}, "shape"),
        ({"V": torch.randn(6, 4).double()}, "dtype"),
        ({"V": torch.full((6, 4), float("nan"))}, "NaN"),
        ({"V": torch.full((6, 4), float("inf"))}, "NaN or infinite"),
    ],
)
def test_bad_tensors_are_rejected(tensors, match):
    with pytest.raises(HeadRejected, match=match):
        decode_head(encode_head(HeadRecord(_record().meta, tensors)), SPEC)


def test_other_fingerprint_is_rejected_with_both_fingerprints_named():
    with pytest.raises(FingerprintMismatch, match="ffff.*abc123"):
        decode_head(encode_head(_record(fingerprint="ffff")), SPEC)


def test_pickle_and_garbage_are_rejected_without_unpickling():
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    for data in (pickle.dumps(Boom()), b"", b"\x00" * 3, b"not a safetensors file at all"):
        with pytest.raises(HeadRejected):
            decode_head(data, SPEC)


def test_safetensors_without_head_metadata_or_with_oversized_metadata_is_rejected():
    with pytest.raises(HeadRejected, match="hra_head"):
        decode_head(save({"V": torch.randn(6, 4)}), SPEC)
    big = _record(description="x" * 300_000)
    with pytest.raises(HeadRejected, match="limit"):
        decode_head(encode_head(big), SPEC)


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "a..b", "x" * 129, "sp ace"])
def test_task_ids_with_path_characters_are_refused(bad):
    with pytest.raises(InvalidTaskId):
        validate_task_id(bad)


def test_ordinary_task_ids_are_accepted():
    for ok in ("fsdd-george", "synth-accent-de", "Tenant_7.v2"):
        assert validate_task_id(ok) == ok


def test_a_vocabulary_round_trips_through_the_file():
    record = _record(vocabulary=("zero", "one", "o'clock"))
    assert decode_head(encode_head(record), SPEC).meta.vocabulary == ("zero", "one", "o'clock")
    assert decode_head(encode_head(_record()), SPEC).meta.vocabulary == ()


@pytest.mark.parametrize(
    "bad", [("Zero",), ("two words",), ("x" * 65,), ("one", "one"), ("",), "zero one", (1,)]
)
def test_a_vocabulary_the_decoder_cannot_spell_is_refused(bad):
    with pytest.raises(InvalidVocabulary):
        decode_head(encode_head(_record(vocabulary=bad)), SPEC)


def test_a_vocabulary_of_more_than_1000_words_is_refused():
    words = tuple(
        f"w{chr(97 + i // 26 // 26)}{chr(97 + i // 26 % 26)}{chr(97 + i % 26)}" for i in range(1001)
    )
    assert (
        len(decode_head(encode_head(_record(vocabulary=words[:1000])), SPEC).meta.vocabulary)
        == 1000
    )
    with pytest.raises(InvalidVocabulary, match="limit 1000"):
        decode_head(encode_head(_record(vocabulary=words)), SPEC)


def _ffn(rank: int) -> HeadRecord:
    return HeadRecord(
        HeadMetadata("t", "ffn", "abc123", rank=rank),
        {"V1": torch.randn(rank, 4), "V2": torch.randn(6, rank)},
    )


def _residual(rank: int) -> HeadRecord:
    return HeadRecord(
        HeadMetadata("t", "residual", "abc123", rank=rank),
        {"down": torch.randn(2, rank, 6), "up": torch.randn(2, 6, rank)},
    )


def test_a_head_above_its_familys_max_rank_is_rejected_at_upload():
    """Regression (issue 12): rank 65 passed upload (limit 4096) but no pool slot held it."""
    assert decode_head(encode_head(_ffn(64)), SPEC).meta.rank == 64  # default max rank 64
    with pytest.raises(HeadRejected, match="rank 65 is outside 1..64"):
        decode_head(encode_head(_ffn(65)), SPEC)
    with pytest.raises(HeadRejected, match="residual head rank 65"):
        decode_head(encode_head(_residual(65)), SPEC)


def test_max_ranks_come_from_the_spec_per_family():
    spec = make_head_spec("abc123", 6, 4, 2, max_ranks={"ffn": 4, "residual": 9})
    decode_head(encode_head(_ffn(4)), spec)
    decode_head(encode_head(_residual(9)), spec)
    with pytest.raises(HeadRejected, match="outside 1..4"):
        decode_head(encode_head(_ffn(5)), spec)
    with pytest.raises(HeadRejected, match="outside 1..9"):
        decode_head(encode_head(_residual(10)), spec)


@pytest.mark.parametrize("rank", [0, -3, "8", 2.5, None, True])
def test_a_malformed_rank_is_a_rejection_not_a_crash(rank):
    head = _ffn(3).with_meta(rank=rank)
    with pytest.raises(HeadRejected, match="rank"):
        decode_head(encode_head(head), SPEC)


@pytest.mark.parametrize("head_type", ["lora", ["ffn"], 7])
def test_an_unknown_head_type_is_rejected(head_type):
    with pytest.raises(HeadRejected, match="unknown head type"):
        decode_head(encode_head(_record(head_type=head_type)), SPEC)


def test_a_non_numeric_created_at_is_rejected():
    with pytest.raises(HeadRejected, match="created_at"):
        decode_head(encode_head(_record(created_at="yesterday")), SPEC)


def test_shapes_are_the_model_sides_the_spec_carries():
    assert SPEC.shapes("ffn", 3) == {"V1": (3, 4), "V2": (6, 3)}
    bare = HeadSpec("abc123", 6, 4, 2)  # no shapes: cannot validate, says how to build one
    with pytest.raises(TypeError, match="make_head_spec"):
        decode_head(encode_head(_record()), bare)
