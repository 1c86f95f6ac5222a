"""The fused mixed-task forward pass equals each utterance run alone."""

from __future__ import annotations

import pytest
import torch

from adapters_store.families import FAMILIES, ModelDims, head_shapes
from adapters_store.head_batch import HeadBatch
from adapters_store.head_format import HeadType
from server.data.manifest import load_audio
from server.models.ctc.features import pad_features


def _random_head(model, head_type: HeadType, seed: int, rank: int = 8):
    g = torch.Generator().manual_seed(seed)
    shapes = head_shapes(
        head_type, model.backbone.hidden_dim, model.controller.dim, rank, model.backbone.num_layers
    )
    return head_type, {k: torch.randn(s, generator=g) * 0.05 for k, s in shapes.items()}


def _alone(model, feats, head):
    lengths = torch.tensor([feats.shape[0]])
    with torch.no_grad():
        logits, _ = model(feats[None], lengths, HeadBatch.from_heads([head]))
    return logits[0]


def test_mixed_batch_of_trained_heads_matches_each_utterance_run_alone(
    default_model, default_store, fsdd_test
):
    model, _ = default_model
    tasks = default_store.task_ids()
    assert len(tasks) >= 12
    # Every utterance a different task, lengths all different (FSDD clips vary 0.2-1 s).
    clips = fsdd_test[:: len(fsdd_test) // len(tasks)][: len(tasks)]
    feats = [model.backbone.featurize(load_audio(c.audio)) for c in clips]
    assert len({f.shape[0] for f in feats}) > len(feats) // 2
    heads = [(HeadType.LINEAR, default_store.get(t).tensors) for t in tasks]
    heads[0] = None  # one utterance with no head at all (task "base")
    inputs, lengths = pad_features(feats)
    with torch.no_grad():
        batched, out_lengths = model(inputs, lengths, HeadBatch.from_heads(heads))
    for b, (f, head) in enumerate(zip(feats, heads)):
        alone = _alone(model, f, head)
        assert alone.shape[0] == out_lengths[b]
        torch.testing.assert_close(batched[b, : out_lengths[b]], alone, atol=1e-4, rtol=0)


def test_mixed_head_types_in_one_batch_match_lone_runs(tiny_model):
    model = tiny_model
    g = torch.Generator().manual_seed(1)
    feats = [torch.randn(n, 64, generator=g) for n in (37, 90, 64, 13)]
    heads = [
        _random_head(model, HeadType.LINEAR, 1),
        _random_head(model, HeadType.FFN, 2),
        _random_head(model, HeadType.RESIDUAL, 3),
        None,
    ]
    inputs, lengths = pad_features(feats)
    with torch.no_grad():
        batched, out_lengths = model(inputs, lengths, HeadBatch.from_heads(heads))
    for b, (f, head) in enumerate(zip(feats, heads)):
        torch.testing.assert_close(
            batched[b, : out_lengths[b]], _alone(model, f, head), atol=1e-4, rtol=0
        )


@pytest.mark.parametrize("head_type", list(HeadType))
def test_each_head_type_changes_the_output_and_zero_output_side_is_a_no_op(tiny_model, head_type):
    feats = torch.randn(50, 64)
    plain = _alone(tiny_model, feats, None)
    head_type, tensors = _random_head(tiny_model, head_type, 7)
    assert not torch.allclose(_alone(tiny_model, feats, (head_type, tensors)), plain, atol=1e-3)
    output_side = FAMILIES[head_type].zero_init
    assert output_side and output_side <= set(tensors)
    zeroed = {k: (torch.zeros_like(v) if k in output_side else v) for k, v in tensors.items()}
    torch.testing.assert_close(_alone(tiny_model, feats, (head_type, zeroed)), plain)


def test_same_head_object_shares_one_pool_slot(tiny_model):
    head = _random_head(tiny_model, HeadType.LINEAR, 3)
    batch = HeadBatch.from_heads([head, None, head])
    assert batch.families[HeadType.LINEAR].pools["V"].shape[0] == 1
    assert batch.slots(HeadType.LINEAR).tolist() == [0, -1, 0]


@pytest.mark.parametrize("head_type", list(HeadType))
def test_a_fresh_head_of_every_family_is_a_no_op(tiny_model, head_type):
    dims = ModelDims(tiny_model.backbone.hidden_dim, tiny_model.controller.dim, 3)
    tensors = FAMILIES[head_type].init(dims, 8, torch.Generator().manual_seed(0))
    for name, tensor in tensors.items():  # output side zero, input side random
        assert bool((tensor == 0).all()) == (name in FAMILIES[head_type].zero_init)
    feats = torch.randn(40, 64)
    plain = _alone(tiny_model, feats, None)
    torch.testing.assert_close(_alone(tiny_model, feats, (head_type, tensors)), plain)


@pytest.mark.parametrize("head_type", [HeadType.FFN, HeadType.RESIDUAL])
def test_padding_a_head_to_a_larger_rank_keeps_its_output(tiny_model, head_type):
    dims = ModelDims(tiny_model.backbone.hidden_dim, tiny_model.controller.dim, 3)
    family = FAMILIES[head_type]
    _, tensors = _random_head(tiny_model, head_type, 5, rank=5)
    padded = family.padded(tensors, 16, dims)
    assert {n: tuple(t.shape) for n, t in padded.items()} == family.pool_shapes(dims, 16)
    feats = torch.randn(30, 64)
    torch.testing.assert_close(
        _alone(tiny_model, feats, (head_type, padded)),
        _alone(tiny_model, feats, (head_type, tensors)),
        atol=1e-5,
        rtol=0,
    )


@pytest.mark.parametrize("head_type", [HeadType.FFN, HeadType.RESIDUAL])
def test_heads_of_one_family_with_different_ranks_share_a_batch(tiny_model, head_type):
    """Evaluation batches any heads together: ranks 3 and 11 pad to 11, outputs unchanged."""
    g = torch.Generator().manual_seed(2)
    feats = [torch.randn(n, 64, generator=g) for n in (40, 25)]
    heads = [_random_head(tiny_model, head_type, s, rank=r) for s, r in ((1, 3), (2, 11))]
    batch = HeadBatch.from_heads(heads)
    shapes = {n: tuple(p.shape) for n, p in batch.families[head_type].pools.items()}
    assert shapes == {n: (2, *t.shape) for n, t in heads[1][1].items()}  # padded to rank 11
    inputs, lengths = pad_features(feats)
    with torch.no_grad():
        batched, out_lengths = tiny_model(inputs, lengths, batch)
    for b, (f, head) in enumerate(zip(feats, heads)):
        torch.testing.assert_close(
            batched[b, : out_lengths[b]], _alone(tiny_model, f, head), atol=1e-4, rtol=0
        )
