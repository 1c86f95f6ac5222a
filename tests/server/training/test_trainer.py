"""Training loop: resuming from a checkpoint reproduces an uninterrupted run."""

from __future__ import annotations

import torch

from adapters_store.head_format import HeadType
from server.training.data import FeatureSet, iterate_batches, sample_batch
from server.training.recipes import train_heads
from server.training.trainer import TrainConfig


def _toy_data(n: int = 24) -> FeatureSet:
    g = torch.Generator().manual_seed(0)
    feats = [
        torch.randn(int(torch.randint(30, 90, (), generator=g)), 64, generator=g) for _ in range(n)
    ]
    labels = [torch.randint(1, 29, (4,), generator=g) for _ in range(n)]
    tasks = [i % 3 for i in range(n)]
    return FeatureSet(feats, labels, tasks, ["x"] * n, ["t0", "t1", "t2"])


def test_resumed_training_equals_uninterrupted_training(tiny_model, tmp_path):
    data = _toy_data()
    straight = train_heads(
        tiny_model,
        data,
        HeadType.LINEAR,
        0,
        TrainConfig(steps=6, lr=1e-2, warmup=1, max_frames=400),
    )
    config = TrainConfig(steps=6, lr=1e-2, warmup=1, max_frames=400, checkpoint_every=3)
    ckpt = tmp_path / "ckpt.safetensors"
    train_heads(tiny_model, data, HeadType.LINEAR, 0, config, ckpt, until=3)  # stop at 3
    resumed = train_heads(tiny_model, data, HeadType.LINEAR, 0, config, ckpt)
    assert not torch.equal(straight.pools["V"], torch.zeros_like(straight.pools["V"]))
    torch.testing.assert_close(resumed.pools["V"], straight.pools["V"])


def test_batches_are_a_pure_function_of_step_and_bounded_by_frames():
    data = _toy_data()
    a, b = sample_batch(data, 5, 0, 300), sample_batch(data, 5, 0, 300)
    assert a.indices == b.indices
    assert a.inputs.shape[0] * a.inputs.shape[1] <= 300 or len(a.indices) == 1
    seen = [i for batch in iterate_batches(data, 300) for i in batch.indices]
    assert sorted(seen) == list(range(len(data)))
