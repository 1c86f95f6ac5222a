"""Training loop: resuming from a checkpoint reproduces an uninterrupted run."""

from __future__ import annotations

import torch

from adapters_store.head_format import HeadType
from server.models.ctc.conformer import ConformerConfig, ConformerCTC
from server.models.hra import HRAModel
from server.training.data import FeatureSet, sample_batch
from server.training.recipes import train_heads
from server.training.trainer import TrainConfig, train


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


def test_a_finished_backbone_run_resumes_with_its_batchnorm_statistics(tmp_path):
    """Found by a partial `make model`: resuming restored the weights but not the BatchNorm
    running statistics, and the 'resumed' backbone scored 89% WER instead of 50%."""
    data = _toy_data()

    def model():
        torch.manual_seed(0)
        config = ConformerConfig(hidden_dim=48, num_layers=2, num_heads=2, ffn_dim=96)
        return HRAModel(ConformerCTC(config), controller_dim=1)

    config = TrainConfig(steps=4, lr=1e-2, warmup=1, max_frames=400, checkpoint_every=2)
    ckpt = tmp_path / "pretrain.safetensors"

    def pretrain(model):  # the recipe's stage (a), in miniature
        params = dict(model.backbone.named_parameters())
        train(model, params, data, lambda b: None, config, ckpt, backbone_trains=True)
        return model

    trained = pretrain(model())
    resumed = pretrain(model())  # fresh weights and statistics; the finished run loads from ckpt
    stats = [k for k, _ in trained.named_buffers() if k.endswith("running_var")]
    assert stats
    for name, buffer in resumed.named_buffers():
        torch.testing.assert_close(buffer, dict(trained.named_buffers())[name])
    assert not torch.allclose(dict(trained.named_buffers())[stats[0]], torch.ones(48))
    x, lengths = data.features[0][None], torch.tensor([data.features[0].shape[0]])
    with torch.no_grad():
        torch.testing.assert_close(resumed(x, lengths)[0], trained(x, lengths)[0])


def test_batches_are_a_pure_function_of_step_and_bounded_by_frames():
    data = _toy_data()
    a, b = sample_batch(data, 5, 0, 300), sample_batch(data, 5, 0, 300)
    assert a.indices == b.indices
    assert a.inputs.shape[0] * a.inputs.shape[1] <= 300 or len(a.indices) == 1
